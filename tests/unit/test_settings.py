"""Evaluation settings and the device vocabulary: every value check and the rows a pass reads."""

from __future__ import annotations

import pytest

from pytest_saeval import EvalSettings
from pytest_saeval.errors import InputError


@pytest.mark.parametrize("field", ["batch_size_prompts", "n_reconstruction_batches", "n_sparsity_batches"])
@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_bad_settings(field, value):
    with pytest.raises(InputError, match=field):
        EvalSettings(**{field: value})
