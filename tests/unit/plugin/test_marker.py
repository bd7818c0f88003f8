"""The ``saeval`` marker parsed: the suite path relative to the rootdir, the optional SAE id, and every misuse
one error naming the test and the fix; gate items carry no marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.plugin.marker import MarkerCall, MarkerUsageError, marker_calls
from tests.unit.plugin.conftest import collect

TEST = "def test_one():\n    pass\n"


def _item(pytester: pytest.Pytester, *marks: pytest.MarkDecorator) -> pytest.Item:
    pytester.makepyfile(test_it=TEST)
    (item,) = [i for i in collect(pytester, "test_it.py")]
    for mark in marks:
        item.add_marker(mark)
    return item


def test_marks_are_parsed(pytester: pytest.Pytester) -> None:
    item = _item(pytester, pytest.mark.saeval("thresholds/a.yaml"), pytest.mark.saeval(Path("b.yaml"), sae="x"))
    calls = marker_calls(item)
    assert set(calls) == {MarkerCall(pytester.path / "thresholds" / "a.yaml"), MarkerCall(pytester.path / "b.yaml", "x")}
    assert marker_calls(_item(pytester)) == []  # an unmarked test


@pytest.mark.parametrize(("mark", "words"), [
    (pytest.mark.saeval("a.yaml", sea="x"), "got unknown argument sea"),
    (pytest.mark.saeval("a.yaml", sea="x", other=1), "got unknown arguments other, sea"),
    (pytest.mark.saeval(), "needs exactly one suite file path, got 0 positional argument(s)"),
    (pytest.mark.saeval("a.yaml", "b.yaml"), "needs exactly one suite file path, got 2"),
    (pytest.mark.saeval(3), "needs exactly one suite file path"),
    (pytest.mark.saeval("a.yaml", sae=3), "sae must be an SAE id string, got 3"),
], ids=["unknown", "unknowns", "none", "two", "not-a-path", "sae-not-str"])
def test_a_misused_marker_names_the_test_and_the_fix(pytester: pytest.Pytester, mark: pytest.MarkDecorator,
                                                     words: str) -> None:
    item = _item(pytester, mark)
    with pytest.raises(MarkerUsageError) as info:
        marker_calls(item)
    text = str(info.value)
    assert text.startswith("test_it.py::test_one: @pytest.mark.saeval") and words in text
    assert "Fix: use @pytest.mark.saeval('thresholds/<name>.yaml')" in text


def test_gate_items_have_no_marker_calls(pytester: pytest.Pytester, project: Path) -> None:
    item = collect(pytester)[0]
    item.add_marker(pytest.mark.saeval("thresholds/a.yaml"))
    assert marker_calls(item) == []
