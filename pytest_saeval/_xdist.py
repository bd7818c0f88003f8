"""pytest-xdist support: keep each fused pass on one worker, and one GPU per worker.

Under ``-n N`` with the default ``--dist load`` (or ``--dist loadgroup``), the plugin supplies the
scheduler (:func:`make_scheduler`): every gate item of suites that share a model source, token set
and batch settings (:func:`~pytest_saeval.session.group_key`) forms one work unit, so each SAE is
evaluated exactly once, each model is loaded only by the worker that evaluates its SAEs, and SAEs on
the same model share their forward passes. Other tests are scheduled one by one, as ``load`` does
(with ``loadgroup``, ``xdist_group`` marks still group them). Each worker uses its share of the CPU
threads (unless ``OMP_NUM_THREADS`` is set) and, with several GPUs, its own GPU.

With other ``--dist`` modes the plugin keeps xdist's scheduler and narrows what one worker
evaluates together, so that no SAE is evaluated twice: ``loadfile`` keeps a suite file on one
worker (one unit per file); ``loadscope``, ``worksteal`` and ``each`` evaluate SAE by SAE.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_saeval.errors import SaevalError
from pytest_saeval.session import group_key
from pytest_saeval.spec.loader import load_suite

if TYPE_CHECKING:  # pragma: no cover
    from xdist.remote import Producer
    from xdist.scheduler.protocol import Scheduling
    from xdist.workermanage import WorkerController

__all__ = ["gpu_for_worker", "limit_worker_threads", "make_scheduler", "takes_over", "threads_per_worker",
           "unit_for", "worker_device"]

_SUFFIXES = (".yaml", ".yml")


def gpu_for_worker(worker_id: str | None, n_gpus: int) -> str | None:
    """``cuda:<i mod n_gpus>`` for worker ``gw<i>`` when there are several GPUs, else ``None`` (no change)."""
    if worker_id is None or n_gpus < 2:
        return None
    match = re.fullmatch(r"gw(\d+)", worker_id)
    if match is None:
        return None
    return f"cuda:{int(match.group(1)) % n_gpus}"


def worker_device(worker_id: str | None) -> str | None:
    """The device ``auto`` means on this xdist worker (imports torch; call when evaluating)."""
    if worker_id is None:
        return None
    import torch

    return gpu_for_worker(worker_id, torch.cuda.device_count() if torch.cuda.is_available() else 0)


def threads_per_worker(n_workers: int, n_cpus: int) -> int:
    """CPU threads each of ``n_workers`` processes may use so that together they fill ``n_cpus`` without oversubscribing."""
    return max(1, n_cpus // max(1, n_workers))


def limit_worker_threads(n_workers: int) -> None:
    """Share the CPU among xdist workers: torch would otherwise give every worker all cores.

    Left alone when ``OMP_NUM_THREADS`` is set (the user decided) or there is one worker.
    """
    if n_workers < 2 or "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    wanted = threads_per_worker(n_workers, os.cpu_count() or 1)
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)


def takes_over(config: pytest.Config) -> bool:
    """Whether the plugin schedules this run: ``--dist load``/``loadgroup`` and suite files to collect."""
    from pytest_saeval._runner import get_runner

    if config.getvalue("dist") not in ("load", "loadgroup"):
        return False
    if any(str(arg).split("::", 1)[0].endswith(_SUFFIXES) for arg in config.args):
        return True
    return bool(get_runner(config).globbed())


def unit_for(config: pytest.Config) -> str:
    """What a worker evaluates together under this run's scheduling (see the module docstring)."""
    if takes_over(config):
        return "group"
    return "file" if config.getvalue("dist") == "loadfile" else "sae"


def configure_node(node: WorkerController) -> None:
    """Tell a worker what it may evaluate together."""
    node.workerinput["saeval_unit"] = unit_for(node.config)


def make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    """The plugin's scheduler when it :func:`takes_over`, else ``None`` (xdist's own)."""
    if not takes_over(config):
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SaevalScheduling(LoadGroupScheduling):
        """``loadgroup`` where the group of a gate item is its suite's fused-pass group."""

        def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
            super().__init__(config, log)
            self._groups: dict[str, str | None] = {}

        def _split_scope(self, nodeid: str) -> str:
            group = self._group_of(nodeid)
            return group if group is not None else super()._split_scope(nodeid)

        def _group_of(self, nodeid: str) -> str | None:
            path, sep, rest = nodeid.partition("::")
            if not sep or "::" not in rest or not path.endswith(_SUFFIXES):
                return None
            if path not in self._groups:
                try:
                    file = Path(self.config.rootpath, path)
                    self._groups[path] = "saeval::" + group_key(load_suite(file)) if file.is_file() else None
                except SaevalError:
                    self._groups[path] = None
            found = self._groups[path]
            return found if found is not None else path

    return SaevalScheduling(config, log)

