"""Parity for SAEs of the other trainers: a sparsify checkpoint (written by the real ``sparsify``
package) or a dictionary_learning trainer folder (written in its format), loaded by pytest-saeval,
gives through ``evaluate`` and through ``saeval run`` the numbers ``sae_lens.run_evals`` gives on the
same converted SAE — every SAE Lens metric, relative 1e-4 / absolute 1e-6.

The model is the parity tier's tiny GPT-2 folder, loaded the way a suite's ``model: path:`` loads it;
tokens are sampled from it (with BOS, EOS and PAD runs, excluded as special tokens). Hooks come from
the checkpoints: sparsify's ``h.1`` / ``h.0.mlp`` folder names, dictionary_learning's submodule names.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_saeval.catalogue import SAE_LENS_FEATURE_METRICS, SAE_LENS_SCALAR_METRICS
from tests.checkpoints import DL_CLASSES, DL_TOPK, dl_state, fitted_sparse_coder, hook_activations, save_dl_trainer

from .conftest import BATCH_SIZE, CTX, D_SAE, DEFAULT, K, isclose_nan, record_margin, rel_diff, sample_token_rows
from .reference import sae_lens_reference

pytestmark = [
    pytest.mark.parity,
    pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

RESID, MLP = "blocks.1.hook_resid_post", "blocks.0.hook_mlp_out"
CASES: dict[str, tuple[str, ...]] = {  # id -> how it is written (see ``checkpoints``)
    "eai-topk-resid": ("sparsify", "h.1"),
    "eai-topk-mlp": ("sparsify", "h.0.mlp"),
    "eai-signed-resid": ("sparsify", "signed/h.1"),
    **{f"dl-{c}": ("dictionary_learning", c) for c in DL_CLASSES},
}
ARCHITECTURE = {"eai-topk-resid": "TopKSAE", "eai-topk-mlp": "TopKSAE", "eai-signed-resid": "AbsTopKSAE",
                "dl-AutoEncoder": "StandardSAE", "dl-AutoEncoderNew": "StandardSAE", "dl-AutoEncoderTopK": "TopKSAE",
                "dl-BatchTopKSAE": "JumpReLUSAE", "dl-MatryoshkaBatchTopKSAE": "JumpReLUSAE",
                "dl-JumpReluAutoEncoder": "JumpReLUSAE", "dl-GatedAutoEncoder": "GatedSAE"}


@pytest.fixture(scope="module")
def folder_model(model_folder: Path) -> Any:
    from pytest_saeval.sources.models import load_model

    return load_model(path=model_folder, device="cpu")


@pytest.fixture(scope="module")
def eval_tokens(folder_model: Any) -> Any:
    return sample_token_rows(folder_model, 16, seed=4321)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, folder_model: Any) -> dict[str, Path]:
    """Every case's checkpoint folder, fitted on calibration rows other than the evaluation rows."""
    cal = sample_token_rows(folder_model, 24, seed=99)
    acts = {RESID: hook_activations(folder_model, RESID, cal), MLP: hook_activations(folder_model, MLP, cal)}
    root = tmp_path_factory.mktemp("formats")
    folders: dict[str, Path] = {}
    for i, (case, (fmt, where)) in enumerate(CASES.items()):
        if fmt == "sparsify":
            folder = root / "eai" / where
            fitted_sparse_coder(acts[MLP if "mlp" in where else RESID], num_latents=D_SAE, k=K, seed=i).save_to_disk(folder)
            if where.startswith("signed"):
                cfg = json.loads((folder / "cfg.json").read_text())
                (folder / "cfg.json").write_text(json.dumps({**cfg, "signed": True}))
        else:
            submodule = "mlp_out_layer_0" if where == "JumpReluAutoEncoder" else "resid_post_layer_1"
            state = dl_state(where, folder_model.cfg.d_model, D_SAE, k=K, seed=i,
                             acts=acts[MLP if submodule.startswith("mlp") else RESID])
            folder = save_dl_trainer(root / "dl" / submodule / f"trainer_{i}", where, state,
                                     layer=int(submodule[-1]), submodule_name=submodule,
                                     k=K if where in DL_TOPK else None, ctx_len=CTX)
        folders[case] = folder
    return folders


@pytest.fixture(scope="module")
def references(folder_model: Any, eval_tokens: Any, checkpoints: dict[str, Path]) -> Callable[[str], Any]:
    """``references(case)``: (the loaded SAE, SAE Lens's ``run_evals`` numbers on it), cached."""
    from pytest_saeval.sources.saes import load_sae_folder

    cache: dict[str, Any] = {}

    def get(case: str) -> Any:
        if case not in cache:
            sae = load_sae_folder(checkpoints[case])
            cache[case] = sae, sae_lens_reference(folder_model, sae, eval_tokens, batch_size=BATCH_SIZE,
                                                  n_recon=DEFAULT.n_recon, n_sparse=DEFAULT.n_sparse,
                                                  exclude_special_tokens=DEFAULT.exclude)
        return cache[case]

    return get


def _mismatches(metrics: Mapping[str, float], features: Mapping[str, list[float]] | None,
                ref: tuple[dict[str, float], dict[str, list[float]]], where: str) -> list[str]:
    ref_metrics, ref_features = ref
    problems = []
    for name in SAE_LENS_SCALAR_METRICS:
        a, b = float(metrics[name]) if metrics.get(name) is not None else math.nan, float(ref_metrics[name])
        record_margin(name, rel_diff(a, b), where)
        if not isclose_nan(a, b):
            problems.append(f"{name}: ours {a!r} vs run_evals {b!r}")
    for name in SAE_LENS_FEATURE_METRICS if features is not None else ():
        if name not in ref_features:
            continue
        bad = [i for i, (a, b) in enumerate(zip(features[name], ref_features[name], strict=True))
               if not isclose_nan(float(a), float(b))]
        if bad:
            problems.append(f"{name}: {len(bad)} features differ, first {bad[0]}")
    return problems


@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_equals_run_evals(case, folder_model, eval_tokens, references):
    from pytest_saeval import evaluate

    sae, ref = references(case)
    assert type(sae).__name__ == ARCHITECTURE[case]
    ours = evaluate(folder_model, {case: sae}, eval_tokens, DEFAULT.settings())[case]
    assert 1 <= ours.metrics["l0"] < D_SAE / 2 and ours.metrics["explained_variance"] > 0, "features fire, x_hat helps"
    problems = _mismatches(ours.metrics, ours.feature_metrics, ref, f"formats/{case}")
    assert not problems, f"{case}: " + "; ".join(problems)


def test_saeval_run_equals_run_evals(tmp_path, model_folder, eval_tokens, checkpoints, references, capsys):
    """One ``saeval run`` over a suite with every case (all loaded from their folders by the command)."""
    import numpy as np

    from pytest_saeval.cli import main

    np.save(tmp_path / "tokens.npy", eval_tokens.numpy())
    entries = "".join(f"  - id: {case}\n    path: {folder}\n    gates: {{l0: \">= 0\"}}\n"
                      for case, folder in checkpoints.items())
    suite = tmp_path / "formats.yaml"
    suite.write_text(textwrap.dedent(f"""\
        model:
          path: {model_folder}
          device: cpu
        data:
          tokens: tokens.npy
          context_size: {CTX}
          batch_size_prompts: {BATCH_SIZE}
          n_reconstruction_batches: {DEFAULT.n_recon}
          n_sparsity_batches: {DEFAULT.n_sparse}
          exclude_special_tokens: true
        saes:
        """) + entries)
    code = main(["run", str(suite), "--output-dir", str(tmp_path / "out"), "--no-cache", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    records = {r["unique_id"]: r for r in json.loads((tmp_path / "out" / "all_eval_results.json").read_text())}
    assert set(records) == set(CASES)
    problems = []
    for case in CASES:
        _, ref = references(case)
        problems += [f"{case}: {p}" for p in _mismatches(records[case]["metrics"], None, ref, f"formats/{case}/saeval-run")]
    assert not problems, "; ".join(problems)
