"""The test suite runs in an environment of its own: variables the plugin and the CLI read from the
environment (a step summary to append to, a shard, a cache folder, a CI system's job index) are removed
for the session, so that a CI job which sets them neither changes what the tests see nor receives what
their runs write; and the pytest runs the tests start write without colour (``PY_COLORS=0``, which wins
over a CI job's ``FORCE_COLOR``), 80 columns wide (``COLUMNS=80``, what a run without a terminal gets) and
as off CI (``CI`` and ``BUILD_NUMBER`` removed: pytest cuts short-summary lines only off CI), so their
output reads the same under any terminal and in any CI job. Tests that need one of these set it
themselves (``monkeypatch.setenv`` or a subprocess ``env``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def _outside_variables() -> list[str]:
    from pytest_saeval.run.shards import CI_VARIABLES

    ci = {name for _, index, count, _ in CI_VARIABLES for name in (index, count)}
    return sorted(k for k in os.environ
                  if k.startswith(("SAEVAL_", "SLURM_ARRAY_TASK_")) or k in ci
                  or k in ("GITHUB_STEP_SUMMARY", "CI", "BUILD_NUMBER"))


@pytest.fixture(autouse=True, scope="session")
def _hermetic_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name in _outside_variables():
            mp.delenv(name)
        mp.setenv("PY_COLORS", "0")
        mp.setenv("COLUMNS", "80")
        yield
