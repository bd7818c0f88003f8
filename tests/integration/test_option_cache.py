"""The caches under pytest: on by default in ``.saeval-cache`` (or ``$SAEVAL_CACHE_DIR``), ``--saeval-cache-dir``
(ini: ``saeval_cache_dir``) moves them, ``--saeval-no-cache`` (ini: ``saeval_cache = false``) turns them off; a
run served from the cache runs no engine pass and reports the same values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.plugin_helpers import Assets, all_results, run_pytest

ENGINE_LOG_CONFTEST = '''
"""Test instrumentation: one line per engine pass (with the caches or without), naming its SAEs."""
from pathlib import Path

import pytest_saeval.run.evaluation as _evaluation
import pytest_saeval.store.cached as _cached

LOG = Path({log!r})
_ORIG = {{_cached: _cached.run_pass, _evaluation: _evaluation.run_pass}}


def _logged(orig):
    def run_pass(model, saes, *args, **kwargs):
        with LOG.open("a") as fh:
            fh.write(" ".join(sorted(k.rsplit("::", 1)[1] for k in saes)) + "\\n")
        return orig(model, saes, *args, **kwargs)

    return run_pass


def pytest_configure(config):
    for module, orig in _ORIG.items():
        module.run_pass = _logged(orig)


def pytest_unconfigure(config):
    for module, orig in _ORIG.items():
        module.run_pass = orig
'''


def _project(pytester: pytest.Pytester, assets: Assets) -> Path:
    (pytester.path / "thresholds").mkdir()
    (pytester.path / "thresholds" / "demo.yaml").write_text(
        assets.model_block() + assets.data_block() + "saes:\n"
        f"  - id: a\n    path: {assets.sae0}\n    gates:\n      l0: '<= 1000'\n"
        f"  - id: b\n    path: {assets.sae1}\n    gates:\n      l0: '<= 1000'\n"
    )
    log = pytester.path / "engine.log"
    log.write_text("")
    (pytester.path / "conftest.py").write_text(ENGINE_LOG_CONFTEST.format(log=str(log)))
    return log


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_second_run_is_served_from_the_cache(
    pytester: pytest.Pytester, assets: Assets, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    log = _project(pytester, assets)
    run_pytest(pytester, "plain", "--saeval-output-dir", "first").assert_outcomes(passed=2)
    assert log.read_text().splitlines() == ["a b"]
    assert _files(pytester.path / ".saeval-cache")  # the default folder, in the invocation folder

    run_pytest(pytester, "plain", "--saeval-output-dir", "second").assert_outcomes(passed=2)
    assert log.read_text().splitlines() == ["a b"]  # no engine pass: both SAEs came from the cache
    assert all_results(pytester.path / "second") == all_results(pytester.path / "first")

    run_pytest(pytester, "plain", "--saeval-no-cache").assert_outcomes(passed=2)
    assert log.read_text().splitlines() == ["a b", "a b"]


def test_cache_folder_from_the_option_the_ini_file_and_the_environment(
    pytester: pytest.Pytester, assets: Assets, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    _project(pytester, assets)
    run_pytest(pytester, "plain", "--saeval-cache-dir", "option-cache").assert_outcomes(passed=2)
    assert _files(pytester.path / "option-cache") and not (pytester.path / ".saeval-cache").exists()

    (pytester.path / "pytest.ini").write_text("[pytest]\nsaeval_cache_dir = caches/ini\n")
    run_pytest(pytester, "plain").assert_outcomes(passed=2)
    assert _files(pytester.path / "caches" / "ini")

    monkeypatch.setenv("SAEVAL_CACHE_DIR", str(pytester.path / "from-env"))
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    run_pytest(pytester, "plain").assert_outcomes(passed=2)
    assert _files(pytester.path / "from-env") and not (pytester.path / ".saeval-cache").exists()


def test_the_ini_key_turns_the_caches_off(
    pytester: pytest.Pytester, assets: Assets, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    log = _project(pytester, assets)
    (pytester.path / "pytest.ini").write_text("[pytest]\nsaeval_cache = false\nsaeval_cache_dir = never\n")
    run_pytest(pytester, "plain").assert_outcomes(passed=2)
    run_pytest(pytester, "plain").assert_outcomes(passed=2)
    assert log.read_text().splitlines() == ["a b", "a b"]
    assert not (pytester.path / "never").exists() and not (pytester.path / ".saeval-cache").exists()
