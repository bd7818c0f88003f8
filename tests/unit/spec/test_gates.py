"""Gate expressions: grammar, bounds and the Gate / Bound dataclasses."""

from __future__ import annotations

import pickle

import pytest

from pytest_saeval.errors import BaselineError, SuiteError
from pytest_saeval.spec.fields import MAX_EXPRESSION_LENGTH, MAX_GATE_EXPRESSIONS
from pytest_saeval.spec.gates import GRAMMAR, Bound, Gate, parse_bound, parse_gate

NAN = float("nan")
INF = float("inf")


# ---------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("text", "op", "constant", "offset", "factor", "shown"),
    [
        (">= 0.8", ">=", 0.8, 0.0, 1.0, "0.8"),
        (">=0.80", ">=", 0.8, 0.0, 1.0, "0.80"),
        ("  >  10  ", ">", 10.0, 0.0, 1.0, "10"),
        ("<= 60", "<=", 60.0, 0.0, 1.0, "60"),
        ("< 1e-3", "<", 0.001, 0.0, 1.0, "1e-3"),
        ("< 2.5E+2", "<", 250.0, 0.0, 1.0, "2.5E+2"),
        (">= .5", ">=", 0.5, 0.0, 1.0, ".5"),
        (">= -2", ">=", -2.0, 0.0, 1.0, "-2"),
        (">= +3.", ">=", 3.0, 0.0, 1.0, "+3."),
        (">= baseline", ">=", None, 0.0, 1.0, "baseline"),
        (">=baseline", ">=", None, 0.0, 1.0, "baseline"),
        (">= baseline - 0.01", ">=", None, -0.01, 1.0, "baseline - 0.01"),
        (">= baseline-0.01", ">=", None, -0.01, 1.0, "baseline - 0.01"),
        ("<= baseline + 5", "<=", None, 5.0, 1.0, "baseline + 5"),
        ("<   baseline   *   1.1 ", "<", None, 0.0, 1.1, "baseline * 1.1"),
        ("> baseline * 1e-1", ">", None, 0.0, 0.1, "baseline * 1e-1"),
        ("<= baseline - -1", "<=", None, 1.0, 1.0, "baseline - -1"),
    ],
)
def test_parse_bound_accepts(text: str, op: str, constant: float | None, offset: float, factor: float, shown: str) -> None:
    bound = parse_bound(text)
    assert bound.op == op
    assert bound.constant == (pytest.approx(constant) if constant is not None else None)
    assert bound.offset == pytest.approx(offset)
    assert bound.factor == pytest.approx(factor)
    assert bound.text == shown
    assert bound.uses_baseline is (constant is None)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("0.8", "must start with an operator"),
        ("baseline", "must start with an operator"),
        ("=> 0.8", "operator must be one of"),
        ("== 1", "operator must be one of"),
        ("= 1", "operator must be one of"),
        ("!= 1", "operator must be one of"),
        (">=", "value is missing"),
        ("", "it is empty"),
        ("   ", "it is empty"),
        (">= nan", "finite number"),
        (">= inf", "finite number"),
        (">= Baseline", "lower case"),
        (">= baselin", ""),
        (">= baseline / 2", ""),
        (">= baseline + ", ""),
        (">= 0.8 0.9", ""),
        (">= 0.8 and <= 0.9", ""),
        (">> 1", ""),
        (">= 1,5", ""),
        (">= 2 * baseline", ""),
    ],
)
def test_parse_bound_rejects(text: str, hint: str) -> None:
    with pytest.raises(SuiteError) as info:
        parse_bound(text)
    message = str(info.value)
    assert repr(text) in message
    assert hint in message
    assert "Fix: " in message and "baseline - X" in message  # the grammar is the fix


@pytest.mark.parametrize("text", [">= 1e999", "<= baseline * 1e400"])
def test_parse_bound_rejects_overflow(text: str) -> None:
    with pytest.raises(SuiteError, match="not a finite number"):
        parse_bound(text)


def test_parse_bound_rejects_non_string() -> None:
    with pytest.raises(SuiteError, match="must be a string"):
        parse_bound(0.8)  # type: ignore[arg-type]


def test_parse_gate_single_and_list() -> None:
    gate = parse_gate("explained_variance", ">= 0.80", file="s.yaml", line=7, key="saes[0].gates.explained_variance")
    assert gate.metric == "explained_variance"
    assert len(gate.bounds) == 1 and gate.bounds[0].constant == 0.8
    assert (gate.text, gate.line, gate.file, gate.key) == (">= 0.80", 7, "s.yaml", "saes[0].gates.explained_variance")
    assert not gate.uses_baseline

    gate = parse_gate("l0", [">= 10", " <= 60 "], line=3)
    assert [b.op for b in gate.bounds] == [">=", "<="]
    assert gate.text == ">= 10, <= 60"
    assert gate.key == "l0"
    assert gate.describe() == ">= 10 and <= 60"

    gate = parse_gate("ce_loss_score", [">= baseline - 0.01", "<= 1"])
    assert gate.uses_baseline


@pytest.mark.parametrize("number", [0.8, 10, 0, -1.5])
def test_bare_number_is_an_error_with_the_expression_to_write(number: float) -> None:
    with pytest.raises(SuiteError) as info:
        parse_gate("l0", number, file="s.yaml", line=4, key="saes[0].gates.l0")
    message = str(info.value)
    assert message.startswith("s.yaml:4: saes[0].gates.l0: ")
    assert "bare number" in message
    assert f'">= {number}"' in message


def test_bare_number_inside_list_points_at_the_item() -> None:
    with pytest.raises(SuiteError) as info:
        parse_gate("l0", [">= 1", 60], file="s.yaml", line=4, key="saes[0].gates.l0", item_lines=[5, 6])
    assert str(info.value).startswith("s.yaml:6: saes[0].gates.l0[1]: ")
    assert '">= 60"' in str(info.value)


def test_bad_expression_inside_list_points_at_the_item() -> None:
    with pytest.raises(SuiteError) as info:
        parse_gate("l0", [">= 1", "=< 60"], file="s.yaml", line=4, key="saes[0].gates.l0", item_lines=[5, 6])
    message = str(info.value)
    assert message.startswith("s.yaml:6: saes[0].gates.l0[1]: cannot parse gate expression '=< 60'")
    assert GRAMMAR in message


@pytest.mark.parametrize(("spec", "text"), [(True, "must be a string"), (None, "must be a string"),
                                            ({"min": 1}, "must be a string"), ([], "empty list")])
def test_parse_gate_rejects_other_types(spec: object, text: str) -> None:
    with pytest.raises(SuiteError, match=text) as info:
        parse_gate("l0", spec, file="s.yaml", line=2, key="defaults.gates.l0")
    assert str(info.value).startswith("s.yaml:2: defaults.gates.l0: ")
    assert "Fix: " in str(info.value)


def test_unknown_metric_did_you_mean() -> None:
    with pytest.raises(SuiteError) as info:
        parse_gate("explained_varience", ">= 0.8", file="s.yaml", line=9, key="saes[1].gates.explained_varience")
    message = str(info.value)
    assert message.startswith("s.yaml:9: saes[1].gates.explained_varience: unknown metric")
    assert "did you mean 'explained_variance'" in message
    assert "Fix: " in message


def test_unknown_metric_without_close_match_lists_metrics() -> None:
    with pytest.raises(SuiteError) as info:
        parse_gate("accuracy", ">= 0.8")
    assert "unknown metric 'accuracy'" in str(info.value)
    assert "explained_variance" in str(info.value) and "frac_alive" in str(info.value)


def test_per_feature_metric_cannot_be_gated() -> None:
    with pytest.raises(SuiteError) as info:
        parse_gate("feature_density", ">= 0.01", file="s.yaml", line=3, key="saes[0].gates.feature_density")
    message = str(info.value)
    assert "per-feature metric" in message and "cannot be gated" in message
    assert "frac_alive" in message
    with pytest.raises(SuiteError, match="average_max_decoder_cosine_sim"):
        parse_gate("max_decoder_cosine_sim", "<= 0.9")


def test_gate_and_bound_dataclasses_validate() -> None:
    with pytest.raises(SuiteError, match="at least one bound"):
        Gate(metric="l0", bounds=())
    with pytest.raises(SuiteError, match="unknown metric"):
        Gate(metric="nope", bounds=(parse_bound(">= 1"),))
    with pytest.raises(SuiteError, match="operator"):
        Bound(op="==", constant=1.0)  # type: ignore[arg-type]
    with pytest.raises(SuiteError, match="finite"):
        Bound(op=">=", constant=NAN)
    with pytest.raises(SuiteError, match="cannot also"):
        Bound(op=">=", constant=1.0, offset=0.1)
    assert Bound(op=">=", offset=-0.01).text == "baseline - 0.01"
    assert Bound(op="<=", factor=1.5, offset=2).text == "baseline * 1.5 + 2.0"
    assert Bound(op="<", constant=3).text == "3"
    gate = Gate(metric="l0", bounds=[parse_bound(">= 1")])  # type: ignore[arg-type]
    assert isinstance(gate.bounds, tuple) and gate.text == ">= 1"


def test_gates_are_frozen_hashable_and_picklable() -> None:
    gate = parse_gate("l0", [">= 10", "<= 60"], file="s.yaml", line=3, key="k")
    with pytest.raises(AttributeError):
        gate.metric = "l1"  # type: ignore[misc]
    assert gate == pickle.loads(pickle.dumps(gate))
    assert hash(gate) == hash(parse_gate("l0", [">= 10", "<= 60"], file="s.yaml", line=3, key="k"))


def test_suite_errors_pickle_with_location() -> None:
    with pytest.raises(SuiteError) as info:
        parse_gate("l0", "bad", file="s.yaml", line=3, key="saes[0].gates.l0")
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value)


# ---------------------------------------------------------------------------- bounds


def test_resolve_and_describe() -> None:
    assert parse_bound(">= 0.80").resolve() == 0.8
    assert parse_bound(">= 0.80").describe() == ">= 0.80"
    assert parse_bound(">= 0.80").describe(0.5) == ">= 0.80"  # fixed bounds ignore the baseline
    minus = parse_bound(">= baseline - 0.01")
    assert minus.resolve(0.9412) == pytest.approx(0.9312)
    assert minus.describe() == ">= baseline - 0.01"
    assert minus.describe(0.9412) == ">= baseline - 0.01 (= 0.9312)"
    assert parse_bound("<= baseline * 1.1").resolve(50) == pytest.approx(55.0)
    assert parse_bound("<= baseline + 2").resolve(50) == pytest.approx(52.0)
    assert parse_bound("> baseline").resolve(3.0) == 3.0


def test_resolve_without_baseline_raises() -> None:
    with pytest.raises(BaselineError, match="no baseline value"):
        parse_bound(">= baseline").resolve(None)
    with pytest.raises(BaselineError, match="NaN"):
        parse_bound(">= baseline").resolve(NAN)


@pytest.mark.parametrize(
    ("op", "value", "threshold", "expected"),
    [
        (">=", 1.0, 1.0, True), (">", 1.0, 1.0, False), ("<=", 1.0, 1.0, True), ("<", 1.0, 1.0, False),
        (">=", 0.9, 1.0, False), ("<=", 1.1, 1.0, False), (">", 1.1, 1.0, True), ("<", 0.9, 1.0, True),
        (">=", NAN, 0.0, False), ("<=", NAN, 0.0, False), (">=", INF, 0.0, False), ("<=", -INF, 0.0, False),
    ],
)
def test_bound_holds(op: str, value: float, threshold: float, expected: bool) -> None:
    assert Bound(op=op, constant=threshold).holds(value) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [[">= 40", "<= 20"], ["> 20", "<= 20"], [">= 20", "< 20"], ["<= 0.1", ">= 0.5"]])
def test_fixed_bounds_no_value_meets_are_refused(spec: list[str]) -> None:
    with pytest.raises(SuiteError, match="gate on l0 can never pass: no value is") as info:
        parse_gate("l0", spec, file="s.yaml", line=7, key="saes[0].gates.l0")
    assert (info.value.location.line, info.value.location.key) == (7, "saes[0].gates.l0")
    assert "swap or correct the bounds" in (info.value.fix or "")


@pytest.mark.parametrize("spec", [[">= 20", "<= 20"], [">= 1", "<= 2"], [">= baseline", "<= 0"], [">= 5", "> 9"]])
def test_ranges_a_value_can_meet_load(spec: list[str]) -> None:
    assert parse_gate("l0", spec).bounds


# ---------------------------------------------------------------------------- bounded, ASCII gates


@pytest.mark.parametrize("text", [">= \u0663", ">= \uff13", ">=\u00a00", "\u2265 0.8", "<= 1\u2003", ">= 0.\u0665"])
def test_digits_signs_and_spaces_of_other_scripts_are_refused(text: str) -> None:
    """Python's \\d and \\s take them (and float() reads '٣' as 3): a gate of other characters than it shows."""
    with pytest.raises(SuiteError) as info:
        parse_gate("l0", text, file="s.yaml", line=4, key="saes[0].gates.l0")
    message = str(info.value)
    assert message.startswith("s.yaml:4: saes[0].gates.l0: cannot parse gate expression ")
    odd = next(c for c in text if not c.isascii())
    assert f"U+{ord(odd):04X}" in message and "Fix: write the expression in ASCII" in message


def test_a_long_expression_is_refused_without_being_echoed() -> None:
    longest = ">= " + "0" * 96 + "1"
    assert len(longest) == MAX_EXPRESSION_LENGTH and parse_bound(longest).constant == 1.0
    with pytest.raises(SuiteError) as info:
        parse_gate("l0", ">= " + "0" * 100_000 + "1", file="s.yaml", line=4, key="saes[0].gates.l0")
    message = str(info.value)
    assert len(message) < 400, message
    assert message.startswith("s.yaml:4: saes[0].gates.l0: gate expression '>= 000")
    assert "is 100,004 characters long; an expression holds at most 100" in message and "Fix: " in message


def test_a_gate_lists_at_most_a_few_expressions() -> None:
    eight = [f">= {i}" for i in range(MAX_GATE_EXPRESSIONS)]
    assert len(parse_gate("l0", eight).bounds) == MAX_GATE_EXPRESSIONS == 8
    for count in (MAX_GATE_EXPRESSIONS + 1, 20_000):
        with pytest.raises(SuiteError) as info:
            parse_gate("l0", [">= 1000"] * count, file="s.yaml", line=4, key="saes[0].gates.l0",
                       item_lines=list(range(5, 5 + count)))
        message = str(info.value)
        assert message.startswith(f"s.yaml:4: saes[0].gates.l0: gate on l0 lists {count:,} expressions; a gate "
                                  "holds at most 8. Fix: ")
        assert len(message) < 400


@pytest.mark.parametrize("twin", [">= 1", ">=1.0", " >= 1e0 "])
def test_a_repeated_expression_is_refused_at_its_item(twin: str) -> None:
    with pytest.raises(SuiteError) as info:
        parse_gate("l0", [">= 1", "<= 5", twin], file="s.yaml", line=4, key="saes[0].gates.l0", item_lines=[5, 6, 7])
    message = str(info.value)
    assert message.startswith("s.yaml:7: saes[0].gates.l0[2]: gate on l0 lists >= ")
    assert "twice (items 0 and 2)" in message and "Fix: remove the repeated expression" in message
    assert len(parse_gate("l0", [">= 1", "> 1", ">= baseline - 1", "<= 5"]).bounds) == 4  # alike only when the same
