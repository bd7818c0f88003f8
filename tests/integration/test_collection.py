"""Collection: suite files become one test per gate, with ids, locations at the gate's YAML line and
deselection; a suite that cannot be loaded is a collection error naming file, line and fix."""

from __future__ import annotations

import pytest

from tests.integration.plugin_helpers import Assets, line_of, write_rich_project


def test_collection_ids_locations_and_deselection(pytester: pytest.Pytester, assets: Assets) -> None:
    project = write_rich_project(pytester.path, assets)
    (pytester.path / "thresholds" / "broken.yaml").unlink()
    (pytester.path / "notes").mkdir()
    outside = pytester.path / "notes" / "named.yaml"  # matches no glob: collected only when named
    outside.write_text((pytester.path / "thresholds" / "demo.yaml").read_text().replace("../baselines", "../b"))

    collected, reprec = pytester.inline_genitems("-k", "not skipme")
    deselected = [i.nodeid for c in reprec.getcalls("pytest_deselected") for i in c.items]
    assert deselected == ["thresholds/extra.yaml::skipme::l0"]
    items = [i for i in collected if i.nodeid not in deselected]
    ids = [i.nodeid for i in items]
    assert [i for i in ids if i.startswith("thresholds/")] == [
        "thresholds/demo.yaml::good::explained_variance",
        "thresholds/demo.yaml::good::l0",
        "thresholds/demo.yaml::good::cossim",
        "thresholds/demo.yaml::bad::frac_alive",
        "thresholds/demo.yaml::bad::l0",
        "thresholds/mismatch.yaml::narrow::l0",
        "thresholds/mismatch.yaml::narrow::explained_variance",
        "thresholds/mismatch.yaml::fine::l0",
    ]
    assert "other/ov.yaml::ov::l0" in ids
    assert not any(i.startswith("notes/") for i in ids)

    by_id = {i.nodeid: i for i in items}
    l0 = by_id["thresholds/demo.yaml::bad::l0"]
    gate_line = project.line("l0:", after="id: bad")
    assert l0.location == ("thresholds/demo.yaml", gate_line - 1, "bad::l0")
    assert l0.reportinfo()[1] == gate_line - 1
    good_ev = by_id["thresholds/demo.yaml::good::explained_variance"]
    assert good_ev.location[1] == project.line("explained_variance:", after="id: good") - 1

    # Named on the command line, a suite file outside the globs is collected too.
    items, _ = pytester.inline_genitems("notes/named.yaml")
    assert [i.nodeid for i in items] == [
        "notes/named.yaml::good::explained_variance",
        "notes/named.yaml::good::l0",
        "notes/named.yaml::good::cossim",
        "notes/named.yaml::bad::frac_alive",
        "notes/named.yaml::bad::l0",
    ]


def test_unloadable_suite_is_a_collection_error_naming_file_line_and_fix(
    pytester: pytest.Pytester, assets: Assets
) -> None:
    (pytester.path / "thresholds").mkdir()
    text = assets.model_block() + assets.data_block() + (
        f"saes:\n  - id: x\n    path: {assets.sae0}\n    gates:\n      explained_varianse: \">= 0.5\"\n"
    )
    (pytester.path / "thresholds" / "broken.yaml").write_text(text)
    (pytester.path / "thresholds" / "syntax.yaml").write_text("model:\n  path: [unclosed\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    line = line_of(text, "explained_varianse")
    lines = result.stdout.lines
    at = next(i for i, t in enumerate(lines) if "ERROR collecting thresholds/broken.yaml" in t)
    assert lines[at + 1].startswith(
        f"thresholds/broken.yaml:{line}: saes[0].gates.explained_varianse: unknown metric 'explained_varianse' "
        "(did you mean 'explained_variance'"
    )
    assert ". Fix: rename the gate" in lines[at + 1]
    at = next(i for i, t in enumerate(lines) if "ERROR collecting thresholds/syntax.yaml" in t)
    assert lines[at + 1].startswith("thresholds/syntax.yaml:3: invalid YAML")
    assert "Traceback" not in result.stdout.str()
    assert "_collect.py" not in result.stdout.str()


def test_a_suite_without_gates_says_so_and_what_proposes_some(pytester: pytest.Pytester, assets: Assets) -> None:
    pytester.makefile(".yaml", **{"thresholds/new": assets.model_block() + assets.data_block() +
                                  f"saes:\n  - id: a\n    path: {assets.sae0}\n"})
    result = pytester.runpytest("-p", "no:cacheprovider", "--saeval-no-cache")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED  # pytest's own verdict: nothing was tested
    assert ("thresholds/new.yaml: no gates, so nothing of it is a test (1 SAE); `saeval init thresholds/new.yaml` "
            "proposes gates from one evaluation") in result.stdout.str()
