"""``saeval run``: one table per suite, the options reaching the session, the progress bar, and each
model loaded once for suites that share it.

Runs ``pytest_saeval.cli.main([...])`` in-process on tiny assets (fast); the real console script runs
in ``test_bad_input.py`` (a bad input) and ``test_concurrent_writes.py`` (two concurrent runs).
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_saeval.cli import main
from pytest_saeval.run.session import RunOptions
from pytest_saeval.run.session import Session as _REAL_SESSION
from tests.integration.badinput.cases import Assets
from tests.integration.cli_helpers import NO_CACHE, run, write_suite

# ---------------------------------------------------------------------------------------------
# the table and the device option


def test_several_suites_one_table_each(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_suite(tmp_path / "a.yaml", tiny)
    b = write_suite(tmp_path / "b.yaml", tiny, gates1='frac_alive: "> 2"')
    rc, out, _ = run(capsys, str(a), str(b), *NO_CACHE)
    assert rc == 1  # one failing gate in b fails the run
    assert out.splitlines().count(str(a)) == 1 and out.splitlines().count(str(b)) == 1
    assert out.splitlines()[-1] == "saeval: 3 passed, 1 failed (4 SAEs in 2 suites)"


def test_device_option_overrides_the_suite(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "cuda.yaml", tiny)
    suite.write_text(suite.read_text().replace("device: cpu", "device: cuda:7"))
    rc, out, err = run(capsys, str(suite), "--device", "cpu", "--output-dir", str(tmp_path / "out"), *NO_CACHE)
    assert rc == 0, out + err
    record = json.loads((tmp_path / "out" / "cuda__sae0.json").read_text())
    assert record["provenance"]["device"] == "cpu"


# ---------------------------------------------------------------------------------------------
# options reach the session; the model is loaded once


class _Recorder:
    """Stands in for Session: records its options, runs the real thing (without the caches)."""

    calls: list[dict[str, Any]] = []

    def __init__(self, options: RunOptions) -> None:
        type(self).calls.append(dataclasses.asdict(options))
        self._session = _REAL_SESSION(dataclasses.replace(options, use_cache=False))

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.run(*args, **kwargs)

    @property
    def cache_folder(self) -> Path | None:
        return self._session.cache_folder


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[_Recorder]:
    import pytest_saeval.run.session as session_module

    _Recorder.calls = []
    monkeypatch.setattr(session_module, "Session", _Recorder)  # the command imports it when it runs
    return _Recorder


def test_options_reach_the_session(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str], recorder: type[_Recorder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    suite = str(write_suite(tmp_path / "s.yaml", tiny))
    cache = tmp_path / "cache"
    assert run(capsys, suite, "--device", "cpu", "--cache-dir", str(cache))[0] == 0
    assert run(capsys, suite, "--no-cache")[0] == 0
    assert run(capsys, suite)[0] == 0
    # a suite in a project: the cache defaults to the project's root, wherever saeval is run from
    (tmp_path / "repo" / "tests").mkdir(parents=True)
    (tmp_path / "repo" / "pyproject.toml").write_text("[project]\nname = 'repo'\n")
    in_repo = str(write_suite(tmp_path / "repo" / "thresholds" / "s.yaml", tiny))
    monkeypatch.chdir(tmp_path / "repo" / "tests")
    assert run(capsys, in_repo)[0] == 0
    monkeypatch.setenv("SAEVAL_CACHE_DIR", str(tmp_path / "env-cache"))
    assert run(capsys, in_repo)[0] == 0
    first, second, third, fourth, fifth = recorder.calls
    assert first["device"] == "cpu" and first["cache_dir"] == cache and first["use_cache"] is True
    assert second["use_cache"] is False and second["device"] is None
    # no project around the suite: next to it
    assert third["use_cache"] is True and third["cache_dir"] == tmp_path / ".saeval-cache"
    assert fourth["cache_dir"] == tmp_path / "repo" / ".saeval-cache"
    assert fifth["cache_dir"] == tmp_path / "env-cache"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_when_stderr_is_a_terminal(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str], recorder: type[_Recorder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    suite = str(write_suite(tmp_path / "s.yaml", tiny))
    rc, _, err = run(capsys, suite, "--no-cache")
    assert rc == 0 and err == "" and recorder.calls[-1]["progress"] is False

    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["run", suite, "--no-cache"]) == 0
    assert recorder.calls[-1]["progress"] is True
    assert "saeval batches" in terminal.getvalue()  # the engine's bar, on stderr
    assert "Loading weights" not in terminal.getvalue()

    terminal2 = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal2)
    assert main(["run", suite, "--no-cache", "--no-progress"]) == 0
    assert recorder.calls[-1]["progress"] is False and terminal2.getvalue() == ""


def test_each_model_is_loaded_once_when_suites_share_it(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytest_saeval.run.evaluation as evaluation
    import pytest_saeval.sources.models as models

    loads: list[dict[str, Any]] = []
    passes: list[list[str]] = []
    real_load, real_evaluate = models.load_model, evaluation.run_pass

    def counting_load(**kwargs: Any) -> Any:
        loads.append(kwargs)
        return real_load(**kwargs)

    def counting_evaluate(model: Any, saes: Any, *args: Any, **kwargs: Any) -> Any:
        passes.append(list(saes))
        return real_evaluate(model, saes, *args, **kwargs)

    monkeypatch.setattr(models, "load_model", counting_load)
    monkeypatch.setattr(evaluation, "run_pass", counting_evaluate)
    a = write_suite(tmp_path / "a" / "one.yaml", tiny)
    b = write_suite(tmp_path / "b" / "two.yaml", tiny, gates0='l1: ">= 0"')
    rc, out, err = run(capsys, str(a), str(b), *NO_CACHE)
    assert rc == 0, out + err
    assert len(loads) == 1, loads
    assert len(passes) == 1 and len(passes[0]) == 4  # one fused pass serves both suites' SAEs


def test_a_suite_without_gates_shows_what_it_measured(tiny: Assets, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "bare.yaml", tiny, second=False)
    suite.write_text(suite.read_text().replace("    gates:\n      l0: \">= 0\"\n", ""))
    rc, out, err = run(capsys, str(suite), "--no-cache", "--no-progress")
    assert rc == 0 and err == "", out + err
    lines = out.splitlines()
    assert lines[1] == "  no gates; measured 1 SAE:"
    assert lines[2].startswith("    sae0: explained_variance ") and " l0 " in lines[2]
    assert lines[3] == f"  propose gates from these measurements with `saeval init {suite}`"
    assert lines[-1] == "saeval: 0 passed, 0 failed (1 SAE in 1 suite)"  # one SAE: no plural
