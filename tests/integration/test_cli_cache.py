"""``saeval run`` and the caches: ``--no-cache`` writes no cache folder, ``--cache-dir`` is used, and a run served
from the cache writes the same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.badinput.cases import Assets
from tests.integration.cli_helpers import run, write_suite


def test_cache_options_reach_the_results_cache(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    suite = str(write_suite(tmp_path / "s.yaml", tiny))
    assert run(capsys, suite, "--no-cache", "--output-dir", "plain")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "s.yaml"]  # --no-cache: no cache folder

    cache = tmp_path / "cache"
    assert run(capsys, suite, "--cache-dir", str(cache), "--output-dir", "first")[0] == 0
    assert any(p.is_file() for p in cache.rglob("*"))
    assert run(capsys, suite, "--cache-dir", str(cache), "--output-dir", "second")[0] == 0  # served from the cache
    plain = json.loads((tmp_path / "plain" / "all_eval_results.json").read_text())
    for tag in ("first", "second"):
        assert json.loads((tmp_path / tag / "all_eval_results.json").read_text()) == plain
