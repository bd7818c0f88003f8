"""A gate failure and an evaluation error: pytest failures whose message is shown without a traceback."""

from __future__ import annotations

import pytest

from pytest_saeval.plugin.outcomes import EvaluationError, GateFailed


@pytest.mark.parametrize("cls", [GateFailed, EvaluationError])
def test_outcomes_are_failures_without_a_traceback(cls: type[Exception]) -> None:
    error = cls("[a] l0 = 70, needs <= 60 (over by 10) — s.yaml:3")
    assert isinstance(error, pytest.fail.Exception)
    assert error.pytrace is False  # type: ignore[attr-defined]
    assert error.msg == str(error) == "[a] l0 = 70, needs <= 60 (over by 10) — s.yaml:3"  # type: ignore[attr-defined]
    assert not issubclass(GateFailed, EvaluationError) and not issubclass(EvaluationError, GateFailed)
