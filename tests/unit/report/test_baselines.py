"""Baseline updates from a run: merged with the file's old values under a lock on its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.errors import BaselineError, SuiteError
from pytest_saeval.report.baselines import write_baselines
from pytest_saeval.run.provenance import Provenance
from pytest_saeval.spec.baseline import load_baseline, write_baseline
from tests.helpers import hand_run


def test_concurrent_updates_of_one_baseline_file_keep_both(tmp_path: Path) -> None:
    """An update reads, merges and writes under a lock on the file's folder: a second run that
    updated the same file meanwhile keeps its values (last writer does not win)."""
    import threading
    from types import SimpleNamespace

    from pytest_saeval.fileio import folder_lock
    from pytest_saeval.report.baselines import write_baselines
    from pytest_saeval.run.provenance import Provenance

    path = tmp_path / "b.json"
    write_baseline(path, {"old": {"l0": 1.0}})
    run_a = SimpleNamespace(suite=SimpleNamespace(baseline=path, path=tmp_path / "a.yaml"),
                            results={"a": SimpleNamespace(metrics={"l0": 2.0, "mse": float("nan")})},
                            provenance={"a": Provenance.from_dict({"device": "cpu"})})
    done = threading.Event()
    with folder_lock(tmp_path):
        worker = threading.Thread(target=lambda: (write_baselines([run_a]), done.set()))
        worker.start()
        assert not done.wait(0.5), "the update waits for the folder lock"
        write_baseline(path, {"old": {"l0": 1.0}, "b": {"l0": 3.0}})  # another run's update lands first
    worker.join(10)
    assert done.is_set()
    merged = load_baseline(path)
    assert merged.values == {"old": {"l0": 1.0}, "a": {"l0": 2.0}, "b": {"l0": 3.0}}
    assert merged.provenance("a") == Provenance.from_dict({"device": "cpu"}).to_dict()
    assert merged.provenance("a")["device"] == "cpu"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"], "no lock file is left behind"


def _suite(tmp_path: Path, name: str, baseline: str | None) -> Path:
    path = tmp_path / name
    head = f"baseline: {baseline}\n" if baseline else ""
    path.write_text("model: {path: m}\ndata: {tokens: t.npy}\n" + head +
                    "saes:\n  - id: a\n    path: a\n  - id: b\n    path: b\n")
    return path


def test_a_run_rewrites_its_baseline_keeping_what_it_did_not_evaluate(tmp_path: Path) -> None:
    target = tmp_path / "baselines" / "demo.json"
    write_baseline(target, {"a": {"l0": 1.0, "mse": 9.0}, "gone": {"l0": 2.0}}, {"gone": {"device": "cuda:0"}})
    run = hand_run(_suite(tmp_path, "demo.yaml", "baselines/demo.json"),
                   {"a": {"l0": 4.123456789, "mse": float("nan"), "cossim": float("inf")}},
                   provenance={"a": Provenance.from_dict({"device": "cpu"})})
    assert write_baselines([run]) == [target]
    written = load_baseline(target)
    assert written.values == {"a": {"l0": 4.12346}, "gone": {"l0": 2.0}}  # finite values, rounded; the old SAE kept
    assert written.provenance("a")["device"] == "cpu" and written.provenance("gone") == {"device": "cuda:0"}


def test_suites_sharing_a_baseline_file_write_it_once_with_both(tmp_path: Path) -> None:
    one = hand_run(_suite(tmp_path, "one.yaml", "shared.json"), {"a": {"l0": 1.0}})
    two = hand_run(_suite(tmp_path, "two.yaml", "shared.json"), {"b": {"l0": 2.0}})
    assert write_baselines([one, two]) == [tmp_path / "shared.json"]
    assert load_baseline(tmp_path / "shared.json").values == {"a": {"l0": 1.0}, "b": {"l0": 2.0}}


def test_a_suite_without_a_baseline_key_cannot_be_recorded(tmp_path: Path) -> None:
    bare = _suite(tmp_path, "bare.yaml", None)
    with pytest.raises(SuiteError) as info:
        write_baselines([hand_run(bare, {"a": {"l0": 1.0}})])
    assert (info.value.location.file, info.value.location.key) == (str(bare), "baseline")
    assert "updating the baseline needs a baseline file" in str(info.value)


def test_baselines_of_several_suites_are_written_all_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A baseline that cannot be written (the disk full as its bytes go out) leaves the others as they
    were too, and the error names that file."""
    import errno

    from pytest_saeval import fileio

    first, second = tmp_path / "one" / "a.json", tmp_path / "two" / "b.json"
    write_baseline(first, {"a": {"l0": 1.0}})
    write_baseline(second, {"b": {"l0": 2.0}})
    before = first.read_bytes(), second.read_bytes()
    run_a = hand_run(_suite(tmp_path, "a.yaml", "one/a.json"), {"a": {"l0": 5.0}})
    run_b = hand_run(_suite(tmp_path, "b.yaml", "two/b.json"), {"b": {"l0": 6.0}})
    real = fileio._write_temp

    def full_disk(target: Path, data: bytes) -> Path:
        if target.name == "b.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(target, data)

    monkeypatch.setattr(fileio, "_write_temp", full_disk)
    with pytest.raises(BaselineError, match=r"cannot write .*two/b\.json: .*[Nn]o space left") as info:
        write_baselines([run_a, run_b])
    assert "no baseline file was changed" in (info.value.fix or "")
    assert (first.read_bytes(), second.read_bytes()) == before
    assert sorted(p.name for p in first.parent.iterdir()) == ["a.json"], "no temporary file is left"

    monkeypatch.setattr(fileio, "_write_temp", real)
    assert write_baselines([run_a, run_b]) == [first, second]
    assert load_baseline(first).values["a"] == {"l0": 5.0} and load_baseline(second).values["b"] == {"l0": 6.0}
