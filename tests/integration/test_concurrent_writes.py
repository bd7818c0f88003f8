"""Atomic and concurrent writes: a writer killed mid-write leaves complete files, and a real ``saeval run``
process shares an output folder safely with another run."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.badinput.cases import Assets
from tests.integration.cli_helpers import load, write_suite

_WRITER = """
import json, sys
from pytest_saeval.spec.baseline import write_baseline
from pytest_saeval.fileio import atomic_write_text

results, baseline = sys.argv[1], sys.argv[2]
i = 0
while True:
    i += 1
    version = i % 3
    atomic_write_text(results, json.dumps({"version": version, "payload": [version] * 300000}))
    write_baseline(baseline, {"sae0": {"l0": version + 0.5}}, {"sae0": {"round": i}})
    if i == 1:
        print("ready", flush=True)  # one full round done: the files have been replaced at least once
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_mid_write_leaves_complete_files(tmp_path: Path) -> None:
    from pytest_saeval.fileio import atomic_write_text
    from pytest_saeval.spec.baseline import load_baseline, write_baseline

    results, baseline = tmp_path / "all_eval_results.json", tmp_path / "base.json"
    atomic_write_text(results, json.dumps({"version": 0, "payload": [0] * 300000}))
    write_baseline(baseline, {"sae0": {"l0": 0.5}})
    rng = random.Random(1234)
    rounds: set[int] = set()
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(results), str(baseline)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.01, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        data = json.loads(results.read_text())  # parses: a complete version, never a part
        assert data["version"] in (0, 1, 2) and data["payload"] == [data["version"]] * 300000
        loaded = load_baseline(baseline)
        assert loaded.value("sae0", "l0") in (0.5, 1.5, 2.5)
        rounds.add(int((loaded.provenance("sae0") or {}).get("round", 0)))
    assert min(rounds) >= 1  # each writer replaced the files before it was killed


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX console script")
def test_concurrent_runs_share_an_output_folder_safely(tiny: Assets, tmp_path: Path) -> None:
    """A real ``saeval run`` process writes into a folder while this process keeps writing its own
    run's outputs there; every file stays complete and no temporary file is left behind."""
    from pytest_saeval.report.files import write_outputs
    from pytest_saeval.run.session import RunOptions, Session
    from pytest_saeval.spec.loader import load_suite

    a = write_suite(tmp_path / "alpha.yaml", tiny, second=False)
    b = write_suite(tmp_path / "beta.yaml", tiny)
    out = tmp_path / "out"
    ours = Session(RunOptions(use_cache=False)).run([load_suite(a)])
    script = Path(sys.executable).with_name("saeval")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pytest_saeval.cli"]
    proc = subprocess.Popen([*command, "run", str(b), "--output-dir", str(out), "--no-cache"], cwd=tmp_path,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    writes = 0
    try:
        while proc.poll() is None:  # keep rewriting until the other process has written and exited
            write_outputs(ours, out)
            writes += 1
            time.sleep(0.02)  # leave the CPU to the other process
        write_outputs(ours, out)
    finally:
        stdout, stderr = proc.communicate(timeout=550)
    assert proc.returncode == 0, stdout + stderr
    assert stderr == ""  # no progress bar (not a terminal), no loading noise, no warnings
    assert stdout.splitlines()[0] == str(b) and stdout.count("PASS") == 2
    assert f"saeval: wrote 5 files to {out}" in stdout  # one JSON per SAE, both aggregates, summary.md
    assert writes > 10

    names = sorted(p.name for p in out.iterdir())
    assert names == ["all_eval_results.csv", "all_eval_results.json", "alpha__sae0.json", "beta__sae0.json",
                     "beta__topk.json", "summary.md"]  # no temporary files left behind
    singles = {name: load(out / name) for name in names[2:5]}
    assert singles["beta__topk.json"]["eval_cfg"]["suite"] == str(b)
    combined = load(out / "all_eval_results.json")
    assert combined == [singles["alpha__sae0.json"]]  # this process wrote last: its complete list
    with open(out / "all_eval_results.csv", newline="") as fh:
        assert [r["unique_id"] for r in csv.DictReader(fh)] == ["sae0"]
