"""What the loaders share: path resolution, offline mode restored on exit, and reading library exceptions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_saeval.sources.common import exception_chain, hub_offline, is_hub_unreachable, resolve_path, short


def test_resolve_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_path("saes/a", tmp_path) == tmp_path / "saes" / "a"
    assert resolve_path("saes/a", None) == Path("saes/a")
    assert resolve_path(tmp_path / "abs", "/elsewhere") == tmp_path / "abs"
    assert resolve_path("~/m", "/elsewhere") == tmp_path / "home" / "m"


def test_hub_offline_sets_and_restores_the_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    with hub_offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
        assert hub_constants.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["HF_DATASETS_OFFLINE"] == "0"
    assert hub_constants.HF_HUB_OFFLINE is False
    with pytest.raises(RuntimeError), hub_offline():
        raise RuntimeError("inside")
    assert "HF_HUB_OFFLINE" not in os.environ and hub_constants.HF_HUB_OFFLINE is False


def _chained() -> BaseException:
    try:
        try:
            try:
                raise OSError("couldn't connect to 'https://huggingface.co'")
            except OSError as low:
                raise ValueError("middle") from low
        except ValueError:
            raise RuntimeError("top")  # noqa: B904 - an implicit __context__ on purpose
    except RuntimeError as e:
        return e


def test_exception_chain_follows_causes_and_contexts() -> None:
    assert [type(e).__name__ for e in exception_chain(_chained())] == ["RuntimeError", "ValueError", "OSError"]
    loop = ValueError("a")
    loop.__context__ = KeyError("b")
    loop.__context__.__context__ = loop
    assert [type(e).__name__ for e in exception_chain(loop)] == ["ValueError", "KeyError"]  # no endless loop


def test_is_hub_unreachable() -> None:
    class LocalEntryNotFoundError(Exception):
        pass

    class Derived(LocalEntryNotFoundError):
        pass

    assert is_hub_unreachable(_chained())  # the words, deep in the chain
    assert is_hub_unreachable(Derived("no file"))  # the class name, through the class hierarchy
    assert is_hub_unreachable(RuntimeError("Outgoing traffic has been disabled."))
    assert not is_hub_unreachable(FileNotFoundError("tokens.npy"))
    assert not is_hub_unreachable(ValueError("bad config"))


def test_short_is_one_line_with_the_type() -> None:
    assert short(ValueError("bad\n   config")) == "ValueError: bad config"
    assert short(KeyError()) == "KeyError"
    cut = short(RuntimeError("x" * 500), limit=40)
    assert len(cut) == 40 and cut.startswith("RuntimeError: xxx") and cut.endswith("...")
