"""Version numbers: read from the installed distributions' metadata, ``unknown`` for one that is not installed."""

from __future__ import annotations

from importlib.metadata import version

import pytest_saeval
from pytest_saeval.versions import NUMERIC_LIBRARIES, __version__, dist_version, library_versions


def test_an_installed_distribution_gives_its_metadata_version() -> None:
    assert dist_version("pytest") == version("pytest")
    assert dist_version("torch") == version("torch")


def test_a_missing_distribution_is_unknown() -> None:
    assert dist_version("no-such-distribution-saeval") == "unknown"


def test_library_versions_name_this_package_and_every_numeric_library() -> None:
    found = library_versions()
    assert list(found) == ["pytest-saeval", *NUMERIC_LIBRARIES]
    assert found["pytest-saeval"] == __version__ == pytest_saeval.__version__
    assert all(found[name] == dist_version(name) for name in NUMERIC_LIBRARIES)
