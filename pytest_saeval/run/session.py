"""One evaluation run shared by the pytest plugin and the ``saeval`` command.

Loads each model once (even when several suites share it), each token set and SAE once, runs one
fused pass per (model, token set, settings) group and checks every gate. Bad input surfaces as one
:class:`~pytest_saeval.errors.SaevalError` located at the suite file, line and key it came from,
naming its subject (suite, SAE entry) as data. Importing this module imports no torch: the heavy
half (:mod:`.evaluation`) is imported when a group is evaluated.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.errors import SaevalError, Subject
from pytest_saeval.run.checks import check_suite
from pytest_saeval.run.intervals import intervals
from pytest_saeval.run.loading import Loader
from pytest_saeval.run.outcome import EvalConfig, Inputs, SuiteRun
from pytest_saeval.run.plan import GroupKey, Overrides, SAEEntry, entries_of, group_key
from pytest_saeval.run.preflight import preflight
from pytest_saeval.run.provenance import Provenance, provenance_notes
from pytest_saeval.settings import EvalSettings
from pytest_saeval.spec.baseline import Baseline, load_baseline
from pytest_saeval.spec.loader import load_suites
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.hashing import Fingerprints
from pytest_saeval.versions import __version__, dist_version

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.engine.results import SAEResult
    from pytest_saeval.store.cached import EvalCache

__all__ = ["RunOptions", "Session", "run_suites"]

_DATA_KEYS = {"tokens": "data.tokens", "context_size": "data.context_size", "batch_size_prompts":
              "data.batch_size_prompts", "n_reconstruction_batches": "data.n_reconstruction_batches",
              "n_sparsity_batches": "data.n_sparsity_batches"}
"""The engine's input names, as suite keys (an engine error about one is located at that key)."""


@dataclass(frozen=True)
class RunOptions:
    """How a run loads and evaluates (the same for every suite of the run)."""

    device: str | None = None
    """Overrides every suite's ``model.device``."""
    auto_device: str | None = None
    """What ``auto`` means (e.g. one GPU per pytest-xdist worker); None: cuda when available, else cpu."""
    progress: bool = False
    """Show a progress bar on stderr."""
    use_cache: bool = False
    """Read and write the results and model-side caches."""
    cache_dir: Path | None = None
    """Folder of the caches (default ``.saeval-cache`` in the current directory, or ``$SAEVAL_CACHE_DIR``)."""
    recording_baseline: bool = False
    """This run records a baseline: a missing baseline file or value leaves its gates unchecked
    (:attr:`SuiteRun.unchecked`) instead of being an error."""


@dataclass(frozen=True)
class _Owner:
    """Whose SAE a key of a fused pass is."""

    suite: Suite
    entry: SAEEntry


@dataclass(frozen=True)
class _Evaluated:
    """One suite's part of a fused pass."""

    results: dict[str, SAEResult]
    provenance: dict[str, Provenance]
    sae_cfgs: dict[str, dict[str, Any]]
    context_size: int
    seconds: float


class Session:
    """Loads and evaluates suites; models, tokens, SAEs and results are kept for the session's life.

    Asking again for an SAE already evaluated on the same model object, token array and settings
    returns the kept result instead of evaluating it again.
    """

    def __init__(self, options: RunOptions | None = None) -> None:
        self.options = options or RunOptions()
        self.loader = Loader(self.options.device, self.options.auto_device)
        self.fingerprints = Fingerprints()
        self._cache: EvalCache | None = None
        self._done: dict[tuple[int, int, EvalSettings, int], tuple[Any, Any, Any, SAEResult]] = {}
        self.evaluations = 0
        """How many SAEs this session has evaluated (tests use it to prove exactly-once)."""

    def run(self, suites: Iterable[Suite], selected: Callable[[Suite, str], bool] | None = None,
            overrides: Overrides | None = None) -> list[SuiteRun]:
        """Evaluate every selected SAE of every suite once and check its gates.

        ``selected(suite, unique_id)`` picks SAEs (all when ``None``); ``overrides`` replace what the
        suites would load.
        """
        ov = overrides or Overrides()
        plans: list[tuple[Suite, list[SAEEntry]]] = []
        for suite in suites:
            entries = entries_of(suite, functools.partial(selected, suite) if selected is not None else None)
            if entries:
                plans.append((suite, entries))
        # What can be checked without a model is checked first, then the baseline files are read:
        # a wrong path or a bad baseline costs no model load and no pass.
        preflight(plans, ov)
        baselines = {suite.path: self._baseline(suite) for suite, _ in plans}
        groups: dict[GroupKey, list[tuple[Suite, list[SAEEntry]]]] = {}
        for suite, entries in plans:
            groups.setdefault(group_key(suite, self.loader.device_for(suite), ov), []).append((suite, entries))
        evaluated: dict[Path, _Evaluated] = {}
        for members in groups.values():
            evaluated.update(self._evaluate_group(members, ov))
        return [self._suite_run(suite, entries, baselines[suite.path], evaluated[suite.path], ov)
                for suite, entries in plans]

    def _suite_run(self, suite: Suite, entries: list[SAEEntry], baseline: Baseline | None,
                   done: _Evaluated, ov: Overrides) -> SuiteRun:
        found = {uid: intervals(res) for uid, res in done.results.items()}
        checks, unchecked = check_suite(suite, entries, done.results, baseline, found,
                                        recording=self.options.recording_baseline)
        first = next(iter(done.provenance.values()), None)
        inputs = Inputs(overridden=ov.described, model_xxh3=first.model_xxh3 if first else "",
                        tokens_xxh3=first.tokens_xxh3 if first else "")
        # Notes compare the suite's own inputs with its baseline's; other inputs say what they are in the title.
        notes = provenance_notes(suite.path, done.provenance, baseline) if inputs.own else []
        return SuiteRun(suite=suite, entries=entries, results=done.results, checks=checks,
                        eval_cfg=eval_config(suite, done.context_size), provenance=done.provenance,
                        sae_cfgs=done.sae_cfgs, notes=notes, unchecked=unchecked, intervals=found, inputs=inputs,
                        seconds=done.seconds)

    def _evaluate_group(self, members: list[tuple[Suite, list[SAEEntry]]], ov: Overrides) -> dict[Path, _Evaluated]:
        """One fused pass for suites that share model, tokens and settings."""
        from pytest_saeval.run.evaluation import device_of, provenance_of, sae_config

        started = time.perf_counter()
        first = members[0][0]
        model = self.loader.model(first, ov)
        device = device_of(model)
        tokens = self.loader.tokens(first, model, ov)
        settings = first.data.to_settings()
        fused: dict[str, Any] = {}
        owners: dict[str, _Owner] = {}
        for suite, entries in members:
            loaded = self.loader.saes(suite, entries, device, ov)
            for entry in entries:
                fused[f"{suite.path}::{entry.unique_id}"] = loaded[entry.unique_id]
                owners[f"{suite.path}::{entry.unique_id}"] = _Owner(suite, entry)
        results = self._evaluate_once(model, fused, tokens, settings, owners, first)
        seconds = time.perf_counter() - started
        out: dict[Path, _Evaluated] = {}
        for suite, _ in members:
            mine = {key: o.entry.unique_id for key, o in owners.items() if o.suite is suite}
            out[suite.path] = _Evaluated(
                results={uid: results[key] for key, uid in mine.items()},
                provenance={uid: provenance_of(model, fused[key], tokens, settings, self.fingerprints)
                            for key, uid in mine.items()},
                sae_cfgs={uid: sae_config(fused[key]) for key, uid in mine.items()},
                context_size=int(tokens.shape[1]),
                seconds=seconds * len(mine) / max(len(fused), 1),  # the suite's share, by SAE count
            )
        return out

    def _evaluate_once(self, model: Any, fused: dict[str, Any], tokens: Any, settings: EvalSettings,
                       owners: Mapping[str, _Owner], first: Suite) -> dict[str, SAEResult]:
        """Results for ``fused``: kept ones reused, the rest evaluated in one fused pass."""
        from pytest_saeval.engine.evaluate import EngineOptions
        from pytest_saeval.run.evaluation import fused_pass

        def key(sae: Any) -> tuple[int, int, EvalSettings, int]:
            return (id(model), id(tokens), settings, id(sae))

        out: dict[str, SAEResult] = {}
        todo: dict[str, Any] = {}
        for fused_id, sae in fused.items():
            kept = self._done.get(key(sae))
            if kept is not None:
                out[fused_id] = dataclasses.replace(kept[3], sae_id=fused_id)
            else:
                todo[fused_id] = sae
        if todo:
            try:
                fresh = fused_pass(model, todo, tokens, settings, EngineOptions(progress=self.options.progress),
                                   self._eval_cache())
            except SaevalError as e:
                raise _relocate(e, owners, first) from e
            self.evaluations += len(todo)
            for fused_id, res in fresh.items():
                # The objects are kept with the result so that their ids stay theirs.
                self._done[key(todo[fused_id])] = (model, tokens, todo[fused_id], res)
                out[fused_id] = res
        return {f: out[f] for f in fused}

    def _eval_cache(self) -> EvalCache | None:
        if not self.options.use_cache:
            return None
        if self._cache is None:
            from pytest_saeval.store.cached import EvalCache

            self._cache = EvalCache(self.options.cache_dir, fingerprints=self.fingerprints)
        return self._cache

    def _baseline(self, suite: Suite) -> Baseline | None:
        if suite.baseline is None:
            return None
        try:
            return load_baseline(suite.baseline, missing_ok=self.options.recording_baseline or not suite.uses_baseline)
        except SaevalError as e:
            raise e.located(file=str(suite.path), line=suite.baseline_line, key="baseline",
                            subject=Subject(suite=str(suite.path))) from e


_CFG_PARTS = frozenset({"hook_name", "hook_head_index", "d_in", "d_sae"})
"""SAE attributes read from its folder's config file (an error about one names that file)."""


def _relocate(e: SaevalError, owners: Mapping[str, _Owner], first: Suite) -> SaevalError:
    """Locate an engine error at the suite entry (or data key) it is about, from its subject."""
    owner = owners.get(e.subject.sae) if e.subject.sae is not None else None
    if owner is not None:
        suite, entry = owner.suite, owner.entry
        key = f"saes[{entry.index}]" + (f".{e.subject.part}" if e.subject.part else "")
        where = Subject(suite=str(suite.path), entry=entry.index, sae=entry.unique_id, part=e.subject.part)
        source = entry.spec.path / "cfg.json" if entry.spec.path is not None else None
        from_cfg = source is not None and e.subject.part in _CFG_PARTS
        detail = f"{e.subject.part} comes from the SAE's {source}" if from_cfg else ""
        return e.moved(file=str(suite.path), line=entry.spec.line, key=key, subject=where, detail=detail)
    data_key = _DATA_KEYS.get(e.location.key or "")
    if data_key is not None:
        return e.moved(file=str(first.path), line=first.data.line_of(data_key.removeprefix("data.")), key=data_key,
                       subject=Subject(suite=str(first.path)))
    return e.located(file=str(first.path), subject=Subject(suite=str(first.path)))


def eval_config(suite: Suite, context_size: int) -> EvalConfig:
    """The :class:`EvalConfig` of a suite evaluated with rows of ``context_size`` tokens."""
    d = suite.data
    s = d.to_settings()
    return EvalConfig(
        suite=str(suite.path),
        dataset=str(d.tokens) if d.tokens is not None else (d.dataset.path if d.dataset else None),
        context_size=context_size,
        batch_size_prompts=s.batch_size_prompts,
        n_eval_reconstruction_batches=s.n_reconstruction_batches,
        n_eval_sparsity_variance_batches=s.n_sparsity_batches,
        exclude_special_tokens=s.exclude_special_tokens if isinstance(s.exclude_special_tokens, bool)
        else list(s.exclude_special_tokens),
        library_version=dist_version("sae-lens"),
        saeval_version=__version__,
    )


def run_suites(paths: Iterable[str | os.PathLike[str]], options: RunOptions | None = None) -> list[SuiteRun]:
    """Load the suite files at ``paths`` and run them in one :class:`Session`."""
    return Session(options).run(load_suites(paths))
