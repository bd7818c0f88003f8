"""``evaluate`` through the caches: stored results are reused and only the SAEs that miss are evaluated.

A result's key covers the model (class, config, tokenizer padding side, every weight and buffer),
the SAE (class, config, weights), the token rows the pass reads, the settings (with the resolved
special-token ids), the package and numeric libraries' versions and the cache format: any change
gives another key, so it misses. A hit costs hashing plus one small read. The SAEs that miss run
through the model-side cache (:mod:`.model`), so a new SAE on a known model and token set skips the
clean and ablation forwards. Every SAE is scored through the clean distribution's summary (see
:class:`~pytest_saeval.engine.evaluate.Scoring`), so a number never depends on what the cache held.

A cache folder that cannot be used (read-only, full, a file in its place, a folder where an entry
should be, a name too long) never stops a run: the first such problem gives one :class:`CacheWarning`
and the rest of the run goes on without the disk (the model-side memory tier still works).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_saeval.engine.evaluate import EngineOptions, Scoring, cosine_matrices, run_pass
from pytest_saeval.engine.inputs import as_token_tensor, check_inputs, special_token_ids
from pytest_saeval.engine.records import ModelRecords
from pytest_saeval.engine.results import SAEResult
from pytest_saeval.engine.weights import COSINE_METRICS
from pytest_saeval.fileio import os_reason
from pytest_saeval.settings import EvalSettings
from pytest_saeval.store.entries import Unavailable, digest
from pytest_saeval.store.folder import CACHE_FORMAT, CacheDisk, default_cache_dir
from pytest_saeval.store.hashing import Fingerprints
from pytest_saeval.store.model import BoundModelStore, ModelCache
from pytest_saeval.store.results import ResultsCache
from pytest_saeval.versions import library_versions

__all__ = ["CACHE_FORMAT", "EvalCache"]

class _GuardedStore:
    """A model-side store whose disk problems turn the cache off instead of failing the pass."""

    def __init__(self, store: BoundModelStore, disk: CacheDisk) -> None:
        self.store = store
        self.disk = disk

    def load(self, hooks: Sequence[tuple[str, int | None]]) -> ModelRecords | None:
        try:
            return self.store.load(hooks)
        except Unavailable as e:
            self.disk.fail(str(e))
        return None

    def save(self, records: ModelRecords) -> None:
        try:
            self.store.save(records)
        except OSError as e:
            self.disk.fail(f"cannot write {e.filename or self.disk.folder}: {os_reason(e)}")



class EvalCache:
    """The results cache and the model-side cache of one folder, and ``evaluate`` through them.

    ``model_cache``: ``True`` keeps the SAE-independent part of passes in a :class:`ModelCache` of the
    folder (its memory tier lives as long as this object), ``False`` turns that off, or pass one.
    ``fingerprints`` memoizes the content hashes (share one with whatever else needs them); ``disk`` says
    whether the folder is still usable (share one with the folder's other caches, so that a broken folder
    is reported once).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, model_cache: bool | ModelCache = True,
                 fingerprints: Fingerprints | None = None, disk: CacheDisk | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.results = ResultsCache(self.folder)
        self.model_cache = (ModelCache(self.folder) if model_cache is True
                            else model_cache if isinstance(model_cache, ModelCache) else None)
        self.fingerprints = fingerprints or Fingerprints()
        self._disk = disk or CacheDisk(self.folder)
        if self.model_cache is not None:
            self._disk.on_fail(self._memory_only)

    def _memory_only(self) -> None:
        if self.model_cache is not None:
            self.model_cache.disk = False

    def evaluate(self, model: Any, saes: Mapping[str, Any], tokens: Any, settings: EvalSettings | None = None,
                 options: EngineOptions | None = None, *, model_key: str | None = None) -> dict[str, SAEResult]:
        """:func:`~pytest_saeval.engine.evaluate.evaluate` that reuses stored results.

        ``model_key``: a string that stands for the model's weights and config (e.g. a hash of its
        files), used instead of hashing the weights; it must change whenever they do.

        Returns ``{id: SAEResult}`` in the order of ``saes``; a hit carries the requested id.
        Raises :class:`~pytest_saeval.errors.InputError` as ``evaluate`` (checked before anything is hashed).
        """
        settings = settings or EvalSettings()
        options = options or EngineOptions()
        token_tensor = as_token_tensor(tokens)
        check_inputs(model, saes, token_tensor, settings)
        common = self._common(model, token_tensor, settings, model_key)
        # the selection only changes whether the all-pairs cosines are computed: an entry must hold those asked for
        matrices = cosine_matrices(options.metrics)
        needed = tuple(name for name, matrix in COSINE_METRICS.items() if matrix in matrices)
        excluded = special_token_ids(model, settings.exclude_special_tokens)
        keys = {sae_id: digest({**common, "excluded": excluded, "sae": self.fingerprints.sae(sae),
                                "sae_code": self.fingerprints.code(sae)})
                for sae_id, sae in saes.items()}
        out: dict[str, SAEResult] = {}
        misses: dict[str, Any] = {}
        for sae_id, sae in saes.items():
            hit = self._get(keys[sae_id], sae_id, needed)
            if hit is None:
                misses[sae_id] = sae
            else:
                out[sae_id] = hit
        if misses:
            store = (_GuardedStore(self.model_cache.bind(digest({**common, "part": "model-side"})), self._disk)
                     if self.model_cache else None)
            fresh = run_pass(model, misses, token_tensor, settings, options, Scoring(store=store, by_summary=True))
            for sae_id, result in fresh.items():
                self._put(keys[sae_id], result)
                out[sae_id] = result
        return {sae_id: out[sae_id] for sae_id in saes}

    def _get(self, key: str, sae_id: str, needed: Sequence[str]) -> SAEResult | None:
        if not self._disk.usable:
            return None
        try:
            return self.results.get(key, sae_id, needed)
        except Unavailable as e:
            self._disk.fail(str(e))
        return None

    def _put(self, key: str, result: SAEResult) -> None:
        if not self._disk.usable:
            return
        try:
            self.results.put(key, result)
        except OSError as e:
            self._disk.fail(f"cannot write {e.filename or self.folder}: {os_reason(e)}")

    def _common(self, model: Any, tokens: Any, settings: EvalSettings, model_key: str | None) -> dict[str, Any]:
        """The key parts every SAE of one call shares."""
        return {
            "format": CACHE_FORMAT,
            "versions": library_versions(),
            "model": model_key if model_key is not None else self.fingerprints.model(model),
            "model_code": self.fingerprints.code(model),
            "tokens": self.fingerprints.tokens(tokens, settings.rows_needed),
            "batch_size_prompts": settings.batch_size_prompts,
            "n_reconstruction_batches": settings.n_reconstruction_batches,
            "n_sparsity_batches": settings.n_sparsity_batches,
            # KL / CE from the clean summary, kept apart from direct scoring
            "scoring": "summary",
        }
