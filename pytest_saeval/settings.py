"""Evaluation settings shared by the engine, suite files and the command line (pure Python).

Also the one vocabulary of devices and dtypes that suite files, command-line options and loaders
accept (:data:`DTYPES`, :func:`is_device`), and the margins ``saeval init`` leaves between a measurement
and the bound it proposes (:class:`MarginPolicy`, with the ``--margin-*`` defaults and ranges).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from pytest_saeval.errors import InputError

DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "float64")
"""Model dtypes accepted by name (``torch.<name>``)."""

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
"""The device vocabulary, as messages spell it: ``auto`` (cuda when available, else cpu), ``cpu``,
``cuda`` or ``cuda:N``."""

DEVICE_PATTERN = r"^(?:auto|cpu|cuda|cuda:\d+)$"
"""The device vocabulary as a regular expression (ECMAScript-compatible: the suite schema uses it too)."""
_DEVICE_RE = re.compile(DEVICE_PATTERN)


def is_device(text: object) -> bool:
    """Whether ``text`` is a device name of the vocabulary (surrounding spaces ignored)."""
    return isinstance(text, str) and _DEVICE_RE.match(text.strip()) is not None


@dataclass(frozen=True)
class EvalSettings:
    """How much data the metric pass uses and which token positions it ignores.

    Batch ``i`` of either metric family is rows ``[i*B, (i+1)*B)`` of the token array; both
    families start at row 0, so a result depends only on the first rows of the token array.
    """

    batch_size_prompts: int = 16
    """Sequences (rows of the token array) per batch: ``B``."""

    n_reconstruction_batches: int = 10
    """Batches used for the CE / KL metrics (the model's forward passes with the SAE spliced in)."""

    n_sparsity_batches: int = 10
    """Batches used for sparsity, variance, shrinkage and per-feature density metrics."""

    exclude_special_tokens: bool | tuple[int, ...] = True
    """``True``: the tokenizer's BOS/EOS/PAD/SEP/decoder-start ids (as SAE Lens picks them; a model without a
    tokenizer is an :class:`~pytest_saeval.errors.InputError`, where SAE Lens would exclude nothing);
    ``False``: nothing; a tuple: exactly these token ids."""

    def __post_init__(self) -> None:
        for name in ("batch_size_prompts", "n_reconstruction_batches", "n_sparsity_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{name} must be an integer, got {value!r}", key=name, fix=f"set {name} to a whole number")
            if value < 1:
                raise InputError(f"{name} must be >= 1, got {value}", key=name, fix=f"set {name} to 1 or more")
        if not isinstance(self.exclude_special_tokens, bool):
            ids = tuple(self.exclude_special_tokens)
            if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
                raise InputError(
                    f"exclude_special_tokens must be true, false or a list of token ids, got {self.exclude_special_tokens!r}",
                    key="exclude_special_tokens",
                    fix="use true, false or a list of non-negative integers",
                )
            object.__setattr__(self, "exclude_special_tokens", ids)

    @property
    def rows_needed(self) -> int:
        """Rows of the token array the pass reads (both families start at row 0)."""
        return self.batch_size_prompts * max(self.n_reconstruction_batches, self.n_sparsity_batches)


MARGIN_RANGES: dict[str, tuple[float, float]] = {"k": (0.0, 100.0), "abs_floor": (1e-9, 1e9), "rel_floor": (0.0, 10.0),
                                                 "range_rel_floor": (0.0, 10.0)}
"""The values each :class:`MarginPolicy` field may take, both ends included: far beyond any useful margin (a
relative margin of 10 puts a bound ten values away), and a positive smallest margin (0 would allow a bound at the
measured value); beyond them a proposed bound would be a number of hundreds of digits, or no number at all."""


def _short(number: float) -> str:
    """``1e-9`` rather than ``1e-09``: as a user would type it."""
    return f"{number:g}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


@dataclass(frozen=True)
class MarginPolicy:
    """How far below (above) the measurement a proposed bound sits: the margin is
    ``max(k * half-width, abs_floor, rel_floor * |value|)`` (``range_rel_floor`` instead of ``rel_floor``
    for metrics with no better direction)."""

    k: float = 2.0
    """Multiples of the interval half-width between the interval's end and the bound."""
    abs_floor: float = 0.005
    """Smallest margin, in the metric's units (metrics without an interval get at least this)."""
    rel_floor: float = 0.02
    """Smallest margin relative to ``|value|`` for one-sided gates."""
    range_rel_floor: float = 0.1
    """Smallest margin relative to ``|value|`` for metrics with no better direction (ranges, e.g. ``l0``)."""

    @staticmethod
    def rule(name: str, value: object) -> str | None:
        """What field ``name`` must be when ``value`` is not acceptable for it (e.g. ``"a number from 0 to 100"``,
        :data:`MARGIN_RANGES`); None when it is."""
        low, high = MARGIN_RANGES[name]
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or not low <= value <= high):
            return MarginPolicy.range_text(name)
        return None

    @staticmethod
    def range_text(name: str) -> str:
        """The values field ``name`` may take, in words: ``a number from 0 to 100``."""
        low, high = MARGIN_RANGES[name]
        return f"a number from {_short(low)} to {_short(high)}"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            rule = self.rule(field.name, value)
            if rule is not None:
                raise InputError(f"margin {field.name} must be {rule}, got {value!r}", key=field.name,
                                 fix=f"set {field.name} to {rule}, e.g. {field.default}")
