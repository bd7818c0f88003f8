"""Reading suite files: YAML with line numbers, then located validation into the specs of :mod:`.suite`.

Kept apart from :mod:`pytest_saeval.suite` (the public specs and :func:`~pytest_saeval.suite.load_suite`)
so each module stays small. Pure Python: no torch.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .errors import SuiteError
from .gates import Gate, parse_gate
from .suite import (
    _COUNT_KEYS,
    _DATA_KEYS,
    _DATASET_KEYS,
    _DEFAULTS_KEYS,
    _MODEL_KEYS,
    _SAE_KEYS,
    _TOP_KEYS,
    DatasetSpec,
    DataSpec,
    ModelSpec,
    SAESpec,
    Suite,
    _check_bool,
    _check_count,
    _check_device,
    _check_dtype,
    _check_exclude,
    _check_factory,
    _check_sae_id,
    _check_text,
    _Invalid,
    _kind,
)


def build_suite(path: str | os.PathLike[str]) -> Suite:
    """Read, parse and validate one suite file (see :func:`pytest_saeval.suite.load_suite`)."""
    file = os.fspath(path)
    suite_path = Path(file)
    data = _read_yaml(suite_path, file)
    return _Builder(suite_path, file).suite(data)


# --------------------------------------------------------------------------------------------
# YAML with line numbers


class _Map(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int = 1
    key_lines: dict[Any, int]


class _Seq(list):  # type: ignore[type-arg]
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


def _construct_map(loader: _SuiteLoader, node: yaml.MappingNode) -> _Map:
    out = _Map()
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


def _construct_seq(loader: _SuiteLoader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
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
_SuiteLoader.add_constructor(None, _refuse_tag)  # type: ignore[arg-type]
del _tag

_UNQUOTED_GATE_RE = re.compile(r"(?:^|[:\-\[,])\s*[<>]")


def _read_yaml(path: Path, file: str) -> object:
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


# --------------------------------------------------------------------------------------------
# building the suite


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


class _Builder:
    """Turns the parsed YAML into specs, raising located SuiteErrors."""

    def __init__(self, path: Path, file: str) -> None:
        self.path = path
        self.file = file
        self.base_dir = path.absolute().parent

    # -- helpers

    def error(self, message: str, fix: str, line: int | None, key: str | None) -> SuiteError:
        return SuiteError(message, fix=fix, file=self.file, line=line or 1, key=key)

    def fail(self, e: _Invalid, line: int | None, key: str) -> NoReturn:
        raise self.error(e.message, e.fix, line, key) from None

    @staticmethod
    def key_line(mapping: dict[Any, Any], key: object, default: int | None) -> int | None:
        return getattr(mapping, "key_lines", {}).get(key, default)

    @staticmethod
    def lines_of(mapping: dict[Any, Any]) -> tuple[tuple[str, int], ...]:
        """``(key, line)`` of a mapping's keys, as a spec keeps them."""
        return tuple((str(k), int(v)) for k, v in getattr(mapping, "key_lines", {}).items())

    def mapping(self, value: object, key: str, line: int | None, example: str) -> dict[Any, Any]:
        if value is None:
            value = _Map()
        if not isinstance(value, dict):
            raise self.error(f"{key} must be a mapping, got {_kind(value)}", f"write {key}: followed by indented lines like {example}", line, key)
        return value

    def check_keys(self, mapping: dict[Any, Any], allowed: Sequence[str], prefix: str, line: int | None) -> None:
        for key in mapping:
            if key in allowed:
                continue
            name = str(key)
            close = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            fix = f"rename it to '{close[0]}'" if close else "use only " + ", ".join(allowed)
            where = f" in {prefix}" if prefix else ""
            raise self.error(f"unknown key '{name}'{where}{hint}", fix, self.key_line(mapping, key, line), _join(prefix, name))

    def resolve(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        if not path.is_absolute():
            path = self.base_dir / path
        return Path(os.path.normpath(path))

    def file_path(self, value: object, key: str, line: int | None, example: str) -> Path:
        try:
            return self.resolve(_check_text(key.rsplit(".", 1)[-1], value, example))
        except _Invalid as e:
            self.fail(e, line, key)

    def check(self, check: Any, value: object, line: int | None, key: str) -> Any:
        try:
            return check(value)
        except _Invalid as e:
            self.fail(e, line, key)

    def exactly_one(
        self, mapping: dict[Any, Any], options: Sequence[str], prefix: str, line: int | None, what: str
    ) -> str:
        given = [k for k in options if k in mapping]
        names = ", ".join(options[:-1]) + f" or {options[-1]}"
        names = names.replace("release", "release + sae_id")
        if not given:
            raise self.error(f"{what} needs one of {names}", f"add one of {names}", line, prefix)
        if len(given) > 1:
            raise self.error(
                f"{what} has both '{given[0]}' and '{given[1]}'",
                f"keep exactly one of {names}",
                self.key_line(mapping, given[1], line),
                _join(prefix, given[1]),
            )
        return given[0]

    # -- sections

    def suite(self, data: object) -> Suite:
        if not isinstance(data, dict):
            line = getattr(data, "line", 1)
            raise self.error(
                f"a suite file must be a mapping with model, data and saes sections, got {_kind(data)}",
                "start the file with model:, data: and saes: keys (see the suite file format in the README)",
                line,
                None,
            )
        self.check_keys(data, _TOP_KEYS, "", 1)
        for required in ("model", "data", "saes"):
            if required not in data:
                raise self.error(
                    f"missing required section '{required}'",
                    f"add a top-level '{required}:' section (see the suite file format in the README)",
                    getattr(data, "line", 1),
                    required,
                )
        line = self.key_line
        model = self.model(data["model"], line(data, "model", 1))
        data_spec = self.data(data["data"], line(data, "data", 1))
        baseline: Path | None = None
        baseline_line = line(data, "baseline", None)
        if data.get("baseline") is not None:
            baseline = self.file_path(data["baseline"], "baseline", baseline_line, "../baselines/demo.json")
        defaults = self.defaults(data.get("defaults"), line(data, "defaults", 1))
        saes = self.saes(data["saes"], line(data, "saes", 1), defaults)
        if baseline is None:
            self.check_no_baseline_gates(saes)
        gate_mode = data.get("gate_mode", "point")
        if gate_mode not in ("point", "interval"):
            raise self.error(
                f"gate_mode must be point or interval, got {gate_mode!r}",
                "write gate_mode: point (check the measured value, the default) or gate_mode: interval "
                "(fail only when the whole 95% interval is on the wrong side)",
                line(data, "gate_mode", 1),
                "gate_mode",
            )
        return Suite(
            path=self.path,
            model=model,
            data=data_spec,
            saes=saes,
            baseline=baseline,
            default_gates=defaults,
            baseline_line=baseline_line,
            gate_mode=gate_mode,
        )

    def check_no_baseline_gates(self, saes: tuple[SAESpec, ...]) -> None:
        """A gate that compares with ``baseline`` needs the suite's ``baseline:`` file."""
        for spec in saes:
            for gate in spec.gates:
                if gate.uses_baseline:
                    raise self.error(
                        f"gate '{gate.text}' compares with the baseline, but the suite has no baseline: file",
                        "add `baseline: baselines/<name>.json` at the top level (create the file with "
                        "`saeval run --update-baseline` or `pytest --saeval-update-baseline`), or compare with a number",
                        gate.line,
                        gate.key,
                    )

    def model(self, value: object, line: int | None) -> ModelSpec:
        m = self.mapping(value, "model", line, "path: ../models/tiny")
        self.check_keys(m, _MODEL_KEYS, "model", line)
        source = self.exactly_one(m, ("name", "path", "factory"), "model", line, "model")
        at = self.key_line(m, source, line)
        key = f"model.{source}"
        fields: dict[str, Any] = {}
        if source == "path":
            fields["path"] = self.file_path(m["path"], key, at, "../models/tiny")
        elif source == "name":
            fields["name"] = self.check(lambda v: _check_text("name", v, "gpt2"), m["name"], at, key)
        else:
            fields["factory"] = self.check(_check_factory, m["factory"], at, key)
        if "device" in m:
            fields["device"] = self.check(_check_device, m["device"], self.key_line(m, "device", line), "model.device")
        if "dtype" in m:
            fields["dtype"] = self.check(_check_dtype, m["dtype"], self.key_line(m, "dtype", line), "model.dtype")
        return ModelSpec(line=line, key_lines=self.lines_of(m), **fields)

    def data(self, value: object, line: int | None) -> DataSpec:
        m = self.mapping(value, "data", line, "tokens: ../data/eval_tokens.npy")
        self.check_keys(m, _DATA_KEYS, "data", line)
        source = self.exactly_one(m, ("tokens", "dataset"), "data", line, "data")
        at = self.key_line(m, source, line)
        fields: dict[str, Any] = {}
        if source == "tokens":
            fields["tokens"] = self.file_path(m["tokens"], "data.tokens", at, "../data/eval_tokens.npy")
        else:
            fields["dataset"] = self.dataset(m["dataset"], at)
        for key in _COUNT_KEYS:
            if key in m:
                fields[key] = self.check(lambda v, k=key: _check_count(k, v), m[key], self.key_line(m, key, line), f"data.{key}")
        if "exclude_special_tokens" in m:
            fields["exclude_special_tokens"] = self.check(
                _check_exclude, m["exclude_special_tokens"], self.key_line(m, "exclude_special_tokens", line), "data.exclude_special_tokens"
            )
        return DataSpec(line=line, key_lines=self.lines_of(m), **fields)

    def dataset(self, value: object, line: int | None) -> DatasetSpec:
        prefix = "data.dataset"
        if isinstance(value, str):
            raise self.error(
                f"{prefix} must be a mapping, got a string",
                f"write dataset: {{path: {value}, split: train, column: text}}",
                line,
                prefix,
            )
        m = self.mapping(value, prefix, line, "path: Skylion007/openwebtext")
        self.check_keys(m, _DATASET_KEYS, prefix, line)
        if "path" not in m:
            raise self.error(f"{prefix} needs 'path'", "add path: a Hugging Face dataset name, a builder like json, or a local folder", line, prefix)
        fields: dict[str, Any] = {}
        examples = {"path": "Skylion007/openwebtext", "split": "train", "column": "text", "name": "wikitext-2-raw-v1"}
        for key, example in examples.items():
            if key in m:
                at = self.key_line(m, key, line)
                fields[key] = self.check(lambda v, k=key, ex=example: _check_text(k, v, ex), m[key], at, f"{prefix}.{key}")
        if "streaming" in m:
            fields["streaming"] = self.check(lambda v: _check_bool("streaming", v), m["streaming"], self.key_line(m, "streaming", line), f"{prefix}.streaming")
        local = fields["path"]
        if local.startswith((".", "/", "~")) or (self.base_dir / local).exists():
            fields["path"] = str(self.resolve(local))
        if "data_files" in m:
            fields["data_files"] = self.data_files(m["data_files"], self.key_line(m, "data_files", line), f"{prefix}.data_files")
        return DatasetSpec(line=line, **fields)

    def data_files(self, value: object, line: int | None, key: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        def files(v: object, k: str, at: int | None) -> tuple[str, ...]:
            items = [v] if isinstance(v, str) else v
            if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
                raise self.error(
                    f"{k} must be a file, a list of files or a mapping split -> files, got {value!r}",
                    "write e.g. data_files: data/eval.jsonl or data_files: {train: [a.jsonl, b.jsonl]}",
                    at,
                    k,
                )
            return tuple(i if "://" in i else str(self.resolve(i)) for i in items)

        if isinstance(value, dict):
            if not value:
                raise self.error(f"{key} is empty", "list at least one file", line, key)
            return tuple(
                (str(split), files(v, f"{key}.{split}", self.key_line(value, split, line))) for split, v in value.items()
            )
        return (("train", files(value, key, line)),)

    def defaults(self, value: object, line: int | None) -> tuple[Gate, ...]:
        m = self.mapping(value, "defaults", line, "gates: {frac_alive: \">= 0.98\"}")
        self.check_keys(m, _DEFAULTS_KEYS, "defaults", line)
        return self.gates(m.get("gates"), self.key_line(m, "gates", line), "defaults.gates")

    def gates(self, value: object, line: int | None, prefix: str) -> tuple[Gate, ...]:
        m = self.mapping(value, prefix, line, 'explained_variance: ">= 0.8"')
        out = []
        for metric, spec in m.items():
            out.append(
                parse_gate(
                    metric,
                    spec,
                    file=self.file,
                    line=self.key_line(m, metric, line) or 1,
                    key=_join(prefix, metric),
                    item_lines=getattr(spec, "item_lines", None),
                )
            )
        return tuple(out)

    def saes(self, value: object, line: int | None, defaults: tuple[Gate, ...]) -> tuple[SAESpec, ...]:
        if value is None or (isinstance(value, list) and not value):
            raise self.error("saes is empty", "add at least one SAE entry: - id: my-sae, path: ...", line, "saes")
        if not isinstance(value, list):
            raise self.error(
                f"saes must be a list of SAE entries, got {_kind(value)}",
                "start each SAE entry with '- id: ...' under saes:",
                line,
                "saes",
            )
        item_lines = getattr(value, "item_lines", [line] * len(value))
        first_seen: dict[str, tuple[int, int | None]] = {}
        specs = []
        for i, item in enumerate(value):
            spec = self.sae(item, item_lines[i], f"saes[{i}]", defaults)
            if spec.id in first_seen:
                j, other_line = first_seen[spec.id]
                raise self.error(
                    f"duplicate SAE id '{spec.id}' (also saes[{j}] on line {other_line})",
                    "give every SAE in the suite a unique id",
                    self.key_line(item, "id", item_lines[i]),
                    f"saes[{i}].id",
                )
            first_seen[spec.id] = (i, item_lines[i])
            specs.append(spec)
        return tuple(specs)

    def sae(self, value: object, line: int | None, prefix: str, defaults: tuple[Gate, ...]) -> SAESpec:
        if not isinstance(value, dict):
            raise self.error(
                f"{prefix} must be a mapping with id and path (or release + sae_id, or factory), got {_kind(value)}",
                "write - id: my-sae followed by path: ../saes/my-sae",
                line,
                prefix,
            )
        self.check_keys(value, _SAE_KEYS, prefix, line)
        if "id" not in value:
            raise self.error(f"{prefix} has no id", "add id: a short unique name such as layer1-topk", line, prefix)
        sae_id = self.check(_check_sae_id, value["id"], self.key_line(value, "id", line), f"{prefix}.id")
        fields: dict[str, Any] = {}
        if "release" in value or "sae_id" in value:
            for have, need in (("release", "sae_id"), ("sae_id", "release")):
                if have in value and need not in value:
                    raise self.error(
                        f"'{have}' needs '{need}' as well", f"add {need}: next to {have}:", self.key_line(value, have, line), f"{prefix}.{have}"
                    )
        source = self.exactly_one(value, ("path", "release", "factory"), prefix, line, prefix)
        at = self.key_line(value, source, line)
        if source == "path":
            fields["path"] = self.file_path(value["path"], f"{prefix}.path", at, "../saes/my-sae")
        elif source == "release":
            fields["release"] = self.check(lambda v: _check_text("release", v, "gpt2-small-res-jb"), value["release"], at, f"{prefix}.release")
            fields["sae_id"] = self.check(
                lambda v: _check_text("sae_id", v, "blocks.8.hook_resid_pre"),
                value["sae_id"],
                self.key_line(value, "sae_id", line),
                f"{prefix}.sae_id",
            )
        else:
            fields["factory"] = self.check(_check_factory, value["factory"], at, f"{prefix}.factory")
        own = self.gates(value.get("gates"), self.key_line(value, "gates", line), f"{prefix}.gates")
        own_metrics = {g.metric for g in own}
        merged = own + tuple(g for g in defaults if g.metric not in own_metrics)
        return SAESpec(id=sae_id, gates=merged, line=line, **fields)
