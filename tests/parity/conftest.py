"""Fixtures for the parity tier: tiny models, token rows with special tokens, and SAEs of every
inference architecture SAE Lens ships, with weights calibrated on the model's own activations.

Everything is built in code (nothing is downloaded) and cached for the session.

Architectures covered (``ARCHITECTURES``): standard, gated, jumprelu, topk, abstopk,
matching_pursuit, temporal, and batchtopk (a training class; SAE Lens saves it as a jumprelu SAE for
inference, and that saved-and-reloaded jumprelu SAE is what is evaluated).

Out of scope: transcoders (``Transcoder``, ``SkipTranscoder``, ``JumpReLUTranscoder``,
``JumpReLUSkipTranscoder``) read one hook and write another (``d_out``), while ``run_evals`` splices
the reconstruction back into the hook it read from, so there is no SAE Lens number to compare with.
Matryoshka batchtopk, like batchtopk, becomes a jumprelu SAE for inference and adds nothing new.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .reference import sae_lens_reference

# Tokenizer / model shape.
VOCAB = 128
CTX = 32
BOS_ID, EOS_ID, PAD_ID, UNK_ID = 0, 1, 2, 3
N_LAYERS, D_MODEL, N_HEADS, D_HEAD, D_MLP = 2, 32, 4, 8, 64

# Token rows: 4 prompts per batch, up to 3 batches.
BATCH_SIZE = 4
N_ROWS = 16

D_SAE = 96
K = 8
HEAD_INDEX = 2

HOOKS: dict[str, tuple[str, int | None]] = {
    "resid": ("blocks.1.hook_resid_pre", None),
    "mlp": ("blocks.0.hook_mlp_out", None),
    "z": ("blocks.1.attn.hook_z", None),
    "z_head": ("blocks.1.attn.hook_z", HEAD_INDEX),
    "z_head1": ("blocks.1.attn.hook_z", 1),
}
"""Hook kinds: residual stream, MLP output, attention ``hook_z`` over all heads and one head
(``z_head1``, another head of the same hook, only joins the several-SAEs-in-one-call tests)."""
MATRIX_HOOKS = ("resid", "mlp", "z", "z_head")

EXCLUDE_IDS = (EOS_ID, PAD_ID, 7)
"""An explicit exclusion list: EOS, PAD and one ordinary word, but not BOS."""

ARCHITECTURES = ("standard", "gated", "jumprelu", "topk", "abstopk", "batchtopk", "matching_pursuit", "temporal")
MODELS = ("hooked", "bridge")


# --------------------------------------------------------------------------------------------
# tokenizer, models, tokens


def build_tokenizer(folder: Path) -> Any:
    """A word-level tokenizer ``<bos> <eos> <pad> <unk> w4 ... w127``, saved to ``folder`` and
    loaded back (so that TransformerLens can re-load it from a local path, offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {"<bos>": BOS_ID, "<eos>": EOS_ID, "<pad>": PAD_ID, "<unk>": UNK_ID}
    vocab.update({f"w{i}": i for i in range(4, VOCAB)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 and its tokenizer, saved with ``save_pretrained``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    build_tokenizer(folder)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=CTX,
        n_embd=D_MODEL,
        n_layer=N_LAYERS,
        n_head=N_HEADS,
        n_inner=D_MLP,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=0.2,  # sharper than GPT-2's 0.02, so ablations move the logits
    )
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = GPT2LMHeadModel(config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "ln" in name:
                    p.add_(0.1 * torch.randn_like(p))
                elif name.endswith("attn.c_proj.weight"):
                    p.mul_(3.0)  # each head moves the logits, so single-head ablations are measurable
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hooked_model(model_folder: Path) -> Any:
    """A 2-layer HookedTransformer built from a config, with the tiny tokenizer attached."""
    import warnings

    import torch
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        cfg = HookedTransformerConfig(
            n_layers=N_LAYERS,
            d_model=D_MODEL,
            d_head=D_HEAD,
            n_heads=N_HEADS,
            d_mlp=D_MLP,
            d_vocab=VOCAB,
            n_ctx=CTX,
            act_fn="gelu",
            normalization_type="LN",
            initializer_range=0.3,
            seed=0,
            device="cpu",
        )
        with torch.random.fork_rng():
            model = HookedTransformer(cfg, tokenizer=AutoTokenizer.from_pretrained(model_folder))
    return model.eval()


@pytest.fixture(scope="session")
def bridge_model(model_folder: Path) -> Any:
    """The saved tiny GPT-2 booted as a TransformerBridge, in compatibility mode."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(str(model_folder))
        bridge.enable_compatibility_mode()
    return bridge.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Any:
    """Run the parity tier on one CPU thread: these tiny matmuls are 10x slower when two threads
    compete for shared cores. Both sides of every comparison run under the same setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def get_model(request: pytest.FixtureRequest) -> Callable[[str], Any]:
    """``get_model("hooked" | "bridge")``; each model is built on first use."""

    def get(name: str) -> Any:
        if name not in MODELS:
            raise KeyError(name)
        return request.getfixturevalue(f"{name}_model")

    return get


def sample_token_rows(model: Any, n_rows: int, *, seed: int) -> Any:
    """``[n_rows, CTX]`` token ids sampled from ``model`` itself (temperature 1, ordinary words
    only), so the clean model predicts them better than an ablated one and CE/KL scores are well
    conditioned; then BOS at every row start, EOS+BOS document breaks inside rows, and PAD runs at
    the end of some rows, so special-token exclusion changes every metric."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    rows = torch.full((n_rows, CTX), BOS_ID, dtype=torch.long)
    with torch.no_grad():
        for t in range(1, CTX):
            logits = model(rows[:, :t], return_type="logits")[:, -1].float().cpu()
            logits[:, : UNK_ID + 1] = -math.inf
            rows[:, t] = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen)[:, 0]
    for r in range(n_rows):
        for _ in range(int(torch.randint(0, 3, (1,), generator=gen))):
            pos = int(torch.randint(3, CTX - 3, (1,), generator=gen))
            rows[r, pos] = EOS_ID
            rows[r, pos + 1] = BOS_ID
        if r % 3 == 1:
            n_pad = int(torch.randint(2, 8, (1,), generator=gen))
            rows[r, CTX - n_pad - 1] = EOS_ID
            rows[r, CTX - n_pad :] = PAD_ID
    return rows


@pytest.fixture(scope="session")
def get_tokens(get_model: Callable[[str], Any]) -> Callable[[str, str], Any]:
    """``get_tokens(model_name, "eval" | "calibration")``: token rows sampled from that model.

    ``eval`` (``[N_ROWS, CTX]``) is what every parity test evaluates on; ``calibration`` (8 other
    rows) sets the SAE weights."""
    cache: dict[tuple[str, str], Any] = {}
    seeds = {"eval": 1234, "calibration": 99}
    n_rows = {"eval": N_ROWS, "calibration": 8}

    def get(model_name: str, which: str) -> Any:
        key = (model_name, which)
        if key not in cache:
            cache[key] = sample_token_rows(get_model(model_name), n_rows[which], seed=seeds[which])
        return cache[key]

    return get


# --------------------------------------------------------------------------------------------
# SAEs


def hook_activations(model: Any, hook_name: str, head: int | None, tokens: Any) -> Any:
    """Activations at a hook, flattened to ``[tokens, d_in]`` the way SAE Lens feeds an SAE."""
    import torch

    layer = int(hook_name.split(".")[1])
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[hook_name], stop_at_layer=layer + 1)
    acts = cache[hook_name]
    if head is not None:
        acts = acts[:, :, head]
    elif acts.ndim == 4:
        acts = acts.flatten(-2, -1)
    return acts.reshape(-1, acts.shape[-1]).float()


@dataclass(frozen=True)
class _Calibration:
    """Statistics of a hook's activations that set the SAE weights."""

    x: Any
    """``[N, d_in]`` calibration activations."""
    d_in: int
    """Input width."""
    gen: Any
    """Seeded ``torch.Generator``."""
    dead: Any
    """Bool mask ``[D_SAE]`` of features made to never fire."""
    rate: Any
    """``[D_SAE]`` target firing rate of each live feature (2% - 35%)."""


def _ridge_decoder(feats: Any, target: Any, cal: _Calibration) -> Any:
    """Least-squares decoder ``[D_SAE, d_in]`` from feature activations to ``target``; features
    that never fired get random rows (so no decoder row is zero)."""
    import torch

    f = feats.double()
    gram = f.T @ f
    lam = 1e-3 * float(gram.diagonal().mean()) + 1e-6
    w = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), f.T @ target.double()).float()
    unused = feats.abs().sum(0) == 0
    scale = float(w[~unused].norm(dim=-1).mean()) if bool((~unused).any()) else 1.0
    w[unused] = torch.randn(int(unused.sum()), cal.d_in, generator=cal.gen) * scale / math.sqrt(cal.d_in)
    return w


def _encoder(cal: _Calibration) -> Any:
    import torch

    return torch.randn(cal.d_in, D_SAE, generator=cal.gen) / math.sqrt(cal.d_in)


def _quantile(pre: Any, rate: Any) -> Any:
    """Per feature, the value that ``rate`` of the calibration tokens exceed."""
    import torch

    return torch.stack([torch.quantile(pre[:, i], 1.0 - float(rate[i])) for i in range(pre.shape[1])])


def _metadata(hook_name: str, head: int | None) -> Any:
    from sae_lens.saes.sae import SAEMetadata

    meta: dict[str, Any] = {"hook_name": hook_name, "model_name": "tiny", "context_size": CTX, "prepend_bos": True}
    if head is not None:
        meta["hook_head_index"] = head
    return SAEMetadata(**meta)


def _set(sae: Any, **params: Any) -> Any:
    import torch

    with torch.no_grad():
        for name, value in params.items():
            getattr(sae, name).data.copy_(value)
    return sae


def build_sae(arch: str, model: Any, hook_kind: str, calibration_tokens: Any, *, seed: int, tmp_dir: Path) -> Any:
    """An SAE of ``arch`` on ``HOOKS[hook_kind]`` whose live features fire on 2-35% of tokens
    (about 8% of features are dead), calibrated on ``model``'s activations for
    ``calibration_tokens`` (rows other than the evaluation rows)."""
    import sae_lens
    import torch

    hook_name, head = HOOKS[hook_kind]
    n_cal = calibration_tokens.shape[0]
    x = hook_activations(model, hook_name, head, calibration_tokens)
    d_in = x.shape[1]
    gen = torch.Generator().manual_seed(seed)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[torch.randperm(D_SAE, generator=gen)[: D_SAE // 12]] = True
    rate = 0.02 + 0.33 * torch.rand(D_SAE, generator=gen)
    cal = _Calibration(x=x, d_in=d_in, gen=gen, dead=dead, rate=rate)
    b_dec = x.mean(0) + 0.05 * x.std(0) * torch.randn(d_in, generator=gen)
    xc = x - b_dec
    # Real hook_z SAEs (all heads) reshape [.., heads, d_head] themselves; run_evals turns that off.
    reshape = "hook_z" if hook_kind == "z" else "none"
    common: dict[str, Any] = {"d_in": d_in, "d_sae": D_SAE, "reshape_activations": reshape, "metadata": _metadata(hook_name, head)}

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if arch == "standard":
            w_enc = _encoder(cal)
            pre = xc @ w_enc
            b_enc = -_quantile(pre, rate)
            b_enc[dead] = -(5 * pre.abs().max() + 1)
            w_dec = _ridge_decoder(torch.relu(pre + b_enc), xc, cal)
            sae = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(**common))
            return _set(sae, W_enc=w_enc, b_enc=b_enc, W_dec=w_dec, b_dec=b_dec).eval()

        if arch == "jumprelu":
            w_enc = _encoder(cal)
            pre = xc @ w_enc
            threshold = (0.2 + 0.8 * torch.rand(D_SAE, generator=gen)) * pre.std(0)
            b_enc = threshold - _quantile(pre, rate)
            threshold[dead] = 5 * pre.abs().max() + 1e3
            h = pre + b_enc
            w_dec = _ridge_decoder(h * (h > threshold), xc, cal)
            sae = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(**common))
            return _set(sae, W_enc=w_enc, b_enc=b_enc, threshold=threshold, W_dec=w_dec, b_dec=b_dec).eval()

        if arch == "gated":
            w_enc = _encoder(cal)
            pre = xc @ w_enc
            r_mag = 0.2 * torch.randn(D_SAE, generator=gen)
            q = _quantile(pre, rate)
            b_gate = -q
            b_gate[dead] = -(5 * pre.abs().max() + 1)
            b_mag = -q * r_mag.exp() + 0.1 * pre.std(0)
            feats = (pre + b_gate > 0).float() * torch.relu(pre * r_mag.exp() + b_mag)
            w_dec = _ridge_decoder(feats, xc, cal)
            sae = sae_lens.GatedSAE(sae_lens.GatedSAEConfig(**common))
            return _set(sae, W_enc=w_enc, b_gate=b_gate, r_mag=r_mag, b_mag=b_mag, W_dec=w_dec, b_dec=b_dec).eval()

        if arch in ("topk", "abstopk"):
            w_enc = _encoder(cal)
            b_enc = 0.1 * torch.randn(D_SAE, generator=gen) * (xc @ w_enc).std(0)
            if arch == "topk":
                b_enc[dead] = -1e3  # never among the top k
            else:
                w_enc[:, dead] *= 1e-4  # AbsTopK ranks by |pre|: tiny columns never make the top k
                b_enc[dead] = 0.0
            pre = xc @ w_enc + b_enc
            if arch == "topk":
                top = torch.topk(pre, K, dim=-1)
                feats = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
                cfg_cls, sae_cls = sae_lens.TopKSAEConfig, sae_lens.TopKSAE
            else:
                idx = torch.topk(pre.abs(), K, dim=-1).indices
                feats = torch.zeros_like(pre).scatter(-1, idx, pre.gather(-1, idx))
                cfg_cls, sae_cls = sae_lens.AbsTopKSAEConfig, sae_lens.AbsTopKSAE
            w_dec = _ridge_decoder(feats, xc, cal)
            sae = sae_cls(cfg_cls(k=K, **common))
            return _set(sae, W_enc=w_enc, b_enc=b_enc, W_dec=w_dec, b_dec=b_dec).eval()

        if arch == "batchtopk":
            # Trained as BatchTopK, saved for inference as JumpReLU with one global threshold.
            w_enc = _encoder(cal)
            pre = xc @ w_enc
            b_enc = 0.1 * torch.randn(D_SAE, generator=gen) * pre.std(0)
            b_enc[dead] = -1e3
            h = pre + b_enc
            threshold = float(torch.quantile(h.flatten(), 1.0 - K / D_SAE))
            w_dec = _ridge_decoder(h * (h > threshold), xc, cal)
            train_cfg = sae_lens.BatchTopKTrainingSAEConfig(
                k=K, rescale_acts_by_decoder_norm=False, **common
            )
            train_sae = sae_lens.BatchTopKTrainingSAE(train_cfg)
            _set(train_sae, W_enc=w_enc, b_enc=b_enc, W_dec=w_dec, b_dec=b_dec)
            train_sae.topk_threshold = torch.tensor(threshold, dtype=torch.double)
            folder = tmp_dir / f"batchtopk-{hook_kind}-{seed}"
            train_sae.save_inference_model(folder)
            sae = sae_lens.SAE.load_from_disk(folder)
            if not isinstance(sae, sae_lens.JumpReLUSAE):
                raise TypeError(f"batchtopk saved for inference as {type(sae).__name__}, expected JumpReLUSAE")
            return sae.eval()

        if arch == "matching_pursuit":
            w_dec = torch.randn(D_SAE, d_in, generator=gen)
            w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True)
            w_dec[dead] *= 1e-4  # tiny atoms never win the greedy selection
            residual_threshold = 0.3 * float(xc.norm(dim=-1).median())
            cfg = sae_lens.MatchingPursuitSAEConfig(residual_threshold=residual_threshold, max_iterations=K, **common)
            sae = sae_lens.MatchingPursuitSAE(cfg)
            return _set(sae, W_dec=w_dec, b_dec=b_dec).eval()

        if arch == "temporal":
            cfg = sae_lens.TemporalSAEConfig(
                n_heads=2, n_attn_layers=1, bottleneck_factor=16, sae_diff_type="topk", kval_topk=K, tied_weights=False, **common
            )
            sae = sae_lens.TemporalSAE(cfg)  # attention layers take the forked, seeded global RNG
            w_dec = torch.randn(D_SAE, d_in, generator=gen) / math.sqrt(d_in) / (2.5 * math.sqrt(K))
            # encode scales its input by 1 / (4 d_in) before W_enc
            w_enc = torch.randn(d_in, D_SAE, generator=gen) * (4 * d_in) / math.sqrt(d_in)
            w_enc[:, dead] *= 1e-4
            _set(sae, W_enc=w_enc, W_dec=w_dec, b_dec=b_dec)
            sae.turn_off_forward_pass_hook_z_reshaping()
            with torch.no_grad():  # refit the decoder on the novel codes (encode reads W_dec too)
                feats = sae.encode(x.reshape(n_cal, CTX, d_in)).reshape(-1, D_SAE)
            if reshape == "hook_z":
                sae.turn_on_forward_pass_hook_z_reshaping()
            return _set(sae, W_dec=_ridge_decoder(feats, xc, cal)).eval()

    raise ValueError(f"unknown architecture {arch!r}")


@pytest.fixture(scope="session")
def get_sae(
    get_model: Callable[[str], Any], get_tokens: Callable[[str, str], Any], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Any]:
    """``get_sae(model_name, arch, hook_kind, seed=0)``: one cached SAE per key."""
    cache: dict[tuple[str, str, str, int], Any] = {}
    tmp_dir = tmp_path_factory.mktemp("saes")

    def get(model_name: str, arch: str, hook_kind: str, seed: int = 0) -> Any:
        key = (model_name, arch, hook_kind, seed)
        if key not in cache:
            seed_value = seed * 1000 + ARCHITECTURES.index(arch) * 10 + list(HOOKS).index(hook_kind)
            # one folder per key: SAEs saved to disk for the hooked and the bridge model must not share a file
            folder = tmp_dir / model_name
            folder.mkdir(exist_ok=True)
            cache[key] = build_sae(
                arch, get_model(model_name), hook_kind, get_tokens(model_name, "calibration"), seed=seed_value, tmp_dir=folder
            )
        return cache[key]

    return get


@dataclass(frozen=True)
class Case:
    """Which rows and token positions one comparison uses."""

    n_recon: int
    """Reconstruction (CE / KL) batches."""
    n_sparse: int
    """Sparsity / variance batches."""
    exclude: bool | tuple[int, ...]
    """Special-token exclusion: True (tokenizer's ids), False, or explicit ids."""

    @property
    def label(self) -> str:
        ex = "special" if self.exclude is True else "keep-all" if self.exclude is False else "ids"
        return f"{self.n_recon}r{self.n_sparse}s-{ex}"

    def settings(self) -> Any:
        """The same choices as ``EvalSettings``."""
        from pytest_saeval import EvalSettings

        return EvalSettings(
            batch_size_prompts=BATCH_SIZE,
            n_reconstruction_batches=self.n_recon,
            n_sparsity_batches=self.n_sparse,
            exclude_special_tokens=self.exclude,
        )


DEFAULT = Case(2, 3, True)
"""2 reconstruction and 3 sparsity batches, the tokenizer's special tokens excluded."""

Ref = tuple[dict[str, float], dict[str, list[float]]]
"""SAE Lens's ``(metrics, feature_metrics)``."""

SaeKey = tuple[str, str, int]
"""``(arch, hook_kind, seed)``: one SAE from ``get_sae``."""


# --------------------------------------------------------------------------------------------
# cached runs of both sides


@pytest.fixture(scope="session")
def reference(get_model: Callable[[str], Any], get_sae: Callable[..., Any], get_tokens: Callable[[str, str], Any]) -> Callable[..., Ref]:
    """``reference(model, arch, hook_kind, case, seed=0)``: SAE Lens's numbers, cached."""
    cache: dict[tuple[Any, ...], Ref] = {}

    def get(model_name: str, arch: str, hook_kind: str, case: Case, seed: int = 0) -> Ref:
        key = (model_name, arch, hook_kind, case, seed)
        if key not in cache:
            cache[key] = sae_lens_reference(
                get_model(model_name),
                get_sae(model_name, arch, hook_kind, seed),
                get_tokens(model_name, "eval"),
                batch_size=BATCH_SIZE,
                n_recon=case.n_recon,
                n_sparse=case.n_sparse,
                exclude_special_tokens=case.exclude,
            )
        return cache[key]

    return get


@pytest.fixture(scope="session")
def ours(get_model: Callable[[str], Any], get_sae: Callable[..., Any], get_tokens: Callable[[str, str], Any]) -> Callable[..., Mapping[str, Any]]:
    """``ours(model, {id: (arch, hook_kind, seed)}, case, use_start_at_layer=None, score_by_summary=False)``:
    the results of one ``evaluate`` call (``score_by_summary``: one pass with the plugin's scoring,
    through the clean distribution's summary), cached. Checks that evaluate leaves every SAE as it found it."""
    import torch

    from pytest_saeval.engine.evaluate import EngineOptions, Scoring, evaluate, run_pass
    from pytest_saeval.engine.inputs import as_token_tensor

    cache: dict[tuple[Any, ...], Mapping[str, Any]] = {}

    def get(model_name: str, saes: Mapping[str, SaeKey], case: Case, use_start_at_layer: bool | None = None,
            score_by_summary: bool = False) -> Mapping[str, Any]:
        key = (model_name, tuple(saes.items()), case, use_start_at_layer, score_by_summary)
        if key not in cache:
            objs = {sae_id: get_sae(model_name, *k) for sae_id, k in saes.items()}
            before = {sae_id: ({n: p.detach().clone() for n, p in s.state_dict().items()}, s.hook_z_reshaping_mode) for sae_id, s in objs.items()}
            options = EngineOptions(use_start_at_layer=use_start_at_layer)
            model, tokens = get_model(model_name), get_tokens(model_name, "eval")
            if score_by_summary:
                results = run_pass(model, objs, as_token_tensor(tokens), case.settings(), options,
                                   Scoring(by_summary=True))
            else:
                results = evaluate(model, objs, tokens, case.settings(), options)
            assert list(results) == list(saes), "evaluate() must return results in the order of the saes mapping"
            for sae_id, s in objs.items():
                state, reshaping = before[sae_id]
                assert s.hook_z_reshaping_mode == reshaping, f"{sae_id}: evaluate left hook_z reshaping switched"
                for n, p in s.state_dict().items():
                    assert torch.equal(p, state[n]), f"{sae_id}: evaluate changed {n}"
            cache[key] = results
        return cache[key]

    return get


# --------------------------------------------------------------------------------------------
# comparison, and parity margins reported at the end of the run

REL_TOL = 1e-4
ABS_TOL = 1e-6


def rel_diff(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|); 0 for two NaNs, inf for one."""
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def isclose_nan(a: float, b: float) -> bool:
    """The parity tolerance: ``math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)``; NaN equals NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


_MARGINS: dict[str, tuple[float, str]] = {}


def record_margin(metric: str, rel: float, where: str) -> None:
    """Keep the largest relative difference seen for ``metric`` (and where it was seen)."""
    if metric not in _MARGINS or rel > _MARGINS[metric][0]:
        _MARGINS[metric] = (rel, where)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _MARGINS:
        return
    terminalreporter.write_sep("-", "parity: largest relative difference to sae_lens.run_evals per metric")
    width = max(len(m) for m in _MARGINS)
    for metric in sorted(_MARGINS):
        rel, where = _MARGINS[metric]
        terminalreporter.write_line(f"{metric:<{width}}  {rel:.2e}  {where}")
