"""``saeval init``: evaluate a suite once, propose gates (:mod:`pytest_saeval.propose`) and write them into
the suite file, or start a new suite for a model, SAEs and a token file.

The suite file is edited textually (:mod:`pytest_saeval.spec.editor`): only the written gates' values
change or are added, each with a ``# measured ...`` comment; every other key, comment and blank line
stays byte for byte. Gates the suite already has stay as they are unless ``update_gates``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from pytest_saeval.errors import SuiteError
from pytest_saeval.fileio import atomic_write_text
from pytest_saeval.propose import DEFAULT_METRICS, SAEProposal, propose_gates, to_write
from pytest_saeval.run.session import Session
from pytest_saeval.settings import MarginPolicy
from pytest_saeval.sources.common import project_root
from pytest_saeval.spec.editor import GateText, edit_suite_text, new_suite_text
from pytest_saeval.spec.loader import load_suite

__all__ = ["init_suite", "new_suite", "write_proposed_suite"]


def _same_file(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def write_proposed_suite(suite_path: str | os.PathLike[str], proposals: Iterable[SAEProposal],
                         output: str | os.PathLike[str] | None = None, *, update_gates: bool = False) -> Path:
    """Write the proposals for ``suite_path`` into that file (or into ``output``) and return the path written.

    New gates are added; gates the suite has are replaced only with ``update_gates``. Only those lines
    change or are added; everything else stays as it was. The result is loaded again and checked to
    hold exactly the written gates. Relative paths in the suite are copied as written, so an
    ``output`` in another folder resolves them from there.
    """
    source = Path(suite_path)
    mine = [p for p in proposals if _same_file(p.suite_path, source)]
    try:
        text = source.read_bytes().decode("utf-8")
    except OSError as e:
        raise SuiteError(f"cannot read the suite file: {e.strerror or e}", fix="check the path", file=str(source)) from e
    except UnicodeDecodeError as e:
        raise SuiteError("the file is not UTF-8 text", fix="save it as UTF-8", file=str(source)) from e
    written_gates = {p.sae_id: to_write(p, update_gates=update_gates) for p in mine}
    edits = {sae_id: [GateText(g.metric, g.yaml_value, g.comment) for g in gates] for sae_id, gates in written_gates.items()}
    new_text = edit_suite_text(text, edits, file=str(source))
    target = Path(output) if output is not None else source
    atomic_write_text(target, new_text)
    suite = load_suite(target)
    for p in mine:
        spec = suite.sae(p.sae_id)
        for g in written_gates[p.sae_id]:
            gate = spec.gate(g.metric)
            written = tuple(f"{b.op} {b.text}" for b in gate.bounds) if gate is not None else ()
            if written != g.expressions:  # pragma: no cover - a safety net for unusual YAML layouts
                raise SuiteError(
                    f"the edited file does not hold the proposed gate {g.metric}: {', '.join(g.expressions)}",
                    fix="add the proposed gates by hand (see saeval init's summary)", file=str(target),
                    line=gate.line if gate is not None else spec.line, key=f"saes[{p.sae_id}].gates.{g.metric}")
    return target


def init_suite(suite_path: str | os.PathLike[str], *, output: str | os.PathLike[str] | None = None,
               session: Session | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
               policy: MarginPolicy | None = None, update_gates: bool = False) -> tuple[Path, list[SAEProposal]]:
    """``saeval init``: evaluate the suite's SAEs once (gates and baseline ignored; through the session's
    caches when it has them), propose gates, write them.

    Returns the path written and the proposals.
    """
    suite = load_suite(suite_path)
    bare = replace(suite, saes=tuple(replace(s, gates=()) for s in suite.saes), baseline=None, default_gates=())
    runs = (session or Session()).run([bare])
    runs = [replace(r, suite=suite) for r in runs]
    proposals = propose_gates(runs, metrics=metrics, policy=policy)
    return write_proposed_suite(suite_path, proposals, output, update_gates=update_gates), proposals


def new_suite(output: str | os.PathLike[str], *, model: Path, saes: Sequence[Path], tokens: Path) -> Path:
    """Write a new suite file for a model folder, SAE folders and a token file (every key written out,
    with its default and a comment; no gates yet) and return its path. An existing file is kept. Paths inside
    the project (the nearest folder above the file with pyproject.toml, pytest.ini, ...; else the current
    folder when the file is in it, else the file's folder) are written relative to the file, others absolute."""
    from pytest_saeval.sources.tokens import inspect_token_file

    target = Path(output)
    if target.exists():
        raise SuiteError("the suite file exists already", file=str(target),
                         fix="give --output a new file, or run `saeval init` on that suite to propose its gates")
    info = inspect_token_file(tokens)
    rows, width = info.shape if info is not None else (None, None)
    base = target.absolute().parent
    root = project_root(base) or (Path.cwd() if base.is_relative_to(Path.cwd()) else base)
    text = new_suite_text(base, root=root, model=model, saes=saes, tokens=tokens, rows=rows, width=width)
    atomic_write_text(target, text)
    load_suite(target)  # what was written is a valid suite
    return target
