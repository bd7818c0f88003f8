"""Round two of the bad-input matrix (issue 18): hostile and faulty situations beyond round one.

YAML built to exhaust a parser, paths a file system cannot hold, folders that would run their own
code, weights and tokens of the wrong kind, places that cannot be written, caches that cannot be used,
and SAE ids whose output files used to collide. Each ends as a located one-line error, a clear
``cannot write X: reason``, one warning and a correct result, or a correct result.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.integration.badinput.kit import (
    Assets,
    BadInputCase,
    base_suite,
    broken_sae,
    copy_model,
    edit,
    text,
    tokens_file,
    write_suite,
)

__all__ = ["ROUND_TWO"]

LONG = "x" * 300
"""A file name longer than any file system allows (255 bytes)."""


# ---------------------------------------------------------------------------------------------
# YAML that would exhaust a parser


def _bomb(levels: int, width: int = 9) -> str:
    """A flow list of nested aliases: ``width ** levels`` values once expanded, a few hundred bytes as written."""
    names = [f"a{i}" for i in range(levels)]
    items = [f"&{names[0]} [" + ", ".join(["0"] * width) + "]"]
    items += [f"&{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def _append(extra: str) -> Callable[[Path, Assets], Path]:
    def build(folder: Path, a: Assets) -> Path:
        return write_suite(folder, base_suite(a) + extra)

    return build


def _raw(replace: tuple[str, str]) -> Callable[[Path, Assets], Path]:
    """The base suite with one text replaced, written as bytes (control characters included)."""

    def build(folder: Path, a: Assets) -> Path:
        path = folder / "suite.yaml"
        path.write_bytes(base_suite(a).replace(*replace, 1).encode("utf-8"))
        return path

    return build


def _merge_bomb() -> str:
    lines = ["x-anchors:", "  m0: &m0 {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1}"]
    for i in range(1, 8):
        lines.append(f"  m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 9) + "]}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# folders that ship code, weights and tokens of the wrong kind


_CUSTOM_CODE = '''\
from pathlib import Path

Path({marker!r}).touch()  # importing this module is running the folder's code

from transformers import GPT2Config, GPT2LMHeadModel


class CustomConfig(GPT2Config):
    model_type = "saeval-custom-gpt"


class CustomModel(GPT2LMHeadModel):
    config_class = CustomConfig
'''


def custom_code_model(folder: Path, a: Assets, *, in_tokenizer: bool = False) -> Path:
    """A copy of the tiny model whose config (or tokenizer config) maps to a Python file of the folder."""
    model = copy_model(folder, a)
    (model / "custom_model.py").write_text(_CUSTOM_CODE.format(marker=str(folder / "PWNED")), encoding="utf-8")
    name = "tokenizer_config.json" if in_tokenizer else "config.json"
    config = json.loads((model / name).read_text())
    config["auto_map"] = ({"AutoTokenizer": ["custom_model.CustomTokenizer", None]} if in_tokenizer else
                          {"AutoConfig": "custom_model.CustomConfig", "AutoModelForCausalLM": "custom_model.CustomModel"})
    if not in_tokenizer:
        config["model_type"] = "saeval-custom-gpt"
    (model / name).write_text(json.dumps(config), encoding="utf-8")
    return model


def _remote_model(*, in_tokenizer: bool = False) -> Callable[[Path, Assets], Path]:
    def build(folder: Path, a: Assets) -> Path:
        custom_code_model(folder, a, in_tokenizer=in_tokenizer)
        return write_suite(folder, base_suite(a, model="model"))

    return build


def _dataset_script(folder: Path, a: Assets) -> Path:
    data = folder / "corpus"
    data.mkdir()
    (data / "corpus.py").write_text(f"from pathlib import Path\nPath({str(folder / 'PWNED')!r}).touch()\n")
    (data / "train.jsonl").write_text('{"text": "the cat sat on the mat"}\n' * 50)
    text_ = base_suite(a).replace(f"  tokens: {a.tokens}\n", "  dataset: {path: corpus, streaming: false}\n", 1)
    return write_suite(folder, text_)


def _bad_jsonl(*, streaming: bool) -> Callable[[Path, Assets], Path]:
    def build(folder: Path, a: Assets) -> Path:
        rows = ['{"text": "the cat sat on the mat and the dog ran under the log"}'] * 3 + ['{"text": "the dog', "{broken"]
        (folder / "eval.jsonl").write_text("\n".join(rows) + "\n")
        mode = "true" if streaming else "false"
        text_ = base_suite(a).replace(f"  tokens: {a.tokens}\n", f"  dataset: {{path: eval.jsonl, streaming: {mode}}}\n", 1)
        return write_suite(folder, text_)

    return build


def _weights(change: str) -> Callable[[Path], None]:
    def apply(sae: Path) -> None:
        import torch
        from safetensors.torch import load_file, save_file

        tensors = load_file(sae / "sae_weights.safetensors")
        dtype = torch.int8 if change == "int8" else torch.bfloat16
        save_file({k: (v * 10 if change == "int8" else v).to(dtype) for k, v in tensors.items()},
                  sae / "sae_weights.safetensors")

    return apply


def _wide_sae_with_model_kwargs(folder: Path, a: Assets) -> Path:
    """An SAE whose cfg makes SAE Lens warn (model_from_pretrained_kwargs), then fails the d_in check."""
    sae = folder / "sae"
    shutil.copytree(a.sae_wide, sae)
    cfg = json.loads((sae / "cfg.json").read_text())
    cfg["metadata"]["model_from_pretrained_kwargs"] = {"center_writing_weights": False}
    (sae / "cfg.json").write_text(json.dumps(cfg))
    return write_suite(folder, base_suite(a, sae="sae"))


def _unsigned(kind: str) -> Callable[[Path, Assets], None]:
    def write(path: Path, a: Assets) -> None:
        import numpy as np
        import torch

        tokens = np.load(a.tokens).astype(np.uint64)
        tokens[0, 1] = 2**64 - 5
        if kind == "npy":
            np.save(path, tokens)
            return
        tensor = torch.from_numpy(tokens.view(np.int64)).view(torch.uint64)
        if kind == "pt":
            torch.save(tensor, path)
        else:
            from safetensors.torch import save_file

            save_file({"tokens": tensor}, path)

    return write


def _text_linked_as_tokens(path: Path, a: Assets) -> None:
    notes = path.parent / "notes.txt"
    notes.write_text("these are my notes, not tokens\n")
    os.symlink(notes.name, path)


# ---------------------------------------------------------------------------------------------
# output names, places that cannot be written, caches that cannot be used


def _colliding_ids(folder: Path, a: Assets) -> Path:
    extra = "".join(f"  - id: {i}\n    path: {a.sae}\n    gates:\n      l0: \">= 0\"\n" for i in ("x/y", "x_y", "x_y_"))
    return write_suite(folder, base_suite(a) + extra)


def _three_files(folder: Path) -> None:
    out = folder / "out"
    names = sorted(p.name for p in out.glob("suite__*.json"))
    assert names == ["suite__sae0.json", "suite__x%2Fy.json", "suite__x_y.json", "suite__x_y_.json"], names
    assert [json.loads((out / n).read_text())["unique_id"] for n in names] == ["sae0", "x/y", "x_y", "x_y_"]
    assert len(json.loads((out / "all_eval_results.json").read_text())) == 4


def _with(*paths: str, folders: tuple[str, ...] = (), files: tuple[tuple[str, str], ...] = ()) -> Callable[[Path, Assets], Path]:
    """The base suite, plus folders and files in the case folder (``paths``: files whose text is the path)."""

    def build(folder: Path, a: Assets) -> Path:
        for name in folders:
            (folder / name).mkdir(parents=True, exist_ok=True)
        for name, content in files:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(content)
        for name in paths:
            (folder / name).write_text(name)
        return write_suite(folder, base_suite(a))

    return build


def _old_outputs_kept(*names: str) -> Callable[[Path], None]:
    def check(folder: Path) -> None:
        out = folder / "out"
        for name in names:
            assert (out / name).read_text() == "previous output\n", name
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "a temporary file was left behind"
        assert not (out / "suite__sae0.json").exists(), "some outputs were written, others not"

    return check


def _warmed_cache(damage: Callable[[Path], None]) -> Callable[[Path, Assets], Path]:
    """A cache filled by one run of the base suite, then damaged."""

    def build(folder: Path, a: Assets) -> Path:
        import contextlib
        import io

        from pytest_saeval.cli import main

        suite = write_suite(folder, base_suite(a))
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["run", str(suite), "--cache-dir", str(folder / "cache"), "--no-progress"]) == 0
        shutil.rmtree(folder / "cache" / "answers")  # so that the run reads the damaged results cache
        damage(folder / "cache")
        return suite

    return build


def _entry_as_folder(cache: Path) -> None:
    entry = next((cache / "results").rglob("*.safetensors"))
    entry.unlink()
    entry.mkdir()


def _shard_as_file(cache: Path) -> None:
    shard = next((cache / "results").iterdir())
    shutil.rmtree(shard)
    shard.write_text("not a folder")


def _cache_left_alone(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")], "a temporary file was left behind"


_C = BadInputCase
_CACHE_WARNING = ("saeval cache: ", "the run goes on without the cache")

ROUND_TWO: tuple[BadInputCase, ...] = (
    # --- YAML that would exhaust a parser (each refused at once, located) -----------------------
    _C("yaml-control-character", _raw(("device: cpu", "device: cpu\x07")),
       expect=("control character U+0007", "remove it"), key=None, line_of="device:", max_seconds=2),
    _C("yaml-nul-byte", _raw(("device: cpu", "device: c\x00pu")),
       expect=("control character U+0000",), key=None, line_of="device:", max_seconds=2),
    _C("yaml-nested-5000-deep", _append("defaults:\n  gates: " + "[" * 5000 + "]" * 5000 + "\n"),
       expect=("nested more than 32 levels deep", "flatten"), key=None, line_of="[[[[", max_seconds=3),
    _C("yaml-nested-block-200-deep", _append("defaults:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200))),
       expect=("nested more than 32 levels deep",), key=None, line_of="k31:", max_seconds=3),
    _C("yaml-nested-through-aliases", _append("x-deep: [&d0 " + "[" * 20 + "1" + "]" * 20 + ", &d1 " + "[" * 20 + "*d0"
                                              + "]" * 20 + "]\n"),
       expect=("nested more than 32 levels deep through aliases",), key=None, line_of="x-deep", max_seconds=2),
    _C("yaml-integer-5000-digits", edit(("context_size: 8", "context_size: " + "9" * 5000)),
       expect=("an integer of 5000 digits is too large",), key=None, line_of="context_size:", max_seconds=2),
    _C("yaml-alias-bomb", edit(("  n_sparsity_batches: 1\n", f"  n_sparsity_batches: 1\n  exclude_special_tokens: {_bomb(9)}\n")),
       expect=("expands to more than 100,000 values through anchors and aliases",), key=None,
       line_of="exclude_special_tokens", max_seconds=2),
    _C("yaml-alias-bomb-at-top", text("lol: " + _bomb(12) + "\n"),
       expect=("expands to more than 100,000 values",), key=None, line_of="lol:", max_seconds=2),
    _C("yaml-merge-key-bomb", _append(_merge_bomb()),
       expect=("expands to more than 100,000 values",), key=None, line_of="m4:", max_seconds=2),
    _C("yaml-alias-contains-itself", _append("x-loop: &loop [1, *loop]\n"),
       expect=("an alias refers to the block that contains it",), key=None, line_of="x-loop", max_seconds=2),
    _C("yaml-wide-value-short-message", edit(("  n_sparsity_batches: 1\n",
                                             f"  n_sparsity_batches: 1\n  exclude_special_tokens: {_bomb(5)}\n")),
       expect=("exclude_special_tokens must be true, false or a list of token ids", "characters)"),
       key="data.exclude_special_tokens", line_of="exclude_special_tokens", max_seconds=3, schema=True),
    _C("yaml-file-too-large", _append("# " + "padding " * 40000 + "\n"),
       expect=("larger than 256 KiB",), key=None, line_of=None, max_seconds=2),
    # --- numbers and names the file system or torch cannot hold ---------------------------------
    _C("exclude-special-beyond-int64", edit(("  n_sparsity_batches: 1\n",
                                            "  n_sparsity_batches: 1\n  exclude_special_tokens: [99999999999999999999999]\n")),
       expect=("token ids are at most 9223372036854775807",), key="data.exclude_special_tokens",
       line_of="exclude_special_tokens", schema=True),
    _C("count-beyond-int32", edit(("batch_size_prompts: 2", "batch_size_prompts: 99999999999")),
       expect=("batch_size_prompts must be at most 2147483647",), key="data.batch_size_prompts",
       line_of="batch_size_prompts", schema=True),
    _C("sae-id-300-characters", edit(("id: sae0", "id: " + "a" * 300)),
       expect=("is 300 characters long; ids hold at most 100",), key="saes[0].id", line_of="- id:", schema=True,
       max_seconds=2),
    _C("sae-id-with-backslash", edit(("id: sae0", 'id: "a\\\\b"')),
       expect=("may only contain letters, digits",), key="saes[0].id", line_of="- id:", schema=True),
    _C("model-path-name-too-long", lambda f, a: write_suite(f, base_suite(a, model=f"models/{LONG}")),
       expect=("a name of 300 bytes", "at most 255"), key="model.path", line_of="  path:", schema=True),
    _C("tokens-path-name-too-long", lambda f, a: write_suite(f, base_suite(a, tokens=f"{LONG}.npy")),
       expect=("a name of 304 bytes",), key="data.tokens", line_of="tokens:", schema=True),
    _C("sae-path-name-too-long", lambda f, a: write_suite(f, base_suite(a, sae=f"saes/{LONG}")),
       expect=("a name of 300 bytes",), key="saes[0].path", line_of="    path:", schema=True),
    _C("tokens-path-with-nul", lambda f, a: write_suite(f, base_suite(a, tokens='"t\\0.npy"')),
       expect=("NUL character",), key="data.tokens", line_of="tokens:", schema=True),
    # --- folders that would run their own code ---------------------------------------------------
    _C("model-folder-with-custom-code", _remote_model(),
       expect=("needs its own Python code to load", "custom_model.CustomModel", "it was not run",
               "model.trust_remote_code: true"), key="model.path", line_of="  path:", marker="PWNED"),
    _C("tokenizer-with-custom-code", _remote_model(in_tokenizer=True),
       expect=("needs its own Python code to load", "tokenizer_config.json"), key="model.path", line_of="  path:",
       marker="PWNED"),
    _C("trust-remote-code-not-a-bool", edit(("  device: cpu\n", "  device: cpu\n  trust_remote_code: yes please\n")),
       expect=("trust_remote_code must be true or false",), key="model.trust_remote_code", line_of="trust_remote_code",
       schema=True),
    _C("dataset-folder-with-script", _dataset_script,
       expect=("holds a loading script (corpus.py)", "never run"), key="data.dataset", line_of="dataset:",
       loads_model=True, marker="PWNED"),
    # --- weights and tokens of the wrong kind ------------------------------------------------------
    _C("sae-weights-int8", broken_sae(_weights("int8")),
       expect=("not floating point", "W_enc is int8", "float32"), key="saes[0].path", line_of="path: sae"),
    _C("sae-weights-dtype-not-cfg", broken_sae(_weights("bfloat16")),
       expect=("cfg.json says dtype float32", "weights", "bfloat16", '"dtype": "bfloat16"'), key="saes[0].path",
       line_of="path: sae"),
    _C("sae-lens-warning-then-error", _wide_sae_with_model_kwargs,
       expect=("d_in is 48",), key="saes[0].d_in", line_of="- id: sae0", loads_model=True),
    _C("tokens-uint64-huge-npy", tokens_file("t.npy", _unsigned("npy")),
       expect=("holds the id 18446744073709551611, too large for int64",), key="data.tokens", line_of="tokens:",
       loads_model=True),
    _C("tokens-uint64-huge-pt", tokens_file("t.pt", _unsigned("pt")),
       expect=("too large for int64",), key="data.tokens", line_of="tokens:", loads_model=True),
    _C("tokens-uint64-huge-safetensors", tokens_file("t.safetensors", _unsigned("safetensors")),
       expect=("too large for int64",), key="data.tokens", line_of="tokens:", loads_model=True),
    _C("tokens-text-file-linked", tokens_file("t.npy", _text_linked_as_tokens),
       expect=("is not a .npy file", "a link to", "notes.txt"), key="data.tokens", line_of="tokens:", loads_model=True),
    _C("tokens-npy-as-folder", lambda f, a: ((f / "t.npy").mkdir(), write_suite(f, base_suite(a, tokens="t.npy")))[1],
       expect=("is not a file",), key="data.tokens", line_of="tokens:"),
    _C("dataset-jsonl-malformed", _bad_jsonl(streaming=False),
       expect=("could not be loaded", "eval.jsonl", "JSON parse error"), key="data.dataset", line_of="dataset:",
       loads_model=True),
    _C("dataset-jsonl-malformed-streamed", _bad_jsonl(streaming=True),
       expect=("could not be read after", "eval.jsonl", "JSON parse error"), key="data.dataset", line_of="dataset:",
       loads_model=True),
    # --- output names: ids that used to collide --------------------------------------------------
    _C("ids-that-collided-as-file-names", _colliding_ids, outcome="ok", pytest=False,
       expect=("4 passed",), key=None, line_of=None, args=("--output-dir", "{folder}/out"), check=_three_files),
    # --- places that cannot be written (the command's flags and environment) ----------------------
    _C("output-dir-name-too-long", _with(), outcome="io", pytest=False, args=("--output-dir", "{folder}/" + LONG),
       expect=("cannot write", "a file name is too long"), key="--output-dir", line_of=None, max_seconds=2),
    _C("output-dir-under-a-file", _with("blocker"), outcome="io", pytest=False, args=("--output-dir", "{folder}/blocker/out"),
       expect=("cannot write", "blocker"), key="--output-dir", line_of=None, max_seconds=2),
    _C("output-dir-read-only", _with(), outcome="io", pytest=False, fault="readonly",
       args=("--output-dir", "{folder}/fault/out"),
       expect=("cannot write", "read-only"), key="--output-dir", line_of=None),
    _C("output-file-is-a-folder", _with(folders=("out/all_eval_results.json",),
                                        files=(("out/all_eval_results.csv", "previous output\n"),)),
       outcome="io", pytest=False, args=("--output-dir", "{folder}/out"),
       expect=("cannot write", "all_eval_results.json: a folder is in the way", "previous outputs were left"),
       key=None, line_of=None, check=_old_outputs_kept("all_eval_results.csv")),
    _C("summary-md-is-a-folder", _with(folders=("out/summary.md",), files=(("out/all_eval_results.json", "previous output\n"),)),
       outcome="io", pytest=False, args=("--output-dir", "{folder}/out"),
       expect=("cannot write", "summary.md: a folder is in the way"), key=None, line_of=None,
       check=_old_outputs_kept("all_eval_results.json")),
    _C("report-path-is-a-folder", _with(folders=("report.html",)), outcome="io", pytest=False,
       args=("--report", "{folder}/report.html"),
       expect=("cannot write", "it is a folder"), key="--report", line_of=None, max_seconds=2),
    _C("report-under-a-file", _with("blocker"), outcome="io", pytest=False, args=("--report", "{folder}/blocker/r.html"),
       expect=("cannot write", "blocker"), key="--report", line_of=None, max_seconds=2),
    _C("report-in-read-only-folder", _with(), outcome="io", pytest=False, fault="readonly",
       args=("--report", "{folder}/fault/r.html"), expect=("cannot write", "read-only"), key="--report", line_of=None),
    _C("step-summary-is-a-folder", _with(folders=("summary",)), outcome="io", pytest=False,
       env=(("GITHUB_STEP_SUMMARY", "{folder}/summary"),),
       expect=("cannot write $GITHUB_STEP_SUMMARY", "a folder is in the way"), key=None, line_of=None),
    _C("step-summary-on-a-full-disk", _with(), outcome="io", pytest=False, fault="full",
       env=(("GITHUB_STEP_SUMMARY", "{folder}/fault/summary.md"),),
       expect=("cannot write $GITHUB_STEP_SUMMARY", "No space left on device"), key=None, line_of=None),
    _C("outputs-on-a-full-disk", _with(), outcome="io", pytest=False, fault="full",
       args=("--output-dir", "{folder}/fault/out"),
       expect=("cannot write", "No space left on device", "previous outputs were left"), key=None, line_of=None),
    # --- caches that cannot be used: one warning, and the run goes on ----------------------------
    _C("cache-dir-under-a-file", _with("blocker"), outcome="warning", pytest=False, args=("--cache-dir", "{folder}/blocker/c"),
       expect=(*_CACHE_WARNING, "a file is in the way"), key=None, line_of=None, check=_cache_left_alone),
    _C("cache-env-points-at-a-file", _with("blocker"), outcome="warning", pytest=False,
       env=(("SAEVAL_CACHE_DIR", "{folder}/blocker"),),
       expect=_CACHE_WARNING, key=None, line_of=None),
    _C("cache-dir-name-too-long", _with(), outcome="warning", pytest=False, args=("--cache-dir", "{folder}/" + LONG),
       expect=(*_CACHE_WARNING, "File name too long"), key=None, line_of=None),
    _C("cache-dir-read-only", _with(), outcome="warning", pytest=False, fault="readonly",
       args=("--cache-dir", "{folder}/fault/cache"), expect=(*_CACHE_WARNING, "cannot write"), key=None, line_of=None),
    _C("cache-dir-full", _with(), outcome="warning", pytest=False, fault="full",
       args=("--cache-dir", "{folder}/fault/cache"), expect=(*_CACHE_WARNING, "No space left on device"),
       key=None, line_of=None, check=_cache_left_alone),
    _C("cache-entry-is-a-folder", _warmed_cache(_entry_as_folder), outcome="warning", pytest=False,
       args=("--cache-dir", "{folder}/cache"), expect=(*_CACHE_WARNING, "a folder is in the way"), key=None,
       line_of=None),
    _C("cache-shard-is-a-file", _warmed_cache(_shard_as_file), outcome="warning", pytest=False,
       args=("--cache-dir", "{folder}/cache"), expect=(*_CACHE_WARNING, "a file is in the way"), key=None, line_of=None),
)
"""The round-two cases."""
