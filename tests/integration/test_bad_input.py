"""The bad-input matrix through ``saeval run``: exit code 2 and one located line, never a traceback.

The cases live in ``badinput/`` (shared with the pytest side): a bad input is exit 2 and one located
line; something that cannot be written is exit 2 and one ``cannot write X: reason`` line; a cache that
cannot be used is one warning and a correct run; ids that used to collide are a correct run. No message
is longer than :data:`MESSAGE_CAP`, bounded inputs end within their time, and code in an input never
runs. Beyond the matrix: NaN and infinite metrics fail their gates (exit 1) and are never written as
numbers, and neither pickled code in a token file nor a YAML python tag ever runs.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_saeval.cli import main
from tests.integration.badinput.cases import (
    CASES,
    ROUND_FOUR,
    ROUND_ONE,
    ROUND_THREE,
    ROUND_TWO,
    Assets,
    BadInputCase,
    expected_location,
    materialise,
    shared_assets,
)
from tests.integration.badinput.faults import faulty_folder

RUN_FLAGS = ("--no-cache", "--no-progress")
MESSAGE_CAP = 2000
"""Longest line any case may print (messages are cut at 800 characters of message and of fix)."""


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return shared_assets(tmp_path_factory)


def _no_model_load(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the model was loaded for a problem that can be found without it")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_message(case: BadInputCase, suite: Path, err: str) -> str:
    """The one-line message on stderr, checked against the case; returns it."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err[:3000]}"
    message = lines[0]
    assert len(message) < MESSAGE_CAP, f"a {len(message)}-character message"
    assert message.startswith("saeval: error: "), message
    if case.outcome == "io":
        assert "cannot write " in message and ". Fix: " in message, message
        if case.key is not None:
            assert message.startswith(f"saeval: error: {case.key}: "), message
        for text in case.expect:
            assert text in message, f"expected {text!r} in {message!r}"
        return message
    file, line = expected_location(case, suite)
    where = f"{file}:{line}: " if line is not None else f"{file}"
    assert where in message, f"expected {where!r} in {message!r}"
    if case.key is not None:
        assert f": {case.key}: " in message, f"expected key {case.key!r} in {message!r}"
    assert ". Fix: " in message and message.split(". Fix: ", 1)[1].strip(), f"no fix in {message!r}"
    for text in case.expect:
        assert text in message, f"expected {text!r} in {message!r}"
    return message


def test_the_matrix_is_large_and_well_formed() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(ROUND_ONE) == 61 and len(ROUND_TWO) == 53 and len(ROUND_THREE) == 20 and len(ROUND_FOUR) == 29
    assert len(CASES) == 163
    assert sum(c.loads_model for c in CASES) >= 15  # source problems found only with the model loaded
    # source problems (tokens, model and SAE folders, factories) found before any model loads
    sources = [c for c in CASES if c.outcome == "error" and not c.loads_model and c.key is not None
               and c.key.startswith(("data.tokens", "model.path", "model.factory", "saes[0].path"))]
    assert len(sources) >= 15, [c.name for c in sources]
    assert sum(c.marker is not None for c in CASES) >= 5  # code that must never run
    assert {c.outcome for c in CASES} == {"error", "io", "warning", "ok"}
    assert sum(c.fault is not None for c in CASES) >= 6  # read-only and full places


def test_the_readme_states_the_count_tested() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"{len(CASES)} bad-input cases" in readme


@contextlib.contextmanager
def _environment(case: BadInputCase, folder: Path) -> Iterator[str | None]:
    """The case's environment variables and fault for the block; yields how the fault was made."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in case.environment(folder).items():
            mp.setenv(key, value)
        if "SAEVAL_CACHE_DIR" not in dict(case.env):
            mp.delenv("SAEVAL_CACHE_DIR", raising=False)
        mp.chdir(folder)  # a default cache folder lands in the case folder
        if case.fault is None:
            yield None
        else:
            with faulty_folder(folder / "fault", case.fault) as how:
                yield how


def _run_case(case: BadInputCase, folder: Path, suite: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the case through ``saeval run``; its checks run while its fault is still in place."""
    flags = ["--no-progress"] if case.outcome == "warning" or "--cache-dir" in case.args else list(RUN_FLAGS)
    if not any(a == "--output-dir" for a in case.args) and case.outcome == "error":
        flags += ["--output-dir", str(folder.parent / "out")]
    with _environment(case, folder):
        started = time.monotonic()
        rc = main(["run", str(suite), *case.command_args(folder), *flags])
        took = time.monotonic() - started
        out, err = capsys.readouterr()
        if case.check is not None and rc in (0, 1, 2):
            case.check(folder)
    if case.max_seconds is not None:
        assert took < case.max_seconds, f"took {took:.2f} s (bounded input must end within {case.max_seconds} s)"
    return rc, out, err


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_exits_2_with_one_located_line(
    case: BadInputCase, tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if case.needs_no_cuda and _cuda_available():
        pytest.skip("the case needs a machine without CUDA")
    if case.outcome == "error" and not case.loads_model:  # found before any model loads, or this fails the test
        monkeypatch.setattr("pytest_saeval.sources.models.load_model", _no_model_load)
    suite = materialise(case, tmp_path / "case", tiny)
    rc, out, err = _run_case(case, tmp_path / "case", suite, capsys)
    if case.outcome in ("ok", "warning"):
        assert rc == 0, f"exit {rc}\nstdout:\n{out}\nstderr:\n{err}"
        assert "Traceback" not in err and "PASS" in out
        for text in case.expect if case.outcome == "ok" else ():
            assert text in out, f"expected {text!r} in the output:\n{out}"
        if case.outcome == "warning":
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("saeval: warning: "), err
            assert all(text in lines[0] for text in case.expect), lines[0]
            assert "timings not kept" not in out  # the cache given up on is not tried again at the end
        return
    assert rc == 2, f"exit {rc}\nstdout:\n{out}\nstderr:\n{err[:3000]}"
    _check_message(case, suite, err)
    if case.outcome == "error":
        assert "PASS" not in out and "FAIL" not in out  # a config error is never a gate result
        assert not (tmp_path / "out").exists()  # nothing written for a run that could not start
    if case.marker is not None:
        assert not (suite.parent / case.marker).exists(), "code in the input ran"


def test_bad_input_in_a_real_subprocess(tiny: Assets, tmp_path: Path) -> None:
    """The console script itself: exit 2, one line on stderr, and the YAML tag's command never runs."""
    case = next(c for c in CASES if c.name == "yaml-python-tag")
    suite = materialise(case, tmp_path / "case", tiny)
    script = Path(sys.executable).with_name("saeval")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pytest_saeval.cli"]
    proc = subprocess.run([*command, "run", str(suite), *RUN_FLAGS], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc
    _check_message(case, suite, proc.stderr)
    assert proc.stdout == ""
    assert not (suite.parent / "PWNED").exists() and not (tmp_path / "PWNED").exists()


def test_pickled_token_file_is_refused_and_its_code_never_runs(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = next(c for c in CASES if c.name == "tokens-pickle-with-code")
    suite = materialise(case, tmp_path / "case", tiny)
    # The payload really is code: an unrestricted unpickler would create the marker.
    import pickle

    import torch

    with pytest.raises(pickle.UnpicklingError):
        torch.load(suite.parent / "t.pt", weights_only=True)
    assert main(["run", str(suite), *RUN_FLAGS]) == 2
    message = _check_message(case, suite, capsys.readouterr().err)
    assert "weights_only=True" in message
    assert not (suite.parent / "PWNED").exists()


# ---------------------------------------------------------------------------------------------
# non-finite metrics: a gate failure (exit 1), never a number in the outputs or the baseline


def _save_broken_sae(folder: Path, *, kind: str) -> Path:
    import torch

    from tests.helpers import build_tiny_sae

    if kind == "nan":  # finite weights (NaN weights are refused) whose gated magnitudes overflow: exp(100) is
        # inf in float32, and a closed gate times inf is NaN, so every feature activation is NaN
        sae = build_tiny_sae(architecture="gated", seed=7, hook_name="blocks.0.hook_resid_pre", d_in=32, d_sae=64)
        with torch.no_grad():
            sae.r_mag.fill_(100.0)
    else:  # reconstructions overflow float32: mse and the norms become inf
        sae = build_tiny_sae(seed=7, hook_name="blocks.0.hook_resid_pre", d_in=32, d_sae=64)
        with torch.no_grad():
            sae.W_dec.mul_(1e30)
    sae.save_model(folder)
    return folder


def _strict_json(path: Path) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{path.name} holds the non-JSON number {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_nan_and_inf_metrics_fail_their_gates_and_are_never_written_as_numbers(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nan_sae = _save_broken_sae(tmp_path / "nan-sae", kind="nan")
    inf_sae = _save_broken_sae(tmp_path / "inf-sae", kind="inf")
    suite = tmp_path / "nonfinite.yaml"
    suite.write_text(
        f"""\
model:
  path: {tiny.model}
  device: cpu
data:
  tokens: {tiny.tokens}
  context_size: 8
  batch_size_prompts: 2
  n_reconstruction_batches: 1
  n_sparsity_batches: 1
baseline: base.json
saes:
  - id: nan-sae
    path: {nan_sae}
    gates:
      explained_variance: ">= -1000"
      l0: ">= 0"
  - id: inf-sae
    path: {inf_sae}
    gates:
      mse: "<= 1e300"
"""
    )
    out_dir = tmp_path / "out"
    # forced: the gates fail on purpose, and the baseline must still never hold NaN or inf as numbers
    rc = main(["run", str(suite), "--output-dir", str(out_dir), "--update-baseline-force", *RUN_FLAGS])
    out, err = capsys.readouterr()
    assert rc == 1, out + err
    assert "FAILED [nan-sae] explained_variance = NaN" in out and f" — {suite}:15\n" in out
    assert "NaN never passes" in out
    assert "FAILED [inf-sae] mse = inf" in out and f" — {suite}:20\n" in out
    assert "inf never passes" in out
    assert "l0" in out and out.count("PASS") == 1  # the finite l0 still passes

    for path in out_dir.glob("*.json"):
        _strict_json(path)  # no NaN / Infinity tokens anywhere
    record = _strict_json(out_dir / "nonfinite__nan-sae.json")
    assert record["metrics"]["explained_variance"] is None
    assert isinstance(record["metrics"]["l0"], float) and math.isfinite(record["metrics"]["l0"])
    assert _strict_json(out_dir / "nonfinite__inf-sae.json")["metrics"]["mse"] is None
    with open(out_dir / "all_eval_results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["unique_id"] for r in rows] == ["nan-sae", "inf-sae"]
    assert rows[0]["metrics.explained_variance"] == "" and rows[1]["metrics.mse"] == ""
    for row in rows:
        for column, cell in row.items():
            try:
                value = float(cell)
            except ValueError:
                continue
            assert math.isfinite(value), (column, cell)

    baseline = _strict_json(tmp_path / "base.json")
    assert "explained_variance" not in baseline["saes"]["nan-sae"]  # left out, never recorded as a number
    assert "mse" not in baseline["saes"]["inf-sae"]
    assert "l0" in baseline["saes"]["nan-sae"]
