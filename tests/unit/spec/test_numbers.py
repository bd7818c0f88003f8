"""Number formatting: enough digits to show a value on its side of a bound."""

from __future__ import annotations

import pytest

from pytest_saeval.spec.numbers import format_number

NAN = float("nan")
INF = float("inf")


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (0.7812, "0.7812"), (0.777, "0.7770"), (0.0188, "0.0188"), (0.5, "0.5000"), (-0.25, "-0.2500"),
        (72.31, "72.31"), (1.0023, "1.002"), (35.1234, "35.12"), (12345.678, "12346"), (12800.0, "12800"),
        (1.0, "1"), (0.0, "0"), (0.001234, "0.001234"), (1.234e-5, "0.00001234"), (1.234e-9, "1.234e-09"),
        (1e20 + 0.5, "1.000e+20"), (NAN, "NaN"), (INF, "inf"), (-INF, "-inf"),
    ],
)
def test_format_number(x: float, text: str) -> None:
    assert format_number(x) == text


def test_format_number_more_digits() -> None:
    assert format_number(0.79999999, 8) == "0.79999999"
    assert format_number(72.3145, 6) == "72.3145"


@pytest.mark.parametrize(("interval", "value", "text"), [
    ((-0.007983, 0.0324), 0.0120, "[-0.0080, 0.0324]"),  # the value's decimals, not each end's own
    ((32.38, 33.15), 32.83, "[32.38, 33.15]"),
    ((3.5, 4.5), 4.0, "[3.500, 4.500]"),  # a whole value shows no decimals: the ends keep their own
    ((-0.00001, 0.0324), 0.0120, "[-0.00001000, 0.0324]"),  # an end those decimals would show as 0
    ((1e-9, 3e-9), 2e-9, "[1.000e-09, 3.000e-09]"),
])
def test_an_interval_reads_in_the_format_of_its_value(interval, value, text):
    from pytest_saeval.spec.numbers import interval_text

    assert interval_text(interval, value) == text
