"""``saeval merge`` without a model: runs with hand-set results written as N shards by the one ``finish()``,
read back and merged -- the same files as the unsharded run -- and every way shards can fail to make one
verdict (missing, doubled, another partition, a changed suite, a lost or foreign or differing record)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_saeval.cli import main
from pytest_saeval.engine.results import SAEResult
from pytest_saeval.errors import ShardError
from pytest_saeval.report.finish import FinishOptions, finish
from pytest_saeval.report.merge import merge_shards
from pytest_saeval.report.shardfile import SHARD_FILE, read_shard_record
from pytest_saeval.run.checks import check_suite
from pytest_saeval.run.outcome import Inputs, SuiteRun
from pytest_saeval.run.plan import entries_of
from pytest_saeval.run.provenance import Note, Provenance
from pytest_saeval.run.session import eval_config
from pytest_saeval.run.shards import Shard, ShardPlan, plan_shards
from pytest_saeval.spec.baseline import load_baseline, write_baseline
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.timings import load_timings

ROOT = Path(__file__).resolve().parents[3]
GROUPS = ["thresholds/a1.yaml + thresholds/a2.yaml", "thresholds/b.yaml", "thresholds/c.yaml"]


def _write_suite(name: str, model: str, saes: dict[str, str], *, batch: int = 4, baseline: bool = True) -> Suite:
    body = "".join(f"  - id: {uid}\n    path: saes/{uid}\n    gates:\n" + "".join(f"      {g}\n" for g in gates.split("; "))
                   for uid, gates in saes.items())
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"model:\n  path: ../{model}\n  device: cpu\ndata:\n  tokens: t.npy\n  context_size: 8\n"
                    f"  batch_size_prompts: {batch}\n  n_reconstruction_batches: 2\n  n_sparsity_batches: 2\n"
                    + (f"baseline: ../baselines/{path.stem}.json\n" if baseline else "") + "saes:\n" + body)
    return load_suite(name)


def _result(uid: str, l0: float) -> SAEResult:
    return SAEResult(sae_id=uid, hook_name="blocks.0.hook_resid_pre", hook_head_index=None, d_in=4, d_sae=3,
                     metrics={"l0": l0, "mse": 0.25 * l0, "explained_variance": math.nan, "frac_alive": 2 / 3},
                     feature_metrics={"feature_density": [0.5, math.nan, 0.125]})


def _run(suite: Suite, l0: dict[str, float]) -> SuiteRun:
    entries = entries_of(suite)
    results = {e.unique_id: _result(e.unique_id, l0[e.unique_id]) for e in entries}
    intervals = {uid: {"l0": (r.metrics["l0"] - 0.5, r.metrics["l0"] + 0.5)} for uid, r in results.items()}
    baseline = load_baseline(suite.baseline) if suite.baseline is not None and suite.uses_baseline else None
    checks, unchecked = check_suite(suite, entries, results, baseline, intervals)
    provenance = {uid: Provenance("0.1", "6", "3", "2", "3.11", "cpu", f"sae-{uid}", "model", "tokens") for uid in results}
    return SuiteRun(suite=suite, entries=entries, results=results, checks=checks, eval_cfg=eval_config(suite, 8),
                    provenance=provenance, sae_cfgs={uid: {"d_in": 4, "d_sae": 3} for uid in results},
                    notes=[], unchecked=unchecked, intervals=intervals, seconds=float(len(results)))


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[SuiteRun]:
    """Four suites in three groups (a1 + a2 share model A; b on B; c on B with other batches), evaluated
    by hand. Every suite names a baseline file; only c's SAE ``cb`` is gated against its values."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    Path("baselines").mkdir()
    write_baseline("baselines/c.json", {"cb": {"l0": 7.0}})
    suites = [
        _write_suite("thresholds/a1.yaml", "A", {"s0": 'l0: ">= 0"; mse: "<= 10"', "s1": 'frac_alive: ">= 0.5"'}),
        _write_suite("thresholds/a2.yaml", "A", {"s0b": 'l0: "<= 100"'}),
        _write_suite("thresholds/b.yaml", "B", {"s0": 'l0: ">= 1"; frac_alive: "<= 1"'}),
        _write_suite("thresholds/c.yaml", "B", {"cb": 'l0: ">= baseline - 0.5"'}, batch=2),
    ]
    l0 = {"s0": 5.0, "s1": 6.0, "s0b": 7.0, "cb": 7.25}
    return [_run(s, l0) for s in suites]


def _plan(runs: list[SuiteRun], k: int, n: int = 3, drop: str | None = None) -> ShardPlan:
    selection = [(r.suite, {uid: set(r.suite.sae(uid).metrics) for uid in r.results if uid != drop}) for r in runs]
    return plan_shards(Shard(k, n), selection)


def _shards(runs: list[SuiteRun], n: int = 3, **options: object) -> list[Path]:
    """Each shard given every run: ``finish`` keeps what the shard owns."""
    folders = []
    for k in range(1, n + 1):
        folder = Path(f"shard-{k}")
        done = finish(runs, FinishOptions(output_dir=folder, shard=_plan(runs, k, n), **options))  # type: ignore[arg-type]
        assert done.ok, done.problems
        folders.append(folder)
    return folders


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_merged_shards_write_the_unsharded_run_s_files(project: list[SuiteRun]) -> None:
    assert finish(project, FinishOptions(output_dir=Path("full"))).ok
    folders = _shards(project)
    owned = {k: {g.id for g in read_shard_record(f).plan.owned} for k, f in enumerate(folders, start=1)}
    assert sorted(g for ids in owned.values() for g in ids) == GROUPS
    for k, folder in enumerate(folders, start=1):
        suites = {r["eval_cfg"]["suite"] for r in json.loads((folder / "all_eval_results.json").read_text())}
        assert suites == {s for g in owned[k] for s in g.split(" + ")}, "a shard records only what it owns"
    merged = merge_shards(folders)
    assert finish(merged.runs, FinishOptions(output_dir=Path("merged"))).ok
    assert _files(Path("merged")) == _files(Path("full"))
    assert merged.passed and [c.passed for r in merged.runs for c in r.checks] == [c.passed for r in project for c in r.checks]
    assert merged.notes[0].startswith("merged 3 shards of partition ")


def test_shards_of_two_partitions_merge_only_when_each_group_ran_once_and_say_so(project: list[SuiteRun]) -> None:
    """Shard 1 of one partition with shards 2 and 3 of another (planned from other timings): every group was
    evaluated by exactly one of them, so they merge, and the first note names both partitions."""
    base = _plan(project, 1)
    owners = base.owners
    assert sorted(owners) == [1, 2, 3]
    swapped = tuple({2: 3, 3: 2}.get(k, k) for k in owners)  # the same groups, shards 2 and 3 trading theirs
    folders = []
    for k in (1, 2, 3):
        plan = ShardPlan(Shard(k, 3), base.groups, owners if k == 1 else swapped, "timings" if k > 1 else "estimate")
        folder = Path(f"mixed-{k}")
        assert finish(project, FinishOptions(output_dir=folder, shard=plan)).ok
        folders.append(folder)
    merged = merge_shards(folders)
    assert merged.passed
    first = merged.notes[0]
    assert first.startswith("merged 3 shards of 2 partitions (") and "every group still evaluated by exactly one" in first
    assert base.partition[:8] in first
    doubled = [folders[0], Path("shard-2"), folders[2]]  # shard 2 of the first partition evaluates a group again
    finish(project, FinishOptions(output_dir=doubled[1], shard=_plan(project, 2)))
    with pytest.raises(ShardError, match="the shards split the work differently"):
        merge_shards(doubled)


def test_the_merge_loads_each_suite_file_once(project: list[SuiteRun]) -> None:
    folders = _shards(project)
    loaded: list[Path] = []

    def load(path: Path) -> Suite:
        loaded.append(path)
        return load_suite(path)

    assert merge_shards(folders, load=load).passed
    assert sorted(map(str, loaded)) == sorted({str(r.suite.path) for r in project})


def test_a_failing_gate_in_one_shard_fails_the_merged_verdict(project: list[SuiteRun]) -> None:
    write_baseline("baselines/c.json", {"cb": {"l0": 9.0}})  # cb (l0 7.25) now needs >= 8.5
    runs = [*project[:3], _run(project[3].suite, {"cb": 7.25})]
    merged = merge_shards(_shards(runs))
    failed = [c for r in merged.runs for c in r.checks if not c.passed]
    assert [(c.sae_id, c.gate.metric) for c in failed] == [("cb", "l0")] and not merged.passed
    assert "needs >= baseline - 0.5 (= 8.500)" in failed[0].message
    write_baseline("baselines/c.json", {"cb": {"l0": 1.0}})  # re-checked from the *recorded* baseline value
    again = merge_shards([Path("shard-1"), Path("shard-2"), Path("shard-3")])
    assert not again.passed


def test_a_missing_or_doubled_shard_is_named(project: list[SuiteRun]) -> None:
    one, two, three = _shards(project)
    owned_by_2 = "; ".join(g.id for g in read_shard_record(two).plan.owned)
    with pytest.raises(ShardError) as e:
        merge_shards([one, three])
    assert f"shard 2/3 is missing (it evaluates {owned_by_2})" in str(e.value) and "Fix:" in str(e.value)
    with pytest.raises(ShardError, match=r"shard 3/3 is given twice: shard-3 \(shard 3/3\) and shard-3 \(shard 3/3\)"):
        merge_shards([one, two, three, three])
    with pytest.raises(ShardError, match=r"holds no saeval-shard.json"):
        merge_shards([one, two, Path("elsewhere").resolve().parent])


def test_shards_of_another_partition_or_selection_do_not_merge(project: list[SuiteRun]) -> None:
    one, two, three = _shards(project)
    assert finish(project, FinishOptions(output_dir=Path("four-1"), shard=_plan(project, 1, 4))).ok
    with pytest.raises(ShardError, match=r"four-1 \(shard 1/4\) belongs to another partition .*N 4 vs 3"):
        merge_shards([one, two, Path("four-1")])
    assert finish(project, FinishOptions(output_dir=Path("fewer-3"), shard=_plan(project, 3, drop="s1"))).ok
    with pytest.raises(ShardError, match=r"belongs to another partition .*selection"):
        merge_shards([one, two, Path("fewer-3")])


def test_a_changed_suite_file_stops_the_merge(project: list[SuiteRun]) -> None:
    folders = _shards(project)
    path = Path("thresholds/b.yaml")
    path.write_text(path.read_text().replace('">= 1"', '">= 2"'))
    with pytest.raises(ShardError, match=r"thresholds/b.yaml here is not the file the shards ran"):
        merge_shards(folders)


@pytest.mark.parametrize(("field", "value", "key", "why"), [
    ("extra", ["../x"], "extra[0]", "extra[0] must be a [suite, SAE id] pair of strings, got '../x'"),
    ("index", "1", "shard.index", "shard.index must be a whole number from 1 to 3, got '1'"),
    ("count", 0, "shard.count", "shard.count must be a whole number from 1 to 10000, got 0"),
    ("errors", "boom", "errors", "errors must be a JSON list, got 'boom'"),
])
def test_saeval_merge_of_a_damaged_shard_record_is_one_located_error(
        project: list[SuiteRun], capsys: pytest.CaptureFixture[str], field: str, value: object, key: str,
        why: str) -> None:
    folders = _shards(project)
    path = folders[0] / SHARD_FILE
    data = json.loads(path.read_text())
    (data["shard"] if field in ("index", "count") else data)[field] = value
    path.write_text(json.dumps(data))
    assert main(["merge", *map(str, folders), "--output-dir", "out"]) == 2
    out, err = capsys.readouterr()
    assert err == f"saeval: error: {path}: {key}: the shard record is damaged: {why}. Fix: run that shard again\n"
    assert not Path("out").exists()


def _edit_records(folder: Path, edit: object) -> None:
    path = folder / "all_eval_results.json"
    records = json.loads(path.read_text())
    path.write_text(json.dumps(edit(records)))  # type: ignore[operator]


def test_a_lost_foreign_or_doubled_record_is_named(project: list[SuiteRun]) -> None:
    folders = _shards(project)
    owner = read_shard_record(folders[0]).plan.owner("thresholds/b.yaml")
    assert owner is not None
    b_folder = folders[owner - 1]
    b_records = json.loads((b_folder / "all_eval_results.json").read_text())
    _edit_records(b_folder, lambda recs: [r for r in recs if r["eval_cfg"]["suite"] != "thresholds/b.yaml"])
    with pytest.raises(ShardError, match=r"shard \d/3\) has no result for thresholds/b.yaml::s0"):
        merge_shards(folders)
    other = next(f for f in folders if f != b_folder)
    _edit_records(other, lambda recs: recs + b_records)
    with pytest.raises(ShardError, match=r"recorded thresholds/b.yaml::s0, which shard \d evaluates"):
        merge_shards(folders)


@pytest.mark.parametrize(("kind", "edited", "shared_with", "source"), [
    ("model", "thresholds/c.yaml", "thresholds/b.yaml", r"the model .*B \(float32, on cpu\)"),
    ("tokens", "thresholds/b.yaml", "thresholds/a1.yaml", r"the tokens .*t.npy \(first 8 rows of 8\)"),
])
def test_one_source_read_with_other_contents_in_two_shards_is_refused(
    project: list[SuiteRun], kind: str, edited: str, shared_with: str, source: str
) -> None:
    """b and c share model B, a1 and b token rows, each pair in two groups: a checkpoint or token file
    replaced between two shards' starts gives two contents for one source."""
    runs = [dataclasses.replace(run, inputs=dataclasses.replace(
        run.inputs, model_xxh3="m-" + run.suite.model.path.name,  # type: ignore[union-attr]
        tokens_xxh3=f"t-{run.suite.data.rows_needed}")) for run in project]
    folders = _shards(runs)
    assert merge_shards(folders).passed  # the same contents everywhere: fine
    plan = read_shard_record(folders[0]).plan
    assert plan.owner(edited) != plan.owner(shared_with)

    def replaced(records: list[dict]) -> list[dict]:
        for rec in records:
            if rec["eval_cfg"]["suite"] == edited:
                rec["inputs"][f"{kind}_xxh3"] = "replaced"
        return records

    _edit_records(folders[plan.owner(edited) - 1], replaced)  # type: ignore[operator]
    with pytest.raises(ShardError, match=rf"inputs.{kind}_xxh3: {source} had different contents in different "
                                         r"shards \(.* in shard-\d \(shard \d/3\); replaced in shard-"):
        merge_shards(folders)


def test_results_outside_the_partition_merge_once_when_equal(project: list[SuiteRun]) -> None:
    """A marker's or fixture's suite (not selected as gate tests) may be evaluated in several shards."""
    extra = _write_suite("other/extra.yaml", "A", {"e": 'l0: ">= 0"'})
    marked = _run(extra, {"e": 3.0})
    folders = _shards(project[:3])  # c.yaml is not part of this selection
    for folder, k in zip(folders[:2], (1, 2)):
        assert finish([*project[:3], marked], FinishOptions(output_dir=folder, shard=_plan(project[:3], k))).ok
    assert read_shard_record(folders[0]).extra == (("other/extra.yaml", "e"),)
    merged = merge_shards(folders)
    assert [r.suite.path.as_posix() for r in merged.runs] == ["other/extra.yaml", "thresholds/a1.yaml",
                                                            "thresholds/a2.yaml", "thresholds/b.yaml"]
    assert any("other/extra.yaml::e (outside the partition) was recorded by" in n for n in merged.notes)
    different = _run(extra, {"e": 4.0})
    assert finish([*project[:3], different], FinishOptions(output_dir=folders[1], shard=_plan(project[:3], 2))).ok
    with pytest.raises(ShardError, match=r"other/extra.yaml::e differs between shard-1 \(shard 1/3\) and shard-2"):
        merge_shards(folders)


def test_an_unfinished_shard_leaves_no_record(project: list[SuiteRun]) -> None:
    (folder,) = _shards(project, n=1)
    assert (folder / SHARD_FILE).is_file()
    (folder / "all_eval_results.json").unlink()
    (folder / "all_eval_results.json").mkdir()  # the next write of the outputs fails
    done = finish(project, FinishOptions(output_dir=folder, shard=_plan(project, 1, 1)))
    assert not done.ok and not (folder / SHARD_FILE).exists(), "the old record must not vouch for new outputs"


def test_an_empty_shard_records_itself_and_is_needed(project: list[SuiteRun]) -> None:
    folders = _shards(project, n=5)
    empty = [f for f in folders if not read_shard_record(f).plan.owned]
    assert len(empty) == 2 and json.loads((empty[0] / "all_eval_results.json").read_text()) == []
    assert merge_shards(folders).passed
    with pytest.raises(ShardError, match=r"is missing \(it evaluates no group: an empty shard, still needed\)"):
        merge_shards([f for f in folders if f != empty[0]])


def test_shards_update_only_their_own_baselines_and_merge_can_update_all(project: list[SuiteRun]) -> None:
    for k in (1, 2, 3):
        before = {p.name: p.read_text() for p in Path("baselines").iterdir()}
        assert finish(project, FinishOptions(output_dir=Path(f"b-{k}"), shard=_plan(project, k),
                                             update_baseline=True)).ok
        after = {p.name: p.read_text() for p in Path("baselines").iterdir()}
        changed = sorted(n for n in after if after[n] != before.get(n))
        assert changed == sorted(f"{Path(s).stem}.json" for g in _plan(project, k).owned for s in g.suites)
    for p in Path("baselines").iterdir():
        p.unlink()
    merged = merge_shards([Path(f"b-{k}") for k in (1, 2, 3)])
    assert finish(merged.runs, FinishOptions(output_dir=Path("m"), update_baseline=True)).ok
    assert sorted(p.name for p in Path("baselines").iterdir()) == ["a1.json", "a2.json", "b.json", "c.json"]
    assert load_baseline("baselines/b.json").value("s0", "l0") == 5.0
    assert load_baseline("baselines/c.json").value("cb", "l0") == 7.25


def test_timings_go_to_the_cache_folder_only_from_unsharded_runs_and_merges(project: list[SuiteRun]) -> None:
    cache = Path("cache")
    folders = _shards(project, timings_dir=cache)
    assert not cache.exists(), "a shard keeps its timings in its shard record"
    recorded = {name: t.seconds for f in folders for name, t in read_shard_record(f).timings.items()}
    assert recorded == {"thresholds/a1.yaml": 2.0, "thresholds/a2.yaml": 1.0, "thresholds/b.yaml": 1.0,
                        "thresholds/c.yaml": 1.0}
    merged = merge_shards(folders)
    assert finish(merged.runs, FinishOptions(output_dir=Path("m"), timings_dir=cache)).ok
    assert {k: v.seconds for k, v in load_timings(cache).items()} == recorded


def test_a_cache_folder_that_cannot_keep_the_timings_is_a_line_not_a_failure(project: list[SuiteRun]) -> None:
    Path("cache").write_text("a file where the cache folder should be")
    done = finish(project, FinishOptions(timings_dir=Path("cache")))
    assert done.ok and any(line.startswith("timings not kept: cannot write cache") for line in done.lines), done


def test_saeval_merge_needs_no_torch(project: list[SuiteRun]) -> None:
    folders = _shards(project)
    code = ("import sys; from pytest_saeval.cli import main; "
            "rc = main(['merge', *sys.argv[1:], '--output-dir', 'out', '--report', 'out/report.html']); "
            "heavy = [m for m in ('torch', 'transformer_lens', 'sae_lens') if m in sys.modules]; "
            "print(rc, heavy)")
    done = subprocess.run([sys.executable, "-c", code, *map(str, folders)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout
    # no project root (pyproject.toml, pytest.ini, ...) above the suites: the cache folder is next to them
    assert Path("out/report.html").stat().st_size > 10_000 and Path("thresholds/.saeval-cache/timings.json").is_file()


# -- evaluations on a conftest's inputs, typed notes, partial checks ---------------------------------
OVERRIDE = "saeval_tokens from tests/conftest.py"


def _on_other_tokens(run: SuiteRun, l0: dict[str, float]) -> SuiteRun:
    """``run``'s suite evaluated again on a conftest's tokens (other values, its own inputs)."""
    return dataclasses.replace(_run(run.suite, l0), inputs=Inputs(overridden=(OVERRIDE,), model_xxh3="model",
                                                                  tokens_xxh3="other"))


def test_evaluations_on_a_conftest_s_inputs_stay_apart_through_the_merge(project: list[SuiteRun]) -> None:
    note = Note("s0", "[s0] the baseline baselines/b.json was recorded on other tokens (xxh3 a -> b)", loud=True)
    own = dataclasses.replace(project[2], notes=[note])
    runs = [*project[:2], own, _on_other_tokens(project[2], {"s0": 2.0}), project[3]]
    assert finish(runs, FinishOptions(output_dir=Path("full"))).ok
    folders = _shards(runs)
    merged = merge_shards(folders)
    assert finish(merged.runs, FinishOptions(output_dir=Path("merged"))).ok
    assert _files(Path("merged")) == _files(Path("full")), "the same records, files, summary (the loud note too)"
    b_runs = [r for r in merged.runs if r.suite.path.as_posix() == "thresholds/b.yaml"]
    assert [r.inputs for r in b_runs] == [Inputs(), runs[3].inputs]
    assert [r.results["s0"].metrics["l0"] for r in b_runs] == [5.0, 2.0]
    assert b_runs[0].notes == [note] and b_runs[1].notes == []
    assert len([p for p in Path("merged").iterdir() if p.name.startswith("b__s0~with-")]) == 1
    owner = read_shard_record(folders[0]).plan.owner("thresholds/b.yaml")
    records = json.loads((folders[owner - 1] / "all_eval_results.json").read_text())  # type: ignore[operator]
    assert [r["inputs"]["overridden"] for r in records if r["unique_id"] == "s0" and "b.yaml" in r["eval_cfg"]["suite"]] \
        == [[], [OVERRIDE]], "both evaluations of b.yaml's s0 are recorded by the shard that owns b.yaml"


def test_a_merge_records_baselines_only_from_own_inputs_and_not_after_a_failing_gate(
        project: list[SuiteRun], capsys: pytest.CaptureFixture[str]) -> None:
    failing = _on_other_tokens(project[2], {"s0": 0.5})  # l0 0.5 misses b.yaml's ">= 1" on the conftest's tokens
    folders = _shards([*project[:3], failing, project[3]])
    for p in Path("baselines").iterdir():
        p.unlink()
    args = ["merge", *map(str, folders), "--output-dir", "m", "--no-cache"]
    assert main([*args, "--update-baseline"]) == 1
    out = capsys.readouterr().out
    assert "baseline NOT updated: 1 gate failed in this run (1 of them on a conftest's inputs)" in out
    assert "--update-baseline-force" in out and not list(Path("baselines").iterdir())
    assert main([*args, "--update-baseline-force"]) == 1
    assert sorted(p.name for p in Path("baselines").iterdir()) == ["a1.json", "a2.json", "b.json", "c.json"]
    assert load_baseline("baselines/b.json").value("s0", "l0") == 5.0, "the suite's own value, never the conftest's"


def test_a_fixed_bound_that_failed_while_recording_is_checked_again(project: list[SuiteRun]) -> None:
    suite = _write_suite("thresholds/d.yaml", "C", {"d": 'l0: [">= 6", ">= baseline - 0.5"]; mse: ">= baseline"'})
    entries, results = entries_of(suite), {"d": _result("d", 5.0)}
    checks, unchecked = check_suite(suite, entries, results, None, {}, recording=True)
    assert [c.partial for c in checks] == [True] and [g.metric for _, g in unchecked] == ["mse"]
    run = SuiteRun(suite=suite, entries=entries, results=results, checks=checks, eval_cfg=eval_config(suite, 8),
                   unchecked=unchecked)
    assert finish([run], FinishOptions(output_dir=Path("full"))).ok
    merged = merge_shards(_shards([run], n=1))
    assert finish(merged.runs, FinishOptions(output_dir=Path("merged"))).ok
    assert _files(Path("merged")) == _files(Path("full"))
    (check,) = merged.runs[0].checks
    assert check.partial and not check.passed and check.gate == suite.sae("d").gate("l0")
