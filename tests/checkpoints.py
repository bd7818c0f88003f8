"""Checkpoints in the formats of other SAE trainers, for tests.

- EleutherAI sparsify: real ``sparsify.SparseCoder`` objects written with its own ``save_to_disk``
  (``cfg.json`` + ``sae.safetensors``), with random or fitted weights.
- dictionary_learning: its package does not install next to a CPU torch, so trainer folders are
  written in its format (``config.json`` with a ``trainer`` block + ``ae.pt`` state dict, the keys and
  shapes of each dictionary class) from known weights, and :func:`dl_forward` is its documented
  inference forward, written out from the class definitions.

Fitted weights come from activations: encoder directions are random, biases or thresholds are set
from quantiles so each live feature fires on a few percent of tokens, and the decoder is a ridge
least-squares fit of the input from the features — a usable SAE in well under a second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DL_CLASSES = ("AutoEncoder", "AutoEncoderNew", "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE",
              "JumpReluAutoEncoder", "GatedAutoEncoder")
"""The dictionary_learning classes pytest-saeval maps."""

DL_TOPK = ("AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE")
"""Classes whose config and state dict carry ``k``."""


# ------------------------------------------------------------------------------------------------
# activations and fitting


def hook_activations(model: Any, hook_name: str, tokens: Any) -> Any:
    """``[n_tokens, d]`` float32 activations of ``model`` at ``hook_name`` for ``tokens``."""
    import torch

    layer = int(hook_name.split(".")[1]) if hook_name.startswith("blocks.") else 0
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[hook_name], stop_at_layer=layer + 1)
    acts = cache[hook_name]
    return acts.reshape(-1, acts.shape[-1]).float()


def ridge_decoder(feats: Any, target: Any) -> Any:
    """``[d_sae, d]`` least-squares decoder from ``feats`` to ``target`` (small ridge term); features that
    never fire get small random rows, so no decoder row is zero."""
    import torch

    f = feats.double()
    gram = f.T @ f
    lam = 1e-3 * float(gram.diagonal().mean()) + 1e-6
    w = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), f.T @ target.double()).float()
    unused = feats.abs().sum(0) == 0
    if bool(unused.any()):
        gen = torch.Generator().manual_seed(int(unused.sum()))
        w[unused] = torch.randn(int(unused.sum()), target.shape[1], generator=gen) * 0.01
    return w


def _directions(d_sae: int, d_in: int, seed: int, acts: Any = None) -> Any:
    """``[d_sae, d_in]`` unit rows: random, or (with ``acts``) centred activations of random rows, so
    that features point where the data is."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    if acts is None:
        w = torch.randn(d_sae, d_in, generator=gen)
    else:
        w = (acts - acts.mean(0))[torch.randperm(acts.shape[0], generator=gen)[:d_sae]]
    return w / w.norm(dim=-1, keepdim=True)


def _rate_quantile(pre: Any, rate: float) -> Any:
    """Per feature, the value ``rate`` of the rows exceed."""
    import torch

    return torch.quantile(pre, 1.0 - rate, dim=0)


# ------------------------------------------------------------------------------------------------
# sparsify


def sparse_coder(d_in: int, *, num_latents: int = 0, expansion_factor: int = 4, k: int = 8, multi_topk: bool = False,
                 activation: str = "topk", seed: int = 0, dtype: Any = None) -> Any:
    """A real ``sparsify.SparseCoder`` with random weights and non-zero biases."""
    import torch
    from sparsify import SparseCoder, SparseCoderConfig

    cfg = SparseCoderConfig(num_latents=num_latents, expansion_factor=expansion_factor, k=k, multi_topk=multi_topk,
                            activation=activation)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sc = SparseCoder(d_in, cfg, dtype=dtype or torch.float32)
        with torch.no_grad():
            sc.encoder.bias.normal_(0.0, 0.1)
            sc.b_dec.normal_(0.0, 0.5)
    return sc.eval()


def fitted_sparse_coder(acts: Any, *, num_latents: int, k: int, seed: int = 0, activation: str = "topk") -> Any:
    """A ``SparseCoder`` fitted to ``acts`` ``[n, d_in]``: random unit encoder rows, ``b_dec`` the mean, the
    decoder fitted on its own codes (top-k, or group max)."""
    import torch

    sc = sparse_coder(acts.shape[1], num_latents=num_latents, k=k, seed=seed, activation=activation)
    with torch.no_grad():
        sc.b_dec.copy_(acts.mean(0))
        sc.encoder.weight.copy_(_directions(num_latents, acts.shape[1], seed + 1, acts) * 4.0 / math.sqrt(acts.shape[1]))
        sc.encoder.bias.zero_()
        out = sc.encode(acts)
        feats = torch.zeros(acts.shape[0], num_latents).scatter(-1, out.top_indices, out.top_acts)
        sc.W_dec.copy_(ridge_decoder(feats, acts - sc.b_dec))
    return sc


def sparse_coder_codes(sc: Any, x: Any) -> tuple[Any, Any]:
    """sparsify's own forward: the dense codes (its top-k values scattered into zeros) and its decode."""
    import torch

    with torch.no_grad():
        out = sc.encode(x)
        dense = torch.zeros(*x.shape[:-1], sc.num_latents, dtype=out.top_acts.dtype).scatter(
            -1, out.top_indices, out.top_acts)
        return dense, sc.decode(out.top_acts, out.top_indices)


# ------------------------------------------------------------------------------------------------
# dictionary_learning


def dl_state(dict_class: str, d_in: int, d_sae: int, *, k: int = 8, seed: int = 0, acts: Any = None) -> dict[str, Any]:
    """Known weights in ``dict_class``'s state-dict layout (the keys and shapes its ``state_dict()`` has).

    With ``acts`` ``[n, d_in]`` the weights are fitted to them (features firing on a few percent of
    rows, decoder fitted by least squares); without, they are random with non-zero biases."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    w = _directions(d_sae, d_in, seed + 7, acts) * (4.0 / math.sqrt(d_in))  # [d_sae, d_in]
    b_dec = acts.mean(0) if acts is not None else 0.5 * torch.randn(d_in, generator=gen)
    x = acts if acts is not None else b_dec + torch.randn(512, d_in, generator=gen)
    centre = dict_class not in ("AutoEncoderNew", "JumpReluAutoEncoder")
    pre = (x - b_dec if centre else x) @ w.T
    rate = 0.04
    q = _rate_quantile(pre, rate)
    state = _encoder_side(dict_class, w, q, pre, b_dec, k=k, gen=gen)
    feats, _ = dl_forward(dict_class, {**state, **_zero_decoder(dict_class, d_in, d_sae)}, x)
    decoder = ridge_decoder(feats, x - b_dec)  # every class adds its decoder bias (b_dec) after decoding
    state.update(_decoder_side(dict_class, decoder, b_dec))
    return {name: t.contiguous() for name, t in state.items()}


def _encoder_side(dict_class: str, w: Any, q: Any, pre: Any, b_dec: Any, *, k: int, gen: Any) -> dict[str, Any]:
    import torch

    d_sae = w.shape[0]
    jitter = 0.05 * torch.randn(d_sae, generator=gen) * pre.std(0)
    if dict_class in ("AutoEncoder", "AutoEncoderNew"):
        out = {"encoder.weight": w, "encoder.bias": -q + jitter}
        return out if dict_class == "AutoEncoderNew" else {**out, "bias": b_dec}
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        threshold = float(torch.quantile(torch.relu(pre + jitter).flatten(), 1.0 - k / d_sae))
        return {"encoder.weight": w, "encoder.bias": jitter, "b_dec": b_dec, "k": torch.tensor(k, dtype=torch.int),
                "threshold": torch.tensor(threshold if dict_class == "BatchTopKSAE" else -1.0, dtype=torch.float32)}
    if dict_class == "MatryoshkaBatchTopKSAE":
        threshold = float(torch.quantile(torch.relu(pre + jitter).flatten(), 1.0 - k / d_sae))
        return {"W_enc": w.T, "b_enc": jitter, "b_dec": b_dec, "k": torch.tensor(k, dtype=torch.int),
                "threshold": torch.tensor(threshold, dtype=torch.float32),
                "group_sizes": torch.tensor([d_sae // 4, d_sae - d_sae // 4])}
    if dict_class == "JumpReluAutoEncoder":
        threshold = (0.3 + 0.5 * torch.rand(d_sae, generator=gen)) * pre.std(0)
        return {"W_enc": w.T, "b_enc": threshold - q, "b_dec": b_dec, "threshold": threshold}
    if dict_class == "GatedAutoEncoder":
        r_mag = 0.2 * torch.randn(d_sae, generator=gen)
        return {"encoder.weight": w, "gate_bias": -q, "r_mag": r_mag,
                "mag_bias": -q * r_mag.exp() + 0.1 * pre.std(0), "decoder_bias": b_dec}
    raise ValueError(dict_class)


def _zero_decoder(dict_class: str, d_in: int, d_sae: int) -> dict[str, Any]:
    import torch

    if dict_class in ("MatryoshkaBatchTopKSAE", "JumpReluAutoEncoder"):
        return {"W_dec": torch.zeros(d_sae, d_in)}
    extra = {"decoder.bias": torch.zeros(d_in)} if dict_class == "AutoEncoderNew" else {}
    return {"decoder.weight": torch.zeros(d_in, d_sae), **extra}


def _decoder_side(dict_class: str, decoder: Any, b_dec: Any) -> dict[str, Any]:
    if dict_class in ("MatryoshkaBatchTopKSAE", "JumpReluAutoEncoder"):
        return {"W_dec": decoder}
    out = {"decoder.weight": decoder.T}
    return {**out, "decoder.bias": b_dec} if dict_class == "AutoEncoderNew" else out


def dl_forward(dict_class: str, state: Mapping[str, Any], x: Any) -> tuple[Any, Any]:
    """dictionary_learning's inference ``encode`` and ``decode`` of ``dict_class``, from its class
    definitions (``dictionary.py``, ``trainers/top_k.py``, ``trainers/batch_top_k.py``,
    ``trainers/matryoshka_batch_top_k.py``), on the raw state dict ``state``."""
    import torch

    s = state
    if dict_class == "AutoEncoder":
        f = torch.relu((x - s["bias"]) @ s["encoder.weight"].T + s["encoder.bias"])
        return f, f @ s["decoder.weight"].T + s["bias"]
    if dict_class == "AutoEncoderNew":
        f = torch.relu(x @ s["encoder.weight"].T + s["encoder.bias"])
        return f, f @ s["decoder.weight"].T + s["decoder.bias"]
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        post = torch.relu((x - s["b_dec"]) @ s["encoder.weight"].T + s["encoder.bias"])
        if dict_class == "AutoEncoderTopK":  # encode(use_threshold=False): per-token top k
            top = post.topk(int(s["k"]), sorted=False, dim=-1)
            f = torch.zeros_like(post).scatter(-1, top.indices, top.values)
        else:  # encode(use_threshold=True), its inference default
            f = post * (post > s["threshold"])
        return f, f @ s["decoder.weight"].T + s["b_dec"]
    if dict_class == "MatryoshkaBatchTopKSAE":
        post = torch.relu((x - s["b_dec"]) @ s["W_enc"] + s["b_enc"])
        f = post * (post > s["threshold"])
        return f, f @ s["W_dec"] + s["b_dec"]
    if dict_class == "JumpReluAutoEncoder":  # apply_b_dec_to_input = False
        pre = x @ s["W_enc"] + s["b_enc"]
        f = torch.relu(pre * (pre > s["threshold"]))
        return f, f @ s["W_dec"] + s["b_dec"]
    if dict_class == "GatedAutoEncoder":
        x_enc = (x - s["decoder_bias"]) @ s["encoder.weight"].T
        gate = (x_enc + s["gate_bias"] > 0).to(x_enc.dtype)
        f = gate * torch.relu(s["r_mag"].exp() * x_enc + s["mag_bias"])
        return f, f @ s["decoder.weight"].T + s["decoder_bias"]
    raise ValueError(dict_class)


def save_dl_trainer(folder: Path, dict_class: str, state: Mapping[str, Any], *, layer: int | None,
                    submodule_name: str | None, k: int | None = None, lm_name: str = "examples/tiny",
                    ctx_len: int = 128) -> Path:
    """A dictionary_learning trainer folder: ``config.json`` as its ``trainSAE`` writes it and ``ae.pt``
    (``torch.save`` of the state dict, as it saves the final dictionary)."""
    import torch

    first = "W_enc" if "W_enc" in state else "encoder.weight"
    d_sae = state[first].shape[1 if first == "W_enc" else 0]
    d_in = state[first].shape[0 if first == "W_enc" else 1]
    trainer: dict[str, Any] = {
        "trainer_class": {"AutoEncoderTopK": "TopKTrainer", "BatchTopKSAE": "BatchTopKTrainer",
                          "MatryoshkaBatchTopKSAE": "MatryoshkaBatchTopKTrainer",
                          "JumpReluAutoEncoder": "JumpReluTrainer", "GatedAutoEncoder": "GatedSAETrainer"}.get(
            dict_class, "StandardTrainer"),
        "dict_class": dict_class, "activation_dim": d_in, "dict_size": d_sae, "lr": 3e-4, "steps": 1000,
        "seed": 0, "device": "cpu", "layer": layer, "lm_name": lm_name, "wandb_name": dict_class,
        "submodule_name": submodule_name,
    }
    if k is not None:
        trainer["k"] = k
    folder.mkdir(parents=True, exist_ok=True)
    config = {"trainer": trainer, "buffer": {"d_submodule": d_in, "io": "out", "n_ctxs": 64, "ctx_len": ctx_len,
                                             "refresh_batch_size": 32, "out_batch_size": 1024, "device": "cpu"}}
    (folder / "config.json").write_text(json.dumps(config, indent=4))
    torch.save({name: t.cpu() for name, t in state.items()}, folder / "ae.pt")
    return folder
