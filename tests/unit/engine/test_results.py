"""Results: token means from per-sequence sums, and a module that imports no torch."""

from __future__ import annotations

import math
import subprocess
import sys

import torch

from pytest_saeval.engine.results import SAEResult, SequenceStats, SequenceSums


def test_the_mean_is_all_sums_over_all_counts() -> None:
    sums = SequenceSums(torch.tensor([3.0, 5.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 3.0, 0.0]))
    assert sums.mean() == 8.0 / 4.0  # a token mean, not the mean of the row means (3 and 5/3)


def test_no_kept_token_is_nan() -> None:
    assert math.isnan(SequenceSums(torch.zeros(2), torch.zeros(2)).mean())


def test_a_result_has_empty_stats_by_default_and_keeps_them_out_of_its_repr() -> None:
    stats = SequenceStats(sparsity={"l0": SequenceSums(torch.ones(1), torch.ones(1))})
    r = SAEResult("a", "blocks.0.hook_resid_pre", None, 8, 16, {"l0": 1.0}, {}, stats)
    assert "sequence_stats" not in repr(r)
    bare = SAEResult("a", "blocks.0.hook_resid_pre", None, 8, 16, {"l0": 1.0}, {})
    assert bare.sequence_stats == SequenceStats() and bare.sequence_stats.sum_x is None


def test_importing_results_needs_no_torch() -> None:
    code = "import sys, pytest_saeval.engine.results; assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
