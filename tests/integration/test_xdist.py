"""Scale-out under pytest-xdist: two models x three SAEs, run plainly, with ``-n 2`` and ``-n 3``.

Every SAE is evaluated exactly once across all workers, each model is loaded once and only by the
worker that evaluates its SAEs, suites that share a model (``a.yaml`` and ``a2.yaml``) share one
worker, the outcomes and values equal a plain run, and the controller writes merged outputs and
baselines. A conftest in the project records evaluations and model loads per process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.integration.plugin_helpers import (
    Assets,
    all_results,
    counting_conftest,
    junit_cases,
    read_log,
    run_pytest,
    saeval_section,
)

SAES = {"sae0": "s1", "sae1": "s2", "sae0b": "s3"}
"""Asset name -> SAE id in the model-1 suites; model 2 uses t1, t2, t3."""


def _write_project(root: Path, assets: Assets) -> Path:
    (root / "thresholds").mkdir()
    (root / "tests").mkdir()
    log = root / "evaluations"
    log.mkdir()
    (root / "conftest.py").write_text(counting_conftest(log))
    head1 = assets.model_block(assets.model) + assets.data_block()
    (root / "thresholds" / "a.yaml").write_text(
        head1 + "baseline: ../baselines/a.json\nsaes:\n"
        f"  - id: s1\n    path: {assets.sae0}\n    gates:\n      l0: '<= 1000'\n"
        f"  - id: s2\n    path: {assets.sae1}\n    gates:\n      l0: '>= 1000'\n      explained_variance: '<= 1'\n"
    )
    (root / "thresholds" / "a2.yaml").write_text(  # same model, tokens and settings as a.yaml: one group
        head1 + f"saes:\n  - id: s3\n    path: {assets.sae0b}\n    gates:\n      l0: '<= 1000'\n"
    )
    (root / "thresholds" / "b.yaml").write_text(
        assets.model_block(assets.model2) + assets.data_block() + "baseline: ../baselines/b.json\nsaes:\n"
        + "".join(f"  - id: t{i}\n    path: {getattr(assets, name)}\n    gates:\n      l0: '<= 1000'\n"
                  for i, name in enumerate(SAES, start=1))
    )
    (root / "tests" / "test_plain.py").write_text(
        "import pytest\n\n\n@pytest.mark.parametrize('i', range(4))\ndef test_plain(i):\n    assert i < 4\n"
    )
    return log


EXPECTED = {
    "thresholds.a.yaml.s1::l0": "passed",
    "thresholds.a.yaml.s2::l0": "failed",
    "thresholds.a.yaml.s2::explained_variance": "passed",
    "thresholds.a2.yaml.s3::l0": "passed",
    "thresholds.b.yaml.t1::l0": "passed",
    "thresholds.b.yaml.t2::l0": "passed",
    "thresholds.b.yaml.t3::l0": "passed",
    **{f"tests.test_plain::test_plain[{i}]": "passed" for i in range(4)},
}


@pytest.mark.parametrize("mode", ["plain", "n2", "n3"])
def test_two_models_three_saes_each_evaluated_exactly_once(
    pytester: pytest.Pytester, assets: Assets, reference: dict[tuple[str, str], dict[str, float]], mode: str
) -> None:
    log = _write_project(pytester.path, assets)
    # forced: a.yaml has a failing gate on purpose, and the controller still records every baseline
    result = run_pytest(pytester, mode, "--junitxml=junit.xml", "--saeval-output-dir=out", "--saeval-update-baseline-force")
    context = result.stdout.str()[-4000:]  # shown when an assertion below fails
    assert result.ret == pytest.ExitCode.TESTS_FAILED, context

    # Outcomes as in a plain run.
    assert {k: v["outcome"] for k, v in junit_cases(pytester.path / "junit.xml").items()} == EXPECTED, context

    # Exactly once: every SAE evaluated once, every model loaded once, by the process evaluating its SAEs.
    seen = read_log(log)
    evaluated = sorted(sae for _, sae in seen["eval"])
    assert evaluated == ["a/s1", "a/s2", "a2/s3", "b/t1", "b/t2", "b/t3"], (seen, context)
    loads = seen["model"]  # (process, folder); which worker gets which model group is the scheduler's choice
    assert sorted(folder for _, folder in loads) == ["model", "model2"], (seen, context)
    loader = {folder: who for who, folder in loads}
    for who, sae in seen["eval"]:
        assert who == loader["model2" if sae.startswith("b/") else "model"], (seen, context)
    if mode == "plain":
        assert set(loader.values()) == {"main"}
    else:  # the two groups went to two workers
        assert len(set(loader.values())) == 2 and "main" not in loader.values(), (seen, context)

    # The controller's outputs hold every worker's results, equal to the library's own values.
    results = all_results(pytester.path / "out")
    assert sorted(results) == ["s1", "s2", "s3", "t1", "t2", "t3"]
    for name, uid in SAES.items():
        assert results[uid]["metrics"] == pytest.approx(reference[("model", name)], rel=1e-12, abs=1e-12)
        t = f"t{list(SAES).index(name) + 1}"
        assert results[t]["metrics"] == pytest.approx(reference[("model2", name)], rel=1e-12, abs=1e-12)
    csv_lines = (pytester.path / "out" / "all_eval_results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 6
    assert len(list((pytester.path / "out").glob("*__*.json"))) == 6

    # The summary covers every worker; the counts add up to one evaluation per SAE.
    summary = saeval_section(result.stdout.str())
    for suite in ("thresholds/a.yaml", "thresholds/a2.yaml", "thresholds/b.yaml"):
        assert re.search(rf"^{re.escape(suite)}$", summary, re.M)
    assert re.search(r"^  s2\s+l0\s+4\s+\[4, 4\]\s+>= 1000\s+FAIL\s*$", summary, re.M)
    counts = re.search(r"^6 SAE evaluations(?: \((.*)\))?$", summary, re.M)
    assert counts
    if mode != "plain":
        per_worker = dict(part.split(": ") for part in counts.group(1).split(", "))
        assert sorted(int(n) for n in per_worker.values() if int(n)) == [3, 3]

    # Baselines are written once, by the controller, from all workers' results.
    a = json.loads((pytester.path / "baselines" / "a.json").read_text())["saes"]
    b = json.loads((pytester.path / "baselines" / "b.json").read_text())["saes"]
    assert sorted(a) == ["s1", "s2"] and sorted(b) == ["t1", "t2", "t3"]
    assert a["s1"]["l0"] == pytest.approx(reference[("model", "sae0")]["l0"], abs=1e-6)
    assert b["t2"]["l0"] == pytest.approx(reference[("model2", "sae1")]["l0"], abs=1e-6)
    assert "updated baseline baselines/a.json" in summary and "updated baseline baselines/b.json" in summary
    assert "baseline not updated for thresholds/a2.yaml: it has no `baseline:` key" in summary


def test_auto_device_applies_to_auto_and_plain_cuda_only(assets: Assets, tmp_path: Path) -> None:
    from pytest_saeval.run.loading import Loader
    from pytest_saeval.spec.loader import load_suite

    def suite(device: str):
        path = tmp_path / f"{device.replace(':', '_')}.yaml"
        path.write_text(assets.model_block().replace("device: cpu", f"device: {device}") + assets.data_block()
                        + f"saes:\n  - id: x\n    path: {assets.sae0}\n    gates:\n      l0: '>= 0'\n")
        return load_suite(path)

    placed = Loader(auto_device="cuda:1")
    assert [placed.device_for(suite(d)) for d in ("auto", "cuda", "cpu", "cuda:0")] == ["cuda:1", "cuda:1", "cpu", "cuda:0"]
    forced = Loader(device="cpu", auto_device="cuda:1")
    assert [forced.device_for(suite(d)) for d in ("auto", "cuda:0")] == ["cpu", "cpu"]
