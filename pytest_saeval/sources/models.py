"""Load the language model: a local Hugging Face folder, a TransformerLens name, or a factory.

Models are loaded the way SAE Lens loads them for its SAEs: without weight processing (no LayerNorm
folding, no centering), because processing changes the activations an SAE was trained on.

A local folder becomes a ``HookedTransformer`` through TransformerLens's own config and weight
conversion for that architecture (the code path of ``from_pretrained_no_processing``, minus its
official-name check), offline. Architectures that conversion does not cover are loaded as a
``TransformerBridge`` in compatibility mode, which keeps the usual hook names
(``blocks.0.hook_resid_pre``, ``blocks.0.attn.hook_z``, ...) but cannot start a forward at a layer.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pytest_saeval.errors import InputError, SourceError, did_you_mean
from pytest_saeval.sources.common import hub_offline, is_hub_unreachable, resolve_path, short
from pytest_saeval.sources.devices import parse_dtype, resolve_device
from pytest_saeval.sources.factory import call_factory

if TYPE_CHECKING:  # pragma: no cover
    import torch

Backend = Literal["auto", "hooked", "bridge"]


_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model")
_SAVE_FIX = "save the model with model.save_pretrained(folder) and its tokenizer with tokenizer.save_pretrained(folder)"


@dataclass(frozen=True)
class ModelInfo:
    """What the engine needs to know about a loaded model."""

    backend: str
    """``"hooked"`` (HookedTransformer), ``"bridge"`` (TransformerBridge) or ``"other"``."""

    n_layers: int
    """Number of transformer blocks."""

    d_model: int
    """Width of the residual stream."""

    d_vocab: int
    """Vocabulary size of the model's input embedding (token ids must be below this)."""

    n_ctx: int | None
    """Longest sequence the model accepts, when the config says."""

    hook_names: tuple[str, ...]
    """Every hook point name, sorted."""

    supports_start_at_layer: bool
    """Whether ``model(resid, start_at_layer=L)`` works (True for HookedTransformer only)."""

    has_tokenizer: bool
    """Whether ``model.tokenizer`` is set."""

    def __post_init__(self) -> None:
        if self.backend not in ("hooked", "bridge", "other"):
            raise InputError(f"unknown model backend {self.backend!r}", fix="use 'hooked', 'bridge' or 'other'")
        for name in ("n_layers", "d_model", "d_vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"model {name} must be a positive integer, got {value!r}", fix="check the model config")


def load_model(
    *,
    name: str | None = None,
    path: str | os.PathLike[str] | None = None,
    factory: str | None = None,
    device: str = "auto",
    dtype: str | torch.dtype = "float32",
    backend: Backend = "auto",
    base_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Load a TransformerLens model (HookedTransformer or TransformerBridge) in eval mode.

    Exactly one of:

    - ``path``: a local Hugging Face model folder (``config.json`` + weights, tokenizer files
      optional), loaded offline; relative paths are relative to ``base_dir``.
    - ``name``: a TransformerLens pretrained name (needs the hub or the Hugging Face cache). With
      ``backend="bridge"`` any Hugging Face model id.
    - ``factory``: ``"module:function"`` returning a model; called with no arguments, then moved to
      ``device`` (its dtype is left as the factory made it).

    ``backend``: ``"hooked"`` forces HookedTransformer, ``"bridge"`` forces TransformerBridge,
    ``"auto"`` (default) uses HookedTransformer when TransformerLens can convert the architecture
    and the bridge otherwise. The tokenizer, when there is one, is ``model.tokenizer``.
    """
    given = [k for k, v in (("name", name), ("path", path), ("factory", factory)) if v is not None]
    if len(given) != 1:
        raise SourceError(
            "model needs exactly one of name, path, factory" + (f" (got {', '.join(given)})" if given else ""),
            fix="keep one of model.name, model.path, model.factory",
        )
    if backend not in ("auto", "hooked", "bridge"):
        raise InputError(f"unknown model backend {backend!r}", fix="use auto, hooked or bridge")
    device_str = resolve_device(device)
    torch_dtype = parse_dtype(dtype)

    if factory is not None:
        return _load_factory(factory, device_str, base_dir)
    if name is not None:
        return _load_named(name, device_str, torch_dtype, backend)
    assert path is not None
    return _load_folder(resolve_path(path, base_dir), device_str, torch_dtype, backend)


def model_info(model: Any) -> ModelInfo:
    """Sizes, hook names and capabilities of a loaded model."""
    backend = _backend_of(model)
    cfg = model.cfg
    hook_dict = getattr(model, "hook_dict", None) or getattr(model, "mod_dict", None) or {}
    return ModelInfo(
        backend=backend,
        n_layers=int(cfg.n_layers),
        d_model=int(cfg.d_model),
        d_vocab=int(cfg.d_vocab),
        n_ctx=int(cfg.n_ctx) if getattr(cfg, "n_ctx", None) else None,
        hook_names=tuple(sorted(k for k in hook_dict if k)),
        supports_start_at_layer=backend == "hooked",
        has_tokenizer=getattr(model, "tokenizer", None) is not None,
    )


# ---------------------------------------------------------------------------------------------
# factory


def _looks_like_model(obj: Any) -> list[str]:
    missing = []
    if not callable(getattr(obj, "run_with_hooks", None)):
        missing.append("run_with_hooks")
    if getattr(obj, "hook_dict", None) is None and getattr(obj, "mod_dict", None) is None:
        missing.append("hook_dict (or mod_dict)")
    if getattr(obj, "cfg", None) is None:
        missing.append("cfg")
    return missing


def _load_factory(spec: str, device: str, base_dir: Any) -> Any:
    model = call_factory(spec, base_dir=base_dir, what="model")
    missing = _looks_like_model(model)
    if missing:
        raise SourceError(
            f"factory {spec!r} returned a {type(model).__module__}.{type(model).__name__}, "
            f"not a TransformerLens model (it lacks {', '.join(missing)})",
            fix="return a HookedTransformer (or a TransformerBridge after enable_compatibility_mode())",
        )
    try:
        model = _move(model, device)
    except Exception as e:
        raise SourceError(f"model from factory {spec!r} could not be moved to {device}: {short(e)}", fix="use device: cpu or auto") from e
    model.eval()
    return model


def _move(model: Any, device: str) -> Any:
    if _backend_of(model) == "hooked":
        return model.to(device, print_details=False)
    moved = model.to(device)
    return model if moved is None else moved


def _backend_of(model: Any) -> str:
    from transformer_lens import HookedTransformer

    if isinstance(model, HookedTransformer):
        return "hooked"
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:  # pragma: no cover - older TransformerLens
        return "other"
    return "bridge" if isinstance(model, TransformerBridge) else "other"


# ---------------------------------------------------------------------------------------------
# name


def _load_named(name: str, device: str, dtype: torch.dtype, backend: Backend) -> Any:
    if backend == "bridge":
        try:
            return _boot_bridge(name, device, dtype, tokenizer=None)
        except Exception as e:
            raise _named_error(name, e, "TransformerBridge") from e

    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer

    try:
        loading.get_official_model_name(name)
    except ValueError:
        known = list(loading.make_model_alias_map())
        raise SourceError(
            f"model name {name!r} is not a TransformerLens pretrained name{did_you_mean(name.lower(), known)}",
            fix="use a name from TransformerLens's model table, model.path for a local folder, "
            "or backend: bridge for any Hugging Face model id",
        ) from None
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", DeprecationWarning)
            model = HookedTransformer.from_pretrained_no_processing(name, device=device, dtype=dtype)
    except Exception as e:
        raise _named_error(name, e, "HookedTransformer") from e
    return model.eval()


def _named_error(name: str, e: BaseException, what: str) -> SourceError:
    if is_hub_unreachable(e):
        return SourceError(
            f"model {name!r} is not in the local Hugging Face cache and the hub cannot be reached",
            fix=f"download it once where the hub is reachable (e.g. HookedTransformer.from_pretrained({name!r})) "
            "so it lands in the Hugging Face cache (HF_HOME), or save it to a folder and use model.path",
        )
    return SourceError(f"loading model {name!r} as a {what} failed: {short(e)}", fix="check the model name and backend")


# ---------------------------------------------------------------------------------------------
# local folder


def _check_folder(folder: Path) -> dict[str, Any]:
    if not folder.exists():
        raise SourceError(
            f"model folder '{folder}' does not exist",
            fix="check model.path (relative paths are relative to the suite file), or " + _SAVE_FIX,
        )
    if not folder.is_dir():
        raise SourceError(f"model path '{folder}' is not a folder", fix="point model.path at the folder save_pretrained wrote")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise SourceError(f"model folder '{folder}' has no config.json", fix=_SAVE_FIX)
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SourceError(f"'{config_file}' is not valid JSON: {short(e)}", fix=_SAVE_FIX) from e
    if not isinstance(config, dict):
        raise SourceError(f"'{config_file}' does not hold a JSON object", fix=_SAVE_FIX)
    if not any((folder / f).is_file() for f in _WEIGHT_FILES):
        raise SourceError(
            f"model folder '{folder}' has no weights file (looked for {', '.join(_WEIGHT_FILES)})",
            fix=_SAVE_FIX,
        )
    return config


def _load_folder(folder: Path, device: str, dtype: torch.dtype, backend: Backend) -> Any:
    _check_folder(folder)
    folder = folder.resolve()
    with hub_offline(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)
        tokenizer = _load_tokenizer(folder)
        if backend == "bridge":
            return _folder_bridge(folder, device, dtype, tokenizer)
        hf_model = _load_hf_model(folder, dtype)
        try:
            model = _hooked_from_hf(folder, hf_model, tokenizer, dtype)
        except _Unsupported as e:
            if backend == "hooked":
                raise SourceError(
                    f"TransformerLens cannot convert the model in '{folder}' to a HookedTransformer: {e}",
                    fix="use backend: bridge (TransformerBridge) or backend: auto",
                ) from e.__cause__
            del hf_model
            return _folder_bridge(folder, device, dtype, tokenizer)
        del hf_model
        if device != "cpu":
            model = model.to(device, print_details=False)
        return model.eval()


class _Unsupported(Exception):
    """TransformerLens's HookedTransformer conversion does not cover this model."""


def _load_tokenizer(folder: Path) -> Any:
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:
        raise SourceError(
            f"the tokenizer files in '{folder}' could not be loaded: {short(e)}",
            fix="re-save the tokenizer with tokenizer.save_pretrained(folder), or remove its files to load the model without a tokenizer",
        ) from e


def _load_hf_model(folder: Path, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        hf_model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    except Exception as e:
        raise SourceError(
            f"the model in '{folder}' could not be loaded by transformers (corrupt or truncated weights, or an unknown architecture): {short(e)}",
            fix="re-save the model with model.save_pretrained(folder); check that the weights file was copied completely",
        ) from e
    for p in hf_model.parameters():
        p.requires_grad_(False)
    return hf_model.eval()


def _hooked_from_hf(folder: Path, hf_model: Any, tokenizer: Any, dtype: torch.dtype) -> Any:
    """HookedTransformer from a loaded HF model, as ``from_pretrained_no_processing`` builds it.

    TransformerLens's config conversion reads ``config.json`` from a folder. It is given a temporary
    folder holding only the config: TransformerLens guesses the architecture from the folder name
    when that name contains "llama" or "gemma", and its GPT-2 branch reads ``n_ctx``, which
    transformers 5 no longer writes.
    """
    import torch
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer

    hf_cfg = hf_model.config.to_dict()
    if (hf_cfg.get("quantization_config") or {}).get("quant_method"):
        raise _Unsupported("the checkpoint is quantized")
    config_for_tl = dict(hf_cfg)
    if "n_ctx" not in config_for_tl and "n_positions" in config_for_tl:
        config_for_tl["n_ctx"] = config_for_tl["n_positions"]
    try:
        with tempfile.TemporaryDirectory(prefix="saeval-") as tmp:
            cfg_dir = Path(tmp) / "config"
            cfg_dir.mkdir()
            (cfg_dir / "config.json").write_text(json.dumps(config_for_tl, default=str), encoding="utf-8")
            cfg = loading.get_pretrained_model_config(
                str(cfg_dir), hf_cfg=hf_cfg, fold_ln=False, device="cpu", dtype=dtype, local_files_only=True
            )
        cfg.model_name = folder.name
        cfg.tokenizer_name = str(folder) if tokenizer is not None else None
        state_dict = loading.get_pretrained_state_dict(str(folder), cfg, hf_model=hf_model, dtype=dtype)
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
        model.load_and_process_state_dict(
            state_dict,
            fold_ln=False,
            center_writing_weights=False,
            center_unembed=False,
            fold_value_biases=False,
            refactor_factored_attn_matrices=False,
        )
    except (NotImplementedError, ValueError, KeyError, AttributeError, RuntimeError, AssertionError, TypeError) as e:
        raise _Unsupported(short(e)) from e
    _check_same_logits(model, hf_model, dtype, torch)
    return model


def _check_same_logits(model: Any, hf_model: Any, dtype: torch.dtype, torch: Any) -> None:
    """A conversion that silently changes the function (a config field TransformerLens ignores) is unsupported."""
    if dtype not in (torch.float32, torch.float64):
        return
    n = max(1, min(8, int(model.cfg.n_ctx)))
    tokens = (torch.arange(n) * 7919 % int(model.cfg.d_vocab)).unsqueeze(0)
    with torch.no_grad():
        ours = model(tokens)
        theirs = hf_model(tokens).logits
    if ours.shape != theirs.shape:
        raise _Unsupported(f"converted logits have shape {tuple(ours.shape)}, transformers gives {tuple(theirs.shape)}")
    diff = (ours.double() - theirs.double()).abs().max().item()
    scale = 1.0 + theirs.double().abs().max().item()
    if not diff <= 1e-3 * scale:
        raise _Unsupported(f"converted logits differ from transformers' by {diff:.3g}")


def _folder_bridge(folder: Path, device: str, dtype: torch.dtype, tokenizer: Any) -> Any:
    try:
        bridge = _boot_bridge(str(folder), device, dtype, tokenizer=tokenizer)
        if tokenizer is None:
            # Without tokenizer files the bridge makes up an empty GPT-2 tokenizer; say there is none.
            bridge.tokenizer = None
        return bridge
    except SourceError:
        raise
    except Exception as e:
        raise SourceError(
            f"TransformerBridge could not load the model in '{folder}': {short(e)}",
            fix="check that the architecture is supported by TransformerLens, or load the model in a factory",
        ) from e


def _boot_bridge(name_or_path: str, device: str, dtype: torch.dtype, *, tokenizer: Any) -> Any:
    from transformer_lens.model_bridge import TransformerBridge

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)
        bridge = TransformerBridge.boot_transformers(name_or_path, device=device, dtype=dtype, tokenizer=tokenizer)
        bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    return bridge.eval()
