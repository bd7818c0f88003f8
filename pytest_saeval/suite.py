"""Suite files (threshold YAML) -> frozen dataclasses, keeping YAML line numbers for messages.

One file = one suite = one model, one token set, one or more SAEs and their gates (DESIGN §1).
Relative paths resolve against the YAML file's folder. Unknown keys, wrong types and unknown
metrics are :class:`SuiteError` s whose message starts with ``file:line:`` and names the key path
(e.g. ``saes[1].gates.l0``) and the fix. Pure Python: no torch.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml

from .errors import SuiteError, did_you_mean
from .gates import Gate, parse_gate
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

_TOP_KEYS = ("model", "data", "baseline", "saes", "defaults")
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


@dataclass(frozen=True)
class ModelSpec:
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
    column: str = "text"
    """Column holding the text."""
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
class DataSpec:
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
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


# --------------------------------------------------------------------------------------------
# YAML with line numbers


class _Map(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int = 1
    key_lines: dict[Any, int]


class _Seq(list):  # type: ignore[type-arg]
    """A YAML sequence that remembers its own line and the line of each item."""

    line: int = 1
    item_lines: list[int]


class _YamlProblem(Exception):
    """Raised while constructing YAML; becomes a located SuiteError."""

    def __init__(self, message: str, line: int, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.fix = fix


class _SuiteLoader(yaml.SafeLoader):
    """``yaml.safe_load`` semantics, plus line numbers, duplicate-key errors and no tags."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_map(loader: _SuiteLoader, node: yaml.MappingNode) -> _Map:
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise _YamlProblem("a mapping key must be a plain value, not a list or mapping", line, "use a plain name as the key") from None
        if key in seen:
            raise _YamlProblem(f"duplicate key {key!r} (first on line {seen[key]})", line, "keep one entry per key")
        seen[key] = line
    loader.flatten_mapping(node)  # `<<: *anchor` merges come first, explicit keys then win
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _SuiteLoader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


def _construct_text(loader: _SuiteLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


def _refuse_tag(loader: _SuiteLoader, node: yaml.Node) -> NoReturn:
    tag = str(node.tag)
    if tag.startswith("tag:yaml.org,2002:"):
        tag = "!!" + tag[len("tag:yaml.org,2002:"):]
    raise _YamlProblem(
        f"tags are not allowed: '{tag}'",
        node.start_mark.line + 1,
        "remove the tag; a suite file holds only plain mappings, lists, strings, numbers and booleans",
    )


_SuiteLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_SuiteLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_SuiteLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_text)  # dates stay text
_SuiteLoader.add_constructor("tag:yaml.org,2002:value", _construct_text)
for _tag in ("binary", "set", "omap", "pairs"):
    _SuiteLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)
_SuiteLoader.add_constructor(None, _refuse_tag)  # type: ignore[arg-type]
del _tag

_UNQUOTED_GATE_RE = re.compile(r"(?:^|[:\-\[,])\s*[<>]")


def _read_yaml(path: Path, file: str) -> object:
    """Parse the suite file; every problem becomes a SuiteError located at file:line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SuiteError("suite file not found", fix="check the path (relative paths start at the current folder)", file=file) from None
    except IsADirectoryError:
        raise SuiteError("is a folder, not a suite file", fix="pass a .yaml file", file=file) from None
    except OSError as e:
        raise SuiteError(f"cannot read the suite file: {e.strerror or e}", fix="check the file's permissions", file=file) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SuiteError("the file is not UTF-8 text", fix="save it as UTF-8", file=file, line=line) from e
    loader = _SuiteLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SuiteError(
                "the suite file is empty",
                fix="add the model:, data: and saes: sections (see the suite file format in the README)",
                file=file,
                line=1,
            )
        return loader.construct_document(node)
    except _YamlProblem as e:
        raise SuiteError(e.message, fix=e.fix, file=file, line=e.line) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = e.problem or "syntax error"
        message = f"invalid YAML: {problem}" + (f" ({e.context})" if e.context else "")
        source_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        if "another document" in problem:
            fix = "keep one YAML document per suite file: remove the '---' line or split the file"
        elif _UNQUOTED_GATE_RE.search(source_line):
            fix = 'YAML reads a leading > or < as special: quote gate expressions, e.g. l0: ">= 10"'
        else:
            fix = "fix the YAML syntax on that line (indentation, colons, quotes)"
        raise SuiteError(message, fix=fix, file=file, line=line) from e
    except yaml.YAMLError as e:  # pragma: no cover - reader errors without a mark
        raise SuiteError(f"invalid YAML: {e}", fix="fix the YAML syntax", file=file, line=1) from e
    finally:
        loader.dispose()


# --------------------------------------------------------------------------------------------
# building the suite


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


class _Builder:
    """Turns the parsed YAML into specs, raising located SuiteErrors."""

    def __init__(self, path: Path, file: str) -> None:
        self.path = path
        self.file = file
        self.base_dir = path.absolute().parent

    # -- helpers

    def error(self, message: str, fix: str, line: int | None, key: str | None) -> SuiteError:
        return SuiteError(message, fix=fix, file=self.file, line=line or 1, key=key)

    def fail(self, e: _Invalid, line: int | None, key: str) -> NoReturn:
        raise self.error(e.message, e.fix, line, key) from None

    @staticmethod
    def key_line(mapping: dict[Any, Any], key: object, default: int | None) -> int | None:
        return getattr(mapping, "key_lines", {}).get(key, default)

    def mapping(self, value: object, key: str, line: int | None, example: str) -> dict[Any, Any]:
        if value is None:
            value = _Map()
        if not isinstance(value, dict):
            raise self.error(f"{key} must be a mapping, got {_kind(value)}", f"write {key}: followed by indented lines like {example}", line, key)
        return value

    def check_keys(self, mapping: dict[Any, Any], allowed: Sequence[str], prefix: str, line: int | None) -> None:
        for key in mapping:
            if key in allowed:
                continue
            name = str(key)
            close = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            fix = f"rename it to '{close[0]}'" if close else "use only " + ", ".join(allowed)
            where = f" in {prefix}" if prefix else ""
            raise self.error(f"unknown key '{name}'{where}{hint}", fix, self.key_line(mapping, key, line), _join(prefix, name))

    def resolve(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        if not path.is_absolute():
            path = self.base_dir / path
        return Path(os.path.normpath(path))

    def file_path(self, value: object, key: str, line: int | None, example: str) -> Path:
        try:
            return self.resolve(_check_text(key.rsplit(".", 1)[-1], value, example))
        except _Invalid as e:
            self.fail(e, line, key)

    def check(self, check: Any, value: object, line: int | None, key: str) -> Any:
        try:
            return check(value)
        except _Invalid as e:
            self.fail(e, line, key)

    def exactly_one(
        self, mapping: dict[Any, Any], options: Sequence[str], prefix: str, line: int | None, what: str
    ) -> str:
        given = [k for k in options if k in mapping]
        names = ", ".join(options[:-1]) + f" or {options[-1]}"
        names = names.replace("release", "release + sae_id")
        if not given:
            raise self.error(f"{what} needs one of {names}", f"add one of {names}", line, prefix)
        if len(given) > 1:
            raise self.error(
                f"{what} has both '{given[0]}' and '{given[1]}'",
                f"keep exactly one of {names}",
                self.key_line(mapping, given[1], line),
                _join(prefix, given[1]),
            )
        return given[0]

    # -- sections

    def suite(self, data: object) -> Suite:
        if not isinstance(data, dict):
            line = getattr(data, "line", 1)
            raise self.error(
                f"a suite file must be a mapping with model, data and saes sections, got {_kind(data)}",
                "start the file with model:, data: and saes: keys (see the suite file format in the README)",
                line,
                None,
            )
        self.check_keys(data, _TOP_KEYS, "", 1)
        for required in ("model", "data", "saes"):
            if required not in data:
                raise self.error(
                    f"missing required section '{required}'",
                    f"add a top-level '{required}:' section (see the suite file format in the README)",
                    getattr(data, "line", 1),
                    required,
                )
        line = self.key_line
        model = self.model(data["model"], line(data, "model", 1))
        data_spec = self.data(data["data"], line(data, "data", 1))
        baseline: Path | None = None
        baseline_line = line(data, "baseline", None)
        if data.get("baseline") is not None:
            baseline = self.file_path(data["baseline"], "baseline", baseline_line, "../baselines/demo.json")
        defaults = self.defaults(data.get("defaults"), line(data, "defaults", 1))
        saes = self.saes(data["saes"], line(data, "saes", 1), defaults)
        return Suite(
            path=self.path,
            model=model,
            data=data_spec,
            saes=saes,
            baseline=baseline,
            default_gates=defaults,
            baseline_line=baseline_line,
        )

    def model(self, value: object, line: int | None) -> ModelSpec:
        m = self.mapping(value, "model", line, "path: ../models/tiny")
        self.check_keys(m, _MODEL_KEYS, "model", line)
        source = self.exactly_one(m, ("name", "path", "factory"), "model", line, "model")
        at = self.key_line(m, source, line)
        key = f"model.{source}"
        fields: dict[str, Any] = {}
        if source == "path":
            fields["path"] = self.file_path(m["path"], key, at, "../models/tiny")
        elif source == "name":
            fields["name"] = self.check(lambda v: _check_text("name", v, "gpt2"), m["name"], at, key)
        else:
            fields["factory"] = self.check(_check_factory, m["factory"], at, key)
        if "device" in m:
            fields["device"] = self.check(_check_device, m["device"], self.key_line(m, "device", line), "model.device")
        if "dtype" in m:
            fields["dtype"] = self.check(_check_dtype, m["dtype"], self.key_line(m, "dtype", line), "model.dtype")
        return ModelSpec(line=line, **fields)

    def data(self, value: object, line: int | None) -> DataSpec:
        m = self.mapping(value, "data", line, "tokens: ../data/eval_tokens.npy")
        self.check_keys(m, _DATA_KEYS, "data", line)
        source = self.exactly_one(m, ("tokens", "dataset"), "data", line, "data")
        at = self.key_line(m, source, line)
        fields: dict[str, Any] = {}
        if source == "tokens":
            fields["tokens"] = self.file_path(m["tokens"], "data.tokens", at, "../data/eval_tokens.npy")
        else:
            fields["dataset"] = self.dataset(m["dataset"], at)
        for key in _COUNT_KEYS:
            if key in m:
                fields[key] = self.check(lambda v, k=key: _check_count(k, v), m[key], self.key_line(m, key, line), f"data.{key}")
        if "exclude_special_tokens" in m:
            fields["exclude_special_tokens"] = self.check(
                _check_exclude, m["exclude_special_tokens"], self.key_line(m, "exclude_special_tokens", line), "data.exclude_special_tokens"
            )
        return DataSpec(line=line, **fields)

    def dataset(self, value: object, line: int | None) -> DatasetSpec:
        prefix = "data.dataset"
        if isinstance(value, str):
            raise self.error(
                f"{prefix} must be a mapping, got a string",
                f"write dataset: {{path: {value}, split: train, column: text}}",
                line,
                prefix,
            )
        m = self.mapping(value, prefix, line, "path: Skylion007/openwebtext")
        self.check_keys(m, _DATASET_KEYS, prefix, line)
        if "path" not in m:
            raise self.error(f"{prefix} needs 'path'", "add path: a Hugging Face dataset name, a builder like json, or a local folder", line, prefix)
        fields: dict[str, Any] = {}
        examples = {"path": "Skylion007/openwebtext", "split": "train", "column": "text", "name": "wikitext-2-raw-v1"}
        for key, example in examples.items():
            if key in m:
                at = self.key_line(m, key, line)
                fields[key] = self.check(lambda v, k=key, ex=example: _check_text(k, v, ex), m[key], at, f"{prefix}.{key}")
        if "streaming" in m:
            fields["streaming"] = self.check(lambda v: _check_bool("streaming", v), m["streaming"], self.key_line(m, "streaming", line), f"{prefix}.streaming")
        local = fields["path"]
        if local.startswith((".", "/", "~")) or (self.base_dir / local).exists():
            fields["path"] = str(self.resolve(local))
        if "data_files" in m:
            fields["data_files"] = self.data_files(m["data_files"], self.key_line(m, "data_files", line), f"{prefix}.data_files")
        return DatasetSpec(line=line, **fields)

    def data_files(self, value: object, line: int | None, key: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        def files(v: object, k: str, at: int | None) -> tuple[str, ...]:
            items = [v] if isinstance(v, str) else v
            if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
                raise self.error(
                    f"{k} must be a file, a list of files or a mapping split -> files, got {value!r}",
                    "write e.g. data_files: data/eval.jsonl or data_files: {train: [a.jsonl, b.jsonl]}",
                    at,
                    k,
                )
            return tuple(i if "://" in i else str(self.resolve(i)) for i in items)

        if isinstance(value, dict):
            if not value:
                raise self.error(f"{key} is empty", "list at least one file", line, key)
            return tuple(
                (str(split), files(v, f"{key}.{split}", self.key_line(value, split, line))) for split, v in value.items()
            )
        return (("train", files(value, key, line)),)

    def defaults(self, value: object, line: int | None) -> tuple[Gate, ...]:
        m = self.mapping(value, "defaults", line, "gates: {frac_alive: \">= 0.98\"}")
        self.check_keys(m, _DEFAULTS_KEYS, "defaults", line)
        return self.gates(m.get("gates"), self.key_line(m, "gates", line), "defaults.gates")

    def gates(self, value: object, line: int | None, prefix: str) -> tuple[Gate, ...]:
        m = self.mapping(value, prefix, line, 'explained_variance: ">= 0.8"')
        out = []
        for metric, spec in m.items():
            out.append(
                parse_gate(
                    metric,
                    spec,
                    file=self.file,
                    line=self.key_line(m, metric, line) or 1,
                    key=_join(prefix, metric),
                    item_lines=getattr(spec, "item_lines", None),
                )
            )
        return tuple(out)

    def saes(self, value: object, line: int | None, defaults: tuple[Gate, ...]) -> tuple[SAESpec, ...]:
        if value is None or (isinstance(value, list) and not value):
            raise self.error("saes is empty", "add at least one SAE entry: - id: my-sae, path: ...", line, "saes")
        if not isinstance(value, list):
            raise self.error(
                f"saes must be a list of SAE entries, got {_kind(value)}",
                "start each SAE entry with '- id: ...' under saes:",
                line,
                "saes",
            )
        item_lines = getattr(value, "item_lines", [line] * len(value))
        first_seen: dict[str, tuple[int, int | None]] = {}
        specs = []
        for i, item in enumerate(value):
            spec = self.sae(item, item_lines[i], f"saes[{i}]", defaults)
            if spec.id in first_seen:
                j, other_line = first_seen[spec.id]
                raise self.error(
                    f"duplicate SAE id '{spec.id}' (also saes[{j}] on line {other_line})",
                    "give every SAE in the suite a unique id",
                    self.key_line(item, "id", item_lines[i]),
                    f"saes[{i}].id",
                )
            first_seen[spec.id] = (i, item_lines[i])
            specs.append(spec)
        return tuple(specs)

    def sae(self, value: object, line: int | None, prefix: str, defaults: tuple[Gate, ...]) -> SAESpec:
        if not isinstance(value, dict):
            raise self.error(
                f"{prefix} must be a mapping with id and path (or release + sae_id, or factory), got {_kind(value)}",
                "write - id: my-sae followed by path: ../saes/my-sae",
                line,
                prefix,
            )
        self.check_keys(value, _SAE_KEYS, prefix, line)
        if "id" not in value:
            raise self.error(f"{prefix} has no id", "add id: a short unique name such as layer1-topk", line, prefix)
        sae_id = self.check(_check_sae_id, value["id"], self.key_line(value, "id", line), f"{prefix}.id")
        fields: dict[str, Any] = {}
        if "release" in value or "sae_id" in value:
            for have, need in (("release", "sae_id"), ("sae_id", "release")):
                if have in value and need not in value:
                    raise self.error(
                        f"'{have}' needs '{need}' as well", f"add {need}: next to {have}:", self.key_line(value, have, line), f"{prefix}.{have}"
                    )
        source = self.exactly_one(value, ("path", "release", "factory"), prefix, line, prefix)
        at = self.key_line(value, source, line)
        if source == "path":
            fields["path"] = self.file_path(value["path"], f"{prefix}.path", at, "../saes/my-sae")
        elif source == "release":
            fields["release"] = self.check(lambda v: _check_text("release", v, "gpt2-small-res-jb"), value["release"], at, f"{prefix}.release")
            fields["sae_id"] = self.check(
                lambda v: _check_text("sae_id", v, "blocks.8.hook_resid_pre"),
                value["sae_id"],
                self.key_line(value, "sae_id", line),
                f"{prefix}.sae_id",
            )
        else:
            fields["factory"] = self.check(_check_factory, value["factory"], at, f"{prefix}.factory")
        own = self.gates(value.get("gates"), self.key_line(value, "gates", line), f"{prefix}.gates")
        own_metrics = {g.metric for g in own}
        merged = own + tuple(g for g in defaults if g.metric not in own_metrics)
        return SAESpec(id=sae_id, gates=merged, line=line, **fields)


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Load and validate one suite file.

    Raises :class:`SuiteError` (``file:line: key: what is wrong. Fix: ...``) for anything that is
    not a valid suite. Referenced files (model, tokens, SAEs, baseline) are not opened here.
    """
    file = os.fspath(path)
    suite_path = Path(file)
    data = _read_yaml(suite_path, file)
    return _Builder(suite_path, file).suite(data)


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
