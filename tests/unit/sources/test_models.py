"""Loading models: exactly one source, TransformerLens names, the device check first, located errors and
model hashes (local folders, factories and devices have their own files)."""

from __future__ import annotations

import json

import pytest
import torch

from pytest_saeval.errors import InputError, SaevalError, SourceError
from pytest_saeval.sources.models import load_model
from pytest_saeval.store.hashing import module_hash
from tests.helpers import tiny_hooked_transformer

transformers = pytest.importorskip("transformers")


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


# ------------------------------------------------------------------------------------------
# arguments


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"name": "gpt2", "path": "x"}, {"path": "x", "factory": "a:b"}],
)
def test_exactly_one_source(kwargs):
    with pytest.raises(SourceError, match="exactly one of name, path, factory"):
        load_model(device="cpu", **kwargs)


def test_unknown_backend(gpt2_folder):
    with pytest.raises(InputError, match="unknown model backend"):
        load_model(path=gpt2_folder, device="cpu", backend="tpu")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# names


def test_unknown_name_suggests_close_names():
    with pytest.raises(SourceError) as excinfo:
        load_model(name="gpt2-smal", device="cpu")
    msg = _message(excinfo)
    assert "not a TransformerLens pretrained name" in msg
    assert "gpt2-small" in msg
    assert "backend: bridge" in msg


def test_name_not_cached_with_hub_unreachable(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(SourceError) as excinfo:
        load_model(name="gpt2", device="cpu")
    msg = _message(excinfo)
    assert "not in the local Hugging Face cache" in msg and "hub cannot be reached" in msg
    assert "model.path" in msg


# ------------------------------------------------------------------------------------------
# located errors


def test_errors_take_a_location_later(tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(path=tmp_path / "nope", device="cpu")
    located = excinfo.value.located(file="thresholds/demo.yaml", line=3, key="model.path")
    assert str(located).startswith("thresholds/demo.yaml:3: model.path: model folder")
    assert isinstance(located, SaevalError)


# ------------------------------------------------------------------------------------------
# devices


def test_load_model_checks_device_first(gpt2_folder, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        load_model(path=gpt2_folder, device="cuda")


# ------------------------------------------------------------------------------------------
# hashing of models


def test_model_hash_tracks_weights(gpt2_folder, hooked):
    again = load_model(path=gpt2_folder, device="cpu")
    assert module_hash("model", again) == module_hash("model", hooked)
    with torch.no_grad():
        again.blocks[1].mlp.b_out[0] += 1e-3
    assert module_hash("model", again) != module_hash("model", hooked)


def test_model_hash_differs_between_models():
    a = tiny_hooked_transformer(seed=0)
    b = tiny_hooked_transformer(seed=1)
    assert module_hash("model", a) != module_hash("model", b)
    assert len(module_hash("model", a)) == 32


def test_saved_config_has_no_n_ctx(gpt2_folder):
    # The GPT-2 branch of TransformerLens's config conversion reads n_ctx; transformers 5 does not write it.
    assert "n_ctx" not in json.loads((gpt2_folder / "config.json").read_text())
