"""Baseline files: the recorded metric values that ``baseline`` in a gate refers to (pure Python).

Format (JSON, keys sorted, indent 2)::

    {
      "provenance": {"layer1-topk": {"sae_xxh3": "...", "tokens_xxh3": "..."}},
      "saes": {"layer1-topk": {"ce_loss_score": 0.941234, "l0": 35.1234}}
    }

``provenance`` is optional. Values are finite numbers: NaN or infinity can never be a baseline, so
:func:`write_baseline` refuses them and :func:`load_baseline` rejects files that hold them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_saeval.bounded import (
    DuplicateKey,
    NotRegularFile,
    is_finite,
    parse_json,
    read_regular,
    size_text,
    unique_keys,
)
from pytest_saeval.errors import BaselineError, did_you_mean
from pytest_saeval.fileio import atomic_write_text, os_reason

__all__ = ["MAX_BASELINE_BYTES", "Baseline", "baseline_text", "load_baseline", "write_baseline"]

MAX_BASELINE_BYTES = 16 * 1024 * 1024
"""Largest baseline file read (16 MiB: a baseline holds a few numbers and hashes per SAE, about 1 KB)."""

_TOP_KEYS = ("saes", "provenance")
_CREATE_FIX = (
    "create it with `pytest --saeval-update-baseline` or `saeval run --update-baseline`, "
    "or fix the suite's `baseline:` path"
)
_RECREATE_FIX = (
    "fix the file by hand, or recreate it with `pytest --saeval-update-baseline` or "
    "`saeval run --update-baseline`"
)


@dataclass(frozen=True)
class Baseline:
    """Recorded metric values per SAE id, loaded from a baseline file."""

    path: Path
    """The baseline file."""
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{sae_id: {metric: value}}``; every value finite (integers as recorded)."""
    provenances: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``{sae_id: {...}}``: what the values were measured on (file hashes, settings), where recorded."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        values: dict[str, dict[str, float]] = {}
        for sae_id, metrics in self.values.items():
            values[sae_id] = {}
            for metric, value in metrics.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_finite(value):
                    raise BaselineError(
                        f"baseline value must be a finite number, got {_shown(value)}",
                        fix=_RECREATE_FIX,
                        file=str(self.path),
                        key=f"saes.{sae_id}.{metric}",
                    )
                values[sae_id][metric] = value  # ints stay ints so a rewrite is byte-identical
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "provenances", {k: dict(v) for k, v in self.provenances.items()})

    @property
    def sae_ids(self) -> tuple[str, ...]:
        """SAE ids with recorded values, sorted."""
        return tuple(sorted(self.values))

    def value(self, sae_id: str, metric: str) -> float | None:
        """The recorded value as a float, or ``None`` when this SAE or metric has none."""
        found = self.values.get(sae_id, {}).get(metric)
        return float(found) if found is not None else None

    def provenance(self, sae_id: str) -> dict[str, Any] | None:
        """A copy of what the SAE's values were measured on, or ``None`` when not recorded."""
        found = self.provenances.get(sae_id)
        return dict(found) if found is not None else None


def _shown(value: object) -> str:
    """A value for a message (an integer too large for a float by its size: it may have too many digits to print)."""
    if isinstance(value, int) and not isinstance(value, bool) and not is_finite(value):
        return f"an integer of {value.bit_length()} bits (too large for a float)"
    return repr(value)


def _line_of(text: str, keys: list[str]) -> int | None:
    """Best-effort line of the last key in a JSON key path (the keys are searched in order)."""
    pos = 0
    for key in keys:
        needle = json.dumps(key)
        found = -1
        start = pos
        while True:
            found = text.find(needle, start)
            if found < 0:
                return None
            rest = text[found + len(needle):].lstrip()
            if rest.startswith(":"):
                break
            start = found + 1
        pos = found + len(needle)
    return text.count("\n", 0, pos) + 1


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def load_baseline(path: str | os.PathLike[str], *, missing_ok: bool = False) -> Baseline:
    """Read and validate a baseline file.

    A missing file raises :class:`BaselineError` (naming the file and how to create it) unless
    ``missing_ok``, which returns an empty :class:`Baseline`. Corrupt JSON reports the line JSON
    gives; structure errors name the key path (and, where it can be found, the line).
    """
    file = os.fspath(path)
    target = Path(file)
    read = _read_text(target, file, missing_ok)
    if read is None:
        return Baseline(path=target)
    text, data = read

    def bad(message: str, keys: list[str], fix: str = _RECREATE_FIX) -> BaselineError:
        return BaselineError(message, fix=fix, file=file, line=_line_of(text, keys) if keys else 1, key=".".join(keys) or None)

    if not isinstance(data, dict):
        raise bad(f'a baseline file must be a JSON object with a "saes" key, got {_kind(data)}', [])
    for key in data:
        if key not in _TOP_KEYS:
            raise bad(f"unknown key {key!r}{did_you_mean(key, _TOP_KEYS)}", [key], "use only " + ", ".join(_TOP_KEYS))
    if "saes" not in data:
        raise bad('missing the "saes" key', [])
    return Baseline(path=target, values=_values(data["saes"], bad), provenances=_provenances(data.get("provenance"), bad))


def _read_raw(target: Path, file: str, missing_ok: bool) -> bytes | None:
    """The file's bytes (at most :data:`MAX_BASELINE_BYTES`); None for a missing file when ``missing_ok``."""
    try:
        return read_regular(target, limit=MAX_BASELINE_BYTES)
    # A file that cannot be opened has no line to point at: these errors carry the path in the
    # message and no location, so the caller locates them at the suite's `baseline:` line.
    except FileNotFoundError:
        if missing_ok:
            return None
        raise BaselineError(f"baseline file '{file}' not found", fix=_CREATE_FIX) from None
    except IsADirectoryError:
        raise BaselineError(f"baseline path '{file}' is a folder, not a JSON file", fix=_CREATE_FIX) from None
    except NotRegularFile as e:
        raise BaselineError(f"baseline path '{file}' is not a regular file ({e.kind})",
                            fix="point `baseline:` at a JSON file") from None
    except OSError as e:
        raise BaselineError(f"cannot read the baseline file '{file}': {e.strerror or e}", fix="check the file's permissions") from e
    except ValueError:  # more than the limit
        raise BaselineError(f"the baseline file '{file}' is larger than {size_text(MAX_BASELINE_BYTES)}",
                            fix="a baseline holds a few numbers per SAE: check the suite's `baseline:` path, "
                                "or recreate the file with `pytest --saeval-update-baseline`") from None


def _read_text(target: Path, file: str, missing_ok: bool) -> tuple[str, object] | None:
    """The file's text and parsed JSON; None for a missing file when ``missing_ok``."""
    raw = _read_raw(target, file, missing_ok)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise BaselineError("the baseline file is not UTF-8 text", fix=_RECREATE_FIX, file=file, line=line) from e
    try:
        return text, parse_json(text, object_pairs_hook=unique_keys)
    except DuplicateKey as e:
        raise BaselineError(f"duplicate key {e.key!r}", fix="keep one entry per key", file=file, line=_line_of(text, [e.key])) from None
    except json.JSONDecodeError as e:
        raise BaselineError(f"invalid JSON: {e.msg} (column {e.colno})", fix=_RECREATE_FIX, file=file, line=e.lineno) from e
    except ValueError as e:  # nested too deeply, or an integer too long to read
        raise BaselineError(f"the baseline file cannot be read: {e}", fix=_RECREATE_FIX, file=file) from None


_Bad = Callable[..., BaselineError]


def _values(saes: object, bad: _Bad) -> dict[str, dict[str, float]]:
    """The ``saes`` object: ``{sae_id: {metric: finite number}}``."""
    if not isinstance(saes, dict):
        raise bad(f'"saes" must be an object {{sae_id: {{metric: value}}}}, got {_kind(saes)}', ["saes"])
    values: dict[str, dict[str, float]] = {}
    for sae_id, metrics in saes.items():
        if not isinstance(metrics, dict):
            raise bad(f"must be an object {{metric: value}}, got {_kind(metrics)}", ["saes", sae_id])
        for metric, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(f"baseline value must be a number, got {_kind(value)} ({value!r})", ["saes", sae_id, metric])
            if not is_finite(value):
                raise bad(
                    f"baseline value is {_shown(value)}; NaN and infinity cannot be a baseline",
                    ["saes", sae_id, metric],
                    "replace it with a finite number or remove the entry, then rerun with --saeval-update-baseline",
                )
        values[sae_id] = dict(metrics)
    return values


def _provenances(provenance: object, bad: _Bad) -> dict[str, dict[str, Any]]:
    """The optional ``provenance`` object: ``{sae_id: {...}}``."""
    if provenance is None:
        return {}
    if not isinstance(provenance, dict):
        raise bad(f'"provenance" must be an object {{sae_id: {{...}}}}, got {_kind(provenance)}', ["provenance"])
    for sae_id, info in provenance.items():
        if not isinstance(info, dict):
            raise bad(f"must be an object, got {_kind(info)}", ["provenance", sae_id])
    return dict(provenance)


def _round6(value: float) -> float:
    """Round to 6 significant digits (so small measurement noise does not churn the file)."""
    return float(f"{value:.6g}")


def write_baseline(
    path: str | os.PathLike[str],
    values: Mapping[str, Mapping[str, float]],
    provenance: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Write a baseline file atomically (the text of :func:`baseline_text`).

    Non-finite values are refused with :class:`BaselineError` (the file is left as it was), so NaN
    is never recorded as a number; so is a write that fails (the previous file stays).
    """
    file = os.fspath(path)
    text = baseline_text(file, values, provenance)
    try:
        atomic_write_text(file, text)
    except OSError as e:
        raise BaselineError(
            f"cannot write {file}: {os_reason(e)}",
            fix="check that the folder is writable and has free space; the previous baseline was left as it was",
        ) from e


def baseline_text(
    path: str | os.PathLike[str],
    values: Mapping[str, Mapping[str, float]],
    provenance: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The text of a baseline file for ``path``: keys sorted, floats rounded to 6 significant digits,
    integers as they are, indent 2, trailing newline; :class:`BaselineError` (naming ``path`` and the
    key) for a value that cannot be recorded."""
    file = os.fspath(path)
    saes: dict[str, dict[str, float | int]] = {}
    for sae_id, metrics in values.items():
        if not isinstance(sae_id, str) or not sae_id:
            raise BaselineError(f"SAE id must be a non-empty string, got {sae_id!r}", fix="pass string ids", file=file)
        if not isinstance(metrics, Mapping):
            raise BaselineError(f"values must be a mapping metric -> value, got {type(metrics).__name__}", fix="pass {metric: value}", file=file, key=f"saes.{sae_id}")
        out: dict[str, float | int] = {}
        for metric, value in metrics.items():
            key = f"saes.{sae_id}.{metric}"
            if not isinstance(metric, str) or not metric:
                raise BaselineError(f"metric name must be a non-empty string, got {metric!r}", fix="pass string metric names", file=file, key=f"saes.{sae_id}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BaselineError(f"baseline value must be a number, got {value!r}", fix="pass float metric values", file=file, key=key)
            if not is_finite(value):
                raise BaselineError(
                    f"refusing to record {_shown(value)} as a baseline: NaN and infinity cannot be a baseline",
                    fix="make the metric finite (check the SAE and the evaluation data) before updating the baseline",
                    file=file,
                    key=key,
                )
            out[metric] = value if isinstance(value, int) else _round6(float(value))
        saes[sae_id] = out
    document: dict[str, Any] = {"saes": saes}
    if provenance:
        document["provenance"] = {str(k): dict(v) for k, v in provenance.items()}
    try:
        return json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise BaselineError(
            f"provenance cannot be written as JSON: {e}",
            fix="use only strings, finite numbers, booleans, lists and objects in provenance",
            file=file,
            key="provenance",
        ) from e
