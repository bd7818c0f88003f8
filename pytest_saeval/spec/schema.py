"""The suite file format as a JSON Schema (draft 2020-12), built from the definitions the loader checks.

Every key, its description and its kind come from :data:`~pytest_saeval.spec.fields.SECTIONS`; the
limits and patterns (counts, token ids, SAE ids, factories, paths, devices, dtypes, gate expressions and how
many a gate lists, gate modes, the "exactly one of" source keys) are the same constants the checks use, an integer is what
JSON Schema calls one (``8`` and ``8.0`` alike, as the checks take them), and the metric names are the
catalogue's scalar metrics. So an editor that reads ``# yaml-language-server:
$schema=...`` completes the keys the loader accepts and flags what it would refuse before a run.
What a schema cannot say (duplicate SAE ids, files that must exist, baseline values) stays the
loader's. ``saeval schema`` prints it. Pure Python.
"""

from __future__ import annotations

import json
from typing import Any

from pytest_saeval.catalogue import SCALAR_METRICS
from pytest_saeval.settings import DEVICE_PATTERN, DTYPES
from pytest_saeval.spec.fields import (
    DATA_SOURCES,
    FACTORY_PATTERN,
    HOOK_PATTERN,
    MAX_COUNT,
    MAX_EXPRESSION_LENGTH,
    MAX_GATE_EXPRESSIONS,
    MAX_ID_LENGTH,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    MAX_TOKEN_ID,
    MODEL_SOURCES,
    SAE_FORMATS,
    SAE_ID_PATTERN,
    SAE_SOURCES,
    SECTIONS,
    Kind,
)
from pytest_saeval.spec.gates import GATE_PATTERN, MODES

__all__ = ["schema_text", "suite_schema"]

_TEXT = {"type": "string", "pattern": r"\S"}
_PATH = {"type": "string", "maxLength": MAX_PATH_BYTES,
         "pattern": rf"^(?=[\s\S]*\S)(?![\s\S]*[^/\\]{{{MAX_NAME_BYTES + 1}}})[^\u0000]*$"}
_FILES = {"oneOf": [_TEXT, {"type": "array", "minItems": 1, "items": _TEXT}]}
_FRAGMENTS: dict[Kind, dict[str, Any]] = {
    "text": _TEXT,
    "path": _PATH,
    "count": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
    "bool": {"type": "boolean"},
    "device": {"type": "string", "pattern": DEVICE_PATTERN},
    "dtype": {"enum": list(DTYPES)},
    "exclude": {"oneOf": [{"type": "boolean"},
                          {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": MAX_TOKEN_ID}}]},
    "factory": {"type": "string", "pattern": FACTORY_PATTERN},
    "sae_id": {"type": "string", "pattern": SAE_ID_PATTERN, "maxLength": MAX_ID_LENGTH},
    "sae_format": {"enum": list(SAE_FORMATS)},
    "hook_name": {"type": "string", "pattern": HOOK_PATTERN},
    "gates": {"$ref": "#/$defs/gates"},
    "gate_mode": {"enum": list(MODES)},
    "model": {"$ref": "#/$defs/model"},
    "data": {"$ref": "#/$defs/data"},
    "dataset": {"$ref": "#/$defs/dataset"},
    "data_files": {"oneOf": [*_FILES["oneOf"], {"type": "object", "minProperties": 1, "additionalProperties": _FILES}]},
    "saes": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/sae"}},
    "defaults": {"$ref": "#/$defs/defaults"},
}


def _section(name: str, *, nullable: bool = False) -> dict[str, Any]:
    """An object with exactly the keys of ``SECTIONS[name]``, each with its kind's fragment and description."""
    properties = {f.name: {**_FRAGMENTS[f.kind], "description": f.description} for f in SECTIONS[name]}
    return {"type": ["object", "null"] if nullable else "object", "properties": properties,
            "additionalProperties": False}


def _one_of(*required: tuple[str, ...]) -> dict[str, Any]:
    """Exactly one of the key groups is present."""
    return {"oneOf": [{"required": list(keys)} for keys in required]}


def suite_schema() -> dict[str, Any]:
    """The JSON Schema of a suite file, as a JSON-ready dict."""
    expression = {"type": "string", "pattern": GATE_PATTERN, "maxLength": MAX_EXPRESSION_LENGTH,
                  "description": 'OP VALUE: OP one of >=, >, <=, <; VALUE a number, baseline, baseline + X, '
                                 'baseline - X or baseline * X, e.g. ">= 0.8"'}
    sources = tuple((k,) if k != "release" else ("release", "sae_id") for k in SAE_SOURCES)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pytest-saeval suite file",
        "description": "One model, one token set, SAEs and their gates (see the README's suite file format).",
        **_section("suite"),
        "required": ["model", "data", "saes"],
        "$defs": {
            "model": {**_section("model"), **_one_of(*((k,) for k in MODEL_SOURCES))},
            "data": {**_section("data"), **_one_of(*((k,) for k in DATA_SOURCES))},
            "dataset": {**_section("dataset"), "required": ["path"]},
            "sae": {**_section("sae"), "required": ["id"], **_one_of(*sources),
                    "dependentRequired": {"release": ["sae_id"], "sae_id": ["release"]}},
            "defaults": _section("defaults", nullable=True),
            "gates": {"type": ["object", "null"], "propertyNames": {"enum": list(SCALAR_METRICS)},
                      "additionalProperties": {"$ref": "#/$defs/gate"},
                      "description": "Scalar metric -> gate expression, or a list of expressions that must all hold."},
            "gate": {"oneOf": [{"$ref": "#/$defs/expression"},
                               {"type": "array", "minItems": 1, "maxItems": MAX_GATE_EXPRESSIONS, "uniqueItems": True,
                                "items": {"$ref": "#/$defs/expression"}}]},
            "expression": expression,
        },
    }


def schema_text() -> str:
    """:func:`suite_schema` as indented JSON text (what ``saeval schema`` prints)."""
    return json.dumps(suite_schema(), indent=2) + "\n"
