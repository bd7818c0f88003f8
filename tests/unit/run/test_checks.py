"""gate_mode: point (the value decides) or interval (only a whole interval on the wrong side fails)."""

from __future__ import annotations

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.run.checks import check_one
from pytest_saeval.spec.loader import load_suite

SUITE = """\
model:
  path: model
data:
  tokens: tokens.npy
{mode}saes:
  - id: a
    path: sae
    gates:
      explained_variance: ">= 0.80"
      l0: "<= 60"
"""


def _suite(tmp_path, mode_line: str):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(mode=mode_line))
    return load_suite(path)


@pytest.mark.parametrize(("mode_line", "passes"), [("", False), ("gate_mode: point\n", False),
                                                     ("gate_mode: interval\n", True)])
def test_interval_straddling_the_bound(tmp_path, mode_line, passes):
    suite = _suite(tmp_path, mode_line)
    gate = suite.sae("a").gate("explained_variance")
    check = check_one(suite, "a", gate, {"explained_variance": 0.79}, None,
                      intervals={"explained_variance": (0.78, 0.81)})
    assert check.passed is passes
    assert "0.79" in check.message and "[0.78" in check.message


def test_interval_mode_still_fails_when_the_whole_interval_is_below(tmp_path):
    suite = _suite(tmp_path, "gate_mode: interval\n")
    gate = suite.sae("a").gate("explained_variance")
    check = check_one(suite, "a", gate, {"explained_variance": 0.70}, None,
                      intervals={"explained_variance": (0.68, 0.72)})
    assert not check.passed


def test_interval_mode_without_an_interval_checks_the_value(tmp_path):
    suite = _suite(tmp_path, "gate_mode: interval\n")
    gate = suite.sae("a").gate("l0")
    assert not check_one(suite, "a", gate, {"l0": 61.0}, None, intervals={}).passed
    assert check_one(suite, "a", gate, {"l0": 59.0}, None, intervals=None).passed


def test_bad_gate_mode_is_a_located_suite_error(tmp_path):
    with pytest.raises(SuiteError) as info:
        _suite(tmp_path, "gate_mode: strict\n")
    message = str(info.value)
    assert "suite.yaml:5" in message and "gate_mode" in message and "Fix:" in message
