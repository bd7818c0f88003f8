"""Helpers for the plugin's integration tests: the shared tiny assets, pytester projects, readers
of JUnit XML / outputs / the summary / the HTML report, and a way to run pytest plainly or under pytest-xdist."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

CONTEXT = 16
ROWS = 16


@dataclass(frozen=True)
class Assets:
    """Paths of the shared tiny assets."""

    model: Path
    """GPT-2, 2 layers, d_model 32 (seed 0)."""
    model2: Path
    """A second GPT-2 of the same shape (seed 1)."""
    tokens: Path
    """``[16, 16]`` int32 token rows, BOS first."""
    sae0: Path
    """Standard SAE on ``blocks.0.hook_resid_pre``."""
    sae1: Path
    """TopK SAE on ``blocks.1.hook_resid_pre``."""
    sae0b: Path
    """A second standard SAE on ``blocks.0.hook_resid_pre`` (shares its hook with ``sae0``)."""
    narrow: Path
    """An SAE with d_in 16: cannot read the models' 32-wide residual stream."""

    def data_block(self, batch_size: int = 4) -> str:
        return (
            f"data:\n  tokens: {self.tokens}\n  context_size: {CONTEXT}\n  batch_size_prompts: {batch_size}\n"
            "  n_reconstruction_batches: 2\n  n_sparsity_batches: 2\n"
        )

    def model_block(self, path: Path | str | None = None) -> str:
        return f"model:\n  path: {path if path is not None else self.model}\n  device: cpu\n"


# -- reading results ----------------------------------------------------------------------------
def junit_cases(path: Path) -> dict[str, dict[str, object]]:
    """``{classname::name: {"outcome", "props", "file", "line", "message"}}`` from a JUnit XML file."""
    cases: dict[str, dict[str, object]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        message = ""
        for tag in ("failure", "error", "skipped"):
            found = case.findall(tag)
            if found:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                if tag == "error" and any("teardown" in (f.get("message") or "") for f in found):
                    outcome = "passed+teardown-error"
                message = found[0].get("message") or ""
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        key = f"{case.get('classname')}::{case.get('name')}"
        cases[key] = {"outcome": outcome, "props": props, "file": case.get("file"), "line": case.get("line"),
                      "message": message}
    return cases


def saeval_section(stdout: str) -> str:
    """The text of the ``saeval`` terminal summary section."""
    m = re.search(r"^=+ saeval =+$\n(.*?)(?=^=+ )", stdout, re.S | re.M)
    assert m, f"no saeval summary section in:\n{stdout}"
    return m.group(1)


def all_results(out_dir: Path) -> dict[str, dict[str, object]]:
    """``{unique_id: record}`` from ``all_eval_results.json``."""
    records = json.loads((out_dir / "all_eval_results.json").read_text())
    return {r["unique_id"]: r for r in records}


REPORT_PLOTS = ["feature-density", "density-vs-heuristic", "weights-matrix", "encoder-decoder-cosine",
                "decoder-redundancy"]
"""The plots the HTML report draws for each SAE of the tiny assets, in page order."""


def read_report(page: Path) -> tuple[list[tuple[str, str, str]], dict[str, list[str]]]:
    """From an HTML report: the gate table's rows as ``(PASS | FAIL, sae, metric)`` in page order, and
    the plot slugs of each SAE. Checks that the page is whole: self-contained, with as many plots
    drawn by plotly as it says it holds."""
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not re.search(r"<script[^>]*\bsrc=", text)  # plotly.js is inline
    start = text.index('<table class="gates">')
    table = text[start:text.index("</table>", start)]
    rows = re.findall(r'<tr class="(?:pass|fail)"><td>(PASS|FAIL)</td><td><code>([^<]*)</code></td>'
                      r"<td><code>([^<]*)</code></td>", table)
    plots: dict[str, list[str]] = {}
    for slug, sae in re.findall(r'<div class="plot" data-plot="([a-z-]+)" data-sae="([^"]+)">', text):
        plots.setdefault(sae, []).append(slug)
    count = re.search(r'<meta name="saeval-plot-count" content="(\d+)">', text)
    assert count is not None and int(count.group(1)) == sum(len(s) for s in plots.values())
    n = int(count.group(1))
    assert text.count("Plotly.newPlot(") >= n and all(f'id="plot-{i}"' in text for i in range(1, n + 1))
    return [(result, sae, metric) for result, sae, metric in rows], plots


# -- projects -----------------------------------------------------------------------------------
def line_of(text: str, needle: str, after: str | None = None) -> int:
    """1-based number of the first line containing ``needle`` (after the line containing ``after``)."""
    lines = text.splitlines()
    start = 0
    if after is not None:
        start = next(i for i, line in enumerate(lines) if after in line) + 1
    return next(i for i, line in enumerate(lines) if i >= start and needle in line) + 1


@dataclass(frozen=True)
class RichProject:
    """A project exercising every surface of the plugin in one run (see :func:`rich_project`)."""

    root: Path
    demo: str
    """Text of thresholds/demo.yaml."""
    expected: dict[str, str]
    """Outcome per node id, as :func:`outcomes_by_nodeid` reads it."""

    def line(self, needle: str, after: str | None = None) -> int:
        return line_of(self.demo, needle, after)


def write_rich_project(root: Path, assets: Assets) -> RichProject:
    """Suites with passing and failing gates, a suite that cannot be collected, one that cannot be
    evaluated, a deselected SAE with no weights, a conftest override, markers and fixtures."""
    (root / "thresholds").mkdir()
    (root / "other").mkdir()
    (root / "tests").mkdir()
    (root / "pytest.ini").write_text(
        "[pytest]\nsaeval_thresholds = thresholds/*.yaml other/*.yaml\nsaeval_suite = thresholds/demo.yaml\n"
    )
    demo = (
        assets.model_block() + assets.data_block()
        + "baseline: ../baselines/demo.json\n"
        "saes:\n"
        f"  - id: good\n    path: {assets.sae0}\n    gates:\n"
        '      explained_variance: "<= 1"\n'
        '      l0: ["<= 1000", ">= 0"]\n'
        '      cossim: ">= baseline - 0.001"\n'
        f"  - id: bad\n    path: {assets.sae1}\n    gates:\n"
        '      frac_alive: "<= 1"\n'
        '      l0: ">= 1000"\n'
    )
    (root / "thresholds" / "demo.yaml").write_text(demo)
    (root / "thresholds" / "extra.yaml").write_text(
        assets.model_block() + assets.data_block()
        + f"saes:\n  - id: skipme\n    path: {root / 'no-such-sae'}\n    gates:\n      l0: \"<= 1000\"\n"
    )
    (root / "thresholds" / "broken.yaml").write_text(
        assets.model_block() + assets.data_block()
        + f"saes:\n  - id: x\n    path: {assets.sae0}\n    gates:\n      explained_varianse: \">= 0.5\"\n"
    )
    (root / "thresholds" / "mismatch.yaml").write_text(
        assets.model_block() + assets.data_block(batch_size=2)
        + f"saes:\n  - id: narrow\n    path: {assets.narrow}\n    gates:\n"
        '      l0: "<= 1000"\n      explained_variance: "<= 1"\n'
        f"  - id: fine\n    path: {assets.sae0}\n    gates:\n      l0: \"<= 1000\"\n"
    )
    (root / "other" / "ov.yaml").write_text(
        assets.model_block(root / "no-such-model") + assets.data_block()
        + f"saes:\n  - id: ov\n    path: {assets.sae0}\n    gates:\n      l0: \"<= 1000\"\n"
    )
    (root / "other" / "conftest.py").write_text(
        "import pytest\n\n\n"
        "@pytest.fixture(scope='session')\n"
        "def saeval_model():\n"
        "    from pytest_saeval.sources.models import load_model\n\n"
        f"    return load_model(path={str(assets.model)!r}, device='cpu')\n"
    )
    (root / "tests" / "test_py.py").write_text(
        "import pytest\n\n\n"
        "@pytest.mark.saeval('thresholds/demo.yaml', sae='good')\n"
        "def test_marker_pass():\n    pass\n\n\n"
        "@pytest.mark.saeval('thresholds/demo.yaml', sae='bad')\n"
        "def test_marker_fail():\n    pass\n\n\n"
        "@pytest.mark.saeval('thresholds/demo.yaml', sae='bad')\n"
        "def test_marker_body_fails_first():\n    assert 1 == 2\n\n\n"
        "@pytest.mark.saeval('thresholds/mismatch.yaml')\n"
        "def test_marker_error():\n    pass\n\n\n"
        "def test_fixtures(saeval_model, saeval_saes, saeval_tokens, saeval_results):\n"
        "    assert tuple(saeval_tokens.shape) == (16, 16)\n"
        "    assert sorted(saeval_saes) == ['bad', 'good']\n"
        "    assert sorted(saeval_results) == ['bad', 'good']\n"
        "    assert 0 <= saeval_results['good'].metrics['l0'] <= 64\n"
        "    assert saeval_model.cfg.n_layers == 2\n"
    )
    expected = {
        "thresholds/demo.yaml::good::explained_variance": "PASSED",
        "thresholds/demo.yaml::good::l0": "PASSED",
        "thresholds/demo.yaml::good::cossim": "SKIPPED",
        "thresholds/demo.yaml::bad::frac_alive": "PASSED",
        "thresholds/demo.yaml::bad::l0": "FAILED",
        "thresholds/broken.yaml": "ERROR",
        "thresholds/mismatch.yaml::narrow::l0": "ERROR",
        "thresholds/mismatch.yaml::narrow::explained_variance": "ERROR",
        "thresholds/mismatch.yaml::fine::l0": "PASSED",  # its neighbour's error does not touch it
        "other/ov.yaml::ov::l0": "PASSED",
        "tests/test_py.py::test_marker_pass": "PASSED",
        "tests/test_py.py::test_marker_fail": "FAILED",
        "tests/test_py.py::test_marker_body_fails_first": "FAILED",
        "tests/test_py.py::test_marker_error": "PASSED+ERROR",
        "tests/test_py.py::test_fixtures": "PASSED",
    }
    return RichProject(root, demo, expected)


COUNTING_CONFTEST = '''
"""Test instrumentation: one empty file per evaluated SAE and per loaded model, named after the process."""
import uuid
from pathlib import Path

import pytest_saeval.run.evaluation as _evaluation
import pytest_saeval.sources.models as _models

LOG = Path({log!r})
_orig_evaluate = _evaluation.fused_pass
_orig_load_model = _models.load_model


WHO = ["main"]


def _who():
    return WHO[0]


def _evaluate(model, saes, tokens, settings, options, cache):
    out = _orig_evaluate(model, saes, tokens, settings, options, cache)
    for fused_id in saes:
        suite, uid = fused_id.rsplit("::", 1)
        (LOG / f"eval--{{_who()}}--{{Path(suite).stem}}--{{uid}}--{{uuid.uuid4().hex}}").touch()
    return out


def _load_model(**kwargs):
    (LOG / f"model--{{_who()}}--{{Path(str(kwargs.get('path'))).name}}--{{uuid.uuid4().hex}}").touch()
    return _orig_load_model(**kwargs)


def pytest_configure(config):
    WHO[0] = getattr(config, "workerinput", {{}}).get("workerid", "main")
    _evaluation.fused_pass = _evaluate
    _models.load_model = _load_model


def pytest_unconfigure(config):
    _evaluation.fused_pass = _orig_evaluate
    _models.load_model = _orig_load_model
'''


def counting_conftest(log: Path) -> str:
    """A conftest that records every SAE evaluation and model load in ``log`` (see :func:`read_log`)."""
    return COUNTING_CONFTEST.format(log=str(log))


def read_log(log: Path) -> dict[str, list[tuple[str, str]]]:
    """``{"eval": [(process, "suite/sae"), ...], "model": [(process, model folder), ...]}``."""
    found: dict[str, list[tuple[str, str]]] = {"eval": [], "model": []}
    for f in sorted(log.iterdir()):
        parts = f.name.split("--")
        if parts[0] == "eval":
            found["eval"].append((parts[1], f"{parts[2]}/{parts[3]}"))
        elif parts[0] == "model":
            found["model"].append((parts[1], parts[2]))
    return found


def run_pytest(pytester: pytest.Pytester, mode: str, *args: str) -> pytest.RunResult:
    """Run pytest in the pytester folder: ``plain`` in-process, ``n2``/``n3`` as a subprocess with xdist."""
    base = ("-p", "no:cacheprovider", "-rA")
    if mode == "plain":
        return pytester.runpytest(*base, *args)
    workers = mode.removeprefix("n")
    return pytester.runpytest_subprocess(*base, "-n", workers, *args, timeout=600)
