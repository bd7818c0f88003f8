"""Quiet library loading: the loading libraries' progress bars, info logs and routine warnings are
silenced while a run loads and evaluates (and restored after), for the ``saeval`` command and the plugin alike."""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["quiet_libraries"]

# Environment switches of the loading libraries, set only while the command runs.
_QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    # datasets logs a read error before raising it; the raised error becomes the run's one line
    "DATASETS_VERBOSITY": "critical",
}
# Warnings the loaders emit on every run that say nothing about the user's input.
_NOISY_WARNINGS = (
    (r".*HookedTransformer is deprecated.*", DeprecationWarning),
    (r".*TransformerBridge.*", DeprecationWarning),
    (r"The 'utils' module has been deprecated.*", DeprecationWarning),
    (r".*`torch_dtype` is deprecated.*", Warning),
    # SAE Lens's advice to load the model with the SAE's from_pretrained kwargs: models here are always loaded
    # without weight processing (what those kwargs ask for), so it says nothing about this run
    (r"\s*This SAE has non-empty model_from_pretrained_kwargs", UserWarning),
)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the loading libraries' progress bars, info logs and routine warnings; restore after.

    Only the libraries' own chatter is silenced: our errors are exceptions, and warnings other
    than the known routine ones still show. Libraries that are not imported yet are not imported here
    (that would cost seconds before a cheap error could be reported): they read the quiet settings
    from the environment when they are imported.
    """
    saved_env = {k: os.environ.get(k) for k in _QUIET_ENV}
    os.environ.update(_QUIET_ENV)
    restore: list[Callable[[], None]] = []
    try:
        with warnings.catch_warnings():
            for message, category in _NOISY_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            restore.extend(_quiet_transformers())
            restore.extend(_quiet_datasets())
            yield
    finally:
        for undo in reversed(restore):
            try:
                undo()
            except Exception:  # noqa: BLE001 - restoring a library's log level must never mask the run's result
                pass
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _quiet_transformers() -> list[Callable[[], None]]:
    if "transformers" not in sys.modules:  # the environment variables cover a later import
        return []
    try:
        from transformers.utils import logging as hf_logging

        hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
        hub_states: dict[str, bool] = hub_tqdm.progress_bar_states
    except Exception:  # noqa: BLE001 - not installed or another layout: nothing to silence
        return []
    undo: list[Callable[[], None]] = []
    saved_hub = dict(hub_states)

    def restore_hub() -> None:
        hub_states.clear()
        hub_states.update(saved_hub)

    undo.append(restore_hub)
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    def restore_transformers() -> None:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        restore_hub()

    undo.append(restore_transformers)
    return undo


def _quiet_datasets() -> list[Callable[[], None]]:
    if "datasets" not in sys.modules:  # the environment variable covers a later import
        return []
    try:
        from datasets.utils import logging as ds_logging
    except Exception:  # noqa: BLE001 - not installed or another layout: nothing to silence
        return []
    level, bars = ds_logging.get_verbosity(), ds_logging.is_progress_bar_enabled()
    ds_logging.set_verbosity(ds_logging.CRITICAL)
    ds_logging.disable_progress_bar()

    def restore() -> None:
        ds_logging.set_verbosity(level)
        if bars:
            ds_logging.enable_progress_bar()

    return [restore]
