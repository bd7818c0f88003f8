"""``saeval-shard.json``: a record written and read back equal, and every way it cannot be read is one
ShardError naming the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_saeval.errors import ShardError
from pytest_saeval.report.shardfile import (
    SHARD_FILE,
    ShardRecord,
    clear_shard_record,
    read_shard_record,
    suite_digest,
    write_shard_record,
)
from pytest_saeval.run.shards import Shard, ShardPlan, WorkGroup
from pytest_saeval.store.timings import SuiteTiming
from tests.helpers import SPECIAL_FILES, make_special_file

PLAN = ShardPlan(Shard(2, 3), (WorkGroup("a.yaml", ("a.yaml",), (("a.yaml", "x", ("l0",)),), 5.0),
                               WorkGroup("b.yaml", ("b.yaml",), (("b.yaml", "y", ("l0", "mse")),), 2.0)), (1, 2))
RECORD = ShardRecord(plan=PLAN, suites={"b.yaml": "00ff", "a.yaml": "abcd"}, extra=(("c.yaml", "z"),),
                     errors=("c.yaml: boom",), timings={"b.yaml": SuiteTiming(1.5, 1)}, surface="pytest")


def test_a_record_reads_back_equal(tmp_path: Path) -> None:
    path = write_shard_record(tmp_path, RECORD)
    assert path == tmp_path / SHARD_FILE
    back = read_shard_record(tmp_path)
    assert back == RECORD
    assert back.folder == tmp_path and back.where == f"{tmp_path} (shard 2/3)"
    assert RECORD.where == "shard 2/3"
    data = json.loads(path.read_text())
    assert data["format"] == 1 and list(data["suites"]) == ["a.yaml", "b.yaml"]  # sorted, for stable files


def test_clear_removes_a_record_and_tolerates_none(tmp_path: Path) -> None:
    write_shard_record(tmp_path, RECORD)
    clear_shard_record(tmp_path)
    assert not (tmp_path / SHARD_FILE).exists()
    clear_shard_record(tmp_path)  # nothing to remove: no error


def test_suite_digest_is_the_files_xxh3_or_missing(tmp_path: Path) -> None:
    import xxhash

    (tmp_path / "s.yaml").write_bytes(b"model: {}\n")
    digest = suite_digest(tmp_path / "s.yaml")
    (tmp_path / "s.yaml").write_bytes(b"model: {}\n\n")
    assert suite_digest(tmp_path / "s.yaml") != digest
    assert len(digest) == len(xxhash.xxh3_128().hexdigest())
    assert suite_digest(tmp_path / "gone.yaml") == "missing"


def test_a_missing_folder_or_record_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="no such folder") as info:
        read_shard_record(tmp_path / "nowhere")
    assert info.value.location.file == str(tmp_path / "nowhere")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ShardError, match="is a file, not a shard's output folder"):
        read_shard_record(tmp_path / "a-file")
    with pytest.raises(ShardError, match="not the output of a finished shard") as info:
        read_shard_record(tmp_path)
    assert info.value.location.file == str(tmp_path / SHARD_FILE)
    assert "run it again" in (info.value.fix or "")


@pytest.mark.parametrize(("text", "why", "key"), [
    ("{not json", "the shard record is damaged", "shard"),
    ("[1, 2]", "it is not a JSON object", "shard"),
    ('{"format": 7, "saeval_version": "9.9"}', "format 7 is not 1 (written by pytest-saeval 9.9)", "format"),
    ('{"format": "1"}', "format '1' is not 1 (written by pytest-saeval unknown)", "format"),
    ('{"format": 1}', "shard is missing", "shard"),
    ('{"format": 1, "shard": {"index": 1}}', "shard.count is missing", "shard.count"),
], ids=["not-json", "not-object", "other-format", "format-string", "no-shard", "bad-shard"])
def test_a_damaged_record_is_one_located_error(tmp_path: Path, text: str, why: str, key: str) -> None:
    (tmp_path / SHARD_FILE).write_text(text)
    with pytest.raises(ShardError, match="damaged") as info:
        read_shard_record(tmp_path)
    assert why in info.value.message
    assert info.value.location.file == str(tmp_path / SHARD_FILE) and info.value.location.key == key


Edit = Callable[[dict[str, Any]], object]


def _set(*path: str | int, to: object) -> Edit:
    """Set the value at ``path`` (keys and list indexes) of a record's data to ``to``."""
    def edit(data: dict[str, Any]) -> None:
        inner: Any = data
        for p in path[:-1]:
            inner = inner[p]
        inner[path[-1]] = to
    return edit


@pytest.mark.parametrize(("edit", "key", "why"), [
    (_set("extra", to=["../x"]), "extra[0]", "extra[0] must be a [suite, SAE id] pair of strings, got '../x'"),
    (_set("extra", to=[["a", "b", "c"]]), "extra[0]", "must be a [suite, SAE id] pair of strings"),
    (_set("extra", to=[["a", 1]]), "extra[0]", "must be a [suite, SAE id] pair of strings"),
    (_set("extra", to={"a": "b"}), "extra", "extra must be a JSON list, got {'a': 'b'}"),
    (_set("shard", "index", to="2"), "shard.index", "shard.index must be a whole number from 1 to 3, got '2'"),
    (_set("shard", "index", to=2.0), "shard.index", "must be a whole number from 1 to 3, got 2.0"),
    (_set("shard", "index", to=True), "shard.index", "must be a whole number from 1 to 3, got True"),
    (_set("shard", "index", to=4), "shard.index", "must be a whole number from 1 to 3, got 4"),
    (_set("shard", "count", to=0), "shard.count", "shard.count must be a whole number from 1 to 10000, got 0"),
    (_set("shard", "count", to="3"), "shard.count", "must be a whole number from 1 to 10000, got '3'"),
    (_set("shard", "selection", to=5), "shard.selection", "shard.selection must be a string, got 5"),
    (_set("shard", "partition", to="0" * 16), "shard.partition", "is not the hash of the groups the record lists"),
    (_set("shard", "cost_basis", to=None), "shard.cost_basis", "must be a string, got None"),
    (_set("shard", "groups", to={}), "shard.groups", "shard.groups must be a JSON list, got {}"),
    (_set("shard", "groups", 0, to="a.yaml"), "shard.groups[0]", "must be a JSON object, got 'a.yaml'"),
    (_set("shard", "groups", 0, "shard", to="1"), "shard.groups[0].shard", "must be a whole number from 1 to 3, got '1'"),
    (_set("shard", "groups", 0, "shard", to=0), "shard.groups[0].shard", "must be a whole number from 1 to 3, got 0"),
    (_set("shard", "groups", 0, "cost", to="5"), "shard.groups[0].cost", "must be a finite number >= 0, got '5'"),
    (_set("shard", "groups", 0, "cost", to=-1), "shard.groups[0].cost", "must be a finite number >= 0, got -1"),
    (_set("shard", "groups", 0, "cost", to=10**400), "shard.groups[0].cost", "must be a finite number >= 0"),
    (_set("shard", "groups", 0, "id", to=["a.yaml"]), "shard.groups[0].id", "must be a string"),
    (_set("shard", "groups", 0, "suites", to="a.yaml"), "shard.groups[0].suites",
     "must be a list of strings, got 'a.yaml'"),
    (_set("shard", "groups", 0, "saes", 0, to=["a.yaml", "x"]), "shard.groups[0].saes[0]",
     "must be a [suite, SAE id, [metrics]] triple"),
    (_set("shard", "groups", 0, "saes", 0, 1, to=7), "shard.groups[0].saes[0]",
     "must be a [suite, SAE id, [metrics]] triple"),
    (_set("shard", "groups", 0, "saes", 0, 2, to="l0"), "shard.groups[0].saes[0][2]",
     "must be a list of metric names, got 'l0'"),
    (_set("suites", to=["a.yaml"]), "suites", "suites must be a JSON object, got ['a.yaml']"),
    (_set("suites", "a.yaml", to=1), "suites.a.yaml", "suites.a.yaml must be a string, got 1"),
    (_set("errors", to="c.yaml: boom"), "errors", "errors must be a JSON list, got 'c.yaml: boom'"),
    (_set("errors", to=[None]), "errors[0]", "errors[0] must be a string, got None"),
    (_set("timings", to=[]), "timings", "timings must be a JSON object, got []"),
    (_set("timings", "b.yaml", to=1.5), "timings.b.yaml", "timings.b.yaml must be a JSON object, got 1.5"),
    (_set("timings", "b.yaml", "seconds", to="1.5"), "timings.b.yaml.seconds",
     "must be a finite number >= 0, got '1.5'"),
    (_set("timings", "b.yaml", "seconds", to=True), "timings.b.yaml.seconds", "must be a finite number >= 0, got True"),
    (_set("timings", "b.yaml", "saes", to=1.0), "timings.b.yaml.saes", "must be a whole number >= 0, got 1.0"),
    (_set("surface", to=5), "surface", "surface must be a string, got 5"),
    (lambda data: data.pop("saeval_version"), "saeval_version", "saeval_version is missing"),
    (lambda data: data.pop("errors"), "errors", "errors is missing"),
    (lambda data: data["timings"]["b.yaml"].pop("saes"), "timings.b.yaml.saes", "timings.b.yaml.saes is missing"),
])
def test_every_field_of_a_record_is_checked_and_named(tmp_path: Path, edit: Edit, key: str, why: str) -> None:
    path = write_shard_record(tmp_path, RECORD)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ShardError) as info:
        read_shard_record(tmp_path)
    assert info.value.message.startswith("the shard record is damaged: ") and why in info.value.message
    assert info.value.location.file == str(path) and info.value.location.key == key
    assert info.value.fix == "run that shard again"


def test_a_tampered_plan_is_refused(tmp_path: Path) -> None:
    write_shard_record(tmp_path, RECORD)
    data = json.loads((tmp_path / SHARD_FILE).read_text())
    data["shard"]["groups"][0]["saes"][0][1] = "other"  # the hashes no longer match the groups
    (tmp_path / SHARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ShardError, match="damaged"):
        read_shard_record(tmp_path)


@pytest.mark.parametrize(("text", "why"), [
    ('{"format": 1, "shard": ' + "[" * 100_000 + "]" * 100_000 + "}", "the JSON is nested more than 100 levels deep"),
    ('{"format": 1, "shard": {"index": ' + "9" * 5000 + "}}", "the JSON holds an integer with too many digits"),
], ids=["deep", "long-int"])
def test_json_python_cannot_read_is_a_damaged_record(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / SHARD_FILE).write_text(text)
    with pytest.raises(ShardError) as info:
        read_shard_record(tmp_path)
    assert info.value.message == f"the shard record is damaged: {why}"
    assert info.value.location.file == str(tmp_path / SHARD_FILE)


def test_a_cost_beyond_a_float_is_a_damaged_record(tmp_path: Path) -> None:
    write_shard_record(tmp_path, RECORD)
    data = json.loads((tmp_path / SHARD_FILE).read_text())
    data["shard"]["groups"][0]["cost"] = 10**400
    (tmp_path / SHARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ShardError, match="the shard record is damaged"):
        read_shard_record(tmp_path)


@pytest.mark.parametrize(("what", "kind"), SPECIAL_FILES)
def test_a_record_that_is_not_a_regular_file_is_one_error_unread(tmp_path: Path, what: str, kind: str) -> None:
    path = tmp_path / SHARD_FILE
    make_special_file(path, what)
    with pytest.raises(ShardError) as info:
        read_shard_record(tmp_path)  # a FIFO would block, /dev/zero fill memory
    assert info.value.message == f"cannot read the shard record: not a regular file ({kind})"
    assert info.value.location.file == str(path)


def test_a_record_over_the_limit_is_one_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_shard_record(tmp_path, RECORD)
    monkeypatch.setattr("pytest_saeval.report.shardfile.MAX_RECORD_BYTES", 1024)
    with pytest.raises(ShardError) as info:
        read_shard_record(tmp_path)
    assert info.value.message == "cannot read the shard record: it is larger than 1 KiB"
    assert info.value.location.file == str(tmp_path / SHARD_FILE)
