"""The ``saeval`` command's exit codes: 0 every gate passed, 1 a gate failed, 2 bad input (one line, no traceback),
3 an internal error (with its traceback); ``--help`` exits 0."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pytest_saeval.cli import main
from tests.integration.badinput.cases import Assets
from tests.integration.cli_helpers import NO_CACHE, line_of, run, write_suite


def test_all_gates_pass_exit_0_with_a_table(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "good.yaml", tiny, gates0='l0: [">= 0", "<= 64"]')
    rc, out, err = run(capsys, str(suite), *NO_CACHE)
    assert rc == 0, out + err
    assert err == ""  # no progress bar off a terminal, no "Loading weights", no warnings
    lines = out.splitlines()
    assert lines[0] == str(suite)
    assert re.fullmatch(r"  sae\s+metric\s+value\s+95% interval\s+bound\s+result\s*", lines[1])
    assert re.fullmatch(r"  sae0\s+l0\s+[0-9.]+\s+\[[0-9.]+, [0-9.]+\]\s+>= 0 and <= 64\s+PASS\s*", lines[3]), lines[3]
    assert re.fullmatch(r"  topk\s+frac_alive\s+[0-9.]+\s+>= 0\s+PASS\s*", lines[4]), lines[4]
    assert "  2 passed, 0 failed" in lines
    assert lines[-1] == "saeval: 2 passed, 0 failed (2 SAEs in 1 suite)"
    assert "FAILED" not in out


def test_a_failing_gate_exits_1_and_names_file_line_and_shortfall(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path / "bad.yaml", tiny, gates0='l0: "<= 0.5"')
    rc, out, err = run(capsys, str(suite), *NO_CACHE)
    assert rc == 1, out + err
    assert err == ""
    row = next(line for line in out.splitlines() if line.strip().startswith("sae0"))
    assert row.rstrip().endswith("FAIL") and "<= 0.5" in row
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1
    # the number first, the place last: a cut line keeps the number
    assert re.fullmatch(rf"FAILED \[sae0\] l0 = [0-9.]+ \[[0-9.]+, [0-9.]+\], needs <= 0.5 \(over by [0-9.]+\) — "
                        rf"{re.escape(str(suite))}:{line_of(suite, 'l0:')}", failed[0]), failed[0]
    assert out.splitlines()[-1] == "saeval: 1 passed, 1 failed (2 SAEs in 1 suite)"


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        ([], "the following arguments are required"),
        (["--frobnicate", "x.yaml"], "unrecognized arguments"),
        (["{missing}"], "suite file not found"),
        (["{suite}", "--device", "gpu"], "--device: unknown device 'gpu'"),
        (["{suite}", "--output-dir", "{suite}"], "--output-dir: the output folder is a file"),
        (["{suite}", "--cache-dir", "{suite}"], "--cache-dir: the cache folder is a file"),
    ],
    ids=["no-suite", "unknown-option", "missing-suite", "bad-device", "output-dir-is-file", "cache-dir-is-file"],
)
def test_usage_errors_exit_2_with_one_line(
    args: list[str], expect: str, tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path / "good.yaml", tiny)
    argv = [a.format(suite=suite, missing=tmp_path / "nope.yaml") for a in args]
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("saeval: error: ") and expect in err and ". Fix: " in err


def test_device_cuda_without_cuda_is_bad_input(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    suite = write_suite(tmp_path / "good.yaml", tiny)
    rc, _, err = run(capsys, str(suite), "--device", "cuda", *NO_CACHE)
    assert rc == 2
    assert err.strip() == (
        "saeval: error: --device: device 'cuda' asked for, but CUDA is not available on this machine. "
        "Fix: use --device auto or --device cpu, or run on a machine with a CUDA GPU and a CUDA build of torch"
    )


def test_an_internal_error_exits_3_with_its_traceback(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytest_saeval.run.session as session_module

    def boom(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(session_module.Session, "run", boom)
    rc, out, err = run(capsys, str(write_suite(tmp_path / "s.yaml", tiny)), *NO_CACHE)
    assert rc == 3
    assert "Traceback" in err and "RuntimeError: unexpected" in err
    assert err.strip().splitlines()[-1].startswith("saeval: internal error: RuntimeError: unexpected")


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--output-dir", "--device", "--update-baseline", "--no-cache", "--cache-dir", "--no-progress"):
        assert option in out
