"""Telling checkpoint folders apart: SAE Lens, sparsify, dictionary_learning; run folders, half
checkpoints, ambiguous folders and ``format:``; weights whose safetensors header is malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.formats import FORMAT_FILES, detect_format, inspect_sae_folder
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
