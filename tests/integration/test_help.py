"""``pytest --help`` and ``--markers``: the options in one group, each with its ini twin, and the marker."""

from __future__ import annotations

import re

import pytest


def test_options_share_one_group_with_ini_twins(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    section = text[text.index("SAE quality gates (pytest-saeval):"):]
    section = section[: section.index("\n\n")]
    for option in ("--saeval-device", "--saeval-output-dir", "--saeval-update-baseline", "--saeval-suite",
                   "--saeval-no-cache", "--saeval-cache-dir"):
        assert option in section
    for ini in ("saeval_thresholds", "saeval_device", "saeval_output_dir", "saeval_suite", "saeval_cache",
                "saeval_cache_dir"):
        assert re.search(rf"^  {ini} \(", text, re.M), ini
    assert "saeval(path, sae=None)" in pytester.runpytest("--markers").stdout.str()
