"""The bad-input matrix's kit: the shared tiny assets, the case type and the building blocks of cases.

Every case is run through ``saeval run`` by ``tests/integration/test_bad_input.py`` and, when it is
about what a suite file or the files it names hold, through pytest by ``test_bad_input_pytest.py``.
A case is data:

- ``build(folder, assets)`` writes the broken input into an empty ``folder`` (the shared tiny
  model, SAEs and tokens of :class:`Assets` are referenced by absolute path or copied and broken)
  and returns the suite file to run;
- ``outcome``: ``error`` (exit 2, one located line ``file:line: key: message. Fix: ...``), ``io``
  (exit 2, one line ``cannot write X: reason``), ``warning`` (the run goes on: exit 0 and exactly one
  ``saeval: warning:`` line) or ``ok`` (exit 0: a correct result, which ``check`` asserts);
- ``expect``: substrings the message must contain; ``key``: the key path (or flag) it must name;
- ``at`` / ``line_of``: the file the message must point at (``"suite"`` for the suite file, else a
  file name inside ``folder``) and a piece of text whose first line in that file is the line the
  message must give;
- ``marker``: a file name inside ``folder`` that must not exist afterwards (code that must not run);
- ``args`` / ``env``: the command's extra arguments and environment (``{folder}`` is the case folder);
- ``fault``: ``{folder}/fault`` is made read-only or full for the run (:mod:`.faults`);
- ``max_seconds``: bounded input: the run must end within this time;
- ``schema``: the suite JSON Schema (``saeval schema``) rejects the case as well.

Use :func:`materialise` to build a case and :func:`expected_location` to get the ``file:line``
prefix its message must carry. :func:`build_assets` makes the shared assets once per test session.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "CONTEXT", "N_POSITIONS", "N_ROWS", "Assets", "BadInputCase", "base_suite", "broken_model", "broken_sae",
    "build_assets", "copy_model", "copy_sae", "edit", "expected_location", "materialise", "save_npy",
    "shared_assets", "text", "tokens_file", "truncate", "write_suite",
]

CONTEXT = 8
N_ROWS = 8
N_POSITIONS = 32


@dataclass(frozen=True)
class Assets:
    """Tiny, valid inputs the broken cases start from (built once per test session)."""

    root: Path
    """The folder holding everything below."""
    model: Path
    """A tiny GPT-2 (2 layers, d_model 32, n_positions 32) and its tokenizer, saved with save_pretrained."""
    sae: Path
    """An SAE Lens standard SAE on ``blocks.0.hook_resid_pre`` (d_in 32, d_sae 64)."""
    sae_wide: Path
    """An SAE with d_in 48 on ``blocks.0.hook_resid_pre`` (the hook gives 32)."""
    sae_deep: Path
    """An SAE on ``blocks.7.hook_resid_pre`` (the model has 2 blocks)."""
    sae_topk: Path
    """A valid top-k SAE on ``blocks.1.hook_resid_pre`` (d_in 32, d_sae 64)."""
    tokens: Path
    """``int64 [8, 8]`` token ids inside the vocabulary, BOS first."""
    vocab: int
    """The model's vocabulary size."""


def build_assets(root: Path) -> Assets:
    """Write the shared tiny model, SAEs and tokens under ``root`` (a few seconds)."""
    import numpy as np

    from tests.helpers import save_tiny_gpt2, save_tiny_sae

    root.mkdir(parents=True, exist_ok=True)
    model = save_tiny_gpt2(root / "model", n_layer=2, n_positions=N_POSITIONS)
    vocab = int(json.loads((model / "config.json").read_text())["vocab_size"])
    sae = save_tiny_sae(root / "sae", seed=0, hook_name="blocks.0.hook_resid_pre", d_in=32, d_sae=64)
    sae_wide = save_tiny_sae(root / "sae_wide", seed=1, hook_name="blocks.0.hook_resid_pre", d_in=48, d_sae=64)
    sae_deep = save_tiny_sae(root / "sae_deep", seed=2, hook_name="blocks.7.hook_resid_pre", d_in=32, d_sae=64)
    sae_topk = save_tiny_sae(root / "sae_topk", seed=3, architecture="topk", hook_name="blocks.1.hook_resid_pre",
                             d_in=32, d_sae=64)
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, vocab, size=(N_ROWS, CONTEXT)).astype(np.int64)
    tokens[:, 0] = 0
    np.save(root / "tokens.npy", tokens)
    return Assets(root=root, model=model, sae=sae, sae_wide=sae_wide, sae_deep=sae_deep, sae_topk=sae_topk,
                  tokens=root / "tokens.npy", vocab=vocab)


_SHARED: dict[str, Assets] = {}


def shared_assets(tmp_path_factory: Any) -> Assets:
    """The assets, built once per process (test modules share them through this module).

    ``tmp_path_factory`` is pytest's session fixture; the assets live in its temporary folder.
    Treat them as read-only: cases that break a file copy it first.
    """
    if "assets" not in _SHARED:
        _SHARED["assets"] = build_assets(tmp_path_factory.mktemp("saeval-assets"))
    return _SHARED["assets"]


@dataclass(frozen=True)
class BadInputCase:
    """One broken input and what its error message must say."""

    name: str
    """Short id, used as the test id."""
    build: Callable[[Path, Assets], Path] = field(repr=False)
    """Writes the broken input into an empty folder; returns the suite file."""
    expect: tuple[str, ...]
    """Substrings the message must contain (besides location, key and ``Fix:``)."""
    key: str | None
    """The key path the message must name, e.g. ``data.n_sparsity_batches``; ``None`` only for
    problems of the whole file (YAML syntax, an empty or missing file), which have no key."""
    line_of: str | None
    """Text whose first line in the ``at`` file is the line the message must give (``None``: no line)."""
    at: str = "suite"
    """``"suite"`` (the suite file) or a file name inside the case folder the message points at."""
    loads_model: bool = False
    """True when the error is only found after loading the model (slower); every other case is found
    before any model is loaded (``saeval run``'s tests make loading the model fail for them)."""
    marker: str | None = None
    """A file name inside the folder that must not exist afterwards (code that must not have run)."""
    needs_no_cuda: bool = False
    """The case only applies on a machine without CUDA."""
    outcome: Literal["error", "io", "warning", "ok"] = "error"
    """What the run must end in (see the module docstring)."""
    args: tuple[str, ...] = ()
    """Extra ``saeval run`` arguments; ``{folder}`` is the case folder."""
    env: tuple[tuple[str, str], ...] = ()
    """Environment variables set for the run; ``{folder}`` is the case folder."""
    fault: Literal["readonly", "full"] | None = None
    """``{folder}/fault`` is read-only or full during the run."""
    check: Callable[[Path], None] | None = field(default=None, repr=False)
    """Asserts more afterwards, given the case folder (e.g. that the previous outputs are intact)."""
    max_seconds: float | None = None
    """The run must end within this many seconds."""
    schema: bool = False
    """The suite JSON Schema rejects the case too."""
    pytest: bool = True
    """The case applies through pytest too (False: it is about the command's flags or environment)."""

    def __post_init__(self) -> None:
        if not self.expect:
            raise ValueError(f"case {self.name}: expect is required")
        if self.outcome != "error" and self.pytest and (self.args or self.env or self.fault):
            raise ValueError(f"case {self.name}: a case with flags, environment or faults is the command's only")

    def command_args(self, folder: Path) -> list[str]:
        """``args`` with the case folder filled in."""
        return [a.format(folder=folder) for a in self.args]

    def environment(self, folder: Path) -> dict[str, str]:
        """``env`` with the case folder filled in."""
        return {k: v.format(folder=folder) for k, v in self.env}


def materialise(case: BadInputCase, folder: Path, assets: Assets) -> Path:
    """Build ``case`` into ``folder`` (created when missing); return the suite file to run."""
    folder.mkdir(parents=True, exist_ok=True)
    return case.build(folder, assets)


def expected_location(case: BadInputCase, suite: Path) -> tuple[Path, int | None]:
    """The file the case's message must name and the line (``None`` when the case checks no line)."""
    target = suite if case.at == "suite" else suite.parent / case.at
    if case.line_of is None:
        return target, None
    for number, line in enumerate(target.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if case.line_of in line:
            return target, number
    raise AssertionError(f"case {case.name}: {case.line_of!r} is not in {target}")


# ---------------------------------------------------------------------------------------------
# building blocks


def base_suite(a: Assets, *, model: str | None = None, tokens: str | None = None, sae: str | None = None) -> str:
    return textwrap.dedent(
        f"""\
        model:
          path: {model or a.model}
          device: cpu
        data:
          tokens: {tokens or a.tokens}
          context_size: {CONTEXT}
          batch_size_prompts: 2
          n_reconstruction_batches: 1
          n_sparsity_batches: 1
        saes:
          - id: sae0
            path: {sae or a.sae}
            gates:
              l0: ">= 0"
        """
    )


def write_suite(folder: Path, content: str, name: str = "suite.yaml") -> Path:
    """Write ``content`` to ``folder/name`` and return the path."""
    path = folder / name
    path.write_text(content, encoding="utf-8")
    return path


def edit(*pairs: tuple[str, str]) -> Callable[[Path, Assets], Path]:
    """A builder: the base suite with each ``(old, new)`` text replaced once."""

    def build(folder: Path, a: Assets) -> Path:
        text = base_suite(a)
        for old, new in pairs:
            assert old in text, f"{old!r} is not in the base suite"
            text = text.replace(old, new, 1)
        return write_suite(folder, text)

    return build


def text(content: str) -> Callable[[Path, Assets], Path]:
    """A builder: exactly ``content`` as the suite file."""

    def build(folder: Path, a: Assets) -> Path:
        return write_suite(folder, content)

    return build


def tokens_file(name: str, write: Callable[[Path, Assets], None], *pairs: tuple[str, str]) -> Callable[[Path, Assets], Path]:
    """Write ``folder/name`` with ``write`` and point the suite's ``data.tokens`` at it (plus edits)."""

    def build(folder: Path, a: Assets) -> Path:
        write(folder / name, a)
        text = base_suite(a, tokens=name)
        for old, new in pairs:
            assert old in text, f"{old!r} is not in the base suite"
            text = text.replace(old, new, 1)
        return write_suite(folder, text)

    return build


def copy_model(folder: Path, a: Assets) -> Path:
    target = folder / "model"
    shutil.copytree(a.model, target)
    return target


def copy_sae(folder: Path, a: Assets) -> Path:
    target = folder / "sae"
    shutil.copytree(a.sae, target)
    return target


def broken_model(change: Callable[[Path], None]) -> Callable[[Path, Assets], Path]:
    def build(folder: Path, a: Assets) -> Path:
        change(copy_model(folder, a))
        return write_suite(folder, base_suite(a, model="model"))

    return build


def broken_sae(change: Callable[[Path], None]) -> Callable[[Path, Assets], Path]:
    def build(folder: Path, a: Assets) -> Path:
        change(copy_sae(folder, a))
        return write_suite(folder, base_suite(a, sae="sae"))

    return build


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def save_npy(array_fn: Callable[[Assets], object]) -> Callable[[Path, Assets], None]:
    def write(path: Path, a: Assets) -> None:
        import numpy as np

        np.save(path, array_fn(a))

    return write
