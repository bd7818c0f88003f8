"""Checks made before any model is loaded: each bad source is one located error, torch stays unimported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pytest_saeval.errors import SaevalError
from pytest_saeval.run.plan import Overrides, entries_of
from pytest_saeval.run.preflight import preflight
from pytest_saeval.spec.loader import load_suite

ROOT = Path(__file__).resolve().parents[3]


def _safetensors(file: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(file))


def _project(tmp_path: Path, *, tokens: np.ndarray | None = None, data: str = "", model: str = "path: ../model",
             sae: str = "path: ../sae") -> Path:
    """A suite in ``thresholds/`` with a model folder (config and weights), an SAE folder and a token file."""
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    _safetensors(tmp_path / "model" / "model.safetensors", {"wte.weight": np.zeros((4, 4), dtype=np.float32)})
    _sae_lens_folder(tmp_path / "sae")
    np.save(tmp_path / "tokens.npy", np.ones((8, 16), dtype=np.int64) if tokens is None else tokens)
    suite = tmp_path / "thresholds" / "suite.yaml"
    suite.parent.mkdir(exist_ok=True)
    suite.write_text(textwrap.dedent(f"""\
        model:
          {model}
        data:
          tokens: ../tokens.npy
          context_size: 16
          batch_size_prompts: 2
          n_reconstruction_batches: 2
          n_sparsity_batches: 2
        {data}
        saes:
          - id: a
            {sae}
            gates:
              l0: ">= 1"
        """))
    return suite


def _check(path: Path, overrides: Overrides | None = None) -> None:
    suite = load_suite(path)
    preflight([(suite, entries_of(suite))], overrides or Overrides())


def _error(path: Path) -> SaevalError:
    with pytest.raises(SaevalError) as info:
        _check(path)
    return info.value


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_a_valid_project_passes(tmp_path):
    _check(_project(tmp_path))


@pytest.mark.parametrize(("tokens", "needle", "key"), [
    (None, "does not exist", "data.tokens"),
    (np.ones((8, 16), dtype=np.float32), "holds float32 values; token ids must be integers", "data.tokens"),
    (np.ones(64, dtype=np.int64), "it must be 2-D", "data.tokens"),
    (np.ones((3, 16), dtype=np.int64), "3 token rows, but 4 are needed (2 batches x 2 rows)", "data.tokens"),
    (np.ones((8, 10), dtype=np.int64), "rows of 10 tokens, fewer than context_size 16", "data.tokens"),
])
def test_token_file_problems_are_located_at_their_key(tmp_path, tokens, needle, key):
    path = _project(tmp_path, tokens=tokens)
    if tokens is None:
        (tmp_path / "tokens.npy").unlink()
    error = _error(path)
    assert needle in error.message, error.message
    assert error.location.file == str(path)
    assert error.location.key == key
    assert error.location.line == _line(path, key.split(".")[-1] + ":")
    assert error.fix


def test_a_safetensors_token_file_is_read_from_its_header(tmp_path):
    from safetensors.numpy import save_file

    path = _project(tmp_path)
    save_file({"tokens": np.ones((8, 16), dtype=np.float16)}, str(tmp_path / "t.safetensors"))
    path.write_text(path.read_text().replace("../tokens.npy", "../t.safetensors"))
    assert "holds F16 values" in _error(path).message or "float16" in _error(path).message


@pytest.mark.parametrize(("damage", "needle"), [
    (lambda f: f.write_bytes(b""), "weights file 'model.safetensors': it is empty"),
    (lambda f: f.write_bytes(f.read_bytes()[:-10]), "weights file 'model.safetensors': it is corrupt or truncated"),
])
def test_empty_or_truncated_model_weights(tmp_path, damage, needle):
    path = _project(tmp_path)
    damage(tmp_path / "model" / "model.safetensors")
    error = _error(path)
    assert needle in error.message and error.location.key == "model.path"


@pytest.mark.parametrize(("remove", "needle"), [
    ("model", "model folder"),
    ("model/config.json", "has no config.json"),
    ("model/model.safetensors", "has no weights file"),
])
def test_model_folder_problems(tmp_path, remove, needle):
    import shutil

    path = _project(tmp_path)
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    error = _error(path)
    assert needle in error.message and error.location.key == "model.path"
    assert error.location.line == _line(path, "path: ../model")


def test_missing_sae_folder_names_its_entry(tmp_path):
    path = _project(tmp_path, sae="path: ../no-such-sae")
    error = _error(path)
    assert "SAE folder" in error.message and "does not exist" in error.message
    assert error.location.key == "saes[0].path" and error.subject.entry == 0
    assert error.location.line == _line(path, "no-such-sae")


def test_factory_that_does_not_import_is_reported_with_install_fix(tmp_path):
    (tmp_path / "mysae").mkdir()
    (tmp_path / "mysae" / "__init__.py").write_text("")
    (tmp_path / "mysae" / "custom.py").write_text("import not_installed_package_xyz\n\ndef load():\n    return None\n")
    path = _project(tmp_path, sae="factory: mysae.custom:load")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    error = _error(path)
    assert "not_installed_package_xyz" in error.message
    assert "install not_installed_package_xyz" in (error.fix or "")
    assert error.location.key == "saes[0].factory"


def test_overridden_parts_are_not_checked(tmp_path):
    path = _project(tmp_path, model="path: ../nowhere", sae="path: ../nowhere")
    (tmp_path / "tokens.npy").unlink()
    _check(path, Overrides(model=object(), saes={"a": object()}, tokens=np.ones((8, 16))))


def test_preflight_imports_no_torch(tmp_path):
    """The checks read headers and JSON only: a wrong token path costs no torch import."""
    path = _project(tmp_path, tokens=np.ones((8, 16), dtype=np.float64))
    assert _preflight_in_a_process(path, "transformers") == ["ERROR", "data.tokens", "False", "False"]


def _preflight_in_a_process(path: Path, library: str) -> list[str]:
    """Preflight of the suite ``path`` in a fresh interpreter: the key of the error it reports, and whether
    torch and ``library`` were imported."""
    code = textwrap.dedent(f"""
        import sys
        from pytest_saeval.errors import SaevalError
        from pytest_saeval.run.plan import Overrides, entries_of
        from pytest_saeval.run.preflight import preflight
        from pytest_saeval.spec.loader import load_suite
        suite = load_suite({str(path)!r})
        try:
            preflight([(suite, entries_of(suite))], Overrides())
        except SaevalError as e:
            print("ERROR", e.location.key)
        print("torch" in sys.modules, {library!r} in sys.modules)
        """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          check=True).stdout.split()


def _sae_lens_folder(folder: Path, d_in: object = 16, d_sae: object = 32, w_enc: tuple[int, int] | None = None) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": d_in, "d_sae": d_sae}))
    save_file({"W_enc": np.zeros(w_enc or (d_in, d_sae), dtype=np.float32),
               "W_dec": np.zeros((d_sae, d_in) if w_enc is None else (32, 16), dtype=np.float32)},
              str(folder / "sae_weights.safetensors"))


def _cut_header(weights: Path) -> None:
    """Keep the 8-byte length and half the header it gives: the header runs past the end of the file."""
    raw = weights.read_bytes()
    weights.write_bytes(raw[:8 + int.from_bytes(raw[:8], "little") // 2])


@pytest.mark.parametrize(("make", "needle"), [
    (lambda f: _sae_lens_folder(f, w_enc=(16, 64)),
     "holds W_enc of shape [16, 64], but {f}/cfg.json says d_in 16, d_sae 32, so W_enc should be [16, 32]"),
    (lambda f: (_sae_lens_folder(f), (f / "cfg.json").write_text("{not json")), "cfg.json' is not valid JSON"),
    (lambda f: (_sae_lens_folder(f), (f / "sae_weights.safetensors").write_bytes(b"")), "is empty"),
    (lambda f: (_sae_lens_folder(f), (f / "sae_weights.safetensors").write_bytes(b"\xff" * 16)), "corrupt or truncated"),
    (lambda f: (f / "cfg.json").write_text("{}"), "has no sae_weights.safetensors"),
    (lambda f: (f / "notes.txt").write_text(""), "holds no SAE checkpoint"),
    (lambda f: _sae_lens_folder(f, d_sae=0, w_enc=(16, 32)), "{f}/cfg.json': d_sae must be a whole number >= 1, got 0"),
    (lambda f: _sae_lens_folder(f, d_sae="32", w_enc=(16, 32)), 'd_sae must be a whole number >= 1, got "32" (a string)'),
    (lambda f: _sae_lens_folder(f, d_in=16.0, w_enc=(16, 32)), "d_in must be a whole number >= 1, got 16.0"),
    (lambda f: (_sae_lens_folder(f), (f / "cfg.json").unlink(), os.mkfifo(f / "cfg.json")),
     "'{f}/cfg.json' is not a regular file (a FIFO)"),
    (lambda f: (_sae_lens_folder(f), (f / "cfg.json").unlink(), (f / "cfg.json").mkdir()),
     "'{f}/cfg.json' is not a regular file (a folder)"),
    (lambda f: (_sae_lens_folder(f), _cut_header(f / "sae_weights.safetensors")),
     "its header is longer than the file: the first 8 bytes give a header of"),
])
def test_sae_folder_problems_are_found_before_the_model_loads(tmp_path, make, needle):
    import shutil

    path = _project(tmp_path)
    shutil.rmtree(tmp_path / "sae")
    (tmp_path / "sae").mkdir()
    make(tmp_path / "sae")
    error = _error(path)
    assert needle.format(f=tmp_path / "sae") in error.message, error.message
    assert error.location.key == "saes[0].path" and error.location.line == _line(path, "path: ../sae")


def _sparsify_folder(folder: Path, **cfg: object) -> Path:
    """A sparsify checkpoint (cfg.json + sae.safetensors) of d_in 16 and 32 latents, written without torch."""
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps({k: v for k, v in {"d_in": 16, "num_latents": 32, "k": 4, **cfg}.items()
                                                 if v is not None}))
    _safetensors(folder / "sae.safetensors", {"encoder.weight": np.zeros((32, 16), dtype=np.float32),
                                              "encoder.bias": np.zeros(32, dtype=np.float32),
                                              "W_dec": np.zeros((32, 16), dtype=np.float32),
                                              "b_dec": np.zeros(16, dtype=np.float32)})
    return folder


def _trainer_folder(folder: Path, **trainer: object) -> Path:
    """A dictionary_learning trainer folder: its config.json, and an ae.pt preflight does not open."""
    folder.mkdir(parents=True)
    block = {"dict_class": "AutoEncoderTopK", "activation_dim": 16, "dict_size": 32, "k": 4, "layer": 1,
             "submodule_name": "resid_post_layer_1", **trainer}
    (folder / "config.json").write_text(json.dumps({"trainer": {k: v for k, v in block.items() if v is not None},
                                                    "buffer": {"ctx_len": 16}}))
    (folder / "ae.pt").write_bytes(b"not read before the model loads")
    return folder


@pytest.mark.parametrize(("make", "needle"), [
    (lambda r: _sparsify_folder(r / "run" / "layers.1.ln_2"), "was trained on hookpoint 'layers.1.ln_2', which maps to no"),
    (lambda r: _sparsify_folder(r / "run" / "layers.1", transcode=True), "describes a transcoder"),
    (lambda r: _sparsify_folder(r / "run" / "layers.1", activation="groupmax"), "activation 'groupmax'"),
    (lambda r: _sparsify_folder(r / "run" / "layers.1", k=None), "cfg.json' has no k"),
    (lambda r: _sparsify_folder(r / "run" / "layers.1", k=33), "k = 33 exceeds the 32 latents"),
    (lambda r: _trainer_folder(r / "sweep" / "run" / "trainer_0", submodule_name=None),
     "has no unambiguous hook: trainer.layer is 1, but neither trainer.submodule_name nor a run folder name"),
    (lambda r: _trainer_folder(r / "sweep" / "run" / "trainer_0", submodule_name="mlp_out_layer_2"),
     "says layer 2 but trainer.layer is 1"),
    (lambda r: _trainer_folder(r / "sweep" / "run" / "trainer_0", dict_class="IdentityDict"),
     "trainer.dict_class 'IdentityDict' is not a dictionary class this loader maps"),
    (lambda r: _trainer_folder(r / "sweep" / "run" / "trainer_0", k=None), "config.json' has no trainer.k"),
    (lambda r: _trainer_folder(r / "sweep" / "run" / "trainer_0", k=33), "trainer.k = 33 exceeds trainer.dict_size = 32"),
], ids=["sparsify-hookpoint", "sparsify-transcoder", "sparsify-activation", "sparsify-no-k", "sparsify-k",
        "dl-no-hook", "dl-layer", "dl-class", "dl-no-k", "dl-k"])
def test_other_trainers_configs_are_checked_before_the_model_loads(tmp_path, make, needle):
    folder = make(tmp_path)
    path = _project(tmp_path, sae=f"path: {folder}")
    error = _error(path)
    assert needle in error.message, error.message
    assert error.location.key == "saes[0].path" and error.location.line == _line(path, f"path: {folder}")
    assert error.subject.entry == 0 and error.fix


@pytest.mark.parametrize("make", [lambda r: _sparsify_folder(r / "run" / "layers.1.ln_2"),
                                  lambda r: _trainer_folder(r / "sweep" / "run" / "trainer_0", submodule_name=None)],
                         ids=["sparsify", "dictionary_learning"])
def test_a_hook_name_in_the_entry_stands_for_an_unmapped_hook(tmp_path, make):
    folder = make(tmp_path)
    path = _project(tmp_path, sae=f"path: {folder}")
    path.write_text(path.read_text().replace(f"path: {folder}\n", f"path: {folder}\n    hook_name: blocks.1.hook_resid_post\n"))
    _check(path)


def test_other_trainers_configs_are_checked_without_torch(tmp_path):
    """Both config readers and the hook mappings read JSON only: the first bad entry is reported with torch
    (and TransformerLens) unimported."""
    good = _sparsify_folder(tmp_path / "run" / "layers.1")
    bad = _trainer_folder(tmp_path / "sweep" / "run" / "trainer_0", submodule_name=None)
    path = _project(tmp_path, sae=f"path: {good}")
    path.write_text(path.read_text() + f"  - id: b\n    path: {bad}\n")
    assert _preflight_in_a_process(path, "transformer_lens") == ["ERROR", "saes[1].path", "False", "False"]
