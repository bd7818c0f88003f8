"""One self-contained HTML page per run: the gate table and, per SAE, the SAE Lens evals plots.

The page embeds plotly.js inline (no network needed to open it) and draws, for each SAE:

* the log10 feature density histogram (dead features, density 0, are drawn at ``log10(1e-10) = -10``);
* log10 feature density against log10 of the consistent-activation heuristic, with marginal
  histograms (dead features have no heuristic and are left out; the title says how many);
* a scatter matrix of encoder bias, encoder norm and encoder-decoder cosine similarity (histograms on
  the diagonal);
* the encoder-decoder cosine similarity histogram;
* the decoder redundancy histogram: each feature's largest cosine similarity to another decoder vector.

Scatter plots draw at most ``max_points`` features (a fixed random sample; the title says so);
histograms use every feature. All plots are SVG (no WebGL), so they render in any browser.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pytest_saeval.catalogue import METRICS
from pytest_saeval.fileio import atomic_write_text
from pytest_saeval.report.rows import format_headroom, format_interval, gate_rows, unchecked_reasons
from pytest_saeval.run.intervals import INTERVAL_METRICS, Interval
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.spec.numbers import format_number

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from pytest_saeval.engine.results import SAEResult

__all__ = ["DEAD_OFFSET", "SAEPlot", "html_report", "sae_plots", "write_html_report"]

DEAD_OFFSET = 1e-10
"""Added to feature densities before ``log10`` so that dead features (density 0) plot at -10."""

_CONFIG = {"displaylogo": False, "responsive": True}
_HEIGHT = 420


@dataclass(frozen=True)
class SAEPlot:
    """One figure of one SAE."""

    slug: str
    """Short name: ``feature-density``, ``density-vs-heuristic``, ``weights-matrix``, ``encoder-decoder-cosine``,
    ``decoder-redundancy``."""
    title: str
    """What the figure shows (also its on-plot title)."""
    figure: go.Figure
    """The plotly figure."""


def _array(values: object) -> np.ndarray:
    return np.asarray(values if values is not None else [], dtype=np.float64).reshape(-1)


def _sample(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _sampled_note(n_shown: int, n_total: int) -> str:
    return f" (showing {n_shown:,} of {n_total:,} features, a fixed random sample)" if n_shown < n_total else ""


def _layout(fig: go.Figure, title: str, height: int = _HEIGHT) -> go.Figure:
    fig.update_layout(title={"text": html.escape(title), "font": {"size": 14}}, template="plotly_white", height=height,
                      margin={"l": 60, "r": 20, "t": 60, "b": 50}, showlegend=False, bargap=0.02)
    return fig


def _histogram(values: np.ndarray, title: str, x_title: str) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=values, nbinsx=100, marker={"color": "#4c72b0"}))
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text="features")
    return _layout(fig, title)


def _density_plot(density: np.ndarray) -> SAEPlot:
    finite = density[np.isfinite(density)]
    dead = int((finite == 0).sum())
    title = (f"Log10 feature density: log10(density + {DEAD_OFFSET:g}); {dead:,} dead feature"
             f"{'s' if dead != 1 else ''} (density 0) at -10")
    fig = _histogram(np.log10(finite + DEAD_OFFSET), title, "log10(feature density + 1e-10)")
    return SAEPlot("feature-density", title, fig)


def _density_vs_heuristic(density: np.ndarray, heuristic: np.ndarray, max_points: int, seed: int) -> SAEPlot:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = min(len(density), len(heuristic))
    density, heuristic = density[:n], heuristic[:n]
    live = np.isfinite(density) & np.isfinite(heuristic) & (density > 0) & (heuristic > 0)
    x, y = np.log10(density[live]), np.log10(heuristic[live])
    idx = _sample(len(x), max_points, seed)
    left_out = n - int(live.sum())
    title = (f"Feature density vs consistent activation heuristic (log10 both); {left_out:,} dead feature"
             f"{'s' if left_out != 1 else ''} left out{_sampled_note(len(idx), len(x))}")
    fig = make_subplots(rows=2, cols=2, shared_xaxes=True, shared_yaxes=True, row_heights=[0.25, 0.75],
                        column_widths=[0.78, 0.22], horizontal_spacing=0.02, vertical_spacing=0.02)
    fig.add_trace(go.Histogram(x=x, nbinsx=80, marker={"color": "#4c72b0"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=x[idx], y=y[idx], mode="markers", marker={"size": 4, "opacity": 0.5, "color": "#4c72b0"},
                             hovertemplate="log10 density %{x:.3f}<br>log10 heuristic %{y:.3f}<extra></extra>"),
                  row=2, col=1)
    fig.add_trace(go.Histogram(y=y, nbinsy=80, marker={"color": "#4c72b0"}), row=2, col=2)
    fig.update_xaxes(title_text="log10(feature density)", row=2, col=1)
    fig.update_yaxes(title_text="log10(consistent activation heuristic)", row=2, col=1)
    return SAEPlot("density-vs-heuristic", title, _layout(fig, title, height=520))


def _weights_matrix(columns: Sequence[tuple[str, np.ndarray]], max_points: int, seed: int) -> SAEPlot:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    k = len(columns)
    n = min(len(v) for _, v in columns)
    data = [(name, v[:n]) for name, v in columns]
    ok = np.all([np.isfinite(v) for _, v in data], axis=0)
    idx = _sample(int(ok.sum()), max_points, seed)
    title = "Scatter matrix of " + ", ".join(name for name, _ in data) + _sampled_note(len(idx), int(ok.sum()))
    fig = make_subplots(rows=k, cols=k, horizontal_spacing=0.04, vertical_spacing=0.04)
    for i, (name_y, y) in enumerate(data):
        for j, (name_x, x) in enumerate(data):
            if j > i:
                continue
            if i == j:
                fig.add_trace(go.Histogram(x=x[ok], nbinsx=60, marker={"color": "#55a868"}), row=i + 1, col=j + 1)
            else:
                fig.add_trace(go.Scatter(x=x[ok][idx], y=y[ok][idx], mode="markers",
                                         marker={"size": 3, "opacity": 0.5, "color": "#55a868"},
                                         hovertemplate=f"{name_x} %{{x:.4f}}<br>{name_y} %{{y:.4f}}<extra></extra>"),
                              row=i + 1, col=j + 1)
            if i == k - 1:
                fig.update_xaxes(title_text=name_x, row=i + 1, col=j + 1)
            if j == 0:
                fig.update_yaxes(title_text=name_y if i else "features", row=i + 1, col=j + 1)
    return SAEPlot("weights-matrix", title, _layout(fig, title, height=240 * k))


def sae_plots(feature_metrics: Mapping[str, Sequence[float]], *, max_points: int = 5000, seed: int = 0) -> list[SAEPlot]:
    """The figures for one SAE's per-feature metrics (figures whose inputs are missing are left out)."""
    fm = {name: _array(values) for name, values in feature_metrics.items()}
    plots: list[SAEPlot] = []
    density = fm.get("feature_density")
    if density is not None and density.size:
        plots.append(_density_plot(density))
        heuristic = fm.get("consistent_activation_heuristic")
        if heuristic is not None and heuristic.size:
            plots.append(_density_vs_heuristic(density, heuristic, max_points, seed))
    columns = [(name, fm[name]) for name in ("encoder_bias", "encoder_norm", "encoder_decoder_cosine_sim")
               if name in fm and fm[name].size]
    if len(columns) >= 2:
        plots.append(_weights_matrix(columns, max_points, seed))
    cos = fm.get("encoder_decoder_cosine_sim")
    if cos is not None and cos.size:
        title = "Encoder-decoder cosine similarity per feature"
        plots.append(SAEPlot("encoder-decoder-cosine", title,
                             _histogram(cos[np.isfinite(cos)], title, "cos(W_enc[:, i], W_dec[i])")))
    red = fm.get("max_decoder_cosine_sim")
    if red is not None and red.size:
        finite = red[np.isfinite(red)]
        near = int((finite > 0.9).sum())
        mean = format_number(float(finite.mean())) if finite.size else "NaN"
        title = (f"Decoder redundancy: largest cosine similarity to another decoder vector "
                 f"(mean {mean}; {near:,} feature{'s' if near != 1 else ''} above 0.9)")
        plots.append(SAEPlot("decoder-redundancy", title,
                             _histogram(finite, title, "max over j != i of cos(W_dec[i], W_dec[j])")))
    return plots


# --------------------------------------------------------------------------------------------
# page

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #fdecea; } tr.pass td:first-child { color: #1a7f37; } tr.fail td:first-child { color: #b42318; font-weight: 600; }
code { font-size: 0.95em; } .muted { color: #666; font-size: 0.9em; }
.plot { border: 1px solid #eee; margin: 12px 0; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _gate_table(runs: Sequence[SuiteRun]) -> str:
    rows = gate_rows(runs)
    if not rows:
        return "<p>No gates were checked.</p>"
    head = "".join(f"<th>{h}</th>" for h in ("Result", "SAE", "Metric", "Value", "95% interval", "Bound", "Headroom", "Where"))
    body = []
    for r in rows:
        body.append(
            f'<tr class="{"pass" if r.passed else "fail"}"><td>{"PASS" if r.passed else "FAIL"}</td>'
            f"<td><code>{_e(r.sae_id)}</code>{_e(r.inputs)}</td><td><code>{_e(r.metric)}</code></td>"
            f'<td class="num">{_e(format_number(r.value, r.digits))}</td>'
            f'<td class="num">{_e(format_interval(r.interval, r.digits, value=r.value))}</td>'
            f'<td>{_e(r.bound)}</td><td class="num">{_e(format_headroom(r.headroom, r.digits))}</td>'
            f'<td><code>{_e(r.where)}</code></td></tr>'
        )
    return f'<table class="gates"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _metrics_table(result: SAEResult, found: Mapping[str, Interval]) -> str:
    body = []
    for name, value in result.metrics.items():
        info = METRICS.get(name)
        better = "" if info is None or info.higher_is_better is None else ("higher" if info.higher_is_better else "lower")
        iv = format_interval(found.get(name), value=value) if name in INTERVAL_METRICS else ""
        desc = info.description if info is not None else ""
        body.append(f'<tr><td><code>{_e(name)}</code></td><td class="num">{_e(format_number(value))}</td>'
                    f'<td class="num">{_e(iv)}</td><td>{better}</td><td class="muted">{_e(desc)}</td></tr>')
    head = "<tr><th>Metric</th><th>Value</th><th>95% interval</th><th>Better</th><th>Meaning</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _eval_cfg_line(run: SuiteRun) -> str:
    cfg = run.eval_cfg.to_dict()
    return "; ".join(f"{k} = {cfg[k]}" for k in ("dataset", "context_size", "batch_size_prompts",
                                                 "n_eval_reconstruction_batches", "n_eval_sparsity_variance_batches",
                                                 "exclude_special_tokens"))


def _unchecked(reasons: Sequence[str]) -> list[str]:
    """The gates left unchecked (no baseline value yet), one item each with why and where."""
    if not reasons:
        return []
    items = "".join(f'<li class="unchecked">{_e(reason)}</li>' for reason in reasons)
    return [f"<p>Unchecked:</p><ul>{items}</ul>"]


def _notes(runs: Sequence[SuiteRun]) -> list[str]:
    """The baselines' provenance notes, as a list (loud ones, about other inputs, first)."""
    notes = sorted(((n.loud, run.suite.path, n.text) for run in runs for n in run.notes), key=lambda n: not n[0])
    if not notes:
        return []
    items = "".join(f'<li class="{"loud" if loud else "note"}">{"<strong>different inputs:</strong> " if loud else ""}'
                    f"<code>{_e(suite)}</code> {_e(text)}</li>" for loud, suite, text in notes)
    return [f"<p>Baselines:</p><ul>{items}</ul>"]


def html_report(runs: Sequence[SuiteRun], *, title: str = "saeval report", max_points: int = 5000) -> str:
    """The report page as one HTML string (plotly.js inline)."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    rows = gate_rows(runs)
    unchecked = unchecked_reasons(runs)
    n_fail = sum(not r.passed for r in rows)
    also = f" {len(unchecked)} unchecked (no baseline value yet)." if unchecked else ""
    if not rows:
        headline = "No gates checked." + also
    elif n_fail:
        headline = f"{n_fail} of {len(rows)} gates failed." + also
    else:
        headline = f"All {len(rows)} gates passed." + also
    parts = [f"<h1>{_e(title)}</h1>", f'<p class="headline"><strong>{_e(headline)}</strong></p>',
             _gate_table(runs), *_unchecked(unchecked), *_notes(runs)]
    if any(r.interval is not None for r in rows):
        parts.append('<p class="muted">Intervals: 95% percentile bootstrap over sequences. Headroom: distance to the '
                     "nearest bound (negative: failing).</p>")
    n_plot = 0
    for k, run in enumerate(runs):
        for uid, result in run.results.items():
            parts.append(f'<h2 id="sae-{k}-{_e(uid)}">SAE <code>{_e(uid)}</code>{_e(run.inputs.describe())}</h2>')
            parts.append(f'<p class="muted">{_e(run.title)}. hook <code>{_e(getattr(result, "hook_name", ""))}</code>, '
                         f'd_sae {_e(getattr(result, "d_sae", ""))}. {_e(_eval_cfg_line(run))}</p>')
            found = run.intervals_of(uid)
            parts.append(f"<details><summary>All metrics</summary>{_metrics_table(result, found)}</details>")
            plots = sae_plots(getattr(result, "feature_metrics", {}) or {}, max_points=max_points)
            if not plots:
                parts.append("<p>No per-feature metrics to plot.</p>")
            for plot in plots:
                n_plot += 1
                div = pio.to_html(plot.figure, full_html=False, include_plotlyjs=False, include_mathjax=False,
                                  div_id=f"plot-{n_plot}", config=_CONFIG, default_height=f"{plot.figure.layout.height}px",
                                  default_width="100%", validate=True)
                parts.append(f'<div class="plot" data-plot="{_e(plot.slug)}" data-sae="{_e(uid)}">{div}</div>')
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta name=\"saeval-plot-count\" content=\"{n_plot}\">\n<title>{_e(title)}</title>\n"
        f"<style>{_CSS}</style>\n<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_html_report(runs: Sequence[SuiteRun], path: str | os.PathLike[str], *,
                      title: str = "saeval report", max_points: int = 5000) -> Path:
    """Write :func:`html_report` to ``path`` (atomically) and return the path.

    The page needs nothing else: plotly.js is embedded, so it opens offline (about 5 MB plus the data).
    """
    target = Path(path)
    atomic_write_text(target, html_report(runs, title=title, max_points=max_points))
    return target
