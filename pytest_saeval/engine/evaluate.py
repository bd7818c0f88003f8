"""``evaluate()``: every catalogue metric for many SAEs on one model, in one fused pass.

:func:`evaluate` is the public entry; :func:`run_pass` is the same pass with what the layers above
add: a model-side store (the SAE-independent part of a pass, kept between calls) and the scoring of
KL / CE through the clean distribution's summary (:class:`Scoring`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from pytest_saeval.catalogue import METRICS
from pytest_saeval.engine.forwards import Forwards
from pytest_saeval.engine.fused import FusedPass, Scoring
from pytest_saeval.engine.hooks import group_saes, plain_hook_z, sae_input
from pytest_saeval.engine.inputs import as_token_tensor, check_inputs, supports_start_at_layer
from pytest_saeval.engine.protocols import SAELike
from pytest_saeval.engine.results import SAEResult
from pytest_saeval.engine.weights import COSINE_METRICS
from pytest_saeval.errors import InputError, Subject, did_you_mean
from pytest_saeval.settings import EvalSettings

__all__ = ["EngineOptions", "Scoring", "cosine_matrices", "evaluate", "run_pass"]


@dataclass(frozen=True)
class EngineOptions:
    """How :func:`evaluate` runs (never what it measures)."""

    use_start_at_layer: bool | None = None
    """Force (True) or forbid (False) forwards that start at the hook's block; None: whenever the
    model supports it (a ``HookedTransformer``; not a ``TransformerBridge``)."""
    progress: bool = False
    """Show a tqdm bar on stderr."""
    metrics: frozenset[str] | None = None
    """Catalogue names the caller needs; None means all. Work that only serves metrics outside this
    set is skipped (today: the all-pairs feature cosine similarities, ``n² d`` work per SAE); the
    results may still hold more metrics than asked for."""

    def __post_init__(self) -> None:
        if self.metrics is not None:
            names = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
            object.__setattr__(self, "metrics", frozenset(names))
            cosine_matrices(self.metrics)  # validates the names


def cosine_matrices(metrics: Collection[str] | None) -> frozenset[str]:
    """Which all-pairs cosine matrices (``"encoder"``, ``"decoder"``) the requested metrics need.

    Raises:
        InputError: a name that is not in the catalogue.
    """
    if metrics is None:
        return frozenset({"encoder", "decoder"})
    for name in metrics:
        if name not in METRICS:
            raise InputError(
                f"unknown metric '{name}'{did_you_mean(name, METRICS)}",
                key="metrics",
                fix="use catalogue names (pytest_saeval.METRICS)",
            )
    return frozenset(COSINE_METRICS[name] for name in metrics if name in COSINE_METRICS)


def _check_shapes(forwards: Forwards, saes: Mapping[str, SAELike], tokens: torch.Tensor) -> None:
    """Probe 1 row x 2 tokens through the needed blocks to check each SAE's d_in against its hook."""
    probe = tokens[:1, :2].to(forwards.device)
    _, captured = forwards.capture(probe, full=False)
    for group in forwards.groups:
        first = group.sae_ids[0]
        act = captured.get(group.hook_name)
        if act is None:
            raise InputError(f"hook '{group.hook_name}' did not fire in a forward pass", subject=Subject(sae=first, part="hook_name"),
                             fix="use a hook on the model's forward path (e.g. blocks.N.hook_resid_pre)")
        if group.head_index is not None:
            n_heads = act.shape[2] if act.ndim == 4 else None
            if n_heads is None or not 0 <= group.head_index < n_heads:
                raise InputError(
                    f"hook_head_index {group.head_index} is invalid for '{group.hook_name}' "
                    f"(activation shape {tuple(act.shape)})",
                    subject=Subject(sae=first, part="hook_head_index"),
                    fix="use a head index in [0, n_heads) on a per-head hook such as attn.hook_z",
                )
        width = sae_input(act, group.head_index).shape[-1]
        for sae_id in group.sae_ids:
            d_in = int(saes[sae_id].cfg.d_in)
            if d_in != width:
                raise InputError(
                    f"SAE d_in is {d_in} but hook '{group.hook_name}' gives activations of size {width}",
                    subject=Subject(sae=sae_id, part="d_in"),
                    fix="evaluate the SAE on the model and hook it was trained on",
                )


@torch.no_grad()
def run_pass(model: Any, saes: Mapping[str, SAELike], tokens: torch.Tensor, settings: EvalSettings,
             options: EngineOptions, scoring: Scoring) -> dict[str, SAEResult]:
    """:func:`evaluate` on checked inputs (``tokens`` from :func:`~.inputs.as_token_tensor`), with ``scoring``."""
    fast = supports_start_at_layer(model) if options.use_start_at_layer is None else options.use_start_at_layer
    forwards = Forwards(model, group_saes(saes), fast)
    fused = FusedPass(model, saes, tokens, settings, forwards, scoring, cosine_matrices(options.metrics))
    with plain_hook_z(saes):
        _check_shapes(forwards, saes, tokens)
        results = fused.run(options.progress)
    return {sae_id: results[sae_id] for sae_id in saes}


def evaluate(model: Any, saes: Mapping[str, SAELike], tokens: Any, settings: EvalSettings | None = None,
             options: EngineOptions | None = None) -> dict[str, SAEResult]:
    """Evaluate every SAE in ``saes`` on ``model`` over ``tokens`` in one fused pass.

    Args:
        model: a TransformerLens ``HookedTransformer`` or ``TransformerBridge``; its device is used.
        saes: ``{id: sae}``: SAE Lens SAEs, or objects of the SAE protocol
            (:class:`~pytest_saeval.engine.protocols.SAELike`).
        tokens: integer array ``[n_sequences, context_size]``; batch ``i`` is rows ``[i*B, (i+1)*B)``.
        settings: batch size, batch counts and special-token exclusion.
        options: how to run (:class:`EngineOptions`: forwards from the hook's block, progress bar,
            which metrics are needed).

    KL and CE are computed directly from both runs' logits, as SAE Lens does.

    Returns:
        ``{id: SAEResult}`` in the order of ``saes``.

    Raises:
        InputError: bad tokens, too few rows, unknown hooks, ``d_in`` mismatches, no SAEs.
    """
    settings = settings or EvalSettings()
    options = options or EngineOptions()
    token_tensor = as_token_tensor(tokens)
    check_inputs(model, saes, token_tensor, settings)
    return run_pass(model, saes, token_tensor, settings, options, Scoring())
