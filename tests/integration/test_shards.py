"""Shards end to end: a suite set over two models (three evaluation groups, seven SAEs) run as N = 3 shards
in separate processes and merged, through ``saeval run`` (by the Slurm scripts of ``examples/ci``, as
array tasks) and through pytest (by the commands of the GitHub Actions workflow there, one shard under
``-n 2``). The merged outputs equal the unsharded run's, byte for byte; a shard failing a gate makes the
merge exit 1, a missing shard exit 2; an empty shard exits 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pytest_saeval.cli import main
from tests.integration.plugin_helpers import Assets
from tests.integration.shard_project import GROUPS, ShardProject, write_shard_project

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
N = 3


@pytest.fixture()
def project(assets: Assets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> ShardProject:
    """The project, its baseline recorded by an unsharded ``saeval run --update-baseline``."""
    proj = write_shard_project(tmp_path / "repo", assets)
    monkeypatch.chdir(proj.root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("SAEVAL_SHARD", raising=False)
    assert main(["run", "thresholds/c.yaml", "--update-baseline", "--no-progress"]) == 0
    capsys.readouterr()
    return proj


def _bin(tmp: Path) -> Path:
    """``saeval`` and ``pytest`` commands that run this interpreter (and this checkout's package)."""
    folder = tmp / "bin"
    folder.mkdir(exist_ok=True)
    for name, module in (("saeval", "pytest_saeval.cli"), ("pytest", "pytest")):
        (folder / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
        (folder / name).chmod(0o755)
    return folder


def _shell(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a fresh process, as a CI job would (the project's own ``saeval`` and ``pytest``)."""
    path = f"{_bin(cwd.parent)}{os.pathsep}{os.environ['PATH']}"
    full = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **env}
    full.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(command, cwd=cwd, env=full, capture_output=True, text=True, timeout=600)


def _same_files(merged: Path, full: Path) -> None:
    names = sorted(p.name for p in full.iterdir())
    assert names == sorted(p.name for p in merged.iterdir() if p.name != "report.html")
    for name in names:
        assert (merged / name).read_bytes() == (full / name).read_bytes(), f"{name} differs from the unsharded run's"


def _owners(folders: list[Path]) -> dict[str, int]:
    """Which shard recorded which group (each group must be in exactly one)."""
    found: dict[str, int] = {}
    for folder in folders:
        record = json.loads((folder / "saeval-shard.json").read_text())["shard"]
        for group in record["groups"]:
            if group["shard"] == record["index"]:
                assert group["id"] not in found, f"{group['id']} in two shards"
                found[group["id"]] = record["index"]
    assert sorted(found) == sorted(GROUPS)
    return found


# -- saeval run: the Slurm array scripts ------------------------------------------------------------
def _slurm_task(project: ShardProject, k: int) -> subprocess.CompletedProcess[str]:
    """Array task ``k`` as ``slurm-submit.sh`` queues it (``--array=1-N``, ``SAEVAL_SHARDS=N``)."""
    env = {"SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": str(k), "SLURM_ARRAY_TASK_MIN": "1",
           "SLURM_ARRAY_TASK_MAX": str(N), "SLURM_ARRAY_TASK_COUNT": str(N), "SAEVAL_SHARDS": str(N)}
    return _shell(["bash", str(CI / "slurm-shards.sbatch")], project.root, **env)


def _slurm_merge(project: ShardProject) -> subprocess.CompletedProcess[str]:
    return _shell(["bash", str(CI / "slurm-merge.sbatch")], project.root)


def test_saeval_run_shards_merge_into_the_unsharded_verdict(project: ShardProject,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert f"N={N} " in (CI / "slurm-submit.sh").read_text()
    assert main(["run", *(f"thresholds/{n}.yaml" for n in ("a1", "a2", "b", "c")), "--output-dir", "full",
                 "--no-progress"]) == 0
    capsys.readouterr()
    project.shift_baseline("l0", 3.0)  # c.yaml's cb now misses its baseline gate: its shard fails
    codes = {}
    for k in range(1, N + 1):
        done = _slurm_task(project, k)
        codes[k] = done.returncode
        assert done.stdout.startswith(f"saeval: shard {k}/{N} (selection "), done.stdout + done.stderr
    folders = [project.root / "saeval-shards" / str(k) for k in range(1, N + 1)]
    owners = _owners(folders)
    assert codes == {k: 1 if k == owners["thresholds/c.yaml"] else 0 for k in codes}

    hidden = shutil.move(folders[1], project.root / "elsewhere")
    missing = _slurm_merge(project)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    owned = "; ".join(g for g, owner in owners.items() if owner == 2)
    assert f"shard 2/{N} is missing (it evaluates {owned})" in missing.stderr
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    shutil.move(hidden, folders[1])

    failed = _slurm_merge(project)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "saeval: 11 passed, 1 failed (7 SAEs in 4 suites)" in failed.stdout
    assert "FAILED [cb] l0 = " in failed.stdout and " — thresholds/c.yaml:" in failed.stdout
    assert "❌ 1 of 12 gates failed" in (project.root / "saeval-results" / "summary.md").read_text()

    project.shift_baseline("l0", -3.0)  # fixed: that one shard runs again, with its siblings' partition
    again = _slurm_task(project, owners["thresholds/c.yaml"])
    assert again.returncode == 0, again.stdout + again.stderr
    merge = _slurm_merge(project)
    assert merge.returncode == 0, merge.stdout + merge.stderr
    assert "saeval: 12 passed, 0 failed (7 SAEs in 4 suites)" in merge.stdout
    _same_files(project.root / "saeval-results", project.root / "full")
    assert (project.root / "saeval-results" / "report.html").stat().st_size > 10_000


# -- pytest: the GitHub Actions workflow's commands ---------------------------------------------------
def _workflow() -> dict[str, object]:
    return yaml.safe_load((CI / "github-actions.yml").read_text())


def _step_command(job: str, marker: str) -> str:
    steps = _workflow()["jobs"][job]["steps"]  # type: ignore[index]
    (command,) = [s["run"] for s in steps if marker in s.get("run", "")]
    return str(command).strip()


def _gate_job(project: ShardProject, k: int, *extra: str) -> subprocess.CompletedProcess[str]:
    """One matrix job: a fresh output folder, the workflow's command, the upload as the download lays it out."""
    command = _step_command("gates", "--saeval-shard").replace("${{ matrix.shard }}", str(k))
    command = command.replace("${{ strategy.job-total }}", str(N))
    shutil.rmtree(project.root / "saeval-shard", ignore_errors=True)
    done = _shell(["bash", "-c", command + "".join(f" {x}" for x in extra) + " -p no:cacheprovider"],
                  project.root, SAEVAL_TEST_SHARD=str(k))
    artifact = project.root / "shards" / f"saeval-shard-{k}"  # upload name saeval-shard-K, download to shards/
    shutil.rmtree(artifact, ignore_errors=True)
    shutil.copytree(project.root / "saeval-shard", artifact)
    return done


def test_pytest_shards_merge_into_the_unsharded_verdict(project: ShardProject, pytester: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)
    monkeypatch.setenv("SAEVAL_TEST_SHARD", "full")
    (project.root / "pytest.ini").write_text("[pytest]\ntestpaths = thresholds tests\n")
    full = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--saeval-output-dir", "full")
    assert full.ret == 0, full.stdout.str()
    full.assert_outcomes(passed=13)
    project.shift_baseline("l0", -3.0)
    codes = {}
    for k in range(1, N + 1):
        done = _gate_job(project, k, *(["-n", "2"] if k == 2 else []))
        codes[k] = done.returncode
        assert f"shard {k}/{N} (selection " in done.stdout, done.stdout + done.stderr
    assert project.other_log.read_text().split() == ["full", "1"], "other tests run in shard 1 only"
    owners = _owners([project.root / "shards" / f"saeval-shard-{k}" for k in range(1, N + 1)])
    assert codes == {k: 1 if k == owners["thresholds/c.yaml"] else 0 for k in codes}
    merge_command = _step_command("merge", "saeval merge")
    failed = _shell(["bash", "-c", merge_command], project.root)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "11 passed, 1 failed" in failed.stdout and "FAILED [cb] l0 = " in failed.stdout, failed.stdout

    project.shift_baseline("l0", 3.0)
    again = _gate_job(project, owners["thresholds/c.yaml"])
    assert again.returncode == 0, again.stdout + again.stderr
    merge = _shell(["bash", "-c", merge_command], project.root)
    assert merge.returncode == 0, merge.stdout + merge.stderr
    _same_files(project.root / "saeval-results", project.root / "full")

    shutil.rmtree(project.root / "shards" / "saeval-shard-3")
    missing = _shell(["bash", "-c", merge_command], project.root)
    assert missing.returncode == 2 and f"shard 3/{N} is missing" in missing.stderr, missing.stderr


def test_an_empty_shard_passes_with_a_note(assets: Assets, pytester: pytest.Pytester,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    project = write_shard_project(pytester.path, assets)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "thresholds", "--saeval-shard", "4/4",
                                          "--saeval-output-dir", "out")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*shard 4/4 (selection *) has no work: the selection has 3 evaluation groups "
                                 "for 4 shards*", "*12 deselected*"])
    record = json.loads((project.root / "out" / "saeval-shard.json").read_text())
    assert record["shard"]["index"] == 4 and json.loads((project.root / "out" / "all_eval_results.json").read_text()) == []
    assert main(["run", "thresholds/a1.yaml", "thresholds/b.yaml", "--shard", "3/3", "--output-dir", "cli"]) == 0
    assert "shard 3/3 (selection" in capsys.readouterr().out
    assert not project.other_log.exists()


# -- marked tests and a conftest's override: evaluations on other inputs across shards -------------------
OVERRIDE = "saeval_tokens from tests/marked/conftest.py"


def _marked(project: ShardProject, assets: Assets) -> None:
    """Marked tests under a conftest that overrides ``saeval_tokens``: b.yaml's s0 and a2.yaml evaluated again
    on other tokens (evaluations of their own), and a test of b.yaml's s1 on the suite's own tokens."""
    other = np.load(assets.tokens)
    other[:, 1:] = (other[:, 1:] * 7 + 11) % 140 + 3
    np.save(project.root / "other_tokens.npy", other)
    (project.root / "tests" / "marked").mkdir()
    (project.root / "tests" / "marked" / "conftest.py").write_text(
        "import numpy as np\nimport pytest\n\n\n@pytest.fixture(scope='session')\ndef saeval_tokens():\n"
        f"    return np.load({str(project.root / 'other_tokens.npy')!r})\n")
    (project.root / "tests" / "marked" / "test_marked.py").write_text(
        "import pytest\n\n\n"
        "@pytest.mark.saeval('thresholds/b.yaml', sae='s0')\n"
        "def test_b_s0_on_other_tokens(saeval_results):\n"
        "    assert set(saeval_results) == {'s0'}\n\n\n"
        "@pytest.mark.saeval('thresholds/a2.yaml')\n"
        "def test_a2_on_other_tokens():\n"
        "    pass\n")
    (project.root / "tests" / "test_own.py").write_text(
        "import pytest\n\n\n"
        "@pytest.mark.saeval('thresholds/b.yaml', sae='s1')\n"
        "def test_b_s1(saeval_results):\n"
        "    assert set(saeval_results) == {'s1'}\n")


def test_marked_tests_on_a_conftest_s_inputs_shard_with_their_suite(project: ShardProject, assets: Assets) -> None:
    _marked(project, assets)
    (project.root / "pytest.ini").write_text("[pytest]\ntestpaths = thresholds tests\n")
    full = _shell(["pytest", "-p", "no:cacheprovider", "--saeval-output-dir", "full"], project.root,
                  SAEVAL_TEST_SHARD="full")
    assert full.returncode == 0, full.stdout[-4000:]
    assert f"thresholds/b.yaml (with {OVERRIDE})" in full.stdout
    withs = sorted(p.name for p in (project.root / "full").glob("*~with-*.json"))
    assert len(withs) == 2 and {n.split("__")[0] for n in withs} == {"a2", "b"}, withs
    folders = []
    for k in range(1, N + 1):
        folder = project.root / "shards" / str(k)
        done = _shell(["pytest", "-p", "no:cacheprovider", "--saeval-shard", f"{k}/{N}", "--saeval-output-dir",
                       str(folder), *(["-n", "2"] if k == 2 else [])], project.root, SAEVAL_TEST_SHARD=str(k))
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr
        assert "left out of its outputs" not in done.stdout, done.stdout[-4000:]
        folders.append(folder)
    owners = _owners(folders)
    for k, folder in enumerate(folders, start=1):
        records = json.loads((folder / "all_eval_results.json").read_text())
        suites = {r["eval_cfg"]["suite"] for r in records if r["inputs"]["overridden"]}
        assert suites == {s for s, owner in (("thresholds/b.yaml", owners["thresholds/b.yaml"]),
                                             ("thresholds/a2.yaml", owners[GROUPS[0]])) if owner == k}, \
            "a marked test runs, and is recorded, in the shard of its suite's group"
    merged = _shell(["saeval", "merge", *map(str, folders), "--output-dir", "merged"], project.root)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert f"thresholds/b.yaml (with {OVERRIDE})" in merged.stdout
    _same_files(project.root / "merged", project.root / "full")


# -- the CI examples are the documented commands ---------------------------------------------------
def _commands(text: str) -> list[str]:
    """The ``saeval`` and ``pytest`` command lines of a script or ``run:`` block."""
    return [line.strip() for line in text.splitlines() if line.strip().startswith(("saeval ", "pytest "))]


def test_the_github_workflow_is_a_matrix_of_shards_and_a_merge_of_their_artifacts() -> None:
    workflow = _workflow()
    gates, merge = workflow["jobs"]["gates"], workflow["jobs"]["merge"]  # type: ignore[index]
    shards = gates["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, len(shards) + 1)) and gates["strategy"]["fail-fast"] is False
    assert merge["needs"] == "gates" and merge["if"] == "${{ !cancelled() }}"
    gate_steps, merge_steps = gates["steps"], merge["steps"]
    (command,) = [c for s in gate_steps for c in _commands(s.get("run", ""))]
    assert command == ("pytest --saeval-shard ${{ matrix.shard }}/${{ strategy.job-total }} "
                       "--saeval-output-dir saeval-shard")
    (upload,) = [s for s in gate_steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"] == {"name": "saeval-shard-${{ matrix.shard }}", "path": "saeval-shard",
                              "overwrite": True}, "a shard job run again must replace its first attempt's artifact"
    assert upload["if"] == "${{ !cancelled() }}", "a shard that failed a gate still hands its outputs on"
    (download,) = [s for s in merge_steps if s.get("uses", "").startswith("actions/download-artifact@")]
    assert download["with"] == {"pattern": "saeval-shard-*", "path": "shards"}
    (merged,) = [c for s in merge_steps for c in _commands(s.get("run", ""))]
    assert merged.startswith("saeval merge shards/saeval-shard-* --output-dir ")
    # the timings are restored once (plan) and handed to every shard: one partition, a re-run shard too
    plan_steps = workflow["jobs"]["plan"]["steps"]  # type: ignore[index]
    assert gates["needs"] == "plan"
    assert not [s for s in gate_steps if s.get("uses", "").startswith("actions/cache/")]
    (restore,) = [s for s in plan_steps if s.get("uses", "").startswith("actions/cache/restore@")]
    (handed,) = [s for s in plan_steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    (taken,) = [s for s in gate_steps if s.get("uses", "").startswith("actions/download-artifact@")]
    assert handed["with"]["name"] == taken["with"]["name"] and handed["with"]["include-hidden-files"] is True
    assert taken["with"]["path"] == ".saeval-cache" and taken["continue-on-error"] is True
    save = [s for s in merge_steps if s.get("uses", "").startswith("actions/cache/save@")]
    assert restore["with"]["path"] == handed["with"]["path"] == save[0]["with"]["path"] == ".saeval-cache/timings.json"
    assert "hashFiles('.saeval-cache/timings.json')" in save[0]["if"], "only a passing merge writes timings"


def test_the_ci_examples_run_the_documented_commands() -> None:
    docs = (ROOT / "docs" / "plugin.md").read_text()
    found = []
    workflow = _workflow()
    for job in workflow["jobs"].values():  # type: ignore[union-attr]
        for step in job["steps"]:
            found += _commands(step.get("run", ""))
    for name in ("slurm-shards.sbatch", "slurm-merge.sbatch"):
        text = (CI / name).read_text()
        assert subprocess.run(["bash", "-n", str(CI / name)], capture_output=True).returncode == 0
        found += _commands(text)
    assert subprocess.run(["bash", "-n", str(CI / "slurm-submit.sh")], capture_output=True).returncode == 0
    assert len(found) == 4
    for command in found:
        assert command in docs, f"{command!r} is not in docs/plugin.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def help_text(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", *args, "--help"], capture_output=True, text=True, cwd=ROOT,
                              env=env, timeout=300).stdout

    help_of = {sub: help_text("pytest_saeval.cli", sub) for sub in ("run", "merge")}
    help_of["pytest"] = help_text("pytest", "-p", "no:cacheprovider")
    for command in found:
        words = command.split()
        where = help_of["pytest"] if words[0] == "pytest" else help_of[words[1]]
        for option in (w for w in words if w.startswith("--")):
            assert option in where, f"{option} of {command!r} is not an option"


def test_other_tests_follow_the_option_and_an_incomplete_shard_is_not_recorded(
        assets: Assets, pytester: pytest.Pytester) -> None:
    project = write_shard_project(pytester.path, assets)
    base = ("-p", "no:cacheprovider")

    def other_runs() -> int:
        return len(project.other_log.read_text().split()) if project.other_log.exists() else 0

    assert pytester.runpytest_inprocess(*base, "tests", "--saeval-shard", "2/2").ret == 0  # deselected: still 0
    assert other_runs() == 0
    assert pytester.runpytest_inprocess(*base, "tests", "--saeval-shard", "1/2", "--saeval-shard-others", "none").ret == 0
    assert other_runs() == 0
    assert pytester.runpytest_inprocess(*base, "tests", "--saeval-shard", "2/2", "--saeval-shard-others", "all").ret == 0
    assert other_runs() == 1
    (pytester.path / "nothing").mkdir()
    assert pytester.runpytest_inprocess(*base, "nothing", "--saeval-shard", "1/2").ret == pytest.ExitCode.NO_TESTS_COLLECTED

    (project.root / "thresholds" / "broken.yaml").write_text("model: {path: m}\nsaes: []\nunknown: 1\n")
    for extra in ((), ("--continue-on-collection-errors",)):
        result = pytester.runpytest_inprocess(*base, "thresholds", "--saeval-shard", "4/4", "--saeval-output-dir",
                                              "out", *extra)
        assert result.ret in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
        assert not (project.root / "out" / "saeval-shard.json").exists()
        if extra:
            result.stdout.fnmatch_lines(["*shard 4/4 NOT recorded for saeval merge: the run did not run everything*"])
