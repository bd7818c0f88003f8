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
from pytest_saeval.run.filekeyed import FileKeyed, Lookup, SuitePart
from pytest_saeval.run.intervals import intervals
from pytest_saeval.run.loading import Loader
from pytest_saeval.run.outcome import EvalConfig, Inputs, SuiteRun
from pytest_saeval.run.plan import GroupKey, Overrides, SAEEntry, entries_of, group_key
from pytest_saeval.run.preflight import preflight
from pytest_saeval.run.provenance import provenance_notes
from pytest_saeval.settings import EvalSettings
from pytest_saeval.spec.baseline import Baseline, load_baseline
from pytest_saeval.spec.loader import load_suites
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.folder import CacheDisk, default_cache_dir
from pytest_saeval.store.hashing import Fingerprints
from pytest_saeval.versions import __version__, dist_version

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.engine.results import SAEResult
    from pytest_saeval.store.cached import EvalCache

__all__ = ["RunOptions", "Session", "run_suites"]

_DATA_PARTS = frozenset({"tokens", "context_size", "batch_size_prompts", "n_reconstruction_batches",
                         "n_sparsity_batches", "exclude_special_tokens"})
"""The engine's inputs that are ``data:`` keys of a suite (an engine error about one is located at that key)."""
_TOKEN_PARTS = frozenset({"tokens", "context_size"})
"""The inputs that a ``saeval_tokens`` override replaces (its rows and their width)."""


@dataclass(frozen=True)
class RunOptions:
    """How a run loads and evaluates (the same for every suite of the run)."""

    device: str | None = None
    """Overrides every suite's ``model.device``."""
    device_option: str = "--device"
    """How the user gave ``device`` (``--device``, ``--saeval-device``): a device problem names it."""
    auto_device: str | None = None
    """What ``auto`` means (e.g. one GPU per pytest-xdist worker); None: cuda when available, else cpu."""
    progress: bool = False
    """Show a progress bar on stderr."""
    use_cache: bool = False
    """Read and write the caches: file-keyed answers, results and model-side records."""
    cache_dir: Path | None = None
    """Folder of the caches (default ``.saeval-cache`` in the current directory, or ``$SAEVAL_CACHE_DIR``)."""
    recording_baseline: bool = False
    """This run records a baseline: a missing baseline file or value leaves its gates unchecked
    (:attr:`SuiteRun.unchecked`) instead of being an error."""
    threads: int | None = None
    """At most this many CPU threads for torch, set before the first model, SAE or token file loads
    (pytest-xdist workers share the CPU); None: torch's default."""
    file_keyed: bool = True
    """With ``use_cache``: answer a group whose model, tokens and SAEs are files from the file-keyed cache
    when none of their bytes changed (nothing imported or loaded); ``$SAEVAL_FILE_KEYED=0`` turns it off."""


@dataclass(frozen=True)
class _Owner:
    """Whose SAE a key of a fused pass is."""

    suite: Suite
    """The suite that asked for the SAE."""
    entry: SAEEntry
    """Its entry in that suite."""


class Session:
    """Loads and evaluates suites; models, tokens, SAEs and results are kept for the session's life.

    Asking again for an SAE already evaluated on the same model object, token array and settings
    returns the kept result instead of evaluating it again.
    """

    def __init__(self, options: RunOptions | None = None) -> None:
        self.options = options or RunOptions()
        self.loader = Loader(self.options.device, self.options.auto_device, threads=self.options.threads,
                             device_option=self.options.device_option)
        self.fingerprints = Fingerprints()
        self._cache: EvalCache | None = None
        self._disk: CacheDisk | None = None
        self._file_keyed: FileKeyed | None = None
        self._done: dict[tuple[int, int, EvalSettings, int], tuple[Any, Any, Any, SAEResult]] = {}
        self.evaluations = 0
        """How many SAEs this session has evaluated or answered from the file-keyed cache, each once: one
        answered from the file-keyed cache and later part of a pass (with SAEs that have no answer there) is
        not counted again (tests use it to prove exactly-once)."""
        self._answered: set[tuple[str, str]] = set()
        """``(suite file, unique id)`` of the SAEs answered from the file-keyed cache."""
        self.answered = 0
        """How many of them were answered from the file-keyed cache (nothing loaded)."""

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
        evaluated: dict[Path, SuitePart] = {}
        for members in groups.values():
            evaluated.update(self._answer_group(members, ov))
        return [self._suite_run(suite, entries, baselines[suite.path], evaluated[suite.path], ov)
                for suite, entries in plans]

    def _suite_run(self, suite: Suite, entries: list[SAEEntry], baseline: Baseline | None,
                   done: SuitePart, ov: Overrides) -> SuiteRun:
        found = done.intervals
        checks, unchecked = check_suite(suite, entries, done.results, baseline, found,
                                        recording=self.options.recording_baseline)
        first = next(iter(done.provenance.values()), None)
        inputs = Inputs(overridden=ov.described, model_xxh3=first.model_xxh3 if first else "",
                        tokens_xxh3=first.tokens_xxh3 if first else "")
        notes = provenance_notes(suite.path, done.provenance, baseline, inputs.overridden)
        tokens_from = ov.origins.get("tokens", "tokens override") if ov.tokens is not None else None
        return SuiteRun(suite=suite, entries=entries, results=done.results, checks=checks,
                        eval_cfg=eval_config(suite, done.context_size, tokens_from), provenance=done.provenance,
                        sae_cfgs=done.sae_cfgs, notes=notes, unchecked=unchecked, intervals=found, inputs=inputs,
                        seconds=done.seconds)

    def _answer_group(self, members: list[tuple[Suite, list[SAEEntry]]], ov: Overrides) -> dict[Path, SuitePart]:
        """A group's parts from the file-keyed cache when every SAE has an answer there, else evaluated (and
        then stored there, when the group is file-based)."""
        keyed = self._answers() if ov.empty else None
        found = keyed.lookup(members, self._known_device(members[0][0])) if keyed is not None else Lookup()
        if found.parts is not None:
            self.evaluations += found.fresh
            self.answered += found.fresh
            self._answered.update((str(suite.path), e.unique_id) for suite, entries in members for e in entries)
            return found.parts
        parts = self._evaluate_group(members, ov)
        if keyed is not None and found.keys is not None:
            keyed.save(found.keys, members, parts)
        return parts

    def _known_device(self, suite: Suite) -> str | None:
        """The device the suite's model runs on, as the file keys name it (torch is imported only when
        no cheaper sign tells whether a GPU is there); None when it cannot be resolved."""
        from pytest_saeval.sources.devices import known_device, resolve_device

        wanted = self.loader.device_for(suite)
        found = known_device(wanted)
        if found is not None:
            return found
        try:
            return resolve_device(wanted)
        except SaevalError:  # the evaluating path reports it, located at model.device
            return None

    def _evaluate_group(self, members: list[tuple[Suite, list[SAEEntry]]], ov: Overrides) -> dict[Path, SuitePart]:
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
        results = self._evaluate_once(model, fused, tokens, settings, owners, first, ov)
        seconds = time.perf_counter() - started
        out: dict[Path, SuitePart] = {}
        for suite, _ in members:
            mine = {key: o.entry.unique_id for key, o in owners.items() if o.suite is suite}
            out[suite.path] = SuitePart(
                # Named by unique id, as answered and wired results are (the fused id is the pass's own).
                results={uid: dataclasses.replace(results[key], sae_id=uid) for key, uid in mine.items()},
                provenance={uid: provenance_of(model, fused[key], tokens, settings, self.fingerprints)
                            for key, uid in mine.items()},
                sae_cfgs={uid: sae_config(fused[key]) for key, uid in mine.items()},
                intervals={uid: intervals(results[key]) for key, uid in mine.items()},
                context_size=int(tokens.shape[1]),
                seconds=seconds * len(mine) / max(len(fused), 1),  # the suite's share, by SAE count
            )
        return out

    def _evaluate_once(self, model: Any, fused: dict[str, Any], tokens: Any, settings: EvalSettings,
                       owners: Mapping[str, _Owner], first: Suite, ov: Overrides) -> dict[str, SAEResult]:
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
                raise _relocate(e, owners, first, ov) from e
            self.evaluations += sum(1 for f in todo if (str(owners[f].suite.path), owners[f].entry.unique_id)
                                    not in self._answered)
            for fused_id, res in fresh.items():
                # The objects are kept with the result so that their ids stay theirs.
                self._done[key(todo[fused_id])] = (model, tokens, todo[fused_id], res)
                out[fused_id] = res
        return {f: out[f] for f in fused}

    @property
    def cache_folder(self) -> Path | None:
        """The caches' folder; ``None`` when the caches are off, or after the folder's one warning (the run went
        on without it, so nothing more is written there, the timings included)."""
        if not self.options.use_cache or (self._disk is not None and not self._disk.usable):
            return None
        return self.options.cache_dir or default_cache_dir()

    def _cache_disk(self) -> CacheDisk:
        if self._disk is None:
            self._disk = CacheDisk(self.options.cache_dir or default_cache_dir())
        return self._disk

    def _answers(self) -> FileKeyed | None:
        if not (self.options.use_cache and self.options.file_keyed):
            return None
        if self._file_keyed is None:
            disk = self._cache_disk()
            self._file_keyed = FileKeyed(disk.folder, disk)
        return self._file_keyed

    def _eval_cache(self) -> EvalCache | None:
        if not self.options.use_cache:
            return None
        if self._cache is None:
            from pytest_saeval.store.cached import EvalCache

            disk = self._cache_disk()
            self._cache = EvalCache(disk.folder, fingerprints=self.fingerprints, disk=disk)
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


def _relocate(e: SaevalError, owners: Mapping[str, _Owner], first: Suite, ov: Overrides) -> SaevalError:
    """Locate an engine error at what it is about, from its subject: the suite entry of its SAE, the ``data:``
    key of its input, or the conftest fixture whose override replaced them."""
    part = e.subject.part
    owner = owners.get(e.subject.sae) if e.subject.sae is not None else None
    if owner is not None:
        suite, entry = owner.suite, owner.entry
        key = f"saes[{entry.index}]" + (f".{part}" if part else "")
        where = Subject(suite=str(suite.path), entry=entry.index, sae=entry.unique_id, part=part)
        if ov.saes is not None and entry.unique_id in ov.saes:  # the conftest's SAE, not the suite's source
            return e.moved(file=None, line=None, key=ov.origins.get("saes", "saeval_saes"), subject=where,
                           detail=f"SAE {entry.unique_id!r}" + (f", its {part}" if part else ""))
        if part == "hook_name" and entry.spec.hook_name is not None:  # the suite's own hook_name: its line
            return e.moved(file=str(suite.path), line=entry.spec.line_of("hook_name"), key=key, subject=where,
                           fix="set hook_name to a hook this model has (see model.hook_dict)")
        source = _config_file(entry.spec.path, entry.spec.format) if entry.spec.path is not None else None
        from_cfg = source is not None and part in _CFG_PARTS
        detail = f"{part} comes from the SAE's {source}" if from_cfg else ""
        return e.moved(file=str(suite.path), line=entry.spec.line, key=key, subject=where, detail=detail)
    if part == "tokenizer" and ov.model is None:  # the suite's own model: its setting asked for special tokens
        part = "exclude_special_tokens"
    suite_subject = Subject(suite=str(first.path), part=part)
    if part in _TOKEN_PARTS and ov.tokens is not None:
        return e.moved(file=None, line=None, key=ov.origins.get("tokens", "saeval_tokens"), subject=suite_subject)
    if part == "tokenizer":  # the conftest's model has none to name the special tokens
        return e.moved(file=None, line=None, key=ov.origins.get("model", "saeval_model"), subject=suite_subject,
                       fix=f"give the fixture's model a tokenizer (model.tokenizer), or set data.exclude_special_tokens "
                       f"in {first.path} to a list of ids or false")
    if part in _DATA_PARTS:
        return e.moved(file=str(first.path), line=first.data.line_of(part), key=f"data.{part}", subject=suite_subject)
    return e.located(file=str(first.path), subject=Subject(suite=str(first.path)))


def _config_file(folder: Path, wanted: str | None) -> Path:
    """The config file of the checkpoint in ``folder`` (``cfg.json``, or dictionary_learning's ``config.json``)."""
    from pytest_saeval.sources.formats import FORMAT_FILES, detect_format

    try:
        return folder / FORMAT_FILES[detect_format(folder, wanted)][0]
    except SaevalError:  # it loaded a moment ago: what is there now cannot be told
        return folder / "cfg.json"


def eval_config(suite: Suite, context_size: int, tokens_from: str | None = None) -> EvalConfig:
    """The :class:`EvalConfig` of a suite evaluated with rows of ``context_size`` tokens, from its own
    ``data:`` or, when ``tokens_from`` names one, from a conftest's tokens (its ``dataset``)."""
    d = suite.data
    s = d.to_settings()
    own = str(d.tokens) if d.tokens is not None else (d.dataset.path if d.dataset else None)
    return EvalConfig(
        suite=str(suite.path),
        dataset=tokens_from or own,
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
