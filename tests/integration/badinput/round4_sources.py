"""Round four of the bad-input matrix, sources: model folders, datasets and SAE configs that used to load
with something missing or misread (a model folder without some of its weights evaluated with random ones, a
pretokenized column of strings tokenized as text, special tokens to exclude without a tokenizer to name
them). Each now ends as one located error, or a correct result with a note.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.badinput.kit import Assets, BadInputCase, base_suite, broken_model, broken_sae, write_suite

__all__ = ["ROUND_FOUR_SOURCES"]

_C = BadInputCase


# ---------------------------------------------------------------------------------------------
# model folders whose weights do not match config.json


def _tensors(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """Rewrite the model's ``model.safetensors`` after ``change`` (tensors by name)."""

    def apply(model: Path) -> None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(model / "model.safetensors")
        change(tensors)
        save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})

    return apply


def _drop_mlp(tensors: dict[str, Any]) -> None:
    tensors.pop("transformer.h.0.mlp.c_fc.weight")
    tensors.pop("transformer.h.0.mlp.c_proj.weight")


def _stray(tensors: dict[str, Any]) -> None:
    import torch

    tensors["transformer.h.5.mlp.c_fc.weight"] = torch.zeros(4)


def _deeper_config(model: Path) -> None:
    config = json.loads((model / "config.json").read_text())
    config["n_layer"] = 3  # the file holds 2 layers
    (model / "config.json").write_text(json.dumps(config))


# ---------------------------------------------------------------------------------------------
# datasets


def _dataset(write: Callable[[Path], None], name: str) -> Callable[[Path, Assets], Path]:
    """The base suite reading ``data.dataset`` from ``folder/name``, which ``write`` makes."""

    def build(folder: Path, a: Assets) -> Path:
        write(folder / name)
        text = base_suite(a).replace(f"  tokens: {a.tokens}\n", f"  dataset: {{path: {name}, streaming: false}}\n", 1)
        return write_suite(folder, text)

    return build


def _jsonl(rows: list[dict[str, Any]]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    return write


_IDS = [0, 103, 83, 17, 40, 9, 61, 25, 33, 70]


def _saved_empty(path: Path) -> None:
    import datasets

    was_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # the bar would land on the run's stderr
    try:
        datasets.Dataset.from_dict({"input_ids": []}).save_to_disk(str(path))
    finally:
        if not was_off:
            datasets.enable_progress_bars()


# ---------------------------------------------------------------------------------------------
# model folder without a tokenizer; SAE configs; token paths


def _no_tokenizer(exclude: str) -> Callable[[Path, Assets], Path]:
    def build(folder: Path, a: Assets) -> Path:
        model = folder / "model"
        shutil.copytree(a.model, model)
        for file in model.glob("tokenizer*"):
            file.unlink()
        text = base_suite(a, model="model").replace("  n_sparsity_batches: 1\n",
                                                     f"  n_sparsity_batches: 1\n  exclude_special_tokens: {exclude}\n", 1)
        return write_suite(folder, text)

    return build


def _cfg(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(sae: Path) -> None:
        cfg = json.loads((sae / "cfg.json").read_text())
        change(cfg)
        (sae / "cfg.json").write_text(json.dumps(cfg))

    return apply


def _meta(key: str, value: Any) -> Callable[[Path], None]:
    return _cfg(lambda cfg: cfg["metadata"].__setitem__(key, value))


def _twice(sae: Path) -> None:
    text = (sae / "cfg.json").read_text()
    (sae / "cfg.json").write_text(text.replace('"d_sae": 64,', '"d_sae": 64, "d_sae": 32,', 1))


def _topk_k(k: Any) -> Callable[[Path, Assets], Path]:
    def build(folder: Path, a: Assets) -> Path:
        sae = shutil.copytree(a.sae_topk, folder / "sae")
        _cfg(lambda cfg: cfg.__setitem__("k", k))(sae)
        return write_suite(folder, base_suite(a, sae="sae"))

    return build


def _token_path(given: str) -> Callable[[Path, Assets], Path]:
    def build(folder: Path, a: Assets) -> Path:
        return write_suite(folder, base_suite(a, tokens=given.format(tokens=a.tokens, folder=folder)))

    return build


def _spaced_name(folder: Path, a: Assets) -> Path:
    shutil.copy(a.tokens, folder / "t.npy ")  # the file's name really ends in a space
    return write_suite(folder, base_suite(a, tokens='"t.npy "'))


_SAE_PATH = "path: sae"

ROUND_FOUR_SOURCES: tuple[BadInputCase, ...] = (
    # --- model folders: weights the architecture needs, or has no place for -------------------------
    _C("model-weights-missing-tensors", broken_model(_tensors(_drop_mlp)),
       expect=("2 tensors the architecture needs are missing from the weights", "transformer.h.0.mlp.c_fc.weight",
               "they would be random", "save_pretrained"), key="model.path", line_of="  path:", loads_model=True),
    _C("model-config-more-layers-than-weights", broken_model(_deeper_config),
       expect=("12 tensors the architecture needs are missing", "transformer.h.2.", "correct config.json"),
       key="model.path", line_of="  path:", loads_model=True),
    _C("model-weights-stray-tensor", broken_model(_tensors(_stray)),
       expect=("1 tensor in the weights has no place in it (transformer.h.5.mlp.c_fc.weight)",), key="model.path",
       line_of="  path:", loads_model=True),
    # --- datasets: columns read by their name, ids beyond int64, nothing in them --------------------
    _C("dataset-input-ids-as-strings", _dataset(_jsonl([{"input_ids": str(_IDS)}] * 8), "ids.jsonl"),
       expect=("column 'input_ids' holds text ('[0, 103, 83", "SAE Lens reads a column named input_ids as token ids"),
       key="data.dataset", line_of="dataset:", loads_model=True),
    _C("dataset-token-id-beyond-int64", _dataset(_jsonl([{"tokens": [*_IDS[:3], 2**70, *_IDS[4:]]}] * 8), "big.jsonl"),
       expect=(f"holds the id {2**70}, beyond int64",), key="data.dataset", line_of="dataset:", loads_model=True),
    _C("dataset-saved-empty", _dataset(_saved_empty, "saved"),
       expect=("was saved from an empty dataset", "holds no rows"), key="data.dataset", line_of="dataset:",
       loads_model=True),
    _C("dataset-folder-without-data", _dataset(lambda p: p.mkdir(), "nothing"),
       expect=("holds no data files (looked for .jsonl",), key="data.dataset", line_of="dataset:", loads_model=True),
    # --- special tokens to exclude, and no tokenizer to name them -----------------------------------
    _C("exclude-special-tokens-without-tokenizer", _no_tokenizer("true"),
       expect=("exclude_special_tokens is true", "the model has no tokenizer to name its special tokens", "[0]"),
       key="data.exclude_special_tokens", line_of="exclude_special_tokens:", loads_model=True),
    # --- SAE cfg.json: a key twice, values SAE Lens would take as they are ---------------------------
    _C("sae-cfg-key-twice", broken_sae(_twice),
       expect=('holds the key "d_sae" twice', 'keep one "d_sae" in cfg.json'), key="saes[0].path", line_of=_SAE_PATH),
    _C("sae-cfg-boolean-as-string", broken_sae(_cfg(lambda cfg: cfg.__setitem__("apply_b_dec_to_input", "false"))),
       expect=('apply_b_dec_to_input must be true or false, got "false" (a string)', "edit cfg.json"),
       key="saes[0].path", line_of=_SAE_PATH),
    _C("sae-cfg-hook-name-number", broken_sae(_meta("hook_name", 5)),
       expect=("metadata.hook_name must name the hook the SAE reads, got 5", "edit cfg.json"), key="saes[0].path",
       line_of=_SAE_PATH),
    _C("sae-cfg-hook-name-null", broken_sae(_meta("hook_name", None)),
       expect=("names no hook (metadata.hook_name is null)", "edit cfg.json", "hook_name: in the suite's SAE entry"),
       key="saes[0].path", line_of=_SAE_PATH, loads_model=True),
    _C("sae-cfg-head-index-string", broken_sae(_meta("hook_head_index", "0")),
       expect=('metadata.hook_head_index must be null (all heads)', 'got "0" (a string)'), key="saes[0].path",
       line_of=_SAE_PATH),
    _C("sae-cfg-topk-k-zero", _topk_k(0),
       expect=("k (the latents a top-k SAE keeps per token) must be a whole number from 1 to d_sae 64, got 0",),
       key="saes[0].path", line_of=_SAE_PATH),
    # --- token paths that are URLs, or names with a space at the end --------------------------------
    _C("tokens-path-file-url", _token_path("file://{tokens}"),
       expect=("URLs are not read", "give the local path itself"), key="data.tokens", line_of="tokens:"),
    _C("tokens-path-https-url", _token_path("https://example.com/eval_tokens.npy"),
       expect=("it holds the URL https://example.com/eval_tokens.npy", "download it"), key="data.tokens",
       line_of="tokens:"),
    _C("tokens-file-name-ends-in-a-space", _spaced_name,
       expect=("the folder holds 't.npy '", "rename 't.npy ' to 't.npy'"), key="data.tokens", line_of="tokens:"),
)
