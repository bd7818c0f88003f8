"""Weight-based metrics of an SAE (no data needed): norms, encoder-decoder cosines, bias, and the
all-pairs feature cosine similarities."""

from __future__ import annotations

import math

import torch

from pytest_saeval.engine.protocols import SAELike
from pytest_saeval.engine.tensors import F64

__all__ = ["COSINE_METRICS", "encoder_weight", "max_other_cosine_sim", "state_of", "weight_metrics"]


def max_other_cosine_sim(vectors: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """For each row ``v_i`` of ``vectors`` ``[n, d]``: ``max_{j ≠ i} cos(v_i, v_j)`` (chunked; float32+).

    Rows with zero norm have cosine 0 to everything. A single row gives NaN. The similarity matrix is
    symmetric, so only its upper block triangle is computed (each block updates the maxima of its rows
    and of its columns): half the matrix products of the full ``n × n`` matrix.
    """
    v = vectors.to(torch.promote_types(vectors.dtype, torch.float32))
    n = v.shape[0]
    if n < 2:
        return torch.full((n,), math.nan, dtype=v.dtype, device=v.device)
    unit = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = torch.full((n,), -math.inf, dtype=v.dtype, device=v.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims = unit[start:stop] @ unit[start:].T  # rows start:stop x columns start:n
        idx = torch.arange(stop - start, device=v.device)
        sims[idx, idx] = -math.inf
        out[start:stop] = torch.maximum(out[start:stop], sims.max(dim=1).values)
        out[start:] = torch.maximum(out[start:], sims.max(dim=0).values)
    return out


COSINE_METRICS: dict[str, str] = {
    "average_max_encoder_cosine_sim": "encoder",
    "max_encoder_cosine_sim": "encoder",
    "average_max_decoder_cosine_sim": "decoder",
    "max_decoder_cosine_sim": "decoder",
}
"""The metrics that need the all-pairs feature cosine similarities (``n² d`` work), by matrix."""


_ABSENT = object()


def state_of(obj: object) -> dict[str, object]:
    """A model's or SAE's ``state_dict()``, else the SAE protocol's ``W_enc``, ``W_dec``, ``b_enc`` and ``b_dec``
    that it has (one set to None included). An adapter whose ``__getattr__`` raises for a missing name,
    whatever it raises (a dict-backed one raises KeyError), does not have it."""
    def member(name: str) -> object:
        try:
            return getattr(obj, name, _ABSENT)
        except Exception:  # noqa: BLE001 - see above
            return _ABSENT

    state_dict = member("state_dict")
    if state_dict is not _ABSENT and callable(state_dict):
        return dict(state_dict())
    return {name: value for name in ("W_enc", "W_dec", "b_enc", "b_dec") if (value := member(name)) is not _ABSENT}


def encoder_weight(sae: object) -> torch.Tensor | None:
    """The SAE's encoder matrix ``[d_in, d_sae]``: ``W_enc``, or ``W_dec.T`` for an SAE with tied
    weights and no ``W_enc`` of its own (SAE Lens's ``TemporalSAE`` with ``tied_weights=True``);
    None when it has neither."""
    w_enc = getattr(sae, "W_enc", None)
    if isinstance(w_enc, torch.Tensor):
        return w_enc
    w_dec = getattr(sae, "W_dec", None)
    if isinstance(w_dec, torch.Tensor) and getattr(getattr(sae, "cfg", None), "tied_weights", False):
        return w_dec.T
    return None


def weight_metrics(
    sae: SAELike, *, encoder_cosines: bool = True, decoder_cosines: bool = True
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per-feature weight statistics (no data needed).

    With ``W_enc`` from :func:`encoder_weight` (``W_dec.T`` for tied weights):
    ``encoder_norm_i = ‖W_enc[:, i]‖``, ``decoder_norm_i = ‖W_dec[i]‖``,
    ``encoder_decoder_cosine_sim_i = cos(W_enc[:, i], W_dec[i])``, ``encoder_bias_i = b_enc[i]``
    (when the SAE has one), ``max_encoder_cosine_sim_i = max_{j≠i} cos(W_enc[:, i], W_enc[:, j])``
    and likewise for the decoder; the ``average_max_*`` scalars are their means over features.
    ``encoder_cosines`` / ``decoder_cosines`` False leave out the all-pairs ones (see :data:`COSINE_METRICS`).
    """
    w_enc = encoder_weight(sae)
    if w_enc is None:
        raise ValueError("the SAE has no W_enc and its weights are not tied")
    w_enc = w_enc.detach()
    w_dec = sae.W_dec.detach()
    enc_cols = w_enc.T  # [d_sae, d_in]
    unit_enc = enc_cols / enc_cols.norm(dim=1, keepdim=True)
    unit_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    features: dict[str, torch.Tensor] = {
        "encoder_norm": w_enc.norm(dim=-2),
        "encoder_decoder_cosine_sim": torch.nn.functional.cosine_similarity(unit_dec, unit_enc),
        "decoder_norm": w_dec.norm(dim=-1),
    }
    scalars: dict[str, float] = {}
    for which, wanted, rows in (("encoder", encoder_cosines, enc_cols), ("decoder", decoder_cosines, w_dec)):
        if wanted:
            features[f"max_{which}_cosine_sim"] = max_other_cosine_sim(rows)
            scalars[f"average_max_{which}_cosine_sim"] = float(features[f"max_{which}_cosine_sim"].to(F64).mean())
    b_enc = getattr(sae, "b_enc", None)
    if isinstance(b_enc, torch.Tensor):
        features["encoder_bias"] = b_enc.detach()
    lists = {name: t.detach().to("cpu", F64).tolist() for name, t in features.items()}
    return scalars, lists
