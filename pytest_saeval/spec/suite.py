"""Suite files (threshold YAML) as frozen dataclasses, keeping YAML line numbers for messages.

One file = one suite = one model, one token set, one or more SAEs and their gates; see the README's "Suite files".
The dataclasses' ``__post_init__`` check the values (through :mod:`.fields`, the format's one table of
keys and limits); what only has a YAML form — a path's text, a dataset given as a string, ``data_files``
— is checked by the loader in :mod:`.loader` as it maps the YAML onto them. Either way a bad value is a
:class:`~pytest_saeval.errors.SuiteError` at the line of its key (``line_of``) with the key path, e.g.
``saes[1].gates.l0``, and the fix. Pure Python: no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from pytest_saeval.errors import SuiteError, did_you_mean
from pytest_saeval.settings import EvalSettings
from pytest_saeval.spec.fields import COUNT_KEYS, DATA_SOURCES, MODEL_SOURCES, SAE_SOURCES, Invalid, check_field
from pytest_saeval.spec.gates import MODES, Gate, Mode

__all__ = ["DataSpec", "DatasetSpec", "ModelSpec", "SAESpec", "Suite"]


class _Section:
    """A spec that keeps its own ``line`` and the ``key_lines`` of the keys under it, and checks them."""

    line: int | None
    key_lines: tuple[tuple[str, int], ...]

    def line_of(self, key: str) -> int | None:
        """The line of ``key`` in the section, else the section's own line."""
        return dict(self.key_lines).get(key, self.line)

    def _prefix(self) -> str:
        raise NotImplementedError

    def _key(self, name: str) -> str:
        return f"{self._prefix()}.{name}" if self._prefix() else name

    def _fail(self, e: Invalid, name: str) -> NoReturn:
        raise SuiteError(e.message, fix=e.fix, line=self.line_of(name), key=self._key(name)) from None

    def _section(self) -> str:
        """This section's name in :data:`~pytest_saeval.spec.fields.SECTIONS`."""
        raise NotImplementedError

    def _check(self, name: str, *, optional: bool = False, check: Callable[[Any], Any] | None = None) -> None:
        """Check the field ``name`` as the format defines it (or with ``check``) and keep its normalised value
        (``optional``: None is left alone)."""
        value = getattr(self, name)
        if value is None and optional:
            return
        try:
            new = check(value) if check is not None else check_field(self._section(), name, value)
            object.__setattr__(self, name, new)
        except Invalid as e:
            self._fail(e, name)

    def _check_path(self, name: str) -> None:
        """Check a path field (as text: a file system must be able to hold it) and keep it as a Path."""
        self._check(name, check=lambda v: Path(check_field(self._section(), name, os.fspath(v))))

    def _exactly_one(self, options: Sequence[str], what: str) -> str:
        """The one source field that is set; a located error when none or several are."""
        given = [k for k in options if getattr(self, k) is not None]
        names = (", ".join(options[:-1]) + f" or {options[-1]}").replace("release", "release + sae_id")
        if not given:
            raise SuiteError(f"{what} needs one of {names}", fix=f"add one of {names}", line=self.line,
                             key=self._prefix())
        if len(given) > 1:
            raise SuiteError(f"{what} has both '{given[0]}' and '{given[1]}'", fix=f"keep exactly one of {names}",
                             line=self.line_of(given[1]), key=self._key(given[1]))
        return given[0]


@dataclass(frozen=True)
class ModelSpec(_Section):
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
    """One of :data:`~pytest_saeval.settings.DTYPES`."""
    trust_remote_code: bool = False
    """Run the Python code a model folder (or hub model) ships for its architecture; refused when False."""
    line: int | None = None
    """Line of the ``model:`` key in the suite file."""
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)
    """``(key, line)`` of the keys under ``model:`` (errors about one key point at its own line)."""

    def _prefix(self) -> str:
        return "model"

    def _section(self) -> str:
        return "model"

    def __post_init__(self) -> None:
        source = self._exactly_one(MODEL_SOURCES, "model")
        if source == "path":
            self._check_path("path")
        else:
            self._check(source)
        for key in ("device", "dtype", "trust_remote_code"):
            self._check(key)

    @property
    def kind(self) -> Literal["name", "path", "factory"]:
        """Which source field is set."""
        if self.name is not None:
            return "name"
        return "path" if self.path is not None else "factory"


@dataclass(frozen=True)
class DatasetSpec(_Section):
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
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)
    """``(key, line)`` of the keys under ``dataset:``."""

    def _prefix(self) -> str:
        return "data.dataset"

    def _section(self) -> str:
        return "dataset"

    def __post_init__(self) -> None:
        for key in ("path", "split", "column", "name", "streaming"):
            self._check(key, optional=key in ("column", "name"))
        object.__setattr__(self, "data_files", tuple((s, tuple(f)) for s, f in self.data_files))


@dataclass(frozen=True)
class DataSpec(_Section):
    """The evaluation tokens (exactly one of ``tokens`` / ``dataset``) and how many batches to use."""

    tokens: Path | None = None
    """An int array ``[n_sequences, context_size]`` in a .npy, .pt or .safetensors file."""
    dataset: DatasetSpec | None = None
    """A text dataset tokenized with the model's tokenizer."""
    context_size: int = 128
    """Tokens per sequence."""
    # The four settings below are the engine's EvalSettings as written in the suite (with their lines and
    # located checks); their defaults are EvalSettings' own, and to_settings() hands them on.
    batch_size_prompts: int = EvalSettings.batch_size_prompts
    """Sequences per batch."""
    n_reconstruction_batches: int = EvalSettings.n_reconstruction_batches
    """Batches for the CE / KL metrics."""
    n_sparsity_batches: int = EvalSettings.n_sparsity_batches
    """Batches for the sparsity / variance / feature metrics."""
    exclude_special_tokens: bool | tuple[int, ...] = EvalSettings.exclude_special_tokens
    """``True``: the tokenizer's special tokens; ``False``: none; a tuple: exactly these ids."""
    line: int | None = None
    """Line of the ``data:`` key in the suite file."""
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)
    """``(key, line)`` of the keys under ``data:`` (errors about one key point at its own line)."""

    def _prefix(self) -> str:
        return "data"

    def _section(self) -> str:
        return "data"

    def __post_init__(self) -> None:
        if self._exactly_one(DATA_SOURCES, "data") == "tokens":
            self._check_path("tokens")
        for key in (*COUNT_KEYS, "exclude_special_tokens"):
            self._check(key)

    @property
    def kind(self) -> Literal["tokens", "dataset"]:
        """Which source field is set."""
        return "tokens" if self.tokens is not None else "dataset"

    @property
    def rows_needed(self) -> int:
        """Sequences the metric pass reads (both families start at row 0)."""
        return self.to_settings().rows_needed

    def to_settings(self) -> EvalSettings:
        """The engine settings these values describe."""
        return EvalSettings(
            batch_size_prompts=self.batch_size_prompts,
            n_reconstruction_batches=self.n_reconstruction_batches,
            n_sparsity_batches=self.n_sparsity_batches,
            exclude_special_tokens=self.exclude_special_tokens,
        )


@dataclass(frozen=True)
class SAESpec(_Section):
    """One SAE entry: where it comes from (exactly one of path / release+sae_id / factory) and its gates."""

    id: str
    """Unique within the suite; letters, digits, ``-``, ``_``, ``.`` and ``/`` (used in test ids and file names)."""
    path: Path | None = None
    """A local SAE folder: SAE Lens, EleutherAI sparsify or dictionary_learning (absolute after loading a suite)."""
    format: str | None = None
    """With ``path``: ``sae_lens``, ``sparsify`` or ``dictionary_learning``; None: told from the files present."""
    hook_name: str | None = None
    """With ``path``: the TransformerLens hook the SAE reads, replacing the one its checkpoint names."""
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
    index: int | None = None
    """Position in the ``saes:`` list (key paths read ``saes[<index>]``; ``saes[<id>]`` when unknown)."""
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)
    """``(key, line)`` of the keys of this entry."""

    def _prefix(self) -> str:
        return f"saes[{self.index}]" if self.index is not None else f"saes[{self.id}]"

    def _section(self) -> str:
        return "sae"

    def __post_init__(self) -> None:
        self._check("id")
        for have, need in (("release", "sae_id"), ("sae_id", "release")):
            if getattr(self, have) is not None and getattr(self, need) is None:
                raise SuiteError(f"'{have}' needs '{need}' as well", fix=f"add {need}: next to {have}:",
                                 line=self.line_of(have), key=self._key(have))
        source = self._exactly_one(SAE_SOURCES, self._prefix())
        if source == "path":
            self._check_path("path")
        else:
            self._check(source)
        if source == "release":
            self._check("sae_id")
        self._check_path_options(source)
        gates = tuple(self.gates)
        seen: set[str] = set()
        for gate in gates:
            if not isinstance(gate, Gate):
                raise TypeError(f"SAESpec.gates must hold Gate objects, got {type(gate).__name__}")
            if gate.metric in seen:
                raise SuiteError(f"two gates on {gate.metric}", fix="merge them into one list", line=gate.line, key=self._key("gates"))
            seen.add(gate.metric)
        object.__setattr__(self, "gates", gates)

    def _check_path_options(self, source: str) -> None:
        """``format`` and ``hook_name`` describe a folder: they need ``path`` and valid values."""
        for name in ("format", "hook_name"):
            if getattr(self, name) is not None and source != "path":
                raise SuiteError(f"'{name}' applies only to an SAE loaded from path:, not from {source}:",
                                 fix=f"remove {name}:, or load the SAE with path: from a local folder",
                                 line=self.line_of(name), key=self._key(name))
            self._check(name, optional=True)

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
class Suite(_Section):
    """One suite file: one model, one token set, its SAEs and their gates."""

    path: Path
    """The suite file, as given to :func:`~pytest_saeval.spec.loader.load_suite`."""
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
    gate_mode: Mode = "point"
    """``point``: a gate checks the measured value. ``interval``: a gate fails only when the whole 95%
    bootstrap interval is on the wrong side (metrics without an interval are checked by value)."""
    line: int | None = None
    """Line of the document (1)."""
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)
    """``(key, line)`` of the top-level keys."""

    def _prefix(self) -> str:
        return ""

    def _section(self) -> str:
        return "suite"

    @property
    def baseline_line(self) -> int | None:
        """Line of the ``baseline:`` key, for messages about the baseline file."""
        return dict(self.key_lines).get("baseline")

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        try:
            self._validate()
        except SuiteError as e:
            raise e.located(file=str(self.path)) from None

    def _validate(self) -> None:
        saes = tuple(self.saes)
        if not saes:
            raise SuiteError("saes is empty", fix="add at least one SAE entry: - id: my-sae, path: ...",
                             line=self.line_of("saes"), key="saes")
        first: dict[str, SAESpec] = {}
        for spec in saes:
            other = first.get(spec.id)
            first.setdefault(spec.id, spec)
            if other is not None:
                also = f"saes[{other.index}] on line {other.line}" if other.index is not None else "another entry"
                raise SuiteError(f"duplicate SAE id '{spec.id}' (also {also})", fix="give every SAE in the suite a unique id",
                                 line=spec.line_of("id"), key=spec._key("id"))
        object.__setattr__(self, "saes", saes)
        object.__setattr__(self, "default_gates", tuple(self.default_gates))
        if self.baseline is not None:
            self._check_path("baseline")
        else:
            self._check_no_baseline_gates()
        if self.gate_mode not in MODES:
            raise SuiteError(
                f"gate_mode must be point or interval, got {self.gate_mode!r}",
                fix="write gate_mode: point (check the measured value, the default) or gate_mode: interval "
                "(fail only when the whole 95% interval is on the wrong side)",
                line=self.line_of("gate_mode"), key="gate_mode")

    def _check_no_baseline_gates(self) -> None:
        """A gate that compares with ``baseline`` needs the suite's ``baseline:`` file."""
        for spec in self.saes:
            for gate in spec.gates:
                if gate.uses_baseline:
                    raise SuiteError(
                        f"gate '{gate.text}' compares with the baseline, but the suite has no baseline: file",
                        fix="add `baseline: baselines/<name>.json` at the top level (create the file with "
                        "`saeval run --update-baseline` or `pytest --saeval-update-baseline`), or compare with a number",
                        line=gate.line, key=gate.key)

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
