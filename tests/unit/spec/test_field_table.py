"""The suite format's one table of fields: every key has a kind with a check, and the limits hold."""

from __future__ import annotations

import pytest

from pytest_saeval.spec import fields
from pytest_saeval.spec.fields import (
    MAX_COUNT,
    MAX_ID_LENGTH,
    MAX_TOKEN_ID,
    SECTIONS,
    Invalid,
    check_count,
    check_exclude,
    check_field,
    check_path,
    check_sae_id,
)


def test_key_lists_come_from_the_table() -> None:
    assert fields.TOP_KEYS == ("model", "data", "baseline", "saes", "defaults", "gate_mode")
    assert "trust_remote_code" in fields.MODEL_KEYS
    assert fields.COUNT_KEYS == ("context_size", "batch_size_prompts", "n_reconstruction_batches", "n_sparsity_batches")
    for section, entries in SECTIONS.items():
        names = [f.name for f in entries]
        assert len(names) == len(set(names)), section
        assert all(f.description.endswith(".") for f in entries), section


@pytest.mark.parametrize("good", ["a", "layer1-topk", "gpt2/res.8", "x_y_", ".hidden", "a..b", "a" * MAX_ID_LENGTH])
def test_good_sae_ids(good: str) -> None:
    assert check_sae_id(good) == good


@pytest.mark.parametrize("bad", ["a b", "a:b", "/abs", "a//b", "a/", "./a", "a/../b", "..", "a\\b", "a\0b", "é",
                                 "a" * (MAX_ID_LENGTH + 1), "a/" * 60 + "a"])
def test_bad_sae_ids(bad: str) -> None:
    with pytest.raises(Invalid):
        check_sae_id(bad)


def test_counts_and_token_ids_stay_in_range() -> None:
    assert check_count("n", MAX_COUNT) == MAX_COUNT
    with pytest.raises(Invalid, match="at most 2147483647"):
        check_count("n", MAX_COUNT + 1)
    assert check_exclude([0, MAX_TOKEN_ID]) == (0, MAX_TOKEN_ID)
    with pytest.raises(Invalid, match="token ids are at most"):
        check_exclude([MAX_TOKEN_ID + 1])


def test_paths_a_file_system_cannot_hold() -> None:
    assert check_path("tokens", "a/b.npy", "x") == "a/b.npy"
    assert check_path("tokens", "/" + "d/" * 1000 + "t.npy", "x")  # deep but short names: fine
    with pytest.raises(Invalid, match="a name of 256 bytes"):
        check_path("tokens", "a/" + "x" * 256, "x")
    with pytest.raises(Invalid, match="a name of 300 bytes"):
        check_path("tokens", "é" * 150, "x")  # bytes, not characters
    with pytest.raises(Invalid, match="NUL"):
        check_path("tokens", "a\0b", "x")
    with pytest.raises(Invalid, match="paths hold at most 4095"):
        check_path("tokens", "/".join(["d" * 200] * 30), "x")


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(Invalid) as info:
        check_field("data", "exclude_special_tokens", [[0] * 100000])
    assert len(info.value.message) < 300 and "characters)" in info.value.message


def test_every_field_kind_is_checked_or_structural() -> None:
    structural = {"gates", "model", "data", "dataset", "data_files", "saes", "defaults", "gate_mode"}
    for section, entries in SECTIONS.items():
        for f in entries:
            if f.kind in structural:
                assert check_field(section, f.name, {"x": 1}) == {"x": 1}
            else:
                with pytest.raises(Invalid):
                    check_field(section, f.name, object())
