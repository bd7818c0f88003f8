"""Baseline updates from a run: merged with the file's old values under a lock on its folder."""

from __future__ import annotations

from pathlib import Path

from pytest_saeval.spec.baseline import load_baseline, write_baseline


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
