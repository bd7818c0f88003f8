"""The HTML report's parts: which figures an SAE's per-feature metrics give, their titles' counts, the fixed
sample of scatter plots, and the page's headline, notes and escaping. (The whole page rendered in a browser:
tests/integration/test_report_html.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pytest_saeval.report.html import DEAD_OFFSET, html_report, sae_plots, write_html_report
from pytest_saeval.run.provenance import Note
from tests.helpers import hand_run

SUITE = """\
model: {path: m}
data: {tokens: t.npy}
saes:
  - id: a
    path: a
    gates:
      l0: "<= 60"
      mse: "<= 1"
"""


def _slugs(fm: dict[str, list[float]]) -> list[str]:
    return [p.slug for p in sae_plots(fm)]


def test_figures_whose_inputs_are_missing_are_left_out() -> None:
    assert _slugs({}) == []
    assert _slugs({"feature_density": []}) == []
    assert _slugs({"feature_density": [0.1, 0.0]}) == ["feature-density"]
    assert _slugs({"feature_density": [0.1], "consistent_activation_heuristic": [2.0]}) == [
        "feature-density", "density-vs-heuristic"]
    assert _slugs({"encoder_norm": [1.0]}) == []  # a scatter matrix needs two columns
    assert _slugs({"encoder_norm": [1.0], "encoder_decoder_cosine_sim": [0.5]}) == [
        "weights-matrix", "encoder-decoder-cosine"]
    assert _slugs({"max_decoder_cosine_sim": [0.2]}) == ["decoder-redundancy"]


def test_dead_features_are_counted_and_drawn_at_minus_ten() -> None:
    density = [0.0, 0.0, 0.0, 1e-3, 0.5, float("nan")]
    heuristic = [float("nan")] * 3 + [2.0, 4.0, 1.0]
    density_plot, scatter = sae_plots({"feature_density": density, "consistent_activation_heuristic": heuristic})
    assert "3 dead features (density 0) at -10" in density_plot.title
    assert f"log10(density + {DEAD_OFFSET:g})" in density_plot.title
    x = np.asarray(density_plot.figure.data[0].x)
    assert len(x) == 5 and (x == -10).sum() == 3  # the NaN density is not drawn
    assert "4 dead features left out" in scatter.title  # dead or without a finite heuristic
    np.testing.assert_allclose(scatter.figure.data[1].x, np.log10([1e-3, 0.5]))
    one = sae_plots({"feature_density": [0.0, 0.1]})[0]
    assert "1 dead feature (density 0)" in one.title


def test_scatter_plots_show_a_fixed_sample_and_histograms_every_feature() -> None:
    rng = np.random.default_rng(0)
    fm = {"feature_density": (10 ** rng.uniform(-4, -1, 300)).tolist(),
          "consistent_activation_heuristic": (1 + rng.uniform(0, 5, 300)).tolist()}
    first = sae_plots(fm, max_points=50)[1]
    again = sae_plots(fm, max_points=50)[1]
    other = sae_plots(fm, max_points=50, seed=1)[1]
    assert "showing 50 of 300 features, a fixed random sample" in first.title
    assert len(first.figure.data[1].x) == 50 and len(first.figure.data[0].x) == 300
    assert list(first.figure.data[1].x) == list(again.figure.data[1].x)
    assert list(first.figure.data[1].x) != list(other.figure.data[1].x)
    assert "showing" not in sae_plots(fm, max_points=300)[1].title


def test_the_scatter_matrix_has_a_histogram_per_column_and_a_scatter_per_pair() -> None:
    three = {"encoder_bias": [0.1, 0.2], "encoder_norm": [1.0, 2.0], "encoder_decoder_cosine_sim": [0.5, 0.6]}
    (matrix,) = [p for p in sae_plots(three) if p.slug == "weights-matrix"]
    assert [t.type for t in matrix.figure.data].count("histogram") == 3
    assert [t.type for t in matrix.figure.data].count("scatter") == 3
    assert matrix.title.startswith("Scatter matrix of encoder_bias, encoder_norm, encoder_decoder_cosine_sim")


def test_decoder_redundancy_title_gives_the_mean_and_the_count_above_point_nine() -> None:
    (plot,) = sae_plots({"max_decoder_cosine_sim": [0.95, 0.5, 0.25, 0.91, float("nan")]})
    assert "(mean 0.6525; 2 features above 0.9)" in plot.title
    assert len(plot.figure.data[0].x) == 4


@pytest.fixture
def suite_path(tmp_path: Path) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(SUITE)
    return path


def test_the_page_headline_counts_failures_and_lists_loud_notes_first(suite_path: Path) -> None:
    run = hand_run(suite_path, {"a": {"l0": 70.0, "mse": 0.5}},
                   notes=[Note("a", "quiet note"), Note("a", "recorded on other tokens", loud=True)])
    text = html_report([run], title="gates <of> demo")
    assert "<strong>1 of 2 gates failed.</strong>" in text
    assert "<title>gates &lt;of&gt; demo</title>" in text and "<of>" not in text
    notes = re.findall(r'<li class="(loud|note)">', text)
    assert notes == ["loud", "note"]
    assert "<strong>different inputs:</strong>" in text
    assert 'data-sae="a"' not in text and "No per-feature metrics to plot." in text  # hand-set results have none


def test_all_passing_and_nothing_checked_headlines(suite_path: Path) -> None:
    run = hand_run(suite_path, {"a": {"l0": 10.0, "mse": 0.5}})
    assert "<strong>All 2 gates passed.</strong>" in html_report([run])
    assert "<strong>No gates checked.</strong>" in html_report([])


def test_gates_left_unchecked_are_counted_and_listed(tmp_path: Path) -> None:
    """A baseline-relative gate whose baseline has no value yet is neither a pass nor a failure: the page says
    how many there are and lists each with why and where."""
    path = tmp_path / "demo.yaml"
    path.write_text(SUITE.replace('mse: "<= 1"', 'mse: "<= 1"\n      cossim: ">= baseline - 0.01"')
                    .replace("saes:", "baseline: b.json\nsaes:"))
    run = hand_run(path, {"a": {"l0": 10.0, "mse": 0.5, "cossim": 0.9}}, recording=True)
    text = html_report([run])
    assert "<strong>All 2 gates passed. 1 unchecked (no baseline value yet).</strong>" in text
    items = re.findall(r'<li class="unchecked">(.*?)</li>', text)
    assert items == ["[a] cossim &gt;= baseline - 0.01: the baseline has no value yet; this run records it "
                     f"— {path}:10"]


def test_write_html_report_writes_the_page(suite_path: Path, tmp_path: Path) -> None:
    run = hand_run(suite_path, {"a": {"l0": 10.0, "mse": 0.5}})
    target = write_html_report([run], tmp_path / "deep" / "report.html", title="t")
    assert target == tmp_path / "deep" / "report.html"
    assert target.read_text(encoding="utf-8") == html_report([run], title="t")
