"""The output files' contents: one JSON-ready record per SAE (SAE Lens's keys, flat metrics, NaN as null,
checked and unchecked gates, its own notes), file names that never collide, and the flat CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from pytest_saeval.errors import OutputError
from pytest_saeval.report.files import result_records, write_outputs
from pytest_saeval.run.provenance import Note, Provenance
from tests.helpers import demo_suite_file, hand_run

SUITE = """\
model: {path: m}
data: {tokens: t.npy}
baseline: b.json
saes:
  - id: gpt2/res.8
    path: a
    gates:
      l0: "<= 60"
      cossim: ">= baseline - 0.1"
  - id: b
    path: b
    gates:
      mse: "<= 1"
"""


@pytest.fixture
def run(tmp_path: Path):
    return hand_run(demo_suite_file(tmp_path, SUITE), {"gpt2/res.8": {"l0": 70.0, "cossim": math.nan}, "b": {"mse": 0.5}}, recording=True,
                    intervals={"b": {"mse": (0.4, 0.6)}}, provenance={"b": Provenance.from_dict({"device": "cpu"})},
                    sae_cfgs={"b": {"d_sae": 4, "k": None}},
                    notes=[Note("b", "[b] the baseline was recorded on other tokens", loud=True), Note("other", "[other] x")])


def test_one_record_per_sae_in_run_order(run) -> None:
    first, second = result_records([run])
    assert first["unique_id"] == "gpt2/res.8" and first["sae_id"] == "gpt2/res.8" and first["sae_set"] == "demo"
    assert first["metrics"] == {"l0": 70.0, "cossim": None}  # NaN is null in the outputs
    assert first["gates"] == [
        {"metric": "l0", "bound": "<= 60", "value": 70.0, "passed": False, "message": "l0 = 70, needs <= 60 (over by 10)",
         "line": 8, "baseline": None},
        {"metric": "cossim", "bound": ">= baseline - 0.1", "value": None, "passed": None,
         "message": "not checked: the baseline has no value yet", "line": 9, "baseline": None},
    ]
    assert first["provenance"] == {} and first["sae_cfg"] == {} and first["notes"] == [] and first["intervals"] == {}
    assert second["provenance"]["device"] == "cpu" and second["sae_cfg"] == {"d_sae": 4, "k": None}
    assert second["intervals"] == {"mse": [0.4, 0.6]}
    assert second["notes"] == ["[b] the baseline was recorded on other tokens"]  # its own only
    assert second["notes_loud"] == [True] and first["notes_loud"] == []
    assert second["eval_cfg"] == run.eval_cfg.to_dict() and second["hook_name"] == "blocks.0.hook_resid_pre"
    assert json.loads(json.dumps([first, second], allow_nan=False)) == [first, second]


def test_write_outputs_and_the_flat_csv(run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = write_outputs([run], out)
    assert [p.name for p in paths] == ["demo__gpt2%2Fres.8.json", "demo__b.json", "all_eval_results.json",
                                       "all_eval_results.csv"]
    assert json.loads((out / "all_eval_results.json").read_text()) == result_records([run])
    rows = list(csv.DictReader(io.StringIO((out / "all_eval_results.csv").read_text())))
    assert [r["unique_id"] for r in rows] == ["gpt2/res.8", "b"]
    assert rows[0]["metrics.l0"] == "70.0" and rows[0]["metrics.cossim"] == "" and rows[0]["gates_passed"] == "False"
    assert rows[1]["gates_passed"] == "True" and rows[1]["provenance.device"] == "cpu" and rows[1]["sae_cfg.k"] == ""
    assert rows[1]["eval_cfg.context_size"] == str(run.eval_cfg.context_size) and "feature_metrics" not in rows[0]
    with pytest.raises(OutputError, match="a file is in the way where a folder is needed"):
        write_outputs([run], out / "demo__b.json")


def test_an_evaluation_on_other_inputs_gets_its_own_file(run) -> None:
    from dataclasses import replace

    from pytest_saeval.report.files import per_sae_file_names
    from pytest_saeval.run.outcome import Inputs

    other = replace(run, inputs=Inputs(overridden=("saeval_tokens from tests/conftest.py",), tokens_xxh3="t"))
    records = result_records([run, other])
    names = per_sae_file_names(records)
    assert names[:2] == ["demo__gpt2%2Fres.8.json", "demo__b.json"]
    assert names[2].startswith("demo__gpt2%2Fres.8~with-") and names[3].startswith("demo__b~with-")
    assert len(set(names)) == 4
    again = replace(other, inputs=Inputs(overridden=("saeval_tokens from other/conftest.py",), tokens_xxh3="u"))
    assert per_sae_file_names(result_records([again]))[0] != names[2]  # other inputs again: another file
