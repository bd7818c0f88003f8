"""Hook-level helpers: SAEs grouped by hook and head, an SAE's input read from a hook activation and its
reconstruction or a zero ablation written back, where an SAE's weights live, and SAE Lens's hook_z
reshaping turned off only while the pass runs."""

from __future__ import annotations

import pytest
import torch

from pytest_saeval.engine.hooks import (
    RESID_HOOK_RE,
    Group,
    ablate,
    group_saes,
    plain_hook_z,
    replace,
    sae_device,
    sae_input,
)
from pytest_saeval.errors import InputError
from tests.helpers import ProtocolSAE, build_tiny_sae


def test_saes_are_grouped_by_hook_and_head_in_order_of_first_appearance() -> None:
    saes = {
        "a": ProtocolSAE(hook_name="blocks.1.hook_resid_pre"),
        "z0": ProtocolSAE(hook_name="blocks.0.attn.hook_z", hook_head_index=0),
        "b": ProtocolSAE(hook_name="blocks.1.hook_resid_pre"),
        "z1": ProtocolSAE(hook_name="blocks.0.attn.hook_z", hook_head_index=1),
        "e": ProtocolSAE(hook_name="hook_embed"),
    }
    groups = group_saes(saes)
    assert groups == [
        Group("blocks.1.hook_resid_pre", None, 1, ("a", "b")),
        Group("blocks.0.attn.hook_z", 0, 0, ("z0",)),
        Group("blocks.0.attn.hook_z", 1, 0, ("z1",)),
        Group("hook_embed", None, None, ("e",)),  # outside the blocks: no layer
    ]
    assert groups[1].key == ("blocks.0.attn.hook_z", 0)


def test_an_sae_without_a_hook_name_is_an_input_error_naming_it() -> None:
    with pytest.raises(InputError, match="has no hook name") as info:
        group_saes({"nameless": ProtocolSAE(hook_name=None)})
    assert info.value.subject.sae == "nameless"


def test_reading_and_writing_one_head_of_hook_z() -> None:
    act = torch.randn(2, 3, 4, 5)  # [batch, pos, head, d_head]
    assert torch.equal(sae_input(act, 2), act[:, :, 2])
    new = torch.ones(2, 3, 5)
    out = replace(act, 2, new)
    assert torch.equal(out[:, :, 2], new)
    assert torch.equal(out[:, :, [0, 1, 3]], act[:, :, [0, 1, 3]])  # the other heads as they were
    assert not torch.equal(act[:, :, 2], new)  # the activation itself is not changed
    assert torch.equal(replace(act, 2, sae_input(act, 2)), act)
    zeroed = ablate(act, 2)
    assert zeroed[:, :, 2].abs().sum() == 0 and torch.equal(zeroed[:, :, 3], act[:, :, 3])


def test_all_heads_are_flattened_and_written_back_in_shape() -> None:
    act = torch.randn(2, 3, 4, 5)
    flat = sae_input(act, None)
    assert flat.shape == (2, 3, 20)
    assert torch.equal(replace(act, None, flat), act)
    resid = torch.randn(2, 3, 8)
    assert sae_input(resid, None) is resid
    assert torch.equal(ablate(resid, None), torch.zeros_like(resid))


def test_residual_stream_hooks() -> None:
    assert all(RESID_HOOK_RE.match(f"blocks.3.hook_resid_{k}") for k in ("pre", "mid", "post"))
    assert not any(RESID_HOOK_RE.match(h) for h in ("blocks.3.hook_mlp_out", "blocks.3.attn.hook_z", "hook_embed"))


def test_sae_device_prefers_the_saes_own_then_its_decoder_then_the_fallback() -> None:
    fallback = torch.device("meta")
    assert sae_device(ProtocolSAE(), fallback) == torch.device("cpu")  # from W_dec
    with_device = ProtocolSAE()
    with_device.device = "cpu"  # type: ignore[attr-defined]
    assert sae_device(with_device, fallback) == torch.device("cpu")
    assert sae_device(object(), fallback) == fallback


def test_hook_z_reshaping_is_off_inside_and_back_on_after_an_error() -> None:
    sae = build_tiny_sae(hook_name="blocks.0.attn.hook_z", d_in=32, d_sae=16)
    sae.turn_on_forward_pass_hook_z_reshaping()
    plain = ProtocolSAE()  # no reshaping mode: left alone
    with plain_hook_z({"z": sae, "p": plain}):
        assert sae.hook_z_reshaping_mode is False
    assert sae.hook_z_reshaping_mode is True
    with pytest.raises(RuntimeError), plain_hook_z({"z": sae}):
        raise RuntimeError("the pass failed")
    assert sae.hook_z_reshaping_mode is True
