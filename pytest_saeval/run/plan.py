"""What a run evaluates: the SAE entries of suites (release regexes expanded), what replaces the
suites' own sources (:class:`Overrides`), and which suites one fused pass can serve (:func:`group_key`).

Pure Python at import (a release regex is expanded through SAE Lens's directory when one is met).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_saeval.errors import InputError, SaevalError, Subject
from pytest_saeval.settings import EvalSettings
from pytest_saeval.spec.gates import Gate
from pytest_saeval.spec.suite import DatasetSpec, SAESpec, Suite

__all__ = ["GroupKey", "ModelKey", "Overrides", "SAEEntry", "entries_of", "group_key", "located_in"]


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
    index: int = 0
    """Position of ``spec`` in the suite's ``saes:`` list."""

    @property
    def gates(self) -> tuple[Gate, ...]:
        """The entry's gates (suite defaults merged in)."""
        return self.spec.gates


def entries_of(suite: Suite, selected: Callable[[str], bool] | None = None) -> list[SAEEntry]:
    """The SAE entries of ``suite`` (release regexes expanded through SAE Lens's directory; no download).

    ``selected(unique_id)`` filters entries (e.g. by pytest's ``-k``).
    """
    out: list[SAEEntry] = []
    for i, spec in enumerate(suite.saes):
        if spec.release is None:
            out.append(SAEEntry(suite.path, spec, spec.id, index=i))
            continue
        from pytest_saeval.sources.saes import expand_sae_ids

        assert spec.sae_id is not None
        try:
            ids = expand_sae_ids(spec.release, spec.sae_id)
        except SaevalError as e:
            raise e.located(file=str(suite.path), line=spec.line, key=f"saes[{i}].sae_id",
                            subject=Subject(suite=str(suite.path), entry=i)) from e
        exact = len(ids) == 1 and ids[0] == spec.sae_id
        out.extend(SAEEntry(suite.path, spec, spec.id if exact else f"{spec.id}/{rid}", rid, index=i) for rid in ids)
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
    sources: tuple[str, ...] = ()
    """Where the overrides come from, e.g. ``saeval_tokens from tests/conftest.py`` (shown next to the
    results evaluated on them); by default the names of the overridden parts."""
    origins: Mapping[str, str] = field(default_factory=dict)
    """Where each overridden part (``model``, ``saes``, ``tokens``) comes from, e.g.
    ``{"tokens": "saeval_tokens from tests/conftest.py"}``: an error about that part is located there, not at
    the suite's key that the override replaced."""

    def __post_init__(self) -> None:
        if self.saes is not None:
            if not isinstance(self.saes, Mapping):
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

    @property
    def described(self) -> tuple[str, ...]:
        """:attr:`sources`, or the names of the overridden parts (``()`` when nothing is overridden)."""
        if self.empty:
            return ()
        return self.sources or tuple(n for n, v in (("model", self.model), ("saes", self.saes), ("tokens", self.tokens))
                                     if v is not None)


@dataclass(frozen=True)
class ModelKey:
    """Which loaded model a suite needs: suites with equal keys share one model object."""

    name: str | None
    """``model.name``."""
    path: str | None
    """``model.path``, absolute."""
    factory: str | None
    """``model.factory``."""
    factory_dir: str | None
    """The suite's folder for a factory (a module next to the suite is looked up there)."""
    device: str
    """The device the model is loaded on (the suite's, or what overrides it)."""
    dtype: str
    """``model.dtype``."""
    override: int | None = None
    """``id()`` of an overriding model object (then the other fields do not matter)."""
    trust_remote_code: bool = False
    """``model.trust_remote_code``: a model loaded with its folder's own code is not shared with a suite that refuses it."""


@dataclass(frozen=True)
class GroupKey:
    """Which suites one fused pass can serve: the same model, the same token rows, the same settings."""

    model: ModelKey
    """The model."""
    tokens: str | None
    """The token file (absolute), when the data is a file."""
    dataset: DatasetSpec | None
    """The dataset, when the data is one."""
    tokens_override: int | None
    """``id()`` of an overriding token array."""
    context_size: int
    """Tokens per row."""
    settings: EvalSettings
    """Batches and special-token exclusion."""

    def text(self) -> str:
        """A plain string for the key (pytest-xdist's scheduler groups work by strings)."""
        m = self.model
        parts = ("model", m.name, m.path, m.factory, m.device, m.dtype, m.factory_dir, m.override, m.trust_remote_code,
                 "data", self.tokens, repr(self.dataset), self.tokens_override, self.context_size, repr(self.settings))
        return "|".join("" if p is None else str(p) for p in parts)


def group_key(suite: Suite, device: str | None = None, overrides: Overrides | None = None) -> GroupKey:
    """The fused-pass group of ``suite`` (pure Python, no loading).

    ``device``: the device its model is loaded on (default: the suite's ``model.device``);
    ``overrides``: objects replacing the suite's model or tokens.
    """
    m, d = suite.model, suite.data
    ov = overrides or Overrides()
    model = ModelKey(
        name=m.name, path=str(m.path) if m.path else None, factory=m.factory,
        factory_dir=str(suite.path.absolute().parent) if m.factory else None,
        device=device or m.device, dtype=m.dtype,
        override=id(ov.model) if ov.model is not None else None, trust_remote_code=m.trust_remote_code,
    )
    if model.override is not None:  # an overriding object is its own key
        model = ModelKey(None, None, None, None, "", "", model.override)
    return GroupKey(
        model=model,
        tokens=None if ov.tokens is not None or d.tokens is None else str(d.tokens),
        dataset=None if ov.tokens is not None else d.dataset,
        tokens_override=id(ov.tokens) if ov.tokens is not None else None,
        context_size=d.context_size,
        settings=d.to_settings(),
    )


def located_in(e: SaevalError, suite: Suite, line: int | None, key: str, entry: int | None = None) -> SaevalError:
    """``e`` located at ``key`` (line ``line``) of ``suite``'s file, about the suite (and its SAE entry
    number ``entry``), for the run to route by."""
    return e.located(file=str(suite.path), line=line, key=key, subject=Subject(suite=str(suite.path), entry=entry))
