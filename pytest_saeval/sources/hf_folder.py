"""A local Hugging Face model folder as a TransformerLens model, offline and without weight processing.

The folder becomes a ``HookedTransformer`` through TransformerLens's own config and weight conversion
for that architecture (the code path of ``from_pretrained_no_processing``, minus its official-name
check), checked against the Hugging Face model's logits. Architectures that conversion does not cover
are loaded as a ``TransformerBridge`` in compatibility mode (no processing), which keeps the usual hook
names but cannot start a forward at a layer. Weights that do not fit the architecture ``config.json``
describes (a tensor missing, which transformers would initialise randomly, one it has no place for, or one
of another shape, as transformers' loading info reports them) are refused, naming the tensors; a folder
forced onto the bridge (``backend="bridge"``, or its own code under ``trust_remote_code``) is loaded by the
bridge itself, without that check.

A folder never runs its own Python code: a ``config.json`` or ``tokenizer_config.json`` with an
``auto_map`` (custom architecture code next to the weights) is refused in one line, before transformers
sees it, and every transformers call gets ``trust_remote_code`` explicitly, so nothing is ever asked on
stdin. ``model.trust_remote_code: true`` opts in: the folder's code then runs (through the bridge).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.common import exists, hub_offline, missing_hint, safetensors_header, short

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["Backend", "boot_bridge", "check_folder", "custom_code", "load_folder"]

Backend = Literal["auto", "hooked", "bridge"]
"""Which TransformerLens class loads a model: ``hooked`` (HookedTransformer), ``bridge`` (TransformerBridge)
or ``auto`` (HookedTransformer when TransformerLens can convert the architecture, else the bridge)."""

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model")
_SAVE_FIX = "save the model with model.save_pretrained(folder) and its tokenizer with tokenizer.save_pretrained(folder)"


def check_folder(folder: Path, *, trust_remote_code: bool = False) -> dict[str, Any]:
    """The folder's ``config.json``, after checking that the folder holds a config and a weights file
    (not empty, a whole safetensors file) and, unless ``trust_remote_code``, no code of its own (no torch)."""
    if not exists(folder, "model folder"):
        hint, fix = missing_hint(folder)
        raise SourceError(
            f"model folder '{folder}' does not exist{hint}",
            fix=fix or "check model.path (relative paths are relative to the suite file), or " + _SAVE_FIX,
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
    weights = [folder / f for f in _WEIGHT_FILES if (folder / f).is_file()]
    if not weights:
        raise SourceError(
            f"model folder '{folder}' has no weights file (looked for {', '.join(_WEIGHT_FILES)})",
            fix=_SAVE_FIX,
        )
    _check_weights(folder, weights[0])
    if not trust_remote_code:
        _refuse_custom_code(folder, config)
    return config


def _check_weights(folder: Path, file: Path) -> None:
    """An empty weights file, or a safetensors file shorter than its header says, is refused here (no torch)."""
    def refused(problem: str) -> SourceError:
        return SourceError(f"the model in '{folder}' could not be loaded: weights file '{file.name}': {problem}",
                           fix="copy the file again completely, or re-save the model: " + _SAVE_FIX)

    if file.stat().st_size == 0:
        raise refused("it is empty")
    if file.suffix == ".safetensors":
        try:
            safetensors_header(file)
        except (OSError, ValueError) as e:
            raise refused(f"it is corrupt or truncated ({short(e)})") from e


def custom_code(folder: Path, config: dict[str, Any]) -> list[str]:
    """The ``auto_map`` entries (``file: class -> module.Class``) of a folder's config and tokenizer config:
    Python code of the folder that transformers would import to load it."""
    found: list[str] = []
    sources = [("config.json", config)]
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.is_file():
        try:
            sources.append(("tokenizer_config.json", json.loads(tokenizer_config.read_text(encoding="utf-8"))))
        except (OSError, ValueError):  # the tokenizer loader reports a broken file
            pass
    for name, data in sources:
        auto_map = data.get("auto_map") if isinstance(data, dict) else None
        if isinstance(auto_map, dict):
            found.extend(f"{name}: {key} -> {value}" for key, value in auto_map.items())
        elif auto_map:
            found.append(f"{name}: auto_map {auto_map!r}")
    return found


def _refuse_custom_code(folder: Path, config: dict[str, Any]) -> None:
    found = custom_code(folder, config)
    if found:
        shown = "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
        raise SourceError(
            f"model folder '{folder}' needs its own Python code to load ({shown}); it was not run",
            fix="use a model whose architecture transformers knows, or, if you trust that code, set "
            "model.trust_remote_code: true (the folder's Python files then run)",
        )


def load_folder(folder: Path, device: str, dtype: torch.dtype, backend: Backend, *,
                trust_remote_code: bool = False) -> Any:
    """A TransformerLens model from a local Hugging Face folder (see the module docstring)."""
    config = check_folder(folder, trust_remote_code=trust_remote_code)

    folder = folder.resolve()
    with hub_offline(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)
        tokenizer = _load_tokenizer(folder, trust_remote_code)
        if backend == "bridge" or (trust_remote_code and custom_code(folder, config)):
            return _folder_bridge(folder, device, dtype, tokenizer, trust_remote_code)
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
            return _folder_bridge(folder, device, dtype, tokenizer, trust_remote_code)
        del hf_model
        if device != "cpu":
            model = model.to(device, print_details=False)
        return model.eval()


class _Unsupported(Exception):
    """TransformerLens's HookedTransformer conversion does not cover this model."""


def _load_tokenizer(folder: Path, trust_remote_code: bool) -> Any:
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise SourceError(
            f"the tokenizer files in '{folder}' could not be loaded: {short(e)}",
            fix="re-save the tokenizer with tokenizer.save_pretrained(folder), or remove its files to load the model without a tokenizer",
        ) from e


def _load_hf_model(folder: Path, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        # ignore_mismatched_sizes: a tensor of another shape is reported below, by name, with both shapes
        loaded: Any = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True,
                                                           trust_remote_code=False, output_loading_info=True,
                                                           ignore_mismatched_sizes=True)
        hf_model, info = loaded
    except Exception as e:
        raise SourceError(
            f"the model in '{folder}' could not be loaded by transformers (corrupt or truncated weights, or an unknown architecture): {short(e)}",
            fix="re-save the model with model.save_pretrained(folder); check that the weights file was copied completely",
        ) from e
    _refuse_incomplete(folder, type(hf_model), info)
    for p in hf_model.parameters():
        p.requires_grad_(False)
    return hf_model.eval()


def _refuse_incomplete(folder: Path, cls: type, info: dict[str, Any]) -> None:
    """Weights the architecture of ``config.json`` needs but the files lack (transformers would leave them
    randomly initialised), tensors it has no place for (dropped), or tensors of another shape are refused,
    naming them. What the architecture itself declares it may miss or ignore (a tied ``lm_head``, its
    ``_keys_to_ignore_on_load_missing`` / ``_unexpected`` patterns, such as GPT-2's attention-mask buffers)
    is not a problem: transformers leaves most of it out of ``info`` already, and it is left out here again."""
    tied = getattr(cls, "_tied_weights_keys", None) or ()
    missing = _not_declared(info.get("missing_keys"), [*tied, *(getattr(cls, "_keys_to_ignore_on_load_missing", None) or ())])
    unexpected = _not_declared(info.get("unexpected_keys"),
                               [*(getattr(cls, "_keys_to_ignore_on_load_unexpected", None) or ()), *_DERIVED_BUFFERS])
    mismatched = sorted(info.get("mismatched_keys") or (), key=str)
    problems = []
    if missing:
        problems.append(f"{_count(missing, 'tensor')} the architecture needs {'is' if len(missing) == 1 else 'are'} "
                        f"missing from the weights ({_names(missing)}): {'it' if len(missing) == 1 else 'they'} "
                        "would be random")
    if unexpected:
        problems.append(f"{_count(unexpected, 'tensor')} in the weights {'has' if len(unexpected) == 1 else 'have'} "
                        f"no place in it ({_names(unexpected)})")
    if mismatched:
        shown = [f"{m[0]} is {_shape(m[1])} in the file, {_shape(m[2])} in the model" if isinstance(m, tuple) and len(m) == 3
                 else str(m) for m in mismatched]
        problems.append(f"{_count(mismatched, 'tensor')} {'has' if len(mismatched) == 1 else 'have'} another shape "
                        f"({_names(shown)})")
    if problems:
        raise SourceError(
            f"the weights in '{folder}' do not match the architecture its config.json describes ({cls.__name__}): "
            + "; ".join(problems),
            fix="re-save the whole model with model.save_pretrained(folder), or correct config.json (e.g. the "
                "number of layers) to describe the weights the folder holds",
        )


_DERIVED_BUFFERS = (r"\.attn\.(masked_)?bias$", r"\.attention\.(masked_)?bias$", r"(^|\.)inv_freq$",
                    r"(^|\.)position_ids$")
"""Buffers that checkpoints of older transformers versions kept in their weights and that newer model classes
compute instead (GPT-2's and GPT-Neo's causal masks, rotary frequencies, position ids): transformers only warns
about them, and they are no weights (an ``attn.c_attn.bias`` is not among them)."""


def _not_declared(keys: Any, patterns: Any) -> list[str]:
    import re

    names = [str(k) for k in keys or ()]
    if isinstance(patterns, dict):  # transformers 5: {tied: source}
        patterns = list(patterns)
    regexes = []
    for pattern in patterns:
        try:
            regexes.append(re.compile(str(pattern)))
        except re.error:
            regexes.append(re.compile(re.escape(str(pattern))))
    return sorted(k for k in names if not any(r.search(k) for r in regexes))


def _count(items: list[Any], what: str) -> str:
    return f"{len(items)} {what}{'' if len(items) == 1 else 's'}"


def _names(items: list[str], limit: int = 4) -> str:
    return ", ".join(items[:limit]) + (f", and {len(items) - limit} more" if len(items) > limit else "")


def _shape(shape: Any) -> str:
    try:
        return str(list(shape))
    except TypeError:
        return str(shape)


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


def _folder_bridge(folder: Path, device: str, dtype: torch.dtype, tokenizer: Any, trust_remote_code: bool) -> Any:
    try:
        bridge = boot_bridge(str(folder), device, dtype, tokenizer=tokenizer, trust_remote_code=trust_remote_code)
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


def boot_bridge(name_or_path: str, device: str, dtype: torch.dtype, *, tokenizer: Any,
                trust_remote_code: bool = False) -> Any:
    """A ``TransformerBridge`` in compatibility mode without weight processing (``trust_remote_code`` passed
    on explicitly)."""
    from transformer_lens.model_bridge import TransformerBridge

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)
        bridge = TransformerBridge.boot_transformers(name_or_path, device=device, dtype=dtype, tokenizer=tokenizer,
                                                     trust_remote_code=trust_remote_code)
        bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    return bridge.eval()
