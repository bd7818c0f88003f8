"""One machine's share under pytest-xdist: each worker's GPU and CPU threads."""

from __future__ import annotations

import pytest

from pytest_saeval.plugin.workers import gpu_for_worker, threads_per_worker


@pytest.mark.parametrize(
    ("worker", "n_gpus", "device"),
    [("gw0", 4, "cuda:0"), ("gw5", 4, "cuda:1"), ("gw3", 2, "cuda:1"), ("gw3", 1, None), ("gw1", 0, None),
     (None, 4, None), ("main", 4, None)],
)
def test_worker_gpu_placement(worker: str | None, n_gpus: int, device: str | None) -> None:
    assert gpu_for_worker(worker, n_gpus) == device


@pytest.mark.parametrize(("workers", "cpus", "threads"), [(2, 2, 1), (3, 16, 5), (1, 8, 8), (4, 2, 1), (0, 4, 4)])
def test_cpu_threads_are_shared_among_workers(workers: int, cpus: int, threads: int) -> None:
    assert threads_per_worker(workers, cpus) == threads
