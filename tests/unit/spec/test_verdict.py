"""Checking a value against a gate: pass or fail, the reviewer's one-line message, point and interval modes."""

from __future__ import annotations

import math

import pytest

from pytest_saeval.errors import BaselineError
from pytest_saeval.spec.gates import Gate, parse_gate
from pytest_saeval.spec.verdict import check_gate

NAN = float("nan")
INF = float("inf")


def gate(metric: str, spec: object) -> Gate:
    return parse_gate(metric, spec, file="s.yaml", line=5, key=f"saes[0].gates.{metric}")


def test_failing_message_short_by() -> None:
    result = check_gate(gate("explained_variance", ">= 0.80"), 0.7812)
    assert not result.passed
    assert result.message == "explained_variance = 0.7812, needs >= 0.80 (short by 0.0188)"
    assert result.reading == "0.7812, needs >= 0.80 (short by 0.0188)"  # for a line that names the metric already
    assert result.value == 0.7812
    assert result.metric == "explained_variance"
    assert result.bounds[0].threshold == 0.8 and not result.bounds[0].passed
    assert result.mode == "point" and result.interval is None


def test_passing_message() -> None:
    result = check_gate(gate("explained_variance", ">= 0.80"), 0.8312)
    assert result.passed
    assert result.message == "explained_variance = 0.8312 (>= 0.80)"


def test_exact_threshold_passes_non_strict_fails_strict() -> None:
    assert check_gate(gate("frac_alive", ">= 0.98"), 0.98).passed
    result = check_gate(gate("frac_alive", "> 0.98"), 0.98)
    assert not result.passed
    assert result.message == "frac_alive = 0.9800, needs > 0.98 (equal to the bound, needs strictly greater)"
    result = check_gate(gate("l0", "< 60"), 60)
    assert result.message == "l0 = 60, needs < 60 (equal to the bound, needs strictly less)"


def test_upper_bound_over_by() -> None:
    result = check_gate(gate("l0", [">= 10", "<= 60"]), 72.31)
    assert not result.passed
    assert [c.passed for c in result.bounds] == [True, False]
    assert result.message == "l0 = 72.31, needs <= 60 (over by 12.31)"
    result = check_gate(gate("l0", [">= 10", "<= 60"]), 35.123)
    assert result.passed
    assert result.message == "l0 = 35.12 (>= 10, <= 60)"


def test_every_failing_bound_is_reported() -> None:
    result = check_gate(gate("l0", [">= 10", ">= 20"]), 5.0)
    assert result.message == "l0 = 5, needs >= 10 and >= 20 (short by 5; short by 15)"


def test_near_miss_keeps_enough_digits() -> None:
    result = check_gate(gate("explained_variance", ">= 0.80"), 0.79999999)
    assert not result.passed
    shown = result.message.split(" = ")[1].split(",")[0]
    assert float(shown) < 0.8  # the value as shown visibly fails
    short = result.message.split("short by ")[1].rstrip(")")
    assert float(short) > 0
    assert result.message == "explained_variance = 0.79999999, needs >= 0.80 (short by 1.000e-08)"


def test_near_pass_on_strict_bound_keeps_enough_digits() -> None:
    result = check_gate(gate("explained_variance", "> 0.8"), 0.80000004)
    assert result.passed
    shown = float(result.message.split(" = ")[1].split(" ")[0])
    assert shown > 0.8


@pytest.mark.parametrize(("value", "word"), [(NAN, "NaN"), (INF, "inf"), (-INF, "-inf")])
def test_non_finite_never_passes(value: float, word: str) -> None:
    for spec in (">= 0.80", "<= 0.80", "> -1e300", "< 1e300"):
        result = check_gate(gate("explained_variance", spec), value)
        assert not result.passed
        assert all(not c.passed for c in result.bounds)
    result = check_gate(gate("explained_variance", ">= 0.80"), value)
    assert result.message == f"explained_variance = {word}, needs >= 0.80 ({word} never passes)"


def test_nan_message_lists_all_bounds() -> None:
    result = check_gate(gate("l0", [">= 10", "<= 60"]), NAN)
    assert result.message == "l0 = NaN, needs >= 10 and <= 60 (NaN never passes)"


def test_baseline_gate_messages() -> None:
    g = gate("ce_loss_score", ">= baseline - 0.01")
    result = check_gate(g, 0.9201, 0.9412)
    assert not result.passed
    assert result.bounds[0].threshold == pytest.approx(0.9312)
    assert result.baseline_value == 0.9412
    assert result.message == "ce_loss_score = 0.9201, needs >= baseline - 0.01 (= 0.9312) (short by 0.0111)"
    result = check_gate(g, 0.95, 0.9412)
    assert result.passed
    assert result.message == "ce_loss_score = 0.9500 (>= baseline - 0.01 (= 0.9312))"
    assert check_gate(gate("mse", "<= baseline * 1.1"), 1.05, 1.0).passed
    assert not check_gate(gate("mse", "<= baseline * 1.1"), 1.15, 1.0).passed


def test_baseline_gate_without_baseline_value_raises() -> None:
    g = gate("ce_loss_score", ">= baseline - 0.01")
    with pytest.raises(BaselineError) as info:
        check_gate(g, 0.93, None)
    message = str(info.value)
    assert message.startswith("s.yaml:5: saes[0].gates.ce_loss_score: ")
    assert "no baseline value for ce_loss_score" in message
    assert "--saeval-update-baseline" in message and "saeval run --update-baseline" in message
    with pytest.raises(BaselineError, match="baseline value of NaN"):
        check_gate(g, 0.93, NAN)


def test_fixed_gate_ignores_missing_baseline() -> None:
    assert check_gate(gate("l0", ">= 1"), 3.0, None).passed


def test_interval_shown_in_point_mode() -> None:
    result = check_gate(gate("explained_variance", ">= 0.80"), 0.7812, interval=(0.7770, 0.7853))
    assert result.interval == (0.7770, 0.7853)
    assert result.message == "explained_variance = 0.7812 [0.7770, 0.7853], needs >= 0.80 (short by 0.0188)"
    # point mode: the value decides even when the interval reaches the bound
    result = check_gate(gate("explained_variance", ">= 0.80"), 0.7912, interval=(0.7770, 0.8053))
    assert not result.passed


def test_interval_mode_fails_only_when_whole_interval_is_wrong() -> None:
    g = gate("explained_variance", ">= 0.80")
    result = check_gate(g, 0.7912, interval=(0.7770, 0.8053), mode="interval")
    assert result.passed
    assert result.message == "explained_variance = 0.7912 [0.7770, 0.8053] (>= 0.80; the interval reaches the bound)"
    result = check_gate(g, 0.7812, interval=(0.7770, 0.7853), mode="interval")
    assert not result.passed
    assert result.message == (
        "explained_variance = 0.7812 [0.7770, 0.7853], needs >= 0.80 "
        "(the whole interval is below; upper end short by 0.0147)"
    )
    upper = gate("l0", "<= 60")
    assert check_gate(upper, 61.0, interval=(59.0, 63.0), mode="interval").passed
    result = check_gate(upper, 62.0, interval=(61.0, 63.0), mode="interval")
    assert not result.passed
    assert "the whole interval is above; lower end over by 1" in result.message
    assert check_gate(upper, 55.0, interval=(50.0, 58.0), mode="interval").message == "l0 = 55 [50, 58] (<= 60)"


def test_interval_mode_strict_bound_at_edge() -> None:
    result = check_gate(gate("l0", "> 10"), 9.0, interval=(8.0, 10.0), mode="interval")
    assert not result.passed
    assert "upper end equals the bound" in result.message


def test_interval_mode_non_finite_never_passes() -> None:
    g = gate("explained_variance", ">= 0.80")
    assert not check_gate(g, NAN, interval=(0.7, 0.9), mode="interval").passed
    result = check_gate(g, 0.85, interval=(0.7, INF), mode="interval")
    assert not result.passed
    assert "[0.7000, inf]" in result.message and "not finite" in result.message
    result = check_gate(g, 0.85, interval=(NAN, NAN), mode="interval")
    assert not result.passed
    # point mode only looks at the value; the interval is displayed as is
    result = check_gate(g, 0.85, interval=(NAN, NAN))
    assert result.passed and "[NaN, NaN]" in result.message


def test_check_gate_argument_errors() -> None:
    g = gate("l0", ">= 1")
    with pytest.raises(ValueError, match="needs an interval"):
        check_gate(g, 2.0, mode="interval")
    with pytest.raises(ValueError, match="mode"):
        check_gate(g, 2.0, mode="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lo <= hi"):
        check_gate(g, 2.0, interval=(3.0, 1.0))
    with pytest.raises(TypeError):
        check_gate(g, "2.0")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        check_gate(g, True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        check_gate("l0: >= 1", 2.0)  # type: ignore[arg-type]


def test_int_values_are_accepted() -> None:
    result = check_gate(gate("total_tokens_eval_reconstruction", ">= 1000"), 12800)
    assert result.passed and isinstance(result.value, float)
    assert result.message == "total_tokens_eval_reconstruction = 12800 (>= 1000)"


def test_results_are_frozen() -> None:
    result = check_gate(gate("l0", ">= 1"), 2.0)
    with pytest.raises(AttributeError):
        result.passed = False  # type: ignore[misc]
    assert math.isfinite(result.value)
