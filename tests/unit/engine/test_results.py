"""Results: token means from per-sequence sums, results to plain data and back, and a module that imports no torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
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


def test_a_result_goes_to_plain_data_and_back() -> None:
    r = SAEResult("a", "blocks.0.attn.hook_z", 3, 8, 2, {"l0": 1.5, "mse": math.nan},
                  {"feature_density": [0.25, math.inf]})
    back = SAEResult.from_plain("a", r.to_plain())
    assert back.metrics["l0"] == 1.5 and math.isnan(back.metrics["mse"]) and back.feature_metrics == r.feature_metrics
    assert (back.hook_name, back.hook_head_index, back.d_in, back.d_sae) == ("blocks.0.attn.hook_z", 3, 8, 2)
    as_json = json.loads(json.dumps({**r.to_plain(), "metrics": {"l0": 1.5, "mse": None}, "hook_head_index": 3.0}))
    from_json = SAEResult.from_plain("b", as_json)  # JSON outputs: null for NaN, numbers as floats
    assert from_json.sae_id == "b" and math.isnan(from_json.metrics["mse"]) and from_json.hook_head_index == 3
    assert isinstance(from_json.hook_head_index, int)


@pytest.mark.parametrize("broken", [{"d_in": "x"}, {"metrics": None}, {"feature_metrics": {"f": "1,2"}}, {"d_sae": None},
                                    {"metrics": {"l0": "0.99"}}, {"metrics": {"l0": True}},
                                    {"feature_metrics": {"f": [1.0, "2"]}}])
def test_data_of_another_shape_raises_for_the_caller_to_name(broken: dict[str, object]) -> None:
    data = {**SAEResult("a", "h", None, 8, 2, {"l0": 1.0}, {"f": [1.0, 2.0]}).to_plain(), **broken}
    with pytest.raises((KeyError, TypeError, ValueError)):
        SAEResult.from_plain("a", data)
