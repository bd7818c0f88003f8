"""``saeval run`` on unchanged files: answered from the file-keyed cache in a process that imports neither
torch nor TransformerLens nor SAE Lens, with outputs (per-SAE JSON, all_eval_results.json / .csv,
summary.md, the HTML report, the terminal table) byte for byte those of a cold run; ``SAEVAL_FILE_KEYED``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_saeval.cli import main
from tests.integration.badinput.cases import Assets
from tests.integration.cli_helpers import write_suite

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformer_lens", "sae_lens")

PROBE = """\
import json, sys
from pytest_saeval.cli import main
code = main(sys.argv[1:])
print("HEAVY=" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})))
sys.exit(code)
"""


def in_process(*args: str) -> tuple[int, str]:
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        rc = main(["run", *args, "--no-progress"])
    return rc, out.getvalue()


def in_subprocess(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", PROBE.format(heavy=set(HEAVY)), "run", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {}), "PYTHONPATH": path}, check=False)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def outputs(folder: Path) -> list[str]:
    return ["--output-dir", str(folder / "out"), "--report", str(folder / "report.html")]


def table(stdout: str) -> list[str]:
    """The printed lines, less the one naming the output folder."""
    return [line for line in stdout.splitlines() if not line.startswith("saeval: wrote ")]


@pytest.fixture
def suite(tiny: Assets, tmp_path: Path) -> Path:
    return write_suite(tmp_path / "thresholds" / "suite.yaml", tiny, gates1='frac_alive: ">= 0.99"')


def test_a_warm_run_imports_no_model_library_and_writes_what_a_cold_run_writes(suite: Path, tmp_path: Path) -> None:
    cold_rc, cold_out = in_process(str(suite), "--no-cache", *outputs(tmp_path / "cold"))
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert in_process(str(suite), *cache, *outputs(tmp_path / "first"))[0] == cold_rc
    assert list((tmp_path / "cache" / "answers").rglob("*.json"))
    warm = in_subprocess(str(suite), *cache, *outputs(tmp_path / "warm"))
    assert warm.returncode == cold_rc == 1, warm.stderr  # frac_alive >= 0.99 fails: a failing verdict is answered too
    printed, _, heavy = warm.stdout.rpartition("HEAVY=")
    assert json.loads(heavy) == []
    assert table(printed) == table(cold_out)
    cold = files_of(tmp_path / "cold")
    assert set(cold) == {"out/all_eval_results.csv", "out/all_eval_results.json", "out/summary.md",
                         "out/suite__sae0.json", "out/suite__topk.json", "report.html"}
    # Nothing masked: provenance (content hashes, versions, device), eval_cfg, sae_cfg, intervals, notes.
    assert files_of(tmp_path / "first") == cold
    assert files_of(tmp_path / "warm") == cold


def test_a_changed_token_file_is_evaluated_again(suite: Path, tiny: Assets, tmp_path: Path) -> None:
    import numpy as np

    tokens = tmp_path / "tokens.npy"
    np.save(tokens, np.load(tiny.tokens))
    suite = write_suite(suite, tiny, tokens=tokens)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    in_process(str(suite), *cache)
    changed = np.load(tokens)
    changed[-1, -1] = (changed[-1, -1] + 1) % tiny.vocab
    np.save(tokens, changed)
    warm = in_subprocess(str(suite), *cache)
    assert warm.returncode == 0, warm.stderr
    assert set(json.loads(warm.stdout.rpartition("HEAVY=")[2])) >= set(HEAVY)


def test_turned_off_the_answers_are_neither_read_nor_written(suite: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAEVAL_FILE_KEYED", "0")
    assert in_process(str(suite), "--cache-dir", str(tmp_path / "cache"))[0] == 1
    assert (tmp_path / "cache").is_dir() and not (tmp_path / "cache" / "answers").exists()


def test_a_switch_that_is_neither_on_nor_off_is_bad_input(suite: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAEVAL_FILE_KEYED", "sometimes")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = main(["run", str(suite), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert rc == 2
    (line,) = err.getvalue().splitlines()
    assert "SAEVAL_FILE_KEYED: the environment variable is 'sometimes'" in line and "Fix: set SAEVAL_FILE_KEYED=0" in line


def test_a_changed_sparsify_run_config_is_evaluated_again(tiny: Assets, tmp_path: Path) -> None:
    """A sparsify checkpoint's loader also reads its run's config.json (model, dataset and context size in the
    SAE's config): after it changes, the cached run writes byte for byte what a cold run writes."""
    from tests.checkpoints import sparse_coder

    run_dir = tmp_path / "sp_run"
    sparse_coder(32, num_latents=64, k=4, seed=1).save_to_disk(run_dir / "layers.0")
    config = run_dir / "config.json"
    config.write_text(json.dumps({"model": "tiny-a", "dataset": "corpus", "ctx_len": 8}))
    suite = write_suite(tmp_path / "thresholds" / "suite.yaml", tiny, sae0=run_dir / "layers.0", second=False)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert in_process(str(suite), *cache)[0] == 0
    config.write_text(json.dumps({"model": "tiny-b", "dataset": "corpus", "ctx_len": 8}))
    cold_rc, cold_out = in_process(str(suite), "--no-cache", *outputs(tmp_path / "cold"))
    warm_rc, warm_out = in_process(str(suite), *cache, *outputs(tmp_path / "warm"))
    assert warm_rc == cold_rc == 0 and table(warm_out) == table(cold_out)
    assert files_of(tmp_path / "warm") == files_of(tmp_path / "cold")
    [record] = json.loads((tmp_path / "warm" / "out" / "all_eval_results.json").read_text())
    assert record["sae_cfg"]["metadata"]["model_name"] == "tiny-b"
