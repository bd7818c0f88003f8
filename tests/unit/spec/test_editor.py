"""Textual edits of a suite file: gates written into SAE entries' ``gates:`` blocks, every other line,
comment and blank line left byte for byte (``saeval init`` end to end: ``tests/unit/test_propose.py``)."""

from __future__ import annotations

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.spec.editor import MEASURED, GateText, edit_suite_text

TEXT = """\
model: {name: gpt2}   # the model
data: {tokens: t.npy}

saes:
  - id: a
    path: a            # first
    gates:
      l0: "<= 60"      # reviewed by hand
      mse: "<= 2"

  - id: b
    path: b
"""


def _gate(metric: str, value: str, comment: str = "measured 1") -> GateText:
    return GateText(metric, value, comment)


def test_a_gate_on_a_gated_metric_replaces_only_its_value() -> None:
    new = edit_suite_text(TEXT, {"a": [_gate("mse", '"<= 1.5"')]})
    assert new == TEXT.replace('      mse: "<= 2"\n', '      mse: "<= 1.5"  # measured 1\n')


def test_a_hand_written_comment_stays_and_an_own_comment_is_replaced() -> None:
    new = edit_suite_text(TEXT, {"a": [_gate("l0", '[">= 1", "<= 9"]')]})
    assert new == TEXT.replace('      l0: "<= 60"      # reviewed by hand\n', '      l0: [">= 1", "<= 9"]      # reviewed by hand\n')
    once = edit_suite_text(TEXT, {"a": [_gate("mse", '"<= 1.5"', "measured 1")]})
    twice = edit_suite_text(once, {"a": [_gate("mse", '"<= 1.2"', "measured 0.9")]})
    assert twice == TEXT.replace('      mse: "<= 2"\n', '      mse: "<= 1.2"  # measured 0.9\n')
    assert MEASURED == "# measured"


def test_new_gates_follow_the_existing_ones_at_their_indentation() -> None:
    new = edit_suite_text(TEXT, {"a": [_gate("cossim", '">= 0.9"'), _gate("l1", '"<= 40"')]})
    assert new == TEXT.replace('      mse: "<= 2"\n',
                               '      mse: "<= 2"\n      cossim: ">= 0.9"  # measured 1\n      l1: "<= 40"  # measured 1\n')


def test_an_entry_without_gates_gets_a_gates_block() -> None:
    new = edit_suite_text(TEXT, {"b": [_gate("l0", '"<= 9"')]})
    assert new == TEXT + '    gates:\n      l0: "<= 9"  # measured 1\n'
    unterminated = TEXT.rstrip("\n")
    assert edit_suite_text(unterminated, {"b": [_gate("l0", '"<= 9"')]}) == unterminated + '\n    gates:\n      l0: "<= 9"  # measured 1\n'


@pytest.mark.parametrize("gates", ["gates:", "gates: ~", "gates: null", "gates: {}", 'gates: {mse: "<= 4"}'])
def test_empty_null_and_flow_gate_blocks_become_block_style(gates: str) -> None:
    text = TEXT.replace("    path: b\n", f"    path: b\n    {gates}\n")
    new = edit_suite_text(text, {"b": [_gate("l0", '"<= 9"')]})
    kept = '      mse: "<= 4"\n' if "mse" in gates else ""
    assert new == TEXT.replace("    path: b\n", f'    path: b\n    gates:\n{kept}      l0: "<= 9"  # measured 1\n')


def test_crlf_line_ends_are_kept() -> None:
    text = TEXT.replace("\n", "\r\n")
    new = edit_suite_text(text, {"b": [_gate("l0", '"<= 9"')], "a": [_gate("mse", '"<= 1"')]})
    assert "\n" not in new.replace("\r\n", "")
    assert new == (TEXT.replace('mse: "<= 2"', 'mse: "<= 1"  # measured 1')
                   + '    gates:\n      l0: "<= 9"  # measured 1\n').replace("\n", "\r\n")


def test_entries_without_proposals_are_left_alone() -> None:
    assert edit_suite_text(TEXT, {}) == TEXT
    assert edit_suite_text(TEXT, {"a": [], "nope": []}) == TEXT  # empty lists name nothing to write


@pytest.mark.parametrize(
    ("text", "gates", "message", "line", "key"),
    [
        (TEXT, {"c": [_gate("l0", '"<= 9"')]}, "no SAE entry with id 'c' in the suite file", None, "saes"),
        ("model: {name: gpt2}\n", {"a": [_gate("l0", '"<= 9"')]}, "the suite file has no saes: list", None, "saes"),
        ("saes: {a: 1}\n", {"a": [_gate("l0", '"<= 9"')]}, "the suite file has no saes: list", None, "saes"),
        ("saes: [\n", {"a": [_gate("l0", '"<= 9"')]}, "invalid YAML", None, None),
        (TEXT.replace("  - id: b\n    path: b\n", "  - {id: b, path: b}\n"), {"b": [_gate("l0", '"<= 9"')]},
         "cannot add gates to an SAE entry written in flow style", 11, None),
        (TEXT.replace("    path: b\n", "    path: b\n    gates: [l0]\n"), {"b": [_gate("l0", '"<= 9"')]},
         "gates must be a mapping", 13, None),
        ("common: &g\n  l0: '<= 1'\nsaes:\n  - id: a\n    path: a\n    gates: *g\n", {"a": [_gate("mse", '"<= 9"')]},
         "cannot edit a gates block that is a YAML alias", 6, None),
    ],
    ids=["unknown-id", "no-saes", "saes-not-a-list", "invalid-yaml", "flow-entry", "gates-not-a-mapping", "alias"],
)
def test_what_cannot_be_edited_is_a_located_suite_error(text: str, gates: dict[str, list[GateText]], message: str,
                                                       line: int | None, key: str | None) -> None:
    with pytest.raises(SuiteError, match=message) as info:
        edit_suite_text(text, gates, file="thresholds/demo.yaml")
    loc = info.value.location
    assert (loc.file, loc.line, loc.key) == ("thresholds/demo.yaml", line, key)
    assert info.value.fix
