"""An SAE Lens folder's cfg.json beyond its sizes: booleans, k, the hook and its head, where SAE Lens reads
them (metadata for version 6 on, the top level before), each refused with a fix that edits cfg.json."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.sae_lens_config import BOOL_KEYS, check_sae_lens_config

FILE = Path("/ckpt/cfg.json")


def _cfg(**top: object) -> dict[str, object]:
    metadata = {"sae_lens_version": "6.54.12", "hook_name": "blocks.0.hook_resid_pre"}
    return {"architecture": "topk", "d_in": 16, "d_sae": 32, "k": 4, "apply_b_dec_to_input": True,
            "metadata": metadata, **top}


def _meta(**values: object) -> dict[str, object]:
    cfg = _cfg()
    cfg["metadata"] = {**cfg["metadata"], **values}  # type: ignore[dict-item]
    return cfg


def test_a_config_as_sae_lens_writes_it_passes():
    check_sae_lens_config(_cfg(), FILE, d_sae=32, hook_given=False)
    check_sae_lens_config(_meta(hook_head_index=3), FILE, d_sae=32, hook_given=None)


@pytest.mark.parametrize(("cfg", "message", "fix"), [
    (_cfg(apply_b_dec_to_input="false"), 'apply_b_dec_to_input must be true or false, got "false" (a string)',
     'write "apply_b_dec_to_input": true or false, without quotes'),
    (_cfg(rescale_acts_by_decoder_norm=0), "rescale_acts_by_decoder_norm must be true or false, got 0", "true or false"),
    (_cfg(k="4"), 'must be a whole number from 1 to d_sae 32, got "4" (a string)', "set k to the number of latents"),
    (_cfg(k=0), "must be a whole number from 1 to d_sae 32, got 0", "set k"),
    (_cfg(k=33), "must be a whole number from 1 to d_sae 32, got 33", "set k"),
    (_cfg(k=4.0), "must be a whole number from 1 to d_sae 32, got 4.0", "set k"),
    (_meta(hook_name=5), "metadata.hook_name must name the hook the SAE reads, got 5",
     'set "hook_name" in its "metadata" to the TransformerLens hook'),
    (_meta(hook_name=""), 'metadata.hook_name must name the hook the SAE reads, got "" (a string)', "hook_name"),
    (_meta(hook_head_index="0"), 'metadata.hook_head_index must be null (all heads) or the index of one attention '
     'head, a whole number >= 0, got "0" (a string)', 'set "hook_head_index" to null, or to the head'),
    (_meta(hook_head_index=-1), "a whole number >= 0, got -1", "hook_head_index"),
    (_meta(hook_head_index=True), "a whole number >= 0, got true", "hook_head_index"),
    (_cfg(metadata=5), "metadata must be an object, got 5", '"metadata": {'),
])
def test_values_sae_lens_would_take_as_they_are_are_refused(cfg, message, fix):
    with pytest.raises(SourceError) as info:
        check_sae_lens_config(cfg, FILE, d_sae=32, hook_given=None)
    assert info.value.message.startswith(f"'{FILE}': ") and info.value.message.endswith(message)
    assert (info.value.fix or "").startswith("edit cfg.json") and fix in (info.value.fix or "")
    assert "factory" not in (info.value.fix or "")


@pytest.mark.parametrize("hook", [None, "missing"])
def test_a_missing_hook_is_refused_only_when_the_suite_names_none(hook):
    cfg = _meta(hook_name=None)
    if hook == "missing":
        del cfg["metadata"]["hook_name"]  # type: ignore[attr-defined]
    check_sae_lens_config(cfg, FILE, d_sae=32, hook_given=True)  # the entry's hook_name: stands in
    check_sae_lens_config(cfg, FILE, d_sae=32, hook_given=None)  # before the load: the load knows
    with pytest.raises(SourceError) as info:
        check_sae_lens_config(cfg, FILE, d_sae=32, hook_given=False)
    assert info.value.message == f"'{FILE}' names no hook (metadata.hook_name is {'null' if hook is None else 'missing'})"
    assert "hook_name: in the suite's SAE entry" in (info.value.fix or "")


def test_a_config_older_than_sae_lens_6_has_its_hook_at_the_top():
    old = {"d_in": 16, "d_sae": 32, "hook_point": "blocks.0.hook_resid_pre", "hook_point_head_index": None}
    check_sae_lens_config(old, FILE, d_sae=32, hook_given=False)
    with pytest.raises(SourceError, match=r"hook_point_head_index must be null .* got \"1\""):
        check_sae_lens_config({**old, "hook_point_head_index": "1"}, FILE, d_sae=32, hook_given=None)
    with pytest.raises(SourceError, match=r"cfg.json' names no hook \(hook_name is missing\)") as info:
        check_sae_lens_config({"d_in": 16, "d_sae": 32}, FILE, d_sae=32, hook_given=False)
    assert 'set "hook_name" at its top level' in (info.value.fix or "")
    # a version-6 file's top-level hook_name is not where SAE Lens reads it: its metadata is
    with pytest.raises(SourceError, match="metadata.hook_name is missing"):
        check_sae_lens_config({"d_in": 16, "d_sae": 32, "hook_name": "blocks.0.hook_resid_pre",
                               "metadata": {"sae_lens_version": "6.1.0"}}, FILE, d_sae=32, hook_given=False)


def test_the_boolean_keys_are_every_boolean_of_sae_lens_configs():
    from sae_lens.registry import SAE_CLASS_REGISTRY

    booleans = {f.name for _, config in SAE_CLASS_REGISTRY.values() for f in dataclasses.fields(config)
                if typing.get_type_hints(config).get(f.name) is bool}
    assert booleans <= set(BOOL_KEYS), sorted(booleans - set(BOOL_KEYS))
