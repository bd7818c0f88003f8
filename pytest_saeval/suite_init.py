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
    hold exactly the written gates. Relative paths in the suite are copied as written: an ``output`` in
    another folder, where they would name other files (or a factory module would not be found), is refused
    before anything is written.
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
    _refuse_moved_paths(text, source, target)
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


def _refuse_moved_paths(text: str, source: Path, target: Path) -> None:
    """Refuse writing ``source``'s text (relative paths as written) to ``target`` in another folder when a
    relative path in it names a file or folder next to ``source``: from ``target`` it would name another."""
    import yaml

    here, there = source.absolute().parent, target.absolute().parent
    if _same_file(here, there):
        return
    data = yaml.safe_load(text)  # valid already: the suite was loaded and evaluated
    moved = [key for key, value in _path_values(data) if _names_local(value, key, here)]
    if moved:
        raise SuiteError(
            f"{', '.join(moved)} {'is a path' if len(moved) == 1 else 'are paths'} relative to the suite's folder "
            f"{here}; written to {there} {'it' if len(moved) == 1 else 'they'} would name other files",
            key="--output", file=str(source),
            fix=f"write the proposed suite next to the suite (--output {here / target.name}), or make those paths "
                "absolute in the suite first")


def _path_values(data: object) -> list[tuple[str, str]]:
    """``(key, value)`` of every string in a suite that names a file, folder or factory module."""
    if not isinstance(data, dict):
        return []
    found: list[tuple[str, object]] = [("baseline", data.get("baseline"))]
    model, section = data.get("model"), data.get("data")
    if isinstance(model, dict):
        found += [("model.path", model.get("path")), ("model.factory", model.get("factory"))]
    if isinstance(section, dict):
        found.append(("data.tokens", section.get("tokens")))
        dataset = section.get("dataset")
        if isinstance(dataset, dict):
            found.append(("data.dataset.path", dataset.get("path")))
            files = dataset.get("data_files")
            for split, names in (files.items() if isinstance(files, dict) else ()):
                for name in names if isinstance(names, list) else [names]:
                    found.append((f"data.dataset.data_files.{split}", name))
    for i, sae in enumerate(data.get("saes") or []):
        if isinstance(sae, dict):
            found += [(f"saes[{i}].path", sae.get("path")), (f"saes[{i}].factory", sae.get("factory"))]
    return [(key, value) for key, value in found if isinstance(value, str) and value.strip()]


def _names_local(value: str, key: str, folder: Path) -> bool:
    """Whether ``value`` (at ``key``) is a relative path naming something in ``folder`` (a baseline file
    may not exist yet: any relative baseline does); for a factory, its module file or package there."""
    if key.endswith(".factory"):
        module = value.partition(":")[0].strip()
        candidates = [module] if module.endswith(".py") else [module.replace(".", "/") + ".py",
                                                             module.split(".")[0]]
        return any((folder / c).exists() for c in candidates)
    path = Path(value).expanduser()
    return not path.is_absolute() and (key == "baseline" or (folder / path).exists())


def init_suite(suite_path: str | os.PathLike[str], *, output: str | os.PathLike[str] | None = None,
               session: Session | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
               policy: MarginPolicy | None = None, update_gates: bool = False) -> tuple[Path, list[SAEProposal]]:
    """``saeval init``: evaluate the suite's SAEs once (gates and baseline ignored; through the session's
    caches when it has them), propose gates, write them.

    Returns the path written and the proposals.
    """
    suite = load_suite(suite_path)
    if output is not None:  # before the evaluation: a file that would point elsewhere is refused at once
        _refuse_moved_paths(Path(suite_path).read_text(encoding="utf-8"), Path(suite_path), Path(output))
    bare = replace(suite, saes=tuple(replace(s, gates=()) for s in suite.saes), baseline=None, default_gates=())
    runs = (session or Session()).run([bare])
    runs = [replace(r, suite=suite) for r in runs]
    proposals = propose_gates(runs, metrics=metrics, policy=policy)
    return write_proposed_suite(suite_path, proposals, output, update_gates=update_gates), proposals


def new_suite(output: str | os.PathLike[str], *, model: Path, saes: Sequence[Path], tokens: Path) -> Path:
    """Write a new suite file for a model folder, SAE folders and a token file (every key written out,
    with its default and a comment; no gates yet) and return its path. An existing file is kept. Paths inside
    the project (the nearest folder above the file with pyproject.toml, pytest.ini, ...; else the current
    folder when the file is in it, else the file's folder) are written relative to the file, others absolute.
    A run folder among ``saes`` (checkpoint folders below it, e.g. a sparsify run's ``layers.6``) gives one
    entry per checkpoint."""
    from pytest_saeval.sources.formats import checkpoints_in
    from pytest_saeval.sources.tokens import inspect_token_file

    target = Path(output)
    if target.exists():
        raise SuiteError("the suite file exists already", file=str(target),
                         fix="give --output a new file, or run `saeval init` on that suite to propose its gates")
    info = inspect_token_file(tokens)
    rows, width = info.shape if info is not None else (None, None)
    base = target.absolute().parent
    root = project_root(base) or (Path.cwd() if base.is_relative_to(Path.cwd()) else base)
    folders = [found for folder in saes for found in (checkpoints_in(Path(folder)) or [Path(folder)])]
    text = new_suite_text(base, root=root, model=model, saes=folders, tokens=tokens, rows=rows, width=width)
    atomic_write_text(target, text)
    load_suite(target)  # what was written is a valid suite
    return target
