"""The ``format:`` and ``hook_name:`` keys of an SAE entry: read from YAML, checked where they are written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.spec.fields import SAE_FORMATS, SAE_KEYS, Invalid, check_hook_name, check_sae_format
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
