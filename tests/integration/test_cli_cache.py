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


FACTORY = '''
import json
import types

import torch
from safetensors.torch import load_file

FOLDER = {folder!r}


class PlainSAE(torch.nn.Module):
    """A project's own SAE class: SAE Lens's weights, its own encode."""

    def __init__(self) -> None:
        super().__init__()
        weights = load_file(FOLDER + "/sae_weights.safetensors")
        for name, value in weights.items():
            self.register_parameter(name, torch.nn.Parameter(value, requires_grad=False))
        cfg = json.loads(open(FOLDER + "/cfg.json").read())
        self.cfg = types.SimpleNamespace(d_in=cfg["d_in"], d_sae=cfg["d_sae"], metadata=types.SimpleNamespace(
            hook_name=cfg["metadata"]["hook_name"], hook_head_index=None))

    def encode(self, x):
        return torch.relu(x @ self.W_enc + self.b_enc)

    def decode(self, f):
        return f @ self.W_dec + self.b_dec


def load():
    return PlainSAE()
'''


def test_an_edit_to_a_factorys_sae_class_misses_the_cache(tiny: Assets, tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "mysae.py").write_text(FACTORY.format(folder=str(tiny.sae)))
    suite = write_suite(tmp_path / "s.yaml", tiny, second=False)
    suite.write_text(suite.read_text().replace(f"path: {tiny.sae}", "factory: mysae:load"))

    def l0() -> float:  # a fresh process each time, as CI runs it (a module is imported once per process)
        done = subprocess.run([sys.executable, "-m", "pytest_saeval.cli", "run", str(suite), "--no-progress",
                               "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        return float(json.loads((tmp_path / "out" / "all_eval_results.json").read_text())[0]["metrics"]["l0"])

    first = l0()
    assert l0() == first  # unchanged: answered from the cache
    (tmp_path / "mysae.py").write_text(FACTORY.format(folder=str(tiny.sae)).replace("x @ self.W_enc + self.b_enc",
                                                                                    "x @ self.W_enc + self.b_enc - 3.0"))
    assert l0() < first  # the same weights and class name, other code: evaluated again, not the stale answer
