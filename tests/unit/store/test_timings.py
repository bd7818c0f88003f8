"""The timings file of the cache folder: merged on write, under a lock, and never an error to read."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pytest_saeval.store.timings import TIMINGS_FILE, SuiteTiming, load_timings, save_timings
from tests.helpers import SPECIAL_FILES, make_special_file


def test_timings_round_trip_and_merge_with_what_the_file_holds(tmp_path: Path) -> None:
    save_timings(tmp_path, {"a.yaml": SuiteTiming(1.5, 2), "b.yaml": SuiteTiming(3.0, 1)})
    save_timings(tmp_path, {"b.yaml": SuiteTiming(4.25, 3)})
    assert load_timings(tmp_path) == {"a.yaml": SuiteTiming(1.5, 2), "b.yaml": SuiteTiming(4.25, 3)}
    data = json.loads((tmp_path / TIMINGS_FILE).read_text())
    assert data == {"format": 1, "suites": {"a.yaml": {"seconds": 1.5, "saes": 2}, "b.yaml": {"seconds": 4.25, "saes": 3}}}
    assert [p.name for p in tmp_path.iterdir()] == [TIMINGS_FILE], "no temporary file stays behind"


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": 2, "suites": {}}',
                                  '{"format": 1, "suites": {"a": {"seconds": -1, "saes": 1}}}',
                                  '{"format": 1, "suites": {"a": {"seconds": "x", "saes": 1}}}'])
def test_an_unreadable_timings_file_reads_as_none(tmp_path: Path, text: str) -> None:
    (tmp_path / TIMINGS_FILE).write_text(text)
    assert load_timings(tmp_path) == {}
    assert load_timings(tmp_path / "missing") == {} and load_timings(None) == {}


def test_concurrent_writers_keep_every_suite(tmp_path: Path) -> None:
    def write(i: int) -> None:
        for j in range(20):
            save_timings(tmp_path, {f"s{i}-{j}.yaml": SuiteTiming(float(j), i)})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(load_timings(tmp_path)) == 80


def test_a_timing_is_a_finite_non_negative_number() -> None:
    with pytest.raises(ValueError):
        SuiteTiming(float("nan"), 1)
    with pytest.raises(ValueError):
        SuiteTiming(1.0, -1)


@pytest.mark.parametrize("text", [
    '{"format": 1, "suites": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"format": 1, "suites": {"a": {"seconds": ' + "9" * 5000 + ', "saes": 1}}}',
    '{"format": 1, "suites": {"a": {"seconds": ' + "9" * 400 + ', "saes": 1}}}',
], ids=["deep", "long-int", "int-beyond-a-float"])
def test_a_timings_file_python_cannot_read_reads_as_none(tmp_path: Path, text: str) -> None:
    (tmp_path / TIMINGS_FILE).write_text(text)
    assert load_timings(tmp_path) == {}
    save_timings(tmp_path, {"a.yaml": SuiteTiming(1.0, 1)})  # replaces it
    assert load_timings(tmp_path) == {"a.yaml": SuiteTiming(1.0, 1)}


@pytest.mark.parametrize(("what", "kind"), SPECIAL_FILES)
def test_a_timings_file_that_is_not_a_regular_file_is_never_read(tmp_path: Path, what: str, kind: str) -> None:
    path = tmp_path / TIMINGS_FILE
    make_special_file(path, what)
    assert load_timings(tmp_path) == {}  # a FIFO would block, /dev/zero never end
    save_timings(tmp_path, {"a.yaml": SuiteTiming(1.0, 1)})
    assert path.is_file() and not path.is_symlink()
    assert load_timings(tmp_path) == {"a.yaml": SuiteTiming(1.0, 1)}


def test_a_timings_file_over_the_limit_reads_as_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_timings(tmp_path, {"a.yaml": SuiteTiming(1.0, 1)})
    monkeypatch.setattr("pytest_saeval.store.timings._MAX_BYTES", 10)
    assert load_timings(tmp_path) == {}


def test_a_timing_too_large_for_a_float_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="seconds must be a finite number"):
        SuiteTiming(10**400, 1)
