"""Suite files as test items: which files are suites, one item per SAE x gated metric with its id and YAML
line, and the short summary line of a gate failure at that line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_saeval.plugin.items import READING, GateItem, SAENode, fit_short_summary, is_suite_file, tidy_report
from pytest_saeval.plugin.outcomes import GateFailed
from tests.unit.plugin.conftest import collect


def test_one_item_per_sae_and_gated_metric(pytester: pytest.Pytester, project: Path) -> None:
    items = collect(pytester)
    assert [i.nodeid for i in items] == [
        "thresholds/a.yaml::x::l0", "thresholds/a.yaml::x::mse", "thresholds/a.yaml::y::l0",
        "thresholds/b.yaml::z::l0", "thresholds/c.yaml::w::l0"]
    first = items[0]
    assert isinstance(first, GateItem) and isinstance(first.parent, SAENode)
    assert first.sae_id == "x" and first.gate.metric == "l0" and first.suite.path.name == "a.yaml"
    lines = (project / "thresholds" / "a.yaml").read_text().splitlines()
    path, line, name = first.reportinfo()
    assert path == project / "thresholds" / "a.yaml" and name == "x::l0"
    assert line is not None and "l0: '>= 1'" in lines[line]  # 0-based: the gate's own line
    _, sae_line, sae_name = first.parent.reportinfo()
    assert sae_name == "x" and sae_line is not None and "id: x" in lines[sae_line]


def test_which_files_are_suites(pytester: pytest.Pytester, project: Path) -> None:
    items = collect(pytester)
    session = items[0].session
    a = project / "thresholds" / "a.yaml"
    assert is_suite_file(a, session, frozenset({a}))
    assert not is_suite_file(a, session, frozenset())  # not globbed, not named on the command line
    other = project / "thresholds" / "a.json"
    assert not is_suite_file(other, session, frozenset({other}))  # only .yaml / .yml


def test_a_yaml_file_outside_the_globs_is_not_collected_unless_named(pytester: pytest.Pytester, project: Path) -> None:
    (project / "elsewhere").mkdir()
    (project / "elsewhere" / "d.yaml").write_text((project / "thresholds" / "c.yaml").read_text())
    assert all(i.nodeid.startswith("thresholds/") for i in collect(pytester))
    named = collect(pytester, "elsewhere/d.yaml")
    assert [i.nodeid for i in named] == ["elsewhere/d.yaml::w::l0"]


def test_a_gate_failure_reads_as_its_message_at_the_gates_line(pytester: pytest.Pytester, project: Path) -> None:
    item = collect(pytester)[0]
    assert isinstance(item, GateItem)
    crash = SimpleNamespace(message="GateFailed: long", path="plugin.py", lineno=1)
    report = SimpleNamespace(longrepr=SimpleNamespace(reprcrash=crash))
    call = SimpleNamespace(excinfo=SimpleNamespace(value=GateFailed("first line\nsecond\nthird")))
    tidy_report(item, call, report)  # type: ignore[arg-type]
    assert crash.message == "first line (and 2 more)"
    assert crash.path == str(item.path) and crash.lineno == item.gate.line
    untouched = SimpleNamespace(message="AssertionError", path="t.py", lineno=3)
    other = SimpleNamespace(excinfo=SimpleNamespace(value=AssertionError("x")))
    tidy_report(item, other, SimpleNamespace(longrepr=SimpleNamespace(reprcrash=untouched)))  # type: ignore[arg-type]
    assert (untouched.message, untouched.path, untouched.lineno) == ("AssertionError", "t.py", 3)


def test_a_gate_failure_keeps_its_reading_for_the_short_summary(pytester: pytest.Pytester, project: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The report keeps the reading; where pytest will cut the summary line (off CI) and the whole message does
    not fit, the reading replaces it; a line that fits, or a report without a reading, is left as it is."""
    item = collect(pytester)[0]
    config = item.config
    long = "[x] l0 = 0.5, needs >= 1 (short by 0.5) — " + "thresholds/" * 8 + "a.yaml:5"
    crash = SimpleNamespace(message="GateFailed", path="plugin.py", lineno=1)
    report = SimpleNamespace(longrepr=SimpleNamespace(reprcrash=crash), nodeid=item.nodeid)
    tidy_report(item, SimpleNamespace(excinfo=SimpleNamespace(value=GateFailed(long, "0.5, needs >= 1"))),  # type: ignore[arg-type]
                report)  # type: ignore[arg-type]
    assert getattr(report, READING) == "0.5, needs >= 1" and crash.message == long
    short = SimpleNamespace(longrepr=SimpleNamespace(reprcrash=SimpleNamespace(message="[x] l0 = 0.5")),
                            nodeid=item.nodeid, **{READING: "0.5"})
    plain = SimpleNamespace(longrepr=SimpleNamespace(reprcrash=SimpleNamespace(message="x" * 200)), nodeid="t.py::t")
    monkeypatch.setenv("CI", "true")
    fit_short_summary([report], config)
    assert crash.message == long  # on CI pytest prints the whole line
    monkeypatch.delenv("CI")
    fit_short_summary([report, short, plain], config)
    assert crash.message == "0.5, needs >= 1"
    assert short.longrepr.reprcrash.message == "[x] l0 = 0.5" and plain.longrepr.reprcrash.message == "x" * 200
