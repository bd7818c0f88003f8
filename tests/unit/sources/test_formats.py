"""Telling checkpoint folders apart: SAE Lens, sparsify, dictionary_learning; run folders, half
checkpoints, ambiguous folders and ``format:``; a folder, FIFO or device where a checkpoint file belongs;
weights whose safetensors header is malformed; config sizes that are no whole numbers >= 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.formats import FORMAT_FILES, detect_format, inspect_sae_folder, read_json_object
from pytest_saeval.spec.fields import SAE_FORMATS


def _touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def test_the_spec_and_the_sources_know_the_same_formats():
    assert tuple(FORMAT_FILES) == SAE_FORMATS


@pytest.mark.parametrize("fmt", SAE_FORMATS)
def test_each_format_is_detected_from_its_files(tmp_path, fmt):
    folder = _touch(tmp_path / "ckpt", *FORMAT_FILES[fmt])
    assert detect_format(folder) == fmt
    assert detect_format(folder, fmt) == fmt


def test_files_of_two_formats_are_ambiguous_until_format_says(tmp_path):
    folder = _touch(tmp_path / "both", "cfg.json", "sae_weights.safetensors", "sae.safetensors")
    with pytest.raises(SourceError) as excinfo:
        detect_format(folder)
    msg = str(excinfo.value)
    assert "ambiguous" in msg and "SAE Lens" in msg and "sparsify" in msg
    assert "format: sae_lens or format: sparsify" in msg
    assert detect_format(folder, "sparsify") == "sparsify"


def test_a_named_format_needs_its_files(tmp_path):
    folder = _touch(tmp_path / "sae-lens", *FORMAT_FILES["sae_lens"])
    with pytest.raises(SourceError) as excinfo:
        detect_format(folder, "dictionary_learning")
    msg = str(excinfo.value)
    assert "has no config.json and no ae.pt" in msg and "format: dictionary_learning" in msg
    assert "remove format:" in msg


def test_a_sparsify_run_folder_lists_its_hooks(tmp_path):
    run = tmp_path / "run"
    for hook in ("layers.0", "layers.0.mlp", "layers.1"):
        _touch(run / hook, "cfg.json", "sae.safetensors")
    _touch(run, "config.json", "state.pt")
    with pytest.raises(SourceError) as excinfo:
        detect_format(run)
    msg = str(excinfo.value)
    assert "is a run folder holding 3 checkpoint folder(s) (layers.0, layers.0.mlp, layers.1)" in msg
    assert f"path: {run / 'layers.0'}" in msg


def test_a_dictionary_learning_run_folder_two_levels_deep(tmp_path):
    run = tmp_path / "sweep"
    for trainer in ("trainer_0", "trainer_1"):
        _touch(run / "resid_post_layer_1" / trainer, "config.json", "ae.pt")
    with pytest.raises(SourceError) as excinfo:
        detect_format(run)
    assert "resid_post_layer_1/trainer_0, resid_post_layer_1/trainer_1" in str(excinfo.value)


def test_seed_folders_of_a_sparsify_run(tmp_path):
    hook = tmp_path / "run" / "layers.2"
    for seed in ("seed0", "seed1"):
        _touch(hook / seed, "cfg.json", "sae.safetensors")
    with pytest.raises(SourceError, match=r"\(seed0, seed1\)"):
        detect_format(hook)


@pytest.mark.parametrize(("present", "expected"), [
    (("cfg.json",), "has no sae_weights.safetensors (for an SAE Lens folder) or sae.safetensors (for a sparsify"),
    (("sae.safetensors",), "has no cfg.json (for a sparsify checkpoint)"),
    (("ae.pt",), "has no config.json (for a dictionary_learning trainer folder)"),
])
def test_half_a_checkpoint_names_what_is_missing(tmp_path, present, expected):
    folder = _touch(tmp_path / "half", *present)
    with pytest.raises(SourceError) as excinfo:
        detect_format(folder)
    assert expected in str(excinfo.value)


def test_a_folder_without_any_checkpoint(tmp_path):
    folder = _touch(tmp_path / "other", "notes.txt", "model.bin")
    with pytest.raises(SourceError) as excinfo:
        detect_format(folder)
    msg = str(excinfo.value)
    assert "holds no SAE checkpoint (it has model.bin, notes.txt)" in msg
    assert "sae_weights.safetensors" in msg and "sae.safetensors" in msg and "ae.pt" in msg


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        detect_format(tmp_path / "nope")
    with pytest.raises(SourceError, match="is not a folder"):
        detect_format(_touch(tmp_path, "ae.pt") / "ae.pt")


# ------------------------------------------------------------------------------------------
# inspect_sae_folder on weights whose safetensors header is JSON but malformed


def _rewrite_header(weights: Path, tensor: str, entry: object) -> None:
    """Replace ``tensor``'s entry in the header of the safetensors file ``weights`` (the data stays)."""
    raw = weights.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    header[tensor] = entry
    text = json.dumps(header).encode()
    weights.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + size:])


def _bad_entries(entry: dict) -> list[tuple[object, str]]:
    return [
        (1, "the entry of tensor '{t}' is 1, not an object with dtype, shape and data_offsets"),
        ({**entry, "shape": "8x32"}, "tensor '{t}' has shape '8x32', not a list of whole numbers >= 0"),
        ({**entry, "shape": [-entry["shape"][0], entry["shape"][1]]}, "tensor '{t}' has shape [-"),
        ({**entry, "data_offsets": [0, "x"]}, "tensor '{t}' has data_offsets [0, 'x'], not [start, end]"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_an_sae_lens_folder_with_a_malformed_header_is_one_source_error(tmp_path, case):
    pytest.importorskip("sae_lens")
    from tests.helpers import save_tiny_sae

    folder = save_tiny_sae(tmp_path / "sae")
    assert inspect_sae_folder(folder) == "sae_lens"
    weights = folder / "sae_weights.safetensors"
    good = json.loads(weights.read_bytes()[8:8 + int.from_bytes(weights.read_bytes()[:8], "little")])["W_enc"]
    entry, reason = _bad_entries(good)[case]
    _rewrite_header(weights, "W_enc", entry)
    with pytest.raises(SourceError) as info:
        inspect_sae_folder(folder)
    message = str(info.value)
    assert f"SAE weights file '{weights}' is corrupt or truncated (ValueError: {reason.format(t='W_enc')}" in message


@pytest.mark.parametrize("case", range(4))
def test_a_sparsify_folder_with_a_malformed_header_is_one_source_error(tmp_path, case):
    folder = tmp_path / "layers.0"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps({"d_in": 4, "num_latents": 6}))
    good = {"dtype": "F32", "shape": [6, 4], "data_offsets": [0, 96]}
    entry, reason = _bad_entries(good)[case]
    text = json.dumps({"encoder.weight": entry, "W_dec": {**good, "data_offsets": [96, 192]}}).encode()
    (folder / "sae.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + b"\0" * 192)
    with pytest.raises(SourceError) as info:
        inspect_sae_folder(folder)
    assert f"is corrupt or truncated (ValueError: {reason.format(t='encoder.weight')}" in str(info.value)


# ------------------------------------------------------------------------------------------
# a folder, FIFO or device where a checkpoint file belongs: named as such, never opened


def _special(path: Path, kind: str) -> str:
    """Put a ``kind`` thing at ``path``; return how the message names it."""
    if kind == "fifo":
        os.mkfifo(path)
        return "(a FIFO)"
    if kind == "folder":
        path.mkdir()
        return "(a folder)"
    os.symlink("/dev/zero", path)
    return "(a character device; it is a symbolic link to '/dev/zero')"


def _within(seconds: float, call, *args):
    """``call(*args)`` in a thread that must end within ``seconds`` (a FIFO opened for reading would block)."""
    import threading

    outcome: list[BaseException | object] = []

    def target() -> None:
        try:
            outcome.append(call(*args))
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            outcome.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{call.__name__} blocked (it opened a FIFO or read a device)"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="POSIX special files")
@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
@pytest.mark.parametrize(("fmt", "name"), [("sae_lens", "cfg.json"), ("sae_lens", "sae_weights.safetensors"),
                                           ("sparsify", "sae.safetensors"), ("dictionary_learning", "config.json")])
@pytest.mark.parametrize("named", [False, True])
def test_a_checkpoint_file_that_is_no_regular_file_is_named_as_such(tmp_path, kind, fmt, name, named):
    folder = _touch(tmp_path / "ckpt", *(n for n in FORMAT_FILES[fmt] if n != name))
    what = _special(folder / name, kind)
    for call in (detect_format, inspect_sae_folder):
        error = _within(10, call, folder, fmt if named else None)
        assert isinstance(error, SourceError), error
        assert f"'{folder / name}' is not a regular file {what}" in error.message
        assert "has no" not in error.message and "copy the checkpoint folder again" in (error.fix or "")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_read_json_object_refuses_a_fifo_unread(tmp_path):
    os.mkfifo(tmp_path / "cfg.json")
    error = _within(10, read_json_object, tmp_path / "cfg.json", "the fix")
    assert isinstance(error, SourceError) and error.message == f"'{tmp_path / 'cfg.json'}' is not a regular file (a FIFO)"
    (tmp_path / "big.json").write_text(" " * (16 << 20) + "{}")
    with pytest.raises(SourceError, match="big.json' is no config file: it is larger than 16 MiB"):
        read_json_object(tmp_path / "big.json", "the fix")


# ------------------------------------------------------------------------------------------
# the config's sizes: whole numbers >= 1, checked before anything is built of them


def _sae_lens(folder: Path, **cfg: object) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": 16, "d_sae": 32, **cfg}))
    save_file({"W_enc": np.zeros((16, 32), dtype=np.float32), "W_dec": np.zeros((32, 16), dtype=np.float32)},
              str(folder / "sae_weights.safetensors"))
    return folder


_FROM_WEIGHTS = "in cfg.json, the size its weights have (W_enc in sae_weights.safetensors has shape [16, 32])"


@pytest.mark.parametrize(("cfg", "message", "fix"), [
    ({"d_sae": 0}, "d_sae must be a whole number >= 1, got 0", f'set "d_sae": 32 {_FROM_WEIGHTS}'),
    ({"d_sae": "32"}, 'd_sae must be a whole number >= 1, got "32" (a string)', f'set "d_sae": 32 {_FROM_WEIGHTS}'),
    ({"d_sae": 32.0}, "d_sae must be a whole number >= 1, got 32.0 (a decimal number)", '"d_sae": 32'),
    ({"d_sae": float("nan")}, "d_sae must be a whole number >= 1, got NaN", '"d_sae": 32'),
    ({"d_sae": None}, "d_sae must be a whole number >= 1, got null", '"d_sae": 32'),
    ({"d_in": True}, "d_in must be a whole number >= 1, got true (a boolean)", f'set "d_in": 16 {_FROM_WEIGHTS}'),
    ({"d_in": -16}, "d_in must be a whole number >= 1, got -16", '"d_in": 16'),
    ({"d_in": [16]}, "d_in must be a whole number >= 1, got [16] (a list)", '"d_in": 16'),
])
def test_sae_lens_sizes_that_are_no_whole_numbers_are_named_with_the_stored_size(tmp_path, cfg, message, fix):
    folder = _sae_lens(tmp_path / "sae", **cfg)
    with pytest.raises(SourceError) as info:
        inspect_sae_folder(folder)
    assert info.value.message == f"'{folder / 'cfg.json'}': {message}"
    assert fix in (info.value.fix or "")


def test_a_missing_size_is_named(tmp_path):
    folder = _sae_lens(tmp_path / "sae")
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": 16}))
    with pytest.raises(SourceError, match=r"cfg.json' has no d_sae\. Fix: set \"d_sae\": 32 in cfg.json"):
        inspect_sae_folder(folder)


def _sparsify(folder: Path, **cfg: object) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps({"d_in": 4, "num_latents": 8, "k": 2, **cfg}))
    save_file({"encoder.weight": np.zeros((8, 4), dtype=np.float32), "W_dec": np.zeros((8, 4), dtype=np.float32)},
              str(folder / "sae.safetensors"))
    return folder


@pytest.mark.parametrize(("cfg", "message"), [
    ({"d_in": "4"}, 'd_in must be a whole number >= 1, got "4" (a string)'),
    ({"num_latents": -8}, "num_latents must be a whole number >= 0, got -8"),
    ({"num_latents": 8.0}, "num_latents must be a whole number >= 0, got 8.0 (a decimal number)"),
    ({"num_latents": 0, "expansion_factor": 0}, "expansion_factor must be a whole number >= 1, got 0"),
])
def test_sparsify_sizes_are_checked_before_loading(tmp_path, cfg, message):
    folder = _sparsify(tmp_path / "layers.0", **cfg)
    with pytest.raises(SourceError) as info:
        inspect_sae_folder(folder)
    assert info.value.message == f"'{folder / 'cfg.json'}': {message}"


def test_sparsify_latents_from_the_expansion_factor_are_checked_against_the_weights(tmp_path):
    assert inspect_sae_folder(_sparsify(tmp_path / "a" / "layers.0", num_latents=0, expansion_factor=2)) == "sparsify"
    folder = _sparsify(tmp_path / "b" / "layers.0", num_latents=0, expansion_factor=3)
    with pytest.raises(SourceError, match=r"says d_in 4, expansion_factor 3 \(12 latents\), so encoder.weight "
                                          r"should be \[12, 4\]"):
        inspect_sae_folder(folder)


@pytest.mark.parametrize(("trainer", "message"), [
    ({"activation_dim": 0}, "trainer.activation_dim must be a whole number >= 1, got 0"),
    ({"dict_size": "64"}, 'trainer.dict_size must be a whole number >= 1, got "64" (a string)'),
    ({"dict_size": 64.5}, "trainer.dict_size must be a whole number >= 1, got 64.5 (a decimal number)"),
    (None, 'has no "trainer" block'),
])
def test_dictionary_learning_sizes_are_checked_before_loading(tmp_path, trainer, message):
    folder = _touch(tmp_path / "trainer_0", "ae.pt")
    config = {"trainer": {"dict_class": "AutoEncoder", "activation_dim": 16, "dict_size": 64, **(trainer or {})}}
    (folder / "config.json").write_text(json.dumps(config if trainer is not None else {"buffer": {}}))
    with pytest.raises(SourceError) as info:
        inspect_sae_folder(folder)
    assert message in info.value.message and str(folder / "config.json") in info.value.message
    assert "a whole number >= 1 written without quotes or a decimal point" in (info.value.fix or "") or trainer is None


# ------------------------------------------------------------------------------------------
# cfg.json: a key given twice, and values SAE Lens would take as they are


def test_a_key_given_twice_in_a_config_is_refused(tmp_path):
    folder = _sae_lens(tmp_path / "sae")
    cfg = folder / "cfg.json"
    cfg.write_text(cfg.read_text().replace('"d_sae": 32', '"d_sae": 32, "d_sae": 16'))
    with pytest.raises(SourceError) as info:
        inspect_sae_folder(folder)
    assert info.value.message == (f"'{cfg}' holds the key \"d_sae\" twice in one object (a JSON reader would keep the "
                                  "last one without a word)")
    assert info.value.fix == 'keep one "d_sae" in cfg.json'
    nested = tmp_path / "nested.json"
    nested.write_text('{"metadata": {"hook_name": "a", "hook_name": "b"}}')
    with pytest.raises(SourceError, match='holds the key "hook_name" twice'):
        read_json_object(nested, fix="-")


@pytest.mark.parametrize(("cfg", "message"), [
    ({"apply_b_dec_to_input": "false"}, 'apply_b_dec_to_input must be true or false, got "false" (a string)'),
    ({"metadata": {"sae_lens_version": "6.54.12", "hook_name": 5}}, "metadata.hook_name must name the hook"),
    ({"metadata": {"sae_lens_version": "6.54.12", "hook_name": "blocks.0.hook_resid_pre", "hook_head_index": -1}},
     "metadata.hook_head_index must be null (all heads)"),
])
def test_sae_lens_config_values_are_checked_before_loading(tmp_path, cfg, message):
    folder = _sae_lens(tmp_path / "sae", **cfg)
    with pytest.raises(SourceError) as info:
        inspect_sae_folder(folder)
    assert message in info.value.message and (info.value.fix or "").startswith("edit cfg.json")


def test_a_url_as_an_sae_path_says_urls_are_not_read(tmp_path):
    with pytest.raises(SourceError) as info:
        detect_format(tmp_path / "https:" / "huggingface.co" / "x" / "sae")
    assert "it holds the URL https://huggingface.co/x/sae" in info.value.message
    assert info.value.fix == "download it and give the local path of the copy"
