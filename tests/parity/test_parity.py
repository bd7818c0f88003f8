"""Parity: ``pytest_saeval.evaluate`` reports the numbers ``sae_lens.run_evals`` reports.

Every SAE Lens metric, scalar and per feature, must agree within relative 1e-4 / absolute 1e-6
(NaN equals NaN: ``consistent_activation_heuristic`` of a dead feature) for every inference
architecture, on residual, MLP and attention ``hook_z`` hooks (all heads, one head), on a
HookedTransformer and a TransformerBridge, with and without special-token exclusion, for several
batch counts, and with several SAEs in one ``evaluate`` call.

The SAE Lens side is :func:`reference.sae_lens_reference` (a fresh ``ActivationsStore`` per metric
family, so both families start at row 0 as DESIGN §2 specifies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_saeval.catalogue import SAE_LENS_FEATURE_METRICS, SAE_LENS_SCALAR_METRICS

from .conftest import (
    ARCHITECTURES,
    BATCH_SIZE,
    BOS_ID,
    CTX,
    DEFAULT,
    EOS_ID,
    EXCLUDE_IDS,
    HOOKS,
    MATRIX_HOOKS,
    MODELS,
    PAD_ID,
    Case,
    Ref,
    SaeKey,
    isclose_nan,
    record_margin,
    rel_diff,
)
from .reference import RecordingStore, make_activations_store, store_rows

pytestmark = [
    pytest.mark.parity,
    # SAE Lens's ActivationsStore copies each pre-tokenized row with torch.tensor(row).
    pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning"),
]

TOKEN_CASES = (Case(3, 1, False), Case(2, 3, EXCLUDE_IDS), Case(3, 1, True))
"""With DEFAULT (2/3, tokenizer's special tokens): every exclusion setting (none, explicit ids, the
tokenizer's) with 2/3 or 3/1 reconstruction/sparsity batches."""


# --------------------------------------------------------------------------------------------
# comparison


def assert_parity(ours: Any, ref: Ref, where: str) -> None:
    """Every SAE Lens metric of ``ref`` equals ``ours`` (an ``SAEResult``); lists all mismatches."""
    ref_metrics, ref_features = ref
    problems: list[str] = []

    missing = [m for m in SAE_LENS_SCALAR_METRICS if m not in ours.metrics]
    if missing:
        problems.append(f"scalar metrics missing from evaluate(): {missing}")
    for name in SAE_LENS_SCALAR_METRICS:
        if name not in ours.metrics or name not in ref_metrics:
            continue
        a, b = float(ours.metrics[name]), float(ref_metrics[name])
        rel = rel_diff(a, b)
        record_margin(name, rel, where)
        if not isclose_nan(a, b):
            problems.append(f"{name}: evaluate {a!r} vs run_evals {b!r} (relative difference {rel:.3g})")

    for name in SAE_LENS_FEATURE_METRICS:
        in_ref, in_ours = name in ref_features, name in ours.feature_metrics
        if in_ref != in_ours:
            side = "only evaluate" if in_ours else "only run_evals"
            problems.append(f"{name}: reported by {side}")
            continue
        if not in_ref:
            continue
        a_list, b_list = list(ours.feature_metrics[name]), ref_features[name]
        if len(a_list) != len(b_list):
            problems.append(f"{name}: {len(a_list)} features from evaluate, {len(b_list)} from run_evals")
            continue
        worst, worst_i, bad = 0.0, -1, []
        for i, (a, b) in enumerate(zip(a_list, b_list)):
            a = float(a)
            rel = rel_diff(a, b)
            if rel > worst:
                worst, worst_i = rel, i
            if not isclose_nan(a, b):
                bad.append(f"[{i}] {a!r} vs {b!r}")
        record_margin(name, worst, where)
        if bad:
            problems.append(f"{name}: {len(bad)} of {len(a_list)} features differ, e.g. {'; '.join(bad[:4])} (worst relative {worst:.3g} at feature {worst_i})")

    if problems:
        pytest.fail(f"parity mismatch for {where}:\n  " + "\n  ".join(problems), pytrace=False)


def _check(ours_fn: Callable[..., Mapping[str, Any]], reference: Callable[..., Ref], model_name: str, arch: str,
           hook_kind: str, case: Case, *, use_start_at_layer: bool | None = None, all_architectures: bool = False) -> None:
    """Compare one SAE's results with SAE Lens's. ``all_architectures``: take them from one
    evaluate call holding an SAE of every architecture on this hook (fewer passes over the model)."""
    if all_architectures:
        saes = {a: (a, hook_kind, 0) for a in ARCHITECTURES}
        result = ours_fn(model_name, saes, case, use_start_at_layer)[arch]
    else:
        result = ours_fn(model_name, {"sae": (arch, hook_kind, 0)}, case, use_start_at_layer)["sae"]
    where = f"{model_name}/{arch}/{hook_kind}/{case.label}" + ("/no-start-at-layer" if use_start_at_layer is False else "")
    assert_parity(result, reference(model_name, arch, hook_kind, case), where)


# --------------------------------------------------------------------------------------------
# the harness itself


def test_reference_store_yields_rows_in_order(get_model: Callable[[str], Any], get_sae: Callable[..., Any], get_tokens: Any) -> None:
    import torch

    tokens = get_tokens("hooked", "eval")
    rows = store_rows(get_model("hooked"), get_sae("hooked", "standard", "resid"), tokens, batch_size=BATCH_SIZE, n_batches=3)
    assert torch.equal(rows, tokens[: 3 * BATCH_SIZE])


def test_sae_lens_single_store_does_not_rewind(get_model: Callable[[str], Any], get_sae: Callable[..., Any], get_tokens: Any) -> None:
    """Why the harness uses a fresh store per family: with one store, SAE Lens's sparsity batches
    are the rows after its reconstruction batches (FACTS.md), not rows from 0."""
    import torch
    from sae_lens.evals import get_eval_everything_config, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    model, sae, eval_tokens = get_model("hooked"), get_sae("hooked", "standard", "resid"), get_tokens("hooked", "eval")
    recorder = RecordingStore(make_activations_store(model, sae, eval_tokens, batch_size=BATCH_SIZE))
    config = get_eval_everything_config(batch_size_prompts=BATCH_SIZE, n_eval_reconstruction_batches=1, n_eval_sparsity_variance_batches=1)
    run_evals(sae, recorder.store, model, ActivationScaler(), config, exclude_special_tokens=True)
    assert len(recorder.batches) == 2
    assert torch.equal(recorder.batches[0], eval_tokens[:BATCH_SIZE])
    assert torch.equal(recorder.batches[1], eval_tokens[BATCH_SIZE : 2 * BATCH_SIZE])


def test_reference_reports_every_catalogue_metric(reference: Callable[..., Ref]) -> None:
    metrics, features = reference("hooked", "standard", "resid", DEFAULT)
    assert set(metrics) == set(SAE_LENS_SCALAR_METRICS)
    assert set(features) == set(SAE_LENS_FEATURE_METRICS)
    assert metrics["total_tokens_eval_reconstruction"] == 2 * BATCH_SIZE * CTX
    assert metrics["total_tokens_eval_sparsity_variance"] == 3 * BATCH_SIZE * CTX


@pytest.mark.parametrize("model_name", MODELS)
def test_token_rows_make_exclusion_matter(model_name: str, reference: Callable[..., Ref], get_tokens: Any) -> None:
    """The token rows hold BOS, EOS and PAD, so every exclusion setting changes the numbers."""
    tokens = get_tokens(model_name, "eval")
    assert bool((tokens[:, 0] == BOS_ID).all())
    for special in (EOS_ID, PAD_ID):
        assert int((tokens == special).sum()) >= 3
    results = [reference(model_name, "standard", "resid", Case(2, 3, ex)) for ex in (True, False, EXCLUDE_IDS)]
    for name in ("ce_loss_with_sae", "kl_div_with_sae", "l0", "mse", "explained_variance", "l2_norm_in"):
        values = [r[0][name] for r in results]
        assert len(set(values)) == 3, f"{name}: {values}"


# --------------------------------------------------------------------------------------------
# parity


@pytest.mark.parametrize("hook_kind", MATRIX_HOOKS)
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("model_name", MODELS)
def test_every_architecture_and_hook(model_name: str, arch: str, hook_kind: str, ours: Any, reference: Any) -> None:
    """One SAE per evaluate call."""
    _check(ours, reference, model_name, arch, hook_kind, DEFAULT)


@pytest.mark.parametrize("case", TOKEN_CASES, ids=lambda c: c.label)
@pytest.mark.parametrize("hook_kind", ("resid", "z_head"))
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("model_name", MODELS)
def test_exclusion_and_batch_counts(model_name: str, arch: str, hook_kind: str, case: Case, ours: Any, reference: Any) -> None:
    _check(ours, reference, model_name, arch, hook_kind, case, all_architectures=True)


@pytest.mark.parametrize("hook_kind", MATRIX_HOOKS)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_full_forwards_instead_of_start_at_layer(arch: str, hook_kind: str, ours: Any, reference: Any) -> None:
    """On a HookedTransformer the engine starts spliced forwards at the hook's block; forcing full
    forwards (as on a TransformerBridge) gives the same numbers."""
    _check(ours, reference, "hooked", arch, hook_kind, DEFAULT, use_start_at_layer=False, all_architectures=True)


@pytest.mark.parametrize("case", (DEFAULT, Case(3, 1, EXCLUDE_IDS)), ids=lambda c: c.label)
@pytest.mark.parametrize("hook_kind", MATRIX_HOOKS)
def test_kl_and_ce_through_the_clean_summary(hook_kind: str, case: Case, ours: Any, reference: Any) -> None:
    """The scoring the plugin, ``saeval`` and the model-side cache use (``score_by_summary=True``: the
    clean distribution's top tokens exactly, its tail through its moment) agrees with SAE Lens too,
    for every architecture, with all of them in one call."""
    saes = {a: (a, hook_kind, 0) for a in ARCHITECTURES}
    results = ours("hooked", saes, case, None, True)
    direct = ours("hooked", saes, case)
    for arch in ARCHITECTURES:
        assert_parity(results[arch], reference("hooked", arch, hook_kind, case), f"hooked/{arch}/{hook_kind}/{case.label}/summary")
    assert any(results[a].metrics["kl_div_with_sae"] != direct[a].metrics["kl_div_with_sae"] for a in ARCHITECTURES), \
        "the summary path was taken (its rounding differs from the direct computation)"


MULTI: dict[str, SaeKey] = {
    "resid-standard": ("standard", "resid", 0),
    "resid-topk": ("topk", "resid", 0),
    "resid-standard-2": ("standard", "resid", 1),
    "mlp-batchtopk": ("batchtopk", "mlp", 0),
    "z-abstopk": ("abstopk", "z", 0),
    "z-head2-jumprelu": ("jumprelu", "z_head", 0),
    "z-head1-gated": ("gated", "z_head1", 0),
    "resid-temporal": ("temporal", "resid", 0),
}
"""Several SAEs per hook in one call: four on the residual stream (two standard SAEs with
different weights), three on ``hook_z`` (all heads, head 2, head 1: each needs its own ablation)
and one on the MLP output."""


@pytest.mark.parametrize("case", (DEFAULT, Case(3, 1, EXCLUDE_IDS)), ids=lambda c: c.label)
@pytest.mark.parametrize("model_name", MODELS)
def test_several_saes_in_one_call(model_name: str, case: Case, ours: Any, reference: Any) -> None:
    results = ours(model_name, MULTI, case)
    for sae_id, (arch, hook_kind, seed) in MULTI.items():
        result = results[sae_id]
        assert result.hook_name == HOOKS[hook_kind][0]
        assert result.hook_head_index == HOOKS[hook_kind][1]
        assert_parity(result, reference(model_name, arch, hook_kind, case, seed), f"{model_name}/one-call/{sae_id}/{case.label}")
