"""Devices and dtypes: resolving auto, cpu, cuda and cuda:N on this machine, and dtype names."""

from __future__ import annotations

import pytest
import torch

from pytest_saeval.errors import InputError
from pytest_saeval.sources.devices import parse_dtype, resolve_device


def test_resolve_device_auto_and_cpu():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resolve_device_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(InputError) as excinfo:
            resolve_device(spec)
        assert "CUDA is not available" in str(excinfo.value) and "device: auto or device: cpu" in str(excinfo.value)
    with pytest.raises(InputError, match="use --device auto or --device cpu"):
        resolve_device("cuda", option="--device")


def test_resolve_device_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device(" cuda:1 ") == "cuda:1"
    with pytest.raises(InputError, match=r"has 2 CUDA device\(s\) \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "", "mps0", "CUDA", "Cpu"])  # one vocabulary: is_device
def test_resolve_device_unknown(spec):
    with pytest.raises(InputError, match="unknown device"):
        resolve_device(spec)


def test_dtypes():
    assert parse_dtype("float32") is torch.float32
    assert parse_dtype("torch.bfloat16") is torch.bfloat16
    assert parse_dtype(torch.float16) is torch.float16
    with pytest.raises(InputError, match="did you mean 'float32'"):
        parse_dtype("float3")
