"""The SAE protocol's shapes at run time: ``encode`` must give dense ``[..., d_sae]`` activations and
``decode`` ``[..., d_in]``; anything else is one InputError naming the SAE, not a failure deep in the pass."""

from __future__ import annotations

import pytest
import torch

from pytest_saeval import EvalSettings, evaluate
from pytest_saeval.errors import InputError
from tests.helpers import ProtocolSAE

SETTINGS = EvalSettings(batch_size_prompts=2, n_reconstruction_batches=1, n_sparsity_batches=1,
                        exclude_special_tokens=False)


@pytest.fixture(scope="module")
def model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=1, d_model=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=40, n_ctx=8,
                                  act_fn="relu")
    return HookedTransformer(cfg)


class TopKTuple(ProtocolSAE):
    """Like sparsify's SparseCoder: encode returns the top-k values and indices, not dense activations."""

    def encode(self, x):
        return torch.relu(x @ self.W_enc).topk(3, dim=-1)

    def decode(self, z):
        values, indices = z
        return torch.zeros(*values.shape[:-1], self.cfg.d_sae).scatter(-1, indices, values) @ self.W_dec


class Narrow(ProtocolSAE):
    """encode returns fewer features than cfg.d_sae says."""

    def encode(self, x):
        return super().encode(x)[..., :5]

    def decode(self, z):
        return z @ self.W_dec[:5]


class TopKValues(ProtocolSAE):
    """encode returns only the top-k values; the protocol's decode (``z @ W_dec``) could not even take them."""

    def encode(self, x):
        return torch.relu(x @ self.W_enc).topk(3, dim=-1).values


class WrongDecode(ProtocolSAE):
    """decode returns one value per feature instead of a reconstruction."""

    def decode(self, z):
        return z


@pytest.mark.parametrize(("sae", "part", "expected"), [
    (TopKTuple(d_in=16), "encode", "encode() of an input of shape [2, 8, 16] returned a tuple (torch.return_types.topk), not a tensor of shape [2, 8, 12]"),
    (Narrow(d_in=16), "encode", "returned a tensor of shape [2, 8, 5], not a tensor of shape [2, 8, 12]"),
    (TopKValues(d_in=16), "encode", "returned a tensor of shape [2, 8, 3], not a tensor of shape [2, 8, 12]"),
    (WrongDecode(d_in=16), "decode", "decode() of an input of shape [2, 8, 16] returned a tensor of shape [2, 8, 12]"),
], ids=["tuple", "narrow", "values-only", "decode"])
def test_encode_and_decode_shapes(model, sae, part, expected):
    tokens = torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError) as excinfo:
        evaluate(model, {"mine": sae}, tokens, SETTINGS)
    err = excinfo.value
    assert expected in err.message
    assert err.location.key == f"saes.mine.{part}"
    assert "dense feature activations [..., d_sae]" in err.fix and "factory protocol" in err.fix


def test_a_dense_encode_passes(model):
    tokens = torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(0))
    result = evaluate(model, {"ok": ProtocolSAE(d_in=16)}, tokens, SETTINGS)["ok"]
    assert result.metrics["l0"] > 0


class Raising(ProtocolSAE):
    """decode has a bug of its own (a factory's SAE class)."""

    def decode(self, z):
        raise KeyError("W_dec_folded")


def test_an_exception_in_the_saes_own_code_is_named_as_its_failure(model):
    with pytest.raises(InputError) as info:
        evaluate(model, {"mine": Raising(d_in=16)}, torch.randint(0, 40, (2, 8)), SETTINGS)
    assert info.value.subject.sae == "mine" and info.value.subject.part == "decode"
    assert "decode() of an input of shape [2, 8, 12]" in info.value.message
    assert "raised KeyError: 'W_dec_folded'" in info.value.message and "factory protocol" in (info.value.fix or "")
    assert "decode() work on [..., d_sae] tensors" in (info.value.fix or "")  # what decode is given


class SparseEncode(ProtocolSAE):
    """encode returns the right shape as a sparse tensor; decode copes with it (``torch.sparse.mm``)."""

    def encode(self, x):
        return super().encode(x).to_sparse()

    def decode(self, z):
        return z.to_dense() @ self.W_dec


def test_a_sparse_encoding_is_refused_before_decode_sees_it(model):
    """The protocol asks for dense activations: a sparse tensor of the right shape is named, not densified quietly."""
    with pytest.raises(InputError) as info:
        evaluate(model, {"mine": SparseEncode(d_in=16)}, torch.randint(0, 40, (2, 8)), SETTINGS)
    assert info.value.subject.part == "encode"
    assert info.value.message == ("encode() of an input of shape [2, 8, 16] returned a sparse tensor (torch.sparse_coo), "
                                  "not a dense one")
    assert (info.value.fix or "").startswith("return a dense tensor from encode() (e.g. .to_dense())")
