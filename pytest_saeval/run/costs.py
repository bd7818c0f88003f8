"""What a fused-pass group costs, for balancing shards (pure Python: file sizes and arithmetic).

Without timings a group's cost is an estimate in *weight-byte tokens*, summed over its suites::

    tokens x (model bytes x (1 + SAEs) + sum of SAE bytes)

``tokens`` is what the pass reads (``context_size x batch_size_prompts x (reconstruction +
sparsity batches)``), the model runs once clean and (from the SAE's hook on) once per SAE, and every
SAE encodes and decodes every token. Sizes are the weight files on disk (``*.safetensors``,
``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``, ``*.npz`` in the model or SAE folder); a model or SAE
given by name, release or factory counts as :data:`UNKNOWN_MODEL_BYTES` / :data:`UNKNOWN_SAE_BYTES`.
The same files give the same numbers on every machine.

With the timings of an earlier run (:mod:`pytest_saeval.store.timings`), a group whose every suite has
one costs the sum of their seconds; the other groups' estimates are scaled to seconds by the ratio
seconds / estimate of the timed groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.timings import SuiteTiming

__all__ = ["UNKNOWN_MODEL_BYTES", "UNKNOWN_SAE_BYTES", "WEIGHT_SUFFIXES", "GroupCosts", "estimate", "group_costs",
           "weight_bytes"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npz")
"""File endings counted as weights in a model or SAE folder."""

UNKNOWN_MODEL_BYTES = 5.0e8
"""Size assumed for a model without a local folder (about GPT-2 small in float32)."""

UNKNOWN_SAE_BYTES = 1.5e8
"""Size assumed for an SAE without a local folder (about a 24576-feature SAE on GPT-2 small)."""


def weight_bytes(folder: Path | None) -> float | None:
    """Total size of the weight files directly inside ``folder`` (a file: its size); ``None`` when there are none."""
    if folder is None:
        return None
    try:
        if folder.is_file():
            return float(folder.stat().st_size)
        sizes = [p.stat().st_size for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    except OSError:
        return None
    return float(sum(sizes)) if sizes else None


def estimate(suite: Suite, sae_ids: Sequence[str]) -> float:
    """The estimated cost of evaluating ``sae_ids`` (entries of ``suite``; ``id/match`` for release regexes)."""
    d = suite.data
    tokens = d.context_size * d.batch_size_prompts * (d.n_reconstruction_batches + d.n_sparsity_batches)
    model = weight_bytes(suite.model.path) if suite.model.path is not None else None
    model_bytes = UNKNOWN_MODEL_BYTES if model is None else model
    specs = {s.id: s for s in suite.saes}
    sae_bytes = 0.0
    for uid in sae_ids:
        spec = specs.get(uid) or specs.get(uid.split("/", 1)[0])
        found = weight_bytes(spec.path) if spec is not None and spec.path is not None else None
        sae_bytes += UNKNOWN_SAE_BYTES if found is None else found
    return float(tokens) * (model_bytes * (1 + len(sae_ids)) + sae_bytes)


@dataclass(frozen=True)
class GroupCosts:
    """The costs of a partition's groups and what they rest on."""

    costs: tuple[float, ...]
    """One cost per group, in the order given."""
    basis: str
    """``estimate`` (no timings), ``timings`` (every group timed) or ``timings+estimate`` (some)."""


def group_costs(groups: Sequence[Sequence[tuple[str, Suite, Sequence[str]]]],
                timings: Mapping[str, SuiteTiming]) -> GroupCosts:
    """Costs of ``groups``: each a list of ``(suite name, suite, selected SAE ids)``."""
    estimates = [sum(estimate(suite, uids) for _, suite, uids in members) for members in groups]
    timed: list[float | None] = [
        sum(timings[name].seconds for name, _, _ in members) if all(name in timings for name, _, _ in members) else None
        for members in groups
    ]
    known = [(t, e) for t, e in zip(timed, estimates) if t is not None]
    if not known or sum(t for t, _ in known) <= 0:  # nothing timed, or only instant (cached) runs: no scale
        return GroupCosts(tuple(estimates), "estimate")
    total_estimate = sum(e for _, e in known)
    scale = sum(t for t, _ in known) / total_estimate if total_estimate > 0 else 0.0
    costs = tuple(t if t is not None else e * scale for t, e in zip(timed, estimates))
    return GroupCosts(costs, "timings" if len(known) == len(groups) else "timings+estimate")
