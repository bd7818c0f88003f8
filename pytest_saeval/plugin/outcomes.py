"""How saeval outcomes show in pytest: what a gate item gets from the run (:class:`GateOutcome`), and a gate
failure and an evaluation error, each without a traceback."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pytest_saeval.run.checks import GateCheck

__all__ = ["EvaluationError", "GateFailed", "GateOutcome"]


@dataclass(frozen=True)
class GateOutcome:
    """What a gate item reports: its check, or why it is skipped."""

    check: GateCheck | None = None
    """The checked gate."""
    skip_reason: str | None = None
    """Set when the gate could not be checked for a reason that is not an error."""
    inputs: str = ""
    """What the evaluation ran on besides the suite's own sources (`` (with saeval_tokens from ...)``), for
    the failure line; ``""`` for the suite's own."""


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
