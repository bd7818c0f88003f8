"""The SAE Lens side of the parity tests: ``sae_lens.run_evals`` over exact, in-order token rows.

SAE Lens's ``run_evals`` reads both metric families from one ``ActivationsStore`` and its
``reset_input_dataset`` does not rewind the row iterator, so its sparsity batches follow its
reconstruction batches. pytest-saeval starts both families at row 0 (DESIGN §2). To compare like
with like, :func:`sae_lens_reference` calls ``run_evals`` twice, each time with a fresh store over
the same rows: once with only the reconstruction flags (KL, CE) on and once with only the
sparsity / variance / shrinkage / feature-density flags (plus weight-based feature metrics) on,
then flattens SAE Lens's nested groups and merges the two.

Every batch the store hands out is recorded and checked against ``tokens[i*B:(i+1)*B]``, so a
reference that silently read other rows (shuffled, wrapped around, skipped) fails loudly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch, datasets and SAE Lens are imported where they are used
    import torch

ExcludeSpecial = bool | Iterable[int]


class RecordingStore:
    """Wraps an ``ActivationsStore``'s ``get_batch_tokens`` to keep every batch it hands out."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.batches: list[torch.Tensor] = []
        original = store.get_batch_tokens

        def get_batch_tokens(*args: Any, **kwargs: Any) -> torch.Tensor:
            batch = original(*args, **kwargs)
            self.batches.append(batch.detach().cpu().clone())
            return batch

        store.get_batch_tokens = get_batch_tokens


def make_activations_store(model: Any, sae: Any, tokens: torch.Tensor, *, batch_size: int) -> Any:
    """A fresh SAE Lens ``ActivationsStore`` that yields ``tokens``' rows in order, from row 0.

    Built from an in-memory, pre-tokenized ``datasets.Dataset`` (column ``input_ids``), unshuffled
    and offline; rows are used as they are (no BOS added, no concatenation).
    """
    import datasets
    import torch
    from sae_lens.training.activations_store import ActivationsStore

    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [n_rows, ctx], got shape {tuple(tokens.shape)}")
    n_rows, context_size = tokens.shape
    dataset = datasets.Dataset.from_dict({"input_ids": tokens.cpu().tolist()})
    metadata = sae.cfg.metadata
    return ActivationsStore(
        model=model,
        dataset=dataset,
        streaming=False,
        hook_name=metadata.hook_name,
        hook_head_index=metadata.hook_head_index,
        context_size=context_size,
        d_in=sae.cfg.d_in,
        n_batches_in_buffer=1,
        total_training_tokens=n_rows,
        store_batch_size_prompts=batch_size,
        train_batch_size_tokens=batch_size * context_size,
        prepend_bos=True,
        normalize_activations="none",
        device=torch.device("cpu"),
        dtype=sae.cfg.dtype,
    )


def store_rows(model: Any, sae: Any, tokens: torch.Tensor, *, batch_size: int, n_batches: int) -> torch.Tensor:
    """The rows a fresh store hands out for ``n_batches`` batches, stacked (a harness self-check)."""
    import torch

    store = make_activations_store(model, sae, tokens, batch_size=batch_size)
    return torch.cat([store.get_batch_tokens(batch_size).cpu() for _ in range(n_batches)])


def _flatten(groups: Mapping[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for group, values in groups.items():
        if not isinstance(values, Mapping):
            raise TypeError(f"run_evals group {group!r} is not a mapping: {values!r}")
        for name, value in values.items():
            if name in flat:
                raise ValueError(f"run_evals reports {name!r} in two groups")
            flat[name] = float(value)
    return flat


def _check_rows(recorder: RecordingStore, tokens: torch.Tensor, *, batch_size: int, n_batches: int, family: str) -> None:
    import torch

    got = recorder.batches
    if len(got) != n_batches:
        raise AssertionError(f"{family}: SAE Lens read {len(got)} batches, expected {n_batches}")
    for i, batch in enumerate(got):
        expected = tokens[i * batch_size : (i + 1) * batch_size].cpu()
        if batch.shape != expected.shape or not torch.equal(batch, expected):
            raise AssertionError(f"{family}: SAE Lens batch {i} is not rows [{i * batch_size}, {(i + 1) * batch_size})")


def sae_lens_reference(
    model: Any,
    sae: Any,
    tokens: torch.Tensor,
    *,
    batch_size: int,
    n_recon: int,
    n_sparse: int,
    exclude_special_tokens: ExcludeSpecial,
    weight_metrics: bool = True,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every metric ``sae_lens.run_evals`` reports for ``sae``, both families starting at row 0
    (``weight_metrics=False``: without the weight-based feature metrics).

    Returns ``(metrics, feature_metrics)``: SAE Lens's scalar metrics under their flat names, and
    its per-feature lists (``feature_density``, ``consistent_activation_heuristic``,
    ``encoder_norm``, ``encoder_decoder_cosine_sim`` and, where the SAE has one, ``encoder_bias``).
    """
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    needed = batch_size * max(n_recon, n_sparse)
    if tokens.shape[0] < needed:
        raise ValueError(f"{tokens.shape[0]} token rows, {needed} needed")
    exclude: bool | list[int] = exclude_special_tokens if isinstance(exclude_special_tokens, bool) else list(exclude_special_tokens)

    common: dict[str, Any] = {
        "batch_size_prompts": batch_size,
        "n_eval_reconstruction_batches": n_recon,
        "n_eval_sparsity_variance_batches": n_sparse,
        "library_version": "reference",
        "git_hash": "reference",
    }
    recon_config = EvalConfig(compute_kl=True, compute_ce_loss=True, **common)
    sparse_config = EvalConfig(
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
        compute_featurewise_weight_based_metrics=weight_metrics,
        **common,
    )

    metrics: dict[str, float] = {}
    feature_metrics: dict[str, list[float]] = {}
    for family, config, n_batches in (("reconstruction", recon_config, n_recon), ("sparsity", sparse_config, n_sparse)):
        recorder = RecordingStore(make_activations_store(model, sae, tokens, batch_size=batch_size))
        groups, features = run_evals(
            sae=sae,
            activation_store=recorder.store,
            model=model,
            activation_scaler=ActivationScaler(),
            eval_config=config,
            exclude_special_tokens=exclude,
        )
        _check_rows(recorder, tokens, batch_size=batch_size, n_batches=n_batches, family=family)
        for name, value in _flatten(groups).items():
            if name in metrics and not _same(metrics[name], value):
                raise AssertionError(f"{name}: {metrics[name]} from one family, {value} from the other")
            metrics[name] = value
        for name, values in features.items():
            if name in feature_metrics:
                raise AssertionError(f"{name} reported by both families")
            feature_metrics[name] = [float(v) for v in values]
    return metrics, feature_metrics


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b
