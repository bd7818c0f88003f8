"""The metrics pytest-saeval adds beyond SAE Lens: present, finite, and equal to their definitions
(DESIGN §2, SAEBench core) computed from SAE Lens's own numbers and the SAE's weights.

Tolerances: values built from counts or weights use the parity tolerance (relative 1e-4, absolute
1e-6). ``ce_loss_increase`` is a difference of two nearly equal losses, so it is checked exactly
against evaluate's own two losses, and against SAE Lens's within the error the parity tolerance
allows on those two losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_saeval.catalogue import METRICS

from .conftest import ARCHITECTURES, DEFAULT, MATRIX_HOOKS, MODELS, REL_TOL, Ref, isclose_nan

pytestmark = [
    pytest.mark.parity,
    # SAE Lens's ActivationsStore copies each pre-tokenized row with torch.tensor(row).
    pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning"),
]

EXTRA_SCALARS = tuple(m.name for m in METRICS.values() if m.source != "sae_lens" and not m.per_feature)
EXTRA_FEATURES = tuple(m.name for m in METRICS.values() if m.source != "sae_lens" and m.per_feature)


def _max_other_cosine_sim(vectors: Any) -> list[float]:
    """Per row i: max over j != i of cos(v_i, v_j) (float64)."""

    v = vectors.detach().double()
    v = v / v.norm(dim=-1, keepdim=True)
    sims = v @ v.T
    sims.fill_diagonal_(-math.inf)
    return sims.max(dim=-1).values.tolist()


def _expected_extras(sae: Any, ref: Ref) -> tuple[dict[str, float], dict[str, list[float]]]:
    metrics, features = ref
    density = features["feature_density"]
    total = sum(density)
    scalars = {"frac_alive": sum(d > 0 for d in density) / len(density)}
    for label, p in (("1", 0.01), ("10", 0.1)):
        over = [d for d in density if d > p]
        scalars[f"freq_over_{label}_percent"] = len(over) / len(density)
        scalars[f"normalized_freq_over_{label}_percent"] = sum(over) / total if total > 0 else math.nan
    per_feature = {
        "decoder_norm": sae.W_dec.detach().double().norm(dim=-1).tolist(),
        "max_encoder_cosine_sim": _max_other_cosine_sim(sae.W_enc.T),
        "max_decoder_cosine_sim": _max_other_cosine_sim(sae.W_dec),
    }
    scalars["average_max_encoder_cosine_sim"] = sum(per_feature["max_encoder_cosine_sim"]) / len(density)
    scalars["average_max_decoder_cosine_sim"] = sum(per_feature["max_decoder_cosine_sim"]) / len(density)
    return scalars, per_feature


@pytest.mark.parametrize("hook_kind", MATRIX_HOOKS)
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("model_name", MODELS)
def test_extras_match_their_definitions(
    model_name: str, arch: str, hook_kind: str, ours: Callable[..., Mapping[str, Any]], reference: Callable[..., Ref],
    get_sae: Callable[..., Any],
) -> None:
    result = ours(model_name, {"sae": (arch, hook_kind, 0)}, DEFAULT)["sae"]
    ref = reference(model_name, arch, hook_kind, DEFAULT)
    sae = get_sae(model_name, arch, hook_kind)
    problems: list[str] = []

    for name in EXTRA_SCALARS:
        value = result.metrics.get(name)
        if value is None or not math.isfinite(value):
            problems.append(f"{name}: {value!r} (expected a finite number)")
    for name in EXTRA_FEATURES:
        values = result.feature_metrics.get(name)
        if values is None or len(values) != sae.cfg.d_sae or not all(math.isfinite(v) for v in values):
            problems.append(f"{name}: missing, wrong length or not finite")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)

    scalars, per_feature = _expected_extras(sae, ref)
    for name, expected in scalars.items():
        if not isclose_nan(result.metrics[name], expected):
            problems.append(f"{name}: evaluate {result.metrics[name]!r}, definition {expected!r}")
    for name, expected_list in per_feature.items():
        bad = [i for i, (a, b) in enumerate(zip(result.feature_metrics[name], expected_list)) if not isclose_nan(a, b)]
        if bad:
            i = bad[0]
            problems.append(f"{name}: {len(bad)} features differ, e.g. [{i}] {result.feature_metrics[name][i]!r} vs {expected_list[i]!r}")

    # ce_loss_increase = ce_loss_with_sae - ce_loss_without_sae
    m, ref_m = result.metrics, ref[0]
    own = m["ce_loss_with_sae"] - m["ce_loss_without_sae"]
    if not math.isclose(m["ce_loss_increase"], own, rel_tol=1e-9, abs_tol=1e-12):
        problems.append(f"ce_loss_increase {m['ce_loss_increase']!r} != ce_loss_with_sae - ce_loss_without_sae = {own!r}")
    theirs = ref_m["ce_loss_with_sae"] - ref_m["ce_loss_without_sae"]
    allowed = REL_TOL * (abs(ref_m["ce_loss_with_sae"]) + abs(ref_m["ce_loss_without_sae"]))
    if abs(m["ce_loss_increase"] - theirs) > allowed:
        problems.append(f"ce_loss_increase {m['ce_loss_increase']!r} vs SAE Lens's {theirs!r}")

    if problems:
        pytest.fail(f"{model_name}/{arch}/{hook_kind}:\n  " + "\n  ".join(problems), pytrace=False)
