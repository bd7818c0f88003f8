"""File-keyed answers in a Session: an unchanged file-based group is answered as it was evaluated (results,
intervals, provenance, configs) without loading anything; any byte changed in the model folder, the token
file or an SAE folder, or a changed input or setting key, is evaluated again; gates and baselines are checked
again on every run; a damaged answer is recomputed with one warning; other sources take the evaluating path."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pytest_saeval.run.filekeyed import FileKeyed
from pytest_saeval.run.loading import Loader
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.run.plan import entries_of
from pytest_saeval.run.session import RunOptions, Session
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.store.entries import CacheWarning
from pytest_saeval.store.folder import CacheDisk
from tests.helpers import save_tiny_gpt2, save_tiny_sae

CONTEXT = 16


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 folder, two SAE folders and a token file (copied by each test before it changes them)."""
    root = tmp_path_factory.mktemp("filekeyed-assets")
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 150, size=(8, CONTEXT)).astype(np.int64)
    tokens[:, 0] = 0
    np.save(root / "tokens.npy", tokens)
    save_tiny_gpt2(root / "model")
    save_tiny_sae(root / "s0", hook_name="blocks.0.hook_resid_pre", seed=1)
    save_tiny_sae(root / "s1", architecture="topk", hook_name="blocks.1.hook_resid_pre", seed=2)
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path) -> SimpleNamespace:
    """This test's own copy of the assets, a suite on them and a cache folder."""
    shutil.copytree(built, tmp_path / "assets")
    a = tmp_path / "assets"
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"model:\n  path: {a / 'model'}\n  device: cpu\n"
        f"data:\n  tokens: {a / 'tokens.npy'}\n  context_size: {CONTEXT}\n  batch_size_prompts: 2\n"
        "  n_reconstruction_batches: 1\n  n_sparsity_batches: 2\n"
        f"baseline: {tmp_path / 'baseline.json'}\n"
        f"saes:\n  - id: s0\n    path: {a / 's0'}\n    gates:\n      l0: '>= 0'\n      frac_alive: '<= 1'\n"
        f"  - id: s1\n    path: {a / 's1'}\n    gates:\n      l0: '>= 0'\n")
    return SimpleNamespace(root=tmp_path, assets=a, suite=suite, cache=tmp_path / "cache")


def run(p: SimpleNamespace, **options: Any) -> tuple[Session, SuiteRun]:
    """One run in a fresh Session (a new process, as far as the caches can tell)."""
    session = Session(RunOptions(use_cache=True, cache_dir=p.cache, **options))
    (found,) = session.run([load_suite(p.suite)])
    return session, found


def same_floats(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def key(v: Any) -> Any:
        if isinstance(v, float):
            return ("nan",) if math.isnan(v) else v.hex()
        if isinstance(v, list | tuple):
            return [key(x) for x in v]
        return v
    return {k: key(v) for k, v in a.items()} == {k: key(v) for k, v in b.items()}


def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, asking the loader for a model, tokens or SAEs fails the test."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("loaded something")
    for name in ("model", "tokens", "saes"):
        monkeypatch.setattr(Loader, name, refuse)


def test_an_unchanged_group_is_answered_as_it_was_evaluated_without_loading_anything(
        project: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    cold_session, cold = run(project)
    assert (cold_session.evaluations, cold_session.answered) == (2, 0)
    with monkeypatch.context() as m:
        no_loading(m)
        warm_session, warm = run(project)
    assert (warm_session.evaluations, warm_session.answered) == (2, 2)
    for uid in ("s0", "s1"):
        a, b = cold.results[uid], warm.results[uid]
        assert (b.sae_id, b.hook_name, b.hook_head_index, b.d_in, b.d_sae) == (a.sae_id, a.hook_name,
                                                                               a.hook_head_index, a.d_in, a.d_sae)
        assert same_floats(a.metrics, b.metrics)
        assert same_floats(a.feature_metrics, b.feature_metrics)
        assert any(math.isnan(v) for v in b.feature_metrics["consistent_activation_heuristic"])  # NaN kept exactly
        assert same_floats(cold.intervals[uid], warm.intervals[uid]) and warm.intervals[uid]
    assert warm.provenance == cold.provenance and warm.sae_cfgs == cold.sae_cfgs
    assert warm.eval_cfg == cold.eval_cfg and warm.inputs == cold.inputs and warm.notes == cold.notes
    assert [c.result for c in warm.checks] == [c.result for c in cold.checks]
    same_process = cold_session.run([load_suite(project.suite)])
    assert (cold_session.evaluations, cold_session.answered) == (2, 0)  # kept results, nothing counted twice
    assert same_process[0].provenance == cold.provenance


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def _append(path: Path, text: str = " ") -> None:
    with path.open("a") as fh:
        fh.write(text)


def _other_token(path: Path) -> None:
    tokens = np.load(path)
    tokens[-1, -1] += 1  # a row the gates do not even read
    np.save(path, tokens)


def _suite_edit(old: str, new: str) -> Callable[[SimpleNamespace], None]:
    def edit(p: SimpleNamespace) -> None:
        text = p.suite.read_text()
        assert old in text
        p.suite.write_text(text.replace(old, new, 1))
    return edit


CHANGES: dict[str, Callable[[SimpleNamespace], None]] = {
    "model-weights-byte": lambda p: _flip_last_byte(p.assets / "model" / "model.safetensors"),
    "model-config-byte": lambda p: _append(p.assets / "model" / "config.json", "\n"),
    "model-tokenizer-byte": lambda p: _append(p.assets / "model" / "tokenizer_config.json", "\n"),
    "model-file-added": lambda p: (p.assets / "model" / "notes.txt").write_text("x"),
    "token-file-byte": lambda p: _other_token(p.assets / "tokens.npy"),
    "sae-weights-byte": lambda p: _flip_last_byte(p.assets / "s1" / "sae_weights.safetensors"),
    "sae-config-byte": lambda p: _append(p.assets / "s0" / "cfg.json", "\n"),
    "sae-file-added": lambda p: (p.assets / "s0" / "README.md").write_text("notes"),
    "batch-size": _suite_edit("batch_size_prompts: 2", "batch_size_prompts: 1"),
    "sparsity-batches": _suite_edit("n_sparsity_batches: 2", "n_sparsity_batches: 3"),
    "reconstruction-batches": _suite_edit("n_reconstruction_batches: 1", "n_reconstruction_batches: 2"),
    "context-size": _suite_edit(f"context_size: {CONTEXT}", f"context_size: {CONTEXT - 1}"),
    "special-tokens": _suite_edit("  n_sparsity_batches: 2\n", "  n_sparsity_batches: 2\n  exclude_special_tokens: false\n"),
    "model-dtype": _suite_edit("  device: cpu\n", "  device: cpu\n  dtype: float64\n"),
    "sae-hook-name": _suite_edit("s1\n    gates:", "s1\n    hook_name: blocks.1.hook_resid_mid\n    gates:"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_byte_or_input_key_changed_misses(project: SimpleNamespace, change: str) -> None:
    run(project)
    CHANGES[change](project)
    session, found = run(project)
    assert session.answered == 0 and session.evaluations == 2, change
    again, _ = run(project)  # and the new state is stored in turn
    assert again.answered == 2


def test_a_gate_change_is_answered_and_checked_again(project: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    _, cold = run(project)
    assert cold.passed
    _suite_edit("      l0: '>= 0'\n      frac_alive", "      l0: '>= 100000'\n      frac_alive")(project)
    no_loading(monkeypatch)
    session, warm = run(project)
    assert session.answered == 2
    assert not warm.passed
    failing = [c for c in warm.checks if not c.result.passed]
    assert [(c.sae_id, c.gate.metric) for c in failing] == [("s0", "l0")]


def test_baseline_gates_read_the_current_baseline_file(project: SimpleNamespace) -> None:
    _, first = run(project)
    l0 = first.results["s0"].metrics["l0"]
    _suite_edit("      l0: '>= 0'\n      frac_alive", "      l0: '>= baseline'\n      frac_alive")(project)
    baseline = project.root / "baseline.json"
    for recorded, passes in ((l0 - 1, True), (l0 + 1, False)):
        baseline.write_text(json.dumps({"saes": {"s0": {"l0": recorded}}}))
        session, found = run(project)
        assert session.answered == 2
        check = next(c for c in found.checks if c.sae_id == "s0" and c.gate.metric == "l0")
        assert check.result.passed is passes
        assert check.result.baseline_value == recorded


def _answer_files(p: SimpleNamespace) -> list[Path]:
    return sorted((p.cache / "answers").rglob("*.json"))


@pytest.mark.parametrize("damage", ["cut", "garbage", "empty"])
def test_a_damaged_answer_is_recomputed_with_one_warning_and_stored_again(project: SimpleNamespace, damage: str) -> None:
    run(project)
    files = _answer_files(project)
    assert len(files) == 2
    data = files[0].read_bytes()
    files[0].write_bytes({"cut": data[: len(data) // 2], "garbage": b"\x00\xff" * 10, "empty": b""}[damage])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session, found = run(project)
    said = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(said) == 1 and str(files[0]) in said[0], said
    assert session.answered == 0 and found.passed
    assert files[0].read_bytes() == data  # rewritten whole
    again, _ = run(project)
    assert again.answered == 2


def test_turned_off_every_run_takes_the_evaluating_path(project: SimpleNamespace) -> None:
    run(project)
    session, _ = run(project, file_keyed=False)
    assert session.answered == 0 and session.evaluations == 2


def _members(path: Path) -> list[Any]:
    suite = load_suite(path)
    return [(suite, entries_of(suite))]


@pytest.mark.parametrize("source", ["model-factory", "model-name", "sae-release", "sae-factory"])
def test_sources_that_are_not_files_have_no_key(project: SimpleNamespace, source: str) -> None:
    text = project.suite.read_text()
    model_line = f"  path: {project.assets / 'model'}\n"
    sae_line = f"    path: {project.assets / 's1'}\n"
    text = {"model-factory": text.replace(model_line, "  factory: mypkg.models:load\n"),
            "model-name": text.replace(model_line, "  name: gpt2\n"),
            "sae-release": text.replace(sae_line, "    release: gpt2-small-res-jb\n    sae_id: blocks.1.hook_resid_pre\n"),
            "sae-factory": text.replace(sae_line, "    factory: mypkg.saes:load\n")}[source]
    project.suite.write_text(text)
    keyed = FileKeyed(project.cache, CacheDisk(project.cache))
    found = keyed.lookup(_members(project.suite), "cpu")
    assert found.parts is None and found.keys is None
    assert not (project.cache / "answers").exists()


def test_a_factory_suite_takes_todays_path_every_run(project: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    (project.root / "mymodels.py").write_text(
        "from pytest_saeval.sources.models import load_model\n\n\n"
        f"def load():\n    return load_model(path={str(project.assets / 'model')!r}, device='cpu')\n")
    monkeypatch.syspath_prepend(str(project.root))
    text = project.suite.read_text().replace(f"  path: {project.assets / 'model'}\n", "  factory: mymodels:load\n")
    project.suite.write_text(text)
    for _ in range(2):
        session, found = run(project)
        assert session.answered == 0 and session.evaluations == 2 and found.passed
    assert not (project.cache / "answers").exists()


@pytest.fixture
def sparsify_project(project: SimpleNamespace) -> SimpleNamespace:
    """The project's suite on one sparsify checkpoint inside a run folder whose config.json gives metadata."""
    from tests.checkpoints import sparse_coder

    run = project.assets / "sp_run"
    sparse_coder(32, num_latents=64, k=4, seed=3).save_to_disk(run / "layers.1")
    (run / "config.json").write_text(json.dumps({"model": "tiny-a", "dataset": "corpus", "ctx_len": CONTEXT}))
    text = project.suite.read_text()
    project.suite.write_text(text[:text.index("saes:\n")] + f"saes:\n  - id: sp\n    path: {run / 'layers.1'}\n"
                             "    gates:\n      l0: '>= 0'\n")
    project.run = run
    return project


def _model_name(found: SuiteRun) -> Any:
    return found.sae_cfgs["sp"]["metadata"]["model_name"]


@pytest.mark.parametrize("change", ["edited", "removed"])
def test_a_sparsify_run_config_is_part_of_the_key(sparsify_project: SimpleNamespace, change: str) -> None:
    """The loader reads the run's config.json above the checkpoint (model, dataset, context size in the SAE's
    config): changing it misses, and the answer then stored is what a cold run gives."""
    p = sparsify_project
    _, first = run(p)
    assert _model_name(first) == "tiny-a"
    config = p.run / "config.json"
    if change == "edited":
        config.write_text(json.dumps({"model": "tiny-b", "dataset": "corpus", "ctx_len": CONTEXT}))
    else:
        config.unlink()
    session, changed = run(p)
    assert (session.answered, session.evaluations) == (0, 1)
    warm_session, warm = run(p)
    assert warm_session.answered == 1
    cold = Session(RunOptions(use_cache=False)).run([load_suite(p.suite)])[0]
    assert _model_name(cold) == ("tiny-b" if change == "edited" else "")
    assert changed.sae_cfgs == warm.sae_cfgs == cold.sae_cfgs and warm.provenance == cold.provenance
    if change == "removed":  # and back: the first answer again
        config.write_text(json.dumps({"model": "tiny-a", "dataset": "corpus", "ctx_len": CONTEXT}))
        again, found = run(p)
        assert again.answered == 1 and found.sae_cfgs == first.sae_cfgs


def test_a_link_led_elsewhere_misses(sparsify_project: SimpleNamespace) -> None:
    """``path:`` a link whose name maps to no hook: the hook comes from the folder it leads to, so leading it
    to an identical copy under another name (another hook, the same bytes) is another key."""
    p = sparsify_project
    shutil.copytree(p.run / "layers.1", p.run / "layers.0")
    link = p.assets / "link_sp"
    link.symlink_to(p.run / "layers.1")
    p.suite.write_text(p.suite.read_text().replace(f"path: {p.run / 'layers.1'}", f"path: {link}"))
    _, first = run(p)
    assert first.results["sp"].hook_name == "blocks.1.hook_resid_post"
    link.unlink()
    link.symlink_to(p.run / "layers.0")
    session, moved = run(p)
    assert session.answered == 0 and moved.results["sp"].hook_name == "blocks.0.hook_resid_post"
