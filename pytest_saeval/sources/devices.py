"""Devices and dtypes: the vocabulary of :mod:`pytest_saeval.settings` turned into what this machine has."""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
from typing import TYPE_CHECKING

from pytest_saeval.errors import InputError, did_you_mean
from pytest_saeval.settings import DEVICE_CHOICES, DTYPES, is_device

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["cuda_device_count", "gpu_possible", "known_device", "limit_threads", "parse_dtype", "resolve_device"]


def resolve_device(spec: str, option: str = "device:") -> str:
    """Turn ``auto | cpu | cuda | cuda:N`` into a device string that exists on this machine.

    ``auto`` is ``cuda`` when CUDA is available, else ``cpu``. ``cuda`` / ``cuda:N`` on a machine
    without CUDA, or ``N`` out of range, is an :class:`InputError` whose fix names ``option`` (how the
    caller's user spells the setting: the suite key ``device:``, or ``--device``). Names are lower case,
    as :func:`~pytest_saeval.settings.is_device` accepts them.
    """
    if not isinstance(spec, str):
        raise InputError(f"device must be a string, got {spec!r}", fix=f"use {option} {DEVICE_CHOICES}")
    text = spec.strip()
    if not is_device(text):
        raise InputError(
            f"unknown device {spec!r}",
            fix=f"use {option} {DEVICE_CHOICES} (auto: cuda when available, else cpu)",
        )
    if text == "cpu":
        return "cpu"
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise InputError(
            f"device {spec!r} asked for, but CUDA is not available on this machine",
            fix=f"use {option} auto or {option} cpu, or run on a machine with a CUDA GPU and a CUDA build of torch",
        )
    if ":" in text:
        index = int(text.partition(":")[2])
        count = torch.cuda.device_count()
        if index >= count:
            raise InputError(
                f"device {spec!r} asked for, but this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})",
                fix=f"use {option} cuda:0..cuda:{count - 1} or {option} auto",
            )
        return f"cuda:{index}"
    return "cuda"


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"`` (or ``"torch.float32"``, or a ``torch.dtype``) -> ``torch.float32``."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).strip().removeprefix("torch.")
    if name not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}{did_you_mean(name, DTYPES)}", fix=f"use one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def cuda_device_count() -> int:
    """How many CUDA devices this machine has (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def limit_threads(n: int) -> None:
    """Let torch use at most ``n`` CPU threads in this process."""
    import torch

    if torch.get_num_threads() > n:
        torch.set_num_threads(n)


_GPU_RUNTIMES = ("libtorch_cuda", "torch_cuda", "libtorch_hip", "torch_hip")
"""Library name starts of torch's CUDA and ROCm runtimes (``torch/lib``): a build without them has no GPU."""
_GPU_SIGNS = ("/proc/driver/nvidia", "/dev/nvidia*", "/dev/dxg", "/dev/kfd")
"""Linux paths present wherever a GPU driver is loaded (NVIDIA, WSL2, ROCm)."""


def gpu_possible() -> bool:
    """Whether torch could find a GPU here, told without importing it: False when the installed torch has
    no CUDA or ROCm runtime (a CPU build), when ``CUDA_VISIBLE_DEVICES`` hides every device, or on Linux
    when no GPU driver shows (:data:`_GPU_SIGNS`); True otherwise (then only torch can say)."""
    if "torch" in sys.modules:  # already imported: ask it (cheap now)
        return cuda_device_count() > 0
    spec = importlib.util.find_spec("torch")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    libs = [name for folder in folders if os.path.isdir(os.path.join(folder, "lib"))
            for name in os.listdir(os.path.join(folder, "lib"))]
    if folders and not any(name.startswith(_GPU_RUNTIMES) for name in libs):
        return False
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if sys.platform.startswith("linux"):
        return any(glob.glob(sign) for sign in _GPU_SIGNS)
    return True


def known_device(spec: str) -> str | None:
    """What :func:`resolve_device` gives for ``spec`` when that is known without importing torch (``cpu``,
    or ``auto`` where :func:`gpu_possible` is False); None when only torch can say (or ``spec`` is no device)."""
    text = spec.strip() if isinstance(spec, str) else ""
    if text == "cpu":
        return "cpu"
    if text == "auto" and not gpu_possible():
        return "cpu"
    return None
