"""Reading a suite file: YAML with safe-load semantics, line numbers on every mapping and list,
duplicate keys refused, tags refused. Every problem is one :class:`~pytest_saeval.errors.SuiteError`
located at ``file:line``. Pure Python.

Input is bounded, so a hostile file costs milliseconds, never minutes or gigabytes: at most
:data:`MAX_SUITE_BYTES` bytes, :data:`MAX_DEPTH` levels of nesting (also through aliases),
:data:`MAX_NODES` values once anchors and aliases are expanded (a "billion laughs" file is refused
before anything walks it), integers of at most :data:`MAX_INT_DIGITS` digits, and no control characters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.reader import ReaderError

from pytest_saeval.bounded import NotRegularFile, read_regular
from pytest_saeval.errors import SuiteError

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "MAX_NODES", "MAX_SUITE_BYTES", "YamlMap", "YamlSeq", "key_line",
           "key_lines", "read_yaml"]

MAX_SUITE_BYTES = 256 * 1024
"""Largest suite file read (256 KiB: real suites are a few KB, and the pure-Python YAML parser reads about
50 KB a second in the worst case)."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and lists (a suite needs 6)."""
MAX_NODES = 100_000
"""Most values a suite may hold once every alias is expanded (each use of ``*a`` counts ``&a`` again)."""
MAX_INT_DIGITS = 30
"""Longest integer literal, in digits of its base (int64 needs 19 decimal digits)."""


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
    """``yaml.safe_load`` semantics, plus line numbers, duplicate-key errors, no tags and a nesting cap."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _YamlProblem(f"the YAML is nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark.line + 1,
                                   _NESTING_FIX)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_NESTING_FIX = "a suite file needs a few levels (saes -> entry -> gates -> list); flatten the structure"
_ALIAS_FIX = "write the values out, or use aliases (*name) only for small shared blocks such as gates"


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
def _construct_int(loader: _SuiteLoader, node: yaml.ScalarNode) -> int:
    digits = sum(c in "0123456789abcdefABCDEF" for c in str(node.value))
    if digits > MAX_INT_DIGITS:
        raise _YamlProblem(f"an integer of {digits} digits is too large (at most {MAX_INT_DIGITS})",
                           node.start_mark.line + 1, "use a number of ordinary size")
    return int(loader.construct_yaml_int(node))


_SuiteLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_SuiteLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_text)  # dates stay text
_SuiteLoader.add_constructor("tag:yaml.org,2002:value", _construct_text)
for _tag in ("binary", "set", "omap", "pairs"):
    _SuiteLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)
_SuiteLoader.add_constructor(None, _refuse_tag)
del _tag

_UNQUOTED_GATE_RE = re.compile(r"(?:^|[:\-\[,])\s*[<>]")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it beyond :data:`MAX_NODES` values or :data:`MAX_DEPTH` levels,
    or that contains itself; counted on the composed graph (each node once), before anything expands it."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            open_nodes.discard(key)
            line = node.start_mark.line + 1
            if size[key] > MAX_NODES:
                raise _YamlProblem(f"the YAML expands to more than {MAX_NODES:,} values through anchors and aliases "
                                   "(&name / *name)", line, _ALIAS_FIX)
            if depth[key] > MAX_DEPTH:
                raise _YamlProblem(f"the YAML is nested more than {MAX_DEPTH} levels deep through aliases", line, _ALIAS_FIX)
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise _YamlProblem("invalid YAML: an alias refers to the block that contains it", node.start_mark.line + 1, _ALIAS_FIX)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


def _read_bytes(path: Path, file: str) -> bytes:
    """The file's bytes (at most :data:`MAX_SUITE_BYTES`); a located error when it cannot be read. A FIFO or
    a device is refused before a byte is read (it could block, or never end)."""
    try:
        return read_regular(path, limit=MAX_SUITE_BYTES)
    except FileNotFoundError:
        if path.is_symlink():
            raise SuiteError(f"is a symbolic link to '{os.readlink(path)}', which does not exist",
                             fix="point the link at the suite file, or remove it", file=file) from None
        raise SuiteError("suite file not found", fix="check the path (relative paths start at the current folder)", file=file) from None
    except IsADirectoryError:
        raise SuiteError("is a folder, not a suite file", fix="pass a .yaml file", file=file) from None
    except NotRegularFile as e:
        raise SuiteError(f"is not a regular file ({e.kind})", fix="pass a .yaml file", file=file) from None
    except ValueError:
        raise SuiteError(f"the suite file is larger than {MAX_SUITE_BYTES // 1024} KiB",
                         fix="a suite holds a model, data and SAE gates; split it into several files", file=file) from None
    except OSError as e:
        reason = e.strerror or str(e)
        raise SuiteError(f"cannot read the suite file: {reason}", fix="check the path and the file's permissions", file=file) from e


def _loader(text: str, file: str) -> _SuiteLoader:
    """The loader over ``text``; a control character (YAML refuses them) is a located error."""
    try:
        return _SuiteLoader(text)
    except ReaderError as e:
        line = text[: max(e.position, 0)].count("\n") + 1
        char = e.character if isinstance(e.character, str) else chr(int(e.character or 0))
        raise SuiteError(f"the file holds the control character U+{ord(char):04X}, which YAML does not allow",
                         fix="remove it (a suite file is plain text: printable characters, tabs and line breaks)",
                         file=file, line=line) from None


def read_yaml(path: Path, file: str) -> object:
    """Parse the suite file; every problem becomes a SuiteError located at file:line."""
    raw = _read_bytes(path, file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SuiteError("the file is not UTF-8 text", fix="save it as UTF-8", file=file, line=line) from e
    loader = _loader(text, file)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SuiteError(
                "the suite file is empty",
                fix="add the model:, data: and saes: sections (see the suite file format in the README)",
                file=file,
                line=1,
            )
        _check_expansion(node)
        return loader.construct_document(node)
    except _YamlProblem as e:
        raise SuiteError(e.message, fix=e.fix, file=file, line=e.line) from None
    except RecursionError:  # pragma: no cover - the caps above come first
        raise SuiteError(f"the YAML is nested more than {MAX_DEPTH} levels deep", fix=_NESTING_FIX, file=file, line=1) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = e.problem or "syntax error"
        message = f"invalid YAML: {problem}" + (f" ({e.context})" if e.context else "")
        source_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        if "another document" in problem:
            fix = "keep one YAML document per suite file: remove the '---' line or split the file"
        elif "for merging" in problem:  # `<<: 5`: the line starts with <, but it is no gate
            fix = ("a merge key `<<:` takes a mapping or an alias of one (`<<: *name`), or a list of them; "
                   "remove it or merge a mapping")
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
