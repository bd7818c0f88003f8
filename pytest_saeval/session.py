"""One evaluation run shared by the pytest plugin and the ``saeval`` command.

Loads each model once (even when several suites share it), each token set and SAE once, runs one
fused :func:`~pytest_saeval.engine.evaluate` call per (model, token set, settings) and checks every
gate. Bad input surfaces as one :class:`~pytest_saeval.errors.SaevalError` located at the suite
file, line and key it came from.
"""

from __future__ import annotations

import math
import platform
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.spec.baseline import Baseline, load_baseline
from pytest_saeval.errors import SaevalError
from pytest_saeval.spec.gates import Gate
from pytest_saeval.spec.verdict import GateResult, check_gate
from pytest_saeval.provenance import provenance_notes
from pytest_saeval.spec.suite import SAESpec, Suite

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from pytest_saeval.engine import SAEResult

__all__ = [
    "GateCheck",
    "Overrides",
    "SAEEntry",
    "Session",
    "SuiteRun",
    "check_suite",
    "entries_of",
    "group_key",
    "merge_runs",
    "run_suites",
]


@dataclass(frozen=True)
class SAEEntry:
    """One SAE to evaluate: a suite entry, or one match of a release regex."""

    suite_path: Path
    """The suite file it belongs to."""
    spec: SAESpec
    """The ``saes:`` entry it came from."""
    unique_id: str
    """``spec.id``, or ``spec.id/<release sae_id>`` for entries expanded from a regex."""
    release_sae_id: str | None = None
    """The exact SAE Lens id inside the release (release entries only)."""

    @property
    def gates(self) -> tuple[Gate, ...]:
        return self.spec.gates


@dataclass(frozen=True)
class GateCheck:
    """One gate of one SAE, checked (or not, when its SAE failed to evaluate)."""

    suite_path: Path
    """The suite file."""
    sae_id: str
    """The SAE's unique id."""
    gate: Gate
    """The gate as written."""
    result: GateResult
    """The outcome, with the reviewer's one-line message."""

    @property
    def passed(self) -> bool:
        return self.result.passed

    @property
    def message(self) -> str:
        """``file:line: [sae] metric = value, needs ... (short by ...)``."""
        where = f"{self.suite_path}:{self.gate.line}" if self.gate.line else str(self.suite_path)
        return f"{where}: [{self.sae_id}] {self.result.message}"


@dataclass
class SuiteRun:
    """Everything one suite produced in a run."""

    suite: Suite
    """The suite as loaded."""
    entries: list[SAEEntry]
    """The SAEs that were evaluated (after selection and regex expansion)."""
    results: dict[str, SAEResult]
    """Engine results by unique SAE id."""
    checks: list[GateCheck]
    """Gate outcomes, in file order."""
    eval_cfg: dict[str, Any]
    """Settings and data description, as written to the outputs."""
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per SAE id: versions, device, content hashes of SAE weights, tokens and model."""
    sae_cfgs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per SAE id: the SAE's config as a plain dict."""
    notes: list[str] = field(default_factory=list)
    """Human-readable notes, e.g. that the baseline was recorded on other weights or tokens
    (see :func:`pytest_saeval.provenance.provenance_notes`)."""
    unchecked: list[tuple[str, Gate]] = field(default_factory=list)
    """``(sae id, gate)`` pairs left unchecked because the baseline has no value for them yet
    (only when :meth:`Session.run` is called with ``baseline_missing_ok=True``)."""
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    """Per SAE id: 95% bootstrap intervals over sequences of the token-mean metrics and their ratios
    (see :mod:`pytest_saeval.bootstrap`); shown next to values in messages and reports."""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def entries_of(suite: Suite, selected: Callable[[str], bool] | None = None) -> list[SAEEntry]:
    """The SAE entries of ``suite`` (release regexes expanded through SAE Lens's directory; no download).

    ``selected(unique_id)`` filters entries (e.g. by pytest's ``-k``).
    """
    out: list[SAEEntry] = []
    for i, spec in enumerate(suite.saes):
        if spec.release is not None:
            from pytest_saeval.sources.saes import expand_sae_ids

            assert spec.sae_id is not None
            try:
                ids = expand_sae_ids(spec.release, spec.sae_id)
            except SaevalError as e:
                raise e.located(file=str(suite.path), line=spec.line, key=f"saes[{i}].sae_id") from e
            exact = len(ids) == 1 and ids[0] == spec.sae_id
            for rid in ids:
                uid = spec.id if exact else f"{spec.id}/{rid}"
                out.append(SAEEntry(suite.path, spec, uid, rid))
        else:
            out.append(SAEEntry(suite.path, spec, spec.id))
    if selected is not None:
        out = [e for e in out if selected(e.unique_id)]
    return out


@dataclass(frozen=True)
class Overrides:
    """Objects used instead of what the suites would load (the pytest fixtures' conftest overrides)."""

    model: Any = None
    """A loaded model, used instead of every suite's ``model:``."""
    saes: Mapping[str, Any] | None = None
    """SAEs by unique id, used instead of the suites' ``saes:`` sources."""
    tokens: Any = None
    """A token array ``[n, context_size]``, used instead of every suite's ``data:`` source."""

    def __post_init__(self) -> None:
        if self.saes is not None:
            if not isinstance(self.saes, Mapping):
                from pytest_saeval.errors import InputError

                raise InputError(
                    f"the SAEs override must map SAE ids to SAEs, got {type(self.saes).__name__}",
                    fix="return a dict like {'layer1-topk': sae} from the saeval_saes fixture",
                    key="saeval_saes",
                )
            object.__setattr__(self, "saes", dict(self.saes))

    @property
    def empty(self) -> bool:
        """True when nothing is overridden."""
        return self.model is None and self.saes is None and self.tokens is None


def group_key(suite: Suite) -> str:
    """Which suites one fused pass can serve: same model source, token source and batch settings.

    A plain string (pure Python, no loading), so that a pytest-xdist scheduler can keep every SAE
    of a group on one worker: the group's model is then loaded, and its forward passes run, once.
    """
    m, d = suite.model, suite.data
    parts = (
        "model", m.name, str(m.path) if m.path else None, m.factory, m.device, m.dtype,
        str(suite.path.absolute().parent) if m.factory else None,
        "data", str(d.tokens) if d.tokens else None, repr(d.dataset), d.context_size,
        repr(d.to_settings()),
    )
    return "|".join("" if p is None else str(p) for p in parts)


def merge_runs(runs: Iterable[SuiteRun]) -> list[SuiteRun]:
    """Merge partial runs of the same suite file (e.g. from several workers) into one per suite.

    Suites are ordered by path; SAEs and gates follow the suite file's order, so the merged result
    does not depend on which process evaluated what.
    """
    by_path: dict[str, list[SuiteRun]] = {}
    for run in runs:
        by_path.setdefault(str(run.suite.path), []).append(run)
    merged: list[SuiteRun] = []
    for path in sorted(by_path):
        parts = by_path[path]
        suite = parts[0].suite
        order = {spec.id: i for i, spec in enumerate(suite.saes)}
        entries: dict[str, SAEEntry] = {}
        checks: dict[tuple[str, str], GateCheck] = {}
        unchecked: dict[tuple[str, str], tuple[str, Gate]] = {}
        out = SuiteRun(suite=suite, entries=[], results={}, checks=[], eval_cfg=dict(parts[0].eval_cfg))
        for part in parts:
            for entry in part.entries:
                entries.setdefault(entry.unique_id, entry)
            out.results.update(part.results)
            out.provenance.update(part.provenance)
            out.sae_cfgs.update(part.sae_cfgs)
            out.intervals.update(part.intervals)
            for check in part.checks:
                checks.setdefault((check.sae_id, check.gate.metric), check)
            for uid, gate in part.unchecked:
                unchecked.setdefault((uid, gate.metric), (uid, gate))
            out.notes.extend(n for n in part.notes if n not in out.notes)

        def entry_rank(uid: str) -> tuple[int, str]:
            e = entries.get(uid)
            return (order.get(e.spec.id, len(order)) if e else len(order), uid)

        def gate_rank(uid: str, metric: str) -> tuple[tuple[int, str], int]:
            e = entries.get(uid)
            metrics = e.spec.metrics if e else ()
            return (entry_rank(uid), metrics.index(metric) if metric in metrics else len(metrics))

        out.entries = sorted(entries.values(), key=lambda e: entry_rank(e.unique_id))
        out.checks = [checks[k] for k in sorted(checks, key=lambda k: gate_rank(*k))]
        out.unchecked = [unchecked[k] for k in sorted(unchecked, key=lambda k: gate_rank(*k))]
        merged.append(out)
    return merged


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _located(e: SaevalError, suite: Suite, line: int | None, key: str) -> SaevalError:
    return e.located(file=str(suite.path), line=line, key=key)


class Session:
    """Loads and evaluates suites; memoizes models, tokens and SAEs across suites.

    ``device`` overrides every suite's ``model.device``; ``auto_device`` is what ``auto`` (and a
    plain ``cuda``, when it names a GPU itself) means, e.g. one GPU per pytest-xdist worker.
    ``model_override`` / ``saes_override`` / ``tokens_override`` replace what every suite would load;
    :meth:`run` also takes :class:`Overrides` per call (the pytest fixtures use these).

    Every result is kept: asking again for an SAE already evaluated on the same model object, token
    array and settings returns the kept result instead of evaluating it again.
    """

    def __init__(
        self,
        *,
        device: str | None = None,
        progress: bool = False,
        cache_dir: str | Path | None = None,
        use_cache: bool = False,
        model_override: Any = None,
        saes_override: Mapping[str, Any] | None = None,
        tokens_override: Any = None,
        auto_device: str | None = None,
    ) -> None:
        self.device = device
        self.auto_device = auto_device
        self.progress = progress
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.use_cache = use_cache
        self.model_override = model_override
        self.saes_override = dict(saes_override) if saes_override is not None else None
        self.tokens_override = tokens_override
        self._models: dict[tuple[Any, ...], Any] = {}
        self._tokens: dict[tuple[Any, ...], torch.Tensor] = {}
        self._saes: dict[tuple[Any, ...], list[tuple[str | None, Any]]] = {}
        self._done: dict[tuple[int, int, Any, int], tuple[Any, Any, Any, SAEResult]] = {}
        self._token_refs: list[Any] = []
        self.evaluations = 0
        """How many SAEs this session has evaluated (tests use it to prove exactly-once)."""

    # -- loading --------------------------------------------------------------------------------
    def _overrides(self, overrides: Overrides | None) -> Overrides:
        base = Overrides(self.model_override, self.saes_override, self.tokens_override)
        if overrides is None:
            return base
        return Overrides(
            overrides.model if overrides.model is not None else base.model,
            overrides.saes if overrides.saes is not None else base.saes,
            overrides.tokens if overrides.tokens is not None else base.tokens,
        )

    def device_for(self, suite: Suite) -> str:
        """The device the suite's model is loaded on: ``device``, else ``auto_device`` for ``auto``, else the suite's."""
        wanted = suite.model.device
        if self.device:
            return self.device
        if self.auto_device and (wanted == "auto" or (wanted == "cuda" and self.auto_device.startswith("cuda"))):
            return self.auto_device
        return wanted

    def _model_key(self, suite: Suite, overrides: Overrides | None = None) -> tuple[Any, ...]:
        ov = self._overrides(overrides)
        if ov.model is not None:
            return ("model-override", id(ov.model))
        m = suite.model
        return ("model", m.name, str(m.path) if m.path else None, m.factory,
                self.device_for(suite), m.dtype, str(suite.path.absolute().parent) if m.factory else None)

    def model(self, suite: Suite, overrides: Overrides | None = None) -> Any:
        """The suite's model, loaded once per distinct model spec (or the override)."""
        ov = self._overrides(overrides)
        if ov.model is not None:
            return ov.model
        key = self._model_key(suite)
        if key not in self._models:
            from pytest_saeval.sources.models import load_model, resolve_device

            m = suite.model
            field_name = "name" if m.name else "path" if m.path else "factory"
            try:
                resolve_device(self.device_for(suite))  # a device problem is located at model.device
            except SaevalError as e:
                raise _located(e, suite, m.line_of("device") if not self.device else m.line,
                               "model.device" if not self.device else "device") from e
            try:
                self._models[key] = load_model(
                    name=m.name, path=m.path, factory=m.factory, device=self.device_for(suite), dtype=m.dtype,
                    base_dir=suite.path.parent,
                )
            except SaevalError as e:
                raise _located(e, suite, m.line_of(field_name), f"model.{field_name}") from e
        return self._models[key]

    def tokens(self, suite: Suite, model: Any, overrides: Overrides | None = None) -> torch.Tensor:
        """The suite's token rows ``[n, context_size]``, checked against the model's vocabulary."""
        ov = self._overrides(overrides)
        if ov.tokens is not None:
            for loaded in self._tokens.values():
                if loaded is ov.tokens:  # already one of ours (e.g. the saeval_tokens fixture's value)
                    return loaded
            key = ("tokens-override", id(ov.tokens))
            if key not in self._tokens:
                from pytest_saeval.engine import _as_token_tensor

                self._tokens[key] = _as_token_tensor(ov.tokens)
                self._token_refs.append(ov.tokens)
            return self._tokens[key]
        d = suite.data
        key = ("tokens", str(d.tokens) if d.tokens else None, d.dataset, d.context_size,
               d.to_settings().rows_needed, id(model) if d.dataset else None)
        if key not in self._tokens:
            from pytest_saeval.sources.data import check_tokens, load_token_file, tokens_from_dataset

            settings = d.to_settings()
            try:
                if d.tokens is not None:
                    where = "data.tokens"
                    toks = load_token_file(d.tokens, context_size=d.context_size, base_dir=suite.path.parent)
                else:
                    ds = d.dataset
                    assert ds is not None
                    where = "data.dataset"
                    toks = tokens_from_dataset(
                        path=ds.path, model=model, context_size=d.context_size, n_rows=settings.rows_needed,
                        split=ds.split, column=ds.column, streaming=ds.streaming, name=ds.name,
                        data_files=dict(ds.data_files) if ds.data_files else None, base_dir=suite.path.parent,
                    )
                vocab = getattr(getattr(model, "cfg", None), "d_vocab", None)
                if vocab is not None:
                    check_tokens(toks, int(vocab), source=str(d.tokens or d.dataset.path))  # type: ignore[union-attr]
            except SaevalError as e:
                raise _located(e, suite, d.line_of(where.removeprefix("data.")), where) from e
            self._tokens[key] = toks
        return self._tokens[key]

    def saes(
        self, suite: Suite, entries: Iterable[SAEEntry], device: str, overrides: Overrides | None = None
    ) -> dict[str, Any]:
        """The loaded SAEs of ``entries`` by unique id (each spec loaded once), or the overrides."""
        ov = self._overrides(overrides)
        out: dict[str, Any] = {}
        for entry in entries:
            if ov.saes is not None:
                if entry.unique_id not in ov.saes:
                    raise SaevalError(
                        f"the saeval_saes fixture has no SAE {entry.unique_id!r}",
                        fix="return a mapping with an entry for every SAE id of the suite",
                        file=str(suite.path), line=entry.spec.line, key="saes",
                    )
                out[entry.unique_id] = ov.saes[entry.unique_id]
                continue
            spec = entry.spec
            idx = suite.saes.index(spec)
            key = ("sae", str(suite.path.absolute()), spec.id, device, entry.release_sae_id)
            if key not in self._saes:
                from pytest_saeval.sources.saes import load_saes

                field_name = "path" if spec.path else "release" if spec.release else "factory"
                try:
                    self._saes[key] = load_saes(
                        path=spec.path, release=spec.release,
                        sae_id=entry.release_sae_id if spec.release else None,
                        factory=spec.factory, device=device, base_dir=suite.path.parent,
                    )
                except SaevalError as e:
                    raise _located(e, suite, spec.line, f"saes[{idx}].{field_name}") from e
            loaded = self._saes[key]
            out[entry.unique_id] = loaded[0][1]
        return out

    # -- running --------------------------------------------------------------------------------
    def run(
        self,
        suites: Iterable[Suite],
        selected: Callable[[Suite, str], bool] | None = None,
        *,
        overrides: Overrides | None = None,
        baseline_missing_ok: bool = False,
    ) -> list[SuiteRun]:
        """Evaluate every selected SAE of every suite once and check its gates.

        ``selected(suite, unique_id)`` picks SAEs (all when ``None``). ``overrides`` replace what the
        suites would load, for this call. With ``baseline_missing_ok`` a missing baseline file or
        value leaves its gates unchecked (:attr:`SuiteRun.unchecked`) instead of raising
        :class:`~pytest_saeval.errors.BaselineError` (for runs that record a new baseline).
        """
        from pytest_saeval.engine import model_device

        suites = list(suites)
        plans = []
        for suite in suites:
            sel = (lambda uid, s=suite: selected(s, uid)) if selected is not None else None
            entries = entries_of(suite, sel)
            if entries:
                plans.append((suite, entries))

        # Baseline files are read before any evaluation: a bad one costs no pass.
        baselines = {suite.path: self._baseline(suite, missing_ok=baseline_missing_ok) for suite, _ in plans}

        # Group suites sharing model, tokens and settings: one fused pass serves them all.
        ov = self._overrides(overrides)
        runs: list[SuiteRun] = []
        groups: dict[tuple[Any, ...], list[tuple[Suite, list[SAEEntry]]]] = {}
        for suite, entries in plans:
            tokens_key = ("override", id(ov.tokens)) if ov.tokens is not None else (str(suite.data.tokens), suite.data.dataset)
            gkey = (self._model_key(suite, ov), tokens_key, suite.data.context_size, suite.data.to_settings())
            groups.setdefault(gkey, []).append((suite, entries))

        results_by_suite: dict[Path, dict[str, SAEResult]] = {}
        context: dict[Path, dict[str, Any]] = {}
        for members in groups.values():
            first_suite = members[0][0]
            model = self.model(first_suite, ov)
            device = str(model_device(model))
            tokens = self.tokens(first_suite, model, ov)
            settings = first_suite.data.to_settings()
            fused: dict[str, Any] = {}
            owner: dict[str, tuple[Suite, str]] = {}
            for suite, entries in members:
                loaded = self.saes(suite, entries, device, ov)
                for uid, sae in loaded.items():
                    fused_id = f"{suite.path}::{uid}"
                    fused[fused_id] = sae
                    owner[fused_id] = (suite, uid)
            out = self._evaluate_once(model, fused, tokens, settings, owner, first_suite)
            for fused_id, res in out.items():
                suite, uid = owner[fused_id]
                results_by_suite.setdefault(suite.path, {})[uid] = res
            tok_hash = _tensor_hash(tokens)
            for suite, _ in members:
                context[suite.path] = {"model": model, "tokens_hash": tok_hash, "device": device,
                                       "saes": {owner[f][1]: fused[f] for f in owner if owner[f][0] is suite},
                                       "context_size": int(tokens.shape[1])}

        for suite, entries in plans:
            ctx = context[suite.path]
            results = results_by_suite.get(suite.path, {})
            baseline = baselines[suite.path]
            unchecked: list[tuple[str, Gate]] = []
            intervals = {uid: result_intervals(res) for uid, res in results.items()}
            checks = check_suite(suite, entries, results, baseline,
                                 unchecked=unchecked if baseline_missing_ok else None, intervals=intervals)
            provenance = {uid: self._provenance(ctx, sae) for uid, sae in ctx["saes"].items()}
            sae_cfgs = {uid: _sae_cfg_dict(sae) for uid, sae in ctx["saes"].items()}
            notes = provenance_notes(suite.path, provenance, baseline)
            runs.append(SuiteRun(suite=suite, entries=entries, results=results, checks=checks,
                                 eval_cfg=_eval_cfg(suite, ctx["context_size"]), provenance=provenance,
                                 sae_cfgs=sae_cfgs, notes=notes, unchecked=unchecked, intervals=intervals))
        return runs

    def _evaluate_once(
        self, model: Any, fused: dict[str, Any], tokens: Any, settings: Any,
        owner: Mapping[str, tuple[Suite, str]], first_suite: Suite,
    ) -> dict[str, SAEResult]:
        """Results for ``fused``: kept ones reused, the rest evaluated in one fused pass."""
        import dataclasses

        def key(sae: Any) -> tuple[int, int, Any, int]:
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
                fresh = self._evaluate(model, todo, tokens, settings)
            except SaevalError as e:
                raise _relocate(e, owner, first_suite) from e
            self.evaluations += len(todo)
            for fused_id, res in fresh.items():
                # The objects are kept with the result so that their ids stay theirs.
                self._done[key(todo[fused_id])] = (model, tokens, todo[fused_id], res)
                out[fused_id] = res
        return {f: out[f] for f in fused}

    def _evaluate(self, model: Any, saes: dict[str, Any], tokens: Any, settings: Any) -> dict[str, SAEResult]:
        """One fused engine pass, through the results cache when ``use_cache`` (and the cache module) is there."""
        if self.use_cache:
            try:
                from pytest_saeval.cache import cached_evaluate
            except ImportError:  # pragma: no cover - a build without the cache module
                pass
            else:
                return cached_evaluate(model, saes, tokens, settings, cache_dir=self.cache_dir, progress=self.progress)
        from pytest_saeval.engine import evaluate

        # scored as with the cache on (through the clean summary), so cache flags never change a number
        return evaluate(model, saes, tokens, settings, progress=self.progress, score_by_summary=True)

    def _baseline(self, suite: Suite, missing_ok: bool = False) -> Baseline | None:
        if suite.baseline is None:
            return None
        try:
            return load_baseline(suite.baseline, missing_ok=missing_ok or not suite.uses_baseline)
        except SaevalError as e:
            raise e.located(file=str(suite.path), line=suite.baseline_line, key="baseline") from e

    def _provenance(self, ctx: dict[str, Any], sae: Any) -> dict[str, Any]:
        import torch

        return {
            "pytest_saeval_version": _version("pytest-saeval"),
            "sae_lens_version": _version("sae-lens"),
            "transformer_lens_version": _version("transformer-lens"),
            "torch_version": str(torch.__version__),
            "python_version": platform.python_version(),
            "device": ctx["device"],
            "sae_weights_sha256": _module_hash(sae),
            "tokens_sha256": ctx["tokens_hash"],
            "model_weights_sha256": _module_hash(ctx["model"]),
        }


def _relocate(e: SaevalError, owner: Mapping[str, tuple[Suite, str]], fallback: Suite) -> SaevalError:
    """Point an engine error about ``saes.<fused id>...`` at the suite entry it concerns."""
    key = e.location.key or ""
    for fused_id, (suite, uid) in owner.items():
        prefix = f"saes.{fused_id}"
        if key == prefix or key.startswith(prefix + "."):
            spec = next(s for s in suite.saes if uid == s.id or uid.startswith(s.id + "/"))
            idx = suite.saes.index(spec)
            rest = key[len(prefix):]
            message = e.message.replace(fused_id, uid)
            return type(e)(message, fix=e.fix, file=str(suite.path), line=spec.line, key=f"saes[{idx}]{rest}")
    data_keys = {"tokens": "data.tokens", "context_size": "data.context_size"}
    if key in data_keys or key in ("batch_size_prompts", "n_reconstruction_batches", "n_sparsity_batches"):
        full_key = data_keys.get(key, f"data.{key}")
        return type(e)(e.message, fix=e.fix, file=str(fallback.path), line=fallback.data.line_of(full_key.removeprefix("data.")),
                       key=full_key)
    return e.located(file=str(fallback.path))


_HASHES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
"""Content hash per loaded model / SAE object, kept only while the object lives (an ``id()``
key could be reused by a later object and give it a stale hash)."""


def _module_hash(obj: Any) -> str:
    from pytest_saeval.sources.hashing import state_dict_hash

    try:
        return _HASHES[obj]
    except (KeyError, TypeError):
        pass
    digest = state_dict_hash(obj)
    try:
        _HASHES[obj] = digest
    except TypeError:  # not weakly referenceable: hash it again next time
        pass
    return digest


def _tensor_hash(t: Any) -> str:
    from pytest_saeval.sources.hashing import tensor_hash

    return tensor_hash(t)


def _sae_cfg_dict(sae: Any) -> dict[str, Any]:
    cfg = getattr(sae, "cfg", None)
    to_dict = getattr(cfg, "to_dict", None)
    if callable(to_dict):
        try:
            return _jsonable(to_dict())
        except Exception:  # noqa: BLE001 - a config that cannot be serialised is described below
            pass
    out: dict[str, Any] = {}
    for name in ("d_in", "d_sae", "architecture", "dtype", "device"):
        value = getattr(cfg, name, None)
        out[name] = value() if callable(value) else value
    meta = getattr(cfg, "metadata", None)
    out["hook_name"] = getattr(meta, "hook_name", None)
    out["hook_head_index"] = getattr(meta, "hook_head_index", None)
    return _jsonable(out)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    return str(obj)


def _eval_cfg(suite: Suite, context_size: int) -> dict[str, Any]:
    d = suite.data
    s = d.to_settings()
    dataset = str(d.tokens) if d.tokens is not None else (d.dataset.path if d.dataset else None)
    return {
        "suite": str(suite.path),
        "dataset": dataset,
        "context_size": context_size,
        "batch_size_prompts": s.batch_size_prompts,
        "n_eval_reconstruction_batches": s.n_reconstruction_batches,
        "n_eval_sparsity_variance_batches": s.n_sparsity_batches,
        "exclude_special_tokens": s.exclude_special_tokens if isinstance(s.exclude_special_tokens, bool)
        else list(s.exclude_special_tokens),
        "library_version": _version("sae-lens"),
        "saeval_version": _version("pytest-saeval"),
    }


def result_intervals(result: SAEResult) -> dict[str, tuple[float, float]]:
    """95% bootstrap intervals of ``result`` (fixed seed); ``{}`` when it kept no per-sequence sums."""
    from pytest_saeval.bootstrap import intervals

    return intervals(result)


def check_suite(suite: Suite, entries: list[SAEEntry], results: Mapping[str, SAEResult],
                baseline: Baseline | None, *, unchecked: list[tuple[str, Gate]] | None = None,
                intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None = None) -> list[GateCheck]:
    """Check every gate of every evaluated entry; baseline-relative gates read ``baseline``.

    When ``unchecked`` is a list, a baseline-relative gate without a baseline value is appended to
    it as ``(sae id, gate)`` instead of raising :class:`~pytest_saeval.errors.BaselineError`.
    ``intervals`` (per SAE id) are shown next to the values in the gates' messages.
    """
    checks: list[GateCheck] = []
    for entry in entries:
        result = results.get(entry.unique_id)
        if result is None:
            continue
        for gate in entry.gates:
            if unchecked is not None and gate.uses_baseline and (
                baseline is None or baseline.value(entry.unique_id, gate.metric) is None
            ):
                unchecked.append((entry.unique_id, gate))
                continue
            found = (intervals or {}).get(entry.unique_id)
            checks.append(check_one(suite, entry.unique_id, gate, result.metrics, baseline, intervals=found))
    return checks


def check_one(suite: Suite, sae_id: str, gate: Gate, metrics: Mapping[str, float],
              baseline: Baseline | None, *, intervals: Mapping[str, tuple[float, float]] | None = None) -> GateCheck:
    """Check one gate; a metric the engine did not produce is NaN (and so fails, never passes)."""
    value = metrics.get(gate.metric, math.nan)
    base = baseline.value(sae_id, gate.metric) if (baseline is not None and gate.uses_baseline) else None
    if gate.uses_baseline and base is None:
        from pytest_saeval.errors import BaselineError

        raise BaselineError(
            f"the baseline file has no value of {gate.metric} for SAE {sae_id!r}",
            fix="record it with `pytest --saeval-update-baseline` or `saeval run --update-baseline`",
            file=str(suite.path), line=gate.line, key=gate.key,
        )
    from pytest_saeval.bootstrap import gate_interval

    interval = gate_interval(intervals, gate.metric)
    mode = "interval" if (suite.gate_mode == "interval" and interval is not None) else "point"
    return GateCheck(suite.path, sae_id, gate, check_gate(gate, value, base, interval=interval, mode=mode))


def run_suites(paths: Iterable[str | Path], **session_options: Any) -> list[SuiteRun]:
    """Load the suite files at ``paths`` and run them in one :class:`Session`."""
    from pytest_saeval.spec.loader import load_suites

    return Session(**session_options).run(load_suites(paths))
