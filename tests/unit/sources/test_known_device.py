"""Devices told without importing torch: ``cpu``, and ``auto`` where no GPU can be used."""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path

import pytest

from pytest_saeval.sources import devices
from pytest_saeval.sources.devices import gpu_possible, known_device


def fake_torch(monkeypatch: pytest.MonkeyPatch, folder: Path, libs: list[str], signs: list[str]) -> None:
    """torch as installed at ``folder`` with ``libs`` in its lib folder (not imported), and these GPU driver paths."""
    (folder / "torch" / "lib").mkdir(parents=True)
    for name in libs:
        (folder / "torch" / "lib" / name).write_bytes(b"")
    spec = importlib.machinery.ModuleSpec("torch", None, is_package=True)
    spec.submodule_search_locations = [str(folder / "torch")]
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(devices.importlib.util, "find_spec", lambda name: spec if name == "torch" else None)
    monkeypatch.setattr(devices.glob, "glob", lambda pattern: [p for p in signs if p.startswith(pattern.rstrip("*"))])
    monkeypatch.setattr(devices.sys, "platform", "linux")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_cpu_is_cpu_everywhere() -> None:
    assert known_device("cpu") == known_device(" cpu ") == "cpu"
    assert known_device("CPU") is None  # not in the vocabulary (is_device): resolve_device refuses it


def test_a_cpu_build_of_torch_has_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_torch(monkeypatch, tmp_path, ["libtorch_cpu.so", "libc10.so"], ["/dev/nvidia0"])
    assert not gpu_possible()
    assert known_device("auto") == "cpu"
    assert known_device("cuda") is None and known_device("cuda:1") is None  # torch says whether that is an error
    assert "torch" not in sys.modules


@pytest.mark.parametrize("lib", ["libtorch_cuda.so", "torch_cuda.dll", "libtorch_hip.so"])
def test_a_gpu_build_without_a_driver_on_linux_has_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lib: str) -> None:
    fake_torch(monkeypatch, tmp_path, ["libtorch_cpu.so", lib], [])
    assert not gpu_possible()
    assert known_device("auto") == "cpu"


@pytest.mark.parametrize("sign", ["/proc/driver/nvidia", "/dev/nvidia0", "/dev/dxg", "/dev/kfd"])
def test_with_a_driver_only_torch_can_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sign: str) -> None:
    fake_torch(monkeypatch, tmp_path, ["libtorch_cuda.so"], [sign])
    assert gpu_possible()
    assert known_device("auto") is None


@pytest.mark.parametrize("hidden", ["", "-1"])
def test_devices_hidden_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    fake_torch(monkeypatch, tmp_path, ["libtorch_cuda.so"], ["/dev/nvidia0"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
    assert known_device("auto") == "cpu"


def test_elsewhere_a_gpu_build_asks_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_torch(monkeypatch, tmp_path, ["torch_cuda.dll"], [])
    monkeypatch.setattr(devices.sys, "platform", "win32")
    assert gpu_possible()


def test_an_imported_torch_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert gpu_possible() == torch.cuda.is_available()
    assert known_device("auto") == (None if torch.cuda.is_available() else "cpu")
