"""A reviewed suite file for the tests of saeval init (proposals and writing)."""

from __future__ import annotations

from pathlib import Path

SUITE = """\
# Demo thresholds: reviewed by the team.
model:
  path: ../models/tiny   # a local folder
  device: cpu
data:
  tokens: ../data/eval_tokens.npy
  context_size: 16
  batch_size_prompts: 4
  n_reconstruction_batches: 2
  n_sparsity_batches: 3

saes:
  - id: first   # the layer-1 SAE
    path: ../saes/first
    gates:
      l0:
        - ">= 1"
        - "<= 2"
      explained_variance: ">= 0.99"   # too strict on purpose

  # the second SAE has no gates yet
  - id: second
    path: ../saes/second

defaults:
  gates:
    frac_alive: ">= 0.5"   # team-wide
"""


def write_suite(tmp_path: Path, text: str = SUITE, name: str = "suite.yaml") -> Path:
    path = tmp_path / "thresholds" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path
