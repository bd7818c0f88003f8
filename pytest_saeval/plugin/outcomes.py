"""How saeval outcomes show in pytest: a gate failure and an evaluation error, each without a traceback."""

from __future__ import annotations

import pytest

__all__ = ["EvaluationError", "GateFailed"]


class GateFailed(pytest.fail.Exception):  # type: ignore[name-defined]
    """A gate did not hold; the message is the reviewer's line(s), shown without a traceback."""

    def __init__(self, message: str, reading: str | None = None) -> None:
        super().__init__(message, pytrace=False)
        self.reading = reading
        """The message without the SAE and metric the item's node id names (for pytest's short summary)."""


class EvaluationError(pytest.fail.Exception):  # type: ignore[name-defined]
    """A suite could not be evaluated (bad input found at run time); shown as an error, no traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message, pytrace=False)
