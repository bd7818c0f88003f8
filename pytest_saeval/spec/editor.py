"""Textual edits of a suite file: gates written into SAE entries' ``gates:`` blocks (pure Python).

Positions come from PyYAML's node marks: only the edited gates' values change or are added, each with
a ``# ...`` comment; every other key, comment and blank line stays byte for byte.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from pytest_saeval.errors import SuiteError
from pytest_saeval.settings import DEVICE_CHOICES, DTYPES

__all__ = ["MEASURED", "GateText", "edit_suite_text", "new_suite_text"]

MEASURED = "# measured"
"""How a comment this editor wrote starts (such a comment is replaced on the next edit)."""


@dataclass(frozen=True)
class GateText:
    """One gate as it is written into a suite file."""

    metric: str
    """The gated metric (the key)."""
    yaml_value: str
    """The value as YAML text, e.g. ``">= 0.78"`` or ``[">= 30", "<= 39"]``."""
    comment: str
    """The comment written after it, without ``#``."""


def _content_end(node: yaml.Node) -> int:
    """Index just after the last character of ``node``'s content (block collections end at their last item)."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return node.end_mark.index
    if isinstance(node, yaml.MappingNode):
        return _content_end(node.value[-1][1]) if node.value else node.end_mark.index
    if isinstance(node, yaml.SequenceNode):
        return _content_end(node.value[-1]) if node.value else node.end_mark.index
    return node.end_mark.index  # pragma: no cover - composed nodes are scalars, mappings or sequences


def _line_end(text: str, index: int) -> int:
    """Index just after the newline that ends the line containing ``index`` (or the text's end)."""
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


class _Editor:
    """Collects (start, end, replacement) edits on the suite text and applies them back to front."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.edits: list[tuple[int, int, str]] = []

    def error(self, message: str, line: int | None, fix: str) -> SuiteError:
        return SuiteError(message, fix=fix, file=self.file, line=line)

    def insert_lines(self, after_index: int, lines: Sequence[str]) -> None:
        at = _line_end(self.text, after_index)
        prefix = "" if at == 0 or self.text[at - 1] == "\n" else self.newline
        self.edits.append((at, at, prefix + "".join(line + self.newline for line in lines)))

    def entry(self, indent: int, gate: GateText) -> str:
        return f"{' ' * indent}{gate.metric}: {gate.yaml_value}  # {gate.comment}"

    def replace_value(self, key: yaml.Node, value: yaml.Node, gate: GateText) -> None:
        end = _content_end(value)
        eol = _line_end(self.text, end)
        rest = self.text[end:eol].rstrip("\r\n")
        comment = f"  # {gate.comment}"
        if rest.strip().startswith(MEASURED):
            self.edits.append((key.end_mark.index, end + len(rest), f": {gate.yaml_value}{comment}"))
        elif rest.strip():
            self.edits.append((key.end_mark.index, end, f": {gate.yaml_value}"))
        else:
            self.edits.append((key.end_mark.index, end + len(rest), f": {gate.yaml_value}{comment}"))

    def apply(self) -> str:
        out = self.text
        for start, end, new in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            out = out[:start] + new + out[end:]
        return out


def _pairs(node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    return {str(k.value): (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _edit_entry(ed: _Editor, item: yaml.MappingNode, gates: Sequence[GateText]) -> None:
    line = item.start_mark.line + 1
    if item.flow_style:
        raise ed.error("cannot add gates to an SAE entry written in flow style ({id: ..., ...})", line,
                       "write the entry in block style (one key per line), or add the gates by hand")
    pairs = _pairs(item)
    sae_indent = item.value[0][0].start_mark.column
    start, stop = item.start_mark.index, _content_end(item)
    if "gates" not in pairs:
        ed.insert_lines(stop, [f"{' ' * sae_indent}gates:", *(ed.entry(sae_indent + 2, g) for g in gates)])
        return
    key, value = pairs["gates"]
    if not start <= value.start_mark.index <= stop:
        raise ed.error("cannot edit a gates block that is a YAML alias", key.start_mark.line + 1,
                       "write the SAE's gates out in place, or add the proposed gates by hand")
    if isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null":
        if value.end_mark.index > value.start_mark.index:  # gates: ~ / gates: null
            ed.edits.append((key.end_mark.index, value.end_mark.index, ":"))
        ed.insert_lines(key.end_mark.index, [ed.entry(sae_indent + 2, g) for g in gates])
        return
    if not isinstance(value, yaml.MappingNode):
        raise ed.error("gates must be a mapping", key.start_mark.line + 1, 'write gates: with lines like explained_variance: ">= 0.8"')
    existing = _pairs(value)
    if value.flow_style:  # gates: {} or gates: {a: ">= 1"}: rewrite as a block, keeping the other entries' text
        indent = sae_indent + 2
        proposed = {g.metric for g in gates}
        kept = [
            f"{' ' * indent}{ed.text[k.start_mark.index:k.end_mark.index]}: {ed.text[v.start_mark.index:v.end_mark.index]}"
            for name, (k, v) in existing.items() if name not in proposed
        ]
        ed.edits.append((key.end_mark.index, value.end_mark.index, ":"))
        ed.insert_lines(value.end_mark.index, [*kept, *(ed.entry(indent, g) for g in gates)])
        return
    indent = value.value[0][0].start_mark.column
    new_lines = []
    for gate in gates:
        if gate.metric in existing:
            ed.replace_value(*existing[gate.metric], gate)
        else:
            new_lines.append(ed.entry(indent, gate))
    if new_lines:
        ed.insert_lines(_content_end(value), new_lines)


def edit_suite_text(text: str, gates_by_id: Mapping[str, Sequence[GateText]], *, file: str = "<suite>") -> str:
    """The suite text with ``gates_by_id`` written into each SAE entry's ``gates:`` block (entries
    by their ``id``; a gate on a metric the entry already gates replaces its value)."""
    by_id = {sae_id: gates for sae_id, gates in gates_by_id.items() if gates}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise SuiteError(f"invalid YAML: {e}", fix="fix the suite file first (saeval run reports where)", file=file) from e
    saes = _pairs(root).get("saes") if isinstance(root, yaml.MappingNode) else None
    if saes is None or not isinstance(saes[1], yaml.SequenceNode):
        raise SuiteError("the suite file has no saes: list", fix="add the saes: section", file=file, key="saes")
    ed = _Editor(text, file)
    seen: set[str] = set()
    for item in saes[1].value:
        if not isinstance(item, yaml.MappingNode):
            continue
        id_pair = _pairs(item).get("id")
        sae_id = str(id_pair[1].value) if id_pair is not None else None
        if sae_id in by_id and sae_id not in seen:
            seen.add(sae_id)
            _edit_entry(ed, item, by_id[sae_id])
    missing = sorted(set(by_id) - seen)
    if missing:
        raise SuiteError(f"no SAE entry with id {missing[0]!r} in the suite file", key="saes",
                         fix="propose gates from a run of this same suite file", file=file)
    return ed.apply()


def _written(path: Path, base: Path, root: Path) -> str:
    """``path`` as a suite file in ``base`` writes it, with forward slashes: relative to ``base`` when it lies
    in the project ``root`` (it travels with the repository), else absolute (a ``../../..`` climbing out of
    the project would only hold on this machine's layout anyway)."""
    absolute = Path(os.path.abspath(path))
    if absolute.is_relative_to(Path(os.path.abspath(root))):
        return Path(os.path.relpath(absolute, base)).as_posix()
    return absolute.as_posix()


def _sae_ids(saes: Sequence[Path]) -> list[str]:
    """One id per SAE folder: its name with characters an id cannot hold replaced, made unique."""
    ids: list[str] = []
    for folder in saes:
        base = re.sub(r"[^A-Za-z0-9_.\-]+", "-", Path(folder).absolute().name).strip("-.") or "sae"
        candidate, n = base, 2
        while candidate in ids:
            candidate, n = f"{base}-{n}", n + 1
        ids.append(candidate)
    return ids


def _keyed(rows: Sequence[tuple[int, str, str]]) -> str:
    """``key: value  # comment`` lines (indent, ``key: value``, comment), the comments in one column."""
    width = max(indent + len(text) for indent, text, _ in rows) + 2
    return "".join((f"{' ' * indent}{text}".ljust(width) + (f"# {note}" if note else "")).rstrip() + "\n"
                   for indent, text, note in rows)


def new_suite_text(base: Path, *, root: Path, model: Path, saes: Sequence[Path], tokens: Path, rows: int | None,
                   width: int | None) -> str:
    """A complete suite file for a model folder, SAE folders and a token file, every key written out with
    its default and a comment; batches fitted to the token file's ``rows`` x ``width`` when known. Paths in the
    project ``root`` are written relative to ``base``, the folder the file will be in; others absolute."""
    batch = min(16, rows) if rows else 16
    n_batches = max(1, min(10, rows // batch)) if rows else 10
    sae_lines = "".join(f"  - id: {sae_id}\n    path: {_written(folder, base, root)}\n    gates: {{}}\n"
                        for sae_id, folder in zip(_sae_ids(saes), saes))
    head = _keyed([
        (0, "model:", ""),
        (2, f"path: {_written(model, base, root)}", "a local Hugging Face model folder (or name: / factory:)"),
        (2, "device: auto", f"{DEVICE_CHOICES} (auto: cuda when available)"),
        (2, f"dtype: {DTYPES[0]}", " | ".join(DTYPES)),
        (0, "data:", ""),
        (2, f"tokens: {_written(tokens, base, root)}", "int array [n_sequences, context_size]: .npy, .pt or .safetensors"),
        (2, f"context_size: {width or 128}", "tokens per row (longer rows are cut)"),
        (2, f"batch_size_prompts: {batch}", "rows per batch"),
        (2, f"n_reconstruction_batches: {n_batches}", "batches for the CE / KL metrics"),
        (2, f"n_sparsity_batches: {n_batches}", "batches for the sparsity / variance / feature metrics"),
        (2, "exclude_special_tokens: true", "true (the tokenizer's BOS, EOS, PAD...) | false | [token ids]"),
        (0, "gate_mode: point", "point: the value decides | interval: the whole 95% interval must miss"),
        (0, "# baseline: baselines/new.json", "the values `baseline` in a gate refers to (--update-baseline)"),
    ])
    return ("# A suite written by `saeval init`: review the proposed gates, then commit this file.\n"
            "# Every key is written out with its default; the README's \"Suite files\" section describes them.\n"
            + head + "saes:\n" + sae_lines
            + "defaults:\n  gates: {}  # merged into every SAE's gates; an SAE's own entry wins per metric\n")
