"""Load the language model: a local Hugging Face folder (:mod:`.hf_folder`), a TransformerLens name,
or a factory.

Models are loaded the way SAE Lens loads them for its SAEs: without weight processing (no LayerNorm
folding, no centering), because processing changes the activations an SAE was trained on.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from typing import TYPE_CHECKING, Any

from pytest_saeval.errors import InputError, SourceError, did_you_mean
from pytest_saeval.sources.common import is_hub_unreachable, resolve_path, short
from pytest_saeval.sources.devices import parse_dtype, resolve_device
from pytest_saeval.sources.factory import call_factory
from pytest_saeval.sources.hf_folder import Backend, boot_bridge, load_folder

if TYPE_CHECKING:  # pragma: no cover
    import torch



def load_model(  # noqa: PLR0913 - one keyword per key of a suite's model section, plus the API's own
    *,
    name: str | None = None,
    path: str | os.PathLike[str] | None = None,
    factory: str | None = None,
    device: str = "auto",
    dtype: str | torch.dtype = "float32",
    backend: Backend = "auto",
    base_dir: str | os.PathLike[str] | None = None,
    trust_remote_code: bool = False,
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

    ``trust_remote_code``: a model folder (or hub model) that needs its own Python code to load is
    refused unless this is True; then that code runs. Never asked for on stdin.
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
        return _load_named(name, device_str, torch_dtype, backend, trust_remote_code)
    assert path is not None
    return load_folder(resolve_path(path, base_dir), device_str, torch_dtype, backend,
                       trust_remote_code=trust_remote_code)


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


def _load_named(name: str, device: str, dtype: torch.dtype, backend: Backend, trust_remote_code: bool) -> Any:
    if backend == "bridge":
        try:
            return boot_bridge(name, device, dtype, tokenizer=None, trust_remote_code=trust_remote_code)
        except SourceError:
            raise
        except Exception as e:
            raise _named_error(name, e, "TransformerBridge") from e

    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer

    try:
        official = loading.get_official_model_name(name)
    except ValueError:
        known = list(loading.make_model_alias_map())
        raise SourceError(
            f"model name {name!r} is not a TransformerLens pretrained name{did_you_mean(name.lower(), known)}",
            fix="use a name from TransformerLens's model table, model.path for a local folder, "
            "or backend: bridge for any Hugging Face model id",
        ) from None
    if official.startswith(tuple(loading.NEED_REMOTE_CODE_MODELS)) and not trust_remote_code:
        raise SourceError(
            f"model {name!r} loads with Python code from its hub repository, and a suite runs no such code unless asked",
            fix="if you trust that repository's code, set model.trust_remote_code: true (it then runs that code)",
        )
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", DeprecationWarning)
            model = HookedTransformer.from_pretrained_no_processing(name, device=device, dtype=dtype,
                                                                    trust_remote_code=trust_remote_code)
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
