"""Where the cache folder is (pure Python): the results cache, the model-side cache and the timings
file all live in it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_CACHE_DIR", "default_cache_dir"]

DEFAULT_CACHE_DIR = ".saeval-cache"
"""Folder name used in the current directory when neither a folder nor ``SAEVAL_CACHE_DIR`` is given."""


def default_cache_dir() -> Path:
    """``$SAEVAL_CACHE_DIR`` when set, else ``.saeval-cache`` in the current directory."""
    env = os.environ.get("SAEVAL_CACHE_DIR")
    return Path(env) if env else Path.cwd() / DEFAULT_CACHE_DIR
