"""pytest-saeval: gate trained sparse autoencoders in CI.

Public names are resolved lazily so that ``import pytest_saeval`` (and the pytest plugin) never
imports torch, TransformerLens or SAE Lens at import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_saeval.versions import __version__

_LAZY = {
    "evaluate": ("pytest_saeval.engine.evaluate", "evaluate"),
    "EngineOptions": ("pytest_saeval.engine.evaluate", "EngineOptions"),
    "SAEResult": ("pytest_saeval.engine.results", "SAEResult"),
    "SAELike": ("pytest_saeval.engine.protocols", "SAELike"),
    "EvalSettings": ("pytest_saeval.settings", "EvalSettings"),
    "SaevalError": ("pytest_saeval.errors", "SaevalError"),
    "METRICS": ("pytest_saeval.catalogue", "METRICS"),
    "load_suite": ("pytest_saeval.spec.loader", "load_suite"),
    "run_suites": ("pytest_saeval.run.session", "run_suites"),
    "RunOptions": ("pytest_saeval.run.session", "RunOptions"),
}

__all__ = [
    "METRICS",
    "EngineOptions",
    "EvalSettings",
    "RunOptions",
    "SAELike",
    "SAEResult",
    "SaevalError",
    "__version__",
    "evaluate",
    "load_suite",
    "run_suites",
]

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.catalogue import METRICS
    from pytest_saeval.engine.evaluate import EngineOptions, evaluate
    from pytest_saeval.engine.protocols import SAELike
    from pytest_saeval.engine.results import SAEResult
    from pytest_saeval.errors import SaevalError
    from pytest_saeval.run.session import RunOptions, run_suites
    from pytest_saeval.settings import EvalSettings
    from pytest_saeval.spec.loader import load_suite


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pytest_saeval' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
