"""Loading SAEs: SAE Lens folders, pretrained releases (exact ids and regexes), factories."""

from __future__ import annotations

import json
import shutil
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.saes import expand_sae_ids, load_sae_folder, load_saes, sae_protocol_problems
from tests.helpers import ProtocolSAE, build_tiny_sae, save_tiny_sae

ARCHITECTURES = ["standard", "gated", "topk", "abstopk", "jumprelu", "matching_pursuit"]


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


@pytest.fixture(scope="module")
def sae_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sae(tmp_path_factory.mktemp("saes") / "layer0", hook_name="blocks.0.hook_resid_pre", seed=3)


# ------------------------------------------------------------------------------------------
# folders


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_folder_loads_every_architecture(tmp_path, architecture):
    folder = save_tiny_sae(tmp_path / architecture, architecture=architecture, hook_name="blocks.1.hook_mlp_out", seed=1)
    [(sae_id, sae)] = load_saes(path=folder, device="cpu")
    assert sae_id is None
    assert sae.cfg.architecture() == architecture
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_mlp_out"
    reference = build_tiny_sae(architecture=architecture, hook_name="blocks.1.hook_mlp_out", seed=1)
    loaded, expected = sae.state_dict(), reference.state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sae.decode(sae.encode(x)), reference.decode(reference.encode(x)))


def test_hook_z_head_index_is_kept(tmp_path):
    folder = save_tiny_sae(tmp_path / "z", hook_name="blocks.0.attn.hook_z", d_in=16, hook_head_index=1)
    [(_, sae)] = load_saes(path=folder, device="cpu")
    assert sae.cfg.metadata.hook_name == "blocks.0.attn.hook_z"
    assert sae.cfg.metadata.hook_head_index == 1
    assert sae.cfg.d_in == 16


def test_relative_path_and_dtype(sae_folder):
    [(_, sae)] = load_saes(path=sae_folder.name, base_dir=sae_folder.parent, device="auto", dtype="float64")
    assert sae.W_enc.dtype == torch.float64


def test_missing_folder(tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_saes(path=tmp_path / "nope")
    msg = _message(excinfo)
    assert "SAE folder" in msg and "does not exist" in msg and str(tmp_path / "nope") in msg and "save_model" in msg


def test_path_is_a_file(tmp_path):
    (tmp_path / "sae.safetensors").write_bytes(b"x")
    with pytest.raises(SourceError, match="is not a folder"):
        load_saes(path=tmp_path / "sae.safetensors")


@pytest.mark.parametrize("remove", ["cfg.json", "sae_weights.safetensors"])
def test_folder_missing_a_file(sae_folder, tmp_path, remove):
    folder = shutil.copytree(sae_folder, tmp_path / "partial")
    (folder / remove).unlink()
    with pytest.raises(SourceError) as excinfo:
        load_saes(path=folder)
    assert f"has no {remove}" in _message(excinfo)


def test_empty_weights(sae_folder, tmp_path):
    folder = shutil.copytree(sae_folder, tmp_path / "empty")
    (folder / "sae_weights.safetensors").write_bytes(b"")
    with pytest.raises(SourceError, match="is empty"):
        load_saes(path=folder)


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_weights(sae_folder, tmp_path, cut):
    folder = shutil.copytree(sae_folder, tmp_path / "truncated")
    weights = folder / "sae_weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(SourceError) as excinfo:
        load_saes(path=folder)
    msg = _message(excinfo)
    assert "corrupt or truncated" in msg and str(weights) in msg and "Fix:" in msg
    assert excinfo.value.__cause__ is not None


def test_garbage_weights(sae_folder, tmp_path):
    folder = shutil.copytree(sae_folder, tmp_path / "garbage")
    (folder / "sae_weights.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(SourceError, match="corrupt or truncated"):
        load_saes(path=folder)


def test_invalid_cfg_json(sae_folder, tmp_path):
    folder = shutil.copytree(sae_folder, tmp_path / "badcfg")
    (folder / "cfg.json").write_text("{oops")
    with pytest.raises(SourceError, match="is not valid JSON"):
        load_saes(path=folder)


def test_cfg_that_does_not_match_weights(sae_folder, tmp_path):
    folder = shutil.copytree(sae_folder, tmp_path / "mismatch")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["d_sae"] = 65
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SourceError) as excinfo:
        load_saes(path=folder)
    assert "SAE Lens could not load the SAE" in _message(excinfo)
    assert "matches the weights" in _message(excinfo)


def test_cfg_without_hook_name(sae_folder, tmp_path):
    folder = shutil.copytree(sae_folder, tmp_path / "nohook")
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["metadata"]["hook_name"]
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SourceError) as excinfo:
        load_saes(path=folder)
    message = _message(excinfo)
    assert "cfg.json' names no hook (metadata.hook_name is missing)" in message
    assert "edit cfg.json" in message and "hook_name: in the suite's SAE entry" in message
    assert "factory protocol" not in message  # advice for factories, not for a folder
    # the suite entry's hook_name: stands in for it
    sae = load_sae_folder(folder, hook_name="blocks.1.hook_resid_pre")
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_pre"


def test_a_folder_whose_sae_class_lacks_a_tensor_is_not_sent_to_its_cfg_json(sae_folder, monkeypatch):
    """No config can give an architecture a W_enc it does not have: the fix names a factory, not cfg.json."""
    import pytest_saeval.sources.saes as saes

    monkeypatch.setattr(saes, "sae_protocol_problems", lambda sae: ["tensor W_enc"])
    with pytest.raises(SourceError) as excinfo:
        load_saes(path=sae_folder)
    message = _message(excinfo)
    assert "is not a usable SAE: it lacks tensor W_enc" in message
    assert "has no tensor W_enc, which no config can give it: load it through a factory" in message
    assert "correct the checkpoint's config file" not in message
    monkeypatch.setattr(saes, "sae_protocol_problems", lambda sae: ["cfg.d_in (a positive int)"])
    with pytest.raises(SourceError, match="correct the checkpoint's config file"):
        load_saes(path=sae_folder)


# ------------------------------------------------------------------------------------------
# arguments


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({}, "exactly one of path, release"),
        ({"path": "a", "factory": "m:f"}, "exactly one of path, release"),
        ({"path": "a", "release": "r", "sae_id": "x"}, "exactly one of path, release"),
        ({"path": "a", "sae_id": "x"}, "sae_id is given without release"),
        ({"release": "gpt2-small-res-jb"}, "needs an sae_id"),
        ({"release": "gpt2-small-res-jb", "sae_id": " "}, "needs an sae_id"),
    ],
)
def test_argument_errors(kwargs, text):
    with pytest.raises(SourceError, match=text):
        load_saes(**kwargs)


# ------------------------------------------------------------------------------------------
# pretrained releases, served from a local Hugging Face cache with the hub offline

FAKE_REPO = "saeval-tests/tiny-saes"
FAKE_RELEASE = "saeval-tiny-res"
FAKE_IDS = {
    "blocks.0.hook_resid_pre": "layer_0",
    "blocks.1.hook_resid_pre": "layer_1",
    "blocks.10.hook_resid_pre": "layer_10",
    "blocks.2.hook_resid_pre": "layer_2",
    "blocks.1.hook_mlp_out": "mlp_1",
}


@pytest.fixture
def fake_release(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, int]:
    """Register a release in SAE Lens's directory whose files sit in a local HF cache; hub offline.

    Returns the seed each id was saved with.
    """
    import huggingface_hub.constants as hub_constants
    from sae_lens.loading.pretrained_saes_directory import PretrainedSAELookup, get_pretrained_saes_directory

    cache = tmp_path / "hf-cache"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{FAKE_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    seeds = {}
    for seed, (sae_id, folder) in enumerate(FAKE_IDS.items()):
        save_tiny_sae(repo / "snapshots" / commit / folder, hook_name=sae_id, seed=seed)
        seeds[sae_id] = seed

    lookup = PretrainedSAELookup(
        release=FAKE_RELEASE,
        repo_id=FAKE_REPO,
        model="tiny-gpt2",
        conversion_func=None,
        saes_map=dict(FAKE_IDS),
        expected_var_explained={},
        expected_l0={},
        neuronpedia_id={},
        norm_scaling_factor={},
        config_overrides=None,
    )
    monkeypatch.setitem(get_pretrained_saes_directory(), FAKE_RELEASE, lookup)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return seeds


def test_release_exact_id(fake_release):
    [(sae_id, sae)] = load_saes(release=FAKE_RELEASE, sae_id="blocks.1.hook_resid_pre", device="cpu")
    assert sae_id == "blocks.1.hook_resid_pre"
    reference = build_tiny_sae(hook_name=sae_id, seed=fake_release[sae_id])
    loaded, expected = sae.state_dict(), reference.state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_release_regex_expands_to_sorted_entries_that_each_load(fake_release):
    loaded = load_saes(release=FAKE_RELEASE, sae_id=r"blocks\.[0-9]+\.hook_resid_pre", device="cpu")
    ids = [sae_id for sae_id, _ in loaded]
    assert ids == [
        "blocks.0.hook_resid_pre",
        "blocks.1.hook_resid_pre",
        "blocks.2.hook_resid_pre",
        "blocks.10.hook_resid_pre",
    ]
    for sae_id, sae in loaded:
        assert sae.cfg.metadata.hook_name == sae_id
        reference = build_tiny_sae(hook_name=sae_id, seed=fake_release[sae_id])
        got, expected = sae.state_dict(), reference.state_dict()
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)


def test_natural_order_takes_ids_whose_digits_int_cannot_read(fake_release):
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    # "\u00b2" (superscript two) passes str.isdigit() but not int(): sorted as text, not a crash
    get_pretrained_saes_directory()[FAKE_RELEASE].saes_map["blocks.\u00b2.hook_resid_pre"] = "layer_sq"
    ids = expand_sae_ids(FAKE_RELEASE, r"blocks\..*\.hook_resid_pre")
    assert ids[:4] == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre",
                       "blocks.10.hook_resid_pre"]
    assert ids[4:] == ["blocks.\u00b2.hook_resid_pre"]


def test_regex_must_match_in_full(fake_release):
    assert expand_sae_ids(FAKE_RELEASE, r"blocks\.1\..*") == ["blocks.1.hook_mlp_out", "blocks.1.hook_resid_pre"]
    with pytest.raises(SourceError, match="matches no id"):
        expand_sae_ids(FAKE_RELEASE, r"blocks\.1")


def test_exact_id_wins_over_regex_reading(fake_release):
    # "blocks.1.hook_mlp_out" is also a regex that would match e.g. "blocks_1_hook_mlp_out"; exact ids are taken as is.
    assert expand_sae_ids(FAKE_RELEASE, "blocks.1.hook_mlp_out") == ["blocks.1.hook_mlp_out"]


def test_regex_without_match_lists_close_ids(fake_release):
    with pytest.raises(SourceError) as excinfo:
        load_saes(release=FAKE_RELEASE, sae_id="blocks.1.hook_resid_post")
    msg = _message(excinfo)
    assert "matches no id of release 'saeval-tiny-res'" in msg
    assert "did you mean" in msg and "'blocks.1.hook_resid_pre'" in msg
    assert "blocks.10.hook_resid_pre" in msg  # the fix lists the release's ids


def test_invalid_regex(fake_release):
    with pytest.raises(SourceError, match="nor a valid regular expression"):
        load_saes(release=FAKE_RELEASE, sae_id="blocks.[0-9")


def test_unknown_release_suggests_names():
    with pytest.raises(SourceError) as excinfo:
        load_saes(release="gpt2-small-res-j", sae_id="blocks.0.hook_resid_pre")
    msg = _message(excinfo)
    assert "no pretrained release 'gpt2-small-res-j'" in msg
    assert "did you mean" in msg and "'gpt2-small-res-jb'" in msg


def test_release_not_cached_with_hub_unreachable(fake_release, monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(SourceError) as excinfo:
        load_saes(release=FAKE_RELEASE, sae_id="blocks.0.hook_resid_pre")
    msg = _message(excinfo)
    assert "not in the local Hugging Face cache" in msg and "hub cannot be reached" in msg
    assert "path:" in msg


# ------------------------------------------------------------------------------------------
# factories


@pytest.fixture
def factory_module(tmp_path: Path) -> str:
    name = f"saeval_saes_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from types import SimpleNamespace
            from tests.helpers import build_tiny_sae
            from tests.helpers import ProtocolSAE

            def sae_lens_sae():
                return build_tiny_sae(architecture="topk", hook_name="blocks.1.hook_resid_post")

            def protocol():
                return ProtocolSAE()

            def no_hook():
                return ProtocolSAE(hook_name=None)

            def half_done():
                return SimpleNamespace(encode=lambda x: x, cfg=SimpleNamespace(d_in=4, d_sae=0))

            def boom():
                raise FileNotFoundError("checkpoint.pt")
            """
        )
    )
    return name


def test_factory_returning_sae_lens_sae(factory_module, tmp_path):
    [(sae_id, sae)] = load_saes(factory=f"{factory_module}:sae_lens_sae", base_dir=tmp_path, device="cpu")
    assert sae_id is None
    assert sae.cfg.architecture() == "topk"
    assert not sae.training


def test_factory_returning_protocol_object(factory_module, tmp_path):
    [(_, sae)] = load_saes(factory=f"{factory_module}:protocol", base_dir=tmp_path, device="cpu", dtype="float64")
    assert isinstance(sae, ProtocolSAE)
    assert sae.W_enc.dtype == torch.float64


def test_factory_returning_object_without_hook_name(factory_module, tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_saes(factory=f"{factory_module}:no_hook", base_dir=tmp_path)
    assert "cfg.metadata.hook_name" in _message(excinfo)


def test_factory_returning_incomplete_object_lists_what_is_missing(factory_module, tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_saes(factory=f"{factory_module}:half_done", base_dir=tmp_path)
    msg = _message(excinfo).split(". Fix:")[0]
    for missing in ("method decode()", "tensor W_enc", "tensor W_dec", "cfg.d_sae", "cfg.metadata.hook_name"):
        assert missing in msg
    assert "method encode()" not in msg and "cfg.d_in" not in msg


def test_factory_raising(factory_module, tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_saes(factory=f"{factory_module}:boom", base_dir=tmp_path)
    assert "raised FileNotFoundError: checkpoint.pt" in _message(excinfo)
    assert isinstance(excinfo.value.__cause__, FileNotFoundError)


def test_factory_module_not_found(tmp_path):
    with pytest.raises(SourceError, match="module 'missing_sae_module' not found"):
        load_saes(factory="missing_sae_module:load", base_dir=tmp_path)


def test_protocol_checks_shapes():
    sae = ProtocolSAE()
    assert sae_protocol_problems(sae) == []
    sae.cfg.d_sae = 13
    problems = sae_protocol_problems(sae)
    assert any("W_enc of shape [d_in, d_sae] = [8, 13]" in p for p in problems)
