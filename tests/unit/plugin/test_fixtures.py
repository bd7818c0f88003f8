"""Which suite the four fixtures serve: the test's marker's (with its ``sae=``), else ``--saeval-suite``'s, else
a failure that says how to name one; a suite that cannot be loaded fails the test with its one-line error."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_saeval.plugin.fixtures import fixture_suite
from pytest_saeval.plugin.runner import get_runner
from tests.unit.plugin.conftest import collect


def _request(pytester: pytest.Pytester, *args: str, mark: pytest.MarkDecorator | None = None) -> SimpleNamespace:
    pytester.makepyfile(test_it="def test_one(saeval_model):\n    pass\n")
    (item,) = collect(pytester, "test_it.py", *args)
    if mark is not None:
        item.add_marker(mark)
    return SimpleNamespace(node=item, config=item.config)


def test_the_marker_suite_and_its_sae(pytester: pytest.Pytester, project: Path) -> None:
    request = _request(pytester, mark=pytest.mark.saeval("thresholds/c.yaml", sae="w"))
    runner = get_runner(request.config)
    suite, sae = fixture_suite(runner, request)  # type: ignore[arg-type]
    assert suite.path.name == "c.yaml" and sae == "w"
    assert suite is runner.load_suite(project / "thresholds" / "c.yaml")  # the suite the gate items use


def test_the_marker_wins_over_the_option(pytester: pytest.Pytester, project: Path) -> None:
    request = _request(pytester, "--saeval-suite", "thresholds/a.yaml")
    suite, sae = fixture_suite(get_runner(request.config), request)  # type: ignore[arg-type]
    assert suite.path.name == "a.yaml" and sae is None
    marked = _request(pytester, "--saeval-suite", "thresholds/a.yaml", mark=pytest.mark.saeval("thresholds/b.yaml"))
    assert fixture_suite(get_runner(marked.config), marked)[0].path.name == "b.yaml"  # type: ignore[arg-type]


def test_no_suite_fails_with_how_to_name_one(pytester: pytest.Pytester) -> None:
    request = _request(pytester)
    with pytest.raises(pytest.fail.Exception, match="the saeval fixtures need a suite file. Fix: mark the test") as info:
        fixture_suite(get_runner(request.config), request)  # type: ignore[arg-type]
    assert info.value.pytrace is False


def test_a_broken_suite_fails_with_its_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "bad.yaml").write_text("model: {path: m}\ndata: {tokens: t.npy}\nsaes: []\nextra: 1\n")
    request = _request(pytester, mark=pytest.mark.saeval("bad.yaml"))
    with pytest.raises(pytest.fail.Exception, match=r"bad\.yaml:\d+: extra") as info:
        fixture_suite(get_runner(request.config), request)  # type: ignore[arg-type]
    assert info.value.pytrace is False
