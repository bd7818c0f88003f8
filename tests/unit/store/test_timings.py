"""The timings file of the cache folder: merged on write, under a lock, and never an error to read."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pytest_saeval.store.timings import TIMINGS_FILE, SuiteTiming, load_timings, save_timings


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
