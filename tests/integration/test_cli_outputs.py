"""``saeval run --output-dir``: per-SAE JSON, all_eval_results.json / .csv and summary.md, with the
provenance of every value (atomic and concurrent writes: ``test_concurrent_writes.py``)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
from pathlib import Path

import pytest

from pytest_saeval.catalogue import METRICS
from pytest_saeval.cli import main
from tests.integration.badinput.cases import Assets
from tests.integration.cli_helpers import load, write_suite

RECORD_KEYS = {"unique_id", "sae_set", "sae_id", "eval_cfg", "metrics", "feature_metrics", "sae_cfg"}
HASH_KEYS = ("sae_xxh3", "model_xxh3", "tokens_xxh3")

# SAE Lens groups its run_evals metrics like this; our metrics are flat, under the same names.
METRIC_GROUPS = {
    "model_behavior_preservation": ("kl_div_with_sae", "kl_div_with_ablation", "kl_div_score"),
    "model_performance_preservation": ("ce_loss_with_sae", "ce_loss_without_sae", "ce_loss_with_ablation",
                                       "ce_loss_score"),
    "reconstruction_quality": ("explained_variance", "explained_variance_legacy", "mse", "cossim"),
    "shrinkage": ("l2_norm_in", "l2_norm_out", "l2_ratio", "relative_reconstruction_bias"),
    "sparsity": ("l0", "l1"),
    "token_stats": ("total_tokens_eval_reconstruction", "total_tokens_eval_sparsity_variance"),
}


def run_quietly(*args: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = main(["run", *args, "--no-cache", "--no-progress"])
    assert rc == 0, err.getvalue()
    return rc


@pytest.fixture(scope="module")
def outputs(tiny: Assets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two suites (context 8 and 4), two SAEs each, written to one output folder."""
    root = tmp_path_factory.mktemp("outputs")
    wide = write_suite(root / "wide.yaml", tiny, context=8)
    short = write_suite(root / "short.yaml", tiny, context=4)
    run_quietly(str(wide), str(short), "--output-dir", str(root / "out"))
    return root / "out"


# ---------------------------------------------------------------------------------------------
# contents


def test_one_json_per_sae_with_sae_lens_keys_and_flat_metrics(outputs: Path) -> None:
    names = sorted(p.name for p in outputs.iterdir())
    assert names == ["all_eval_results.csv", "all_eval_results.json", "short__sae0.json", "short__topk.json",
                     "summary.md", "wide__sae0.json", "wide__topk.json"]
    summary = (outputs / "summary.md").read_text()
    assert "| Result |" in summary and "sae0" in summary
    record = load(outputs / "wide__sae0.json")
    assert set(record) >= RECORD_KEYS
    assert record["unique_id"] == "sae0" and record["sae_id"] == "sae0" and record["sae_set"] == "wide"
    assert record["eval_cfg"]["context_size"] == 8 and record["eval_cfg"]["dataset"].endswith("tokens.npy")
    metrics = record["metrics"]
    scalar = {name for name, info in METRICS.items() if not info.per_feature}
    assert set(metrics) == scalar  # every scalar metric, flat: name -> number
    assert all(isinstance(v, (int, float)) or v is None for v in metrics.values())
    assert set(record["feature_metrics"]) == {name for name, info in METRICS.items() if info.per_feature}
    assert all(len(v) == 64 for v in record["feature_metrics"].values())
    assert record["sae_cfg"]["d_in"] == 32 and record["sae_cfg"]["d_sae"] == 64
    assert [g["metric"] for g in record["gates"]] == ["l0"] and record["gates"][0]["passed"] is True


def test_provenance_names_versions_device_and_content_hashes(outputs: Path) -> None:
    import torch

    prov = load(outputs / "wide__sae0.json")["provenance"]
    assert prov["pytest_saeval_version"] and prov["sae_lens_version"]
    assert prov["torch_version"] == torch.__version__ and prov["device"] == "cpu"
    for key in HASH_KEYS:
        assert re.fullmatch(r"[0-9a-f]{32}", prov[key]), key
    other = load(outputs / "wide__topk.json")["provenance"]
    assert other["sae_xxh3"] != prov["sae_xxh3"]
    assert other["model_xxh3"] == prov["model_xxh3"]
    assert other["tokens_xxh3"] == prov["tokens_xxh3"]
    # a context of 4 reads other token rows (cut), so the token hash differs
    assert load(outputs / "short__sae0.json")["provenance"]["tokens_xxh3"] != prov["tokens_xxh3"]


def test_combined_json_and_csv_match_the_per_sae_files(outputs: Path) -> None:
    combined = load(outputs / "all_eval_results.json")
    singles = [load(outputs / n) for n in ("wide__sae0.json", "wide__topk.json", "short__sae0.json", "short__topk.json")]
    assert combined == singles

    with open(outputs / "all_eval_results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    header = list(rows[0])
    for name in combined[0]["metrics"]:
        assert f"metrics.{name}" in header  # one flat column per metric
    assert not any(h.startswith("feature_metrics") for h in header)
    for row, record in zip(rows, combined):
        assert row["unique_id"] == record["unique_id"]
        assert row["eval_cfg.context_size"] == str(record["eval_cfg"]["context_size"])
        assert row["provenance.sae_xxh3"] == record["provenance"]["sae_xxh3"]
        for name, value in record["metrics"].items():
            cell = row[f"metrics.{name}"]
            assert (cell == "") if value is None else math.isclose(float(cell), value, rel_tol=0, abs_tol=0)


def test_the_sae_lens_tutorial_analysis_runs_on_the_outputs(outputs: Path) -> None:
    """The evals tutorial's way of reading results: json_normalize, group by dataset and context
    size, print each metric group. It runs unchanged on our flat metrics, with the same numbers."""
    import pandas as pd

    with open(outputs / "all_eval_results.json") as fh:
        data = json.load(fh)
    df = pd.json_normalize(data)
    printed = io.StringIO()
    seen: dict[tuple[str, str], dict[str, float]] = {}
    for (dataset, context_size), group in df.groupby(["eval_cfg.dataset", "eval_cfg.context_size"]):
        print(f"== {Path(dataset).name}, context {context_size} ==", file=printed)
        for group_name, names in METRIC_GROUPS.items():
            columns = [f"metrics.{n}" for n in names]
            table = group.set_index(["eval_cfg.suite", "unique_id"])[columns]
            print(f"-- {group_name}", file=printed)
            print(table.to_string(), file=printed)
            for (suite, uid), values in table.iterrows():
                seen.setdefault((suite, uid), {}).update({c.removeprefix("metrics."): v for c, v in values.items()})
    text = printed.getvalue()
    assert text.count("== tokens.npy") == 2  # two context sizes
    for group_name in METRIC_GROUPS:
        assert text.count(f"-- {group_name}\n") == 2
    assert len(seen) == 4
    for path in outputs.glob("*__*.json"):
        record = load(path)
        values = seen[(record["eval_cfg"]["suite"], record["unique_id"])]
        for group_names in METRIC_GROUPS.values():
            for name in group_names:
                expected = record["metrics"][name]
                assert (math.isnan(values[name]) if expected is None else values[name] == expected), name


# ---------------------------------------------------------------------------------------------
# provenance follows the content


def test_provenance_hashes_change_when_the_sae_weights_change(tiny: Assets, tmp_path: Path) -> None:
    import numpy as np

    from tests.helpers import save_tiny_sae

    sae = save_tiny_sae(tmp_path / "sae", seed=0, hook_name="blocks.0.hook_resid_pre", d_in=32, d_sae=64)
    tokens = tmp_path / "tokens.npy"
    np.save(tokens, np.load(tiny.tokens))
    suite = write_suite(tmp_path / "s.yaml", tiny, sae0=sae, tokens=tokens, second=False)

    def provenance(tag: str) -> dict[str, str]:
        run_quietly(str(suite), "--output-dir", str(tmp_path / tag))
        return load(tmp_path / tag / "s__sae0.json")["provenance"]

    first = provenance("a")
    assert provenance("again") == first  # same content, same hashes
    save_tiny_sae(sae, seed=1, hook_name="blocks.0.hook_resid_pre", d_in=32, d_sae=64)
    retrained = provenance("b")
    assert retrained["sae_xxh3"] != first["sae_xxh3"]
    assert retrained["model_xxh3"] == first["model_xxh3"]
    assert retrained["tokens_xxh3"] == first["tokens_xxh3"]
    changed = np.load(tiny.tokens)
    changed[0, 1] += 1
    np.save(tokens, changed)
    new_tokens = provenance("c")
    assert new_tokens["tokens_xxh3"] != first["tokens_xxh3"]
    assert new_tokens["sae_xxh3"] == retrained["sae_xxh3"]


def test_suites_with_the_same_name_in_two_folders_keep_both_files(tiny: Assets, tmp_path: Path) -> None:
    a = write_suite(tmp_path / "a" / "demo.yaml", tiny, second=False)
    b = write_suite(tmp_path / "b" / "demo.yaml", tiny, second=False)
    run_quietly(str(a), str(b), "--output-dir", str(tmp_path / "out"))
    singles = sorted(p.name for p in (tmp_path / "out").glob("demo*__sae0.json"))
    assert len(singles) == 2 and singles == ["demo~a%2Fdemo.yaml__sae0.json", "demo~b%2Fdemo.yaml__sae0.json"]
    suites = {load(tmp_path / "out" / n)["eval_cfg"]["suite"] for n in singles}
    assert suites == {str(a), str(b)}


def test_an_unwritable_output_folder_is_bad_input(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    suite = write_suite(tmp_path / "s.yaml", tiny, second=False)
    rc = main(["run", str(suite), "--output-dir", str(blocker / "out"), "--no-cache", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"saeval: error: --output-dir: cannot write {blocker / 'out'}: ")  # before the run
    assert "Fix: " in err
