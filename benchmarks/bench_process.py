"""Whole-process timings of ``saeval run`` and ``pytest`` (scenario ``p`` of ``bench_vs_saelens.py``).

Each measurement is one fresh ``python`` process, timed from start to exit, with its CPU time (the
children's ``getrusage``). Per suite and command:

* **cold, today**: an empty cache folder and ``SAEVAL_FILE_KEYED=0`` (what a first run cost before the
  file-keyed answers);
* **cold**: an empty cache folder (the first run now: it also hashes the files and stores the answers);
* **warm, today**: the caches warm and ``SAEVAL_FILE_KEYED=0``: imports torch, TransformerLens and SAE
  Lens, loads the model, tokens and SAEs, answers from the results cache;
* **file-keyed warm**: nothing changed: answered from the file-keyed cache, the file digests from the memo;
* **file-keyed warm, memo cleared**: as above with the stat memo deleted, so that every file is read and
  hashed (a fresh checkout in CI, whose files have new inodes and change times).

Suites: ``thresholds/demo.yaml`` (the tiny demo model) and a GPT-2-small-shaped suite built from files in a
temporary folder: a Hugging Face ``GPT2LMHeadModel`` with GPT-2 small's config and random weights (about
500 MB of float32 safetensors), four SAE Lens standard SAEs (d_sae 6144) at layers 2, 5, 8 and 11 and a
``.npy`` token file; 2 + 2 batches of 8 x 128 tokens, as scenarios (a)-(e).
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {"demo saeval run": 6.0, "GPT-2 small saeval run": 5.0, "GPT-2 small pytest": 5.0}
"""Speed-ups of file-keyed warm over today's warm path the issue asks for (by suite and command)."""
LIMITS = {"demo saeval run": 1.5, "demo pytest": 3.0}
"""Wall-time limits (seconds) of a file-keyed warm run."""
STATES = ("cold, today", "cold", "warm, today", "file-keyed warm", "file-keyed warm, memo cleared")


@dataclass(frozen=True)
class Timing:
    """One process."""

    wall: float
    """Seconds from start to exit."""
    cpu: float
    """CPU seconds of the process (user + system, all threads)."""
    load: float
    """1-minute load average when it started."""


def build_gpt2_small(folder: Path) -> Path:
    """A GPT-2-small-shaped project in ``folder``: model, SAEs, tokens, ``thresholds/gpt2s.yaml`` and a
    ``pytest.ini``; returns the suite file."""
    import numpy as np
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config())  # GPT-2 small: 12 layers, d_model 768, vocabulary 50257
    model.save_pretrained(folder / "model")
    for name in ("tokenizer.json", "tokenizer_config.json"):  # a tokenizer for the special tokens
        shutil.copy(ROOT / "examples" / "tiny" / "model" / name, folder / "model" / name)
    del model
    lines = [f"model:\n  path: {folder / 'model'}\n  device: cpu\n",
             f"data:\n  tokens: {folder / 'tokens.npy'}\n  context_size: 128\n  batch_size_prompts: 8\n"
             "  n_reconstruction_batches: 2\n  n_sparsity_batches: 2\n", "saes:\n"]
    for layer in (2, 5, 8, 11):
        cfg = StandardSAEConfig(d_in=768, d_sae=6144)
        cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_pre"
        sae = StandardSAE(cfg)
        gen = torch.Generator().manual_seed(1000 + layer)
        with torch.no_grad():
            w = torch.randn(768, 6144, generator=gen) / math.sqrt(768)
            sae.W_enc.copy_(w)
            sae.W_dec.copy_(w.T * (2.0 * 768 / 6144))
            sae.b_enc.copy_(-0.05 * torch.rand(6144, generator=gen))
        sae.save_model(folder / "saes" / f"layer{layer}")
        lines.append(f"  - id: layer{layer}\n    path: {folder / 'saes' / f'layer{layer}'}\n"
                     "    gates:\n      l0: \">= 0\"\n      explained_variance: \"<= 1\"\n")
    rng = np.random.default_rng(7)
    tokens = rng.integers(3, 50257, size=(32, 128), dtype=np.int64)
    tokens[:, 0] = 0  # the tokenizer's BOS, excluded from the metrics
    np.save(folder / "tokens.npy", tokens)
    (folder / "thresholds").mkdir()
    suite = folder / "thresholds" / "gpt2s.yaml"
    suite.write_text("".join(lines))
    (folder / "pytest.ini").write_text("[pytest]\n")
    return suite


def timed_process(argv: list[str], cwd: Path, env: dict[str, str]) -> Timing:
    """Run ``argv`` to its end; fail loudly unless it exits 0."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu, load)


def commands(suite: Path, cache: Path) -> dict[str, tuple[list[str], Path]]:
    """The two commands on ``suite`` with caches in ``cache``, and the folder each runs in."""
    project = suite.parent.parent
    return {
        "saeval run": ([sys.executable, "-m", "pytest_saeval.cli", "run", str(suite), "--cache-dir", str(cache),
                        "--no-progress"], project),
        "pytest": ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--saeval-cache-dir",
                    str(cache), f"thresholds/{suite.name}"], project),
    }


def measure(label: str, suite: Path, work: Path, repeats: int) -> dict[str, dict[str, list[Timing]]]:
    """Every state of :data:`STATES` for both commands on ``suite``: ``{command: {state: timings}}``."""
    base = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    base.pop("SAEVAL_FILE_KEYED", None)
    today = {**base, "SAEVAL_FILE_KEYED": "0"}
    out: dict[str, dict[str, list[Timing]]] = {}
    for command in ("saeval run", "pytest"):
        found: dict[str, list[Timing]] = {state: [] for state in STATES}
        for r in range(repeats):
            colds = [("cold, today", today), ("cold", base)]
            for state, env in colds if r % 2 == 0 else colds[::-1]:  # each goes first in every other repeat
                cache = work / f"cache-{label}-{command}-{state}-{r}".replace(" ", "_").replace(",", "")
                argv, cwd = commands(suite, cache)[command]
                found[state].append(timed_process(argv, cwd, env))
            cache = work / f"cache-{label}-{command}-cold-{r}".replace(" ", "_")  # filled by the cold run
            argv, cwd = commands(suite, cache)[command]
            found["warm, today"].append(timed_process(argv, cwd, today))
            found["file-keyed warm"].append(timed_process(argv, cwd, base))
            (cache / "filehashes.json").unlink()
            found["file-keyed warm, memo cleared"].append(timed_process(argv, cwd, base))
            print(f"[process] {label} {command} repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
        out[command] = found
    return out


def run_process_scenario(repeats: int, json_out: Path | None = None) -> None:
    """Build the GPT-2-small-shaped suite, time every state, print the table."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="saeval-process-"))
    try:
        gpt2s = build_gpt2_small(work / "gpt2s")
        size = sum(p.stat().st_size for p in (work / "gpt2s" / "model").iterdir()) / 2**20
        results = {"demo": measure("demo", ROOT / "thresholds" / "demo.yaml", work, repeats),
                   "GPT-2 small": measure("gpt2s", gpt2s, work, repeats)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, size, repeats)
    if json_out is not None:
        json_out.write_text(json.dumps({suite: {cmd: {state: [t.__dict__ for t in ts] for state, ts in states.items()}
                                                for cmd, states in by_cmd.items()} for suite, by_cmd in results.items()},
                                       indent=2))


def _median(ts: list[Timing], attr: str) -> float:
    return statistics.median(getattr(t, attr) for t in ts)


def report(results: dict[str, dict[str, dict[str, list[Timing]]]], model_mib: float, repeats: int) -> None:
    print()
    print(f"## whole process (scenario p): median of {repeats} run(s) each, wall s / cpu s; GPT-2-small model "
          f"folder {model_mib:.0f} MiB; load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print("| suite, command | " + " | ".join(STATES) + " | warm today / file-keyed (wall) | "
          "warm today / memo cleared (wall) | cold today / cold (wall) | target |")
    print("|---" * (len(STATES) + 5) + "|")
    for suite, by_cmd in results.items():
        for command, states in by_cmd.items():
            name = f"{suite} {command}"
            cells = [f"{_median(states[s], 'wall'):.2f} / {_median(states[s], 'cpu'):.2f}" for s in STATES]
            fast = _median(states["warm, today"], "wall") / _median(states["file-keyed warm"], "wall")
            cleared = _median(states["warm, today"], "wall") / _median(states["file-keyed warm, memo cleared"], "wall")
            cold = _median(states["cold, today"], "wall") / _median(states["cold"], "wall")
            wanted = []
            if name in TARGETS:
                wanted.append(f">= {TARGETS[name]}x: {'met' if fast >= TARGETS[name] else 'NOT met'}")
            if name in LIMITS:
                ok = _median(states["file-keyed warm"], "wall") < LIMITS[name]
                wanted.append(f"< {LIMITS[name]} s: {'met' if ok else 'NOT met'}")
            print(f"| {name} | " + " | ".join(cells) + f" | {fast:.1f}x | {cleared:.1f}x | {cold:.2f} | "
                  f"{'; '.join(wanted) or '-'} |")
    print()
    print("all runs, wall s / cpu s @ 1-min load average at the start:")
    for suite, by_cmd in results.items():
        for command, states in by_cmd.items():
            parts = [f"{state}=[" + ", ".join(f"{t.wall:.2f}/{t.cpu:.2f}@{t.load:.1f}" for t in ts) + "]"
                     for state, ts in states.items()]
            print(f"  {suite} {command}: " + " ".join(parts))
