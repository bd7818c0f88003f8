"""What one suite produced (SuiteRun): pass/fail, intervals, suite-file order; partial runs of a suite (from
several workers) merged into one, in an order that does not depend on who evaluated what."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from pytest_saeval.plain import to_plain
from pytest_saeval.run.outcome import EvalConfig, Inputs, merge_runs
from pytest_saeval.run.provenance import Note, Provenance
from tests.helpers import eval_config, hand_run

SUITE = """\
model: {path: m}
data: {tokens: t.npy}
baseline: b.json
saes:
  - id: a
    path: a
    gates:
      l0: "<= 10"
      mse: "<= 1"
  - id: b
    path: b
    gates:
      l0: ">= 1"
      cossim: ">= baseline - 0.1"
  - id: c
    path: c
    gates:
      mse: "<= 1"
"""

A = {"l0": 4.0, "mse": 2.0}
B = {"l0": 3.0, "cossim": 0.9}
C = {"mse": 0.5}


def _write(tmp_path: Path, name: str = "suite.yaml", text: str = SUITE) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _prov(device: str) -> Provenance:
    return Provenance.from_dict({"device": device})


def _where(run) -> list[tuple[str, str]]:
    return [(c.sae_id, c.gate.metric) for c in run.checks]


def test_a_run_passes_when_every_checked_gate_passes(tmp_path: Path) -> None:
    path = _write(tmp_path)
    run = hand_run(path, {"a": A, "c": C}, recording=True)
    assert not run.passed  # a's mse = 2 > 1
    assert [c.passed for c in run.checks] == [True, False, True]
    assert hand_run(path, {"a": {"l0": 4.0, "mse": 0.5}}, recording=True).passed
    assert hand_run(path, {}, recording=True).passed  # nothing checked, nothing failed


def test_intervals_of_and_gate_rank(tmp_path: Path) -> None:
    run = hand_run(_write(tmp_path), {"a": A, "b": B}, recording=True, intervals={"a": {"l0": (3.0, 5.0)}})
    assert run.intervals_of("a") == {"l0": (3.0, 5.0)} and run.intervals_of("b") == {}
    assert run.gate_rank("a", "mse") == (0, "a", 1)
    assert run.gate_rank("b", "l0") == (1, "b", 0)
    assert run.gate_rank("b", "frac_alive") == (1, "b", 2)  # a metric the entry does not gate goes last
    assert run.gate_rank("zzz", "l0") == (3, "zzz", 0)  # an SAE the run does not have goes after all


def test_partial_runs_of_a_suite_merge_into_one_in_suite_file_order(tmp_path: Path) -> None:
    path = _write(tmp_path)
    worker1 = hand_run(path, {"c": C, "b": B}, recording=True, notes=[Note("b", "note b"), Note("c", "note c")],
                       provenance={"c": _prov("cuda:1"), "b": _prov("cuda:1")}, sae_cfgs={"c": {"d_sae": 4}},
                       intervals={"c": {"mse": (0.4, 0.6)}})
    worker0 = hand_run(path, {"a": A}, recording=True, notes=[Note("a", "note a")], provenance={"a": _prov("cuda:0")},
                       intervals={"a": {"l0": (3.0, 5.0)}})
    for parts in itertools.permutations([worker1, worker0]):
        (merged,) = merge_runs(parts)
        assert merged.suite == worker0.suite
        assert [e.unique_id for e in merged.entries] == ["a", "b", "c"]
        assert _where(merged) == [("a", "l0"), ("a", "mse"), ("b", "l0"), ("c", "mse")]
        assert [(uid, g.metric) for uid, g in merged.unchecked] == [("b", "cossim")]  # no baseline value yet
        assert sorted(merged.results) == ["a", "b", "c"] and merged.results["b"].metrics == B
        assert merged.provenance == {"a": _prov("cuda:0"), "b": _prov("cuda:1"), "c": _prov("cuda:1")}
        assert merged.sae_cfgs == {"c": {"d_sae": 4}}
        assert merged.intervals == {"a": {"l0": (3.0, 5.0)}, "c": {"mse": (0.4, 0.6)}}
        assert sorted(n.text for n in merged.notes) == ["note a", "note b", "note c"]
        assert not merged.passed


def test_a_part_sent_twice_is_counted_once(tmp_path: Path) -> None:
    path = _write(tmp_path)
    part = hand_run(path, {"b": B, "a": A}, recording=True, notes=[Note("a", "same note"), Note("b", "other note")])
    (merged,) = merge_runs([part, part, hand_run(path, {"a": A}, recording=True, notes=[Note("a", "same note")])])
    assert [e.unique_id for e in merged.entries] == ["a", "b"]
    assert _where(merged) == [("a", "l0"), ("a", "mse"), ("b", "l0")]
    assert [(uid, g.metric) for uid, g in merged.unchecked] == [("b", "cossim")]
    assert [n.text for n in merged.notes] == ["same note", "other note"]  # first seen first, each once


def test_suites_come_out_ordered_by_path(tmp_path: Path) -> None:
    z = hand_run(_write(tmp_path, "z.yaml"), {"a": A}, recording=True)
    a = hand_run(_write(tmp_path, "a.yaml"), {"c": C}, recording=True)
    m = hand_run(_write(tmp_path, "m.yaml"), {"b": B}, recording=True)
    merged = merge_runs([z, a, m])
    assert [r.suite.path.name for r in merged] == ["a.yaml", "m.yaml", "z.yaml"]
    assert [sorted(r.results) for r in merged] == [["c"], ["b"], ["a"]]
    assert merge_runs([]) == []


def test_the_first_part_gives_the_merged_eval_config(tmp_path: Path) -> None:
    path = _write(tmp_path)
    first = hand_run(path, {"a": A}, recording=True)
    second = dataclasses.replace(hand_run(path, {"c": C}, recording=True),
                                 eval_cfg=eval_config(suite=str(path), context_size=64))
    assert merge_runs([first, second])[0].eval_cfg == first.eval_cfg
    assert merge_runs([second, first])[0].eval_cfg == second.eval_cfg


def test_eval_config_round_trip() -> None:
    cfg = eval_config(exclude_special_tokens=[0, 2], dataset=None)
    data = cfg.to_dict()
    assert data["exclude_special_tokens"] == [0, 2] and data["n_eval_reconstruction_batches"] == 1
    assert EvalConfig.from_dict(data) == cfg
    assert EvalConfig.from_dict({**data, "unknown": 1}) == cfg  # extra keys are ignored
    with pytest.raises(KeyError):
        EvalConfig.from_dict({k: v for k, v in data.items() if k != "context_size"})


def test_inputs_key_tells_evaluations_apart_and_survives_plain_data() -> None:
    own, other = Inputs(), Inputs(("saeval_tokens from tests/conftest.py",), "m" * 32, "t" * 32)
    assert own.key() != other.key()
    assert Inputs(other.overridden, other.model_xxh3, "u" * 32).key() != other.key()
    assert Inputs.from_dict(to_plain(other)).key() == other.key()  # as outputs and shards record it
    assert Inputs.from_dict(None).key() == own.key()
