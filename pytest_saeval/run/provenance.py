"""What a result was measured on (:class:`Provenance`), and how that compares with what a baseline
recorded (pure Python).

A baseline file may record, per SAE, the provenance of its values: content hashes of the SAE, the
model and the token rows, and the library versions and device. When the current run's hashes
differ, the baseline-relative gates compare numbers measured on different inputs; the functions here
turn that into one note per SAE, shown in every report (terminal, ``summary.md``, the GitHub step
summary, the HTML page). A note is information, never a failure.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from pytest_saeval.spec.baseline import Baseline

__all__ = ["CONTENT_HASHES", "ENVIRONMENT", "Note", "Provenance", "provenance_changes", "provenance_notes"]


@dataclass(frozen=True)
class Provenance:
    """What one SAE's result was measured on and with (written to outputs and baseline files)."""

    pytest_saeval_version: str
    """This package's version."""
    sae_lens_version: str
    """SAE Lens's version."""
    transformer_lens_version: str
    """TransformerLens's version."""
    torch_version: str
    """torch's version."""
    python_version: str
    """The Python version."""
    device: str
    """The device the model ran on, e.g. ``cpu`` or ``cuda:0``."""
    sae_xxh3: str
    """Content hash (xxh3-128) of the SAE: its class, config and weights."""
    model_xxh3: str
    """Content hash of the model: its class, config, tokenizer padding side and weights."""
    tokens_xxh3: str
    """Content hash of the token rows the pass read."""

    def to_dict(self) -> dict[str, str]:
        """The provenance as plain data, as outputs and baseline files hold it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Provenance:
        """Rebuild from :meth:`to_dict`'s output (unknown keys are ignored, missing ones ``"unknown"``)."""
        return cls(**{f.name: str(data.get(f.name, "unknown")) for f in dataclasses.fields(cls)})


CONTENT_HASHES: tuple[tuple[str, str], ...] = (
    ("sae_xxh3", "SAE weights"),
    ("model_xxh3", "model weights"),
    ("tokens_xxh3", "tokens"),
)
"""Provenance keys holding content hashes, with the words used in notes."""

ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("device", "device"),
    ("torch_version", "torch"),
    ("sae_lens_version", "SAE Lens"),
    ("transformer_lens_version", "TransformerLens"),
)
"""Provenance keys describing the environment, with the words used in notes."""

_UPDATE_HINT = (
    "if the change is intended, record new values with `saeval run --update-baseline` "
    "(or `pytest --saeval-update-baseline`)"
)


def _short(value: object) -> str:
    text = str(value)
    return text[:12] if len(text) > 12 else text


def provenance_changes(recorded: Mapping[str, object], current: Mapping[str, object]) -> tuple[list[str], list[str]]:
    """Differences between a recorded and a current provenance.

    Returns ``(content, environment)``: ``content`` lists changed content hashes as
    ``"SAE weights (xxh3 1a2b3c4d5e6f -> 0f9e8d7c6b5a)"``; ``environment`` lists changed versions
    or device as ``"torch 2.12.0 -> 2.13.0"``. A key missing on either side is not a change.
    """
    content = [
        f"{words} (xxh3 {_short(recorded[key])} -> {_short(current[key])})"
        for key, words in CONTENT_HASHES
        if recorded.get(key) is not None and current.get(key) is not None and recorded[key] != current[key]
    ]
    environment = [
        f"{words} {recorded[key]} -> {current[key]}"
        for key, words in ENVIRONMENT
        if recorded.get(key) is not None and current.get(key) is not None and recorded[key] != current[key]
    ]
    return content, environment


@dataclass(frozen=True)
class Note:
    """What one SAE's baseline was recorded on, where that differs from this run."""

    sae_id: str
    """The SAE the note is about."""
    text: str
    """One line: ``[sae] ...``."""
    loud: bool = False
    """True when the baseline was measured on another model or other tokens (its comparisons are then
    between different inputs); False for the normal case of a retrained SAE or another environment."""


def provenance_notes(suite_path: str | os.PathLike[str], provenance: Mapping[str, Provenance],
                     baseline: Baseline | None, overridden: tuple[str, ...] = ()) -> list[Note]:
    """One note per SAE whose current ``provenance`` differs from what ``baseline`` recorded for it.

    ``provenance`` maps SAE ids to this run's provenance. SAEs the baseline has no provenance for get
    no note. A retrained SAE (new weights, the same model and tokens) is the normal case: its note is
    information. Another model or other tokens make the comparison one of different inputs: that note
    is loud and says how to record new values. Notes are sorted by SAE id.

    ``overridden`` names what replaced the suite's own inputs (a conftest's fixtures): such an evaluation
    never becomes the baseline, so only a model or tokens other than the baseline's get a note, a loud one
    that says the gates that use ``baseline`` compare across inputs.
    """
    if baseline is None:
        return []
    notes: list[Note] = []
    for sae_id in sorted(provenance):
        recorded = baseline.provenance(sae_id)
        if recorded:
            current = provenance[sae_id].to_dict()
            note = (_override_note(sae_id, recorded, current, baseline, overridden) if overridden
                    else _note(sae_id, recorded, current, baseline))
            if note is not None:
                notes.append(note)
    return notes


def _note(sae_id: str, recorded: Mapping[str, object], current: Mapping[str, object], baseline: Baseline) -> Note | None:
    content, environment = provenance_changes(recorded, current)
    inputs = [c for c in content if not c.startswith("SAE weights")]
    also = f" (also changed: {', '.join(environment)})" if environment else ""
    if inputs:
        text = (f"[{sae_id}] the baseline {baseline.path} was recorded on other " + _and(content)
                + f": gates that use `baseline` compare values measured on different inputs{also}. Fix: {_UPDATE_HINT}")
        return Note(sae_id, text, loud=True)
    if content:
        return Note(sae_id, f"[{sae_id}] baseline recorded on earlier {content[0]}: comparing the new weights with it{also}",
                    loud=False)
    if environment:
        return Note(sae_id, f"[{sae_id}] baseline recorded with another environment ({', '.join(environment)}); "
                    "small numeric differences are possible", loud=False)
    return None


def _override_note(sae_id: str, recorded: Mapping[str, object], current: Mapping[str, object], baseline: Baseline,
                   overridden: tuple[str, ...]) -> Note | None:
    content, _ = provenance_changes(recorded, current)
    inputs = [c for c in content if not c.startswith("SAE weights")]
    if not inputs:
        return None
    return Note(sae_id, f"[{sae_id}] evaluated with {', '.join(overridden)}: the baseline {baseline.path} was "
                f"recorded on the suite's own inputs, not on these ({_and(inputs)}): gates that use `baseline` "
                "compare values measured on different inputs. Fix: gate these tests with bounds of their own, or "
                "leave the baseline gates to the suite's gate tests", loud=True)


def _and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
