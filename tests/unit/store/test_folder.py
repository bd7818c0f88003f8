"""Where the caches live by default: the project's root, or $SAEVAL_CACHE_DIR."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_the_environment_expands_the_home_folder(tmp_path, monkeypatch):
    """GitHub Actions' ``env:`` passes ``~/x`` literally: it used to make a folder named ``~``."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SAEVAL_CACHE_DIR", "~/x")
    assert default_cache_dir(tmp_path / "root") == tmp_path / "home" / "x"
    monkeypatch.setenv("SAEVAL_CACHE_DIR", " ~/y \n")
    assert default_cache_dir(tmp_path / "root") == tmp_path / "home" / "y"


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_a_blank_environment_value_counts_as_unset(tmp_path, monkeypatch, blank):
    """``SAEVAL_CACHE_DIR=' '`` used to make a folder named " "."""
    monkeypatch.setenv("SAEVAL_CACHE_DIR", blank)
    assert default_cache_dir(tmp_path) == tmp_path / DEFAULT_CACHE_DIR
