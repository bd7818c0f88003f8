"""Answers for unchanged groups from a file-keyed cache: no torch, no TransformerLens, no SAE Lens, nothing
loaded (pure Python).

A group (suites sharing one fused pass) whose model is a ``path:`` folder, whose data is a ``tokens:``
file and whose SAEs are all ``path:`` folders gets, per SAE, a key computed from what is on disk
(:func:`answer_key`):

- the bytes of every file of the model folder, of the token file and of the SAE folder (and their
  paths), through :class:`~pytest_saeval.store.filekey.FileDigests` (a stat-keyed memo skips re-reading
  files that cannot have changed; see that module for why that is safe); for an SAE also the names of the
  folder its path leads to and of its parents (a checkpoint's hook can come from them) and every file outside it that
  its format's loader reads (a sparsify run's ``config.json``: :func:`~pytest_saeval.sources.sparsify.outside_files`),
  by digest or as absent;
- what the suite says about them: ``model.dtype`` and ``model.trust_remote_code``, the data settings
  (``context_size``, ``batch_size_prompts``, both batch counts, ``exclude_special_tokens``), the SAE
  entry's ``format`` and ``hook_name``;
- the device the model runs on, the Python version, the versions of this package and of the libraries
  that affect a number (torch, TransformerLens, SAE Lens, transformers) and the caches' format.

Gates, ``gate_mode``, the baseline file and SAE ids are not in the key: the stored values are checked
again against the current gates and baseline on every run (:mod:`.checks`), as an evaluated run's are.
When every SAE of a group has a stored answer, the group is answered from them: results, intervals,
provenance and SAE configs as the evaluation that stored them produced, so outputs are byte for byte
those of an evaluated run. Anything else (a byte changed, a factory or a pretrained name, a dataset, a
conftest override, a device only torch can resolve that cannot be resolved) takes the evaluating path,
which stores the answers afterwards when the files did not change meanwhile.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import platform
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_saeval.engine.results import SAEResult
from pytest_saeval.errors import SaevalError
from pytest_saeval.fileio import os_reason
from pytest_saeval.plain import JSON, to_plain
from pytest_saeval.run.intervals import Interval
from pytest_saeval.run.plan import SAEEntry
from pytest_saeval.run.provenance import Provenance
from pytest_saeval.sources.formats import detect_format
from pytest_saeval.sources.sparsify import outside_files
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.answers import ANSWER_FORMAT, AnswerStore
from pytest_saeval.store.entries import Unavailable, Unusable, digest, warn_unusable
from pytest_saeval.store.filekey import MEMO_FILE, FileDigests, Unsettled
from pytest_saeval.store.folder import CACHE_FORMAT, CacheDisk
from pytest_saeval.versions import library_versions

__all__ = ["FileKeyed", "GroupKeys", "Lookup", "SuitePart", "answer_key"]

Members = Sequence[tuple[Suite, Sequence[SAEEntry]]]
"""The suites of one group and their selected SAE entries."""


@dataclass(frozen=True)
class SuitePart:
    """One suite's part of a group's evaluation: what a :class:`~.outcome.SuiteRun` is made from."""

    results: dict[str, SAEResult]
    """Engine results by unique SAE id (answered ones without per-sequence sums)."""
    provenance: dict[str, Provenance]
    """What each result was measured on."""
    sae_cfgs: dict[str, dict[str, JSON]]
    """Each SAE's config as plain data."""
    intervals: dict[str, dict[str, Interval]]
    """Each SAE's bootstrap intervals."""
    context_size: int
    """Tokens per row of the evaluated token array."""
    seconds: float | None = None
    """The suite's share of its group's loading and pass (None when answered: nothing was timed, and the
    timings kept for balancing shards stay those of the last evaluation)."""


@dataclass(frozen=True)
class GroupKeys:
    """The file keys of a group's SAEs, computed before anything was loaded."""

    device: str
    """The device the keys were computed for."""
    keys: dict[tuple[str, str], str]
    """``(suite file, unique SAE id)`` -> key."""


@dataclass(frozen=True)
class Lookup:
    """What the file-keyed cache holds for a group."""

    parts: dict[Path, SuitePart] | None = None
    """Per suite file, the answered part; None unless every SAE of the group has an answer."""
    keys: GroupKeys | None = None
    """The keys (None: the group is not file-based, or its files cannot be read now)."""
    fresh: int = 0
    """SAEs answered from disk now (answers already given in this run are not counted again)."""


@dataclass(frozen=True)
class _Answer:
    """One SAE's stored answer: what a cold run of its suite entry recorded."""

    result: SAEResult
    """Its metrics (the id is set by the entry that asks)."""
    provenance: Provenance
    """Content hashes of the SAE, model and tokens it was evaluated on."""
    sae_cfg: dict[str, JSON]
    """The SAE's config, as the outputs write it."""
    intervals: dict[str, Interval]
    """Bootstrap intervals by metric."""
    context_size: int
    """Tokens per row of the evaluation."""


def answer_key(common: Mapping[str, Any], entry: SAEEntry, digests: FileDigests) -> str | None:
    """The key of one SAE entry in a group whose shared part is ``common`` (see :meth:`FileKeyed.keys`);
    None when the entry is not a ``path:`` folder."""
    spec = entry.spec
    if spec.path is None:
        return None
    sae = {"path": str(spec.path), "files": digests.tree(spec.path), "format": spec.format, "hook_name": spec.hook_name,
           # the names of the folder the path leads to and of its parents (a hook can come from them), not its
           # place: a checkout elsewhere keys the same
           "leads_to": Path(os.path.realpath(spec.path)).parts[-3:], "outside": _outside(spec.path, spec.format, digests)}
    return digest({**common, "sae": sae})


def _outside(folder: Path, wanted: str | None, digests: FileDigests) -> dict[str, str]:
    """Each file outside the checkpoint ``folder`` that its loader reads, by path: its digest, or what is
    there instead (nothing, or no regular file). A folder of no format gives ``{}``: it does not load, so
    no answer is stored for it."""
    try:
        found = detect_format(folder, wanted)
    except SaevalError:
        return {}
    files = outside_files(folder) if found == "sparsify" else ()
    return {str(f): digests.file(f) if os.path.isfile(f) else "absent" if not os.path.lexists(f)
            else "not a regular file" for f in files}


class FileKeyed:
    """The file-keyed answers of one cache folder for one run (answers given are kept for the run's life)."""

    def __init__(self, folder: Path, disk: CacheDisk) -> None:
        self.folder = folder
        self.disk = disk
        self.store = AnswerStore(folder)
        self.digests = FileDigests(folder / MEMO_FILE)
        self._known: dict[str, _Answer] = {}
        self._versions: dict[str, str] | None = None

    def keys(self, members: Members, device: str) -> GroupKeys | None:
        """Every selected SAE's key, or None when a source is not a file. Raises :class:`OSError` when a
        file cannot be read and :class:`~pytest_saeval.store.filekey.Unsettled` when one changed while read."""
        suite = members[0][0]
        m, d = suite.model, suite.data
        if m.path is None or d.tokens is None:
            return None
        if self._versions is None:
            self._versions = library_versions()
        settings = d.to_settings()
        common = {
            "format": ANSWER_FORMAT, "cache_format": CACHE_FORMAT, "versions": self._versions,
            "python": platform.python_version(), "device": device,
            "model": {"path": str(m.path), "files": self.digests.tree(m.path), "dtype": m.dtype,
                      "trust_remote_code": m.trust_remote_code},
            "data": {"tokens": str(d.tokens), "file": self.digests.file(d.tokens), "context_size": d.context_size,
                     "batch_size_prompts": settings.batch_size_prompts,
                     "n_reconstruction_batches": settings.n_reconstruction_batches,
                     "n_sparsity_batches": settings.n_sparsity_batches,
                     "exclude_special_tokens": to_plain(settings.exclude_special_tokens)},
        }
        keys: dict[tuple[str, str], str] = {}
        for member, entries in members:
            for entry in entries:
                key = answer_key(common, entry, self.digests)
                if key is None:
                    return None
                keys[(str(member.path), entry.unique_id)] = key
        return GroupKeys(device, keys)

    def lookup(self, members: Members, device: str | None) -> Lookup:
        """The group's answers when every selected SAE has one (``device``: None when it is not known)."""
        if device is None or not self.disk.usable:
            return Lookup()
        try:
            keys = self.keys(members, device)
        except (OSError, Unsettled):  # the evaluating path reports a file that cannot be read
            return Lookup()
        self._save_memo()
        if keys is None:
            return Lookup()
        found: dict[str, _Answer] = {}
        for key in keys.keys.values():
            answer = self._known.get(key) or found.get(key) or self._read(key)
            if answer is None:
                return Lookup(keys=keys)
            found[key] = answer
        fresh = sum(1 for key in keys.keys.values() if key not in self._known)
        self._known.update(found)
        parts = {}
        for suite, entries in members:
            mine = {e.unique_id: self._known[keys.keys[(str(suite.path), e.unique_id)]] for e in entries}
            parts[suite.path] = SuitePart(
                results={uid: dataclasses.replace(a.result, sae_id=uid) for uid, a in mine.items()},
                provenance={uid: a.provenance for uid, a in mine.items()},
                sae_cfgs={uid: a.sae_cfg for uid, a in mine.items()},
                intervals={uid: a.intervals for uid, a in mine.items()},
                context_size=next(iter(mine.values())).context_size if mine else suite.data.context_size)
        return Lookup(parts=parts, keys=keys, fresh=fresh)

    def save(self, keys: GroupKeys, members: Members, parts: Mapping[Path, SuitePart]) -> None:
        """Store the answers of an evaluated group, unless a file changed since ``keys`` were computed."""
        if not self.disk.usable:
            return
        try:
            if self.keys(members, keys.device) != keys:
                return
        except (OSError, Unsettled):
            return
        for suite, entries in members:
            part = parts[suite.path]
            for entry in entries:
                uid = entry.unique_id
                answer = _Answer(part.results[uid], part.provenance[uid], part.sae_cfgs[uid],
                                 part.intervals.get(uid, {}), part.context_size)
                key = keys.keys[(str(suite.path), uid)]
                try:
                    self.store.put(key, _body(answer))
                except OSError as e:
                    self.disk.fail(f"cannot write {e.filename or self.folder}: {os_reason(e)}")
                    return
                self._known[key] = answer
        self._save_memo()

    def _read(self, key: str) -> _Answer | None:
        try:
            body = self.store.get(key)
            return None if body is None else _answer(body)
        except Unavailable as e:
            self.disk.fail(str(e))
        except Unusable as e:
            warn_unusable(self.store.path(key), str(e))
        return None

    def _save_memo(self) -> None:
        if not self.disk.usable:
            return
        try:
            self.digests.save()
        except OSError:  # a speed-up only: files are read again next time; the caches report a broken folder
            pass


def _floats(values: list[float]) -> JSON:
    """Per-feature values: float64 bytes (base64, little-endian; exact, NaN included) when all are floats."""
    if all(type(v) is float for v in values):
        data = array("d", values)
        if sys.byteorder != "little":
            data.byteswap()
        return {"f64": base64.b64encode(data.tobytes()).decode()}
    return to_plain(values)


def _unfloats(value: Any) -> list[float]:
    if isinstance(value, dict):
        data = array("d")
        data.frombytes(base64.b64decode(value["f64"], validate=True))
        if sys.byteorder != "little":
            data.byteswap()
        return data.tolist()
    if not isinstance(value, list):
        raise TypeError("per-feature values are neither bytes nor a list")
    return value


def _body(a: _Answer) -> dict[str, Any]:
    r = a.result
    return {
        "result": {**r.to_plain(), "metrics": to_plain(r.metrics),
                   "feature_metrics": {name: _floats(values) for name, values in r.feature_metrics.items()}},
        "provenance": a.provenance.to_dict(), "sae_cfg": a.sae_cfg,
        "intervals": {name: [float(lo), float(hi)] for name, (lo, hi) in a.intervals.items()},
        "context_size": a.context_size,
    }


def _answer(body: Mapping[str, Any]) -> _Answer:
    """An answer from its body; a body of another shape is :class:`Unusable`."""
    try:
        result = SAEResult.from_plain("", body["result"], features=_unfloats)
        intervals = {str(k): (float(lo), float(hi)) for k, (lo, hi) in body["intervals"].items()}
        sae_cfg = body["sae_cfg"]
        if not isinstance(sae_cfg, dict) or not isinstance(body["provenance"], dict):
            raise TypeError("provenance and sae_cfg must be objects")
        return _Answer(result, Provenance.from_dict(body["provenance"]), sae_cfg, intervals, int(body["context_size"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise Unusable(f"is incomplete ({type(e).__name__}: {e})") from e
