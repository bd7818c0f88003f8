"""Which of the overridable fixtures a conftest replaces where a test is (the plugin's own do not count)."""

from __future__ import annotations

import pytest

from pytest_saeval.plugin.overrides import OVERRIDABLE, overridden
from tests.unit.plugin.conftest import collect


def test_conftest_overrides_are_found_where_they_apply(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_top="def test_top():\n    pass\n")
    sub = pytester.mkpydir("sub")
    (sub / "conftest.py").write_text("import pytest\n\n@pytest.fixture\ndef saeval_tokens():\n    return [[1, 2]]\n\n"
                                     "@pytest.fixture\ndef saeval_model():\n    return None\n")
    (sub / "test_sub.py").write_text("def test_sub():\n    pass\n")
    items = {i.name: i for i in collect(pytester)}
    assert overridden(items["test_top"]) == ()  # the plugin's own fixtures only
    found = overridden(items["test_sub"])
    assert [name for name, _ in found] == ["saeval_model", "saeval_tokens"]  # in OVERRIDABLE's order
    assert [name for name, _ in found] == [n for n in OVERRIDABLE if n != "saeval_saes"]
    assert overridden(items["test_sub"]) == found  # the same definitions: the same ids
