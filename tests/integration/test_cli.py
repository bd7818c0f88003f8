"""The ``saeval`` command: exit codes, the table, options, quiet loading, baselines and provenance notes.

Runs ``pytest_saeval.cli.main([...])`` in-process on tiny assets (fast); the real console script runs
in ``test_bad_input.py`` (a bad input) and ``test_outputs.py`` (two concurrent runs).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_saeval.cli import main
from pytest_saeval.run.quiet import quiet_libraries
from pytest_saeval.run.session import RunOptions
from pytest_saeval.run.session import Session as _REAL_SESSION
from tests.integration.badinput.cases import Assets, shared_assets

NO_CACHE = ("--no-cache", "--no-progress")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return shared_assets(tmp_path_factory)


def write_suite(
    path: Path,
    tiny: Assets,
    *,
    gates0: str = 'l0: ">= 0"',
    gates1: str = 'frac_alive: ">= 0"',
    sae0: Path | None = None,
    tokens: Path | None = None,
    baseline: str | None = None,
) -> Path:
    """A valid suite with two SAEs (``sae0`` on block 0, ``topk`` on block 1)."""
    lines = [
        "model:",
        f"  path: {tiny.model}",
        "  device: cpu",
        "data:",
        f"  tokens: {tokens or tiny.tokens}",
        "  context_size: 8",
        "  batch_size_prompts: 2",
        "  n_reconstruction_batches: 2",
        "  n_sparsity_batches: 2",
    ]
    if baseline is not None:
        lines.append(f"baseline: {baseline}")
    lines += [
        "saes:",
        "  - id: sae0",
        f"    path: {sae0 or tiny.sae}",
        "    gates:",
        f"      {gates0}",
        "  - id: topk",
        f"    path: {tiny.sae_topk}",
        "    gates:",
        f"      {gates1}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(needle)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["run", *args])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------------------
# exit codes and the table


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
    assert failed[0].startswith(f"FAILED {suite}:{line_of(suite, 'l0:')}: [sae0] l0 = ")
    assert "needs <= 0.5" in failed[0]
    assert out.splitlines()[-1] == "saeval: 1 passed, 1 failed (2 SAEs in 1 suite)"


def test_several_suites_one_table_each(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_suite(tmp_path / "a.yaml", tiny)
    b = write_suite(tmp_path / "b.yaml", tiny, gates1='frac_alive: "> 2"')
    rc, out, _ = run(capsys, str(a), str(b), *NO_CACHE)
    assert rc == 1  # one failing gate in b fails the run
    assert out.splitlines().count(str(a)) == 1 and out.splitlines().count(str(b)) == 1
    assert out.splitlines()[-1] == "saeval: 3 passed, 1 failed (4 SAEs in 2 suites)"


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
        "Fix: use --device auto or cpu, or run on a machine with a CUDA GPU and a CUDA build of torch"
    )


def test_device_option_overrides_the_suite(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "cuda.yaml", tiny)
    suite.write_text(suite.read_text().replace("device: cpu", "device: cuda:7"))
    rc, out, err = run(capsys, str(suite), "--device", "cpu", "--output-dir", str(tmp_path / "out"), *NO_CACHE)
    assert rc == 0, out + err
    record = json.loads((tmp_path / "out" / "cuda__sae0.json").read_text())
    assert record["provenance"]["device"] == "cpu"


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


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[_Recorder]:
    import pytest_saeval.run.session as session_module  # the command imports it when it runs

    _Recorder.calls = []
    monkeypatch.setattr(session_module, "Session", _Recorder)
    return _Recorder


def test_options_reach_the_session(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str], recorder: type[_Recorder]
) -> None:
    suite = str(write_suite(tmp_path / "s.yaml", tiny))
    cache = tmp_path / "cache"
    assert run(capsys, suite, "--device", "cpu", "--cache-dir", str(cache))[0] == 0
    assert run(capsys, suite, "--no-cache")[0] == 0
    assert run(capsys, suite)[0] == 0
    first, second, third = recorder.calls
    assert first["device"] == "cpu" and first["cache_dir"] == cache and first["use_cache"] is True
    assert second["use_cache"] is False and second["device"] is None
    assert third["use_cache"] is True and third["cache_dir"] is None


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


# ---------------------------------------------------------------------------------------------
# quiet loading


def test_quiet_loading_silences_only_library_noise_and_restores_state() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with quiet_libraries():
                assert hf_logging.get_verbosity() == hf_logging.ERROR
                assert not hf_logging.is_progress_bar_enabled()
                warnings.warn("HookedTransformer is deprecated. Use TransformerBridge.", DeprecationWarning,
                              stacklevel=1)
                warnings.warn("a warning of our own", UserWarning, stacklevel=1)
        assert [str(w.message) for w in seen] == ["a warning of our own"]
        assert hf_logging.get_verbosity() == hf_logging.INFO
        assert hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity_warning()


# ---------------------------------------------------------------------------------------------
# --update-baseline and provenance notes


def test_update_baseline_checks_old_values_then_writes_a_sorted_rounded_file(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "baselines" / "b.json"
    base.parent.mkdir()
    base.write_text(json.dumps({"saes": {"sae0": {"l0": 1000000.0}, "gone": {"l0": 1.0}}}))
    suite = write_suite(tmp_path / "s.yaml", tiny, gates0='l0: ">= baseline - 1"', baseline="baselines/b.json")

    rc, out, err = run(capsys, str(suite), "--update-baseline", *NO_CACHE)
    assert rc == 1, out + err  # compared with the OLD value (1e6), so it fails in this run
    assert re.search(r"FAILED .*: \[sae0\] l0 = [0-9.]+ \[[0-9.]+, [0-9.]+\], needs >= baseline - 1 \(= 999999\)", out), out
    assert f"saeval: updated baseline {base}" in out

    text = base.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"  # sorted, stable layout
    assert set(data["saes"]) == {"sae0", "topk", "gone"}  # SAEs not in this run keep their values
    assert data["saes"]["gone"] == {"l0": 1.0}
    l0 = data["saes"]["sae0"]["l0"]
    assert l0 == float(f"{l0:.6g}") and 0 < l0 < 64
    assert set(data["provenance"]["sae0"]) >= {"sae_xxh3", "model_xxh3", "tokens_xxh3"}

    rc, out, _ = run(capsys, str(suite), *NO_CACHE)  # now against the recorded value
    assert rc == 0, out
    assert re.search(r"sae0\s+l0\s+[0-9.]+\s+\[[0-9.]+, [0-9.]+\]\s+>= baseline - 1 \(= [0-9.]+\)\s+PASS", out), out
    assert base.read_text() == text  # a plain run never writes the baseline


def test_update_baseline_creates_a_missing_file(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "s.yaml", tiny, gates0='l0: ">= baseline - 1"', baseline="new.json")
    rc, _, err = run(capsys, str(suite), *NO_CACHE)
    assert rc == 2 and "not found" in err  # without the option a missing baseline is bad input

    rc, out, err = run(capsys, str(suite), "--update-baseline", "--output-dir", str(tmp_path / "out"), *NO_CACHE)
    assert rc == 0, out + err
    assert re.search(r"sae0\s+l0\s+\S+\s+\[[0-9.]+, [0-9.]+\]\s+>= baseline - 1\s+UNCHECKED", out)
    (gate,) = json.loads((tmp_path / "out" / "s__sae0.json").read_text())["gates"]
    assert gate["passed"] is None and gate["message"] == "not checked: the baseline has no value yet"
    assert f"UNCHECKED {suite}:{line_of(suite, 'l0:')}: [sae0] l0" in out
    assert "saeval: 1 passed, 0 failed, 1 unchecked (2 SAEs in 1 suite)" in out.splitlines()
    assert (tmp_path / "new.json").is_file()
    assert run(capsys, str(suite), *NO_CACHE)[0] == 0


def test_update_baseline_without_a_baseline_key_is_bad_input(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path / "s.yaml", tiny)
    rc, _, err = run(capsys, str(suite), "--update-baseline", *NO_CACHE)
    assert rc == 2
    assert err.startswith(f"saeval: error: {suite}: baseline: updating the baseline needs a baseline file")


def test_a_note_when_the_baseline_was_measured_on_other_weights_or_tokens(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from pytest_saeval.run.session import RunOptions, Session
    from pytest_saeval.spec.loader import load_suite
    from tests.helpers import save_tiny_sae

    sae = save_tiny_sae(tmp_path / "sae", seed=0, hook_name="blocks.0.hook_resid_pre", d_in=32, d_sae=64)
    tokens = tmp_path / "tokens.npy"
    np.save(tokens, np.load(tiny.tokens))
    suite = write_suite(tmp_path / "s.yaml", tiny, sae0=sae, tokens=tokens, baseline="b.json",
                        gates0='l0: ">= baseline - 100"')
    assert run(capsys, str(suite), "--update-baseline", *NO_CACHE)[0] == 0
    rc, out, _ = run(capsys, str(suite), *NO_CACHE)
    assert rc == 0 and "NOTE" not in out  # same inputs: nothing to say

    save_tiny_sae(sae, seed=5, hook_name="blocks.0.hook_resid_pre", d_in=32, d_sae=64)  # retrained SAE
    rc, out, _ = run(capsys, str(suite), *NO_CACHE)
    notes = [line for line in out.splitlines() if line.startswith("NOTE ")]
    assert len(notes) == 1, out
    assert notes[0].startswith(f"NOTE {suite}: [sae0] the baseline {tmp_path / 'b.json'} was recorded on different SAE weights")
    assert "model weights" not in notes[0] and "tokens" not in notes[0]
    assert "--update-baseline" in notes[0]

    changed = np.load(tiny.tokens)
    changed[:, 1] = 5
    np.save(tokens, changed)
    runs = Session(RunOptions(use_cache=False)).run([load_suite(suite)])
    (note_sae0, note_topk) = runs[0].notes  # SuiteRun.notes, as the plugin shows them
    assert "SAE weights" in note_sae0 and " and tokens (xxh3 " in note_sae0
    assert note_topk.startswith(f"{suite}: [topk]") and "different tokens (xxh3" in note_topk


def test_provenance_notes_from_hand_set_values(tmp_path: Path) -> None:
    from pytest_saeval.run.provenance import Provenance, provenance_notes
    from pytest_saeval.spec.baseline import Baseline

    recorded = Provenance.from_dict({"sae_xxh3": "a" * 32, "model_xxh3": "b" * 32, "tokens_xxh3": "c" * 32,
                                     "torch_version": "2.12.0", "device": "cpu"}).to_dict()
    baseline = Baseline(path=tmp_path / "b.json", values={"s": {"l0": 1.0}}, provenances={"s": recorded})

    def current(**changes: str) -> Provenance:
        return Provenance.from_dict({**recorded, **changes})

    assert provenance_notes("x.yaml", {"s": current()}, baseline) == []
    assert provenance_notes("x.yaml", {"s": current()}, None) == []
    assert provenance_notes("x.yaml", {"other": current()}, baseline) == []  # nothing recorded for it
    only_sae = Baseline(path=tmp_path / "b.json", values={"s": {"l0": 1.0}}, provenances={"s": {"sae_xxh3": "a" * 32}})
    assert provenance_notes("x.yaml", {"s": current(sae_xxh3="d" * 32)}, only_sae) == [
        f"x.yaml: [s] the baseline {tmp_path / 'b.json'} was recorded on different SAE weights "
        "(xxh3 aaaaaaaaaaaa -> dddddddddddd); gates that use `baseline` compare against values measured on "
        "other inputs. Fix: if the change is intended, record new values with `saeval run --update-baseline` "
        "(or `pytest --saeval-update-baseline`)"
    ]
    (note,) = provenance_notes("x.yaml", {"s": current(model_xxh3="e" * 32, tokens_xxh3="f" * 32, device="cuda:0")},
                               baseline)
    assert "different model weights (xxh3 bbbbbbbbbbbb -> eeeeeeeeeeee) and tokens (xxh3" in note
    assert "(also changed: device cpu -> cuda:0)" in note
    (env_only,) = provenance_notes("x.yaml", {"s": current(torch_version="2.13.0")}, baseline)
    assert env_only == (f"x.yaml: [s] the baseline {tmp_path / 'b.json'} was recorded with another "
                        "environment (torch 2.12.0 -> 2.13.0); small numeric differences are possible")


def test_cache_options_reach_the_results_cache(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    suite = str(write_suite(tmp_path / "s.yaml", tiny))
    assert run(capsys, suite, "--no-cache", "--output-dir", "plain")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "s.yaml"]  # --no-cache: no cache folder

    cache = tmp_path / "cache"
    assert run(capsys, suite, "--cache-dir", str(cache), "--output-dir", "first")[0] == 0
    assert any(p.is_file() for p in cache.rglob("*"))
    assert run(capsys, suite, "--cache-dir", str(cache), "--output-dir", "second")[0] == 0  # served from the cache
    plain = json.loads((tmp_path / "plain" / "all_eval_results.json").read_text())
    for tag in ("first", "second"):
        assert json.loads((tmp_path / tag / "all_eval_results.json").read_text()) == plain


def test_a_bad_baseline_file_is_reported_before_any_evaluation(tiny: Assets, tmp_path: Path) -> None:
    """A corrupt baseline file fails the run at once: no model pass is spent on it."""
    from pytest_saeval.errors import BaselineError
    from pytest_saeval.spec.loader import load_suite

    (tmp_path / "b.json").write_text('{"format": 1, "values": {"sae0": {"l0": }}')
    suite = write_suite(tmp_path / "s.yaml", tiny, baseline="b.json", gates0='l0: ">= baseline - 1"')
    session = _REAL_SESSION(RunOptions(use_cache=False))
    with pytest.raises(BaselineError) as info:
        session.run([load_suite(suite)])
    assert str(tmp_path / "b.json") in str(info.value)
    assert session.evaluations == 0
