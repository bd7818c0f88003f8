"""The SAE protocol: SAE Lens's SAE fits it as it is, so does a plain object with the documented members;
an object without ``encode``/``decode`` does not."""

from __future__ import annotations

from types import SimpleNamespace

from pytest_saeval.engine.protocols import SAELike
from tests.helpers import ProtocolSAE, build_tiny_sae


def test_an_sae_lens_sae_is_sae_like() -> None:
    assert isinstance(build_tiny_sae(d_in=8, d_sae=16), SAELike)
    assert isinstance(build_tiny_sae(architecture="topk", d_in=8, d_sae=16), SAELike)


def test_a_plain_object_with_the_protocols_members_is_sae_like() -> None:
    assert isinstance(ProtocolSAE(), SAELike)


def test_an_object_missing_a_member_is_not() -> None:
    class NoDecode:
        cfg = SimpleNamespace(d_in=1, d_sae=1, metadata=SimpleNamespace(hook_name="h", hook_head_index=None))
        W_dec = None

        def encode(self, x):
            return x

    assert not isinstance(NoDecode(), SAELike)
    assert not isinstance(object(), SAELike)
