"""Records read back into runs without torch: one run per suite and inputs, gates checked again from the
recorded values, the same records when written again; a records file or a record that does not fit its
suite is one ShardError naming the file."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from pytest_saeval.errors import ShardError
from pytest_saeval.report.files import result_records, write_outputs
from pytest_saeval.report.readback import (
    RESULTS_FILE,
    read_records,
    record_inputs,
    record_key,
    runs_from_records,
)
from pytest_saeval.run.outcome import Inputs
from pytest_saeval.run.provenance import Note, Provenance
from pytest_saeval.spec.loader import load_suite
from tests.helpers import SPECIAL_FILES, demo_suite_file, hand_run, make_special_file

SUITE = """\
model: {path: m}
data: {tokens: t.npy}
baseline: b.json
saes:
  - id: a
    path: a
    gates:
      l0: ["<= 60", ">= 1"]
      cossim: ">= baseline - 0.1"
  - id: b
    path: b
    gates:
      mse: "<= 1"
"""


@pytest.fixture
def suite_path(tmp_path: Path) -> Path:
    return demo_suite_file(tmp_path, SUITE)


@pytest.fixture
def run(suite_path: Path):
    return hand_run(suite_path, {"a": {"l0": 70.0, "cossim": math.nan}, "b": {"mse": 0.5}}, recording=True,
                    intervals={"b": {"mse": (0.4, 0.6)}}, provenance={"b": Provenance.from_dict({"device": "cpu"})},
                    sae_cfgs={"b": {"d_sae": 4}}, notes=[Note("b", "[b] recorded on other tokens", loud=True)])


def test_records_rebuild_the_run_and_write_the_same_records(run) -> None:
    records = json.loads(json.dumps(result_records([run])))  # through JSON, as the file holds them
    (back,) = runs_from_records(records, load_suite)
    assert [e.unique_id for e in back.entries] == ["a", "b"]
    assert [(c.sae_id, c.gate.metric, c.passed) for c in back.checks] == [(c.sae_id, c.gate.metric, c.passed)
                                                                          for c in run.checks]
    assert [(u, g.metric) for u, g in back.unchecked] == [("a", "cossim")]  # no baseline value yet: still unchecked
    assert math.isnan(back.results["a"].metrics["cossim"])  # null reads back as NaN
    assert back.passed is run.passed is False
    assert result_records([back]) == records


def test_gates_are_checked_again_not_copied(run) -> None:
    records = json.loads(json.dumps(result_records([run])))
    records[1]["metrics"]["mse"] = 2.0  # a recorded value edited after the run, its gate's value too,
    for gate in records[1]["gates"]:  # and its verdict left as it was
        if gate["metric"] == "mse":
            gate["value"] = 2.0
    (back,) = runs_from_records(records, load_suite)
    (mse,) = [c for c in back.checks if c.sae_id == "b"]
    assert not mse.passed and mse.result.value == 2.0


@pytest.mark.parametrize("edit", ["other value", "null", "NaN", "gone"])
def test_a_record_that_contradicts_itself_is_refused(run, edit: str) -> None:
    records = json.loads(json.dumps(result_records([run])))
    metrics = records[1]["metrics"]
    if edit == "gone":
        del metrics["mse"]
    else:
        metrics["mse"] = {"other value": -1.0, "null": None, "NaN": math.nan}[edit]
    with pytest.raises(ShardError, match=r"\[b\] the record.* mse") as info:
        runs_from_records(records, load_suite)
    assert info.value.location.key is not None and info.value.location.key.endswith("gates.mse")
    assert "run that shard again" in str(info.value)


def test_other_inputs_are_another_run(run) -> None:
    other = dataclasses.replace(run, inputs=Inputs(overridden=("saeval_tokens from conftest.py",), tokens_xxh3="t"))
    records = result_records([run, other])
    back = runs_from_records(records, load_suite)
    assert [r.inputs for r in back] == [Inputs(), other.inputs]
    assert record_inputs(records[2]) == other.inputs and record_key(records[2]) == (str(run.suite.path), "a")
    assert Inputs().key() != other.inputs.key()


def test_each_suite_file_is_loaded_once(run) -> None:
    other = dataclasses.replace(run, inputs=Inputs(overridden=("x",)))
    loaded: list[Path] = []

    def load(path: Path):
        loaded.append(path)
        return load_suite(path)

    runs_from_records(result_records([run, other]), load)
    assert loaded == [Path(str(run.suite.path))]


def test_a_record_of_an_sae_or_gate_the_suite_no_longer_has(run, suite_path: Path) -> None:
    records = result_records([run])
    suite_path.write_text(SUITE.replace("id: b", "id: c"))
    with pytest.raises(ShardError, match="the suite has no SAE 'b' any more") as info:
        runs_from_records(records, load_suite)
    assert info.value.location.file == str(run.suite.path)
    suite_path.write_text(SUITE.replace('mse: "<= 1"', 'mse: "<= 2"'))
    with pytest.raises(ShardError, match=r"\[b\] the gate mse <= 1 recorded by the shard is not in the suite file"):
        runs_from_records(records, load_suite)


def test_read_records_round_trips_the_written_file(run, tmp_path: Path) -> None:
    write_outputs([run], tmp_path / "out")
    assert read_records(tmp_path / "out") == json.loads(json.dumps(result_records([run])))


@pytest.mark.parametrize(("content", "why"), [
    (None, f"{RESULTS_FILE} is missing"),
    ("{bad", "cannot read the results"),
    ('{"a": 1}', "the results are not a JSON list of records"),
    ("[1]", "record 0 is not a JSON object"),
], ids=["missing", "not-json", "not-a-list", "not-a-record"])
def test_a_bad_results_file_is_one_error_naming_it(tmp_path: Path, content: str | None, why: str) -> None:
    if content is not None:
        (tmp_path / RESULTS_FILE).write_text(content)
    with pytest.raises(ShardError, match=why) as info:
        read_records(tmp_path)
    assert info.value.location.file == str(tmp_path / RESULTS_FILE)


@pytest.mark.parametrize(("edit", "why"), [
    (lambda r: r.pop("metrics"), "record 1 has no metrics of the right kind"),
    (lambda r: r["eval_cfg"].pop("suite"), "record 1 has no eval_cfg.suite"),
    (lambda r: r.update(notes_loud=[True, False]), "record 1 has notes_loud of another length than notes"),
    (lambda r: r.update(inputs={"overridden": "x"}), "record 1 has no inputs.overridden list"),
], ids=["metrics", "suite", "notes", "inputs"])
def test_a_record_of_the_wrong_shape_is_named_by_its_index(run, tmp_path: Path, edit, why: str) -> None:
    records = json.loads(json.dumps(result_records([run])))
    edit(records[1])
    (tmp_path / RESULTS_FILE).write_text(json.dumps(records))
    with pytest.raises(ShardError, match=why) as info:
        read_records(tmp_path)
    assert info.value.location.key == "[1]"


@pytest.mark.parametrize(("content", "why"), [
    ("[" * 100_000 + "]" * 100_000, "cannot read the results: the JSON is nested more than 100 levels deep"),
    ('[{"d_in": ' + "9" * 5000 + "}]", "cannot read the results: the JSON holds an integer with too many digits"),
], ids=["deep", "long-int"])
def test_json_python_cannot_read_is_one_error_naming_the_file(tmp_path: Path, content: str, why: str) -> None:
    (tmp_path / RESULTS_FILE).write_text(content)
    with pytest.raises(ShardError) as info:
        read_records(tmp_path)
    assert info.value.message == why
    assert info.value.location.file == str(tmp_path / RESULTS_FILE)


@pytest.mark.parametrize(("what", "kind"), SPECIAL_FILES)
def test_a_results_file_that_is_not_a_regular_file_is_one_error_unread(tmp_path: Path, what: str, kind: str) -> None:
    path = tmp_path / RESULTS_FILE
    make_special_file(path, what)
    with pytest.raises(ShardError) as info:
        read_records(tmp_path)  # a FIFO would block, /dev/zero fill memory
    assert info.value.message == f"cannot read the results: not a regular file ({kind})"
    assert info.value.location.file == str(path)


@pytest.mark.parametrize(("edit", "why"), [
    (lambda r: r["metrics"].update(mse="x"), "TypeError: a measured value must be a number"),
    (lambda r: r["metrics"].update(mse=10**400), "OverflowError"),
    (lambda r: r["intervals"].update(mse=[10**400, 1]), "OverflowError"),
    (lambda r: r["intervals"].update(mse=[1]), "ValueError: not enough values to unpack"),
    (lambda r: r.update(hook_head_index="x"), "ValueError: invalid literal for int()"),
    (lambda r: r.update(gates=[1]), "AttributeError"),
    (lambda r: [g.update(baseline="x") for g in r["gates"]], "ValueError: could not convert string to float"),
], ids=["metric-string", "metric-beyond-float", "interval-beyond-float", "interval-short", "head-string",
        "gate-not-object", "baseline-string"])
def test_a_record_holding_a_value_of_the_wrong_kind_is_one_error(run, edit, why: str) -> None:
    records = json.loads(json.dumps(result_records([run])))
    edit(records[1])
    with pytest.raises(ShardError) as info:
        runs_from_records(records, load_suite)
    assert info.value.message.startswith(f"the record of 'b' in {RESULTS_FILE} cannot be read back ({why}")
    assert info.value.location.file == str(run.suite.path)
