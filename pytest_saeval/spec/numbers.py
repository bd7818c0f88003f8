"""How metric values are spelled in messages, tables and reports (pure Python)."""

from __future__ import annotations

import math

__all__ = ["difference", "format_number"]


def format_number(x: float, digits: int = 4) -> str:
    """Format a metric value for messages.

    ``NaN``, ``inf`` and ``-inf`` are spelled out; whole numbers print without decimals; values in
    ``[0.01, 1)`` print with ``digits`` decimals (``0.7812``, ``0.7770``, ``0.0188``); other values
    keep ``digits`` significant digits (``72.31``, ``1.002``, ``0.001234``, ``1.234e-09``) but never
    lose integer digits (``12346``).
    """
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= 15 or magnitude < -6:
        return f"{x:.{digits - 1}e}"
    if magnitude >= 0:
        return f"{x:.{max(digits - 1 - magnitude, 0)}f}"
    if magnitude >= -2:
        return f"{x:.{digits}f}"
    return f"{x:.{digits - 1 - magnitude}f}"


def difference(x: float) -> str:
    """A positive distance, never shown as zero."""
    text = format_number(x)
    if x > 0 and float(text) == 0:  # pragma: no cover - format_number keeps small values visible
        return repr(x)
    return text
