"""pytest-xdist support: keep each fused pass on one worker, and one GPU per worker.

Under ``-n N`` with the default ``--dist load`` (or ``--dist loadgroup``), the plugin supplies the
scheduler (:func:`make_scheduler`): every gate item of suites that share a model source, token set
and batch settings (:func:`~pytest_saeval.run.plan.group_key`) forms one work unit, so each SAE is
evaluated exactly once, each model is loaded only by the worker that evaluates its SAEs, and SAEs on
the same model share their forward passes. Tests marked with a suite join that suite's unit
(the workers record each marked test's group, :func:`colocate_marked`), so their fixtures and gates
reuse its evaluation. Other tests are scheduled
one by one, as ``load`` does (with ``loadgroup``, ``xdist_group`` marks still group them). Each worker uses its share of the CPU
threads (unless ``OMP_NUM_THREADS`` is set) and, with several GPUs, its own GPU.

With other ``--dist`` modes the plugin keeps xdist's scheduler and narrows what one worker
evaluates together, so that no SAE is evaluated twice: ``loadfile`` keeps a suite file on one
worker (one unit per file); ``loadscope``, ``worksteal`` and ``each`` evaluate SAE by SAE.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_saeval.errors import SaevalError
from pytest_saeval.fileio import atomic_write_text
from pytest_saeval.plugin.marker import MarkerUsageError, marker_calls
from pytest_saeval.plugin.options import SUFFIXES
from pytest_saeval.plugin.runner import get_runner
from pytest_saeval.run.plan import group_key
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.hashing import name_digest

if TYPE_CHECKING:  # pragma: no cover
    from xdist.remote import Producer
    from xdist.scheduler.protocol import Scheduling
    from xdist.workermanage import WorkerController

__all__ = ["colocate_marked", "configure_node", "group_name", "make_scheduler", "remove_marks", "takes_over",
           "unit_for"]


def group_name(suite: Suite, device: str | None) -> str:
    """The xdist scope of a suite's fused-pass group: ``saeval-`` and a short digest of its group key
    (with ``device``, the run's ``--saeval-device``, as the session groups suites)."""
    return "saeval-" + name_digest(group_key(suite, device).text(), 10)


_MARKS_DIR = pytest.StashKey[Path]()
"""The controller's folder where workers write which suite group each marked test belongs to."""


def colocate_marked(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a worker under the plugin's scheduler, record the suite group of each test marked with a suite
    (``{node id: group}`` in the controller's marks folder), so the scheduler sends the test to the worker
    that evaluates that group and its fixtures and gates reuse that evaluation."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or workerinput.get("saeval_unit") != "group" or not workerinput.get("saeval_marks"):
        return
    runner = get_runner(config)
    marked: dict[str, str] = {}
    for item in items:
        try:
            calls = marker_calls(item)
            if calls:
                marked[item.nodeid] = group_name(runner.load_suite(calls[0].path), runner.options.device)
        except (SaevalError, MarkerUsageError):
            continue  # a bad marker or suite is reported by the test itself
    folder = Path(workerinput["saeval_marks"])
    atomic_write_text(folder / f"{workerinput.get('workerid', 'gw')}.json", json.dumps(marked))


def _marked_groups(config: pytest.Config) -> dict[str, str]:
    """``{node id: group}`` of the marked tests, as the workers recorded them."""
    folder = config.stash.get(_MARKS_DIR, None)
    found: dict[str, str] = {}
    for file in sorted(folder.glob("*.json")) if folder is not None else ():
        try:
            found.update(json.loads(file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a worker that died before writing: its tests are scheduled one by one
    return found


def remove_marks(config: pytest.Config) -> None:
    """Remove the controller's marks folder (end of the session)."""
    folder = config.stash.get(_MARKS_DIR, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


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
    """Tell a worker what it may evaluate together (and, under the plugin's scheduler, where to record
    its marked tests' groups)."""
    unit = unit_for(node.config)
    node.workerinput["saeval_unit"] = unit
    if unit == "group":
        if _MARKS_DIR not in node.config.stash:
            node.config.stash[_MARKS_DIR] = Path(tempfile.mkdtemp(prefix="saeval-marks-"))
        node.workerinput["saeval_marks"] = str(node.config.stash[_MARKS_DIR])


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
            self._marked: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:  # loadgroup's own hook for a node id's group (xdist 3.x)
            group = self._group_of(nodeid)
            if group is None:
                if self._marked is None:  # read once, after every worker has collected
                    self._marked = _marked_groups(self.config)
                group = self._marked.get(nodeid)
            return group if group is not None else super()._split_scope(nodeid)

        def _group_of(self, nodeid: str) -> str | None:
            path, sep, rest = nodeid.partition("::")
            if not sep or "::" not in rest or not path.endswith(SUFFIXES):
                return None
            if path not in self._groups:
                try:
                    file = Path(self.config.rootpath, path)
                    self._groups[path] = (group_name(load_suite(file), get_runner(self.config).options.device)
                                          if file.is_file() else None)
                except SaevalError:
                    self._groups[path] = None
            found = self._groups[path]
            return found if found is not None else path

    return SaevalScheduling(config, log)

