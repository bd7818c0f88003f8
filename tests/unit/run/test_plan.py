"""What a run evaluates: the SAE entries of a suite (release regexes expanded, selection), the objects that
replace a suite's own sources, and the group key that decides which suites share one fused pass."""

from __future__ import annotations

from pathlib import Path

import pytest

import pytest_saeval.sources.saes as saes_module
from pytest_saeval.errors import InputError, SourceError, Subject
from pytest_saeval.run.plan import ModelKey, Overrides, SAEEntry, entries_of, group_key
from pytest_saeval.settings import EvalSettings
from pytest_saeval.spec.loader import load_suite

HEAD = """\
model:
  path: ../models/tiny
  device: cpu
data:
  tokens: ../tokens.npy
  context_size: 16
  batch_size_prompts: 4
  n_reconstruction_batches: 2
  n_sparsity_batches: 3
"""

SAES = """\
saes:
  - id: first
    path: ../saes/first
    gates:
      l0: "<= 60"
  - id: res
    release: tiny-release
    sae_id: "blocks\\\\.[01]\\\\.hook_resid_pre"
    gates:
      mse: "<= 2"
  - id: exact
    release: tiny-release
    sae_id: blocks.5.hook_resid_pre
"""


def _suite(tmp_path: Path, name: str = "suite.yaml", head: str = HEAD, saes: str = SAES, folder: str = "thresholds"):
    path = tmp_path / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + saes)
    return load_suite(path)


@pytest.fixture
def release(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """SAE Lens's directory stands in: ``tiny-release`` has blocks.0, blocks.1 and blocks.5; calls are recorded."""
    calls: list[tuple[str, str]] = []
    known = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.5.hook_resid_pre"]

    def expand(release: str, sae_id: str) -> list[str]:
        import re

        calls.append((release, sae_id))
        if sae_id in known:
            return [sae_id]
        found = [k for k in known if re.fullmatch(sae_id, k)]
        if not found:
            raise SourceError(f"no SAE of release {release!r} matches {sae_id!r}", fix="check the regex")
        return found

    monkeypatch.setattr(saes_module, "expand_sae_ids", expand)
    return calls


# -- entries ------------------------------------------------------------------------------------------


def test_entries_in_file_order_with_release_regexes_expanded(tmp_path: Path, release: list[tuple[str, str]]) -> None:
    suite = _suite(tmp_path)
    entries = entries_of(suite)
    assert [(e.unique_id, e.release_sae_id, e.index) for e in entries] == [
        ("first", None, 0),
        ("res/blocks.0.hook_resid_pre", "blocks.0.hook_resid_pre", 1),
        ("res/blocks.1.hook_resid_pre", "blocks.1.hook_resid_pre", 1),
        ("exact", "blocks.5.hook_resid_pre", 2),  # an exact id keeps the entry's own id
    ]
    assert all(e.suite_path == suite.path for e in entries)
    assert entries[1].spec is entries[2].spec is suite.saes[1]
    assert [g.metric for g in entries[1].gates] == ["mse"] and entries[3].gates == ()
    assert release == [("tiny-release", "blocks\\.[01]\\.hook_resid_pre"), ("tiny-release", "blocks.5.hook_resid_pre")]


def test_selection_filters_by_unique_id(tmp_path: Path, release: list[tuple[str, str]]) -> None:
    suite = _suite(tmp_path)
    picked = entries_of(suite, lambda uid: uid.startswith("res/") or uid == "exact")
    assert [e.unique_id for e in picked] == ["res/blocks.0.hook_resid_pre", "res/blocks.1.hook_resid_pre", "exact"]
    assert entries_of(suite, lambda uid: False) == []


def test_paths_only_need_no_release_directory(tmp_path: Path) -> None:
    suite = _suite(tmp_path, saes="saes:\n  - id: a\n    path: a\n  - id: b\n    path: b\n")
    assert entries_of(suite) == [SAEEntry(suite.path, suite.saes[0], "a", index=0),
                                 SAEEntry(suite.path, suite.saes[1], "b", index=1)]


def test_a_release_error_is_located_at_its_entry(tmp_path: Path, release: list[tuple[str, str]]) -> None:
    suite = _suite(tmp_path, saes=SAES.replace("[01]", "[7-9]"))
    with pytest.raises(SourceError) as info:
        entries_of(suite)
    e = info.value
    assert e.location.file == str(suite.path) and e.location.line == suite.saes[1].line == 15
    assert e.location.key == "saes[1].sae_id"
    assert e.subject == Subject(suite=str(suite.path), entry=1)
    assert str(e).startswith(f"{suite.path}:{suite.saes[1].line}: saes[1].sae_id: no SAE of release 'tiny-release'")


# -- overrides ----------------------------------------------------------------------------------------


def test_overrides() -> None:
    assert Overrides().empty
    assert not Overrides(model=object()).empty and not Overrides(tokens=[[1]]).empty
    given = {"a": 1}
    ov = Overrides(saes=given)
    given["b"] = 2
    assert ov.saes == {"a": 1} and not ov.empty  # a copy: later changes to the mapping do not leak in
    assert Overrides(saes={}).saes == {} and not Overrides(saes={}).empty


@pytest.mark.parametrize("bad", [["a"], "a", 3])
def test_an_saes_override_must_be_a_mapping(bad: object) -> None:
    with pytest.raises(InputError) as info:
        Overrides(saes=bad)  # type: ignore[arg-type]
    assert info.value.location.key == "saeval_saes"
    assert f"must map SAE ids to SAEs, got {type(bad).__name__}" in str(info.value)
    assert "Fix: return a dict like" in str(info.value)


# -- the group key ------------------------------------------------------------------------------------


def test_suites_with_the_same_model_tokens_and_settings_share_a_group(tmp_path: Path) -> None:
    one = _suite(tmp_path, "one.yaml", saes="saes:\n  - id: a\n    path: a\n")
    two = _suite(tmp_path, "two.yaml", saes="saes:\n  - id: b\n    path: b\n  - id: c\n    path: c\n")
    assert group_key(one) == group_key(two)
    assert group_key(one).text() == group_key(two).text()
    assert hash(group_key(one)) == hash(group_key(two))


def test_a_model_run_with_its_folder_code_is_its_own_group(tmp_path: Path) -> None:
    plain = _suite(tmp_path, "one.yaml", saes="saes:\n  - id: a\n    path: a\n")
    trusted = _suite(tmp_path, "two.yaml", head=HEAD.replace("  device: cpu\n", "  device: cpu\n  trust_remote_code: true\n"),
                     saes="saes:\n  - id: a\n    path: a\n")
    assert trusted.model.trust_remote_code and group_key(plain) != group_key(trusted)
    assert group_key(plain).text() != group_key(trusted).text()  # xdist groups and shards by the text


def test_the_key_as_text(tmp_path: Path) -> None:
    suite = _suite(tmp_path, saes="saes:\n  - id: a\n    path: a\n")
    key = group_key(suite)
    assert key.model == ModelKey(name=None, path=str(tmp_path / "models" / "tiny"), factory=None, factory_dir=None,
                                 device="cpu", dtype="float32")
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=3)
    assert key.settings == settings and key.context_size == 16
    assert key.tokens == str(tmp_path / "tokens.npy") and key.dataset is None and key.tokens_override is None
    assert key.text() == "|".join(["model", "", str(tmp_path / "models" / "tiny"), "", "cpu", "float32", "", "", "False",
                                   "data", str(tmp_path / "tokens.npy"), "None", "", "16", repr(settings)])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  device: cpu\n", "  device: cuda:0\n"),
        ("  path: ../models/tiny\n  device: cpu\n", "  path: ../models/other\n  device: cpu\n"),
        ("  device: cpu\n", "  device: cpu\n  dtype: float64\n"),
        ("  tokens: ../tokens.npy\n", "  tokens: ../other.npy\n"),
        ("  context_size: 16\n", "  context_size: 8\n"),
        ("  batch_size_prompts: 4\n", "  batch_size_prompts: 2\n"),
        ("  n_sparsity_batches: 3\n", "  n_sparsity_batches: 4\n"),
        ("  n_sparsity_batches: 3\n", "  n_sparsity_batches: 3\n  exclude_special_tokens: false\n"),
    ],
    ids=["device", "model", "dtype", "tokens", "context", "batch", "batches", "special-tokens"],
)
def test_any_difference_in_model_tokens_or_settings_splits_the_group(tmp_path: Path, old: str, new: str) -> None:
    assert old in HEAD
    base = _suite(tmp_path, "base.yaml", saes="saes:\n  - id: a\n    path: a\n")
    changed = _suite(tmp_path, "changed.yaml", head=HEAD.replace(old, new), saes="saes:\n  - id: a\n    path: a\n")
    assert group_key(base) != group_key(changed)
    assert group_key(base).text() != group_key(changed).text()


def test_the_device_a_model_is_loaded_on_decides(tmp_path: Path) -> None:
    cpu = _suite(tmp_path, "cpu.yaml", saes="saes:\n  - id: a\n    path: a\n")
    cuda = _suite(tmp_path, "cuda.yaml", head=HEAD.replace("device: cpu", "device: cuda:1"),
                  saes="saes:\n  - id: a\n    path: a\n")
    assert group_key(cpu, device="cuda:1") == group_key(cuda)
    assert group_key(cpu, device="cuda:1").model.device == "cuda:1"


def test_a_factory_is_looked_up_next_to_its_suite(tmp_path: Path) -> None:
    head = HEAD.replace("  path: ../models/tiny\n", "  factory: models:make\n")
    here = _suite(tmp_path, "a.yaml", head=head, saes="saes:\n  - id: a\n    path: a\n")
    also_here = _suite(tmp_path, "b.yaml", head=head, saes="saes:\n  - id: b\n    path: b\n")
    elsewhere = _suite(tmp_path, "a.yaml", head=head, saes="saes:\n  - id: a\n    path: a\n", folder="other")
    assert group_key(here).model.factory_dir == str(tmp_path / "thresholds")
    assert group_key(here) == group_key(also_here)
    assert group_key(here) != group_key(elsewhere)


def test_overriding_objects_are_their_own_key(tmp_path: Path) -> None:
    one = _suite(tmp_path, "one.yaml", saes="saes:\n  - id: a\n    path: a\n")
    other_model = _suite(tmp_path, "two.yaml", head=HEAD.replace("models/tiny", "models/other"),
                         saes="saes:\n  - id: a\n    path: a\n")
    model, tokens = object(), object()
    ov = Overrides(model=model, tokens=tokens)
    key = group_key(one, overrides=ov)
    assert key.model == ModelKey(None, None, None, None, "", "", id(model))
    assert (key.tokens, key.dataset, key.tokens_override) == (None, None, id(tokens))
    assert group_key(other_model, overrides=ov) == key  # the suites' own sources no longer matter
    assert group_key(one, overrides=Overrides(model=object(), tokens=tokens)) != key
    assert str(id(model)) in key.text() and str(id(tokens)) in key.text()
    only_tokens = group_key(one, overrides=Overrides(tokens=tokens))
    assert only_tokens.model == group_key(one).model and only_tokens.tokens_override == id(tokens)
