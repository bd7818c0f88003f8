"""Evaluation settings and the device vocabulary: every value check and the rows a pass reads."""

from __future__ import annotations

import pytest

from pytest_saeval import EvalSettings
from pytest_saeval.errors import InputError
from pytest_saeval.settings import is_device


@pytest.mark.parametrize("field", ["batch_size_prompts", "n_reconstruction_batches", "n_sparsity_batches"])
@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_bad_settings(field, value):
    with pytest.raises(InputError, match=field):
        EvalSettings(**{field: value})


def test_defaults_and_rows_needed() -> None:
    settings = EvalSettings()
    assert (settings.batch_size_prompts, settings.n_reconstruction_batches, settings.n_sparsity_batches) == (16, 10, 10)
    assert settings.exclude_special_tokens is True and settings.rows_needed == 160
    # both metric families start at row 0: the longer one decides
    assert EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=5).rows_needed == 20
    assert EvalSettings(batch_size_prompts=3, n_reconstruction_batches=7, n_sparsity_batches=1).rows_needed == 21


def test_excluded_token_ids_become_a_tuple_and_compare_equal() -> None:
    listed = EvalSettings(exclude_special_tokens=[0, 2])  # type: ignore[arg-type]
    assert listed.exclude_special_tokens == (0, 2)
    assert listed == EvalSettings(exclude_special_tokens=(0, 2)) and hash(listed) == hash(EvalSettings(exclude_special_tokens=(0, 2)))
    assert EvalSettings(exclude_special_tokens=False).exclude_special_tokens is False
    assert EvalSettings(exclude_special_tokens=()).exclude_special_tokens == ()


@pytest.mark.parametrize("bad", [(-1,), (True,), (1.0,), ("0",)])
def test_bad_excluded_token_ids(bad: tuple[object, ...]) -> None:
    with pytest.raises(InputError, match="exclude_special_tokens must be true, false or a list of token ids") as info:
        EvalSettings(exclude_special_tokens=bad)  # type: ignore[arg-type]
    assert info.value.location.key == "exclude_special_tokens" and "non-negative integers" in str(info.value)


def test_a_bool_is_not_a_batch_count() -> None:
    with pytest.raises(InputError, match="batch_size_prompts must be an integer, got True"):
        EvalSettings(batch_size_prompts=True)


@pytest.mark.parametrize(
    ("text", "ok"),
    [("auto", True), ("cpu", True), ("cuda", True), ("cuda:0", True), ("cuda:12", True), (" cpu ", True),
     ("gpu", False), ("cuda:", False), ("cuda:x", False), ("cuda:-1", False), ("CPU", False), ("", False),
     ("mps", False), (None, False), (0, False)],
)
def test_device_vocabulary(text: object, ok: bool) -> None:
    assert is_device(text) is ok
