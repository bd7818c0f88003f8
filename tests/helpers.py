"""Tiny models, tokenizers and SAEs saved to folders, and runs built by hand, for tests.

Everything here is small (2 layers, d_model 32, vocabulary under 200) and deterministic, so a test
can build it in well under a second. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_saeval.engine.results import SAEResult

BOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

_WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "log", "red", "blue", "small", "big", "tree", "house", "bird", "fish", "swims", "flies", "sings", "and", "or", "but", "then", "quickly", "slowly", "happy", "sad", "green", "old", "new", "river", "hill", "sun", "moon"]


def tiny_corpus(n_docs: int = 64, *, seed: int = 0, min_words: int = 3, max_words: int = 40) -> list[str]:
    """Deterministic short documents made of a small English word list."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        n = rng.randint(min_words, max_words)
        words = [rng.choice(_WORDS) for _ in range(n)]
        docs.append(" ".join(words) + rng.choice([".", "!", "?"]))
    return docs


def build_tiny_tokenizer(vocab_size: int = 160, *, seed: int = 0, add_bos_token: bool = False) -> Any:
    """A BPE tokenizer trained on :func:`tiny_corpus`, as a ``PreTrainedTokenizerFast``.

    BOS = EOS = ``<|endoftext|>`` (id 0), PAD = ``<pad>`` (id 1), UNK = ``<unk>`` (id 2).
    ``add_bos_token=True`` makes ``encode`` start with BOS (what TransformerLens turns a
    tokenizer into when it loads one).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS_TOKEN, PAD_TOKEN, UNK_TOKEN],
        show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(256, seed=seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=BOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        add_bos_token=add_bos_token,
        name_or_path="tiny-tokenizer",
    )


def build_tiny_gpt2(
    *,
    vocab_size: int,
    n_layer: int = 2,
    n_embd: int = 32,
    n_head: int = 2,
    n_positions: int = 64,
    seed: int = 0,
) -> Any:
    """A randomly initialised ``transformers.GPT2LMHeadModel`` (eval mode, float32)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    # Non-trivial LayerNorm parameters, so that folding or centering would show in the logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def save_tiny_gpt2(folder: str | Path, *, seed: int = 0, n_layer: int = 2, n_positions: int = 64) -> Path:
    """Save a tiny GPT-2 and its tokenizer (``save_pretrained``) into ``folder``; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(seed=seed)
    model = build_tiny_gpt2(vocab_size=len(tokenizer), n_layer=n_layer, n_positions=n_positions, seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_hooked_transformer(*, seed: int = 0, n_layers: int = 2, d_model: int = 32, n_ctx: int = 64) -> Any:
    """A HookedTransformer built in code with the tiny tokenizer attached (no folder involved)."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tokenizer = build_tiny_tokenizer(seed=seed, add_bos_token=True)
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_ctx=n_ctx,
        d_head=d_model // 2,
        n_heads=2,
        d_mlp=4 * d_model,
        d_vocab=len(tokenizer),
        act_fn="gelu_new",
        normalization_type="LN",
        seed=seed,
        device="cpu",
    )
    torch.manual_seed(seed)
    return HookedTransformer(cfg, tokenizer=tokenizer)


def sae_cfg_dict(
    *,
    architecture: str = "standard",
    hook_name: str = "blocks.0.hook_resid_pre",
    d_in: int = 32,
    d_sae: int = 64,
    hook_head_index: int | None = None,
    model_name: str = "tiny-gpt2",
    context_size: int = 64,
    prepend_bos: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An SAE Lens ``cfg.json`` dictionary for :func:`save_tiny_sae`."""
    metadata: dict[str, Any] = {
        "hook_name": hook_name,
        "model_name": model_name,
        "context_size": context_size,
        "prepend_bos": prepend_bos,
    }
    if hook_head_index is not None:
        metadata["hook_head_index"] = hook_head_index
    extra = dict(extra or {})
    if architecture in ("topk", "abstopk") and "k" not in extra:
        extra["k"] = 4
    return {"architecture": architecture, "d_in": d_in, "d_sae": d_sae, "metadata": metadata, **extra}


def build_tiny_sae(seed: int = 0, **cfg: Any) -> Any:
    """An SAE Lens SAE with random weights (keyword arguments as for :func:`sae_cfg_dict`)."""
    import torch
    from sae_lens import SAE

    sae = SAE.from_dict(sae_cfg_dict(**cfg))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            values = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if name == "threshold":
                values = values.abs() * 0.1
            elif name.startswith("b_"):
                values = values * 0.1
            elif name.startswith("W_"):
                values = values / p.shape[0] ** 0.5
            p.copy_(values)
    return sae.eval()


def save_tiny_sae(folder: str | Path, *, seed: int = 0, **cfg: Any) -> Path:
    """Save a tiny SAE Lens SAE (``cfg.json`` + ``sae_weights.safetensors``) into ``folder``.

    ``cfg`` takes the keyword arguments of :func:`sae_cfg_dict` (architecture, hook_name, d_in,
    d_sae, hook_head_index, ...). Returns the folder.
    """
    folder = Path(folder)
    build_tiny_sae(seed=seed, **cfg).save_model(folder)
    return folder



class ProtocolSAE:
    """Not an SAE Lens SAE and not an ``nn.Module``: only what the evaluation needs (a ReLU SAE).

    ``encode``/``decode``, tensors ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in], ``b_enc``,
    ``cfg.d_in``, ``cfg.d_sae``, ``cfg.metadata.hook_name``, ``cfg.metadata.hook_head_index``, and ``to``.
    """

    def __init__(
        self,
        d_in: int = 8,
        d_sae: int = 12,
        hook_name: str | None = "blocks.0.hook_resid_pre",
        hook_head_index: int | None = None,
        seed: int = 0,
    ) -> None:
        from types import SimpleNamespace

        import torch

        gen = torch.Generator().manual_seed(seed)
        self.W_enc = torch.randn(d_in, d_sae, generator=gen) / d_in**0.5
        self.W_dec = torch.randn(d_sae, d_in, generator=gen) / d_sae**0.5
        self.b_enc = torch.zeros(d_sae)
        self.cfg = SimpleNamespace(
            d_in=d_in, d_sae=d_sae, metadata=SimpleNamespace(hook_name=hook_name, hook_head_index=hook_head_index)
        )

    def encode(self, x: Any) -> Any:
        import torch

        return torch.relu(x @ self.W_enc + self.b_enc)

    def decode(self, z: Any) -> Any:
        return z @ self.W_dec

    def to(self, device: Any = None, dtype: Any = None) -> ProtocolSAE:
        for name in ("W_enc", "W_dec", "b_enc"):
            setattr(self, name, getattr(self, name).to(device=device, dtype=dtype))
        return self


def eval_config(**fields: Any) -> Any:
    """An :class:`~pytest_saeval.run.outcome.EvalConfig` for runs built by hand in tests."""
    from pytest_saeval.run.outcome import EvalConfig

    defaults: dict[str, Any] = {"suite": "suite.yaml", "dataset": "tokens.npy", "context_size": 128,
                                "batch_size_prompts": 4, "n_eval_reconstruction_batches": 1,
                                "n_eval_sparsity_variance_batches": 1, "exclude_special_tokens": True,
                                "library_version": "0", "saeval_version": "0"}
    return EvalConfig(**{**defaults, **fields})


def sae_result(sae_id: str, metrics: dict[str, float], *, d_sae: int = 4,
               feature_metrics: dict[str, list[float]] | None = None) -> Any:
    """An :class:`~pytest_saeval.engine.results.SAEResult` with hand-set metrics (no evaluation)."""
    from pytest_saeval.engine.results import SAEResult

    return SAEResult(sae_id=sae_id, hook_name="blocks.0.hook_resid_pre", hook_head_index=None, d_in=8, d_sae=d_sae,
                     metrics=dict(metrics), feature_metrics=dict(feature_metrics or {}))


def demo_suite_file(root: Path, text: str) -> Path:
    """``text`` written as ``root/thresholds/demo.yaml`` (the folder made when missing); its path."""
    path = root / "thresholds" / "demo.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def hand_run(path: str | Path, metrics_by_id: dict[str, dict[str, float]], *, baseline: Any = None,
             intervals: dict[str, dict[str, tuple[float, float]]] | None = None, recording: bool = False,
             **fields: Any) -> Any:
    """A :class:`~pytest_saeval.run.outcome.SuiteRun` of the suite file at ``path`` whose SAEs (those in
    ``metrics_by_id``) measured the given metrics; its gates checked as a run checks them. ``fields``
    (provenance, notes, sae_cfgs) go to the run as they are."""
    from pytest_saeval.run.checks import check_suite
    from pytest_saeval.run.outcome import SuiteRun
    from pytest_saeval.run.plan import entries_of
    from pytest_saeval.spec.loader import load_suite

    suite = load_suite(path)
    entries = [e for e in entries_of(suite) if e.unique_id in metrics_by_id]
    results = {e.unique_id: sae_result(e.unique_id, metrics_by_id[e.unique_id]) for e in entries}
    checks, unchecked = check_suite(suite, entries, results, baseline, intervals or {}, recording=recording)
    return SuiteRun(suite=suite, entries=entries, results=results, checks=checks, unchecked=unchecked,
                    eval_cfg=eval_config(suite=str(suite.path)), intervals=dict(intervals or {}), **fields)


def results_equal(a: SAEResult, b: SAEResult) -> bool:
    """True when two results hold the same numbers (NaN equals NaN), ids and per-sequence sums."""
    import torch

    def same(x: float, y: float) -> bool:
        return x == y or (math.isnan(x) and math.isnan(y))

    def tensors_same(x: Any, y: Any) -> bool:
        if x is None or y is None:
            return x is None and y is None
        return bool(x.dtype == y.dtype and x.shape == y.shape and torch.equal(torch.nan_to_num(x), torch.nan_to_num(y))
                    and torch.equal(x.isnan(), y.isnan()))

    if (a.sae_id, a.hook_name, a.hook_head_index, a.d_in, a.d_sae) != (b.sae_id, b.hook_name, b.hook_head_index,
                                                                       b.d_in, b.d_sae):
        return False
    if list(a.metrics) != list(b.metrics) or not all(same(a.metrics[k], b.metrics[k]) for k in a.metrics):
        return False
    if list(a.feature_metrics) != list(b.feature_metrics):
        return False
    for k, values in a.feature_metrics.items():
        other = b.feature_metrics[k]
        if len(values) != len(other) or not all(same(x, y) for x, y in zip(values, other)):
            return False
    sa, sb = a.sequence_stats, b.sequence_stats
    for fam_a, fam_b in ((sa.reconstruction, sb.reconstruction), (sa.sparsity, sb.sparsity)):
        if list(fam_a) != list(fam_b):
            return False
        for k in fam_a:
            if not (tensors_same(fam_a[k].sums, fam_b[k].sums) and tensors_same(fam_a[k].counts, fam_b[k].counts)):
                return False
    return tensors_same(sa.sum_x, sb.sum_x) and tensors_same(sa.sum_sq_norm, sb.sum_sq_norm)


NEEDS_FIFO = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
NEEDS_DEV_ZERO = pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this platform")
SPECIAL_FILES = [pytest.param("fifo", "a FIFO", marks=NEEDS_FIFO, id="fifo"),
                 pytest.param("dev-zero", "a character device", marks=NEEDS_DEV_ZERO, id="dev-zero")]
"""``(what, kind)`` parameters: a file a reader must refuse unread (a FIFO blocks, ``/dev/zero`` never ends),
and the kind its message names; build it with :func:`make_special_file`."""


def make_special_file(path: Path, what: str) -> None:
    """Put a FIFO (``what="fifo"``) or a link to ``/dev/zero`` (``"dev-zero"``) at ``path``."""
    if what == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
