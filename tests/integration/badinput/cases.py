"""The bad-input matrix: :data:`CASES` is every case (round one, issue 9, round two in :mod:`.hostile`, round
three in :mod:`.round3`, round four in :mod:`.round4_sources` and :mod:`.round4_inputs`).

See :mod:`.kit` for what a case is and how it is run.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable
from pathlib import Path

from tests.integration.badinput.hostile import ROUND_TWO
from tests.integration.badinput.kit import (
    N_ROWS,
    Assets,
    BadInputCase,
    base_suite,
    broken_model,
    broken_sae,
    build_assets,
    edit,
    expected_location,
    materialise,
    save_npy,
    shared_assets,
    text,
    tokens_file,
    truncate,
    write_suite,
)
from tests.integration.badinput.round3 import ROUND_THREE
from tests.integration.badinput.round4_inputs import ROUND_FOUR_INPUTS
from tests.integration.badinput.round4_sources import ROUND_FOUR_SOURCES

__all__ = ["CASES", "ROUND_FOUR", "ROUND_ONE", "ROUND_THREE", "ROUND_TWO", "Assets", "BadInputCase", "build_assets", "expected_location",
           "materialise", "shared_assets"]

_base, _write, _edit, _text, _tokens_file = base_suite, write_suite, edit, text, tokens_file
_broken_model, _broken_sae, _truncate, _save_npy = broken_model, broken_sae, truncate, save_npy


def _np_tokens(kind: str) -> Callable[[Assets], object]:
    def make(a: Assets) -> object:
        import numpy as np

        base = np.load(a.tokens)
        if kind == "float":
            return base.astype(np.float32)
        if kind == "1d":
            return base.reshape(-1)
        if kind == "oov":
            out = base.copy()
            out[1, 3] = a.vocab + 10
            return out
        if kind == "negative":
            out = base.copy()
            out[2, 2] = -1
            return out
        if kind == "short":
            return base[:, :4]
        if kind == "wide":
            return np.tile(base, (1, 5))  # [8, 40]: longer than the model's 32 positions
        raise ValueError(kind)

    return make


def _pickle_with_code(path: Path, a: Assets) -> None:
    """A .pt file whose unpickling would create ``marker`` next to it (a stand-in for any code)."""
    import torch

    marker = path.parent / "PWNED"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return (Path.touch, (marker,))

    torch.save({"tokens": Payload()}, path)


_FACTORIES = textwrap.dedent(
    """\
    def model_raises():
        raise RuntimeError("the checkpoint server is down")


    def not_a_model():
        return 42


    def not_an_sae():
        return "an SAE"


    value = 3
    """
)


def _factory(target: str, spec_suffix: str) -> Callable[[Path, Assets], Path]:
    """A suite whose model or SAE (``target``) comes from ``<unique module>:<spec_suffix>``."""

    def build(folder: Path, a: Assets) -> Path:
        module = f"saeval_bad_factories_{folder.name}".replace("-", "_").replace(".", "_")
        (folder / f"{module}.py").write_text(_FACTORIES, encoding="utf-8")
        spec = spec_suffix.replace("MODULE", module)
        text = _base(a)
        if target == "model":
            text = text.replace(f"  path: {a.model}", f"  factory: {spec}", 1)
        else:
            text = text.replace(f"    path: {a.sae}", f"    factory: {spec}", 1)
        return _write(folder, text)

    return build


def _baseline_case(baseline_text: str | None) -> Callable[[Path, Assets], Path]:
    """The base suite with ``baseline: base.json`` and a baseline-relative gate; the file holds ``baseline_text``."""

    def build(folder: Path, a: Assets) -> Path:
        if baseline_text is not None:
            (folder / "base.json").write_text(baseline_text, encoding="utf-8")
        text = _base(a).replace("saes:\n", "baseline: base.json\nsaes:\n", 1)
        text = text.replace('      l0: ">= 0"', '      l0: ">= baseline - 1"', 1)
        return _write(folder, text)

    return build


# ---------------------------------------------------------------------------------------------
# the cases

_C = BadInputCase

ROUND_ONE: tuple[BadInputCase, ...] = (
    # --- the suite file as a whole --------------------------------------------------------------
    _C("yaml-syntax", _text("model:\n  path: m\ndata: [unclosed\n  tokens: t.npy\nsaes:\n"),
       expect=("invalid YAML", "fix the YAML syntax"), key=None, line_of="tokens: t.npy"),
    _C("yaml-unquoted-gate", _edit(('l0: ">= 0"', "l0: >= 0")),
       expect=("invalid YAML", "quote gate expressions"), key=None, line_of="l0: >= 0"),
    _C("yaml-python-tag", lambda f, a: _write(f, _base(a).replace(
        "saes:\n", "extra: !!python/object/apply:os.system ['touch PWNED']\nsaes:\n", 1)),
       expect=("tags are not allowed", "!!python/object/apply:os.system"), key=None,
       line_of="extra:", marker="PWNED"),
    _C("empty-file", _text(""), expect=("the suite file is empty", "add the model:"), key=None, line_of=None),
    _C("not-a-mapping", _text("- model\n- data\n"), expect=("must be a mapping", "got a list"),
       key=None, line_of="- model"),
    _C("duplicate-yaml-key", _edit(("  device: cpu\n", "  device: cpu\n  device: auto\n")),
       expect=("duplicate key 'device'", "keep one entry per key"), key=None, line_of="device: auto"),
    # --- unknown keys and metrics ---------------------------------------------------------------
    _C("unknown-top-key", _edit(("model:", "modle:")),
       expect=("unknown key 'modle'", "did you mean 'model'"), key="modle", line_of="modle:"),
    _C("unknown-data-key", _edit(("  batch_size_prompts: 2", "  batch_size: 2")),
       expect=("unknown key 'batch_size' in data", "did you mean 'batch_size_prompts'"),
       key="data.batch_size", line_of="batch_size:"),
    _C("unknown-sae-key", _edit(("    gates:", "    gate:")),
       expect=("unknown key 'gate'", "did you mean 'gates'"), key="saes[0].gate", line_of="gate:"),
    _C("unknown-metric", _edit(('l0: ">= 0"', 'explained_varience: ">= 0.5"')),
       expect=("unknown metric 'explained_varience'", "did you mean 'explained_variance'"),
       key="saes[0].gates.explained_varience", line_of="explained_varience"),
    _C("per-feature-metric", _edit(('l0: ">= 0"', 'feature_density: ">= 0"')),
       expect=("per-feature metric", "cannot be gated"), key="saes[0].gates.feature_density",
       line_of="feature_density"),
    _C("missing-section", lambda f, a: _write(f, _base(a).split("saes:")[0]),
       expect=("missing required section 'saes'",), key="saes", line_of="model:"),
    # --- wrong types ----------------------------------------------------------------------------
    _C("context-size-string", _edit(("context_size: 8", 'context_size: "eight"')),
       expect=("context_size must be a whole number", "'eight'"), key="data.context_size",
       line_of="context_size:"),
    _C("batch-size-float", _edit(("batch_size_prompts: 2", "batch_size_prompts: 1.5")),
       expect=("batch_size_prompts must be a whole number", "1.5"), key="data.batch_size_prompts",
       line_of="batch_size_prompts:"),
    _C("model-not-mapping", lambda f, a: _write(f, _base(a).replace(
        f"model:\n  path: {a.model}\n  device: cpu\n", f"model: {a.model}\n", 1)),
       expect=("model must be a mapping", "got a string"), key="model", line_of="model:"),
    _C("saes-not-list", _edit(("  - id: sae0\n", "    id: sae0\n")),
       expect=("saes must be a list",), key="saes", line_of="saes:"),
    _C("exclude-special-string", _edit(("  n_sparsity_batches: 1\n",
                                        "  n_sparsity_batches: 1\n  exclude_special_tokens: sometimes\n")),
       expect=("exclude_special_tokens must be true, false or a list",), key="data.exclude_special_tokens",
       line_of="exclude_special_tokens"),
    _C("dtype-unknown", _edit(("  device: cpu\n", "  device: cpu\n  dtype: float8\n")),
       expect=("unknown dtype 'float8'",), key="model.dtype", line_of="dtype:"),
    _C("device-bad-name", _edit(("device: cpu", "device: gpu")),
       expect=("device must be auto, cpu, cuda or cuda:N", "'gpu'"), key="model.device", line_of="device:"),
    _C("two-model-sources", _edit(("  device: cpu\n", "  device: cpu\n  name: gpt2\n")),
       expect=("has both 'name' and 'path'", "keep exactly one"), key="model.path", line_of="  path:"),
    # --- duplicate SAE ids ----------------------------------------------------------------------
    _C("duplicate-sae-id", lambda f, a: _write(f, _base(a) + f"  - id: sae0  # again\n    path: {a.sae}\n"),
       expect=("duplicate SAE id 'sae0'", "unique id"), key="saes[1].id", line_of="# again"),
    # --- gate syntax ----------------------------------------------------------------------------
    _C("gate-wrong-operator", _edit(('l0: ">= 0"', 'l0: "=> 0"')),
       expect=("cannot parse gate expression '=> 0'", "the operator must be one of"), key="saes[0].gates.l0",
       line_of="l0:"),
    _C("gate-bare-number", _edit(('l0: ">= 0"', "l0: 10")),
       expect=("bare number 10", '">= 10"'), key="saes[0].gates.l0", line_of="l0:"),
    _C("gate-nan-threshold", _edit(('l0: ">= 0"', 'l0: ">= nan"')),
       expect=("must be a finite number",), key="saes[0].gates.l0", line_of="l0:"),
    _C("gate-list-item", _edit(('l0: ">= 0"', 'l0: [">= 0", "<= ten"]')),
       expect=("cannot parse gate expression '<= ten'",), key="saes[0].gates.l0[1]", line_of="l0:"),
    _C("gate-baseline-without-file", _edit(('l0: ">= 0"', 'l0: ">= baseline"')),
       expect=("compares with the baseline, but the suite has no baseline: file", "add `baseline:"),
       key="saes[0].gates.l0", line_of="l0:"),
    # --- batch counts ---------------------------------------------------------------------------
    _C("batches-zero", _edit(("n_reconstruction_batches: 1", "n_reconstruction_batches: 0")),
       expect=("n_reconstruction_batches must be >= 1, got 0",), key="data.n_reconstruction_batches",
       line_of="n_reconstruction_batches"),
    _C("batches-negative", _edit(("n_sparsity_batches: 1", "n_sparsity_batches: -3")),
       expect=("n_sparsity_batches must be >= 1, got -3",), key="data.n_sparsity_batches",
       line_of="n_sparsity_batches"),
    _C("batches-more-than-data", _edit(("n_sparsity_batches: 1", "n_sparsity_batches: 10")),
       expect=(f"{N_ROWS} token rows", "20 are needed"), key="data.tokens", line_of="tokens:"),
    # --- baselines ------------------------------------------------------------------------------
    _C("baseline-missing", _baseline_case(None),
       expect=("baseline file", "not found", "--update-baseline"), key="baseline", line_of="baseline:"),
    _C("baseline-corrupt-json", _baseline_case('{"saes": {"sae0": {"l0": 3,}}}\n'),
       expect=("invalid JSON",), key="baseline", at="base.json", line_of='"saes"'),
    _C("baseline-nan", _baseline_case('{\n  "saes": {\n    "sae0": {\n      "l0": NaN\n    }\n  }\n}\n'),
       expect=("NaN and infinity cannot be a baseline",), key="saes.sae0.l0", at="base.json", line_of='"l0"'),
    _C("baseline-no-value", _baseline_case('{"saes": {"sae0": {"l1": 3.0}}}\n'),
       expect=("has no value of l0 for SAE 'sae0'", "--update-baseline"), key="saes[0].gates.l0",
       line_of="l0:", loads_model=True),
    # --- the model --------------------------------------------------------------------------------
    _C("model-folder-missing", lambda f, a: _write(f, _base(a, model="no-such-model")),
       expect=("does not exist",), key="model.path", line_of="  path:"),
    _C("model-folder-empty", lambda f, a: (f.joinpath("model").mkdir(), _write(f, _base(a, model="model")))[1],
       expect=("has no config.json", "save_pretrained"), key="model.path", line_of="  path:"),
    _C("model-config-corrupt", _broken_model(lambda m: (m / "config.json").write_text("{not json")),
       expect=("is not valid JSON",), key="model.path", line_of="  path:"),
    _C("model-weights-truncated", _broken_model(lambda m: _truncate(m / "model.safetensors")),
       expect=("could not be loaded", "re-save the model"), key="model.path", line_of="  path:"),
    _C("model-weights-empty", _broken_model(lambda m: (m / "model.safetensors").write_bytes(b"")),
       expect=("could not be loaded",), key="model.path", line_of="  path:"),
    _C("model-factory-no-module", _factory("model", "no_such_module_xyz:load"),
       expect=("module 'no_such_module_xyz' not found",), key="model.factory", line_of="factory:"),
    _C("model-factory-no-function", _factory("model", "MODULE:lod_model"),
       expect=("has no attribute 'lod_model'",), key="model.factory", line_of="factory:"),
    _C("model-factory-not-callable", _factory("model", "MODULE:value"),
       expect=("not a function",), key="model.factory", line_of="factory:"),
    _C("model-factory-raises", _factory("model", "MODULE:model_raises"),
       expect=("raised RuntimeError: the checkpoint server is down",), key="model.factory", line_of="factory:",
       loads_model=True),
    _C("model-factory-wrong-type", _factory("model", "MODULE:not_a_model"),
       expect=("returned a builtins.int", "not a TransformerLens model"), key="model.factory", line_of="factory:",
       loads_model=True),
    _C("device-cuda-without-cuda", _edit(("device: cpu", "device: cuda")),
       expect=("CUDA is not available",), key="model.device", line_of="device:", needs_no_cuda=True),
    # --- SAEs -----------------------------------------------------------------------------------
    _C("sae-folder-missing", lambda f, a: _write(f, _base(a, sae="no-such-sae")),
       expect=("SAE folder", "does not exist"), key="saes[0].path", line_of="no-such-sae"),
    _C("sae-weights-truncated", _broken_sae(lambda s: _truncate(s / "sae_weights.safetensors")),
       expect=("corrupt or truncated",), key="saes[0].path", line_of="path: sae"),
    _C("sae-weights-empty", _broken_sae(lambda s: (s / "sae_weights.safetensors").write_bytes(b"")),
       expect=("is empty",), key="saes[0].path", line_of="path: sae"),
    _C("sae-cfg-corrupt", _broken_sae(lambda s: (s / "cfg.json").write_text("[1, 2")),
       expect=("is not valid JSON",), key="saes[0].path", line_of="path: sae"),
    _C("sae-factory-wrong-type", _factory("sae", "MODULE:not_an_sae"),
       expect=("is not a usable SAE",), key="saes[0].factory", line_of="factory: ", loads_model=True),
    _C("sae-d-in-mismatch", lambda f, a: _write(f, _base(a, sae=str(a.sae_wide))),
       expect=("d_in is 48", "size 32"), key="saes[0].d_in", line_of="- id: sae0", loads_model=True),
    _C("sae-hook-missing", lambda f, a: _write(f, _base(a, sae=str(a.sae_deep))),
       expect=("has no hook 'blocks.7.hook_resid_pre'", "(it has 2 layers, blocks.0 to blocks.1)",
               "hook_name comes from the SAE's ", "sae_deep/cfg.json"), key="saes[0].hook_name", line_of="- id: sae0",
       loads_model=True),
    # --- tokens ---------------------------------------------------------------------------------
    _C("tokens-missing", lambda f, a: _write(f, _base(a, tokens="no-such-tokens.npy")),
       expect=("token file", "does not exist"), key="data.tokens", line_of="tokens:"),
    _C("tokens-empty-file", _tokens_file("t.npy", lambda p, a: p.write_bytes(b"")),
       expect=("is empty",), key="data.tokens", line_of="tokens:"),
    _C("tokens-corrupt", _tokens_file("t.npy", lambda p, a: p.write_bytes(b"\x93NUMPY garbage" * 3)),
       expect=("could not be read",), key="data.tokens", line_of="tokens:"),
    _C("tokens-float", _tokens_file("t.npy", _save_npy(_np_tokens("float"))),
       expect=("float32 values", "must be integers"), key="data.tokens", line_of="tokens:"),
    _C("tokens-1d", _tokens_file("t.npy", _save_npy(_np_tokens("1d"))),
       expect=("must be 2-D",), key="data.tokens", line_of="tokens:"),
    _C("tokens-out-of-vocab", _tokens_file("t.npy", _save_npy(_np_tokens("oov"))),
       expect=("contain id 170", "vocabulary has 160 tokens"), key="data.tokens", line_of="tokens:", loads_model=True),
    _C("tokens-negative", _tokens_file("t.npy", _save_npy(_np_tokens("negative"))),
       expect=("negative id -1",), key="data.tokens", line_of="tokens:", loads_model=True),
    _C("tokens-rows-too-short", _tokens_file("t.npy", _save_npy(_np_tokens("short")),
                                             ("context_size: 8", "context_size: 6")),
       expect=("rows of 4 tokens, fewer than context_size 6",), key="data.tokens", line_of="tokens:"),
    _C("context-longer-than-model", _tokens_file("t.npy", _save_npy(_np_tokens("wide")),
                                                 ("context_size: 8", "context_size: 40")),
       expect=("exceeds the model's n_ctx 32",), key="data.context_size", line_of="context_size:", loads_model=True),
    _C("tokens-pickle-with-code", _tokens_file("t.pt", _pickle_with_code),
       expect=("t.pt", "refused", "nothing in it was run"), key="data.tokens", line_of="tokens:", loads_model=True, marker="PWNED"),
)

_SCHEMA_REJECTS = {
    "unknown-top-key", "unknown-data-key", "unknown-sae-key", "unknown-metric", "per-feature-metric", "missing-section",
    "context-size-string", "batch-size-float", "model-not-mapping", "saes-not-list", "exclude-special-string",
    "dtype-unknown", "device-bad-name", "two-model-sources", "gate-wrong-operator", "gate-bare-number",
    "gate-nan-threshold", "gate-list-item", "batches-zero", "batches-negative",
}
"""Round-one cases about what a suite file says that a JSON Schema can say too."""
ROUND_ONE = tuple(dataclasses.replace(c, schema=c.name in _SCHEMA_REJECTS) for c in ROUND_ONE)

ROUND_FOUR: tuple[BadInputCase, ...] = ROUND_FOUR_SOURCES + ROUND_FOUR_INPUTS
CASES: tuple[BadInputCase, ...] = ROUND_ONE + ROUND_TWO + ROUND_THREE + ROUND_FOUR
"""Every case of the matrix."""
