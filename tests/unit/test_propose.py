"""saeval init: proposed gates (margins, rounding, directions) and the textual edit of the suite file."""

from __future__ import annotations

import difflib
import math
import random
import textwrap
from pathlib import Path

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.propose import (
    MarginPolicy,
    ProposedGate,
    SAEProposal,
    format_proposals,
    init_suite,
    propose_bounds,
    propose_gates,
    write_proposed_suite,
)
from pytest_saeval.run.outcome import EvalConfig, SuiteRun
from pytest_saeval.run.plan import Overrides, SAEEntry, entries_of
from pytest_saeval.run.session import Session
from pytest_saeval.spec.editor import GateText, edit_suite_text
from pytest_saeval.spec.gates import parse_gate
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.verdict import check_gate

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


def _result(metrics, sae_id="s"):
    from pytest_saeval.engine.results import SAEResult

    return SAEResult(sae_id=sae_id, hook_name="blocks.0.hook_resid_pre", hook_head_index=None, d_in=4, d_sae=8,
                     metrics=dict(metrics), feature_metrics={})


def _write(tmp_path: Path, text: str = SUITE, name: str = "suite.yaml") -> Path:
    path = tmp_path / "thresholds" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


EVAL_CFG = EvalConfig(suite="suite.yaml", dataset="t.npy", context_size=16, batch_size_prompts=4,
                      n_eval_reconstruction_batches=2, n_eval_sparsity_variance_batches=3,
                      exclude_special_tokens=True, library_version="x", saeval_version="y")


def _run(path: Path, metrics_by_id, entries=None, intervals=None) -> SuiteRun:
    suite = load_suite(path)
    entries = entries if entries is not None else entries_of(suite)
    results = {e.unique_id: _result(metrics_by_id[e.unique_id], e.unique_id) for e in entries}
    return SuiteRun(suite=suite, entries=entries, results=results, checks=[], eval_cfg=EVAL_CFG,
                    intervals=dict(intervals or {}))


MEASURED = {
    "explained_variance": 0.8012, "kl_div_score": 0.95, "ce_loss_score": 0.9, "ce_loss_increase": 0.05,
    "l0": 34.75, "frac_alive": 1.0, "freq_over_10_percent": 0.0,
}
INTERVALS = {
    "explained_variance": (0.7950, 0.8071), "kl_div_score": (0.94, 0.96), "ce_loss_score": (0.88, 0.92),
    "ce_loss_increase": (0.04, 0.06), "l0": (34.24, 35.29),
}


def _gates(proposal: SAEProposal) -> dict[str, tuple[str, ...]]:
    return {g.metric: g.expressions for g in proposal.gates}


# -- proposing -------------------------------------------------------------------------------------


def test_margins_directions_and_rounding(tmp_path):
    path = _write(tmp_path)
    run = _run(path, {"first": MEASURED, "second": MEASURED}, intervals={"first": INTERVALS, "second": INTERVALS})
    proposals = propose_gates([run])
    assert [p.sae_id for p in proposals] == ["first", "second"]
    gates = _gates(proposals[0])
    # margin max(2 * 0.00605, 0.005, 0.02 * 0.8012) = 0.016 below 0.7950 -> 0.779, rounded down to 0.01
    assert gates["explained_variance"] == (">= 0.77",)
    # 0.06 + max(0.02, 0.005, 0.001) = 0.08
    assert gates["ce_loss_increase"] == ("<= 0.08",)
    # a range: margin max(1.05, 3.475) -> [30.765, 38.765] rounded outward to whole numbers
    assert gates["l0"] == (">= 30", "<= 39")
    # no interval: the floors alone (0.02 * 1.0)
    assert gates["frac_alive"] == (">= 0.98",)
    assert gates["freq_over_10_percent"] == ("<= 0.005",)
    assert gates["kl_div_score"] == (">= 0.92",)  # 0.94 - 0.02
    # catalogue order
    assert [g.metric for g in proposals[0].gates] == [
        "kl_div_score", "ce_loss_score", "ce_loss_increase", "l0", "explained_variance", "frac_alive",
        "freq_over_10_percent"]


def test_proposed_bounds_always_pass_on_the_measured_value():
    rnd = random.Random(0)
    policy = MarginPolicy()
    for metric in ("explained_variance", "mse", "l0", "ce_loss_increase", "kl_div_score", "l2_ratio", "frac_alive"):
        for _ in range(300):
            value = rnd.choice([1, -1]) * 10 ** rnd.uniform(-6, 4)
            half = abs(value) * 10 ** rnd.uniform(-5, 0) if rnd.random() < 0.8 else 0.0
            shift = rnd.uniform(-half, half) * 0.3
            interval = (value - half + shift, value + half + shift) if half else None
            expressions = propose_bounds(metric, value, interval, policy)
            gate = parse_gate(metric, list(expressions))
            result = check_gate(gate, value)
            assert result.passed, (metric, value, interval, expressions)
            for e in expressions:  # readable: short plain decimals
                assert "e" not in e.lower() and len(e) < 24, e


def test_non_negative_range_drops_a_lower_bound_below_zero(tmp_path):
    path = _write(tmp_path)
    run = _run(path, {"first": {"l0": 0.5}, "second": {"l0": 0.5}}, intervals={"first": {"l0": (0.3, 0.7)}})
    proposals = propose_gates([run], metrics=("l0",))
    assert _gates(proposals[0])["l0"] == ("<= 1.1",)


def test_margin_policy_is_used(tmp_path):
    path = _write(tmp_path)
    run = _run(path, {"first": MEASURED, "second": MEASURED}, intervals={"first": INTERVALS})
    loose = propose_gates([run], metrics=("explained_variance",), policy=MarginPolicy(k=10, rel_floor=0))
    # 0.7950 - 10 * 0.00605 = 0.7345 -> step 0.01
    assert _gates(loose[0])["explained_variance"] == (">= 0.73",)
    with pytest.raises(SuiteError, match="abs_floor"):
        MarginPolicy(abs_floor=0)
    with pytest.raises(SuiteError, match="k must be"):
        MarginPolicy(k=-1)


def test_already_gated_metrics_are_proposed_and_baseline_gates_kept(tmp_path):
    text = SUITE.replace('explained_variance: ">= 0.99"', 'ce_loss_score: ">= baseline - 0.01"\n      mse: "<= 5"')
    text = text.replace("saes:\n", "baseline: ../baselines/b.json\nsaes:\n")
    path = _write(tmp_path, text)
    run = _run(path, {"first": {**MEASURED, "mse": 2.0}, "second": MEASURED})
    first, second = propose_gates([run], metrics=("l0",))
    assert set(_gates(first)) == {"l0", "mse", "frac_alive"}  # frac_alive comes from defaults.gates
    assert first.skipped == ("ce_loss_score: relative to the baseline, kept as written",)
    assert set(_gates(second)) == {"l0", "frac_alive"}


def test_non_finite_values_are_skipped_with_a_reason(tmp_path):
    path = _write(tmp_path)
    run = _run(path, {"first": {**MEASURED, "kl_div_score": math.nan}, "second": MEASURED})
    first = propose_gates([run])[0]
    assert "kl_div_score" not in _gates(first)
    assert first.skipped == ("kl_div_score: measured NaN for first, no gate proposed",)
    assert "skipped kl_div_score" in format_proposals([first])


def test_intervals_are_computed_when_not_given(tmp_path):
    """A run without intervals: the bootstrap runs on the result's sums (none here: floors only)."""
    path = _write(tmp_path)
    run = _run(path, {"first": MEASURED, "second": MEASURED})
    gates = _gates(propose_gates([run])[0])
    assert gates["explained_variance"] == (">= 0.78",)  # 0.8012 - 0.016 = 0.7852 -> 0.78


def test_several_saes_of_one_entry_get_the_loosest_bounds(tmp_path):
    path = _write(tmp_path)
    suite = load_suite(path)
    spec = suite.sae("first")
    entries = [SAEEntry(path, spec, f"first/{k}", k) for k in ("a", "b")] + [SAEEntry(path, suite.sae("second"), "second")]
    run = _run(path, {"first/a": {"l0": 20.0, "explained_variance": 0.9},
                      "first/b": {"l0": 40.0, "explained_variance": 0.7},
                      "second": {"l0": 10.0}}, entries)
    first = propose_gates([run], metrics=("l0", "explained_variance"))[0]
    gates = {g.metric: g for g in first.gates}
    assert gates["l0"].expressions == (">= 18", "<= 44")
    assert gates["explained_variance"].expressions == (">= 0.68",)
    assert gates["explained_variance"].n_saes == 2
    assert "loosest of 2 SAEs" in gates["explained_variance"].comment


def test_unknown_metric_is_a_suite_error(tmp_path):
    path = _write(tmp_path)
    with pytest.raises(SuiteError, match="did you mean 'explained_variance'"):
        propose_gates([_run(path, {"first": {}, "second": {}})], metrics=("explained_varience",))


# -- writing -----------------------------------------------------------------------------------


def _proposal(path, sae_id, **gates):
    return SAEProposal(path, sae_id, tuple(ProposedGate(m, tuple(e), 1.0, (0.9, 1.1)) for m, e in gates.items()))


def _changed_old_lines(old: str, new: str) -> list[str]:
    """Original lines that the edit removed or replaced."""
    a, b = old.splitlines(), new.splitlines()
    out = []
    for op, i1, i2, _, _ in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            out.extend(a[i1:i2])
    return out


def test_write_keeps_every_other_line_and_comment(tmp_path):
    path = _write(tmp_path)
    proposals = [
        _proposal(path, "first", l0=(">= 30", "<= 39"), kl_div_score=(">= 0.9",)),
        _proposal(path, "second", explained_variance=(">= 0.77",)),
    ]
    out = write_proposed_suite(path, proposals, tmp_path / "thresholds" / "new.yaml")
    new = out.read_text()
    assert path.read_text() == SUITE  # the original is untouched with --output
    assert _changed_old_lines(SUITE, new) == ['      l0:', '        - ">= 1"', '        - "<= 2"']
    assert '      l0: [">= 30", "<= 39"]  # measured 1 [0.9000, 1.100]\n' in new
    assert '      kl_div_score: ">= 0.9"  # measured 1 [0.9000, 1.100]\n' in new
    assert '    path: ../saes/second\n    gates:\n      explained_variance: ">= 0.77"' in new
    suite = load_suite(out)
    assert suite.sae("first").gate("explained_variance").text == ">= 0.99"
    assert suite.sae("first").gate("l0").text == ">= 30, <= 39"
    assert suite.sae("second").gate("frac_alive").text == ">= 0.5"  # defaults still merged
    assert suite.model.path == load_suite(path).model.path  # same folder: same resolved paths


def test_write_in_place_and_again_replaces_its_own_comment(tmp_path):
    path = _write(tmp_path)
    write_proposed_suite(path, [_proposal(path, "second", explained_variance=(">= 0.77",))])
    again = SAEProposal(path, "second", (ProposedGate("explained_variance", (">= 0.7",), 0.75, None),))
    write_proposed_suite(path, [again])
    text = path.read_text()
    assert text.count("explained_variance:") == 2
    assert '      explained_variance: ">= 0.7"  # measured 0.7500\n' in text
    assert "0.77" not in text


def test_a_hand_written_comment_on_a_replaced_gate_stays(tmp_path):
    path = _write(tmp_path)
    out = write_proposed_suite(path, [_proposal(path, "first", explained_variance=(">= 0.7",))])
    assert '      explained_variance: ">= 0.7"   # too strict on purpose\n' in out.read_text()


@pytest.mark.parametrize("gates_text", ["gates:", "gates: ~", "gates: {}", 'gates: {mse: "<= 4"}  # flow'])
def test_empty_null_and_flow_gate_blocks(tmp_path, gates_text):
    text = SUITE.replace("    path: ../saes/second\n", f"    path: ../saes/second\n    {gates_text}\n")
    path = _write(tmp_path, text)
    out = write_proposed_suite(path, [_proposal(path, "second", l0=(">= 3", "<= 9"), mse=("<= 2",))])
    new = out.read_text()
    suite = load_suite(out)
    assert suite.sae("second").gate("l0").text == ">= 3, <= 9"
    assert suite.sae("second").gate("mse").text == "<= 2"
    assert "# Demo thresholds: reviewed by the team." in new and "# team-wide" in new
    if "flow" in gates_text:
        assert "    gates:  # flow\n" in new


def test_crlf_files_stay_crlf(tmp_path):
    path = _write(tmp_path, SUITE.replace("\n", "\r\n"))
    out = write_proposed_suite(path, [_proposal(path, "second", l0=(">= 3",))])
    raw = out.read_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert load_suite(out).sae("second").gate("l0").text == ">= 3"


def test_file_without_trailing_newline(tmp_path):
    text = SUITE.replace("\ndefaults:\n  gates:\n    frac_alive: \">= 0.5\"   # team-wide\n", "")
    path = _write(tmp_path, text.rstrip("\n"))
    out = write_proposed_suite(path, [_proposal(path, "second", l0=(">= 3",))])
    assert load_suite(out).sae("second").gate("l0").text == ">= 3"


def test_flow_style_entry_and_unknown_id_are_errors(tmp_path):
    path = _write(tmp_path, SUITE.replace("  - id: second\n    path: ../saes/second\n",
                                          "  - {id: second, path: ../saes/second}\n"))
    with pytest.raises(SuiteError, match="flow style") as info:
        write_proposed_suite(path, [_proposal(path, "second", l0=(">= 3",))])
    assert info.value.location.line == 22
    with pytest.raises(SuiteError, match="no SAE entry with id 'third'"):
        edit_suite_text(SUITE, {"third": [GateText("l0", '">= 3"', "measured 3")]})


def test_proposals_for_other_files_are_ignored(tmp_path):
    path = _write(tmp_path)
    other = _write(tmp_path, name="other.yaml")
    out = write_proposed_suite(path, [_proposal(other, "second", l0=(">= 3",))], tmp_path / "thresholds" / "n.yaml")
    assert out.read_text() == SUITE


# -- end to end: saeval init on a tiny model ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_setup():
    import torch

    from tests.helpers import build_tiny_sae, tiny_hooked_transformer

    model = tiny_hooked_transformer(n_ctx=16)
    saes = {
        "first": build_tiny_sae(seed=1, hook_name="blocks.1.hook_resid_pre", d_sae=48),
        "second": build_tiny_sae(seed=2, architecture="topk", hook_name="blocks.0.hook_resid_post", d_sae=48),
    }
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, model.cfg.d_vocab, (12, 16), generator=gen)
    tokens[:, 0] = 0
    return model, saes, tokens


class _OverridingSession(Session):
    """A session that evaluates the tiny objects instead of what the suites name (as the fixtures' overrides)."""

    def __init__(self, overrides: Overrides) -> None:
        super().__init__()
        self.overrides = overrides

    def run(self, suites, selected=None, overrides=None):
        return super().run(suites, selected, overrides or self.overrides)


@pytest.fixture(scope="module")
def session(tiny_setup) -> Session:
    """One session for the module: it keeps each SAE's result, so later runs reuse the first evaluation."""
    model, saes, tokens = tiny_setup
    return _OverridingSession(Overrides(model=model, saes=saes, tokens=tokens))


def test_init_proposes_a_suite_that_passes_on_its_own_run(tmp_path, session):
    path = _write(tmp_path)
    first_run = session.run([load_suite(path)])[0]
    assert not first_run.passed  # explained_variance >= 0.99 and l0 in [1, 2] fail on random SAEs

    new_path = tmp_path / "thresholds" / "proposed.yaml"
    written, proposals = init_suite(path, output=new_path, session=session)
    assert written == new_path
    assert path.read_text() == SUITE
    assert {p.sae_id for p in proposals} == {"first", "second"}
    assert all(len(p.gates) >= 7 for p in proposals)
    new_text = new_path.read_text()
    assert _changed_old_lines(SUITE, new_text) == [
        '      l0:', '        - ">= 1"', '        - "<= 2"', '      explained_variance: ">= 0.99"   # too strict on purpose']
    for comment in ("# Demo thresholds: reviewed by the team.", "# a local folder", "# the layer-1 SAE",
                    "# the second SAE has no gates yet", "# team-wide"):
        assert comment in new_text

    suite = load_suite(new_path)
    rerun = session.run([suite])[0]
    assert rerun.checks and rerun.passed, [c.message for c in rerun.checks if not c.passed]
    assert {c.gate.metric for c in rerun.checks if c.sae_id == "second"} >= {"l0", "explained_variance", "frac_alive"}
    # a measured interval went into the comments
    assert "# measured" in new_text and "[" in new_text.split("# measured", 1)[1].splitlines()[0]


def test_init_ignores_a_missing_baseline(tmp_path, session):
    text = SUITE.replace('explained_variance: ">= 0.99"', 'ce_loss_score: ">= baseline - 0.01"')
    text = text.replace("saes:\n", "baseline: ../baselines/missing.json\nsaes:\n")
    path = _write(tmp_path, text)
    _, proposals = init_suite(path, session=session, metrics=("l0",))
    assert proposals[0].skipped == ("ce_loss_score: relative to the baseline, kept as written",)
    assert 'ce_loss_score: ">= baseline - 0.01"' in path.read_text()
    assert textwrap.dedent(path.read_text()).count("# measured") == 4  # l0 + frac_alive for each SAE


def test_intervals_carried_by_the_run_are_used(tmp_path):
    path = _write(tmp_path)
    run = _run(path, {"first": MEASURED, "second": MEASURED}, intervals={"first": {"explained_variance": (0.70, 0.90)}})
    gates = _gates(propose_gates([run], metrics=("explained_variance",))[0])
    # half-width 0.1: 0.70 - 2 * 0.1 = 0.50
    assert gates["explained_variance"] == (">= 0.5",)
