"""Version numbers: this package's, and those of the libraries that affect a result (pure Python;
read from the installed distributions' metadata, nothing is imported)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["NUMERIC_LIBRARIES", "__version__", "dist_version", "library_versions"]

__version__ = "0.1.0"
"""pytest-saeval's version (pyproject.toml reads it from here)."""

NUMERIC_LIBRARIES: tuple[str, ...] = ("torch", "transformer-lens", "sae-lens", "transformers")
"""Distributions whose versions can change a measured number."""


def dist_version(dist: str) -> str:
    """The installed version of distribution ``dist``, or ``"unknown"``."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def library_versions() -> dict[str, str]:
    """``{distribution: version}`` for pytest-saeval and :data:`NUMERIC_LIBRARIES`."""
    return {"pytest-saeval": __version__, **{name: dist_version(name) for name in NUMERIC_LIBRARIES}}
