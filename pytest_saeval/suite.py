"""Suite files (threshold YAML) -> frozen dataclasses, keeping YAML line numbers for messages.

One file = one suite = one model, one token set, one or more SAEs and their gates (DESIGN §1).
Relative paths resolve against the YAML file's folder. Unknown keys, wrong types and unknown
metrics are :class:`SuiteError` s whose message starts with ``file:line:`` and names the key path
(e.g. ``saes[1].gates.l0``) and the fix. Pure Python: no torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from .errors import SuiteError, did_you_mean
from .gates import Gate
from .settings import EvalSettings

__all__ = [
    "DTYPES",
    "DataSpec",
    "DatasetSpec",
    "ModelSpec",
    "SAESpec",
    "Suite",
    "load_suite",
    "load_suites",
]

DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "float64")
"""Model dtypes a suite may ask for."""

_DEVICE_RE = re.compile(r"^(?:auto|cpu|cuda|cuda:\d+)$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_FACTORY_RE = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*$")
_SAE_ID_RE = re.compile(r"^[A-Za-z0-9_.\-/]+$")

_TOP_KEYS = ("model", "data", "baseline", "saes", "defaults", "gate_mode")
_MODEL_KEYS = ("name", "path", "factory", "device", "dtype")
_DATA_KEYS = (
    "tokens",
    "dataset",
    "context_size",
    "batch_size_prompts",
    "n_reconstruction_batches",
    "n_sparsity_batches",
    "exclude_special_tokens",
)
_DATASET_KEYS = ("path", "split", "column", "streaming", "name", "data_files")
_SAE_KEYS = ("id", "path", "release", "sae_id", "factory", "gates")
_DEFAULTS_KEYS = ("gates",)
_COUNT_KEYS = ("context_size", "batch_size_prompts", "n_reconstruction_batches", "n_sparsity_batches")


# --------------------------------------------------------------------------------------------
# value checks shared by the loader and the dataclasses


class _Invalid(Exception):
    """A value problem without a location; the caller turns it into a located SuiteError."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def _kind(value: object) -> str:
    """The YAML-ish name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _check_text(name: str, value: object, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        got = "an empty string" if isinstance(value, str) else f"{_kind(value)} ({value!r})"
        raise _Invalid(f"{name} must be a non-empty string, got {got}", f"write {name}: {example}")
    return value.strip()


def _check_device(value: object) -> str:
    if not isinstance(value, str) or not _DEVICE_RE.match(value.strip()):
        raise _Invalid(f"device must be auto, cpu, cuda or cuda:N, got {value!r}", "use auto, cpu, cuda or cuda:N (e.g. cuda:0)")
    return value.strip()


def _check_dtype(value: object) -> str:
    if not isinstance(value, str) or value.strip() not in DTYPES:
        hint = did_you_mean(value, DTYPES) if isinstance(value, str) else ""
        raise _Invalid(f"unknown dtype {value!r}{hint}", "use one of " + ", ".join(DTYPES))
    return value.strip()


def _check_factory(value: object) -> str:
    text = _check_text("factory", value, "mypkg.module:function")
    if not _FACTORY_RE.match(text):
        raise _Invalid(
            f"factory must be 'module:function', got {text!r}",
            "write the importable module, a colon and the function name, e.g. mypkg.models:load",
        )
    return text


def _check_sae_id(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise _Invalid(f"SAE id must be a string, got {_kind(value)} ({value!r})", f'quote it: id: "{value}"')
    text = _check_text("id", value, "layer1-topk")
    parts = text.split("/")
    if not _SAE_ID_RE.match(text) or any(p in ("", ".", "..") for p in parts):
        raise _Invalid(
            f"SAE id {text!r} may only contain letters, digits, '-', '_', '.' and '/' "
            "(no empty, '.' or '..' parts between slashes)",
            "rename it, e.g. layer1-topk (ids become test ids and file names)",
        )
    return text


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{name} must be a whole number >= 1, got {_kind(value)} ({value!r})", f"set {name} to a whole number such as 10")
    if value < 1:
        raise _Invalid(f"{name} must be >= 1, got {value}", f"set {name} to 1 or more")
    return value


def _check_exclude(value: object) -> bool | tuple[int, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        return tuple(value)
    raise _Invalid(
        f"exclude_special_tokens must be true, false or a list of token ids, got {value!r}",
        "use true (the tokenizer's special tokens), false, or a list of non-negative integers like [0, 50256]",
    )


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"{name} must be true or false, got {value!r}", f"write {name}: true or {name}: false")
    return value


def _raise(e: _Invalid, key: str, line: int | None) -> NoReturn:
    raise SuiteError(e.message, fix=e.fix, line=line, key=key) from None


def _exactly_one(what: str, given: Sequence[str], options: str, line: int | None) -> None:
    if len(given) != 1:
        raise SuiteError(
            f"{what} needs exactly one of {options}, got "
            + (", ".join(given) if given else "none"),
            fix=f"keep exactly one of {options}",
            line=line,
            key=what,
        )


# --------------------------------------------------------------------------------------------
# specs


class _KeyLines:
    """``line_of`` for a spec that keeps its section's ``line`` and the ``key_lines`` under it."""

    line: int | None
    key_lines: tuple[tuple[str, int], ...]

    def line_of(self, key: str) -> int | None:
        """The line of ``key`` in the section, else the section's own line."""
        return dict(self.key_lines).get(key, self.line)


@dataclass(frozen=True)
class ModelSpec(_KeyLines):
    """Which language model to load and how (exactly one of ``name`` / ``path`` / ``factory``)."""

    name: str | None = None
    """A TransformerLens pretrained name, e.g. ``gpt2`` (needs the hub or its cache)."""
    path: Path | None = None
    """A local Hugging Face model folder, loaded offline (absolute after loading a suite)."""
    factory: str | None = None
    """``"module:function"`` returning a model; called with no arguments."""
    device: str = "auto"
    """``auto`` (cuda when available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``."""
    dtype: str = "float32"
    """One of :data:`DTYPES`."""
    line: int | None = None
    """Line of the ``model:`` key in the suite file."""
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)
    """``(key, line)`` of the keys under ``model:`` (errors about one key point at its own line)."""

    def __post_init__(self) -> None:
        given = [k for k in ("name", "path", "factory") if getattr(self, k) is not None]
        _exactly_one("model", given, "name, path or factory", self.line)
        for key, check in (("device", _check_device), ("dtype", _check_dtype)):
            try:
                object.__setattr__(self, key, check(getattr(self, key)))
            except _Invalid as e:
                _raise(e, f"model.{key}", self.line)
        try:
            if self.name is not None:
                object.__setattr__(self, "name", _check_text("name", self.name, "gpt2"))
            if self.factory is not None:
                object.__setattr__(self, "factory", _check_factory(self.factory))
        except _Invalid as e:
            _raise(e, f"model.{given[0]}", self.line)
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))

    @property
    def kind(self) -> Literal["name", "path", "factory"]:
        """Which source field is set."""
        if self.name is not None:
            return "name"
        return "path" if self.path is not None else "factory"


@dataclass(frozen=True)
class DatasetSpec:
    """A text dataset to tokenize (``datasets.load_dataset`` arguments)."""

    path: str
    """Hub name (``Skylion007/openwebtext``), builder (``json``) or local folder (absolute after loading)."""
    split: str = "train"
    """Split to read."""
    column: str | None = None
    """Column to read; by default the first of ``tokens``, ``input_ids``, ``text``, ``problem`` (SAE Lens's order).
    A column of token-id lists is used row by row; text is tokenized."""
    streaming: bool = True
    """Stream rows instead of downloading the whole dataset first."""
    name: str | None = None
    """Dataset configuration name, if it has several."""
    data_files: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """``(split, files)`` pairs; a plain file or list in the suite is stored under ``train``."""
    line: int | None = None
    """Line of the ``dataset:`` key in the suite file."""

    def __post_init__(self) -> None:
        try:
            _check_text("path", self.path, "Skylion007/openwebtext")
            _check_text("split", self.split, "train")
            if self.column is not None:
                _check_text("column", self.column, "text")
            _check_bool("streaming", self.streaming)
            if self.name is not None:
                _check_text("name", self.name, "wikitext-2-raw-v1")
        except _Invalid as e:
            _raise(e, "data.dataset", self.line)
        object.__setattr__(self, "data_files", tuple((s, tuple(f)) for s, f in self.data_files))

    def load_dataset_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``datasets.load_dataset``."""
        kwargs: dict[str, Any] = {"path": self.path, "split": self.split, "streaming": self.streaming}
        if self.name is not None:
            kwargs["name"] = self.name
        if self.data_files:
            kwargs["data_files"] = {split: list(files) for split, files in self.data_files}
        return kwargs


@dataclass(frozen=True)
class DataSpec(_KeyLines):
    """The evaluation tokens (exactly one of ``tokens`` / ``dataset``) and how many batches to use."""

    tokens: Path | None = None
    """An int array ``[n_sequences, context_size]`` in a .npy, .pt or .safetensors file."""
    dataset: DatasetSpec | None = None
    """A text dataset tokenized with the model's tokenizer."""
    context_size: int = 128
    """Tokens per sequence."""
    batch_size_prompts: int = 16
    """Sequences per batch."""
    n_reconstruction_batches: int = 10
    """Batches for the CE / KL metrics."""
    n_sparsity_batches: int = 10
    """Batches for the sparsity / variance / feature metrics."""
    exclude_special_tokens: bool | tuple[int, ...] = True
    """``True``: the tokenizer's special tokens; ``False``: none; a tuple: exactly these ids."""
    line: int | None = None
    """Line of the ``data:`` key in the suite file."""
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)
    """``(key, line)`` of the keys under ``data:`` (errors about one key point at its own line)."""

    def __post_init__(self) -> None:
        given = [k for k in ("tokens", "dataset") if getattr(self, k) is not None]
        _exactly_one("data", given, "tokens or dataset", self.line)
        if self.tokens is not None:
            object.__setattr__(self, "tokens", Path(self.tokens))
        for key in _COUNT_KEYS:
            try:
                _check_count(key, getattr(self, key))
            except _Invalid as e:
                _raise(e, f"data.{key}", self.line)
        try:
            object.__setattr__(self, "exclude_special_tokens", _check_exclude(self.exclude_special_tokens))
        except _Invalid as e:
            _raise(e, "data.exclude_special_tokens", self.line)

    @property
    def kind(self) -> Literal["tokens", "dataset"]:
        """Which source field is set."""
        return "tokens" if self.tokens is not None else "dataset"

    @property
    def rows_needed(self) -> int:
        """Sequences the metric pass reads (both families start at row 0)."""
        return self.batch_size_prompts * max(self.n_reconstruction_batches, self.n_sparsity_batches)

    def to_settings(self) -> EvalSettings:
        """The engine settings these values describe."""
        return EvalSettings(
            batch_size_prompts=self.batch_size_prompts,
            n_reconstruction_batches=self.n_reconstruction_batches,
            n_sparsity_batches=self.n_sparsity_batches,
            exclude_special_tokens=self.exclude_special_tokens,
        )


@dataclass(frozen=True)
class SAESpec:
    """One SAE entry: where it comes from (exactly one of path / release+sae_id / factory) and its gates."""

    id: str
    """Unique within the suite; letters, digits, ``-``, ``_``, ``.`` and ``/`` (used in test ids and file names)."""
    path: Path | None = None
    """A local SAE Lens folder (absolute after loading a suite)."""
    release: str | None = None
    """An SAE Lens pretrained release (with ``sae_id``)."""
    sae_id: str | None = None
    """The SAE id inside ``release``: an exact id or a regex (one SAE entry per match)."""
    factory: str | None = None
    """``"module:function"`` returning an SAE Lens SAE (or an object with the same encode/decode/cfg)."""
    gates: tuple[Gate, ...] = ()
    """Suite defaults merged with the SAE's own gates (its own entry wins per metric)."""
    line: int | None = None
    """Line of this entry in the ``saes:`` list."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "id", _check_sae_id(self.id))
        except _Invalid as e:
            _raise(e, "saes.id", self.line)
        key = f"saes[{self.id}]"
        if (self.release is None) != (self.sae_id is None):
            have, missing = ("release", "sae_id") if self.sae_id is None else ("sae_id", "release")
            raise SuiteError(f"'{have}' needs '{missing}' as well", fix=f"add {missing}: next to {have}:", line=self.line, key=key)
        given = [k for k, v in (("path", self.path), ("release", self.release), ("factory", self.factory)) if v is not None]
        if len(given) != 1:
            names = [g if g != "release" else "release + sae_id" for g in given]
            raise SuiteError(
                "an SAE needs exactly one of path, release + sae_id or factory, got " + (", ".join(names) or "none"),
                fix="keep exactly one of path, release + sae_id or factory",
                line=self.line,
                key=key,
            )
        try:
            if self.release is not None:
                object.__setattr__(self, "release", _check_text("release", self.release, "gpt2-small-res-jb"))
                object.__setattr__(self, "sae_id", _check_text("sae_id", self.sae_id, "blocks.8.hook_resid_pre"))
            if self.factory is not None:
                object.__setattr__(self, "factory", _check_factory(self.factory))
        except _Invalid as e:
            _raise(e, key, self.line)
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))
        gates = tuple(self.gates)
        seen: set[str] = set()
        for gate in gates:
            if not isinstance(gate, Gate):
                raise TypeError(f"SAESpec.gates must hold Gate objects, got {type(gate).__name__}")
            if gate.metric in seen:
                raise SuiteError(f"two gates on {gate.metric}", fix="merge them into one list", line=gate.line, key=key)
            seen.add(gate.metric)
        object.__setattr__(self, "gates", gates)

    @property
    def kind(self) -> Literal["path", "release", "factory"]:
        """Which source field is set."""
        if self.path is not None:
            return "path"
        return "release" if self.release is not None else "factory"

    @property
    def metrics(self) -> tuple[str, ...]:
        """The gated metric names, in gate order."""
        return tuple(g.metric for g in self.gates)

    def gate(self, metric: str) -> Gate | None:
        """The gate on ``metric``, or ``None``."""
        return next((g for g in self.gates if g.metric == metric), None)


@dataclass(frozen=True)
class Suite:
    """One suite file: one model, one token set, its SAEs and their gates."""

    path: Path
    """The suite file, as given to :func:`load_suite`."""
    model: ModelSpec
    """The language model."""
    data: DataSpec
    """The evaluation tokens and batch counts."""
    saes: tuple[SAESpec, ...]
    """The SAEs, in file order (at least one; ids unique)."""
    baseline: Path | None = None
    """The baseline file ``baseline`` in gates refers to (absolute after loading), if any."""
    default_gates: tuple[Gate, ...] = ()
    """``defaults.gates``: already merged into every SAE's gates; kept for reporting."""
    baseline_line: int | None = None
    """Line of the ``baseline:`` key, for messages about the baseline file."""
    gate_mode: str = "point"
    """``point``: a gate checks the measured value. ``interval``: a gate fails only when the whole 95%
    bootstrap interval is on the wrong side (metrics without an interval are checked by value)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.gate_mode not in ("point", "interval"):
            raise SuiteError(f"gate_mode must be point or interval, got {self.gate_mode!r}",
                             fix="write gate_mode: point (the default) or gate_mode: interval",
                             file=str(self.path), key="gate_mode")
        saes = tuple(self.saes)
        if not saes:
            raise SuiteError("saes is empty", fix="add at least one SAE entry", file=str(self.path), key="saes")
        ids = [s.id for s in saes]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise SuiteError(f"duplicate SAE id {dupes[0]!r}", fix="give every SAE in the suite a unique id", file=str(self.path), key="saes")
        object.__setattr__(self, "saes", saes)
        object.__setattr__(self, "default_gates", tuple(self.default_gates))
        if self.baseline is not None:
            object.__setattr__(self, "baseline", Path(self.baseline))

    @property
    def sae_ids(self) -> tuple[str, ...]:
        """SAE ids in file order."""
        return tuple(s.id for s in self.saes)

    @property
    def uses_baseline(self) -> bool:
        """True when any gate refers to the baseline."""
        return any(g.uses_baseline for s in self.saes for g in s.gates)

    def sae(self, sae_id: str) -> SAESpec:
        """The SAE entry with this id; :class:`SuiteError` (with a "did you mean") when there is none."""
        for spec in self.saes:
            if spec.id == sae_id:
                return spec
        raise SuiteError(
            f"no SAE with id {sae_id!r} in this suite{did_you_mean(sae_id, self.sae_ids)}",
            fix="use one of " + ", ".join(self.sae_ids),
            file=str(self.path),
        )


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Load and validate one suite file.

    Raises :class:`SuiteError` (``file:line: key: what is wrong. Fix: ...``) for anything that is
    not a valid suite. Referenced files (model, tokens, SAEs, baseline) are not opened here.
    """
    from ._suite_loader import build_suite  # the YAML reader and builder live apart from the specs

    return build_suite(path)


def load_suites(paths: Iterable[str | os.PathLike[str]]) -> list[Suite]:
    """Load several suite files in order; a file named twice is loaded once."""
    seen: set[Path] = set()
    suites = []
    for path in paths:
        key = Path(os.path.normpath(Path(path).absolute()))
        if key in seen:
            continue
        seen.add(key)
        suites.append(load_suite(path))
    return suites
