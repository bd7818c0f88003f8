"""Conftest overrides of the plugin's fixtures: which of ``saeval_model``, ``saeval_saes`` and
``saeval_tokens`` a conftest or module replaces where a test is, and their values with where each comes
from (results on them are an evaluation of their own, titled by those sources)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from pytest_saeval.run.plan import Overrides

__all__ = ["OVERRIDABLE", "override_values", "overridden"]

OVERRIDABLE: tuple[str, ...] = ("saeval_model", "saeval_saes", "saeval_tokens")
"""Fixtures whose conftest overrides replace what the suites load, for the gate items too."""

_PLUGIN_PACKAGE = "pytest_saeval.plugin"


def overridden(node: pytest.Item | pytest.Collector | Any) -> tuple[tuple[str, int], ...]:
    """The overridable fixtures that a conftest or module overrides where ``node`` is, with their definitions' ids."""
    fm = node.session._fixturemanager  # no public API says which definition of a fixture applies where
    found = []
    for name in OVERRIDABLE:
        defs = fm.getfixturedefs(name, node)
        if defs and not str(getattr(defs[-1].func, "__module__", "")).startswith(_PLUGIN_PACKAGE):
            found.append((name, id(defs[-1])))
    return tuple(found)


def override_values(request: pytest.FixtureRequest, names: Iterable[str]) -> Overrides:
    """The values of the overriding fixtures ``names`` where ``request`` is, with where each comes from."""
    fm = request.node.session._fixturemanager
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in names:
        values[name] = request.getfixturevalue(name)
        defs = fm.getfixturedefs(name, request.node)
        func = defs[-1].func if defs else None
        file = getattr(getattr(func, "__code__", None), "co_filename", None)
        where = Path(file) if file else None
        if where is not None and where.is_relative_to(request.config.rootpath):
            where = where.relative_to(request.config.rootpath)
        sources[name.removeprefix("saeval_")] = f"{name} from {where}" if where else name
    return Overrides(model=values.get("saeval_model"), saes=values.get("saeval_saes"),
                     tokens=values.get("saeval_tokens"), sources=tuple(sources.values()), origins=sources)
