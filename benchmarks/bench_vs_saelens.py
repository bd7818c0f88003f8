"""Wall time and peak memory of pytest-saeval's ``evaluate()`` against ``sae_lens.run_evals``.

Both sides get the same model (a GPT-2-small-shaped ``HookedTransformer`` with random weights), the
same SAEs, the same token rows and the same metric set (SAE Lens's: every ``run_evals`` flag on), in
one process. SAE Lens reads each metric family from a fresh row store starting at row 0 (its
``reset_input_dataset`` does not rewind), as pytest-saeval's contract says.

Scenarios:
  a  1 SAE at layer 8 (``hook_resid_pre``)
  b  4 SAEs at layers 2, 5, 8, 11
  c  4 SAEs on one hook (layer 8)
  d  (b) again through the caches (``EvalCache``) with nothing changed: results-cache hit vs the cold call
  e  a new SAE on (a)'s model and tokens with the model-side cache warm (memory tier, then disk only)
  p  whole processes: ``saeval run`` and ``pytest`` on the demo suite and on a GPT-2-small-shaped suite built
     from files, cold / warm (today's path: ``SAEVAL_FILE_KEYED=0``) / file-keyed warm (``bench_process.py``;
     not in the default set: ``--scenarios p``)

Per scenario: median wall time of each side over ``--repeats`` runs (the sides interleaved), their
ratio, the bare forward passes the engine's schedule needs (timed directly: clean forward, one
zero-ablation tail per hook, one spliced tail per SAE, all returning logits; sparsity-only batches
stop after the deepest block), the largest metric difference to SAE Lens, and peak memory.

Peak memory: one fresh subprocess per measurement builds the inputs, resets the kernel's peak-RSS
counter (``/proc/self/clear_refs`` = 5), runs one evaluation and reads ``VmHWM`` from
``/proc/self/status``; the number is that peak minus the RSS before the run (torch's CPU allocations
are invisible to tracemalloc). On CUDA it would be ``torch.cuda.max_memory_allocated``; this harness
runs on the CPU.

Usage: ``python benchmarks/bench_vs_saelens.py [--quick] [--repeats 3] [--scenarios abcdep]``
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class Shape:
    """Model, SAE and data sizes of one benchmark configuration."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    d_sae: int
    batch_size: int
    n_batches: int

    @property
    def single_layer(self) -> int:
        return 8 * self.n_layers // 12

    @property
    def spread_layers(self) -> list[int]:
        return [(2 + 3 * j) * self.n_layers // 12 for j in range(4)]


FULL = Shape(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=128, d_sae=6144,
             batch_size=8, n_batches=2)
QUICK = Shape(n_layers=4, d_model=128, n_heads=4, d_head=32, d_mlp=512, d_vocab=4096, n_ctx=64, d_sae=1024,
              batch_size=4, n_batches=2)

TARGETS = {"a": 1.8, "b": 2.4, "c": 4.0, "d": 20.0, "e": 3.5}
"""Speed-up targets (SAE Lens time / engine time; for d: cold / warm)."""


# -- inputs ----------------------------------------------------------------------------------------


def build_model(shape: Shape) -> Any:
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=shape.n_layers, d_model=shape.d_model, n_heads=shape.n_heads,
                                  d_head=shape.d_head, d_mlp=shape.d_mlp, d_vocab=shape.d_vocab, n_ctx=shape.n_ctx,
                                  act_fn="gelu_new", normalization_type="LN", seed=0, device="cpu")
    torch.manual_seed(0)
    return HookedTransformer(cfg).eval()


def build_sae(shape: Shape, layer: int, seed: int) -> Any:
    """A standard SAE whose decoder roughly inverts its encoder (x̂ ≈ x), random otherwise."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=shape.d_model, d_sae=shape.d_sae)
    cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_pre"
    sae = StandardSAE(cfg)
    gen = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        w = torch.randn(shape.d_model, shape.d_sae, generator=gen) / math.sqrt(shape.d_model)
        sae.W_enc.copy_(w)
        sae.W_dec.copy_(w.T * (2.0 * shape.d_model / shape.d_sae) * (1 + 0.1 * seed))
        sae.b_enc.copy_(-0.05 * torch.rand(shape.d_sae, generator=gen))
        sae.b_dec.zero_()
    return sae.eval()


def make_tokens(shape: Shape, n_rows: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, shape.d_vocab - 1, (n_rows, shape.n_ctx), generator=gen)
    tokens[:, 0] = shape.d_vocab - 1  # a BOS-like id at each row start, excluded from the metrics
    return tokens


def make_settings(shape: Shape, n_batches: int | None = None) -> Any:
    from pytest_saeval import EvalSettings

    n = n_batches or shape.n_batches
    return EvalSettings(batch_size_prompts=shape.batch_size, n_reconstruction_batches=n, n_sparsity_batches=n,
                        exclude_special_tokens=(shape.d_vocab - 1,))


def scenario_saes(shape: Shape, name: str) -> dict[str, Any]:
    if name in ("a", "e"):
        return {"sae_a": build_sae(shape, shape.single_layer, 0)}
    if name in ("b", "d"):
        return {f"sae_l{layer}": build_sae(shape, layer, j) for j, layer in enumerate(shape.spread_layers)}
    if name == "c":
        return {f"sae_c{j}": build_sae(shape, shape.single_layer, 10 + j) for j in range(4)}
    raise ValueError(name)


# -- the two sides -----------------------------------------------------------------------------------


class RowStore:
    """The part of an ``ActivationsStore`` that ``run_evals`` uses: rows in order from row 0."""

    def __init__(self, tokens: Any, batch_size: int) -> None:
        self.tokens = tokens
        self.store_batch_size_prompts = batch_size
        self.context_size = tokens.shape[1]
        self.next_row = 0

    def get_batch_tokens(self, batch_size: int | None = None, **_: Any) -> Any:
        n = batch_size or self.store_batch_size_prompts
        rows = self.tokens[self.next_row:self.next_row + n]
        if rows.shape[0] < n:
            raise RuntimeError("RowStore ran out of rows")
        self.next_row += n
        return rows

    def reset_input_dataset(self) -> None:
        """SAE Lens's does not rewind either; each metric family gets a fresh store instead."""


def run_saelens(model: Any, saes: Mapping[str, Any], tokens: Any, settings: Any
                ) -> dict[str, tuple[dict[str, float], dict[str, list[float]]]]:
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    common = {"batch_size_prompts": settings.batch_size_prompts,
              "n_eval_reconstruction_batches": settings.n_reconstruction_batches,
              "n_eval_sparsity_variance_batches": settings.n_sparsity_batches,
              "library_version": "bench", "git_hash": "bench"}
    configs = (EvalConfig(compute_kl=True, compute_ce_loss=True, **common),
               EvalConfig(compute_l2_norms=True, compute_sparsity_metrics=True, compute_variance_metrics=True,
                          compute_featurewise_density_statistics=True,
                          compute_featurewise_weight_based_metrics=True, **common))
    exclude = list(settings.exclude_special_tokens)
    out = {}
    for sae_id, sae in saes.items():
        flat: dict[str, float] = {}
        features: dict[str, list[float]] = {}
        for config in configs:
            groups, feats = run_evals(sae=sae, activation_store=RowStore(tokens, settings.batch_size_prompts),
                                      model=model, activation_scaler=ActivationScaler(), eval_config=config,
                                      exclude_special_tokens=exclude)
            for values in groups.values():
                flat.update({k: float(v) for k, v in values.items()})
            features.update({k: [float(x) for x in v] for k, v in feats.items()})
        out[sae_id] = (flat, features)
    return out


def engine_metric_set() -> list[str]:
    from pytest_saeval.catalogue import SAE_LENS_FEATURE_METRICS, SAE_LENS_SCALAR_METRICS

    return [*SAE_LENS_SCALAR_METRICS, *SAE_LENS_FEATURE_METRICS]


def engine_options() -> Any:
    from pytest_saeval import EngineOptions

    return EngineOptions(metrics=frozenset(engine_metric_set()))


def run_engine(model: Any, saes: Mapping[str, Any], tokens: Any, settings: Any, *,
               score_by_summary: bool = False) -> dict[str, Any]:
    """``evaluate()``; ``score_by_summary``: the plugin's scoring (``--score-by-summary``: one pass scoring KL / CE
    through the clean distribution's summary, as the plugin and ``saeval`` do with the caches off)."""
    from pytest_saeval import evaluate
    from pytest_saeval.engine.evaluate import Scoring, run_pass
    from pytest_saeval.engine.inputs import as_token_tensor

    if score_by_summary:
        return run_pass(model, saes, as_token_tensor(tokens), settings, engine_options(), Scoring(by_summary=True))
    return evaluate(model, saes, tokens, settings, engine_options())


def bare_forwards(model: Any, saes: Mapping[str, Any], tokens: Any, settings: Any) -> None:
    """The forward passes of the engine's schedule and nothing else (SAE outputs made beforehand).

    Per reconstruction batch: the clean forward (logits), per hook one zero-ablation tail from the
    hook's block, per SAE one tail with a precomputed replacement; each returns logits as a plain
    TransformerLens forward does. Sparsity-only batches: one forward that stops after the deepest block.
    """
    import torch

    hooks: dict[str, int] = {sae.cfg.metadata.hook_name: int(sae.cfg.metadata.hook_name.split(".")[1])
                             for sae in saes.values()}
    deepest = max(hooks.values()) + 1
    B = settings.batch_size_prompts
    # replacements made outside the timed region would need the activations; a constant of the
    # right shape costs the forwards exactly the same
    repl = torch.zeros(B, tokens.shape[1], model.cfg.d_model) + 0.01
    with torch.no_grad():
        for i in range(max(settings.n_reconstruction_batches, settings.n_sparsity_batches)):
            rows = tokens[i * B:(i + 1) * B]
            if i >= settings.n_reconstruction_batches:
                model.run_with_hooks(rows, stop_at_layer=deepest)
                continue
            entries: dict[int, Any] = {}

            def keep(act: Any, hook: Any, layer: int) -> Any:
                entries[layer] = act
                return act

            model.run_with_hooks(rows, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre",
                                                   lambda a, hook, layer=layer: keep(a, hook, layer))
                                                  for layer in set(hooks.values())])
            for hook_name, layer in hooks.items():
                model.run_with_hooks(entries[layer], start_at_layer=layer,
                                     fwd_hooks=[(hook_name, lambda a, hook: torch.zeros_like(a))])
            for sae in saes.values():
                layer = hooks[sae.cfg.metadata.hook_name]
                model.run_with_hooks(entries[layer], start_at_layer=layer,
                                     fwd_hooks=[(sae.cfg.metadata.hook_name, lambda a, hook: repl)])


# -- comparison --------------------------------------------------------------------------------------


@dataclass
class Diff:
    """The metric that uses most of the parity tolerance (|a − b| ≤ 1e-6 + 1e-4·|b|)."""

    metric: str = ""
    engine: float = math.nan
    sae_lens: float = math.nan
    tolerance_used: float = 0.0

    def update(self, name: str, a: float, b: float) -> None:
        if (math.isnan(a) and math.isnan(b)) or a == b:
            used = 0.0
        elif math.isnan(a) or math.isnan(b):
            used = math.inf
        else:
            used = abs(a - b) / (1e-6 + 1e-4 * abs(b))
        if used >= self.tolerance_used and (used > 0 or not self.metric):
            self.metric, self.engine, self.sae_lens, self.tolerance_used = name, a, b, used


def compare(engine: Mapping[str, Any], reference: Mapping[str, tuple[dict[str, float], dict[str, list[float]]]]
            ) -> Diff:
    diff = Diff()
    for sae_id, (flat, features) in reference.items():
        res = engine[sae_id]
        for name, b in flat.items():
            diff.update(f"{sae_id}:{name}", res.metrics[name], b)
        for name, values in features.items():
            mine = res.feature_metrics[name]
            for j, (a, b) in enumerate(zip(mine, values)):
                diff.update(f"{sae_id}:{name}[{j}]", a, b)
    return diff


# -- timing and memory -------------------------------------------------------------------------------


@dataclass
class Sample:
    """One timed call: wall seconds, CPU seconds of this process (all threads), 1-min load average."""

    wall: float
    cpu: float
    load: float


def timed(fn: Callable[[], Any]) -> tuple[Sample, Any]:
    gc.collect()
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return Sample(time.perf_counter() - start, time.process_time() - cpu, load), out


def _proc_status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(v) * 1024 for k, v in re.findall(r"(VmHWM|VmRSS):\s+(\d+) kB", text)}


def child_memory(spec: str) -> None:
    """Subprocess entry: build one measurement's inputs, reset the peak, run once, print JSON."""
    import torch

    opts = json.loads(spec)
    torch.set_num_threads(opts["threads"])
    shape = Shape(**opts["shape"])
    settings = make_settings(shape, opts["n_batches"])
    model = build_model(shape)
    saes = scenario_saes(shape, opts["scenario"])
    tokens = make_tokens(shape, settings.rows_needed)
    run = run_saelens if opts["side"] == "sae_lens" else run_engine
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _proc_status()
    run(model, saes, tokens, settings)
    after = _proc_status()
    print(json.dumps({"peak_growth": after["VmHWM"] - before["VmRSS"], "rss_before": before["VmRSS"]}))


def measure_memory(shape: Shape, scenario: str, side: str, n_batches: int, threads: int) -> float:
    spec = json.dumps({"shape": asdict(shape), "scenario": scenario, "side": side, "n_batches": n_batches,
                       "threads": threads})
    # A fixed mmap threshold turns off glibc's sliding one: every allocation of 128 KiB or more is its own
    # mapping and goes back to the system when freed, so the peak RSS follows the peak of live memory
    # instead of what the allocator happens to keep (same setting for both sides).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run([sys.executable, __file__, "--child-memory", spec], capture_output=True, text=True,
                          check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_growth"] / 2**20


# -- main ------------------------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def paired(before: list[Sample], after: list[Sample], attr: str) -> float:
    """Median over repeats of before/after, each repeat's runs side by side (robust to load drifting)."""
    return median([getattr(b, attr) / getattr(a, attr) for b, a in zip(before, after)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model and SAEs (a smoke run, minutes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scenarios", default="abcde")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--no-timing", action="store_true", help="only the peak-memory subprocesses")
    parser.add_argument("--score-by-summary", action="store_true",
                        help="(a)-(c): score SAEs through the clean summary, as the plugin and saeval do")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    parser.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_memory:
        child_memory(args.child_memory)
        return 0
    if "p" in args.scenarios:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_process import run_process_scenario

        run_process_scenario(args.repeats, args.json.with_suffix(".process.json") if args.json else None)
        if not any(s in args.scenarios for s in "abcde"):
            return 0

    import warnings

    import torch

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.set_num_threads(args.threads)
    from pytest_saeval.store.cached import EvalCache
    from pytest_saeval.store.model import ModelCache

    shape = QUICK if args.quick else FULL
    settings = make_settings(shape)
    model = build_model(shape)
    tokens = make_tokens(shape, settings.rows_needed)
    scen = [s for s in "abcde" if s in args.scenarios]
    raw: dict[str, dict[str, Any]] = {s: {"sae_lens": [], "engine": [], "bare": [], "diff": None} for s in scen}
    saes_of = {s: scenario_saes(shape, s) for s in scen if s in "abc"}
    refs: dict[str, Any] = {}
    tmp_root = Path(tempfile.mkdtemp(prefix="saeval-bench-"))
    started = time.time()
    try:
        for r in range(0 if args.no_timing else args.repeats):
            for s in scen:
                if s in "abc":
                    saes = saes_of[s]
                    t_ref, ref = timed(lambda: run_saelens(model, saes, tokens, settings))
                    t_eng, res = timed(lambda: run_engine(model, saes, tokens, settings,
                                                          score_by_summary=args.score_by_summary))
                    t_bare, _ = timed(lambda: bare_forwards(model, saes, tokens, settings))
                    raw[s]["sae_lens"].append(t_ref)
                    raw[s]["engine"].append(t_eng)
                    raw[s]["bare"].append(t_bare)
                    refs.setdefault(s, ref)
                    if raw[s]["diff"] is None:
                        raw[s]["diff"] = compare(res, ref)
                elif s == "d":
                    saes = scenario_saes(shape, "d")
                    folder = tmp_root / f"d{r}"
                    mc = ModelCache(folder)
                    cache = EvalCache(folder, model_cache=mc)
                    run = lambda: cache.evaluate(model, saes, tokens, settings, engine_options())  # noqa: E731
                    t_cold, _ = timed(run)
                    t_warm, res = timed(run)
                    raw[s]["engine"].append(t_warm)
                    raw[s]["sae_lens"].append(t_cold)  # the "before" column: the cold cached call
                    if raw[s]["diff"] is None:
                        # the same SAEs as (b): reuse its SAE Lens numbers when (b) ran
                        raw[s]["diff"] = compare(res, refs.get("b") or run_saelens(model, saes, tokens, settings))
                elif s == "e":
                    folder = tmp_root / f"e{r}"
                    mc = ModelCache(folder)
                    first = scenario_saes(shape, "a")
                    cache = EvalCache(folder, model_cache=mc)
                    cache.evaluate(model, first, tokens, settings, engine_options())
                    new = {"sae_new": build_sae(shape, shape.single_layer, 20 + r)}
                    t_ref, ref = timed(lambda: run_saelens(model, new, tokens, settings))
                    t_mem, res = timed(lambda: cache.evaluate(model, new, tokens, settings, engine_options()))
                    # e': the same SAE again as a new process would see it: no memory tier, no stored result
                    mc.clear_memory()
                    shutil.rmtree(folder / "results")
                    t_disk, res_disk = timed(lambda: EvalCache(folder, model_cache=mc).evaluate(
                        model, new, tokens, settings, engine_options()))
                    raw[s]["sae_lens"].append(t_ref)
                    raw[s]["engine"].append(t_mem)
                    raw[s].setdefault("engine_disk", []).append(t_disk)
                    if raw[s]["diff"] is None:
                        raw[s]["diff"] = compare(res, ref)
                        raw[s]["diff_disk"] = compare(res_disk, ref)
                print(f"[repeat {r + 1}/{args.repeats}] {s} done at {time.time() - started:.0f} s", file=sys.stderr,
                      flush=True)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    memory: dict[str, dict[str, float]] = {}
    if not args.no_memory:
        for s in (x for x in scen if x in "abc"):
            memory[s] = {side: measure_memory(shape, s, side, shape.n_batches, args.threads)
                         for side in ("sae_lens", "engine")}
            print(f"[memory] {s} done at {time.time() - started:.0f} s", file=sys.stderr, flush=True)
        if "a" in scen:
            memory["a"]["engine_4x_batches"] = measure_memory(shape, "a", "engine", 4 * shape.n_batches, args.threads)

    report(shape, args, raw, memory)
    if args.json:
        def plain(v: Any) -> Any:
            if isinstance(v, (Diff, Sample)):
                return asdict(v)
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v

        args.json.write_text(json.dumps({"shape": asdict(shape), "raw": {
            s: {k: plain(v) for k, v in d.items()} for s, d in raw.items()}, "memory": memory}, indent=2, default=str))
    return 0


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()


def _verdict(ratio: float, target: float) -> str:
    return "met" if ratio >= target else "NOT met"


def report(shape: Shape, args: Any, raw: dict[str, dict[str, Any]], memory: dict[str, dict[str, float]]) -> None:
    import torch

    print(f"# pytest-saeval vs sae_lens.run_evals — {datetime.date.today().isoformat()}")
    print(f"machine: {_cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; load average at the end: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"shape: {'quick' if args.quick else 'GPT-2 small'} {asdict(shape)}; repeats {args.repeats}; "
          f"{shape.n_batches}+{shape.n_batches} batches of {shape.batch_size} x {shape.n_ctx} tokens")
    print("engine scoring in (a)-(c): " + ("through the clean summary (as the plugin and saeval)" if args.score_by_summary else "direct (evaluate() default, SAE Lens's arithmetic)"))
    print("speed-up = median over repeats of (SAE Lens / engine) with each repeat's runs side by side; "
          "wall = wall-clock seconds, cpu = CPU seconds of the process (all threads: the work done, "
          "little affected by other processes on a shared machine)")
    print()
    print("| scenario | SAE Lens s (wall / cpu) | engine s (wall / cpu) | speed-up wall | speed-up cpu | target | "
          "bare forwards s (wall / cpu) | engine / bare (wall / cpu) | largest diff to SAE Lens (share of tolerance) |")
    print("|---|---|---|---|---|---|---|---|---|")
    names = {"a": "a: 1 SAE, layer 8", "b": "b: 4 SAEs, layers 2/5/8/11", "c": "c: 4 SAEs, one hook",
             "d": "d: (b) again, results cache (first column: the cold call)",
             "e": "e: new SAE, model-side cache warm (memory)"}
    for s, d in raw.items():
        ref, eng, bare = d["sae_lens"], d["engine"], d["bare"]
        if not ref:
            continue
        w, c = paired(ref, eng, "wall"), paired(ref, eng, "cpu")
        diff: Diff | None = d["diff"]
        diff_text = ("-" if diff is None else
                     f"{diff.metric}: {diff.engine:.6g} vs {diff.sae_lens:.6g} ({diff.tolerance_used:.2g})")
        cols = [names[s],
                f"{median([x.wall for x in ref]):.2f} / {median([x.cpu for x in ref]):.2f}",
                f"{median([x.wall for x in eng]):.2f} / {median([x.cpu for x in eng]):.2f}",
                f"{w:.2f}x", f"{c:.2f}x", f"{TARGETS[s]}x: wall {_verdict(w, TARGETS[s])}, cpu {_verdict(c, TARGETS[s])}"]
        if bare:
            cols += [f"{median([x.wall for x in bare]):.2f} / {median([x.cpu for x in bare]):.2f}",
                     f"{paired(eng, bare, 'wall'):.2f} / {paired(eng, bare, 'cpu'):.2f}"]
        else:
            cols += ["-", "-"]
        cols.append(diff_text)
        print("| " + " | ".join(cols) + " |")
        if s == "e" and d.get("engine_disk"):
            disk = d["engine_disk"]
            w, c = paired(ref, disk, "wall"), paired(ref, disk, "cpu")
            dd: Diff | None = d.get("diff_disk")
            dd_text = ("-" if dd is None else
                       f"{dd.metric}: {dd.engine:.6g} vs {dd.sae_lens:.6g} ({dd.tolerance_used:.2g})")
            print(f"| e': new SAE, model-side cache on disk only | (as e) | "
                  f"{median([x.wall for x in disk]):.2f} / {median([x.cpu for x in disk]):.2f} | {w:.2f}x | {c:.2f}x | "
                  f"{TARGETS[s]}x: wall {_verdict(w, TARGETS[s])}, cpu {_verdict(c, TARGETS[s])} | - | - | {dd_text} |")
    print()
    print("all runs, wall s / cpu s @ 1-min load average at the start:")
    for s, d in raw.items():
        parts = []
        for key in ("sae_lens", "engine", "bare", "engine_disk"):
            if d.get(key):
                parts.append(f"{key}=[" + ", ".join(f"{x.wall:.1f}/{x.cpu:.1f}@{x.load:.1f}" for x in d[key]) + "]")
        print(f"  {s}: " + " ".join(parts))
    if memory:
        print()
        print("peak memory growth during one evaluation (MiB; fresh subprocess each; VmHWM - RSS before):")
        print("| scenario | SAE Lens | engine | engine with 4x the batches |")
        print("|---|---|---|---|")
        for s, m in memory.items():
            four = f"{m['engine_4x_batches']:.0f}" if "engine_4x_batches" in m else "-"
            print(f"| {s} | {m['sae_lens']:.0f} | {m['engine']:.0f} | {four} |")


if __name__ == "__main__":
    sys.exit(main())
