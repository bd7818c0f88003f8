"""``saeval run --update-baseline`` and baseline files: gates checked against the old values, the file written
sorted and rounded, created when missing, read before any evaluation, and notes when it was recorded on
other inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_saeval.run.session import RunOptions
from pytest_saeval.run.session import Session as _REAL_SESSION
from tests.integration.badinput.cases import Assets
from tests.integration.cli_helpers import NO_CACHE, line_of, run, write_suite


def test_update_baseline_checks_old_values_then_writes_a_sorted_rounded_file(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "baselines" / "b.json"
    base.parent.mkdir()
    base.write_text(json.dumps({"saes": {"sae0": {"l0": 1000000.0}, "gone": {"l0": 1.0}}}))
    suite = write_suite(tmp_path / "s.yaml", tiny, gates0='l0: ">= baseline - 1"', baseline="baselines/b.json")

    before = base.read_text()
    rc, out, err = run(capsys, str(suite), "--update-baseline", *NO_CACHE)
    assert rc == 1, out + err  # compared with the OLD value (1e6), so it fails in this run
    assert re.search(r"FAILED \[sae0\] l0 = [0-9.]+ \[[0-9.]+, [0-9.]+\], needs >= baseline - 1 \(= 999999\)", out), out
    # a failing run records nothing unless asked, and says why and how
    assert ("saeval: baseline NOT updated: 1 gate failed in this run (fix the SAEs, or record these values anyway "
            "with --update-baseline-force)") in out.splitlines()
    assert base.read_text() == before

    rc, out, err = run(capsys, str(suite), "--update-baseline-force", *NO_CACHE)
    assert rc == 1, out + err
    assert f"saeval: updated baseline {base} (recorded anyway: 1 gate failed in this run)" in out.splitlines()

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
    (unchecked,) = [line for line in out.splitlines() if line.startswith("UNCHECKED ")]
    assert unchecked.startswith("UNCHECKED [sae0] l0 >= baseline - 1: the baseline has no value yet")
    assert unchecked.endswith(f" — {suite}:{line_of(suite, 'l0:')}")
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
    # a retrained SAE is the normal case: information, not an alarm
    assert notes[0].startswith(f"NOTE {suite}: [sae0] baseline recorded on earlier SAE weights (xxh3 ")
    assert notes[0].endswith("): comparing the new weights with it")
    assert "model weights" not in notes[0] and "tokens" not in notes[0]

    changed = np.load(tiny.tokens)
    changed[:, 1] = 5
    np.save(tokens, changed)
    runs = Session(RunOptions(use_cache=False)).run([load_suite(suite)])
    (note_sae0, note_topk) = runs[0].notes  # SuiteRun.notes, as the plugin shows them
    # other tokens: loud, for every SAE, naming every changed input and how to record new values
    assert note_sae0.loud and note_topk.loud
    assert "SAE weights" in note_sae0.text and " and tokens (xxh3 " in note_sae0.text
    assert note_topk.text.startswith(f"[topk] the baseline {tmp_path / 'b.json'} was recorded on other tokens (xxh3")
    assert "--update-baseline" in note_topk.text


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


def test_recording_still_checks_the_fixed_bounds_of_a_mixed_gate(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While a baseline is recorded, `[">= X", ">= baseline - d"]` checks its fixed part; a failure there blocks it."""
    strict = write_suite(tmp_path / "strict.yaml", tiny, gates0='l0: [">= 1000", ">= baseline - 1"]', baseline="b1.json")
    rc, out, _ = run(capsys, str(strict), "--update-baseline", *NO_CACHE)
    assert rc == 1, out
    (failed,) = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert failed.startswith("FAILED [sae0] l0 = ") and "needs >= 1000" in failed
    assert "baseline NOT updated: 1 gate failed" in out and not (tmp_path / "b1.json").exists()

    loose = write_suite(tmp_path / "loose.yaml", tiny, gates0='l0: [">= 1", ">= baseline - 1"]', baseline="b2.json")
    rc, out, _ = run(capsys, str(loose), "--update-baseline", *NO_CACHE)
    assert rc == 0, out
    (unchecked,) = [line for line in out.splitlines() if line.startswith("UNCHECKED ")]
    assert "its fixed bounds hold, the baseline has no value yet; this run records it" in unchecked
    assert (tmp_path / "b2.json").is_file()
