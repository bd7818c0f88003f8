"""What can be checked before any model is loaded, checked first: a wrong path, a token file of the
wrong shape or dtype or with too few rows, an SAE folder that is missing, of no known format, with a FIFO
or a folder where its config belongs, whose config sizes are no whole numbers >= 1 or disagree with its
weight shapes, a sparsify or dictionary_learning config its reader refuses (an architecture SAE Lens cannot
hold, an unknown ``dict_class``, a missing or too large ``k``) or whose hook cannot be mapped from its names
when the entry names no ``hook_name:``, or a factory module that does not import is reported in well under
a second, not after the model has loaded.

Nothing here imports torch: token files and SAE weights are read from their headers (``.npy``,
``.safetensors``), model folders from their ``config.json``, factories are imported but not called.
"""

from __future__ import annotations

from collections.abc import Iterable

from pytest_saeval.errors import InputError, SaevalError
from pytest_saeval.run.plan import Overrides, SAEEntry, located_in
from pytest_saeval.sources.dictionary_learning import dictionary_learning_folder_hook
from pytest_saeval.sources.factory import factory_function
from pytest_saeval.sources.formats import inspect_sae_folder
from pytest_saeval.sources.hf_folder import check_folder
from pytest_saeval.sources.sparsify import sparsify_folder_hook
from pytest_saeval.sources.tokens import inspect_token_file
from pytest_saeval.spec.suite import Suite

__all__ = ["preflight"]


def preflight(plans: Iterable[tuple[Suite, list[SAEEntry]]], overrides: Overrides) -> None:
    """Check every source of ``plans`` that can be checked without loading a model (the parts that
    ``overrides`` replace are not checked). Raises the first problem, located at its suite key."""
    for suite, entries in plans:
        if overrides.model is None:
            _model(suite)
        if overrides.tokens is None:
            _tokens(suite)
        if overrides.saes is None:
            for entry in entries:
                _sae(suite, entry)


def _model(suite: Suite) -> None:
    m = suite.model
    try:
        if m.path is not None:
            check_folder(m.path, trust_remote_code=m.trust_remote_code)
        elif m.factory is not None:
            factory_function(m.factory, base_dir=suite.path.parent, what="model")
    except SaevalError as e:
        raise located_in(e, suite, m.line_of(m.kind), f"model.{m.kind}") from e


def _tokens(suite: Suite) -> None:
    d = suite.data
    if d.tokens is None:
        return
    try:
        info = inspect_token_file(d.tokens)
    except SaevalError as e:
        raise located_in(e, suite, d.line_of("tokens"), "data.tokens") from e
    if info is None:
        return
    rows, width = info.shape
    if width < d.context_size:
        error = InputError(f"token file '{info.path}' has rows of {width} tokens, fewer than context_size {d.context_size}",
                           fix=f"set data.context_size to {width} or less, or save longer rows")
        raise located_in(error, suite, d.line_of("tokens"), "data.tokens")
    if rows < d.rows_needed:
        batches = max(d.n_reconstruction_batches, d.n_sparsity_batches)
        error = InputError(
            f"{rows} token rows, but {d.rows_needed} are needed ({batches} batches x {d.batch_size_prompts} rows)",
            fix="provide more rows, or lower batch_size_prompts / n_reconstruction_batches / n_sparsity_batches")
        raise located_in(error, suite, d.line_of("tokens"), "data.tokens")


def _sae(suite: Suite, entry: SAEEntry) -> None:
    spec = entry.spec
    key = f"saes[{entry.index}].{spec.kind}"
    try:
        if spec.path is not None:
            found = inspect_sae_folder(spec.path, spec.format)
            if found == "sparsify":  # the config readers of the other trainers (JSON only) and the hook mapping
                sparsify_folder_hook(spec.path, spec.hook_name)
            elif found == "dictionary_learning":
                dictionary_learning_folder_hook(spec.path, spec.hook_name)
        if spec.factory is not None:
            factory_function(spec.factory, base_dir=suite.path.parent, what="SAE")
    except SaevalError as e:
        raise located_in(e, suite, spec.line_of(spec.kind), key, entry.index) from e
