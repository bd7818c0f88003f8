"""Quiet loading: library noise (log levels, progress bars, known deprecation warnings) silenced while loading,
every other warning kept, and the libraries' state restored afterwards."""

from __future__ import annotations

import warnings

from pytest_saeval.run.quiet import quiet_libraries


def test_quiet_loading_silences_only_library_noise_and_restores_state() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with quiet_libraries():
                assert hf_logging.get_verbosity() == hf_logging.ERROR
                assert not hf_logging.is_progress_bar_enabled()
                warnings.warn("HookedTransformer is deprecated. Use TransformerBridge.", DeprecationWarning,
                              stacklevel=1)
                warnings.warn("a warning of our own", UserWarning, stacklevel=1)
        assert [str(w.message) for w in seen] == ["a warning of our own"]
        assert hf_logging.get_verbosity() == hf_logging.INFO
        assert hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity_warning()
