"""pytest-saeval: gate trained sparse autoencoders in CI.

Public names are resolved lazily so that ``import pytest_saeval`` (and the pytest plugin) never
imports torch, TransformerLens or SAE Lens at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "evaluate": ("pytest_saeval.engine", "evaluate"),
    "SAEResult": ("pytest_saeval.engine", "SAEResult"),
    "EvalSettings": ("pytest_saeval.settings", "EvalSettings"),
    "SaevalError": ("pytest_saeval.errors", "SaevalError"),
    "METRICS": ("pytest_saeval.catalogue", "METRICS"),
    "load_suite": ("pytest_saeval.spec.loader", "load_suite"),
    "run_suites": ("pytest_saeval.session", "run_suites"),
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.catalogue import METRICS
    from pytest_saeval.engine import SAEResult, evaluate
    from pytest_saeval.errors import SaevalError
    from pytest_saeval.session import run_suites
    from pytest_saeval.settings import EvalSettings
    from pytest_saeval.spec.loader import load_suite


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pytest_saeval' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
