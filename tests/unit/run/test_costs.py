"""A group's cost: weight-file sizes in a folder, the estimate's formula, and timings that take over and
scale the estimates of untimed groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.run.costs import UNKNOWN_MODEL_BYTES, UNKNOWN_SAE_BYTES, estimate, group_costs, weight_bytes
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.timings import SuiteTiming


def _file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


def test_weight_bytes_counts_only_weight_files_directly_inside(tmp_path: Path) -> None:
    _file(tmp_path / "m" / "model.safetensors", 100)
    _file(tmp_path / "m" / "extra.bin", 30)
    _file(tmp_path / "m" / "config.json", 7)  # not weights
    _file(tmp_path / "m" / "sub" / "deep.pt", 1000)  # not directly inside
    assert weight_bytes(tmp_path / "m") == 130
    assert weight_bytes(tmp_path / "m" / "config.json") == 7  # a file: its own size


def test_weight_bytes_is_none_without_weights(tmp_path: Path) -> None:
    _file(tmp_path / "empty" / "cfg.json", 5)
    assert weight_bytes(tmp_path / "empty") is None
    assert weight_bytes(tmp_path / "nowhere") is None
    assert weight_bytes(None) is None


def _suite(tmp_path: Path, name: str, model: str, saes: str, *, ctx: int = 8, batch: int = 2) -> Suite:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"model:\n  {model}\ndata:\n  tokens: t.npy\n  context_size: {ctx}\n  batch_size_prompts: {batch}\n"
                    "  n_reconstruction_batches: 3\n  n_sparsity_batches: 1\nsaes:\n" + saes)
    return load_suite(path)


def test_the_estimate_is_tokens_times_model_passes_plus_sae_bytes(tmp_path: Path) -> None:
    _file(tmp_path / "model" / "w.safetensors", 1000)
    _file(tmp_path / "s1" / "sae_weights.safetensors", 40)
    saes = ("  - {id: a, path: s1, gates: {l0: '>= 0'}}\n"
            "  - {id: b, path: s2, gates: {l0: '>= 0'}}\n")  # s2 has no weights: the assumed size
    suite = _suite(tmp_path, "s", "path: model", saes)
    tokens = 8 * 2 * (3 + 1)
    assert estimate(suite, ["a"]) == tokens * (1000 * 2 + 40)
    assert estimate(suite, ["a", "b"]) == tokens * (1000 * 3 + 40 + UNKNOWN_SAE_BYTES)
    named = _suite(tmp_path, "n", "name: gpt2", "  - {id: r, release: rel, sae_id: 'x.*', gates: {l0: '>= 0'}}\n")
    # an id that a release regex expanded ("r/match") counts as its entry; a name-only model as the assumed size
    assert estimate(named, ["r/blocks.0"]) == tokens * (UNKNOWN_MODEL_BYTES * 2 + UNKNOWN_SAE_BYTES)


def test_without_timings_the_costs_are_the_estimates(tmp_path: Path) -> None:
    _file(tmp_path / "model" / "w.safetensors", 10)
    s = _suite(tmp_path, "s", "path: model", "  - {id: a, path: a, gates: {l0: '>= 0'}}\n")
    groups = [[("s.yaml", s, ["a"])], [("s.yaml", s, ["a"]), ("t.yaml", s, ["a"])]]
    found = group_costs(groups, {})
    assert found.basis == "estimate"
    assert found.costs == (estimate(s, ["a"]), 2 * estimate(s, ["a"]))


def test_timed_groups_cost_their_seconds_and_scale_the_others(tmp_path: Path) -> None:
    _file(tmp_path / "model" / "w.safetensors", 10)
    s = _suite(tmp_path, "s", "path: model", "  - {id: a, path: a, gates: {l0: '>= 0'}}\n")
    e = estimate(s, ["a"])
    groups = [[("a.yaml", s, ["a"]), ("b.yaml", s, ["a"])], [("c.yaml", s, ["a"])], [("d.yaml", s, ["a"])]]
    timings = {"a.yaml": SuiteTiming(3.0, 1), "b.yaml": SuiteTiming(1.0, 1), "c.yaml": SuiteTiming(2.0, 1)}
    found = group_costs(groups, timings)
    assert found.basis == "timings+estimate"
    assert found.costs[:2] == (4.0, 2.0)
    assert found.costs[2] == pytest.approx(e * (6.0 / (3 * e)))  # seconds per estimated unit of the timed groups
    every = group_costs(groups[:2], timings)
    assert every == type(found)((4.0, 2.0), "timings")


def test_a_group_is_timed_only_when_all_its_suites_are_and_instant_timings_give_no_scale(tmp_path: Path) -> None:
    _file(tmp_path / "model" / "w.safetensors", 10)
    s = _suite(tmp_path, "s", "path: model", "  - {id: a, path: a, gates: {l0: '>= 0'}}\n")
    groups = [[("a.yaml", s, ["a"]), ("b.yaml", s, ["a"])], [("c.yaml", s, ["a"])]]
    assert group_costs(groups, {"a.yaml": SuiteTiming(3.0, 1)}).basis == "estimate"
    cached = group_costs(groups, {"c.yaml": SuiteTiming(0.0, 1)})  # a cached run took no time
    assert cached.basis == "estimate" and cached.costs == (2 * estimate(s, ["a"]), estimate(s, ["a"]))
