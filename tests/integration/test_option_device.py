"""``--saeval-device``: checked when pytest starts, and used instead of every suite's ``model.device``."""

from __future__ import annotations

import pytest


def test_bad_device_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--saeval-device", "gpu0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --saeval-device must be auto, cpu, cuda or cuda:N, got 'gpu0'*"])
