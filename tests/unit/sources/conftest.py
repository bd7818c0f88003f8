"""Models shared by the sources tests: a tiny GPT-2 folder, its Hugging Face and
TransformerLens loads, and token rows for both."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pytest_saeval.sources.models import load_model
from tests.helpers import save_tiny_gpt2


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("models") / "tiny-gpt2")


@pytest.fixture(scope="module")
def hf_gpt2(gpt2_folder: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModelForCausalLM.from_pretrained(gpt2_folder, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def hooked(gpt2_folder: Path):
    return load_model(path=gpt2_folder, device="cpu")


@pytest.fixture(scope="module")
def sample_tokens() -> torch.Tensor:
    return torch.randint(0, 160, (2, 24), generator=torch.Generator().manual_seed(1))
