"""The catalogue's labels say where each definition comes from, and the README's metrics table says the same."""

from __future__ import annotations

import re
from pathlib import Path

from pytest_saeval.catalogue import METRICS, SAE_LENS_FEATURE_METRICS, SAE_LENS_SCALAR_METRICS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_metrics_saebench_does_not_compute_are_this_projects():
    """SAEBench's core eval reports neither a CE-loss difference nor a per-feature decoder norm."""
    assert METRICS["ce_loss_increase"].source == "saeval"
    assert METRICS["decoder_norm"].source == "saeval"
    assert "ce_loss_increase" not in SAE_LENS_SCALAR_METRICS and "decoder_norm" not in SAE_LENS_FEATURE_METRICS
    saebench = {m.name for m in METRICS.values() if m.source == "saebench"}
    assert saebench == {"frac_alive", "freq_over_1_percent", "freq_over_10_percent", "normalized_freq_over_1_percent",
                        "normalized_freq_over_10_percent", "average_max_encoder_cosine_sim",
                        "average_max_decoder_cosine_sim", "max_encoder_cosine_sim", "max_decoder_cosine_sim"}


def test_the_readme_table_matches_the_catalogue():
    rows = re.findall(r"^\| `(\w+)` \| (yes)? *\| (\S+) \| (\w+) \| (.+) \|$", README.read_text(), flags=re.M)
    table = {name: (bool(per_feature), better, source, meaning) for name, per_feature, better, source, meaning in rows}
    assert set(table) == set(METRICS)
    for name, info in METRICS.items():
        per_feature, better, source, meaning = table[name]
        assert (per_feature, source, meaning) == (info.per_feature, info.source, info.description), name
        assert better == {True: "higher", False: "lower", None: "—"}[info.higher_is_better], name


def test_the_readme_says_which_activations_count_as_active():
    text = " ".join(README.read_text().split())
    assert "A feature is active on a token when its activation is non-zero" in text
    assert "SAEBench's core eval counts only positive activations" in text
