"""Two evaluations of one SAE stay two: the YAML gate tests evaluate the suite's own tokens, marker tests
under a conftest that overrides ``saeval_tokens`` evaluate other tokens. Every gate, table row, JSON
record, summary line and the baseline come from the evaluation that gate used; only the suite's own
inputs become its baseline. Plainly and under pytest-xdist."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from tests.integration.plugin_helpers import Assets, run_pytest, saeval_section

OVERRIDE = "saeval_tokens from tests/conftest.py"


def _project(root: Path, assets: Assets) -> None:
    (root / "thresholds").mkdir()
    (root / "tests").mkdir()
    tokens = np.load(assets.tokens)
    other = tokens.copy()
    other[:, 1:] = (other[:, 1:] * 7 + 11) % 140 + 3  # other ids: clearly other metrics
    np.save(root / "other_tokens.npy", other)
    (root / "thresholds" / "demo.yaml").write_text(
        assets.model_block() + assets.data_block() + "baseline: ../baselines/demo.json\nsaes:\n"
        f"  - id: good\n    path: {assets.sae0}\n    gates:\n"
        '      l0: "<= 1000"\n'
        '      mse: "<= baseline * 1.5"\n'
    )
    (root / "tests" / "conftest.py").write_text(
        "import numpy as np\nimport pytest\n\n\n"
        "@pytest.fixture(scope='session')\ndef saeval_tokens():\n"
        f"    return np.load({str(root / 'other_tokens.npy')!r})\n"
    )
    (root / "tests" / "test_marked.py").write_text(
        "import pytest\n\n\n"
        "@pytest.mark.saeval('thresholds/demo.yaml', sae='good')\n"
        "def test_good_on_other_tokens(saeval_results):\n"
        "    assert set(saeval_results) == {'good'}\n"
        "    assert saeval_results['good'].metrics['l0'] >= 0\n"
    )


def _records(out: Path) -> list[dict]:
    return json.loads((out / "all_eval_results.json").read_text())


def _own_and_other(records: list[dict]) -> tuple[dict, dict]:
    own = [r for r in records if r["unique_id"] == "good" and not r["inputs"]["overridden"]]
    other = [r for r in records if r["unique_id"] == "good" and r["inputs"]["overridden"]]
    assert len(own) == 1 and len(other) == 1, records
    return own[0], other[0]


def _inside(value: float, interval: list[float] | None) -> bool:
    return interval is None or interval[0] - 1e-12 <= value <= interval[1] + 1e-12


@pytest.mark.parametrize("mode", ["plain", "n2"])
def test_two_evaluations_of_one_sae_stay_two(
    pytester: pytest.Pytester, assets: Assets, reference: dict[tuple[str, str], dict[str, float]], mode: str
) -> None:
    _project(pytester.path, assets)
    result = run_pytest(pytester, mode, "--saeval-output-dir=out", "--saeval-update-baseline")
    text = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, text[-4000:]

    # JSON: one record per evaluation, each with its own inputs; gates[] values are its own metrics
    own, other = _own_and_other(_records(pytester.path / "out"))
    assert other["inputs"]["overridden"] == [OVERRIDE]
    assert own["inputs"]["tokens_xxh3"] != other["inputs"]["tokens_xxh3"]
    assert own["inputs"]["model_xxh3"] == other["inputs"]["model_xxh3"]
    assert own["metrics"]["mse"] != other["metrics"]["mse"]
    assert own["metrics"]["mse"] == pytest.approx(reference[("model", "sae0")]["mse"], rel=1e-6)
    assert own["eval_cfg"]["dataset"] == str(assets.tokens) and other["eval_cfg"]["dataset"] == OVERRIDE
    csv_rows = list(csv.DictReader((pytester.path / "out" / "all_eval_results.csv").open()))
    assert sorted(r["inputs.overridden"] for r in csv_rows) == ["", OVERRIDE]  # the two rows told apart
    for record in (own, other):
        for gate in record["gates"]:
            if gate["value"] is not None:
                assert gate["value"] == record["metrics"][gate["metric"]], (record["inputs"], gate)
                assert _inside(gate["value"], record["intervals"].get(gate["metric"]))
    assert (pytester.path / "out" / "demo__good.json").is_file()
    assert len([p for p in (pytester.path / "out").glob("demo__good*.json")]) == 2  # one file each

    # Baseline: recorded from the suite's own tokens only
    baseline = json.loads((pytester.path / "baselines" / "demo.json").read_text())
    assert baseline["saes"]["good"]["mse"] == pytest.approx(own["metrics"]["mse"], rel=1e-5)
    assert baseline["provenance"]["good"]["tokens_xxh3"] == own["inputs"]["tokens_xxh3"]

    # The table: two titled sections, every value inside its own interval
    section = saeval_section(text)
    assert "thresholds/demo.yaml\n" in section and f"thresholds/demo.yaml (with {OVERRIDE})\n" in section
    for row in re.findall(r"^  good +(\w+) +(\S+) +\[(\S+), (\S+)\]", section, re.M):
        value, lo, hi = (float(v) for v in row[1:])
        assert lo <= value <= hi or math.isclose(value, lo) or math.isclose(value, hi), row

    # summary.md: the same two evaluations, titled the same way
    summary = (pytester.path / "out" / "summary.md").read_text()
    assert f"with {OVERRIDE}" in summary
    assert summary.splitlines()[0].endswith("(1 SAE, 2 evaluations)"), summary.splitlines()[0]

    # Checking against the baseline: the suite's own evaluation has no note; the override's says that its
    # baseline gates compare with values of the suite's own tokens
    again = run_pytest(pytester, mode, "--saeval-output-dir=out2")
    assert again.ret == pytest.ExitCode.OK, again.stdout.str()[-4000:]
    own_part, other_part = saeval_section(again.stdout.str()).split(f"thresholds/demo.yaml (with {OVERRIDE})\n")
    assert "note" not in own_part and "baseline" not in own_part.replace("<= baseline * 1.5", "")
    assert f"[good] evaluated with {OVERRIDE}: the baseline " in other_part, other_part
    own2, other2 = _own_and_other(_records(pytester.path / "out2"))
    assert own2["notes"] == [] and other2["notes_loud"] == [True]
    assert "recorded on the suite's own inputs, not on these (tokens (xxh3" in other2["notes"][0]
    mse_gate = next(g for g in own2["gates"] if g["metric"] == "mse")
    assert mse_gate["passed"] is True and mse_gate["value"] == own2["metrics"]["mse"]
    other_mse = next(g for g in other2["gates"] if g["metric"] == "mse")
    # the override's gate compares its own value with the suite's baseline, and says so by its inputs
    assert other_mse["value"] == other2["metrics"]["mse"]


def test_a_failure_on_a_conftest_s_inputs_says_so(pytester: pytest.Pytester, assets: Assets) -> None:
    """The same gate line passes for the suite's own tokens and fails for the override's: the marked test's
    failure names the override before ``file:line``."""
    _project(pytester.path, assets)
    suite = pytester.path / "thresholds" / "demo.yaml"
    suite.write_text(suite.read_text().replace('mse: "<= baseline * 1.5"', 'mse: "<= 1000"').replace(
        "baseline: ../baselines/demo.json\n", ""))
    first = run_pytest(pytester, "plain", "--saeval-output-dir=out")
    assert first.ret == pytest.ExitCode.OK, first.stdout.str()[-4000:]
    own, other = _own_and_other(_records(pytester.path / "out"))
    low, high = sorted((own["metrics"]["mse"], other["metrics"]["mse"]))
    bound = f"<= {(low + high) / 2:.6g}" if own["metrics"]["mse"] < other["metrics"]["mse"] else f">= {(low + high) / 2:.6g}"
    suite.write_text(suite.read_text().replace('mse: "<= 1000"', f'mse: "{bound}"'))
    result = run_pytest(pytester, "plain")
    text = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text[-4000:]
    result.assert_outcomes(passed=2, failed=1)
    assert re.search(rf"^\[good\] mse = \S+ \[.*\], needs {re.escape(bound)} .*\(with {re.escape(OVERRIDE)}\) — "
                     r"thresholds/demo.yaml:\d+$", text, re.M), text[-3000:]
