"""Checks and normalisation of what :func:`~pytest_saeval.engine.evaluate` is given: the model's
device and capabilities, each SAE's hook, the token array, and the settings against the model.
Every problem is one :class:`~pytest_saeval.errors.InputError` naming the key and the fix."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from pytest_saeval.engine.protocols import SAELike
from pytest_saeval.engine.weights import encoder_weight, state_of
from pytest_saeval.errors import InputError, Subject, did_you_mean
from pytest_saeval.settings import EvalSettings

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


def model_device(model: Any) -> torch.device:
    """The device of the model's parameters (``cpu`` for a parameter-less model)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def supports_start_at_layer(model: Any) -> bool:
    """True for ``HookedTransformer`` (whose forward can start at a block); False for bridges."""
    try:
        from transformer_lens import HookedTransformer
    except ImportError:  # pragma: no cover - transformer_lens is a dependency
        return False
    if not isinstance(model, HookedTransformer):
        return False
    return getattr(model.cfg, "positional_embedding_type", "standard") != "shortformer"


def special_token_ids(model: Any, setting: bool | Sequence[int]) -> list[int]:
    """Token ids to exclude: the tokenizer's BOS/EOS/PAD/SEP/decoder-start ids for ``True`` (as SAE Lens).

    ``True`` on a model without a tokenizer is an :class:`InputError` about ``exclude_special_tokens``: SAE Lens's
    ``get_special_token_ids(None)`` finds no attributes on ``None`` and excludes nothing without a word (its
    ``run_evals`` and ``ActivationsStore`` alike), so the metrics would count BOS positions that the setting
    says to leave out. The ids to leave out are then the user's to list (or ``false``)."""
    if setting is False:
        return []
    if setting is True:
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise InputError(
                "exclude_special_tokens is true (the default when not set), but the model has no tokenizer to name its special tokens "
                "(they would not be excluded)",
                key="exclude_special_tokens",
                subject=Subject(part="tokenizer"),  # the model's part: a conftest's model is at fault, not the suite
                fix="list the ids to exclude, e.g. [0] for a BOS id of 0, or set exclude_special_tokens: false "
                    "(or give the model folder its tokenizer files)",
            )
        from sae_lens.util import get_special_token_ids

        return sorted(int(i) for i in get_special_token_ids(tokenizer))
    return sorted(int(i) for i in setting)


def hook_layer(hook_name: str) -> int | None:
    m = _BLOCK_RE.match(hook_name)
    return int(m.group(1)) if m else None


def sae_hook(sae: SAELike, sae_id: str) -> tuple[str, int | None]:
    cfg = getattr(sae, "cfg", None)
    meta = getattr(cfg, "metadata", None)
    hook_name = getattr(meta, "hook_name", None) or getattr(cfg, "hook_name", None)
    if not isinstance(hook_name, str) or not hook_name:
        raise InputError(
            "the SAE has no hook name (cfg.metadata.hook_name)",
            subject=Subject(sae=sae_id),
            fix="load it with SAE Lens or set cfg.metadata.hook_name to the model hook it was trained on",
        )
    head = getattr(meta, "hook_head_index", None)
    if head is None:
        head = getattr(cfg, "hook_head_index", None)
    return hook_name, (int(head) if head is not None else None)


def as_token_tensor(tokens: Any) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor):
        try:
            import numpy as np

            tokens = torch.from_numpy(np.asarray(tokens))
        except (TypeError, ValueError) as e:
            raise InputError(
                f"tokens must be a 2-D integer array, got {type(tokens).__name__}",
                key="tokens",
                subject=Subject(part="tokens"),
                fix="pass a torch.LongTensor or numpy int array of shape [n_sequences, context_size]",
            ) from e
    if tokens.ndim != 2:
        raise InputError(
            f"tokens must be 2-D [n_sequences, context_size], got shape {tuple(tokens.shape)}",
            key="tokens",
            subject=Subject(part="tokens"),
            fix="reshape the token array to [n_sequences, context_size]",
        )
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise InputError(
            f"tokens must be integers, got dtype {tokens.dtype}",
            key="tokens",
            subject=Subject(part="tokens"),
            fix="store token ids as an integer array (int32/int64)",
        )
    if tokens.shape[1] < 2:
        raise InputError(
            f"sequences must have at least 2 tokens, got context size {tokens.shape[1]}",
            key="tokens",
            subject=Subject(part="tokens"),
            fix="use a context size of at least 2 (next-token losses need a next token)",
        )
    return tokens.long()


def check_inputs(model: Any, saes: Mapping[str, SAELike], tokens: torch.Tensor, settings: EvalSettings) -> None:
    if not saes:
        raise InputError("no SAEs to evaluate", key="saes", fix="pass a mapping {id: sae} with at least one SAE")
    d_vocab = getattr(model.cfg, "d_vocab", None)
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or (d_vocab is not None and hi >= d_vocab):
        raise InputError(
            f"token ids must lie in [0, {d_vocab}), found min {lo} and max {hi}",
            key="tokens",
            subject=Subject(part="tokens"),
            fix="tokenize with the model's own tokenizer (the ids outside the vocabulary come from another one)",
        )
    check_special_tokens(model, settings.exclude_special_tokens, d_vocab)
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx is not None and tokens.shape[1] > n_ctx:
        raise InputError(
            f"context size {tokens.shape[1]} exceeds the model's n_ctx {n_ctx}",
            key="context_size",
            subject=Subject(part="context_size"),
            fix=f"set context_size to at most {n_ctx}",
        )
    needed = settings.rows_needed
    if tokens.shape[0] < needed:
        raise InputError(
            f"{tokens.shape[0]} token rows, but {needed} are needed "
            f"({max(settings.n_reconstruction_batches, settings.n_sparsity_batches)} batches x "
            f"{settings.batch_size_prompts} rows)",
            key="tokens",
            subject=Subject(part="tokens"),
            fix="provide more rows, or lower batch_size_prompts / n_reconstruction_batches / n_sparsity_batches",
        )
    hooks = getattr(model, "hook_dict", {})
    for sae_id, sae in saes.items():
        if not isinstance(getattr(sae, "W_dec", None), torch.Tensor) or encoder_weight(sae) is None:
            raise InputError(
                "the SAE has no decoder weight W_dec" if not isinstance(getattr(sae, "W_dec", None), torch.Tensor)
                else "the SAE has no encoder weight W_enc and its weights are not tied",
                subject=Subject(sae=sae_id),
                fix="give the SAE W_enc [d_in, d_sae] and W_dec [d_sae, d_in] tensors (or cfg.tied_weights = True "
                    "when it encodes with W_dec.T)",
            )
        check_finite(sae_id, sae)
        hook_name, _ = sae_hook(sae, sae_id)
        if hook_name not in hooks:
            n_layers = int(getattr(model.cfg, "n_layers", 0) or 0)
            layers = f" (it has {n_layers} layer{'s' if n_layers != 1 else ''}, blocks.0 to blocks.{n_layers - 1})" if n_layers else ""
            raise InputError(
                f"the model has no hook '{hook_name}'{did_you_mean(hook_name, hooks)}{layers}",
                subject=Subject(sae=sae_id, part="hook_name"),
                fix="train/load the SAE for a hook this model has (see model.hook_dict)",
            )


def check_special_tokens(model: Any, listed: bool | Sequence[int], d_vocab: int | None) -> None:
    """``exclude_special_tokens`` names ids that exist: ``true`` needs a tokenizer (:func:`special_token_ids`),
    a list only ids inside the vocabulary (an id outside it would exclude nothing)."""
    special_token_ids(model, listed)  # true without a tokenizer: refused before anything runs
    outside = [] if isinstance(listed, bool) or d_vocab is None else [i for i in listed if i >= d_vocab]
    if outside and d_vocab is not None:
        raise InputError(
            f"exclude_special_tokens lists {', '.join(map(str, outside[:5]))}, outside the model's vocabulary "
            f"(ids 0 to {d_vocab - 1}): {'it' if len(outside) == 1 else 'they'} would exclude nothing",
            key="exclude_special_tokens",
            subject=Subject(part="exclude_special_tokens"),
            fix="list the special-token ids of this model's tokenizer, or use true (its BOS/EOS/PAD ids) or false",
        )


def check_finite(sae_id: str, sae: SAELike) -> None:
    """The SAE's floating-point weights and buffers (its ``state_dict``, else ``W_enc``, ``W_dec``, ``b_enc``,
    ``b_dec``) hold no NaN or inf: a NaN weight counts as an active feature (NaN is not zero), so an SAE of a
    diverged training run could pass ``l0`` and ``frac_alive`` gates. A sum per tensor (NaN and inf reach
    it; a device sync each, once per evaluation), and an exact count only for a tensor whose sum is not
    finite."""
    state = state_of(sae)
    bad = [(name, int((~torch.isfinite(t)).sum()), t.numel()) for name, t in state.items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t.sum()))]
    bad = [b for b in bad if b[1]]  # a sum can overflow to inf while every value is finite: counted exactly
    if bad:
        shown = ", ".join(f"{name} {n:,} of {total:,}" for name, n, total in bad[:4])
        raise InputError(
            f"the SAE's weights hold NaN or infinite values ({shown}{', ...' if len(bad) > 4 else ''})",
            subject=Subject(sae=sae_id),
            fix="evaluate a checkpoint from before the training run diverged, or retrain; a loader that leaves "
                "weights unset (a key missing from the file) needs fixing",
        )


def check_code(sae_id: str, part: str, x: torch.Tensor, value: object, d_out: int) -> None:
    """``part`` (``encode`` or ``decode``) of an input ``x`` gave a tensor ``[..., d_out]`` with ``x``'s leading
    shape (the SAE protocol: dense ``[..., d_sae]`` activations, a ``[..., d_in]`` reconstruction). Checked
    after ``encode`` and before ``decode`` sees its output, so a wrong encoding is named as such. Shapes
    only: no device sync."""
    want = (*x.shape[:-1], d_out)
    got = tuple(value.shape) if isinstance(value, torch.Tensor) else None
    if got == want and isinstance(value, torch.Tensor) and value.layout != torch.strided:
        raise InputError(
            f"{part}() of an input of shape {list(x.shape)} returned a sparse tensor ({value.layout}), not a dense one",
            subject=Subject(sae=sae_id, part=part),
            fix=f"return a dense tensor from {part}() (e.g. .to_dense()); see the README's factory protocol",
        )
    if got != want:
        kind = type(value)
        what = (f"a tensor of shape {list(got)}" if got is not None
                else f"a tuple ({kind.__module__}.{kind.__name__})" if isinstance(value, tuple) and kind is not tuple
                else f"a {kind.__name__}")
        raise InputError(
            f"{part}() of an input of shape {list(x.shape)} returned {what}, not a tensor of shape {list(want)}",
            subject=Subject(sae=sae_id, part=part),
            fix="encode must return dense feature activations [..., d_sae] (scatter top-k values and indices "
                "into zeros) and decode a reconstruction [..., d_in]; see the README's factory protocol",
        )


def code_failed(sae_id: str, part: str, x: torch.Tensor, error: Exception) -> InputError:
    """The SAE's own ``encode`` / ``decode`` raised ``error`` on an input like ``x``: one error naming the SAE
    and the call (the SAE's code, e.g. a factory's class, is at fault, not the run)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return InputError(
        f"{part}() of an input of shape {list(x.shape)} ({x.dtype}, {x.device}) raised {text[:300]}",
        subject=Subject(sae=sae_id, part=part),
        fix=f"make the SAE's {part}() work on [..., {'d_in' if part == 'encode' else 'd_sae'}] tensors on its device "
            "in its dtype (see the README's factory protocol); for a library's SAE, check that it loads and runs with "
            "that library",
    )
