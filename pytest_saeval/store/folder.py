"""Where the caches live, and whether their folder is still usable in a run (pure Python, so the plugin
and the command can say so without importing torch): the file-keyed answers, the results cache, the
model-side cache and the timings file of sharded runs all live in one folder."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

from pytest_saeval.errors import InputError
from pytest_saeval.store.entries import CacheWarning

__all__ = ["CACHE_FORMAT", "DEFAULT_CACHE_DIR", "FILE_KEYED_ENV", "CacheDisk", "default_cache_dir", "file_keyed_from_env"]

DEFAULT_CACHE_DIR = ".saeval-cache"
"""Folder name of the caches inside the project's root (or the current folder)."""

FILE_KEYED_ENV = "SAEVAL_FILE_KEYED"
"""Environment variable: ``0`` (or ``false``, ``no``, ``off``) turns the file-keyed answers off, so that a run
with warm caches loads the model and SAEs as it did before them (the other caches still work)."""

_SWITCH = {"": True, "1": True, "true": True, "yes": True, "on": True,
           "0": False, "false": False, "no": False, "off": False}

CACHE_FORMAT = 3
"""Bumped whenever the stored layout or the meaning of a stored number changes (old entries then miss)."""


def default_cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """``$SAEVAL_CACHE_DIR`` when set (``~`` expanded, as a shell would not where CI passes it literally; a blank value
    counts as unset), else ``.saeval-cache`` in ``root`` (the project's root), else in the current folder."""
    env = os.environ.get("SAEVAL_CACHE_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return Path(root if root is not None else Path.cwd()) / DEFAULT_CACHE_DIR


def file_keyed_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Whether :data:`FILE_KEYED_ENV` leaves the file-keyed answers on (unset: on). Raises
    :class:`~pytest_saeval.errors.InputError` for a value that is no switch."""
    raw = (os.environ if environ is None else environ).get(FILE_KEYED_ENV, "")
    found = _SWITCH.get(raw.strip().lower())
    if found is None:
        raise InputError(f"the environment variable is {raw!r}, neither on (1) nor off (0)", key=FILE_KEYED_ENV,
                         fix=f"set {FILE_KEYED_ENV}=0 to turn the file-keyed answers off, or unset it")
    return found


class CacheDisk:
    """Whether a cache folder is still used in this run. Its first problem (read-only, full, a file in its
    place, a folder where an entry should be) gives one :class:`CacheWarning` and turns the folder off for
    every cache that shares this object; the run goes on without it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.usable = True
        """False after the first problem."""
        self._on_fail: list[Callable[[], None]] = []

    def on_fail(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the folder is turned off (e.g. to keep a memory tier going without it)."""
        self._on_fail.append(callback)

    def fail(self, why: str) -> None:
        """Turn the folder off; say why once."""
        for callback in self._on_fail:
            callback()
        if self.usable:
            self.usable = False
            warnings.warn(f"saeval cache: {why}; the run goes on without the cache in {self.folder}",
                          CacheWarning, stacklevel=4)
