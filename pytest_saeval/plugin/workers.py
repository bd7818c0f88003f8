"""One machine's share of the work under pytest-xdist: each worker's CPU threads and GPU."""

from __future__ import annotations

import os
import re

from pytest_saeval.sources.devices import cuda_device_count, gpu_possible

__all__ = ["gpu_for_worker", "threads_per_worker", "worker_device", "worker_threads"]


def gpu_for_worker(worker_id: str | None, n_gpus: int) -> str | None:
    """``cuda:<i mod n_gpus>`` for worker ``gw<i>`` when there are several GPUs, else ``None`` (no change)."""
    if worker_id is None or n_gpus < 2:
        return None
    match = re.fullmatch(r"gw(\d+)", worker_id)
    if match is None:
        return None
    return f"cuda:{int(match.group(1)) % n_gpus}"


def worker_device(worker_id: str | None) -> str | None:
    """The device ``auto`` means on this xdist worker (imports torch only where a GPU may be there)."""
    if worker_id is None or not gpu_possible():
        return None
    return gpu_for_worker(worker_id, cuda_device_count())


def threads_per_worker(n_workers: int, n_cpus: int) -> int:
    """CPU threads each of ``n_workers`` processes may use so that together they fill ``n_cpus`` without oversubscribing."""
    return max(1, n_cpus // max(1, n_workers))


def worker_threads(n_workers: int) -> int | None:
    """The CPU threads each of ``n_workers`` xdist workers may give torch (torch would otherwise give every
    worker all cores); None when ``OMP_NUM_THREADS`` is set (the user decided) or there is one worker."""
    if n_workers < 2 or "OMP_NUM_THREADS" in os.environ:
        return None
    return threads_per_worker(n_workers, os.cpu_count() or 1)
