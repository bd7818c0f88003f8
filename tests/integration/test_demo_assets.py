"""The shipped demo assets (examples/tiny) load, fit together and tell good SAEs from the weak one.

They are built by ``python examples/build_tiny.py --out examples/tiny``; these checks read them only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "examples" / "tiny"
DEMO = ROOT / "thresholds" / "demo.yaml"
WEAK = ROOT / "examples" / "weak.yaml"
WEAK_ID = "weak-layer1-res-standard"


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    return json.loads((TINY / "BUILD_INFO.json").read_text())


@pytest.fixture(scope="module")
def model() -> Any:
    from pytest_saeval.sources.models import load_model

    return load_model(path=TINY / "model", device="cpu")


@pytest.fixture(scope="module")
def tokens() -> Any:
    import numpy as np

    return np.load(TINY / "eval_tokens.npy")


def _sae_dirs() -> list[Path]:
    return sorted(p for p in (TINY / "saes").iterdir() if p.is_dir())


def test_sizes_are_small_and_recorded(info: dict[str, Any]) -> None:
    files = [p for p in TINY.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total < 20_000_000, f"examples/tiny holds {total / 1e6:.1f} MB"
    recorded = sum(p.stat().st_size for p in files if p.name != "BUILD_INFO.json")
    assert recorded == info["size_bytes"]
    assert {p.name for p in _sae_dirs()} == set(info["saes"])
    for folder in _sae_dirs():
        assert {p.name for p in folder.iterdir()} == {"cfg.json", "sae_weights.safetensors"}


def test_model_is_far_better_than_unigram(info: dict[str, Any]) -> None:
    m = info["model"]
    assert m["architecture"] == "GPT2LMHeadModel"
    assert m["held_out_ce_nats"] < m["unigram_entropy_nats"] - 2.0
    assert m["held_out_ce_nats"] < m["unigram_held_out_ce_nats"] - 2.0


def test_model_loads_and_reproduces_its_recorded_loss(model: Any, tokens: Any, info: dict[str, Any]) -> None:
    import torch

    assert model.cfg.d_vocab == info["vocab_size"] == len(model.tokenizer)
    assert model.cfg.n_ctx >= info["context_size"]
    assert model.tokenizer.bos_token_id == 0
    rows = torch.as_tensor(tokens[:64], dtype=torch.long)
    with torch.no_grad():
        loss = float(model(rows, return_type="loss"))
    assert loss < info["model"]["unigram_entropy_nats"] - 2.0
    assert abs(loss - info["model"]["held_out_ce_first_64_rows_nats"]) < 1e-3


def test_eval_tokens_fit_the_model(tokens: Any, info: dict[str, Any]) -> None:
    import numpy as np

    assert tokens.ndim == 2 and tokens.shape == (info["corpus"]["eval_rows"], info["context_size"])
    assert np.issubdtype(tokens.dtype, np.integer)
    assert tokens.min() >= 0 and tokens.max() < info["vocab_size"]
    assert (tokens[:, 0] == 0).all(), "every row starts with BOS"
    # real text, not noise: many distinct tokens, and rows differ
    assert len(np.unique(tokens)) > 200
    assert len({r.tobytes() for r in tokens}) == len(tokens)


@pytest.mark.parametrize("folder", _sae_dirs(), ids=lambda p: p.name)
def test_sae_loads_and_fits_the_model(folder: Path, model: Any, info: dict[str, Any]) -> None:
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(folder), device="cpu")
    assert sae.cfg.d_in == model.cfg.d_model
    assert sae.cfg.metadata.hook_name in model.hook_dict
    assert sae.cfg.metadata.context_size == info["context_size"]
    assert sae.cfg.metadata.prepend_bos is True
    assert sae.cfg.architecture() == info["saes"][folder.name]["spec"]["architecture"]


def test_suites_point_at_the_shipped_assets() -> None:
    from pytest_saeval.spec.loader import load_suite

    demo = load_suite(DEMO)
    weak = load_suite(WEAK)
    for suite in (demo, weak):
        assert Path(suite.model.path).resolve() == (TINY / "model").resolve()
        assert Path(suite.data.tokens).resolve() == (TINY / "eval_tokens.npy").resolve()
        for sae in suite.saes:
            assert (Path(sae.path) / "cfg.json").is_file(), sae.id
    assert WEAK_ID not in demo.sae_ids
    assert weak.sae_ids == (WEAK_ID,)


def test_recorded_metrics_pass_the_demo_gates_and_fail_the_weak_ones(info: dict[str, Any]) -> None:
    from pytest_saeval.spec.loader import load_suite
    from pytest_saeval.spec.verdict import check_gate

    for path, expect_pass in ((DEMO, True), (WEAK, False)):
        suite = load_suite(path)
        outcomes = []
        for sae in suite.saes:
            name = Path(sae.path).name
            metrics = info["saes"][name]["metrics"]
            for gate in sae.gates:
                outcomes.append((sae.id, gate.metric, check_gate(gate, metrics[gate.metric]).passed))
        assert outcomes
        if expect_pass:
            assert all(ok for _, _, ok in outcomes), [o for o in outcomes if not o[2]]
        else:
            assert not any(ok for _, _, ok in outcomes), [o for o in outcomes if o[2]]


def test_weak_sae_is_measurably_worse(model: Any, tokens: Any) -> None:
    from sae_lens import SAE

    from pytest_saeval import EvalSettings, evaluate

    saes = {
        name: SAE.load_from_disk(str(TINY / "saes" / name), device="cpu")
        for name in ("layer1-res-standard", WEAK_ID)
    }
    settings = EvalSettings(batch_size_prompts=8, n_reconstruction_batches=2, n_sparsity_batches=2)
    results = evaluate(model, saes, tokens[:16], settings)
    good, weak = results["layer1-res-standard"].metrics, results[WEAK_ID].metrics
    assert good["explained_variance"] > 0.85
    assert weak["explained_variance"] < good["explained_variance"] - 0.1
    assert weak["cossim"] < good["cossim"] - 0.03
    assert weak["ce_loss_score"] < good["ce_loss_score"] - 0.02
    assert weak["kl_div_score"] < good["kl_div_score"] - 0.02
    assert weak["l0"] > 3 * good["l0"]
