"""Where the caches live by default: the project's root, or $SAEVAL_CACHE_DIR."""

from __future__ import annotations

from pathlib import Path

from pytest_saeval.store.folder import DEFAULT_CACHE_DIR, default_cache_dir


def test_default_is_in_the_given_root(tmp_path, monkeypatch):
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    assert default_cache_dir(tmp_path) == tmp_path / DEFAULT_CACHE_DIR


def test_without_a_root_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_cache_dir() == Path(tmp_path) / DEFAULT_CACHE_DIR


def test_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("SAEVAL_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_dir(tmp_path / "root") == tmp_path / "elsewhere"
