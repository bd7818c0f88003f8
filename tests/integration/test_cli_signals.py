"""SIGINT, SIGTERM and SIGHUP during ``saeval run``: exit 130 / 143 / 129 with one line, and outputs, caches and baselines
either as they were or wholly new, never half-written (no temporary files left either).

The signal is sent by the process to itself at chosen points (a wrapper patches one function to signal
on its N-th call, just as a Ctrl-C or a CI cancel would arrive there), and from outside after delays.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_saeval.cli import main
from pytest_saeval.spec.baseline import load_baseline
from pytest_saeval.store.entries import read_entry
from tests.integration.badinput.cases import Assets, shared_assets
from tests.integration.badinput.kit import base_suite, write_suite

_WRAPPER = """
import importlib, os, signal, sys
target, nth, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
module, attr = target.split(":")
mod = importlib.import_module(module)
real = getattr(mod, attr)
calls = []
def signalled(*args, **kwargs):
    calls.append(1)
    if len(calls) == nth:
        os.kill(os.getpid(), getattr(signal, name))
    return real(*args, **kwargs)
setattr(mod, attr, signalled)
from pytest_saeval.cli import console
sys.exit(console(sys.argv[4:]))
"""

POINTS = {
    "before-loading": ("pytest_saeval.spec.loader:load_suites", 1),
    "loading-the-model": ("pytest_saeval.sources.models:load_model", 1),
    "evaluating": ("pytest_saeval.run.evaluation:fused_pass", 1),
    "writing-the-cache": ("pytest_saeval.store.entries:write_entry", 1),
    "writing-the-outputs": ("pytest_saeval.report.files:write_outputs", 1),
    "writing-the-baseline": ("pytest_saeval.report.baselines:write_baselines", 1),
}
"""Where the signal arrives: ``(module:function, on its n-th call)``."""
FINISHING = {"writing-the-outputs", "writing-the-baseline"}
"""Points inside the end-of-run writes: those complete first, so the outputs are the new ones."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return shared_assets(tmp_path_factory)


def _setup(tiny: Assets, folder: Path) -> tuple[Path, list[str]]:
    """A suite with a baseline, its outputs and cache from one complete run; then its gate changes (">= 0" -> ">= 1"),
    so the next run's outputs differ from these old ones."""
    suite = write_suite(folder, base_suite(tiny).replace("saes:\n", "baseline: base.json\nsaes:\n", 1))
    args = ["run", str(suite), "--output-dir", str(folder / "out"), "--cache-dir", str(folder / "cache"),
            "--update-baseline", "--no-progress"]
    assert main(args) == 0
    shutil.rmtree(folder / "cache" / "answers")  # so that the next run loads and evaluates (results cache hits)
    suite.write_text(suite.read_text().replace('l0: ">= 0"', 'l0: ">= 1"'))
    return suite, args


def _bounds(folder: Path) -> set[str]:
    """The gate bounds the outputs hold (one value: old or new, never a mix)."""
    out = folder / "out"
    records = json.loads((out / "all_eval_results.json").read_text())
    singles = [json.loads(p.read_text()) for p in out.glob("suite__*.json")]
    assert [r["unique_id"] for r in records] == [s["unique_id"] for s in singles] == ["sae0"]
    assert "sae0" in (out / "all_eval_results.csv").read_text() and (out / "summary.md").read_text().startswith("## ")
    return {g["bound"] for r in [*records, *singles] for g in r["gates"]}


def _check_state(folder: Path) -> set[str]:
    """Nothing half-written: no temporary files, every cache entry readable, a whole baseline; the outputs' bounds."""
    leftovers = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    for entry in (folder / "cache").rglob("*.safetensors"):
        key = entry.stem if entry.parent.parent.name == "results" else None
        if key is not None:
            assert read_entry(entry, key) is not None
    assert "sae0" in load_baseline(folder / "base.json").sae_ids
    return _bounds(folder)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


@pytest.mark.parametrize(("point", "name"), [(p, "SIGINT") for p in POINTS] + [("evaluating", "SIGTERM"),
                                                                               ("evaluating", "SIGHUP")],
                         ids=[*POINTS, "evaluating-sigterm", "evaluating-sighup"])
def test_a_signal_at_a_point(tiny: Assets, tmp_path: Path, point: str, name: str) -> None:
    suite, args = _setup(tiny, tmp_path)
    if point == "writing-the-cache":
        shutil.rmtree(tmp_path / "cache" / "results")  # this run stores its result again
    target, nth = POINTS[point]
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, target, str(nth), name, *args], capture_output=True,
                          text=True, env=_env(), timeout=900)
    code = 128 + getattr(signal, name)
    assert proc.returncode == code, proc
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"saeval: interrupted by {name}; nothing is half-written (outputs, caches and baselines are the "
                     "old ones or complete new ones)"], proc.stderr
    bounds = _check_state(tmp_path)
    assert bounds == ({">= 1"} if point in FINISHING else {">= 0"}), bounds


def _wait_for_handlers(pid: int, timeout: float = 120.0) -> None:
    """Wait until the command handles SIGTERM itself (its handlers are in place as ``main`` starts); where
    /proc cannot tell, wait a second."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        time.sleep(1.0)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        caught = next((line.split()[1] for line in status.read_text().splitlines() if line.startswith("SigCgt:")), "0")
        if int(caught, 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)
    raise AssertionError("the command never started")


@pytest.mark.parametrize("delay", [0.0, 2.0, 6.0])
def test_a_signal_from_outside_at_any_time(tiny: Assets, tmp_path: Path, delay: float) -> None:
    suite, args = _setup(tiny, tmp_path)
    command = [sys.executable, "-c", "import sys; from pytest_saeval.cli import console; sys.exit(console(sys.argv[1:]))",
               *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    _wait_for_handlers(proc.pid)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode in (0, 130), (proc.returncode, err)
    if proc.returncode == 130:
        assert err.strip().splitlines() == ["saeval: interrupted by SIGINT; nothing is half-written (outputs, caches "
                                            "and baselines are the old ones or complete new ones)"], err
    assert "Traceback" not in err
    assert _check_state(tmp_path) in ({">= 0"}, {">= 1"})


def test_a_signal_after_the_command_is_done_keeps_its_result(tiny: Assets, tmp_path: Path) -> None:
    """SIGINT between the end of the command and the end of the process (here: sent by the wrapper right
    after the command returned) is ignored: exit code 0, complete outputs, no traceback."""
    _, args = _setup(tiny, tmp_path)
    code = ("import os, signal, sys; from pytest_saeval.cli import console\n"
            "code = console(sys.argv[1:]); os.kill(os.getpid(), signal.SIGINT); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(), timeout=900)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "interrupted" not in done.stderr
    assert _check_state(tmp_path) == {">= 1"}
