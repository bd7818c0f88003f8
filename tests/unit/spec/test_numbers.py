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
