"""The HTML report: one self-contained page whose every plot renders in headless Chromium.

The browser tests need Chromium (Debian: ``apt-get install -y chromium``). They skip only when no
Chromium is installed and ``$CI`` is unset; in CI a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pytest_saeval.catalogue import FEATURE_METRICS
from pytest_saeval.engine.results import SAEResult
from pytest_saeval.report.html import DEAD_OFFSET, html_report, sae_plots, write_html_report
from pytest_saeval.run.checks import check_suite
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.run.plan import entries_of
from pytest_saeval.spec.loader import load_suite
from tests.helpers import eval_config

SUITE = """\
model:
  path: ../model
data:
  tokens: ../tokens.npy
saes:
  - id: wide
    path: ../saes/wide
    gates:
      explained_variance: ">= 0.80"
      l0: [">= 10", "<= 60"]
  - id: narrow
    path: ../saes/narrow
    gates:
      frac_alive: ">= 0.99"
"""

N_WIDE, N_DEAD, N_NARROW, MAX_POINTS = 3000, 200, 400, 1000


def _features(rng: np.random.Generator, n: int, n_dead: int, *, bias: bool, redundancy: bool) -> dict[str, list[float]]:
    density = 10 ** rng.normal(-3, 1, n)
    density[:n_dead] = 0.0
    heuristic = 1 + rng.gamma(2.0, 2.0, n)
    heuristic[:n_dead] = np.nan
    fm = {
        "feature_density": density,
        "consistent_activation_heuristic": heuristic,
        "encoder_norm": rng.gamma(5.0, 0.2, n),
        "encoder_decoder_cosine_sim": np.clip(rng.normal(0.7, 0.15, n), -1, 1),
        "decoder_norm": np.ones(n),
        "max_encoder_cosine_sim": rng.uniform(0.1, 0.6, n),
    }
    if bias:
        fm["encoder_bias"] = rng.normal(-0.1, 0.05, n)
    if redundancy:
        fm["max_decoder_cosine_sim"] = np.clip(rng.normal(0.4, 0.2, n), -1, 1)
    assert set(fm) <= set(FEATURE_METRICS)
    return {k: v.tolist() for k, v in fm.items()}


def _result(sae_id: str, metrics: dict[str, float], fm: dict[str, list[float]]) -> SAEResult:
    return SAEResult(sae_id=sae_id, hook_name="blocks.1.hook_resid_pre", hook_head_index=None, d_in=32,
                     d_sae=len(fm["feature_density"]), metrics=metrics, feature_metrics=fm)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[SuiteRun]:
    folder = tmp_path_factory.mktemp("report") / "thresholds"
    folder.mkdir()
    path = folder / "demo.yaml"
    path.write_text(SUITE)
    suite = load_suite(path)
    entries = entries_of(suite)
    rng = np.random.default_rng(0)
    results = {
        "wide": _result("wide", {"explained_variance": 0.7812, "l0": 32.0, "frac_alive": 0.93},
                        _features(rng, N_WIDE, N_DEAD, bias=True, redundancy=True)),
        "narrow": _result("narrow", {"explained_variance": 0.91, "l0": 12.0, "frac_alive": 0.97},
                          _features(rng, N_NARROW, 0, bias=False, redundancy=False)),
    }
    checks, _ = check_suite(suite, entries, results, None, INTERVALS)
    return [SuiteRun(suite=suite, entries=entries, results=results, checks=checks, eval_cfg=eval_config(),
                     intervals=INTERVALS)]


INTERVALS = {"wide": {"explained_variance": (0.7770, 0.7853), "l0": (31.2, 32.9)}}
EXPECTED_PLOTS = [
    ("wide", "feature-density"), ("wide", "density-vs-heuristic"), ("wide", "weights-matrix"),
    ("wide", "encoder-decoder-cosine"), ("wide", "decoder-redundancy"),
    ("narrow", "feature-density"), ("narrow", "density-vs-heuristic"), ("narrow", "weights-matrix"),
    ("narrow", "encoder-decoder-cosine"),
]


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory) -> Path:
    return write_html_report(runs, tmp_path_factory.mktemp("html") / "report.html", max_points=MAX_POINTS)


# -- the page itself ----------------------------------------------------------------------------


def test_page_is_self_contained(page):
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\bsrc=", text)
    head_script = re.search(r"<head>.*?<script[^>]*>(.*?)</script>", text, re.S)
    assert head_script is not None and "Plotly" in head_script.group(1)[:2000]
    ours = text.replace(head_script.group(1), "")  # plotly.js mentions URLs in its own code
    assert not re.search(r"<link\b", ours)
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", ours)
    assert text.count("<script") >= 1 + len(EXPECTED_PLOTS)
    assert 4_000_000 < len(text) < 12_000_000  # plotly.js inline (~4.8 MB) plus the data


def test_plots_per_sae_in_order(page):
    text = page.read_text(encoding="utf-8")
    found = re.findall(r'<div class="plot" data-plot="([a-z-]+)" data-sae="([a-z]+)">', text)
    assert [(sae, slug) for slug, sae in found] == EXPECTED_PLOTS
    assert f'<meta name="saeval-plot-count" content="{len(EXPECTED_PLOTS)}">' in text


def test_gate_table_failures_first_with_intervals(page):
    text = page.read_text(encoding="utf-8")
    table = text[text.index('<table class="gates">'):text.index("</table>")]
    rows = re.findall(r'<tr class="(pass|fail)">(.*?)</tr>', table)
    assert [r[0] for r in rows] == ["fail", "fail", "pass"]
    assert "<code>explained_variance</code></td><td class=\"num\">0.7812</td><td class=\"num\">[0.7770, 0.7853]</td>" in rows[0][1]
    assert "<code>frac_alive</code>" in rows[1][1]
    assert "2 of 3 gates failed." in text


def test_titles_say_how_dead_features_and_samples_are_handled(runs):
    plots = {p.slug: p for p in sae_plots(runs[0].results["wide"].feature_metrics, max_points=MAX_POINTS)}
    assert f"{N_DEAD} dead features (density 0) at -10" in plots["feature-density"].title
    assert f"log10(density + {DEAD_OFFSET:g})" in plots["feature-density"].title
    density_x = np.asarray(plots["feature-density"].figure.data[0].x)
    assert len(density_x) == N_WIDE and (density_x == -10).sum() == N_DEAD
    scatter = plots["density-vs-heuristic"]
    assert f"{N_DEAD} dead features left out" in scatter.title
    assert f"showing {MAX_POINTS:,} of {N_WIDE - N_DEAD:,} features" in scatter.title
    assert len(scatter.figure.data[1].x) == MAX_POINTS
    assert len(scatter.figure.data[0].x) == N_WIDE - N_DEAD  # histograms use every live feature
    assert "Scatter matrix of encoder_bias, encoder_norm, encoder_decoder_cosine_sim" in plots["weights-matrix"].title
    assert len(plots["weights-matrix"].figure.data) == 6  # 3 histograms + 3 scatter panels
    narrow = {p.slug: p for p in sae_plots(runs[0].results["narrow"].feature_metrics)}
    assert len(narrow["weights-matrix"].figure.data) == 3  # no encoder bias: 2 histograms + 1 scatter
    assert "decoder-redundancy" not in narrow


def test_no_feature_metrics_is_said_in_words(runs):
    r = runs[0]
    bare = SuiteRun(suite=r.suite, entries=r.entries, results={"wide": _result("wide", {"l0": 1.0}, {"feature_density": []})},
                    checks=[], eval_cfg=eval_config())
    text = html_report([bare])
    assert "No per-feature metrics to plot." in text and "No gates checked." in text


# -- the browser ---------------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("Chromium is not installed; CI must install it (Debian: apt-get install -y chromium)")
    pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium); required when $CI is set")


def _run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)


class _PlotCounter(HTMLParser):
    """Per plot div (``id="plot-N"``): how many plotly SVG roots and trace groups it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.svgs: dict[str, int] = {}
        self.traces: dict[str, int] = {}

    def _current(self) -> str | None:
        return next((p for p in reversed(self.stack) if p is not None), None)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        plot_id = a.get("id") if tag == "div" and (a.get("id") or "").startswith("plot-") else None
        if plot_id:
            self.svgs.setdefault(plot_id, 0)
            self.traces.setdefault(plot_id, 0)
        current = plot_id or self._current()
        if current is not None:
            if tag == "svg" and "main-svg" in classes:
                self.svgs[current] += 1
            if tag == "g" and "trace" in classes:
                self.traces[current] += 1
        if tag not in ("meta", "br", "img", "input", "link", "hr", "path", "rect", "line", "circle", "use", "stop"):
            self.stack.append(plot_id)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        current = self._current()
        if current is not None and tag == "g" and "trace" in classes:
            self.traces[current] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("meta", "br", "img", "input", "link", "hr", "path", "rect", "line", "circle", "use", "stop") and self.stack:
            self.stack.pop()


def test_every_plot_renders_in_headless_chromium(page, tmp_path):
    done = _run_chromium(tmp_path, "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-3000:]
    dom = done.stdout
    assert "js-plotly-plot" in dom
    counter = _PlotCounter()
    counter.feed(dom)
    ids = [f"plot-{i}" for i in range(1, len(EXPECTED_PLOTS) + 1)]
    assert sorted(counter.svgs, key=lambda s: int(s.split("-")[1])) == ids
    for plot_id in ids:
        assert counter.svgs[plot_id] >= 1, f"{plot_id} drew no plotly SVG"
        assert counter.traces[plot_id] >= 1, f"{plot_id} drew no trace"
    log = done.stderr
    assert "Uncaught" not in log, log[-3000:]
    assert not re.search(r"CONSOLE.*(?:Error|error)", log), log[-3000:]


def test_screenshot(page, tmp_path):
    shot = tmp_path / "report.png"
    done = _run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,3000", page.as_uri())
    assert done.returncode == 0, done.stderr[-3000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # a blank page compresses to a few KB
    assert "Uncaught" not in done.stderr
