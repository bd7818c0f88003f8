"""Loading suite files: sections mapped onto the spec dataclasses, defaults, resolved paths, lines and
keys, and every structure error."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.settings import EvalSettings
from pytest_saeval.spec.loader import load_suite, load_suites
from pytest_saeval.spec.suite import DatasetSpec, ModelSpec
from pytest_saeval.spec.verdict import check_gate
from tests.unit.spec.suite_files import MINIMAL, assert_error, write

FULL = """\
model:
  path: ../models/tiny
  device: cuda:1
  dtype: bfloat16
data:
  tokens: tokens/eval.npy
  context_size: 64
  batch_size_prompts: 4
  n_reconstruction_batches: 3
  n_sparsity_batches: 5
  exclude_special_tokens: [0, 2]
baseline: ../baselines/demo.json
saes:
  - id: layer1-topk
    path: saes/layer1
    gates:
      explained_variance: ">= 0.80"
      l0:
        - ">= 10"
        - "<= 60"
      ce_loss_score: ">= baseline - 0.01"
  - id: gpt2/res.8
    release: gpt2-small-res-jb
    sae_id: "blocks\\\\.[0-9]+\\\\.hook_resid_pre"
    gates:
      frac_alive: ">= 0.5"
  - id: from_code
    factory: mypkg.saes:load
defaults:
  gates:
    frac_alive: ">= 0.98"
    kl_div_score: ">= 0.95"
"""


# ---------------------------------------------------------------------------- loading


def test_full_suite(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    suite = load_suite(path)
    folder = path.parent
    assert suite.path == path
    assert suite.model == ModelSpec(path=tmp_path / "models" / "tiny", device="cuda:1", dtype="bfloat16", line=1)
    assert suite.model.kind == "path"
    assert suite.data.tokens == folder / "tokens" / "eval.npy"
    assert suite.data.kind == "tokens"
    assert (suite.data.context_size, suite.data.batch_size_prompts) == (64, 4)
    assert (suite.data.n_reconstruction_batches, suite.data.n_sparsity_batches) == (3, 5)
    assert suite.data.exclude_special_tokens == (0, 2)
    assert suite.data.rows_needed == 20
    assert suite.data.to_settings() == EvalSettings(
        batch_size_prompts=4, n_reconstruction_batches=3, n_sparsity_batches=5, exclude_special_tokens=(0, 2)
    )
    assert suite.baseline == tmp_path / "baselines" / "demo.json"
    assert suite.baseline_line == 12
    assert suite.sae_ids == ("layer1-topk", "gpt2/res.8", "from_code")
    assert suite.uses_baseline

    first, second, third = suite.saes
    assert first.kind == "path" and first.path == folder / "saes" / "layer1" and first.line == 14
    assert second.kind == "release"
    assert (second.release, second.sae_id) == ("gpt2-small-res-jb", "blocks\\.[0-9]+\\.hook_resid_pre")
    assert third.kind == "factory" and third.factory == "mypkg.saes:load"


def test_defaults(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, MINIMAL))
    assert suite.model == ModelSpec(name="gpt2", line=1)
    assert (suite.model.device, suite.model.dtype) == ("auto", "float32")
    data = suite.data
    assert (data.context_size, data.batch_size_prompts, data.n_reconstruction_batches, data.n_sparsity_batches) == (128, 16, 10, 10)
    assert data.exclude_special_tokens is True
    assert data.to_settings() == EvalSettings()
    assert suite.baseline is None and suite.baseline_line is None
    assert suite.default_gates == ()
    assert suite.saes[0].gates == ()
    assert not suite.uses_baseline


def test_gate_lines_and_keys(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, FULL))
    gates = {(s.id, g.metric): g for s in suite.saes for g in s.gates}
    assert gates[("layer1-topk", "explained_variance")].line == 17
    assert gates[("layer1-topk", "explained_variance")].key == "saes[0].gates.explained_variance"
    assert gates[("layer1-topk", "l0")].line == 18
    assert gates[("layer1-topk", "l0")].text == ">= 10, <= 60"
    assert gates[("layer1-topk", "ce_loss_score")].line == 21
    assert gates[("gpt2/res.8", "frac_alive")].line == 26
    assert gates[("gpt2/res.8", "frac_alive")].key == "saes[1].gates.frac_alive"
    # inherited gates point at the defaults section
    assert gates[("layer1-topk", "frac_alive")].line == 31
    assert gates[("layer1-topk", "frac_alive")].key == "defaults.gates.frac_alive"
    assert gates[("from_code", "kl_div_score")].line == 32
    assert all(g.file == str(write(tmp_path, FULL)) for g in gates.values())


def test_defaults_merge_own_entry_wins(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, FULL))
    first, second, third = suite.saes
    assert first.metrics == ("explained_variance", "l0", "ce_loss_score", "frac_alive", "kl_div_score")
    assert second.metrics == ("frac_alive", "kl_div_score")
    own = second.gate("frac_alive")
    assert own is not None and own.text == ">= 0.5" and own.key == "saes[1].gates.frac_alive"
    assert check_gate(own, 0.6).passed  # the SAE's own, looser bound applies
    assert third.metrics == ("frac_alive", "kl_div_score")
    assert third.gate("frac_alive") == suite.default_gates[0]
    assert third.gate("l0") is None
    assert [g.metric for g in suite.default_gates] == ["frac_alive", "kl_div_score"]


def test_dataset_source(tmp_path: Path) -> None:
    (tmp_path / "thresholds" / "local_ds").mkdir(parents=True)
    path = write(
        tmp_path,
        """\
        model: {name: gpt2}
        data:
          dataset:
            path: Skylion007/openwebtext
          context_size: 32
        saes: [{id: a, path: a}]
        """,
    )
    data = load_suite(path).data
    assert data.kind == "dataset" and data.tokens is None
    assert data.dataset == DatasetSpec(path="Skylion007/openwebtext", line=3)
    assert (data.dataset.split, data.dataset.streaming, data.dataset.name, data.dataset.data_files) == ("train", True, None, ())

    path = write(
        tmp_path,
        """\
        model: {name: gpt2}
        data:
          dataset: {path: json, split: validation, column: body, streaming: false, name: cfg,
                    data_files: {validation: [data/a.jsonl, "hf://datasets/x/b.jsonl"]}}
        saes: [{id: a, path: a}]
        """,
    )
    ds = load_suite(path).data.dataset
    assert ds is not None
    assert (ds.path, ds.split, ds.column, ds.streaming, ds.name) == ("json", "validation", "body", False, "cfg")
    assert ds.data_files == (("validation", (str(path.parent / "data" / "a.jsonl"), "hf://datasets/x/b.jsonl")),)

    path = write(
        tmp_path,
        """\
        model: {name: gpt2}
        data:
          dataset: {path: local_ds, data_files: one.txt}
        saes: [{id: a, path: a}]
        """,
    )
    ds = load_suite(path).data.dataset
    assert ds is not None
    assert ds.path == str(path.parent / "local_ds")  # an existing local folder resolves against the YAML
    assert ds.data_files == (("train", (str(path.parent / "one.txt"),)),)


def test_exclude_special_tokens_values(tmp_path: Path) -> None:
    for text, expected in (("true", True), ("false", False), ("[]", ()), ("[5]", (5,))):
        suite = load_suite(write(tmp_path, MINIMAL.replace("  tokens: eval.npy", f"  tokens: eval.npy\n  exclude_special_tokens: {text}")))
        assert suite.data.exclude_special_tokens == expected


def test_model_factory_and_devices(tmp_path: Path) -> None:
    for device in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        suite = load_suite(write(tmp_path, f"model: {{factory: pkg.mod:make_model, device: '{device}'}}\ndata: {{tokens: t.npy}}\nsaes: [{{id: a, path: a}}]\n"))
        assert suite.model.device == device and suite.model.factory == "pkg.mod:make_model"
    for dtype in ("float32", "float16", "bfloat16", "float64"):
        suite = load_suite(write(tmp_path, f"model: {{name: gpt2, dtype: {dtype}}}\ndata: {{tokens: t.npy}}\nsaes: [{{id: a, path: a}}]\n"))
        assert suite.model.dtype == dtype


def test_absolute_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    suite = load_suite(write(tmp_path, f"model: {{path: '~/m'}}\ndata: {{tokens: '{tmp_path}/t.npy'}}\nsaes: [{{id: a, path: ./x/../a}}]\n"))
    assert suite.model.path == tmp_path / "home" / "m"
    assert suite.data.tokens == tmp_path / "t.npy"
    assert suite.saes[0].path == tmp_path / "thresholds" / "a"


def test_relative_suite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    suite = load_suite("thresholds/suite.yaml")
    assert suite.path == Path("thresholds/suite.yaml")
    assert suite.saes[0].path == tmp_path / "thresholds" / "sae_a"
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, MINIMAL + "  - id: a\n    path: b\n", name="dup.yaml").relative_to(tmp_path))
    assert str(info.value).startswith("thresholds/dup.yaml:8: saes[1].id: ")


def test_yaml_features(tmp_path: Path) -> None:
    text = (
        "# comment\n"
        "defaults:\n"
        "  gates: &common\n"
        "    explained_variance: \">= 0.8\"\n"
        "model: {name: gpt2}\n"
        "data: {tokens: t.npy}\n"
        "saes:\n"
        "  - id: 2024-01-01\n"
        "    path: a\n"
        "    gates:\n"
        "      <<: *common\n"
        "      l0: <= 9\n"  # a leading < needs no quotes in YAML
        "      explained_variance: \">= 0.5\"\n"
    )
    suite = load_suite(write(tmp_path, text))
    sae = suite.saes[0]
    assert sae.id == "2024-01-01"  # dates stay text
    assert sae.metrics == ("explained_variance", "l0")
    gate = sae.gate("explained_variance")
    assert gate is not None and gate.text == ">= 0.5" and gate.line == 13  # explicit key beats the merge
    assert sae.gate("l0").line == 12  # type: ignore[union-attr]


def test_load_suites_order_and_dedupe(tmp_path: Path) -> None:
    a = write(tmp_path, MINIMAL, "a.yaml")
    b = write(tmp_path, MINIMAL.replace("id: a", "id: b"), "b.yaml")
    suites = load_suites([b, a, str(b), tmp_path / "thresholds" / ".." / "thresholds" / "a.yaml"])
    assert [s.path for s in suites] == [b, a]
    assert load_suites([]) == []
    with pytest.raises(SuiteError, match="not found"):
        load_suites([a, tmp_path / "missing.yaml"])


def test_suite_lookup_hash_pickle(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, FULL))
    assert suite.sae("from_code").factory == "mypkg.saes:load"
    with pytest.raises(SuiteError, match="did you mean 'from_code'"):
        suite.sae("from-code")
    assert pickle.loads(pickle.dumps(suite)) == suite
    assert hash(suite) == hash(load_suite(write(tmp_path, FULL)))
    with pytest.raises(AttributeError):
        suite.baseline = None  # type: ignore[misc]


# ---------------------------------------------------------------------------- structure errors


@pytest.mark.parametrize(("text", "got"), [("- a\n- b\n", "a list"), ("hello\n", "a string"), ("null\n", "null"), ("42\n", "an integer")])
def test_not_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    assert_error(tmp_path, text, 1, None, "must be a mapping", got)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert_error(tmp_path, MINIMAL.replace("saes:", "sae:"), 5, "sae", "unknown key 'sae'", "did you mean 'saes'", "rename it to 'saes'")


def test_unknown_key_without_suggestion_lists_allowed(tmp_path: Path) -> None:
    assert_error(tmp_path, MINIMAL + "zzz: 1\n", 8, "zzz", "unknown key 'zzz'", "use only model, data, baseline, saes, defaults")


@pytest.mark.parametrize(("missing", "text"), [
    ("model", MINIMAL.split("data:")[0].replace("model:\n  name: gpt2\n", "") + "data:\n  tokens: t.npy\nsaes: [{id: a, path: a}]\n"),
    ("data", "model: {name: gpt2}\nsaes: [{id: a, path: a}]\n"),
    ("saes", "model: {name: gpt2}\ndata: {tokens: t.npy}\n"),
])
def test_missing_sections(tmp_path: Path, missing: str, text: str) -> None:
    assert_error(tmp_path, text, 1, missing, f"missing required section '{missing}'", f"'{missing}:'")


def test_model_errors(tmp_path: Path) -> None:
    base = "data: {tokens: t.npy}\nsaes: [{id: a, path: a}]\n"
    assert_error(tmp_path, "model:\n  name: gpt2\n  devise: cpu\n" + base, 3, "model.devise", "did you mean 'device'")
    assert_error(tmp_path, "model:\n  device: cpu\n" + base, 1, "model", "needs one of name, path or factory")
    assert_error(tmp_path, "model:\n" + base, 1, "model", "needs one of name, path or factory")
    assert_error(tmp_path, "model:\n  name: gpt2\n  path: m\n" + base, 3, "model.path", "both 'name' and 'path'", "exactly one")
    assert_error(tmp_path, "model: gpt2\n" + base, 1, "model", "must be a mapping", "a string")
    assert_error(tmp_path, "model:\n  name: gpt2\n  device: gpu\n" + base, 3, "model.device", "'gpu'", "cuda:N")
    assert_error(tmp_path, "model:\n  name: gpt2\n  device: cuda:x\n" + base, 3, "model.device", "cuda:N")
    assert_error(tmp_path, "model:\n  name: gpt2\n  dtype: float61\n" + base, 3, "model.dtype", "did you mean", "float16")
    assert_error(tmp_path, "model:\n  name: gpt2\n  dtype: fp32\n" + base, 3, "model.dtype", "use one of float32")
    assert_error(tmp_path, "model:\n  factory: mypkg.models.load\n" + base, 2, "model.factory", "module:function")
    assert_error(tmp_path, "model:\n  name: ''\n" + base, 2, "model.name", "non-empty string")
    assert_error(tmp_path, "model:\n  path: 3\n" + base, 2, "model.path", "non-empty string", "an integer")


def test_data_errors(tmp_path: Path) -> None:
    head = "model: {name: gpt2}\n"
    tail = "saes: [{id: a, path: a}]\n"
    assert_error(tmp_path, head + "data:\n  tokens: t.npy\n  context_size: abc\n" + tail, 4, "data.context_size", "whole number", "'abc'")
    assert_error(tmp_path, head + "data:\n  tokens: t.npy\n  batch_size_prompts: 0\n" + tail, 4, "data.batch_size_prompts", ">= 1", "1 or more")
    assert_error(tmp_path, head + "data:\n  tokens: t.npy\n  n_reconstruction_batches: -3\n" + tail, 4, "data.n_reconstruction_batches", ">= 1")
    assert_error(tmp_path, head + "data:\n  tokens: t.npy\n  n_sparsity_batches: 2.5\n" + tail, 4, "data.n_sparsity_batches", "whole number")
    assert_error(tmp_path, head + "data:\n  tokens: t.npy\n  n_sparsity_batches: true\n" + tail, 4, "data.n_sparsity_batches", "whole number")
    assert_error(tmp_path, head + "data:\n  tokens: t.npy\n  exclude_special_tokens: maybe\n" + tail, 4, "data.exclude_special_tokens", "true, false or a list")
    assert_error(tmp_path, head + "data:\n  tokens: t.npy\n  exclude_special_tokens: [-1]\n" + tail, 4, "data.exclude_special_tokens", "non-negative")
    assert_error(tmp_path, head + "data:\n  tokens: t.npy\n  exclude_special_tokens: [true]\n" + tail, 4, "data.exclude_special_tokens")
    assert_error(tmp_path, head + "data:\n  tokens: t.npy\n  dataset: {path: x}\n" + tail, 4, "data.dataset", "both 'tokens' and 'dataset'")
    assert_error(tmp_path, head + "data:\n  context_size: 3\n" + tail, 2, "data", "needs one of tokens or dataset")
    assert_error(tmp_path, head + "data:\n  token: t.npy\n" + tail, 3, "data.token", "did you mean 'tokens'")
    assert_error(tmp_path, head + "data: [t.npy]\n" + tail, 2, "data", "must be a mapping")
    assert_error(tmp_path, head + "data:\n  tokens: [a, b]\n" + tail, 3, "data.tokens", "non-empty string")


def test_dataset_errors(tmp_path: Path) -> None:
    head = "model: {name: gpt2}\ndata:\n"
    tail = "saes: [{id: a, path: a}]\n"
    assert_error(tmp_path, head + "  dataset: Skylion007/openwebtext\n" + tail, 3, "data.dataset", "must be a mapping", "path: Skylion007/openwebtext")
    assert_error(tmp_path, head + "  dataset:\n    split: train\n" + tail, 3, "data.dataset", "needs 'path'")
    assert_error(tmp_path, head + "  dataset:\n    path: x\n    colum: text\n" + tail, 5, "data.dataset.colum", "did you mean 'column'")
    assert_error(tmp_path, head + "  dataset:\n    path: x\n    streaming: 'yes'\n" + tail, 5, "data.dataset.streaming", "true or false")
    assert_error(tmp_path, head + "  dataset:\n    path: x\n    split: 3\n" + tail, 5, "data.dataset.split", "non-empty string")
    assert_error(tmp_path, head + "  dataset:\n    path: x\n    data_files: 3\n" + tail, 5, "data.dataset.data_files", "a list of files")
    assert_error(tmp_path, head + "  dataset:\n    path: x\n    data_files: {}\n" + tail, 5, "data.dataset.data_files", "empty")
    assert_error(tmp_path, head + "  dataset:\n    path: x\n    data_files:\n      train: []\n" + tail, 6, "data.dataset.data_files.train", "a list of files")


def test_baseline_errors(tmp_path: Path) -> None:
    assert_error(tmp_path, MINIMAL + "baseline: ''\n", 8, "baseline", "non-empty string")
    assert_error(tmp_path, MINIMAL + "baseline: [a]\n", 8, "baseline", "non-empty string")
    suite = load_suite(write(tmp_path, MINIMAL + "baseline:\n"))
    assert suite.baseline is None


def test_saes_errors(tmp_path: Path) -> None:
    head = "model: {name: gpt2}\ndata: {tokens: t.npy}\n"
    assert_error(tmp_path, head + "saes: []\n", 3, "saes", "saes is empty", "at least one")
    assert_error(tmp_path, head + "saes:\n", 3, "saes", "saes is empty")
    assert_error(tmp_path, head + "saes:\n  a:\n    path: x\n", 3, "saes", "must be a list", "a mapping", "- id:")
    assert_error(tmp_path, head + "saes:\n  - just-a-string\n", 4, "saes[0]", "must be a mapping", "a string")


def test_sae_entry_errors(tmp_path: Path) -> None:
    head = "model: {name: gpt2}\ndata: {tokens: t.npy}\nsaes:\n  - id: ok\n    path: ok\n"
    assert_error(tmp_path, head + "  - path: x\n", 6, "saes[1]", "has no id", "id:")
    assert_error(tmp_path, head + "  - id: 'has space'\n    path: x\n", 6, "saes[1].id", "may only contain", "rename")
    assert_error(tmp_path, head + "  - id: 'a:b'\n    path: x\n", 6, "saes[1].id", "may only contain")
    assert_error(tmp_path, head + "  - id: a/../b\n    path: x\n", 6, "saes[1].id", "'..'")
    assert_error(tmp_path, head + "  - id: /abs\n    path: x\n", 6, "saes[1].id", "may only contain")
    assert_error(tmp_path, head + "  - id: 12\n    path: x\n", 6, "saes[1].id", "must be a string", 'quote it: id: "12"')
    assert_error(tmp_path, head + "  - id: ok\n    path: y\n", 6, "saes[1].id", "duplicate SAE id 'ok'", "saes[0] on line 4", "unique")
    assert_error(tmp_path, head + "  - id: b\n", 6, "saes[1]", "needs one of path, release + sae_id or factory")
    assert_error(tmp_path, head + "  - id: b\n    path: x\n    factory: a:b\n", 8, "saes[1].factory", "both 'path' and 'factory'")
    assert_error(tmp_path, head + "  - id: b\n    release: r\n", 7, "saes[1].release", "'release' needs 'sae_id'")
    assert_error(tmp_path, head + "  - id: b\n    sae_id: s\n", 7, "saes[1].sae_id", "'sae_id' needs 'release'")
    assert_error(tmp_path, head + "  - id: b\n    path: x\n    gate: {}\n", 8, "saes[1].gate", "did you mean 'gates'")
    assert_error(tmp_path, head + "  - id: b\n    factory: not-a-factory\n", 7, "saes[1].factory", "module:function")
    assert_error(tmp_path, head + "  - id: b\n    release: r\n    sae_id: ''\n", 8, "saes[1].sae_id", "non-empty string")


def test_gate_errors(tmp_path: Path) -> None:
    head = "model: {name: gpt2}\ndata: {tokens: t.npy}\nsaes:\n  - id: ok\n    path: ok\n  - id: b\n    path: x\n    gates:\n"
    assert_error(tmp_path, head + "      explained_varience: '>= 0.8'\n", 9, "saes[1].gates.explained_varience",
                 "unknown metric", "did you mean 'explained_variance'")
    assert_error(tmp_path, head + "      feature_density: '>= 0.001'\n", 9, "saes[1].gates.feature_density",
                 "per-feature metric", "cannot be gated")
    assert_error(tmp_path, head + "      l0: 10\n", 9, "saes[1].gates.l0", "bare number", '">= 10"')
    assert_error(tmp_path, head + "      l0: '=> 10'\n", 9, "saes[1].gates.l0", "cannot parse gate expression '=> 10'", "OP VALUE")
    assert_error(tmp_path, head + "      l0:\n        - '>= 1'\n        - '<== 60'\n", 11, "saes[1].gates.l0[1]", "'<== 60'", "OP VALUE")
    assert_error(tmp_path, head + "      l0: []\n", 9, "saes[1].gates.l0", "empty list")
    assert_error(tmp_path, head + "      l0: {min: 1}\n", 9, "saes[1].gates.l0", "must be a string")
    assert_error(tmp_path, head + "      l0: '>= 1'\n      l0: '<= 2'\n", 10, None, "duplicate key 'l0'")
    assert_error(tmp_path, head.replace("    gates:\n", "    gates: ['>= 1']\n"), 8, "saes[1].gates", "must be a mapping", "a list")


def test_defaults_errors(tmp_path: Path) -> None:
    assert_error(tmp_path, MINIMAL + "defaults:\n  gate: {}\n", 9, "defaults.gate", "did you mean 'gates'")
    assert_error(tmp_path, MINIMAL + "defaults:\n  gates:\n    l00: '>= 1'\n", 10, "defaults.gates.l00", "unknown metric", "did you mean 'l0'")
    assert_error(tmp_path, MINIMAL + "defaults: [a]\n", 8, "defaults", "must be a mapping")
    suite = load_suite(write(tmp_path, MINIMAL + "defaults:\n  gates:\n"))
    assert suite.default_gates == ()
