"""The ``format:`` and ``hook_name:`` keys of an SAE entry: read from YAML, checked where they are written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.spec.fields import (
    MAX_COUNT,
    SAE_FORMATS,
    SAE_KEYS,
    Invalid,
    check_count,
    check_exclude,
    check_hook_name,
    check_sae_format,
)
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.suite import SAESpec


def _suite(tmp_path: Path, entry: str) -> Path:
    text = textwrap.dedent("""\
        model:
          name: gpt2
        data:
          tokens: eval.npy
        saes:
        """) + textwrap.indent(textwrap.dedent(entry), "  ")
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_format_and_hook_name_are_read(tmp_path):
    path = _suite(tmp_path, """\
        - id: eai
          path: checkpoints/run/layers.6.mlp.act_fn
          format: sparsify
          hook_name: blocks.6.mlp.hook_post
        - id: dl
          path: sweep/trainer_0
        """)
    suite = load_suite(path)
    eai, dl = suite.saes
    assert (eai.format, eai.hook_name) == ("sparsify", "blocks.6.mlp.hook_post")
    assert eai.path == tmp_path / "checkpoints/run/layers.6.mlp.act_fn"
    assert (dl.format, dl.hook_name) == (None, None)
    assert {"format", "hook_name"} <= set(SAE_KEYS)


@pytest.mark.parametrize(("entry", "key", "expected"), [
    ("- id: a\n  release: gpt2-small-res-jb\n  sae_id: blocks.8.hook_resid_pre\n  format: sparsify\n",
     "format", "'format' applies only to an SAE loaded from path:, not from release:"),
    ("- id: a\n  factory: mypkg.saes:load\n  hook_name: blocks.0.hook_resid_pre\n",
     "hook_name", "'hook_name' applies only to an SAE loaded from path:, not from factory:"),
    ("- id: a\n  path: sae\n  format: sparsfy\n", "format", "unknown SAE folder format 'sparsfy' (did you mean 'sparsify'?)"),
    ("- id: a\n  path: sae\n  format: 3\n", "format", "unknown SAE folder format 3"),
    ("- id: a\n  path: sae\n  hook_name: blocks..6.hook_resid_post\n", "hook_name", "is not a TransformerLens hook name"),
    ("- id: a\n  path: sae\n  hook_name: ''\n", "hook_name", "hook_name must be a non-empty string"),
])
def test_bad_values_point_at_their_key(tmp_path, entry, key, expected):
    path = _suite(tmp_path, entry)
    with pytest.raises(SuiteError) as excinfo:
        load_suite(path)
    err = excinfo.value
    assert expected in err.message and err.fix
    assert err.location.key == f"saes[0].{key}"
    assert err.location.line == _line(path, f"{key}:")
    assert err.location.file == str(path)


def test_a_misspelt_key_suggests_hook_name(tmp_path):
    with pytest.raises(SuiteError, match="unknown key 'hook' in saes\\[0\\] \\(did you mean 'hook_name'\\?\\)"):
        load_suite(_suite(tmp_path, "- id: a\n  path: sae\n  hook: blocks.0.hook_resid_pre\n"))


def test_the_checks_themselves():
    assert [check_sae_format(f" {f} ") for f in SAE_FORMATS] == list(SAE_FORMATS)
    assert check_hook_name(" blocks.0.attn.hook_z ") == "blocks.0.attn.hook_z"
    assert check_hook_name("hook_embed") == "hook_embed"
    for bad in ("blocks.0.", ".blocks", "blocks 0", "0blocks"):
        with pytest.raises(Invalid):
            check_hook_name(bad)


def test_spec_built_in_code_runs_the_same_checks():
    with pytest.raises(SuiteError, match="applies only to an SAE loaded from path"):
        SAESpec(id="a", factory="m:f", format="sae_lens")
    assert SAESpec(id="a", path=Path("x"), format=" dictionary_learning").format == "dictionary_learning"


@pytest.mark.parametrize(("value", "expected"), [(8, 8), (8.0, 8), (-0.0, None), (8.5, None), (True, None),
                                                 ("8", None), (float("inf"), None), (float("nan"), None),
                                                 (float(MAX_COUNT), MAX_COUNT), (float(MAX_COUNT + 1), None)])
def test_a_count_is_an_integer_as_json_schema_counts_one(value: object, expected: int | None) -> None:
    """``8.0`` is the integer 8 (the schema's ``integer`` accepts it); ``8.5``, booleans and strings are not."""
    if expected is None:
        with pytest.raises(Invalid):
            check_count("context_size", value)
    else:
        assert check_count("context_size", value) == expected
        assert type(check_count("context_size", value)) is int


def test_token_ids_are_integers_as_json_schema_counts_them() -> None:
    assert check_exclude([0.0, 50256.0, 7]) == (0, 50256, 7)
    assert all(type(i) is int for i in check_exclude([0.0, 50256.0]))  # type: ignore[union-attr]
    for bad in ([0.5], [True], [-1.0], ["1"], [float(2**63)]):
        with pytest.raises(Invalid):
            check_exclude(bad)
    with pytest.raises(Invalid, match="token ids are at most"):
        check_exclude([float(2**64)])


def test_a_float_for_a_count_loads_as_its_integer(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text("model:\n  name: gpt2\ndata:\n  tokens: eval.npy\n  context_size: 8.0\n  batch_size_prompts: 2.0\n"
                    "  exclude_special_tokens: [0.0, 50256.0]\nsaes:\n  - id: a\n    path: sae\n")
    data = load_suite(path).data
    assert (data.context_size, data.batch_size_prompts, data.exclude_special_tokens) == (8, 2, (0, 50256))
    assert type(data.context_size) is int and type(data.batch_size_prompts) is int
    path.write_text(path.read_text().replace("context_size: 8.0", "context_size: 8.5"))
    with pytest.raises(SuiteError, match=r"context_size must be a whole number >= 1, got a number \(8.5\)") as info:
        load_suite(path)
    assert info.value.location.key == "data.context_size" and info.value.location.line == 5
