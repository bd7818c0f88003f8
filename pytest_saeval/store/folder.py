"""Where the caches live (pure Python, so the plugin and the command can say so without importing torch):
the results cache, the model-side cache and the timings file of sharded runs all live in one folder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_CACHE_DIR", "default_cache_dir"]

DEFAULT_CACHE_DIR = ".saeval-cache"
"""Folder name of the caches inside the project's root (or the current folder)."""


def default_cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """``$SAEVAL_CACHE_DIR`` when set, else ``.saeval-cache`` in ``root`` (the project's root), else in
    the current folder."""
    env = os.environ.get("SAEVAL_CACHE_DIR")
    if env:
        return Path(env)
    return Path(root if root is not None else Path.cwd()) / DEFAULT_CACHE_DIR
