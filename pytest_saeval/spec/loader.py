"""Loading suite files: YAML (:mod:`.reader`) mapped onto the spec dataclasses of :mod:`.suite`.

The builder here checks structure only: mappings where mappings belong, no unknown keys, required
sections present, paths resolved against the suite file's folder, gates parsed. Every value check
runs in the dataclasses (one place), whose errors get the file name added here. Pure Python: no torch.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_saeval.errors import SuiteError, brief
from pytest_saeval.spec.fields import (
    DATA_KEYS,
    DATASET_KEYS,
    DEFAULTS_KEYS,
    MODEL_KEYS,
    SAE_KEYS,
    TOP_KEYS,
    Invalid,
    check_text,
    kind,
)
from pytest_saeval.spec.gates import Gate, parse_gate
from pytest_saeval.spec.reader import YamlMap, key_line, key_lines, read_yaml
from pytest_saeval.spec.suite import DatasetSpec, DataSpec, ModelSpec, SAESpec, Suite

__all__ = ["load_suite", "load_suites"]


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Load and validate one suite file.

    Raises :class:`~pytest_saeval.errors.SuiteError` (``file:line: key: what is wrong. Fix: ...``)
    for anything that is not a valid suite. Referenced files (model, tokens, SAEs, baseline) are not
    opened here.
    """
    file = os.fspath(path)
    suite_path = Path(file)
    data = read_yaml(suite_path, file)
    try:
        return _Builder(suite_path, file).suite(data)
    except SuiteError as e:
        raise e.located(file=file, line=1) from None


def load_suites(paths: Iterable[str | os.PathLike[str]]) -> list[Suite]:
    """Load several suite files in order; a file named twice is loaded once."""
    seen: set[Path] = set()
    suites = []
    for path in paths:
        key = Path(os.path.normpath(Path(path).absolute()))
        if key in seen:
            continue
        seen.add(key)
        suites.append(load_suite(path))
    return suites


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


class _Builder:
    """Turns the parsed YAML into specs; structural problems are located SuiteErrors."""

    def __init__(self, path: Path, file: str) -> None:
        self.path = path
        self.file = file
        self.base_dir = path.absolute().parent

    # -- helpers

    @staticmethod
    def error(message: str, fix: str, line: int | None, key: str | None) -> SuiteError:
        return SuiteError(message, fix=fix, line=line or 1, key=key)

    def mapping(self, value: object, key: str, line: int | None, example: str) -> dict[Any, Any]:
        if value is None:
            value = YamlMap()
        if not isinstance(value, dict):
            raise self.error(f"{key} must be a mapping, got {kind(value)}",
                             f"write {key}: followed by indented lines like {example}", line, key)
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
            raise self.error(f"unknown key '{name}'{where}{hint}", fix, key_line(mapping, key, line), _join(prefix, name))

    def resolve(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        if not path.is_absolute():
            path = self.base_dir / path
        return Path(os.path.normpath(path))

    def file_path(self, mapping: dict[Any, Any], key: str, prefix: str, line: int | None, example: str) -> Path | None:
        """The path under ``key`` resolved against the suite's folder (None when the key is absent)."""
        if key not in mapping:
            return None
        try:
            return self.resolve(check_text(key, mapping[key], example))
        except Invalid as e:
            raise self.error(e.message, e.fix, key_line(mapping, key, line), _join(prefix, key)) from None

    # -- sections

    def suite(self, data: object) -> Suite:
        if not isinstance(data, dict):
            raise self.error(
                f"a suite file must be a mapping with model, data and saes sections, got {kind(data)}",
                "start the file with model:, data: and saes: keys (see the suite file format in the README)",
                getattr(data, "line", 1),
                None,
            )
        self.check_keys(data, TOP_KEYS, "", 1)
        for required in ("model", "data", "saes"):
            if required not in data:
                raise self.error(
                    f"missing required section '{required}'",
                    f"add a top-level '{required}:' section (see the suite file format in the README)",
                    getattr(data, "line", 1),
                    required,
                )
        model = self.model(data["model"], key_line(data, "model", 1))
        data_spec = self.data(data["data"], key_line(data, "data", 1))
        baseline = None
        if data.get("baseline") is not None:
            baseline = self.file_path(data, "baseline", "", None, "../baselines/demo.json")
        defaults = self.defaults(data.get("defaults"), key_line(data, "defaults", 1))
        saes = self.saes(data["saes"], key_line(data, "saes", 1), defaults)
        return Suite(path=self.path, model=model, data=data_spec, saes=saes, baseline=baseline,
                     default_gates=defaults, gate_mode=data.get("gate_mode", "point"), line=1,
                     key_lines=key_lines(data))

    def model(self, value: object, line: int | None) -> ModelSpec:
        m = self.mapping(value, "model", line, "path: ../models/tiny")
        self.check_keys(m, MODEL_KEYS, "model", line)
        fields = {k: m[k] for k in MODEL_KEYS if k in m and k != "path"}
        return ModelSpec(path=self.file_path(m, "path", "model", line, "../models/tiny"), line=line,
                         key_lines=key_lines(m), **fields)

    def data(self, value: object, line: int | None) -> DataSpec:
        m = self.mapping(value, "data", line, "tokens: ../data/eval_tokens.npy")
        self.check_keys(m, DATA_KEYS, "data", line)
        fields = {k: m[k] for k in DATA_KEYS if k in m and k not in ("tokens", "dataset")}
        tokens = self.file_path(m, "tokens", "data", line, "../data/eval_tokens.npy")
        dataset = self.dataset(m["dataset"], key_line(m, "dataset", line)) if "dataset" in m else None
        return DataSpec(tokens=tokens, dataset=dataset, line=line, key_lines=key_lines(m), **fields)

    def dataset(self, value: object, line: int | None) -> DatasetSpec:
        prefix = "data.dataset"
        if isinstance(value, str):
            raise self.error(f"{prefix} must be a mapping, got a string",
                             f"write dataset: {{path: {value}, split: train, column: text}}", line, prefix)
        m = self.mapping(value, prefix, line, "path: Skylion007/openwebtext")
        self.check_keys(m, DATASET_KEYS, prefix, line)
        if "path" not in m:
            raise self.error(f"{prefix} needs 'path'",
                             "add path: a Hugging Face dataset name, a builder like json, or a local folder", line, prefix)
        fields = {k: m[k] for k in ("split", "column", "streaming", "name") if k in m}
        path = m["path"]
        if isinstance(path, str) and path.strip():
            local = path.strip()
            if local.startswith((".", "/", "~")) or (self.base_dir / local).exists():
                path = str(self.resolve(local))
        if "data_files" in m:
            fields["data_files"] = self.data_files(m["data_files"], key_line(m, "data_files", line), f"{prefix}.data_files")
        return DatasetSpec(path=path, line=line, key_lines=key_lines(m), **fields)

    def data_files(self, value: object, line: int | None, key: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        def files(v: object, k: str, at: int | None) -> tuple[str, ...]:
            items = [v] if isinstance(v, str) else v
            if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
                raise self.error(
                    f"{k} must be a file, a list of files or a mapping split -> files, got {brief(value)}",
                    "write e.g. data_files: data/eval.jsonl or data_files: {train: [a.jsonl, b.jsonl]}",
                    at,
                    k,
                )
            return tuple(i if "://" in i else str(self.resolve(i)) for i in items)

        if isinstance(value, dict):
            if not value:
                raise self.error(f"{key} is empty", "list at least one file", line, key)
            return tuple(
                (str(split), files(v, f"{key}.{split}", key_line(value, split, line))) for split, v in value.items()
            )
        return (("train", files(value, key, line)),)

    def defaults(self, value: object, line: int | None) -> tuple[Gate, ...]:
        m = self.mapping(value, "defaults", line, "gates: {frac_alive: \">= 0.98\"}")
        self.check_keys(m, DEFAULTS_KEYS, "defaults", line)
        return self.gates(m.get("gates"), key_line(m, "gates", line), "defaults.gates")

    def gates(self, value: object, line: int | None, prefix: str) -> tuple[Gate, ...]:
        m = self.mapping(value, prefix, line, 'explained_variance: ">= 0.8"')
        return tuple(
            parse_gate(metric, spec, file=self.file, line=key_line(m, metric, line) or 1, key=_join(prefix, metric),
                       item_lines=getattr(spec, "item_lines", None))
            for metric, spec in m.items()
        )

    def saes(self, value: object, line: int | None, defaults: tuple[Gate, ...]) -> tuple[SAESpec, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(f"saes must be a list of SAE entries, got {kind(value)}",
                             "start each SAE entry with '- id: ...' under saes:", line, "saes")
        item_lines = getattr(value, "item_lines", [line] * len(value))
        return tuple(self.sae(item, item_lines[i], i, defaults) for i, item in enumerate(value))

    def sae(self, value: object, line: int | None, index: int, defaults: tuple[Gate, ...]) -> SAESpec:
        prefix = f"saes[{index}]"
        if not isinstance(value, dict):
            raise self.error(
                f"{prefix} must be a mapping with id and path (or release + sae_id, or factory), got {kind(value)}",
                "write - id: my-sae followed by path: ../saes/my-sae",
                line,
                prefix,
            )
        self.check_keys(value, SAE_KEYS, prefix, line)
        if "id" not in value:
            raise self.error(f"{prefix} has no id", "add id: a short unique name such as layer1-topk", line, prefix)
        own = self.gates(value.get("gates"), key_line(value, "gates", line), f"{prefix}.gates")
        own_metrics = {g.metric for g in own}
        merged = own + tuple(g for g in defaults if g.metric not in own_metrics)
        fields = {k: value[k] for k in ("format", "hook_name", "release", "sae_id", "factory") if k in value}
        return SAESpec(id=value["id"], path=self.file_path(value, "path", prefix, line, "../saes/my-sae"),
                       gates=merged, line=line, index=index, key_lines=key_lines(value), **fields)
