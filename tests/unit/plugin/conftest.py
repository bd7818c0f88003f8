"""A pytester project with suite files (pure Python to collect: nothing is loaded), collected in-process."""

from __future__ import annotations

from pathlib import Path

import pytest


def suite_text(model: str, saes: dict[str, str], *, batch: int = 2) -> str:
    """A suite on the model folder ``model`` (it need not exist: collection loads nothing) with one gate line
    per SAE id."""
    body = "".join(f"  - id: {uid}\n    path: saes/{uid}\n    gates:\n" + "".join(f"      {g}\n" for g in gates.split("; "))
                   for uid, gates in saes.items())
    return (f"model:\n  path: ../{model}\n  device: cpu\ndata:\n  tokens: ../t.npy\n  context_size: 8\n"
            f"  batch_size_prompts: {batch}\n  n_reconstruction_batches: 1\n  n_sparsity_batches: 1\nsaes:\n" + body)


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """``thresholds/a.yaml`` and ``b.yaml`` on model A (one fused-pass group), ``c.yaml`` on model B."""
    folder = pytester.path / "thresholds"
    folder.mkdir()
    (folder / "a.yaml").write_text(suite_text("A", {"x": "l0: '>= 1'; mse: '<= 1'", "y": "l0: '>= 1'"}))
    (folder / "b.yaml").write_text(suite_text("A", {"z": "l0: '>= 1'"}))
    (folder / "c.yaml").write_text(suite_text("B", {"w": "l0: '>= 1'"}))
    return pytester.path


def collect(pytester: pytest.Pytester, *args: str) -> list[pytest.Item]:
    """Collect the project in-process (with the plugin): the selected items (after deselection; their ``config``
    has the run's runner)."""
    return list(collected(pytester, *args).items)


def collected(pytester: pytest.Pytester, *args: str) -> pytest.Session:
    """The session of an in-process collection of the project (with the plugin)."""
    _, reprec = pytester.inline_genitems(*args)
    return reprec.getcall("pytest_collection_finish").session
