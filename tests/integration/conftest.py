"""Shared fixtures for the integration tests of the plugin and the ``saeval`` command.

Tiny assets (two 2-layer GPT-2 models, a few SAEs, a token array) are built once per test session
and every pytester project points its suite files at them by absolute path. The heavy libraries are
imported here, before any ``pytester`` fixture takes its ``sys.modules`` snapshot, so in-process
runs share one import of torch, TransformerLens and SAE Lens.
"""

from __future__ import annotations

import pytest

from tests.helpers import save_tiny_gpt2, save_tiny_sae
from tests.integration.badinput.cases import Assets as TinyAssets
from tests.integration.badinput.cases import shared_assets
from tests.integration.plugin_helpers import CONTEXT, ROWS, Assets


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    import numpy as np
    import sae_lens  # noqa: F401
    import transformer_lens  # noqa: F401


    base = tmp_path_factory.mktemp("saeval-assets")
    model = save_tiny_gpt2(base / "model", seed=0)
    model2 = save_tiny_gpt2(base / "model2", seed=1)
    sae0 = save_tiny_sae(base / "sae0", architecture="standard", hook_name="blocks.0.hook_resid_pre", seed=1)
    sae1 = save_tiny_sae(base / "sae1", architecture="topk", hook_name="blocks.1.hook_resid_pre", seed=2)
    sae0b = save_tiny_sae(base / "sae0b", architecture="standard", hook_name="blocks.0.hook_resid_pre", seed=3)
    narrow = save_tiny_sae(base / "narrow", architecture="standard", hook_name="blocks.0.hook_resid_pre",
                           d_in=16, seed=4)
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 150, size=(ROWS, CONTEXT)).astype(np.int32)
    tokens[:, 0] = 0
    np.save(base / "tokens.npy", tokens)
    return Assets(model, model2, base / "tokens.npy", sae0, sae1, sae0b, narrow)


@pytest.fixture(scope="session")
def reference(assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, float]]:
    """Metrics of every (model, SAE) pair, evaluated here with the library directly:
    ``{("model" | "model2", "sae0" | "sae1" | "sae0b"): metrics}``."""
    from pytest_saeval.run.session import Session
    from pytest_saeval.spec.loader import load_suite

    folder = tmp_path_factory.mktemp("reference")
    session = Session()
    out: dict[tuple[str, str], dict[str, float]] = {}
    for model_name, model in (("model", assets.model), ("model2", assets.model2)):
        saes = "".join(f"  - id: {n}\n    path: {getattr(assets, n)}\n    gates:\n      l0: '>= 0'\n"
                       for n in ("sae0", "sae1", "sae0b"))
        path = folder / f"{model_name}.yaml"
        path.write_text(assets.model_block(model) + assets.data_block() + "saes:\n" + saes)
        (run,) = session.run([load_suite(path)])
        for uid, result in run.results.items():
            out[(model_name, uid)] = dict(result.metrics)
    return out


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyAssets:
    """The bad-input cases' tiny assets (one model, SAEs, tokens): what the ``saeval`` command's tests run on."""
    return shared_assets(tmp_path_factory)
