"""The Session: suites that share model, tokens and settings evaluated in one fused pass, kept results
reused, engine errors located at the suite entry they are about, baselines read first and left
unchecked while recording, and overrides replacing what the suites would load."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import pytest_saeval.run.evaluation as evaluation
from pytest_saeval.errors import BaselineError, InputError, SaevalError, Subject
from pytest_saeval.run.plan import Overrides
from pytest_saeval.run.session import RunOptions, Session
from pytest_saeval.spec.loader import load_suite
from tests.helpers import save_tiny_gpt2, save_tiny_sae

CONTEXT = 16


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny GPT-2 folder, three SAEs (one too narrow for the model) and a token file."""
    root = tmp_path_factory.mktemp("session-assets")
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 150, size=(4, CONTEXT)).astype(np.int64)
    tokens[:, 0] = 0
    np.save(root / "tokens.npy", tokens)
    return SimpleNamespace(
        model=save_tiny_gpt2(root / "model"),
        s0=save_tiny_sae(root / "s0", hook_name="blocks.0.hook_resid_pre", seed=1),
        s1=save_tiny_sae(root / "s1", architecture="topk", hook_name="blocks.1.hook_resid_pre", seed=2),
        narrow=save_tiny_sae(root / "narrow", hook_name="blocks.0.hook_resid_pre", d_in=16, seed=3),
        tokens=root / "tokens.npy",
    )


def _suite(folder: Path, name: str, assets: SimpleNamespace, saes: dict[str, str], *, context: int = CONTEXT,
           head: str = "", model: Path | None = None, tokens: Path | None = None) -> Any:
    """A suite file whose SAEs (id -> asset name or path) each gate l0 and frac_alive."""
    text = (f"model:\n  path: {model or assets.model}\n  device: cpu\n"
            f"data:\n  tokens: {tokens or assets.tokens}\n  context_size: {context}\n  batch_size_prompts: 2\n"
            "  n_reconstruction_batches: 1\n  n_sparsity_batches: 2\n" + head + "saes:\n")
    for sae_id, source in saes.items():
        path = getattr(assets, source, source)
        text += f"  - id: {sae_id}\n    path: {path}\n    gates:\n      l0: '>= 0'\n      frac_alive: '<= 1'\n"
    path = folder / name
    path.write_text(text)
    return load_suite(path)


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[SimpleNamespace]:
    """Every fused pass of the test: what it was given (the real pass still runs)."""
    calls: list[SimpleNamespace] = []
    real = evaluation.fused_pass

    def counting(model: Any, saes: Any, tokens: Any, settings: Any, options: Any, cache: Any) -> Any:
        calls.append(SimpleNamespace(model=model, saes=dict(saes), tokens=tokens, settings=settings, cache=cache))
        return real(model, saes, tokens, settings, options, cache)

    monkeypatch.setattr(evaluation, "fused_pass", counting)
    return calls


def test_suites_sharing_model_tokens_and_settings_share_one_fused_pass(
    tmp_path: Path, assets: SimpleNamespace, passes: list[SimpleNamespace]
) -> None:
    a = _suite(tmp_path, "a.yaml", assets, {"x": "s0", "y": "s1"})
    b = _suite(tmp_path, "b.yaml", assets, {"z": "s0"})
    short = _suite(tmp_path, "short.yaml", assets, {"w": "s1"}, context=8)
    session = Session()
    runs = session.run([a, b, short])
    assert [r.suite for r in runs] == [a, b, short]
    assert len(passes) == 2  # a and b together; short reads other rows
    assert list(passes[0].saes) == [f"{a.path}::x", f"{a.path}::y", f"{b.path}::z"]
    assert list(passes[1].saes) == [f"{short.path}::w"] and tuple(passes[1].tokens.shape) == (4, 8)
    assert passes[0].model is passes[1].model  # one model object for all three suites
    assert passes[0].cache is None  # caches off unless asked
    assert session.evaluations == 4
    assert [sorted(r.results) for r in runs] == [["x", "y"], ["z"], ["w"]]
    assert runs[0].results["x"].sae_id == "x"  # named by unique id, as answered and wired results are
    assert runs[0].results["x"].metrics == runs[1].results["z"].metrics  # the same SAE on the same rows
    assert all(r.passed and len(r.checks) == 2 * len(r.results) for r in runs)
    assert runs[0].eval_cfg.context_size == CONTEXT and runs[2].eval_cfg.context_size == 8
    prov = runs[0].provenance
    assert prov["x"].device == "cpu" and prov["x"].model_xxh3 == prov["y"].model_xxh3 != prov["x"].sae_xxh3
    assert runs[0].intervals["x"]["l0"][0] <= runs[0].results["x"].metrics["l0"] <= runs[0].intervals["x"]["l0"][1]


def test_kept_results_are_reused_on_a_second_run(
    tmp_path: Path, assets: SimpleNamespace, passes: list[SimpleNamespace]
) -> None:
    a = _suite(tmp_path, "a.yaml", assets, {"x": "s0", "y": "s1"})
    session = Session()
    first = session.run([a])
    again = session.run([a])
    assert len(passes) == 1 and session.evaluations == 2
    assert again[0].results["x"].metrics == first[0].results["x"].metrics
    assert [c.message for c in again[0].checks] == [c.message for c in first[0].checks]
    # a selection evaluates only what it picks; a later run evaluates only what is new
    fresh = Session()
    (only_y,) = fresh.run([a], selected=lambda suite, uid: uid == "y")
    assert sorted(only_y.results) == ["y"] and fresh.evaluations == 1
    fresh.run([a])
    assert list(passes[-1].saes) == [f"{a.path}::x"] and fresh.evaluations == 2
    assert fresh.run([a], selected=lambda suite, uid: False) == []


def test_an_engine_error_about_an_sae_is_located_at_its_suite_entry(
    tmp_path: Path, assets: SimpleNamespace, passes: list[SimpleNamespace]
) -> None:
    a = _suite(tmp_path, "a.yaml", assets, {"x": "s0"})
    b = _suite(tmp_path, "b.yaml", assets, {"ok": "s0", "wide": "narrow"})  # the same pass as a.yaml
    session = Session()
    with pytest.raises(InputError) as info:
        session.run([a, b])
    e = info.value
    entry = b.saes[1]
    assert (e.location.file, e.location.line, e.location.key) == (str(b.path), entry.line, "saes[1].d_in")
    assert e.subject == Subject(suite=str(b.path), entry=1, sae="wide", part="d_in")
    assert str(e).startswith(f"{b.path}:{entry.line}: saes[1].d_in: SAE d_in is 16 but hook 'blocks.0.hook_resid_pre'")
    assert session.evaluations == 0


def test_a_model_without_a_tokenizer_is_located_at_the_suite_s_setting_or_at_the_fixture(
    tmp_path: Path, assets: SimpleNamespace
) -> None:
    from pytest_saeval.sources.models import load_model

    suite = _suite(tmp_path, "a.yaml", assets, {"x": "s0"})
    model = load_model(path=assets.model, device="cpu")
    model.tokenizer = None
    origin = "saeval_model from tests/conftest.py"
    with pytest.raises(InputError) as info:  # the conftest's model lacks it: the fixture, not the suite's folder
        Session().run([suite], overrides=Overrides(model=model, origins={"model": origin}))
    loc = info.value.location
    assert (loc.file, loc.line, loc.key) == (None, None, origin)
    assert "Fix: give the fixture's model a tokenizer" in str(info.value) and "tokenizer files" not in str(info.value)
    assert info.value.subject == Subject(suite=str(suite.path), part="tokenizer")

    folder = tmp_path / "no-tokenizer"
    import shutil

    shutil.copytree(assets.model, folder)
    for name in folder.glob("tokenizer*"):
        name.unlink()
    (folder / "vocab.json").unlink(missing_ok=True)
    (folder / "merges.txt").unlink(missing_ok=True)
    own = _suite(tmp_path, "b.yaml", assets, {"x": "s0"}, model=folder)
    with pytest.raises(InputError) as info:  # the suite's own model: at its data: setting
        Session().run([own])
    assert info.value.location.file == str(own.path) and info.value.location.key == "data.exclude_special_tokens"
    assert info.value.subject == Subject(suite=str(own.path), part="exclude_special_tokens")


def test_a_size_error_of_a_dictionary_learning_sae_names_its_config_json(
    tmp_path: Path, assets: SimpleNamespace
) -> None:
    from tests.checkpoints import dl_state, save_dl_trainer

    folder = save_dl_trainer(tmp_path / "dl" / "trainer_0", "AutoEncoder", dl_state("AutoEncoder", 16, 32),
                             layer=0, submodule_name="resid_post_layer_0")  # the model's d_model is larger
    suite = _suite(tmp_path, "a.yaml", assets, {"dl": str(folder)})
    with pytest.raises(InputError) as info:
        Session().run([suite])
    assert info.value.location.key == "saes[0].d_in"
    assert f"(d_in comes from the SAE's {folder / 'config.json'})" in str(info.value)


def test_the_location_comes_from_the_subject_not_the_message(
    tmp_path: Path, assets: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _suite(tmp_path, "a.yaml", assets, {"x": "s0", "y": "s1"})
    b = _suite(tmp_path, "b.yaml", assets, {"z": "s0"})
    raised: list[SaevalError] = []

    def failing(model: Any, saes: Any, *args: Any) -> Any:
        raise raised[-1]

    monkeypatch.setattr(evaluation, "fused_pass", failing)
    cases = [
        (InputError("something about saes[0] in the text", subject=Subject(sae=f"{a.path}::y", part="W_dec")),
         (str(a.path), a.saes[1].line, "saes[1].W_dec"), Subject(str(a.path), 1, "y", "W_dec")),
        (InputError("no part", subject=Subject(sae=f"{b.path}::z")),
         (str(b.path), b.saes[0].line, "saes[0]"), Subject(str(b.path), 0, "z", None)),
        (InputError("3 token rows, but 4 are needed", key="tokens", subject=Subject(part="batch_size_prompts")),
         (str(a.path), a.data.line_of("batch_size_prompts"), "data.batch_size_prompts"),
         Subject(suite=str(a.path), part="batch_size_prompts")),
        (InputError("a key alone routes nothing", key="batch_size_prompts"), (str(a.path), None, "batch_size_prompts"),
         Subject(suite=str(a.path))),
        (InputError("no subject at all"), (str(a.path), None, None), Subject(suite=str(a.path))),
    ]
    for error, where, subject in cases:
        raised.append(error)
        with pytest.raises(InputError) as info:
            Session().run([a, b])
        loc = info.value.location
        assert (loc.file, loc.line, loc.key) == where, error
        assert info.value.subject == subject, error
        assert info.value.message == error.message
    assert a.data.line_of("batch_size_prompts") == 7


def test_baselines_are_read_first_and_recording_leaves_their_gates_unchecked(
    tmp_path: Path, assets: SimpleNamespace, passes: list[SimpleNamespace]
) -> None:
    head = "baseline: baselines/b.json\n"
    suite = _suite(tmp_path, "a.yaml", assets, {"x": "s0"}, head=head)
    text = suite.path.read_text().replace("      frac_alive: '<= 1'\n", "      cossim: '>= baseline - 0.1'\n")
    suite.path.write_text(text)
    suite = load_suite(suite.path)
    session = Session()
    with pytest.raises(BaselineError) as info:
        session.run([suite])
    assert info.value.location.file == str(suite.path) and info.value.location.key == "baseline"
    assert info.value.location.line == suite.baseline_line == 10
    assert info.value.subject == Subject(suite=str(suite.path))
    assert passes == [] and session.evaluations == 0  # a missing baseline costs no pass

    (run,) = Session(RunOptions(recording_baseline=True)).run([suite])
    assert [c.gate.metric for c in run.checks] == ["l0"]
    assert [(uid, gate.metric) for uid, gate in run.unchecked] == [("x", "cossim")]
    assert run.notes == []


def test_overrides_replace_model_tokens_and_saes(
    tmp_path: Path, assets: SimpleNamespace, passes: list[SimpleNamespace]
) -> None:
    import torch

    from pytest_saeval.sources.models import load_model
    from pytest_saeval.sources.saes import load_saes

    nowhere = tmp_path / "nowhere"
    suite = _suite(tmp_path, "a.yaml", assets, {"x": str(nowhere / "sae-x"), "y": str(nowhere / "sae-y")},
                   model=nowhere / "model", tokens=nowhere / "tokens.npy")
    model = load_model(path=assets.model, device="cpu")
    sae_x = load_saes(path=assets.s0, device="cpu")[0][1]
    sae_y = load_saes(path=assets.s1, device="cpu")[0][1]
    tokens = torch.from_numpy(np.load(assets.tokens))
    ov = Overrides(model=model, saes={"x": sae_x, "y": sae_y}, tokens=tokens)
    (run,) = Session().run([suite], overrides=ov)
    (call,) = passes
    assert call.model is model and torch.equal(call.tokens, tokens)
    assert call.saes == {f"{suite.path}::x": sae_x, f"{suite.path}::y": sae_y}
    assert sorted(run.results) == ["x", "y"] and run.passed

    own = _suite(tmp_path, "own.yaml", assets, {"x": "s0", "y": "s1"})
    (loaded,) = Session().run([own])
    assert loaded.results["x"].metrics == run.results["x"].metrics  # the same objects measure the same

    with pytest.raises(SaevalError) as info:
        Session().run([suite], overrides=Overrides(model=model, saes={"x": sae_x}, tokens=tokens))
    assert info.value.location.line == suite.saes[1].line and info.value.location.key == "saes"
    assert "the saeval_saes fixture has no SAE 'y'" in str(info.value)
    assert info.value.subject == Subject(suite=str(suite.path), entry=1, sae="y")


def test_an_error_about_overridden_tokens_or_saes_names_the_fixture_not_the_suite(
    tmp_path: Path, assets: SimpleNamespace
) -> None:
    import torch

    from pytest_saeval.sources.saes import load_saes

    suite = _suite(tmp_path, "a.yaml", assets, {"x": "s0", "wide": "narrow"})
    origin = "saeval_tokens from tests/conftest.py"
    few = torch.from_numpy(np.load(assets.tokens))[:1]
    with pytest.raises(InputError) as info:  # 1 row where 2 batches of 2 are needed
        Session().run([suite], overrides=Overrides(tokens=few, origins={"tokens": origin}))
    loc = info.value.location
    assert (loc.file, loc.line, loc.key) == (None, None, origin)
    assert str(info.value).startswith(f"{origin}: 1 token rows, but 4 are needed")
    assert info.value.subject == Subject(suite=str(suite.path), part="tokens")
    with pytest.raises(InputError) as info:  # 1-D: refused where the override is turned into a tensor
        Session().run([suite], overrides=Overrides(tokens=np.arange(8), origins={"tokens": origin}))
    assert info.value.location.key == origin and info.value.location.file is None
    assert "tokens must be 2-D" in info.value.message

    narrow = load_saes(path=assets.narrow, device="cpu")[0][1]
    wide_origin = "saeval_saes from tests/conftest.py"
    ov = Overrides(saes={"x": load_saes(path=assets.s0, device="cpu")[0][1], "wide": narrow},
                   origins={"saes": wide_origin})
    with pytest.raises(InputError) as info:  # the conftest's SAE is too narrow: no cfg.json of the suite named
        Session().run([suite], overrides=ov)
    loc = info.value.location
    assert (loc.file, loc.key) == (None, wide_origin) and "cfg.json" not in str(info.value)
    assert "(SAE 'wide', its d_in)" in str(info.value)
    assert info.value.subject == Subject(suite=str(suite.path), entry=1, sae="wide", part="d_in")


def test_an_sae_answered_from_its_files_and_later_part_of_a_pass_counts_once(
    tmp_path: Path, assets: SimpleNamespace, passes: list[SimpleNamespace]
) -> None:
    (tmp_path / "fac.py").write_text(f"def load():\n    from sae_lens import SAE\n\n    return SAE.load_from_disk({str(assets.s1)!r})\n")
    suite = _suite(tmp_path, "s.yaml", assets, {"a": "s0", "b": "s0"})
    text = suite.path.read_text().replace(f"  - id: b\n    path: {assets.s0}\n", "  - id: b\n    factory: fac:load\n")
    suite.path.write_text(text)
    suite = load_suite(suite.path)
    options = RunOptions(use_cache=True, cache_dir=tmp_path / "cache")
    only_a = lambda s, uid: uid == "a"  # noqa: E731 - a file-based group: its answer is stored
    Session(options).run([suite], only_a)
    session = Session(options)
    session.run([suite], only_a)
    assert (session.evaluations, session.answered) == (1, 1) and len(passes) == 1  # answered: no second pass
    session.run([suite])  # b comes from a factory: a pass for the group, with a in it again
    assert len(passes) == 2 and sorted(passes[-1].saes) == [f"{suite.path}::a", f"{suite.path}::b"]
    assert session.evaluations == 2  # a once, b once
