"""pytest-xdist scheduling decided without workers: a suite's group name (shared by suites of one fused pass),
when the plugin schedules, and what one worker evaluates together under each ``--dist``."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.plugin.xdist import group_name, takes_over, unit_for
from pytest_saeval.spec.loader import load_suite
from tests.unit.plugin.conftest import collected


def test_suites_of_one_fused_pass_share_a_group_name(project: Path) -> None:
    a, b, c = (load_suite(project / "thresholds" / f"{n}.yaml") for n in "abc")
    assert group_name(a, None) == group_name(b, None) != group_name(c, None)
    assert group_name(a, None).startswith("saeval-") and len(group_name(a, None)) == len("saeval-") + 10
    assert group_name(a, None) == group_name(load_suite(project / "thresholds" / "a.yaml"), None)  # stable


def test_a_device_override_groups_as_the_session_does(project: Path) -> None:
    a = load_suite(project / "thresholds" / "a.yaml")
    on_cuda = a.path.with_name("d.yaml")
    on_cuda.write_text(a.path.read_text().replace("device: cpu", "device: cuda"))
    d = load_suite(on_cuda)
    assert group_name(a, None) != group_name(d, None)  # each suite's own device: two model loads
    assert group_name(a, "cpu") == group_name(d, "cpu")  # --saeval-device cpu: one model, one pass


@pytest.mark.parametrize(("dist", "unit"), [("load", "group"), ("loadgroup", "group"), ("loadfile", "file"),
                                            ("loadscope", "sae"), ("worksteal", "sae"), ("each", "sae")])
def test_what_a_worker_evaluates_together(pytester: pytest.Pytester, project: Path, dist: str, unit: str) -> None:
    config = collected(pytester, "--dist", dist).config
    assert takes_over(config) is (unit == "group")
    assert unit_for(config) == unit


def test_the_plugin_schedules_only_when_there_are_suite_files(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    assert takes_over(collected(pytester, "--dist", "load").config) is False
    assert unit_for(collected(pytester, "--dist", "load").config) == "sae"
    (pytester.path / "s.yaml").write_text("model: {path: m}\n")  # named on the command line: a suite file
    config = collected(pytester, "--dist", "load", "test_x.py").config
    config.args = ["s.yaml::a::l0"]
    assert takes_over(config) is True

