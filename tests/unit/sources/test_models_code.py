"""TransformerLens names whose hub repositories ship code are refused unless the suite opts in; nothing is fetched."""

from __future__ import annotations

import pytest

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.models import load_model


@pytest.mark.parametrize("name", ["microsoft/phi-2", "qwen-1.8b", "bigcode/santacoder"])
def test_a_name_that_needs_its_repositorys_code_is_refused(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformer_lens import HookedTransformer

    def fetch(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may be fetched or run")

    monkeypatch.setattr(HookedTransformer, "from_pretrained_no_processing", fetch)
    with pytest.raises(SourceError) as info:
        load_model(name=name, device="cpu")
    assert "loads with Python code from its hub repository" in str(info.value)
    assert "model.trust_remote_code: true" in info.value.fix


def test_opting_in_passes_trust_remote_code_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformer_lens import HookedTransformer

    seen: dict[str, object] = {}

    def fetch(name: str, **kwargs: object) -> None:
        seen.update(kwargs)
        raise OSError("offline")

    monkeypatch.setattr(HookedTransformer, "from_pretrained_no_processing", fetch)
    with pytest.raises(SourceError):
        load_model(name="microsoft/phi-2", device="cpu", trust_remote_code=True)
    assert seen["trust_remote_code"] is True
    seen.clear()
    with pytest.raises(SourceError):
        load_model(name="gpt2", device="cpu")
    assert seen["trust_remote_code"] is False  # passed explicitly, never left to a prompt
