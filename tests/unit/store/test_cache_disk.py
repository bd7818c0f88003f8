"""One cache folder's state in a run: its first problem is said once and turns it off for every cache."""

from __future__ import annotations

import warnings
from pathlib import Path

from pytest_saeval.store.entries import CacheWarning
from pytest_saeval.store.folder import CacheDisk


def test_the_first_problem_is_said_once_and_every_listener_hears_each(tmp_path: Path) -> None:
    disk = CacheDisk(tmp_path)
    heard: list[str] = []
    disk.on_fail(lambda: heard.append("model-side"))
    assert disk.usable
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        disk.fail("cannot write x: read-only file system")
        disk.fail("cannot write y: read-only file system")
    assert not disk.usable
    assert [str(w.message) for w in caught] == [
        f"saeval cache: cannot write x: read-only file system; the run goes on without the cache in {tmp_path}"]
    assert all(w.category is CacheWarning for w in caught)
    assert heard == ["model-side", "model-side"]

