"""pytest-xdist support: keep each fused pass on one worker, and one GPU per worker.

Under ``-n N`` with the default ``--dist load`` (or ``--dist loadgroup``), the plugin supplies the
scheduler (:func:`make_scheduler`): every gate item of suites that share a model source, token set
and batch settings (:func:`~pytest_saeval.run.plan.group_key`) forms one work unit, so each SAE is
evaluated exactly once, each model is loaded only by the worker that evaluates its SAEs, and SAEs on
the same model share their forward passes. Other tests are scheduled one by one, as ``load`` does
(with ``loadgroup``, ``xdist_group`` marks still group them). Each worker uses its share of the CPU
threads (unless ``OMP_NUM_THREADS`` is set) and, with several GPUs, its own GPU.

With other ``--dist`` modes the plugin keeps xdist's scheduler and narrows what one worker
evaluates together, so that no SAE is evaluated twice: ``loadfile`` keeps a suite file on one
worker (one unit per file); ``loadscope``, ``worksteal`` and ``each`` evaluate SAE by SAE.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_saeval.errors import SaevalError
from pytest_saeval.plugin.items import SUFFIXES
from pytest_saeval.plugin.runner import get_runner
from pytest_saeval.run.plan import group_key
from pytest_saeval.spec.loader import load_suite

if TYPE_CHECKING:  # pragma: no cover
    from xdist.remote import Producer
    from xdist.scheduler.protocol import Scheduling
    from xdist.workermanage import WorkerController

__all__ = ["configure_node", "make_scheduler", "takes_over", "unit_for"]

def takes_over(config: pytest.Config) -> bool:
    """Whether the plugin schedules this run: ``--dist load``/``loadgroup`` and suite files to collect."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return False
    if any(str(arg).split("::", 1)[0].endswith(SUFFIXES) for arg in config.args):
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
            if not sep or "::" not in rest or not path.endswith(SUFFIXES):
                return None
            if path not in self._groups:
                try:
                    file = Path(self.config.rootpath, path)
                    self._groups[path] = "saeval::" + group_key(load_suite(file)).text() if file.is_file() else None
                except SaevalError:
                    self._groups[path] = None
            found = self._groups[path]
            return found if found is not None else path

    return SaevalScheduling(config, log)

