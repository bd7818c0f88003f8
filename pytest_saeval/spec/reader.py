"""Reading a suite file: YAML with safe-load semantics, line numbers on every mapping and list,
duplicate keys refused, tags refused. Every problem is one :class:`~pytest_saeval.errors.SuiteError`
located at ``file:line``. Pure Python.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NoReturn

import yaml

from pytest_saeval.errors import SuiteError

__all__ = ["YamlMap", "YamlSeq", "key_line", "key_lines", "read_yaml"]


class YamlMap(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int = 1
    key_lines: dict[Any, int]


class YamlSeq(list[Any]):
    """A YAML sequence that remembers its own line and the line of each item."""

    line: int = 1
    item_lines: list[int]


class _YamlProblem(Exception):
    """Raised while constructing YAML; becomes a located SuiteError."""

    def __init__(self, message: str, line: int, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.fix = fix


class _SuiteLoader(yaml.SafeLoader):
    """``yaml.safe_load`` semantics, plus line numbers, duplicate-key errors and no tags."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_map(loader: _SuiteLoader, node: yaml.MappingNode) -> YamlMap:
    out = YamlMap()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise _YamlProblem("a mapping key must be a plain value, not a list or mapping", line, "use a plain name as the key") from None
        if key in seen:
            raise _YamlProblem(f"duplicate key {key!r} (first on line {seen[key]})", line, "keep one entry per key")
        seen[key] = line
    loader.flatten_mapping(node)  # `<<: *anchor` merges come first, explicit keys then win
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _SuiteLoader, node: yaml.SequenceNode) -> YamlSeq:
    out = YamlSeq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


def _construct_text(loader: _SuiteLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


def _refuse_tag(loader: _SuiteLoader, node: yaml.Node) -> NoReturn:
    tag = str(node.tag)
    if tag.startswith("tag:yaml.org,2002:"):
        tag = "!!" + tag[len("tag:yaml.org,2002:"):]
    raise _YamlProblem(
        f"tags are not allowed: '{tag}'",
        node.start_mark.line + 1,
        "remove the tag; a suite file holds only plain mappings, lists, strings, numbers and booleans",
    )


_SuiteLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_SuiteLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_SuiteLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_text)  # dates stay text
_SuiteLoader.add_constructor("tag:yaml.org,2002:value", _construct_text)
for _tag in ("binary", "set", "omap", "pairs"):
    _SuiteLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)
_SuiteLoader.add_constructor(None, _refuse_tag)
del _tag

_UNQUOTED_GATE_RE = re.compile(r"(?:^|[:\-\[,])\s*[<>]")


def read_yaml(path: Path, file: str) -> object:
    """Parse the suite file; every problem becomes a SuiteError located at file:line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SuiteError("suite file not found", fix="check the path (relative paths start at the current folder)", file=file) from None
    except IsADirectoryError:
        raise SuiteError("is a folder, not a suite file", fix="pass a .yaml file", file=file) from None
    except OSError as e:
        raise SuiteError(f"cannot read the suite file: {e.strerror or e}", fix="check the file's permissions", file=file) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SuiteError("the file is not UTF-8 text", fix="save it as UTF-8", file=file, line=line) from e
    loader = _SuiteLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SuiteError(
                "the suite file is empty",
                fix="add the model:, data: and saes: sections (see the suite file format in the README)",
                file=file,
                line=1,
            )
        return loader.construct_document(node)
    except _YamlProblem as e:
        raise SuiteError(e.message, fix=e.fix, file=file, line=e.line) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = e.problem or "syntax error"
        message = f"invalid YAML: {problem}" + (f" ({e.context})" if e.context else "")
        source_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        if "another document" in problem:
            fix = "keep one YAML document per suite file: remove the '---' line or split the file"
        elif _UNQUOTED_GATE_RE.search(source_line):
            fix = 'YAML reads a leading > or < as special: quote gate expressions, e.g. l0: ">= 10"'
        else:
            fix = "fix the YAML syntax on that line (indentation, colons, quotes)"
        raise SuiteError(message, fix=fix, file=file, line=line) from e
    except yaml.YAMLError as e:  # pragma: no cover - reader errors without a mark
        raise SuiteError(f"invalid YAML: {e}", fix="fix the YAML syntax", file=file, line=1) from e
    finally:
        loader.dispose()


def key_line(mapping: object, key: object, default: int | None) -> int | None:
    """The line of ``key`` in a mapping read by :func:`read_yaml` (``default`` when unknown)."""
    return getattr(mapping, "key_lines", {}).get(key, default)


def key_lines(mapping: object) -> tuple[tuple[str, int], ...]:
    """``(key, line)`` of a mapping's keys, as the spec dataclasses keep them."""
    return tuple((str(k), int(v)) for k, v in getattr(mapping, "key_lines", {}).items())
