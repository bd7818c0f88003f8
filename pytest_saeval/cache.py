"""Content-addressed caches around :func:`~pytest_saeval.engine.evaluate`.

Two caches share one folder (default ``.saeval-cache`` in the current directory, or the
``SAEVAL_CACHE_DIR`` environment variable; ``cache_dir=`` overrides both):

* **Results** (``<dir>/results/<k[:2]>/<k>.safetensors``): one :class:`~pytest_saeval.engine.SAEResult`
  per file, keyed by content hashes of the model (weights, buffers and config), the SAE (weights and
  config), the token rows the pass reads, the settings (with the resolved special-token ids) and the
  package, torch and cache-format versions. Any change gives another key, so it misses. A hit costs
  hashing plus one small read.
* **Model side** (``<dir>/model/<context>/``): what a pass computes without any SAE —
  :class:`~pytest_saeval.records.ModelRecords`: the hook activations, the residual stream entering
  each hook's block, the clean residual after the last block, a summary of the clean next-token
  distribution per position (its moment ``Σ_v p_v W_U[:, v]``, its log-sum-exp and the clean CE) and
  the zero-ablation per-token KL/CE — per (model, token rows, batch settings). A new SAE on a known
  model and token set then runs only its own encode/decode, its tail from the hook's block and the
  unembedding of that tail: no clean forward, no ablation forward and no clean unembedding. Disk
  holds one file for the clean part and one per hook (``rows × ctx × d_model`` floats per tensor:
  ~63 MB for 160 rows of 128 tokens on GPT-2 small); clean logits (``rows × ctx × vocab``) are never
  kept. A memory tier (least recently used, :data:`DEFAULT_MEMORY_BYTES` by default, per cache
  folder and process) keeps recent records, so a second call in the same process reads nothing from
  disk.

Files are safetensors (never pickle) written with :func:`~pytest_saeval.fileio.atomic_write_bytes`
(temporary file + ``os.replace``): readers never see a partial file and concurrent writers of one key
both succeed (the last rename wins; the contents are the same). Every file carries its key and a
digest of its contents; a file that cannot be read, or whose key or digest does not match, is
recomputed with a :class:`CacheWarning` and overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.fileio import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from pytest_saeval.engine import SAEResult
    from pytest_saeval.records import ModelRecords
    from pytest_saeval.settings import EvalSettings

__all__ = [
    "CACHE_FORMAT",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_MEMORY_BYTES",
    "CacheWarning",
    "ModelCache",
    "ResultsCache",
    "cached_evaluate",
    "default_cache_dir",
    "model_fingerprint",
    "results_equal",
    "sae_fingerprint",
    "tokens_fingerprint",
]

CACHE_FORMAT = 2
"""Bumped whenever the stored layout or the meaning of a stored number changes (old entries then miss)."""

DEFAULT_CACHE_DIR = ".saeval-cache"
"""Folder name used in the current directory when neither ``cache_dir`` nor ``SAEVAL_CACHE_DIR`` is set."""

DEFAULT_MEMORY_BYTES = 1 << 30
"""Bytes of model-side records the memory tier keeps per cache folder (1 GiB)."""


class CacheWarning(UserWarning):
    """A cache entry could not be used (unreadable, wrong key or digest) and is being recomputed."""


def default_cache_dir() -> Path:
    """``$SAEVAL_CACHE_DIR`` when set, else ``.saeval-cache`` in the current directory."""
    env = os.environ.get("SAEVAL_CACHE_DIR")
    return Path(env) if env else Path.cwd() / DEFAULT_CACHE_DIR


# -- hashing ---------------------------------------------------------------------------------------


class _Hasher:
    """xxh3-128 when ``xxhash`` is importable (about 5 GB/s; it comes with ``datasets``), else sha256."""

    def __init__(self) -> None:
        try:
            import xxhash

            self._h: Any = xxhash.xxh3_128()
            self.name = "xxh3_128"
        except ImportError:  # pragma: no cover - xxhash is a dependency of datasets
            self._h = hashlib.sha256()
            self.name = "sha256"
        self._h.update(self.name.encode())

    def text(self, s: str) -> None:
        data = s.encode()
        self._h.update(len(data).to_bytes(8, "little"))
        self._h.update(data)

    def tensor(self, t: torch.Tensor) -> None:
        import torch

        data = t.detach()
        if data.device.type != "cpu":
            data = data.to("cpu")
        data = data.contiguous()
        self.text(f"{str(data.dtype).removeprefix('torch.')}{tuple(data.shape)}")
        if data.numel():
            flat = data.reshape(-1)
            if flat.dtype == torch.bool:
                flat = flat.to(torch.uint8)
            self._h.update(memoryview(flat.view(torch.uint8).numpy()))

    def hexdigest(self) -> str:
        return str(self._h.hexdigest())


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-able, address-free rendering of a config value (for hashing)."""
    if depth > 6:
        return repr(type(value))
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, depth + 1)
    text = str(value)
    return text if " at 0x" not in text else type(value).__qualname__


def _config_of(obj: Any) -> Any:
    cfg = getattr(obj, "cfg", None)
    if cfg is None:
        return None
    to_dict = getattr(cfg, "to_dict", None)
    if callable(to_dict):
        try:
            return _plain(to_dict())
        except Exception:  # noqa: BLE001 - fall back to the attributes
            pass
    try:
        return _plain(vars(cfg))
    except TypeError:
        return _plain(repr(cfg))


def _module_fingerprint(kind: str, obj: Any) -> str:
    h = _Hasher()
    h.text(kind)
    h.text(f"{type(obj).__module__}.{type(obj).__qualname__}")
    h.text(json.dumps(_config_of(obj), sort_keys=True, default=str))
    tokenizer = getattr(obj, "tokenizer", None)
    if tokenizer is not None:
        h.text(f"padding_side={getattr(tokenizer, 'padding_side', None)}")
    state = obj.state_dict() if hasattr(obj, "state_dict") else {
        name: getattr(obj, name) for name in ("W_enc", "W_dec", "b_enc", "b_dec") if hasattr(obj, name)
    }
    import torch

    for key in sorted(state):
        h.text(key)
        value = state[key]
        if isinstance(value, torch.Tensor):
            h.tensor(value)
        else:
            h.text(repr(value))
    return h.hexdigest()


def model_fingerprint(model: Any) -> str:
    """Hash of a model's class, config (``cfg``), tokenizer padding side and every weight and buffer."""
    return _module_fingerprint("model", model)


def sae_fingerprint(sae: Any) -> str:
    """Hash of an SAE's class, config (``cfg.to_dict()``) and every weight and buffer."""
    return _module_fingerprint("sae", sae)


def tokens_fingerprint(tokens: torch.Tensor) -> str:
    """Hash of a token array's dtype, shape and values."""
    h = _Hasher()
    h.tensor(tokens)
    return h.hexdigest()


def _digest(parts: Mapping[str, Any]) -> str:
    h = _Hasher()
    h.text(json.dumps(parts, sort_keys=True, default=str))
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import torch

    from pytest_saeval import __version__

    return {"format": str(CACHE_FORMAT), "pytest_saeval": __version__, "torch": torch.__version__}


# -- safetensors files with a key and a digest ------------------------------------------------------


def _tensors_digest(tensors: Mapping[str, torch.Tensor], header: str) -> str:
    h = _Hasher()
    h.text(header)
    for name in sorted(tensors):
        h.text(name)
        h.tensor(tensors[name])
    return h.hexdigest()


def _write_entry(path: Path, key: str, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    own = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    header_text = json.dumps(header, sort_keys=True)
    metadata = {"key": key, "header": header_text, "digest": _tensors_digest(own, header_text)}
    atomic_write_bytes(path, save(own, metadata=metadata))


class _Unusable(Exception):
    """An entry that exists but cannot be used."""


def _read_entry(path: Path, key: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(header, tensors)``, or None when there is no file. Raises :class:`_Unusable` for a bad file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _Unusable(f"cannot be read ({e})") from e
    from safetensors.torch import load

    # one read of the whole file: the header and the tensors come from the same version of it even
    # while another process replaces the file
    try:
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
        tensors = load(data)
    except Exception as e:  # noqa: BLE001 - any failure to parse means the file is unusable
        raise _Unusable(f"cannot be read ({type(e).__name__}: {e})") from e
    if metadata.get("key") != key:
        raise _Unusable("holds another key")
    header_text = metadata.get("header", "")
    if metadata.get("digest") != _tensors_digest(tensors, header_text):
        raise _Unusable("does not match its digest")
    try:
        header = json.loads(header_text)
    except ValueError as e:
        raise _Unusable(f"has a bad header ({e})") from e
    if not isinstance(header, dict):
        raise _Unusable("has a bad header")
    return header, tensors


def _warn_unusable(path: Path, why: str) -> None:
    warnings.warn(
        f"saeval cache: the entry {path} {why}; recomputing it and overwriting the file",
        CacheWarning,
        stacklevel=3,
    )


# -- results ---------------------------------------------------------------------------------------


def _result_tensors(result: SAEResult) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    import torch

    f64 = torch.float64
    st = result.sequence_stats
    header: dict[str, Any] = {
        "sae_id": result.sae_id,
        "hook_name": result.hook_name,
        "hook_head_index": result.hook_head_index,
        "d_in": result.d_in,
        "d_sae": result.d_sae,
        "metrics": list(result.metrics),
        "feature_metrics": list(result.feature_metrics),
        "reconstruction": list(st.reconstruction),
        "sparsity": list(st.sparsity),
        "sum_x": st.sum_x is not None,
        "sum_sq_norm": st.sum_sq_norm is not None,
    }
    tensors: dict[str, torch.Tensor] = {"metrics": torch.tensor(list(result.metrics.values()), dtype=f64)}
    for name, values in result.feature_metrics.items():
        tensors[f"feature/{name}"] = torch.tensor(values, dtype=f64)
    for family, stats in (("reconstruction", st.reconstruction), ("sparsity", st.sparsity)):
        for name, sums in stats.items():
            tensors[f"{family}/{name}/sums"] = sums.sums
            tensors[f"{family}/{name}/counts"] = sums.counts
    if st.sum_x is not None:
        tensors["sum_x"] = st.sum_x
    if st.sum_sq_norm is not None:
        tensors["sum_sq_norm"] = st.sum_sq_norm
    return header, tensors


def _result_from(header: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], sae_id: str) -> SAEResult:
    from pytest_saeval.engine import SAEResult, SequenceStats
    from pytest_saeval.metrics import SequenceSums

    try:
        values = tensors["metrics"].tolist()
        names = list(header["metrics"])
        if len(values) != len(names):
            raise _Unusable("has metric names and values of different lengths")
        stats = {
            family: {name: SequenceSums(tensors[f"{family}/{name}/sums"], tensors[f"{family}/{name}/counts"])
                     for name in header[family]}
            for family in ("reconstruction", "sparsity")
        }
        return SAEResult(
            sae_id=sae_id,
            hook_name=str(header["hook_name"]),
            hook_head_index=None if header["hook_head_index"] is None else int(header["hook_head_index"]),
            d_in=int(header["d_in"]),
            d_sae=int(header["d_sae"]),
            metrics={name: float(v) for name, v in zip(names, values)},
            feature_metrics={name: tensors[f"feature/{name}"].tolist() for name in header["feature_metrics"]},
            sequence_stats=SequenceStats(
                reconstruction=stats["reconstruction"],
                sparsity=stats["sparsity"],
                sum_x=tensors["sum_x"] if header["sum_x"] else None,
                sum_sq_norm=tensors["sum_sq_norm"] if header["sum_sq_norm"] else None,
            ),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise _Unusable(f"is incomplete ({type(e).__name__}: {e})") from e


class ResultsCache:
    """One :class:`~pytest_saeval.engine.SAEResult` per key, as safetensors files under ``<root>/results``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.root / "results" / key[:2] / f"{key}.safetensors"

    def get(self, key: str, sae_id: str, needed: Collection[str] = ()) -> SAEResult | None:
        """The stored result under ``sae_id``; None when missing, unusable (with a :class:`CacheWarning`)
        or lacking one of the ``needed`` metric names."""
        path = self.path(key)
        try:
            found = _read_entry(path, key)
            if found is None:
                return None
            result = _result_from(*found, sae_id=sae_id)
        except _Unusable as e:
            _warn_unusable(path, str(e))
            return None
        have = set(result.metrics) | set(result.feature_metrics)
        return result if set(needed) <= have else None

    def put(self, key: str, result: SAEResult) -> None:
        """Store ``result`` under ``key`` (atomically)."""
        header, tensors = _result_tensors(result)
        _write_entry(self.path(key), key, header, tensors)


# -- model side ------------------------------------------------------------------------------------


def _hook_file_key(context: str, hook: tuple[str, int | None]) -> str:
    return _digest({"context": context, "hook": hook[0], "head": hook[1]})


class ModelCache:
    """Disk and memory tiers for :class:`~pytest_saeval.records.ModelRecords` (see the module docstring).

    ``memory_bytes=0`` turns the memory tier off; ``disk=False`` keeps records in memory only.
    """

    def __init__(self, root: str | os.PathLike[str], *, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 disk: bool = True) -> None:
        self.root = Path(root)
        self.memory_bytes = int(memory_bytes)
        self.disk = disk
        self._memory: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def bind(self, context: str) -> _BoundModelStore:
        """A :class:`~pytest_saeval.records.ModelStore` for one context key (model, token rows, settings)."""
        return _BoundModelStore(self, context)

    def clear_memory(self) -> None:
        """Drop the memory tier (as a new process would start)."""
        with self._lock:
            self._memory.clear()
            self._used = 0

    # memory tier
    def _remember(self, key: str, value: Any, size: int) -> None:
        if size > self.memory_bytes:
            return
        with self._lock:
            old = self._memory.pop(key, None)
            if old is not None:
                self._used -= old[0]
            self._memory[key] = (size, value)
            self._used += size
            while self._used > self.memory_bytes and self._memory:
                _, (dropped, _) = self._memory.popitem(last=False)
                self._used -= dropped

    def _recall(self, key: str) -> Any:
        with self._lock:
            hit = self._memory.get(key)
            if hit is None:
                return None
            self._memory.move_to_end(key)
            return hit[1]

    def _dir(self, context: str) -> Path:
        return self.root / "model" / context

    def _load_part(self, context: str, name: str, key: str) -> dict[str, torch.Tensor] | None:
        cached = self._recall(key)
        if cached is not None:
            return dict(cached)
        if not self.disk:
            return None
        path = self._dir(context) / f"{name}.safetensors"
        try:
            found = _read_entry(path, key)
        except _Unusable as e:
            _warn_unusable(path, str(e))
            return None
        if found is None:
            return None
        tensors = found[1]
        self._remember(key, tensors, sum(t.numel() * t.element_size() for t in tensors.values()))
        return dict(tensors)

    def _save_part(self, context: str, name: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        own = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}
        self._remember(key, own, sum(t.numel() * t.element_size() for t in own.values()))
        if self.disk:
            _write_entry(self._dir(context) / f"{name}.safetensors", key, {"part": name}, own)


class _BoundModelStore:
    """:class:`ModelCache` seen through one context key: the engine's ``ModelStore``."""

    def __init__(self, cache: ModelCache, context: str) -> None:
        self.cache = cache
        self.context = context

    def load(self, hooks: Sequence[tuple[str, int | None]]) -> ModelRecords | None:
        from pytest_saeval.records import CLEAN_FIELDS, CleanSummary, HookRecord, ModelRecords

        clean = self.cache._load_part(self.context, "clean", _digest({"context": self.context, "part": "clean"}))
        if clean is None or "final_resid" not in clean:
            return None
        records: dict[tuple[str, int | None], HookRecord] = {}
        for hook in hooks:
            key = _hook_file_key(self.context, hook)
            part = self.cache._load_part(self.context, f"hook-{key[:24]}", key)
            if part is None or not {"acts", "ablation_kl", "ablation_ce"} <= set(part):
                return None
            records[hook] = HookRecord(acts=part["acts"], block_resid=part.get("block_resid"),
                                       ablation_kl=part["ablation_kl"], ablation_ce=part["ablation_ce"])
        summary = None
        if all(f"clean_{name}" in clean for name in CLEAN_FIELDS):
            summary = CleanSummary(**{name: clean[f"clean_{name}"] for name in CLEAN_FIELDS})
        return ModelRecords(final_resid=clean["final_resid"], hooks=records, clean=summary)

    def save(self, records: ModelRecords) -> None:
        from pytest_saeval.records import CLEAN_FIELDS

        tensors = {"final_resid": records.final_resid}
        if records.clean is not None:
            tensors.update({f"clean_{name}": getattr(records.clean, name) for name in CLEAN_FIELDS})
        self.cache._save_part(self.context, "clean", _digest({"context": self.context, "part": "clean"}), tensors)
        for hook, rec in records.hooks.items():
            key = _hook_file_key(self.context, hook)
            tensors = {"acts": rec.acts, "ablation_kl": rec.ablation_kl, "ablation_ce": rec.ablation_ce}
            if rec.block_resid is not None:
                tensors["block_resid"] = rec.block_resid
            self.cache._save_part(self.context, f"hook-{key[:24]}", key, tensors)


_MODEL_CACHES: dict[Path, ModelCache] = {}
_MODEL_CACHES_LOCK = threading.Lock()


def _model_cache_for(root: Path) -> ModelCache:
    """The process-wide :class:`ModelCache` of a folder (so its memory tier outlives one call)."""
    resolved = root.resolve()
    with _MODEL_CACHES_LOCK:
        cache = _MODEL_CACHES.get(resolved)
        if cache is None:
            cache = _MODEL_CACHES[resolved] = ModelCache(resolved)
        return cache


# -- the cached evaluate ---------------------------------------------------------------------------


def cached_evaluate(
    model: Any,
    saes: Mapping[str, Any],
    tokens: Any,
    settings: EvalSettings | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    enabled: bool = True,
    model_key: str | None = None,
    model_cache: bool | ModelCache = True,
    metrics: Collection[str] | None = None,
    use_start_at_layer: bool | None = None,
    progress: bool = False,
    score_by_summary: bool = True,
) -> dict[str, SAEResult]:
    """:func:`~pytest_saeval.engine.evaluate` that reuses stored results and evaluates only the SAEs that miss.

    Args:
        model, saes, tokens, settings, use_start_at_layer, progress, metrics: as for ``evaluate``.
        cache_dir: the cache folder; default :func:`default_cache_dir` (``.saeval-cache`` in the
            current directory, or ``$SAEVAL_CACHE_DIR``). Created when missing.
        enabled: False runs plain ``evaluate`` and neither reads nor writes anything.
        model_key: a string that stands for the model's weights and config (e.g. a hash of its
            files), used instead of hashing the weights; it must change whenever they do.
        model_cache: also keep and reuse the SAE-independent part of the pass (True: the folder's
            process-wide :class:`ModelCache`; or pass one; False: off).
        score_by_summary: as for ``evaluate``, on by default here (the plugin's and ``saeval``'s
            scoring, whether or not any cache is used); it is always on with the model-side cache.

    Returns:
        ``{id: SAEResult}`` in the order of ``saes``; a hit carries the requested id.

    Raises:
        InputError: as ``evaluate`` (checked before anything is hashed).
    """
    from pytest_saeval.engine import _as_token_tensor, _check_inputs, cosine_matrices, evaluate, special_token_ids
    from pytest_saeval.metrics import COSINE_METRICS
    from pytest_saeval.settings import EvalSettings

    settings = settings or EvalSettings()
    if not enabled:
        return evaluate(model, saes, tokens, settings, use_start_at_layer=use_start_at_layer, progress=progress,
                        metrics=metrics, score_by_summary=score_by_summary)
    matrices = cosine_matrices(metrics)  # also validates the names
    token_tensor = _as_token_tensor(tokens)
    _check_inputs(model, saes, token_tensor, settings)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    rows = token_tensor[: settings.rows_needed]
    common = {
        **_versions(),
        "model": model_key if model_key is not None else model_fingerprint(model),
        "tokens": tokens_fingerprint(rows),
        "batch_size_prompts": settings.batch_size_prompts,
        "n_reconstruction_batches": settings.n_reconstruction_batches,
        "n_sparsity_batches": settings.n_sparsity_batches,
    }
    excluded = special_token_ids(model, settings.exclude_special_tokens)
    # the selection only changes whether the all-pairs cosines are computed: an entry must hold those asked for
    needed = tuple(name for name, matrix in COSINE_METRICS.items() if matrix in matrices)
    results_cache = ResultsCache(root)
    # KL / CE from the clean summary or directly: equal to float rounding, but kept apart so a stored
    # result never depends on which ran first
    scoring = "summary" if (score_by_summary or model_cache is not False) else "direct"
    keys: dict[str, str] = {}
    out: dict[str, SAEResult] = {}
    misses: dict[str, Any] = {}
    for sae_id, sae in saes.items():
        keys[sae_id] = _digest({**common, "excluded": excluded, "sae": sae_fingerprint(sae), "scoring": scoring})
        hit = results_cache.get(keys[sae_id], sae_id, needed)
        if hit is None:
            misses[sae_id] = sae
        else:
            out[sae_id] = hit
    if misses:
        store = None
        if model_cache is not False:
            cache = model_cache if isinstance(model_cache, ModelCache) else _model_cache_for(root)
            store = cache.bind(_digest({**common, "part": "model-side"}))
        fresh = evaluate(model, misses, token_tensor, settings, use_start_at_layer=use_start_at_layer,
                         progress=progress, model_store=store, metrics=metrics, score_by_summary=score_by_summary)
        for sae_id, result in fresh.items():
            results_cache.put(keys[sae_id], result)
            out[sae_id] = result
    return {sae_id: out[sae_id] for sae_id in saes}


def results_equal(a: SAEResult, b: SAEResult) -> bool:
    """True when two results hold the same numbers (NaN equals NaN), ids and per-sequence sums."""
    import torch

    def same(x: float, y: float) -> bool:
        return x == y or (math.isnan(x) and math.isnan(y))

    def tensors_same(x: Any, y: Any) -> bool:
        if x is None or y is None:
            return x is None and y is None
        return bool(x.dtype == y.dtype and x.shape == y.shape and torch.equal(torch.nan_to_num(x), torch.nan_to_num(y))
                    and torch.equal(x.isnan(), y.isnan()))

    if (a.sae_id, a.hook_name, a.hook_head_index, a.d_in, a.d_sae) != (b.sae_id, b.hook_name, b.hook_head_index,
                                                                       b.d_in, b.d_sae):
        return False
    if list(a.metrics) != list(b.metrics) or not all(same(a.metrics[k], b.metrics[k]) for k in a.metrics):
        return False
    if list(a.feature_metrics) != list(b.feature_metrics):
        return False
    for k, values in a.feature_metrics.items():
        other = b.feature_metrics[k]
        if len(values) != len(other) or not all(same(x, y) for x, y in zip(values, other)):
            return False
    sa, sb = a.sequence_stats, b.sequence_stats
    for fam_a, fam_b in ((sa.reconstruction, sb.reconstruction), (sa.sparsity, sb.sparsity)):
        if list(fam_a) != list(fam_b):
            return False
        for k in fam_a:
            if not (tensors_same(fam_a[k].sums, fam_b[k].sums) and tensors_same(fam_a[k].counts, fam_b[k].counts)):
                return False
    return tensors_same(sa.sum_x, sb.sum_x) and tensors_same(sa.sum_sq_norm, sb.sum_sq_norm)
