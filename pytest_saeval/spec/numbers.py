"""How metric values are spelled in messages, tables and reports (pure Python)."""

from __future__ import annotations

import math

__all__ = ["decimals_of", "difference", "format_number", "interval_text"]


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


def decimals_of(text: str) -> int | None:
    """Decimals of a number as :func:`format_number` wrote it (None: scientific notation or not fixed-point)."""
    if "e" in text or not text.lstrip("-").replace(".", "", 1).isdigit():
        return None
    return len(text.split(".", 1)[1]) if "." in text else 0


def interval_text(interval: tuple[float, float], value: float, digits: int = 4) -> str:
    """``[lo, hi]`` with the decimals the value shows (``0.0120 [-0.0080, 0.0324]``, ``32.83 [32.38, 33.15]``),
    so the three numbers read in one format; ends are formatted on their own next to a whole or
    scientific value, or where those decimals would hide an end (``0.0000``)."""
    shown = format_number(value, digits)
    places = decimals_of(shown) if math.isfinite(value) and not float(value).is_integer() else None
    ends = []
    for end in interval:
        text = format_number(end, digits)
        if places is not None and math.isfinite(end) and end != 0:
            fixed = f"{end:.{places}f}"
            if float(fixed) != 0:
                text = fixed
        ends.append(text)
    return f"[{ends[0]}, {ends[1]}]"


def difference(x: float) -> str:
    """A positive distance, never shown as zero."""
    text = format_number(x)
    if x > 0 and float(text) == 0:  # pragma: no cover - format_number keeps small values visible
        return repr(x)
    return text
