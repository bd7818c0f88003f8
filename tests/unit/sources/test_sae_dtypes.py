"""SAE folders whose weights are not what their config says are refused, naming both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.saes import load_saes
from tests.helpers import save_tiny_sae


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sae(tmp_path_factory.mktemp("sae") / "sae", seed=0, hook_name="blocks.0.hook_resid_pre",
                         d_in=16, d_sae=32)


def _variant(folder: Path, tmp_path: Path, dtype: torch.dtype, cfg_dtype: str | None = None) -> Path:
    out = tmp_path / "variant"
    out.mkdir()
    tensors = load_file(folder / "sae_weights.safetensors")
    save_file({k: (v * 10).to(dtype) for k, v in tensors.items()}, out / "sae_weights.safetensors")
    cfg = json.loads((folder / "cfg.json").read_text())
    if cfg_dtype is not None:
        cfg["dtype"] = cfg_dtype
    (out / "cfg.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.parametrize(("dtype", "name"), [(torch.int8, "int8"), (torch.uint8, "uint8"), (torch.int32, "int32"),
                                             (torch.bool, "bool")])
def test_non_float_weights_are_refused(folder: Path, tmp_path: Path, dtype: torch.dtype, name: str) -> None:
    with pytest.raises(SourceError) as info:
        load_saes(path=_variant(folder, tmp_path, dtype))
    assert f"W_enc is {name}" in str(info.value) and "not floating point" in str(info.value)
    assert "float32" in info.value.fix


def test_weights_of_another_dtype_than_the_cfg_are_named(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        load_saes(path=_variant(folder, tmp_path, torch.bfloat16))
    assert "cfg.json says dtype float32, but its weights" in str(info.value) and "bfloat16" in str(info.value)
    assert '"dtype": "bfloat16"' in info.value.fix


def test_matching_dtypes_load(folder: Path, tmp_path: Path) -> None:
    ((_, sae),) = load_saes(path=_variant(folder, tmp_path, torch.bfloat16, cfg_dtype="torch.bfloat16"))
    assert sae.W_enc.dtype == torch.bfloat16
