"""The heavy half of a run (torch): one fused engine pass for a group of suites, through the caches
when they are on, and what each result was measured on (:class:`~.provenance.Provenance`).

The plugin and ``saeval`` score every SAE through the clean distribution's summary, on cold and warm
passes and with the caches on or off alike, so that a number never depends on cache state.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from typing import Any

import torch

from pytest_saeval.engine.evaluate import EngineOptions, Scoring, run_pass
from pytest_saeval.engine.inputs import as_token_tensor, check_inputs, model_device
from pytest_saeval.engine.results import SAEResult
from pytest_saeval.plain import JSON, to_plain
from pytest_saeval.run.provenance import Provenance
from pytest_saeval.settings import EvalSettings
from pytest_saeval.store.cached import EvalCache
from pytest_saeval.store.hashing import Fingerprints
from pytest_saeval.versions import __version__, dist_version

__all__ = ["device_of", "fused_pass", "provenance_of", "sae_config"]


def device_of(model: Any) -> str:
    """The device of a model's parameters, as text."""
    return str(model_device(model))


def fused_pass(model: Any, saes: Mapping[str, Any], tokens: Any, settings: EvalSettings, options: EngineOptions,
               cache: EvalCache | None) -> dict[str, SAEResult]:
    """One fused engine pass over ``saes``; through ``cache`` when given."""
    if cache is not None:
        return cache.evaluate(model, saes, tokens, settings, options)
    token_tensor = as_token_tensor(tokens)
    check_inputs(model, saes, token_tensor, settings)
    return run_pass(model, saes, token_tensor, settings, options, Scoring(by_summary=True))


def provenance_of(model: Any, sae: Any, tokens: torch.Tensor, settings: EvalSettings,
                  fingerprints: Fingerprints) -> Provenance:
    """Versions, device and content hashes of what one SAE's result was measured on."""
    return Provenance(
        pytest_saeval_version=__version__,
        sae_lens_version=dist_version("sae-lens"),
        transformer_lens_version=dist_version("transformer-lens"),
        torch_version=str(torch.__version__),
        python_version=platform.python_version(),
        device=device_of(model),
        sae_xxh3=fingerprints.sae(sae),
        model_xxh3=fingerprints.model(model),
        tokens_xxh3=fingerprints.tokens(tokens, settings.rows_needed),
    )


def sae_config(sae: Any) -> dict[str, JSON]:
    """The SAE's config as plain data: ``cfg.to_dict()``, else its sizes, architecture and hook."""
    cfg = getattr(sae, "cfg", None)
    to_dict = getattr(cfg, "to_dict", None)
    if callable(to_dict):
        try:
            found = to_plain(to_dict(), nonfinite="null")
        except Exception:  # noqa: BLE001 - a config that cannot be serialised is described below
            found = None
        if isinstance(found, dict):
            return found
    out: dict[str, object] = {}
    for name in ("d_in", "d_sae", "architecture", "dtype", "device"):
        value = getattr(cfg, name, None)
        out[name] = value() if callable(value) else value
    meta = getattr(cfg, "metadata", None)
    out["hook_name"] = getattr(meta, "hook_name", None)
    out["hook_head_index"] = getattr(meta, "hook_head_index", None)
    result = to_plain(out, nonfinite="null")
    assert isinstance(result, dict)
    return result
