"""Build the tiny demo setup: a synthetic corpus, a BPE tokenizer, a small GPT-2 and SAEs.

Run from the repository root (takes about 5-10 minutes on 2 CPU cores)::

    python examples/build_tiny.py --out examples/tiny

Everything is seeded, so a rebuild on the same library versions gives the same corpus, tokenizer
and token arrays; trained weights can differ in the last bits between machines and thread counts.

What it writes under ``--out``:

- ``model/``: a Hugging Face ``GPT2LMHeadModel`` (safetensors) and its tokenizer.
- ``saes/<name>/``: SAE Lens folders (``cfg.json`` + ``sae_weights.safetensors``) trained with
  SAE Lens's own ``LanguageModelSAETrainingRunner`` on the model's activations. One of them,
  ``weak-*``, is deliberately under-trained; ``examples/weak.yaml`` shows it failing its gates.
- ``eval_tokens.npy``: held-out token rows ``[n, 128]`` (int32), BOS first, cut the way SAE Lens's
  ``ActivationsStore`` cuts text; no document in it was used for training.
- ``BUILD_INFO.json``: seed, sizes, losses, step counts, timings and library versions.

The corpus is generated from a small probabilistic grammar with real structure (subject-verb
agreement, stories that repeat their characters' names and keep pronouns consistent, counting,
arithmetic facts, calendars, lists whose number words agree with their nouns, bracket strings that
must close in order, copy-this-again drills), so a 2-layer transformer learns to predict it far
better than the unigram distribution does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Idle OpenMP threads sleep instead of spinning. On a busy or shared CPU, spinning threads made
# every step here several times slower. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

BOS = "<|endoftext|>"
PAD = "<|pad|>"
CONTEXT_SIZE = 128

# --------------------------------------------------------------------------------------------
# 1. The grammar
# --------------------------------------------------------------------------------------------

GIRLS = ["Mia", "Lily", "Emma", "Anna", "Sara", "Lucy", "Zoe", "Nora", "Ella", "Ruby", "Amy", "Kate"]
BOYS = ["Tom", "Max", "Leo", "Sam", "Ben", "Jack", "Finn", "Noah", "Owen", "Paul", "Luke", "Adam"]
ANIMALS = [
    ("cat", "cats"), ("dog", "dogs"), ("bird", "birds"), ("fox", "foxes"), ("mouse", "mice"),
    ("horse", "horses"), ("rabbit", "rabbits"), ("frog", "frogs"), ("duck", "ducks"), ("bear", "bears"),
]
THINGS = [
    ("ball", "balls"), ("box", "boxes"), ("book", "books"), ("apple", "apples"), ("cup", "cups"),
    ("hat", "hats"), ("key", "keys"), ("toy", "toys"), ("kite", "kites"), ("shoe", "shoes"),
    ("egg", "eggs"), ("stone", "stones"), ("flower", "flowers"), ("cake", "cakes"), ("boat", "boats"),
]
PEOPLE = [("girl", "girls"), ("boy", "boys"), ("child", "children"), ("man", "men"), ("woman", "women"),
          ("teacher", "teachers"), ("farmer", "farmers")]
COLORS = ["red", "blue", "green", "yellow", "white", "black", "brown", "pink"]
SIZES = ["big", "small", "little", "tiny", "tall", "old", "young", "happy", "sleepy"]
PLACES = ["park", "garden", "river", "school", "market", "forest", "beach", "farm", "library", "hill"]
# (base, third person singular, past)
VERBS = [
    ("see", "sees", "saw"), ("chase", "chases", "chased"), ("like", "likes", "liked"),
    ("find", "finds", "found"), ("carry", "carries", "carried"), ("want", "wants", "wanted"),
    ("watch", "watches", "watched"), ("push", "pushes", "pushed"), ("hold", "holds", "held"),
]
# (base, third person singular) for verbs without an object
INTRANSITIVE = [("runs", "run"), ("sleeps", "sleep"), ("jumps", "jump"), ("sings", "sing"),
                ("plays", "play"), ("waits", "wait"), ("swims", "swim")]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
FACTS = [
    ("What color is the sky?", "The sky is blue."),
    ("What color is the grass?", "The grass is green."),
    ("What color is snow?", "Snow is white."),
    ("How many legs does a cat have?", "A cat has four legs."),
    ("How many legs does a bird have?", "A bird has two legs."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("How many months are in a year?", "There are twelve months in a year."),
    ("What do cows drink?", "Cows drink water."),
    ("Where do fish live?", "Fish live in the river."),
    ("What comes after Monday?", "Tuesday comes after Monday."),
    ("What is the first month?", "January is the first month."),
    ("What is the last month?", "December is the last month."),
]


def _pick(rng: random.Random, items: list[Any]) -> Any:
    return items[rng.randrange(len(items))]


def _count_phrase(n: int, noun: tuple[str, str]) -> str:
    return f"{NUMBER_WORDS[n]} {noun[0] if n == 1 else noun[1]}"


def _agreement(rng: random.Random) -> str:
    """Sentences whose verb agrees with the head noun, also across a distracting noun."""
    plural = rng.random() < 0.5
    subject = _pick(rng, ANIMALS + PEOPLE)
    noun = subject[1] if plural else subject[0]
    kind = rng.randrange(4)
    if kind == 0:
        verb = _pick(rng, VERBS)
        obj = _pick(rng, THINGS)
        return f"The {_pick(rng, SIZES)} {noun} {verb[0] if plural else verb[1]} the {_pick(rng, COLORS)} {obj[0]}."
    if kind == 1:
        other = _pick(rng, ANIMALS + THINGS)
        other_noun = other[0] if rng.random() < 0.5 else other[1]
        be = "are" if plural else "is"
        return f"The {noun} near the {other_noun} {be} {_pick(rng, SIZES)}."
    if kind == 2:
        verb = _pick(rng, INTRANSITIVE)
        return f"The {_pick(rng, COLORS)} {noun} {verb[1] if plural else verb[0]} in the {_pick(rng, PLACES)}."
    have = "have" if plural else "has"
    was = "were" if plural else "was"
    return f"The {noun} {have} a {_pick(rng, COLORS)} {_pick(rng, THINGS)[0]}, and the {noun} {was} {_pick(rng, SIZES)}."


def _counting(rng: random.Random) -> str:
    """Counting up and down, in digits and in words."""
    kind = rng.randrange(4)
    if kind == 0:
        start = rng.randrange(0, 40)
        n = rng.randrange(4, 10)
        return "Count: " + ", ".join(str(start + i) for i in range(n)) + "."
    if kind == 1:
        start = rng.randrange(0, 6)
        n = rng.randrange(3, 13 - start)
        return "Count: " + ", ".join(NUMBER_WORDS[start + i] for i in range(n)) + "."
    if kind == 2:
        start = rng.randrange(5, 21)
        return "Count down: " + ", ".join(str(i) for i in range(start, start - rng.randrange(4, 8), -1)) + ", go!"
    step = rng.choice([2, 5, 10])
    start = step * rng.randrange(0, 5)
    return f"Count by {step}: " + ", ".join(str(start + step * i) for i in range(rng.randrange(4, 8))) + "."


def _arithmetic(rng: random.Random) -> str:
    """Arithmetic facts that are true."""
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randrange(0, 13), rng.randrange(0, 13)
        return f"{a} plus {b} is {a + b}."
    if kind == 1:
        a = rng.randrange(0, 21)
        b = rng.randrange(0, a + 1)
        return f"{a} minus {b} is {a - b}."
    if kind == 2:
        a, b = rng.randrange(0, 10), rng.randrange(0, 10)
        return f"{a} times {b} is {a * b}."
    a, b = rng.randrange(0, 7), rng.randrange(0, 6)
    return f"{NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]} is {NUMBER_WORDS[a + b]}."


def _calendar(rng: random.Random) -> str:
    """Weekdays and months in order, and dates that move forward by one day."""
    kind = rng.randrange(4)
    if kind == 0:
        i = rng.randrange(7)
        return f"The day after {DAYS[i]} is {DAYS[(i + 1) % 7]}."
    if kind == 1:
        i = rng.randrange(12)
        n = rng.randrange(3, 6)
        return "The months go " + ", ".join(MONTHS[(i + k) % 12] for k in range(n)) + "."
    if kind == 2:
        d, m, w = rng.randrange(1, 28), rng.randrange(12), rng.randrange(7)
        year = rng.randrange(1990, 2030)
        return f"Today is {DAYS[w]}, {MONTHS[m]} {d}, {year}. Tomorrow is {DAYS[(w + 1) % 7]}, {MONTHS[m]} {d + 1}, {year}."
    i = rng.randrange(12)
    return f"{MONTHS[i]} comes before {MONTHS[(i + 1) % 12]}."


def _shopping(rng: random.Random, name: str | None = None) -> str:
    """Lists whose number words agree with their nouns, and a total that adds up."""
    name = name or _pick(rng, GIRLS + BOYS)
    items = rng.sample(THINGS, 3)
    counts = [rng.randrange(1, 5) for _ in items]
    listed = f"{_count_phrase(counts[0], items[0])}, {_count_phrase(counts[1], items[1])} and {_count_phrase(counts[2], items[2])}"
    return f"{name} went to the market and bought {listed}. That is {NUMBER_WORDS[sum(counts)]} things."


def _brackets(rng: random.Random) -> str:
    """A bracket string that closes every bracket in the right order."""
    pairs = [("(", ")"), ("[", "]"), ("{", "}"), ("<", ">")]
    out: list[str] = []
    stack: list[str] = []
    n = rng.randrange(6, 16)
    for _ in range(n):
        r = rng.random()
        if stack and (r < 0.35 or len(stack) >= 4):
            out.append(stack.pop())
        elif r < 0.7:
            opener, closer = _pick(rng, pairs)
            out.append(opener)
            stack.append(closer)
        else:
            out.append(_pick(rng, list(LETTERS[:8])))
    while stack:
        out.append(stack.pop())
    return "Brackets: " + " ".join(out) + " ."


def _alphabet(rng: random.Random) -> str:
    """Runs of the alphabet."""
    start = rng.randrange(0, 20)
    n = rng.randrange(4, 7)
    return "Letters: " + " ".join(LETTERS[start : start + n]) + "."


def _facts(rng: random.Random) -> str:
    """Question and answer pairs from a fixed table, and sums asked as questions."""
    if rng.random() < 0.6:
        q, a = _pick(rng, FACTS)
        return f"Q: {q} A: {a}"
    a, b = rng.randrange(0, 10), rng.randrange(0, 10)
    return f"Q: What is {a} plus {b}? A: {a} plus {b} is {a + b}."


def _repeat(rng: random.Random) -> str:
    """Random phrases said twice: the second copy is predictable only from the first."""
    phrases = [f"{_pick(rng, COLORS)} {_pick(rng, ANIMALS + THINGS)[0]}" for _ in range(rng.randrange(2, 5))]
    said = ", ".join(phrases)
    return f"Say it: {said}. Again: {said}."


def _story(rng: random.Random) -> str:
    """A short story that keeps its characters' names, pronouns and belongings straight."""
    girl = rng.random() < 0.5
    hero = _pick(rng, GIRLS if girl else BOYS)
    friend = _pick(rng, [n for n in GIRLS + BOYS if n != hero])
    he, his = ("she", "her") if girl else ("he", "his")
    pet = _pick(rng, ANIMALS)[0]
    pet_color = _pick(rng, COLORS)
    thing, things = _pick(rng, THINGS)
    thing_color = _pick(rng, COLORS)
    place = _pick(rng, PLACES)
    kid = "girl" if girl else "boy"
    lines = [
        f"Once upon a time, there was a {_pick(rng, SIZES)} {kid} named {hero}.",
        f"{hero} lived near the {place} with {his} {pet_color} {pet}.",
    ]
    events: list[Callable[[], str]] = [
        lambda: f"One day, {hero} found a {thing_color} {thing} in the {_pick(rng, PLACES)}.",
        lambda: f"{he.capitalize()} showed the {thing} to {friend}.",
        lambda: f'{friend} said, "What a nice {thing}, {hero}!"',
        lambda: f"The {pet} ran after the {thing}, and {hero} laughed.",
        lambda: f"{hero} and {friend} played with the {thing_color} {thing} all day.",
        lambda: f"Then {hero} gave {his} {pet} some food.",
        lambda: f"{friend} asked {hero}, \"Can I hold your {pet}?\"",
        lambda: _shopping(rng, hero),
        lambda: f"{hero} counted the {things}: " + ", ".join(str(i) for i in range(1, rng.randrange(4, 8))) + ".",
        lambda: f"On {_pick(rng, DAYS)}, {hero} and the {pet} walked to the {place}.",
    ]
    order = list(range(len(events)))
    rng.shuffle(order)
    for i in sorted(order[: rng.randrange(3, 7)]):
        lines.append(events[i]())
    lines.append(f"At night, {hero} went home with {his} {pet}. The end.")
    return " ".join(lines)


SEGMENTS: list[tuple[Callable[[random.Random], str], float]] = [
    (_agreement, 3.0), (_counting, 2.0), (_arithmetic, 2.0), (_calendar, 1.5), (_shopping, 1.0),
    (_brackets, 1.5), (_alphabet, 0.7), (_facts, 1.0), (_repeat, 1.5),
]


def make_document(rng: random.Random) -> str:
    """One document: a story, or a lesson of a few segments of one or two kinds."""
    if rng.random() < 0.35:
        return _story(rng)
    funcs = [f for f, _ in SEGMENTS]
    weights = [w for _, w in SEGMENTS]
    kinds = rng.choices(funcs, weights=weights, k=2)
    return " ".join(_pick(rng, kinds)(rng) for _ in range(rng.randrange(3, 9)))


def make_documents(seed: int, n_chars: int) -> list[str]:
    """Documents from a seeded generator until they hold at least ``n_chars`` characters."""
    rng = random.Random(seed)
    docs: list[str] = []
    total = 0
    while total < n_chars:
        doc = make_document(rng)
        docs.append(doc)
        total += len(doc) + 1
    return docs


# --------------------------------------------------------------------------------------------
# 2. Tokenizer and token rows
# --------------------------------------------------------------------------------------------


def train_tokenizer(docs: list[str], vocab_size: int, folder: Path) -> Any:
    """Train a byte-level BPE tokenizer on ``docs`` and save it as a Hugging Face tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=BOS,
        unk_token=BOS,
        pad_token=PAD,
        model_max_length=CONTEXT_SIZE,
    )
    fast.save_pretrained(folder)
    # transformers 5 writes its own class name; the 4.x name loads in both major versions.
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return AutoTokenizer.from_pretrained(folder)


def token_rows(docs: list[str], tokenizer: Any) -> torch.Tensor:
    """Cut documents into rows of ``CONTEXT_SIZE`` tokens exactly as SAE Lens's ActivationsStore
    does for text: documents joined with BOS between them, BOS at the start of every row."""
    from sae_lens.tokenization_and_batching import concat_and_batch_sequences

    bos = tokenizer.bos_token_id
    encoded = tokenizer(docs, add_special_tokens=False)["input_ids"]
    sequences = (torch.tensor(ids, dtype=torch.long) for ids in encoded)
    rows = list(
        concat_and_batch_sequences(
            tokens_iterator=sequences,
            context_size=CONTEXT_SIZE,
            begin_batch_token_id=bos,
            sequence_separator_token_id=bos,
        )
    )
    return torch.stack(rows)


def unigram_entropy(rows: torch.Tensor, vocab_size: int) -> float:
    """Entropy (nats) of the unigram distribution of the predicted tokens (positions 1..T-1)."""
    counts = torch.bincount(rows[:, 1:].reshape(-1), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def unigram_cross_entropy(train_rows: torch.Tensor, eval_rows: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of held-out targets under the training unigram distribution
    (add-one smoothed, so unseen tokens stay finite)."""
    counts = torch.bincount(train_rows[:, 1:].reshape(-1), minlength=vocab_size).double() + 1.0
    logp = (counts / counts.sum()).log()
    return float(-logp[eval_rows[:, 1:].reshape(-1)].mean())


# --------------------------------------------------------------------------------------------
# 3. The language model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LMSettings:
    """Shape and training schedule of the GPT-2 model."""

    n_layer: int = 2
    """Transformer blocks."""
    n_embd: int = 128
    """Width of the residual stream (d_model)."""
    n_head: int = 4
    """Attention heads per block."""
    steps: int = 300
    """AdamW steps."""
    batch_size: int = 32
    """Rows of CONTEXT_SIZE tokens per step."""
    lr: float = 3e-3
    """Peak learning rate (linear warm-up, then cosine decay to a tenth of it)."""
    warmup: int = 50
    """Warm-up steps."""
    weight_decay: float = 0.05
    """AdamW weight decay on matrices (not on biases, LayerNorm or position embeddings)."""

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        if min(self.n_layer, self.steps, self.batch_size, self.warmup) < 1 or self.lr <= 0:
            raise ValueError("LM settings must be positive")


def held_out_ce(model: Any, rows: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats/token) of ``model`` over ``rows``."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = rows[i : i + batch_size]
            logits = model(input_ids=batch).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += batch[:, 1:].numel()
    return total / count


def train_lm(
    train_rows: torch.Tensor,
    eval_rows: torch.Tensor,
    tokenizer: Any,
    settings: LMSettings,
    seed: int,
    log: Callable[[str], None],
) -> tuple[Any, list[tuple[int, float, float]]]:
    """Train a GPT2LMHeadModel with plain AdamW; returns it and (step, train loss, held-out CE) points."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=CONTEXT_SIZE,
        n_ctx=CONTEXT_SIZE,
        n_embd=settings.n_embd,
        n_layer=settings.n_layer,
        n_head=settings.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "wpe" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
        betas=(0.9, 0.98),
    )

    def lr_at(step: int) -> float:
        if step < settings.warmup:
            return settings.lr * (step + 1) / settings.warmup
        progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
        return settings.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_rows), generator=generator)
    cursor = 0
    history: list[tuple[int, float, float]] = []
    running = 0.0
    for step in range(settings.steps):
        if cursor + settings.batch_size > len(order):
            order = torch.randperm(len(train_rows), generator=generator)
            cursor = 0
        batch = train_rows[order[cursor : cursor + settings.batch_size]]
        cursor += settings.batch_size
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        model.train()
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        value = float(loss.detach())
        running = value if step == 0 else 0.95 * running + 0.05 * value
        if (step + 1) % 100 == 0 or step + 1 == settings.steps:
            ce = held_out_ce(model, eval_rows[:128])
            history.append((step + 1, running, ce))
            log(f"  LM step {step + 1:4d}/{settings.steps}: train loss {running:.3f}, held-out CE {ce:.3f}")
    model.eval()
    return model, history


def load_hooked(model_dir: Path, hf_model: Any, tokenizer: Any) -> Any:
    """The saved model as a TransformerLens HookedTransformer, without weight processing.

    Uses ``pytest_saeval.sources.models.load_model`` when it is available; otherwise converts
    the GPT-2 weights directly (no LayerNorm folding, no centering: SAEs must see the residual
    stream exactly as the model computes it).
    """
    try:
        from pytest_saeval.sources.models import load_model  # type: ignore[import-not-found]
    except ImportError:
        load_model = None
    if load_model is not None:
        return load_model(path=model_dir, device="cpu")

    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    c = hf_model.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer,
        d_model=c.n_embd,
        d_head=c.n_embd // c.n_head,
        n_heads=c.n_head,
        d_mlp=4 * c.n_embd,
        n_ctx=c.n_positions,
        d_vocab=c.vocab_size,
        act_fn=c.activation_function,
        eps=c.layer_norm_epsilon,
        normalization_type="LN",
        original_architecture="GPT2LMHeadModel",
        default_prepend_bos=True,
        tokenizer_prepends_bos=False,
        device="cpu",
    )
    hooked = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    state = convert_gpt2_weights(hf_model, cfg)
    missing, unexpected = hooked.load_state_dict(state, strict=False)
    real_missing = [k for k in missing if not k.endswith(("IGNORE", "mask", ".b_U")) and "hook" not in k]
    if real_missing or unexpected:
        raise RuntimeError(f"weight conversion mismatch: missing {real_missing}, unexpected {unexpected}")
    hooked.eval()
    return hooked


# --------------------------------------------------------------------------------------------
# 4. SAEs, trained by SAE Lens's own runner
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SAESpec:
    """One SAE to train with ``sae_lens.LanguageModelSAETrainingRunner``."""

    name: str
    """Folder name under ``saes/``."""
    hook_name: str
    """TransformerLens hook the SAE reads and replaces."""
    architecture: str
    """``standard`` (L1), ``topk`` or ``jumprelu``."""
    training_tokens: int
    """Activations the SAE trains on (tokens, after special tokens are dropped)."""
    lr: float
    """Adam learning rate."""
    sparsity: float
    """``l1_coefficient`` (standard), ``k`` (topk) or ``target_l0`` (jumprelu, quadratic L0 loss)."""
    d_sae: int = 512
    """Number of features."""
    batch_tokens: int = 1024
    """Activations per training step."""

    def __post_init__(self) -> None:
        if self.architecture not in ("standard", "topk", "jumprelu"):
            raise ValueError(f"unknown architecture {self.architecture!r}")
        if self.training_tokens < self.batch_tokens or self.lr <= 0 or self.sparsity <= 0:
            raise ValueError(f"bad SAE spec {self}")

    @property
    def steps(self) -> int:
        """Training steps SAE Lens will take."""
        return self.training_tokens // self.batch_tokens


def default_sae_specs(scale: float = 1.0) -> list[SAESpec]:
    """The SAEs the demo ships; ``scale`` multiplies the training tokens of the good ones."""
    tokens = int(600 * 1024 * scale) // 1024 * 1024
    return [
        SAESpec("layer1-res-standard", "blocks.1.hook_resid_pre", "standard", tokens, 1e-3, 2.0),
        SAESpec("layer1-res-topk", "blocks.1.hook_resid_pre", "topk", tokens, 1e-3, 32),
        SAESpec("layer1-mlp-jumprelu", "blocks.1.hook_mlp_out", "jumprelu", tokens, 3e-3, 32),
        # Deliberately under-trained: a few dozen steps. examples/weak.yaml shows it failing.
        SAESpec("weak-layer1-res-standard", "blocks.1.hook_resid_pre", "standard", 40 * 1024, 1e-3, 2.0),
    ]


def _sae_config(spec: SAESpec, d_in: int) -> Any:
    from sae_lens import JumpReLUTrainingSAEConfig, StandardTrainingSAEConfig, TopKTrainingSAEConfig

    common: dict[str, Any] = {"d_in": d_in, "d_sae": spec.d_sae, "normalize_activations": "expected_average_only_in"}
    if spec.architecture == "standard":
        return StandardTrainingSAEConfig(**common, l1_coefficient=spec.sparsity, l1_warm_up_steps=spec.steps // 10)
    if spec.architecture == "topk":
        return TopKTrainingSAEConfig(**common, k=int(spec.sparsity))
    return JumpReLUTrainingSAEConfig(
        **common,
        jumprelu_sparsity_loss_mode="quadratic",
        jumprelu_init_threshold=0.1,
        target_l0=spec.sparsity,
        l0_coefficient=1.0,
        l0_warm_up_steps=spec.steps // 10,
    )


def train_sae(spec: SAESpec, hooked: Any, dataset: Any, folder: Path, seed: int) -> float:
    """Train one SAE with SAE Lens's runner (no wandb, no hub, no checkpoints) and save it as an
    SAE Lens folder (``cfg.json`` + ``sae_weights.safetensors``); returns seconds taken."""
    import tempfile

    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = LanguageModelSAERunnerConfig(
            sae=_sae_config(spec, hooked.cfg.d_model),
            model_name="saeval-tiny-gpt2",
            hook_name=spec.hook_name,
            dataset_path="synthetic corpus of examples/build_tiny.py (train split)",
            is_dataset_tokenized=True,
            streaming=False,
            context_size=CONTEXT_SIZE,
            prepend_bos=True,
            exclude_special_tokens=True,
            n_batches_in_buffer=8,
            store_batch_size_prompts=16,
            training_tokens=spec.training_tokens,
            train_batch_size_tokens=spec.batch_tokens,
            lr=spec.lr,
            lr_warm_up_steps=max(1, spec.steps // 20),
            lr_decay_steps=spec.steps // 5,
            dead_feature_window=max(1, min(200, spec.steps // 4)),
            feature_sampling_window=max(1, min(400, spec.steps // 2)),
            n_batches_for_norm_estimate=20,
            device="cpu",
            seed=seed,
            logger=LoggingConfig(log_to_wandb=False),
            n_checkpoints=0,
            checkpoint_path=None,
            output_path=tmp,
            verbose=False,
            model_from_pretrained_kwargs={},
        )
        torch.manual_seed(seed)
        LanguageModelSAETrainingRunner(cfg, override_model=hooked, override_dataset=dataset).run()
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.copy2(Path(tmp) / "sae_weights.safetensors", folder / "sae_weights.safetensors")
        # Same content, keys sorted: SAE Lens's key order varies from run to run.
        cfg_dict = json.loads((Path(tmp) / "cfg.json").read_text())
        (folder / "cfg.json").write_text(json.dumps(cfg_dict, sort_keys=True) + "\n")
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# 5. Measurement with sae_lens.run_evals (the demo suite's settings)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalShape:
    """Token rows the demo suite reads (rows [0, B*n) for both metric families)."""

    batch_size_prompts: int = 16
    n_reconstruction_batches: int = 4
    n_sparsity_batches: int = 8


def measure_sae(hooked: Any, sae: Any, eval_rows: torch.Tensor, shape: EvalShape) -> dict[str, float]:
    """SAE Lens's ``run_evals`` metrics (special tokens excluded) plus ``frac_alive``.

    Each metric family gets a fresh ActivationsStore so both start at row 0, as the
    pytest-saeval contract says (SAE Lens's own reset does not rewind)."""
    from datasets import Dataset
    from sae_lens import ActivationsStore, run_evals
    from sae_lens.evals import EvalConfig
    from sae_lens.training.activation_scaler import ActivationScaler

    def store() -> Any:
        ds = Dataset.from_dict({"input_ids": eval_rows.tolist()})
        return ActivationsStore.from_sae(
            hooked, sae, dataset=ds, context_size=CONTEXT_SIZE, streaming=False,
            store_batch_size_prompts=shape.batch_size_prompts, device="cpu",
        )

    flat: dict[str, float] = {}
    recon = EvalConfig(
        batch_size_prompts=shape.batch_size_prompts,
        n_eval_reconstruction_batches=shape.n_reconstruction_batches,
        compute_kl=True,
        compute_ce_loss=True,
    )
    sparse = EvalConfig(
        batch_size_prompts=shape.batch_size_prompts,
        n_eval_sparsity_variance_batches=shape.n_sparsity_batches,
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
    )
    with torch.no_grad():
        for config in (recon, sparse):
            grouped, features = run_evals(sae, store(), hooked, ActivationScaler(), eval_config=config)
            for group, values in grouped.items():
                if group != "token_stats":
                    flat.update({k: float(v) for k, v in values.items()})
            if "feature_density" in features:
                density = torch.tensor(features["feature_density"])
                flat["frac_alive"] = float((density > 0).double().mean())
    return flat


# --------------------------------------------------------------------------------------------
# 6. The build
# --------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("torch", "transformers", "tokenizers", "datasets", "sae-lens", "transformer-lens", "numpy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def build(out: Path, seed: int, lm: LMSettings, sae_scale: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Build everything under ``out`` and return the BUILD_INFO dictionary."""
    from datasets import Dataset
    from sae_lens import SAE

    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    cpu_all = time.process_time()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model_dir, saes_dir = out / "model", out / "saes"
    for folder in (model_dir, saes_dir):
        if folder.exists():
            shutil.rmtree(folder)
    model_dir.mkdir(parents=True)

    t = time.perf_counter()
    train_docs = make_documents(seed, 6_000_000)
    seen = set(train_docs)
    eval_docs = [d for d in make_documents(seed + 1_000_003, 300_000) if d not in seen]
    tokenizer = train_tokenizer(train_docs, 1024, model_dir)
    train_rows = token_rows(train_docs, tokenizer)
    eval_rows = token_rows(eval_docs, tokenizer)[:512]
    vocab = len(tokenizer)
    h_unigram = unigram_entropy(train_rows, vocab)
    ce_unigram = unigram_cross_entropy(train_rows, eval_rows, vocab)
    timings["corpus_and_tokenizer_s"] = time.perf_counter() - t
    log(f"corpus: {len(train_docs)} training documents -> {tuple(train_rows.shape)} rows; "
        f"{len(eval_docs)} held-out documents -> {tuple(eval_rows.shape)} rows; vocab {vocab}")
    log(f"unigram entropy of the training tokens: {h_unigram:.3f} nats/token")

    t = time.perf_counter()
    hf_model, history = train_lm(train_rows, eval_rows, tokenizer, lm, seed, log)
    hf_model.save_pretrained(model_dir)
    ce_model = held_out_ce(hf_model, eval_rows)
    timings["lm_training_s"] = time.perf_counter() - t
    log(f"held-out CE of the model: {ce_model:.3f} nats/token (unigram: entropy {h_unigram:.3f}, "
        f"held-out CE {ce_unigram:.3f})")

    np.save(out / "eval_tokens.npy", eval_rows.numpy().astype(np.int32))

    hooked = load_hooked(model_dir, hf_model, tokenizer)
    with torch.no_grad():
        gap = float((hooked(eval_rows[:4]) - hf_model(input_ids=eval_rows[:4]).logits).abs().max())
        ce_first_64 = float(hooked(eval_rows[:64], return_type="loss"))
    if gap > 1e-3:
        raise RuntimeError(f"TransformerLens and Hugging Face logits differ by {gap}")

    dataset = Dataset.from_dict({"input_ids": train_rows.tolist()})
    specs = default_sae_specs(sae_scale)
    sae_info: dict[str, Any] = {}
    shape = EvalShape()
    for i, spec in enumerate(specs):
        log(f"training SAE {spec.name} ({spec.architecture}, {spec.hook_name}, {spec.steps} steps)")
        seconds = train_sae(spec, hooked, dataset, saes_dir / spec.name, seed + i)
        sae = SAE.load_from_disk(str(saes_dir / spec.name), device="cpu")
        metrics = measure_sae(hooked, sae, eval_rows, shape)
        sae_info[spec.name] = {
            "spec": asdict(spec),
            "steps": spec.steps,
            "training_s": round(seconds, 1),
            "metrics": {k: round(v, 6) for k, v in sorted(metrics.items())},
        }
        timings[f"sae_{spec.name}_s"] = seconds
        log(f"  {spec.name}: " + _metric_line(metrics) + f" ({seconds:.0f} s)")
    dead = [name for name, info in sae_info.items() if not name.startswith("weak-") and info["metrics"]["frac_alive"] < 0.5]
    if dead:
        raise RuntimeError(f"SAEs with most features dead: {dead}")

    timings["total_s"] = time.perf_counter() - t_all
    timings["total_cpu_s"] = time.process_time() - cpu_all
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name != "BUILD_INFO.json")
    return {
        "seed": seed,
        "command": "python examples/build_tiny.py --out " + out.as_posix(),
        "context_size": CONTEXT_SIZE,
        "vocab_size": vocab,
        "corpus": {
            "train_documents": len(train_docs),
            "train_rows": train_rows.shape[0],
            "train_tokens": int(train_rows.numel()),
            "held_out_documents": len(eval_docs),
            "eval_rows": eval_rows.shape[0],
        },
        "model": {
            "architecture": "GPT2LMHeadModel",
            "settings": asdict(lm),
            "parameters": sum(p.numel() for p in hf_model.parameters()),
            "held_out_ce_nats": round(ce_model, 6),
            "held_out_ce_first_64_rows_nats": round(ce_first_64, 6),
            "unigram_entropy_nats": round(h_unigram, 6),
            "unigram_held_out_ce_nats": round(ce_unigram, 6),
            "history": [{"step": s, "train_loss": round(a, 4), "held_out_ce": round(b, 4)} for s, a, b in history],
        },
        "eval_settings": asdict(shape) | {"exclude_special_tokens": True, "measured_with": "sae_lens.run_evals"},
        "saes": sae_info,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "threads": torch.get_num_threads(),
        "size_bytes": size,
        "versions": _versions(),
    }


def _metric_line(m: dict[str, float]) -> str:
    names = ("explained_variance", "kl_div_score", "ce_loss_score", "l0", "frac_alive", "cossim")
    return ", ".join(f"{n} {m[n]:.3f}" for n in names if n in m)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "tiny", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed for everything")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--lm-steps", type=int, default=LMSettings.steps, help="AdamW steps for the language model")
    parser.add_argument("--sae-scale", type=float, default=1.0, help="multiplier on the good SAEs' training tokens")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    # SAE Lens compares rows with tokens in this warning; here every row is used about 3 times.
    warnings.filterwarnings("ignore", message="The training dataset contains fewer samples")
    warnings.filterwarnings("ignore", message="To copy construct from a tensor")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(message, flush=True)

    info = build(out, args.seed, LMSettings(steps=args.lm_steps), args.sae_scale, log)
    (out / "BUILD_INFO.json").write_text(json.dumps(info, indent=2) + "\n")

    m = info["model"]
    log("")
    log("summary")
    log(f"  model: {m['parameters']:,} parameters, held-out CE {m['held_out_ce_nats']:.3f} nats/token, "
        f"unigram entropy {m['unigram_entropy_nats']:.3f} nats/token")
    for name, sae in info["saes"].items():
        log(f"  {name:26s} {_metric_line(sae['metrics'])}")
    log(f"  size on disk {info['size_bytes'] / 1e6:.2f} MB, built in {info['timings_s']['total_s']:.0f} s "
        f"with {info['threads']} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
