"""Shards: ``K/N`` and the CI variables, the partition by evaluation group (deterministic, balanced, every
group exactly once), the cost estimate from file sizes, and timings taking over from the estimate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_saeval.errors import InputError
from pytest_saeval.run.costs import UNKNOWN_SAE_BYTES, estimate, weight_bytes
from pytest_saeval.run.shards import Shard, ShardPlan, balance, plan_shards, shard_from, suite_name
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.timings import SuiteTiming

ROOT = Path(__file__).resolve().parents[3]


# -- K/N ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "k", "n"), [("2/3", 2, 3), (" 1 / 1 ", 1, 1), ("3/3", 3, 3), ("10000/10000", 10000, 10000),
                                                ("0000001/0000003", 1, 3)])
def test_a_shard_is_k_of_n_numbered_from_one(text: str, k: int, n: int) -> None:
    assert Shard.parse(text) == Shard(k, n)
    assert str(Shard.parse(text)) == f"{k}/{n}"


@pytest.mark.parametrize(("text", "words"), [
    ("0/3", ["numbered from 1 to 3", "0-based index i is shard i+1"]),
    ("4/3", ["shard 4/3 does not exist"]),
    ("1/0", ["at least 1 shard"]),
    ("3", ["is not a shard", "K/N"]),
    ("a/b", ["is not a shard"]),
    ("1/10001", ["a partition of 10,001 shards is more than the 10,000 allowed"]),
    ("1/99999999999999999999999", ["has more than 10,000 shards"]),  # refused before int() sees it
    ("1/" + "9" * 5000, ["has more than 10,000 shards"]),
    ("99999999999/3", ["does not exist: shards are numbered from 1 to 3"]),
    ("\uff11/\uff13", ["is not a shard"]),  # full-width digits: int() would take them, the option does not
])
def test_a_bad_shard_is_one_located_error(text: str, words: list[str]) -> None:
    with pytest.raises(InputError) as e:
        Shard.parse(text, key="--saeval-shard")
    assert str(e.value).startswith("--saeval-shard: ")
    assert all(w in str(e.value) for w in words), str(e.value)
    assert "Fix:" in str(e.value)


def test_the_option_wins_over_the_environment_and_nothing_means_unsharded() -> None:
    env = {"SAEVAL_SHARD": "3/4"}
    assert shard_from("1/2", env) == Shard(1, 2)
    assert shard_from(None, env) == Shard(3, 4)
    assert shard_from(None, {}) is None
    with pytest.raises(InputError, match=r"^SAEVAL_SHARD: .*numbered from 1"):
        shard_from(None, {"SAEVAL_SHARD": "0/4"})
    assert shard_from(None, {"SAEVAL_SHARD": " "}) is None  # an empty variable is an unset one


@pytest.mark.parametrize("value", ["", "  "])
def test_an_option_given_empty_is_an_error_not_an_unsharded_run(value: str) -> None:
    with pytest.raises(InputError, match=r"^--shard: the shard is empty .*Fix: give the shard as K/N"):
        shard_from(value, {"SAEVAL_SHARD": "1/2"}, key="--shard")


@pytest.mark.parametrize(("env", "expected"), [
    ({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "5"}, Shard(2, 5)),  # GitLab counts from 1
    ({"CIRCLE_NODE_INDEX": "0", "CIRCLE_NODE_TOTAL": "3"}, Shard(1, 3)),  # CircleCI from 0
    ({"BUILDKITE_PARALLEL_JOB": "3", "BUILDKITE_PARALLEL_JOB_COUNT": "4"}, Shard(4, 4)),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "2",
      "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "1"}, Shard(3, 3)),  # --array=0-2
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "8",
      "SLURM_ARRAY_TASK_COUNT": "4"}, Shard(3, 4)),  # --array=5-8
])
def test_auto_reads_the_ci_systems_index(env: dict[str, str], expected: Shard) -> None:
    assert shard_from("auto", env) == expected
    assert shard_from(None, {**env, "SAEVAL_SHARD": "auto"}) == expected


def test_auto_never_falls_back_to_an_unsharded_run() -> None:
    with pytest.raises(InputError, match="no CI index variables") as e:
        shard_from("auto", {}, key="--saeval-shard")
    assert "--saeval-shard 2/3" in str(e.value)
    stepped = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "5",
               "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "2"}  # --array=1-5:2
    with pytest.raises(InputError, match="gaps or steps"):
        shard_from("auto", stepped)
    superscript = {**stepped, "SLURM_ARRAY_TASK_MAX": "\u00b3", "SLURM_ARRAY_TASK_STEP": "1"}  # isdigit(), not int()
    with pytest.raises(InputError, match="SLURM_ARRAY_TASK_MAX='\u00b3' is not a whole number"):
        shard_from("auto", superscript)
    with pytest.raises(InputError, match="CI_NODE_INDEX='\uff12' is not a whole number"):  # int() would read it
        shard_from("auto", {"CI_NODE_INDEX": "\uff12", "CI_NODE_TOTAL": "2"})
    with pytest.raises(InputError, match="GitLab.*CI_NODE_INDEX=0 is out of range: jobs are numbered from 1 to 2"):
        shard_from("auto", {"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "2"})


_SLURM = {"SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "3"}


@pytest.mark.parametrize(("env", "key", "message"), [
    ({"SLURM_ARRAY_TASK_ID": "x", **_SLURM}, "SLURM_ARRAY_TASK_ID",
     "auto: SLURM_ARRAY_TASK_ID='x' is not a whole number"),  # was "a Slurm array with gaps or steps"
    ({"SLURM_ARRAY_TASK_ID": "x"}, "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_ID is set, but not SLURM_ARRAY_TASK_MIN, "
     "SLURM_ARRAY_TASK_MAX, SLURM_ARRAY_TASK_COUNT: this is no Slurm job array"),
    ({"SLURM_ARRAY_TASK_ID": "9", **_SLURM}, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT",
     "Slurm: SLURM_ARRAY_TASK_ID=9 is out of range: jobs are numbered from 1 to 3 (SLURM_ARRAY_TASK_COUNT=3)"),
    ({"CIRCLE_NODE_INDEX": "-1", "CIRCLE_NODE_TOTAL": "3"}, "CIRCLE_NODE_INDEX/CIRCLE_NODE_TOTAL",
     "CircleCI (parallelism:): CIRCLE_NODE_INDEX=-1 is out of range: jobs are numbered from 0 to 2"),  # no 0-based hint
    ({"CIRCLE_NODE_INDEX": "3", "CIRCLE_NODE_TOTAL": "3"}, "CIRCLE_NODE_INDEX/CIRCLE_NODE_TOTAL",
     "CIRCLE_NODE_INDEX=3 is out of range: jobs are numbered from 0 to 2 (CIRCLE_NODE_TOTAL=3)"),
    ({"BUILDKITE_PARALLEL_JOB": "1", "BUILDKITE_PARALLEL_JOB_COUNT": "three"}, "BUILDKITE_PARALLEL_JOB_COUNT",
     "auto: BUILDKITE_PARALLEL_JOB_COUNT='three' is not a whole number"),
])
def test_auto_says_which_variable_is_wrong_and_how(env: dict[str, str], key: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        shard_from("auto", env, key="--saeval-shard")
    assert info.value.location.key == key and message in info.value.message, str(info.value)
    assert "0-based" not in str(info.value) and "gaps or steps" not in str(info.value)
    assert "--saeval-shard 2/3" in (info.value.fix or "")


# -- the partition ---------------------------------------------------------------------------------
def _weights(folder: Path, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(b"\0" * size)
    (folder / "config.json").write_text("{}")  # not a weight file: not counted
    return folder


def _suite(path: Path, model: Path, saes: dict[str, Path], *, batch: int = 4, device: str = "cpu") -> Suite:
    body = "".join(f"  - id: {uid}\n    path: {sae}\n    gates:\n      l0: '>= 0'\n      mse: '>= 0'\n"
                   for uid, sae in saes.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"model:\n  path: {model}\n  device: {device}\ndata:\n  tokens: t.npy\n  context_size: 8\n"
                    f"  batch_size_prompts: {batch}\n  n_reconstruction_batches: 2\n  n_sparsity_batches: 3\n"
                    "saes:\n" + body)
    return load_suite(path)


@pytest.fixture()
def suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Suite]:
    """Five suites, four groups: a1 + a2 share model A and settings; b on model B; c on B with other
    batches; d on a model given by name (unknown size). Suite names are relative to tmp_path."""
    monkeypatch.chdir(tmp_path)
    a, b = _weights(tmp_path / "A", 1000), _weights(tmp_path / "B", 3000)
    s1, s2 = _weights(tmp_path / "s1", 100), _weights(tmp_path / "s2", 300)
    out = [
        _suite(Path("thresholds/a1.yaml"), a, {"x": s1, "y": s2}),
        _suite(Path("thresholds/a2.yaml"), a, {"z": s1}),
        _suite(Path("thresholds/b.yaml"), b, {"x": s2}),
        _suite(Path("thresholds/c.yaml"), b, {"x": s1}, batch=2),
    ]
    Path("thresholds/d.yaml").write_text(
        "model:\n  name: gpt2\n  device: cpu\ndata:\n  tokens: t.npy\n  context_size: 8\n  batch_size_prompts: 4\n"
        "  n_reconstruction_batches: 2\n  n_sparsity_batches: 3\nsaes:\n  - id: r\n    release: rel\n"
        "    sae_id: exact\n    gates:\n      l0: '>= 0'\n")
    return [*out, load_suite("thresholds/d.yaml")]


def _selection(suites: list[Suite]) -> list[tuple[Suite, dict[str, set[str]]]]:
    return [(s, {spec.id: set(spec.metrics) for spec in s.saes}) for s in suites]


def test_suites_sharing_a_pass_are_one_group_and_every_group_is_in_exactly_one_shard(suites: list[Suite]) -> None:
    for n in range(1, 7):
        plans = [plan_shards(Shard(k, n), _selection(suites)) for k in range(1, n + 1)]
        assert len({p.partition for p in plans}) == 1, "every shard computes the same partition"
        ids = [g.id for p in plans for g in p.owned]
        assert sorted(ids) == sorted(g.id for g in plans[0].groups) and len(ids) == len(set(ids))
        assert [g.id for g in plans[0].groups] == ["thresholds/a1.yaml + thresholds/a2.yaml", "thresholds/b.yaml",
                                                   "thresholds/c.yaml", "thresholds/d.yaml"]
        assert plans[0].owner("thresholds/a1.yaml") == plans[0].owner("thresholds/a2.yaml")
        empty = [p for p in plans if not p.owned]
        assert len(empty) == max(0, n - 4)
        assert all("has no work: the selection has 4 evaluation groups" in p.describe() for p in empty)


def test_the_estimate_is_tokens_times_model_bytes_per_pass_plus_sae_bytes(suites: list[Suite]) -> None:
    tokens = 8 * 4 * (2 + 3)
    assert estimate(suites[0], ["x", "y"]) == tokens * (1000 * (1 + 2) + 100 + 300)
    assert estimate(suites[3], ["x"]) == 8 * 2 * 5 * (3000 * 2 + 100)
    assert estimate(suites[4], ["r"]) == tokens * (5.0e8 * 2 + UNKNOWN_SAE_BYTES)  # name / release: assumed sizes
    plan = plan_shards(Shard(1, 2), _selection(suites))
    costs = {g.id: g.cost for g in plan.groups}
    assert costs["thresholds/a1.yaml + thresholds/a2.yaml"] == tokens * (1000 * 3 + 400) + tokens * (1000 * 2 + 100)
    assert plan.cost_basis == "estimate"
    assert weight_bytes(Path("A")) == 1000 and weight_bytes(Path("nowhere")) is None


def test_largest_first_to_the_least_loaded_shard() -> None:
    # by hand: a=5 -> 1 (5, 0); b=4 -> 2 (5, 4); c=3 -> 2 (5, 7); d=3 -> 1 (8, 7); e=3 -> 2 (8, 10)
    assert balance([5, 4, 3, 3, 3], ["a", "b", "c", "d", "e"], 2) == (1, 2, 2, 1, 2)
    assert balance([1, 1, 1], ["c", "a", "b"], 2) == (1, 1, 2)  # ties: by id, then the lowest K
    assert balance([], [], 3) == ()


def test_timings_take_over_and_scale_the_estimates_of_untimed_groups(suites: list[Suite]) -> None:
    est = {g.id: g.cost for g in plan_shards(Shard(1, 2), _selection(suites)).groups}
    timings = {"thresholds/a1.yaml": SuiteTiming(4.0, 2), "thresholds/a2.yaml": SuiteTiming(2.0, 1),
               "thresholds/b.yaml": SuiteTiming(1.0, 1)}
    plan = plan_shards(Shard(1, 2), _selection(suites), timings=timings)
    costs = {g.id: g.cost for g in plan.groups}
    assert plan.cost_basis == "timings+estimate"
    assert costs["thresholds/a1.yaml + thresholds/a2.yaml"] == 6.0 and costs["thresholds/b.yaml"] == 1.0
    scale = 7.0 / (est["thresholds/a1.yaml + thresholds/a2.yaml"] + est["thresholds/b.yaml"])
    assert costs["thresholds/c.yaml"] == pytest.approx(est["thresholds/c.yaml"] * scale, rel=1e-12)
    only_a1 = plan_shards(Shard(1, 2), _selection(suites), timings={"thresholds/a1.yaml": SuiteTiming(4.0, 2)})
    assert only_a1.cost_basis == "estimate", "a group is timed only when all its suites are"


def test_the_partition_depends_on_the_selection_not_on_its_order_or_the_process(suites: list[Suite]) -> None:
    plan = plan_shards(Shard(2, 3), _selection(suites))
    again = plan_shards(Shard(2, 3), list(reversed(_selection(suites))))
    assert again.to_dict() == plan.to_dict()
    code = ("import json, sys; from tests.unit.run.test_shards import _selection; "
            "from pytest_saeval.spec.loader import load_suites; from pytest_saeval.run.shards import Shard, plan_shards; "
            "names = sorted(sys.argv[1:]); "
            "print(json.dumps(plan_shards(Shard(2, 3), _selection(load_suites(names))).to_dict()))")
    names = [str(s.path) for s in suites]
    for seed in ("1", "12345"):
        done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == plan.to_dict()


def test_a_selection_change_changes_the_selection_hash(suites: list[Suite]) -> None:
    full = plan_shards(Shard(1, 2), _selection(suites))
    fewer_gates = _selection(suites)
    fewer_gates[0][1]["x"] = {"l0"}
    fewer_saes = _selection(suites)
    del fewer_saes[0][1]["y"]
    assert len({full.selection, plan_shards(Shard(1, 2), fewer_gates).selection,
                plan_shards(Shard(1, 2), fewer_saes).selection}) == 3
    assert plan_shards(Shard(2, 2), _selection(suites)).selection == full.selection
    assert plan_shards(Shard(1, 3), _selection(suites)).partition != full.partition


def test_a_plan_reads_back_and_a_tampered_one_does_not(suites: list[Suite]) -> None:
    plan = plan_shards(Shard(2, 3), _selection(suites))
    data = json.loads(json.dumps(plan.to_dict()))
    assert ShardPlan.from_dict(data) == plan
    data["groups"][0]["shard"] = 1 + data["groups"][0]["shard"] % 3
    with pytest.raises(ValueError, match="hash does not match"):
        ShardPlan.from_dict(data)


def test_suite_names_are_normalised_paths() -> None:
    assert suite_name("./thresholds/../thresholds/a.yaml") == "thresholds/a.yaml"
    assert suite_name(Path("thresholds") / "a.yaml") == "thresholds/a.yaml"
