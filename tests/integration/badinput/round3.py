"""Round three of the bad-input matrix: what a training repo's own code and a broken checkpoint hand a run.

A factory's SAE whose ``encode`` gives top-k values or whose ``decode`` raises, an SAE of a diverged run (NaN
weights, which used to pass ``l0`` and ``frac_alive`` gates), a suite ``hook_name`` with a typo, token files of
unusual tensor layouts, with two token keys or two arrays, safetensors headers that are JSON but not a header or run
past the end of the file, an SAE config with d_sae 0 or a FIFO in its place, gates no value can meet, special-token
ids outside the vocabulary, baseline files built to exhaust a reader, and a FIFO where the report or ``summary.md``
is to be written. Each ends as one located error, or one ``cannot write X: reason`` line that leaves the FIFO a
FIFO.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from tests.integration.badinput.kit import (
    Assets,
    BadInputCase,
    base_suite,
    broken_sae,
    edit,
    tokens_file,
    write_suite,
)

__all__ = ["ROUND_THREE"]

_SAE_FACTORIES = '''\
from sae_lens import SAE

FOLDER = {folder!r}


def topk_values():
    """encode gives only the top-k values, as a hand-written adapter of a top-k trainer might."""
    sae = SAE.load_from_disk(FOLDER)
    dense = sae.encode
    sae.encode = lambda x: dense(x).topk(4, dim=-1).values
    return sae


def decode_raises():
    """decode has a bug of its own."""
    sae = SAE.load_from_disk(FOLDER)

    def decode(feature_acts):
        raise KeyError("W_dec_folded")

    sae.decode = decode
    return sae
'''


def _sae_factory(function: str) -> Callable[[Path, Assets], Path]:
    """The base suite with its SAE from ``<unique module>:function`` (the shared SAE, changed by the factory)."""

    def build(folder: Path, a: Assets) -> Path:
        module = f"saeval_round3_{folder.name}".replace("-", "_").replace(".", "_")
        (folder / f"{module}.py").write_text(_SAE_FACTORIES.format(folder=str(a.sae)), encoding="utf-8")
        return write_suite(folder, base_suite(a).replace(f"    path: {a.sae}", f"    factory: {module}:{function}", 1))

    return build


def _hook_name(hook: str) -> Callable[[Path, Assets], Path]:
    def build(folder: Path, a: Assets) -> Path:
        text = base_suite(a).replace(f"    path: {a.sae}\n", f"    path: {a.sae}\n    hook_name: {hook}\n", 1)
        return write_suite(folder, text)

    return build


def _nan_weights(sae: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(sae / "sae_weights.safetensors")
    save_file({k: torch.full_like(v, float("nan")) for k, v in tensors.items()}, sae / "sae_weights.safetensors")


def _header_only(header: dict[str, object]) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw


def _sparse_tokens(path: Path, a: Assets) -> None:
    import numpy as np
    import torch

    torch.save(torch.from_numpy(np.load(a.tokens)).to_sparse(), path)


def _two_token_keys(path: Path, a: Assets) -> None:
    import numpy as np
    import torch

    tokens = torch.from_numpy(np.load(a.tokens))
    torch.save({"tokens": tokens, "input_ids": tokens.flip(0)}, path)


def _appended_npy(path: Path, a: Assets) -> None:
    import numpy as np

    tokens = np.load(a.tokens)
    with open(path, "wb") as fh:  # two arrays in one file: numpy.load would read the first and say nothing
        np.save(fh, tokens)
        np.save(fh, tokens[::-1])


def _baseline(write: Callable[[Path], None]) -> Callable[[Path, Assets], Path]:
    """The base suite with ``baseline: base.json`` and a baseline-relative gate; ``write`` makes the file."""

    def build(folder: Path, a: Assets) -> Path:
        write(folder / "base.json")
        text = base_suite(a).replace("saes:\n", "baseline: base.json\nsaes:\n", 1)
        return write_suite(folder, text.replace('      l0: ">= 0"', '      l0: ">= baseline - 1"', 1))

    return build


def _deep_json(path: Path) -> None:
    path.write_text('{"saes": {"sae0": {"l0": ' + "[" * 100_000 + "]" * 100_000 + "}}}")


def _huge_int(path: Path) -> None:
    path.write_text('{"saes": {"sae0": {"l0": ' + "9" * 5000 + "}}}")


def _endless(path: Path) -> None:
    os.symlink("/dev/zero", path)


def _cfg(**change: object) -> Callable[[Path], None]:
    def apply(sae: Path) -> None:
        cfg = json.loads((sae / "cfg.json").read_text())
        (sae / "cfg.json").write_text(json.dumps({**cfg, **change}))

    return apply


def _cfg_fifo(sae: Path) -> None:
    (sae / "cfg.json").unlink()
    os.mkfifo(sae / "cfg.json")


def _fifo_at(name: str, previous: str | None = None) -> Callable[[Path, Assets], Path]:
    """The base suite, and a FIFO where the run is to write ``name`` (with an earlier output ``previous`` next
    to it): a rename over it would replace it with a regular file (``--report /dev/null`` run as root)."""

    def build(folder: Path, a: Assets) -> Path:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(folder / name)
        if previous is not None:
            (folder / previous).write_text("previous output\n")
        return write_suite(folder, base_suite(a))

    return build


def _still_a_fifo(name: str, previous: str | None = None) -> Callable[[Path], None]:
    def check(folder: Path) -> None:
        assert stat.S_ISFIFO(os.stat(folder / name).st_mode), f"{name} was replaced"
        if previous is not None:
            assert (folder / previous).read_text() == "previous output\n", previous

    return check


def _header_past_the_end(sae: Path) -> None:
    """Keep the weights' 8-byte length and half the header it gives (a copy cut off inside the header)."""
    weights = sae / "sae_weights.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[:8 + int.from_bytes(raw[:8], "little") // 2])


_C = BadInputCase

ROUND_THREE: tuple[BadInputCase, ...] = (
    # --- a training repo's own SAE code ------------------------------------------------------------
    _C("sae-factory-encode-topk-values", _sae_factory("topk_values"),
       expect=("encode() of an input of shape", "returned a tensor of shape", "not a tensor of shape",
               "dense feature activations"), key="saes[0].encode", line_of="- id: sae0", loads_model=True),
    _C("sae-factory-decode-raises", _sae_factory("decode_raises"),
       expect=("decode() of an input of shape", "raised KeyError: 'W_dec_folded'", "factory protocol"),
       key="saes[0].decode", line_of="- id: sae0", loads_model=True),
    _C("sae-hook-name-typo", _hook_name("blocks.0.hook_resid_prex"),
       expect=("has no hook 'blocks.0.hook_resid_prex'", "did you mean 'blocks.0.hook_resid_pre'",
               "set hook_name to a hook this model has"), key="saes[0].hook_name", line_of="hook_name:",
       loads_model=True),
    # --- broken checkpoints and token files --------------------------------------------------------
    _C("sae-weights-nan", broken_sae(_nan_weights),
       expect=("weights hold NaN or infinite values", "W_dec 2,048 of 2,048", "diverged"), key="saes[0]",
       line_of="- id: sae0", loads_model=True),
    _C("sae-weights-header-entry-not-an-object",
       broken_sae(lambda s: (s / "sae_weights.safetensors").write_bytes(_header_only({"W_enc": 1}))),
       expect=("corrupt or truncated", "the entry of tensor 'W_enc' is 1"), key="saes[0].path", line_of="path: sae"),
    _C("tokens-safetensors-header-entry-not-an-object",
       tokens_file("t.safetensors", lambda p, a: p.write_bytes(_header_only({"tokens": 1}))),
       expect=("t.safetensors", "the entry of tensor 'tokens' is 1"), key="data.tokens", line_of="tokens:"),
    _C("tokens-safetensors-negative-shape",
       tokens_file("t.safetensors", lambda p, a: p.write_bytes(
           _header_only({"tokens": {"dtype": "I64", "shape": [-8, 8], "data_offsets": [0, 0]}}))),
       expect=("has shape [-8, 8], not a list of whole numbers >= 0",), key="data.tokens", line_of="tokens:"),
    _C("tokens-pt-sparse", tokens_file("t.pt", _sparse_tokens),
       expect=("holds a sparse tensor (torch.sparse_coo)", "to_dense()"), key="data.tokens", line_of="tokens:",
       loads_model=True),
    _C("tokens-pt-two-token-keys", tokens_file("t.pt", _two_token_keys),
       expect=("holds tensors under both", "keep only one"), key="data.tokens", line_of="tokens:", loads_model=True),
    _C("tokens-npy-second-array-appended", tokens_file("t.npy", _appended_npy),
       expect=("t.npy' has ", "bytes after the [", "more than one array in one file"), key="data.tokens",
       line_of="tokens:"),
    _C("sae-cfg-d-sae-zero", broken_sae(_cfg(d_sae=0)),  # SAE Lens warned of zero-element tensors, then failed
       expect=("cfg.json': d_sae must be a whole number >= 1, got 0", 'set "d_sae": 64 in cfg.json'),
       key="saes[0].path", line_of="path: sae"),
    _C("sae-cfg-fifo", broken_sae(_cfg_fifo),  # was "has no cfg.json"; reading it would block
       expect=("cfg.json' is not a regular file (a FIFO)",), key="saes[0].path", line_of="path: sae", max_seconds=20),
    _C("sae-weights-header-past-the-end", broken_sae(_header_past_the_end),  # was a UnicodeDecodeError
       expect=("sae_weights.safetensors' is corrupt or truncated", "its header is longer than the file", "cut off"),
       key="saes[0].path", line_of="path: sae"),
    # --- a FIFO where a file is to be written: refused, never replaced ------------------------------
    _C("report-path-is-a-fifo", _fifo_at("report.html"), outcome="io", pytest=False,
       args=("--report", "{folder}/report.html"), expect=("cannot write", "it is a FIFO, not a regular file"),
       key="--report", line_of=None, max_seconds=2, check=_still_a_fifo("report.html")),
    _C("summary-md-is-a-fifo", _fifo_at("out/summary.md", previous="out/all_eval_results.json"), outcome="io",
       pytest=False, args=("--output-dir", "{folder}/out"),
       expect=("cannot write", "summary.md: not a regular file (a FIFO)", "previous outputs were left"), key=None,
       line_of=None, check=_still_a_fifo("out/summary.md", previous="out/all_eval_results.json")),
    # --- gates and settings no run can satisfy -----------------------------------------------------
    _C("gate-range-no-value-meets", edit(('l0: ">= 0"', 'l0: [">= 40", "<= 20"]')),
       expect=("gate on l0 can never pass: no value is >= 40 and <= 20", "swap or correct the bounds"),
       key="saes[0].gates.l0", line_of="l0:"),
    _C("exclude-special-token-beyond-vocabulary",
       edit(("  n_sparsity_batches: 1\n", "  n_sparsity_batches: 1\n  exclude_special_tokens: [0, 5000]\n")),
       expect=("exclude_special_tokens lists 5000, outside the model's vocabulary", "would exclude nothing"),
       key="data.exclude_special_tokens", line_of="exclude_special_tokens:", loads_model=True),
    # --- baseline files built to exhaust a reader --------------------------------------------------
    _C("baseline-nested-100000-deep", _baseline(_deep_json),
       expect=("base.json", "the JSON is nested more than 100 levels deep"), key="baseline", at="base.json", line_of=None, max_seconds=20),
    _C("baseline-5000-digit-integer", _baseline(_huge_int),
       expect=("base.json", "an integer with too many digits"), key="baseline", at="base.json", line_of=None),
    _C("baseline-endless-file", _baseline(_endless),
       expect=("base.json", "not a regular file"), key="baseline", line_of="baseline:", max_seconds=20),
)
