"""What the plugin reports after an early stop: only the gates that ran, and how many did not."""

from __future__ import annotations

from pathlib import Path

from pytest_saeval.plugin.ledger import GateLedger
from pytest_saeval.run.checks import GateCheck
from pytest_saeval.run.outcome import EvalConfig, SuiteRun
from pytest_saeval.spec.gates import parse_gate
from pytest_saeval.spec.suite import DataSpec, ModelSpec, SAESpec, Suite
from pytest_saeval.spec.verdict import check_gate


def _run(tmp_path: Path) -> SuiteRun:
    gates = tuple(parse_gate(m, ">= 0", file="s.yaml", line=1, key=m) for m in ("l0", "l1"))
    suite = Suite(path=tmp_path / "s.yaml", model=ModelSpec(name="gpt2"), data=DataSpec(tokens=Path("t.npy")),
                  saes=(SAESpec(id="a", path=Path("a"), gates=gates), SAESpec(id="b", path=Path("b"), gates=gates)))
    checks = [GateCheck(suite_path=suite.path, sae_id=uid, gate=g, result=check_gate(g, 1.0)) for uid in "ab" for g in gates]
    cfg = EvalConfig(suite=str(suite.path), dataset="t.npy", context_size=8, batch_size_prompts=1,
                     n_eval_reconstruction_batches=1, n_eval_sparsity_variance_batches=1, exclude_special_tokens=True,
                     library_version="x", saeval_version="y")
    return SuiteRun(suite=suite, entries=[], results={"a": object(), "b": object()},  # type: ignore[dict-item]
                    checks=checks, eval_cfg=cfg)


def test_only_the_gates_that_ran_are_kept(tmp_path: Path) -> None:
    ledger = GateLedger(collected=6, selected=4)
    run = _run(tmp_path)
    ledger.note(run.suite.path, "a", "l0", "setup", True)
    ledger.note(run.suite.path, "a", "l0", "call", False)  # failed: -x stops here
    (kept,) = ledger.only_ran([run])
    assert [(c.sae_id, c.gate.metric) for c in kept.checks] == [("a", "l0")]
    assert list(kept.results) == ["a"]  # SAE b's gates never ran: no output, no baseline
    assert ledger.lines() == ["6 gates collected: 2 deselected (-k, -m or deselection), 3 not run (pytest stopped "
                              "early: -x, --maxfail, a collection error or an interruption); the summary, outputs and baselines cover the "
                              "1 that ran"]


def test_nothing_is_said_when_every_gate_ran_and_workers_add_up(tmp_path: Path) -> None:
    ledger = GateLedger()
    for worker in ({"collected": 4, "selected": 4, "reported": 3}, {"collected": 4, "selected": 4, "reported": 1}):
        ledger.add_remote(worker)
    assert (ledger.collected, ledger.selected, ledger.reported) == (4, 4, 4)
    assert ledger.lines() == []
    assert ledger.only_ran([_run(tmp_path)]) == []  # a controller's own item runs: none


def test_a_suite_without_gates_is_named_with_what_to_do_and_workers_report_it_once() -> None:
    ledger = GateLedger()
    for _ in range(2):  # every worker collects every suite
        ledger.add_remote(GateLedger(gateless={"thresholds/new.yaml": 1, "thresholds/two.yaml": 2}).to_wire())
    assert ledger.lines() == [
        "thresholds/new.yaml: no gates, so nothing of it is a test (1 SAE); `saeval init thresholds/new.yaml` "
        "proposes gates from one evaluation",
        "thresholds/two.yaml: no gates, so nothing of it is a test (2 SAEs); `saeval init thresholds/two.yaml` "
        "proposes gates from one evaluation"]
