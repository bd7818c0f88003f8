"""The bad-input matrix through pytest: every case is an error naming file:line, key and fix.

All cases about what a suite file (or a file it names) holds are materialised into one project and
collected in ONE pytest run (each suite file is its own group, so one case's error cannot hide
another's). For every case the run must report an error carrying the case's message, and no gate of
that suite may pass or be skipped: a configuration error is never a gate result. Hostile input stays
cheap: the whole run prints at most :data:`OUTPUT_CAP` bytes and no case's report holds a traceback.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.badinput.cases import CASES, Assets, expected_location, materialise, shared_assets

OUTPUT_CAP = 2_000_000
"""Bytes the whole matrix run may print (an alias bomb once printed 67 MB)."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return shared_assets(tmp_path_factory)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def matrix_run(tiny: Assets, tmp_path_factory: pytest.TempPathFactory):
    """Materialise every case under ``cases/<name>/`` and run pytest over all of them once."""
    project = tmp_path_factory.mktemp("badinput-pytest")
    cases = [c for c in CASES if c.outcome == "error" and c.pytest and not (c.needs_no_cuda and _cuda_available())]
    suites = {c.name: materialise(c, project / "cases" / c.name, tiny) for c in cases}
    (project / "pytest.ini").write_text("[pytest]\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("COLUMNS", "4000")  # keep the short summary's messages whole
    try:
        import subprocess
        import sys

        proc = subprocess.run(
            [sys.executable, "-m", "pytest", *[str(s) for s in suites.values()], "-rA",
             "--continue-on-collection-errors", "-p", "no:cacheprovider", "--saeval-no-cache"],
            cwd=project, capture_output=True, text=True, timeout=1200,
        )
    finally:
        mp.undo()
    return cases, suites, proc


def test_every_case_is_an_error_with_its_message_and_never_a_gate_result(matrix_run) -> None:
    cases, suites, proc = matrix_run
    out = proc.stdout
    assert proc.returncode not in (0, 5), out[-3000:]
    assert len(out) + len(proc.stderr) < OUTPUT_CAP, f"{len(out)} bytes of output"
    assert len(cases) >= 110  # round one and the suite-file cases of rounds two and three
    summary = [line for line in out.splitlines() if re.match(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) ", line)]
    # Section bodies ("____ ERROR collecting cases/x/suite.yaml ____" and the like), by header.
    sections: list[tuple[str, str]] = []
    for chunk in re.split(r"\n(?=_{3,} .* _{3,}\n)", out):
        header, _, body = chunk.partition("\n")
        if header.startswith("___"):
            sections.append((header, body.split("\n=====", 1)[0]))
    problems: list[str] = []
    for case in cases:
        suite = suites[case.name]
        rel = f"cases/{case.name}/"
        mine = [line for line in summary if rel in line]
        outcomes = {line.split(" ", 1)[0] for line in mine}
        if not mine:
            problems.append(f"{case.name}: no result at all")
            continue
        if outcomes - {"ERROR"}:
            problems.append(f"{case.name}: outcomes {sorted(outcomes)} (a bad input must only give errors)")
            continue
        text = "\n".join(mine + [body for header, body in sections if rel in header])
        file, line = expected_location(case, suite)
        where = f"{file.name}:{line}: " if line is not None else file.name
        wanted = [where, *case.expect, "Fix: "]
        if case.key is not None:
            wanted.append(f": {case.key}: ")
        missing = [w for w in wanted if w not in text]
        if missing:
            problems.append(f"{case.name}: missing {missing} in {text!r}")
        if "Traceback" in text:
            problems.append(f"{case.name}: traceback in the message")
        if case.marker is not None and (suite.parent / case.marker).exists():
            problems.append(f"{case.name}: code in the input ran")
    assert not problems, "\n".join(problems) + "\n\n" + out[-3000:]
