"""The suite JSON Schema: built from the field table, valid Draft 2020-12, and it accepts every suite in the repo."""

from __future__ import annotations

import math
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from pytest_saeval.catalogue import SCALAR_METRICS
from pytest_saeval.errors import SuiteError
from pytest_saeval.spec.fields import (
    MAX_COUNT,
    MAX_EXPRESSION_LENGTH,
    MAX_GATE_EXPRESSIONS,
    MAX_TOKEN_ID,
    SECTIONS,
    Invalid,
    check_field,
)
from pytest_saeval.spec.gates import GATE_PATTERN, parse_bound
from pytest_saeval.spec.schema import schema_text, suite_schema

REPO = Path(__file__).resolve().parents[3]


def _validator() -> jsonschema.Draft202012Validator:
    schema = suite_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _repo_suites() -> list[tuple[str, object]]:
    """Every suite file in the repository, and every suite example in its Markdown documentation."""
    found: list[tuple[str, object]] = []
    for path in sorted(REPO.glob("**/*.y*ml")):
        rel = path.relative_to(REPO)
        if rel.parts[0].startswith(".") or "node_modules" in rel.parts:
            continue
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and "saes" in data:
            found.append((str(rel), data))
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(), flags=re.S)):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and "saes" in data and "model" in data:
                found.append((f"{doc.name} yaml block {i}", data))
    return found


def test_the_schema_is_valid_and_names_every_key_of_the_format() -> None:
    schema = suite_schema()
    _validator()
    defs = {"suite": schema, "model": schema["$defs"]["model"], "data": schema["$defs"]["data"],
            "dataset": schema["$defs"]["dataset"], "sae": schema["$defs"]["sae"],
            "defaults": schema["$defs"]["defaults"]}
    for section, entries in SECTIONS.items():
        properties = defs[section]["properties"]
        assert list(properties) == [f.name for f in entries], section
        assert all(properties[f.name]["description"] == f.description for f in entries)
        assert defs[section]["additionalProperties"] is False
    assert schema["$defs"]["gates"]["propertyNames"]["enum"] == list(SCALAR_METRICS)
    assert schema_text().startswith("{\n") and schema_text().endswith("}\n")


def test_every_suite_in_the_repo_is_valid() -> None:
    suites = _repo_suites()
    assert {"thresholds/demo.yaml", "examples/weak.yaml"} <= {name for name, _ in suites}
    assert any(name.startswith("README.md") for name, _ in suites)
    validator = _validator()
    for name, data in suites:
        problems = [e.message for e in validator.iter_errors(data)]
        assert not problems, (name, problems)


@pytest.mark.parametrize("expression", [">= 0.8", "<=60", "> -1e-3", "< .5", ">= baseline", ">= baseline - 0.01",
                                        "<= baseline*1.1", " >  +2. ", "=> 1", "== 1", ">= nan", ">= ten", "baseline",
                                        ">= Baseline", ">= baseline / 2", "", ">=", ">= 1 2", ">= \u0663", ">= \uff13",
                                        ">=\u00a00", "\u2265 1", ">= 1\u2003", ">= baseline\u00a0- 1", ">=\t1\n"])
def test_the_gate_pattern_accepts_what_the_parser_accepts(expression: str) -> None:
    try:
        parse_bound(expression)
        parsed = True
    except SuiteError:
        parsed = False
    assert (re.fullmatch(GATE_PATTERN, expression) is not None) == parsed, expression


@pytest.mark.parametrize("gate", [
    [f">= {i}" for i in range(MAX_GATE_EXPRESSIONS + 1)], [">= 1000"] * 20_000, [">= 1", ">= 1"],
    ">= " + "0" * (MAX_EXPRESSION_LENGTH - 3) + "1", [">= 1", "<= " + "9" * MAX_EXPRESSION_LENGTH],
    ">= \u0663", ">=\u00a00",
], ids=["nine", "20000", "twice", "101-characters", "long-item", "arabic-digit", "no-break-space"])
def test_the_schema_refuses_gates_the_loader_refuses(gate: object) -> None:
    """A gate lists at most 8 different expressions of at most 100 ASCII characters, for the schema and the loader."""
    from pytest_saeval.spec.gates import parse_gate

    schema = suite_schema()
    assert schema["$defs"]["gate"]["oneOf"][1]["maxItems"] == MAX_GATE_EXPRESSIONS
    assert schema["$defs"]["expression"]["maxLength"] == MAX_EXPRESSION_LENGTH
    validator = jsonschema.Draft202012Validator(schema["$defs"]["gates"] | {"$defs": schema["$defs"]})
    assert not validator.is_valid({"l0": gate})
    with pytest.raises(SuiteError):
        parse_gate("l0", gate)
    longest = [f">= {i}" for i in range(MAX_GATE_EXPRESSIONS - 1)] + ["<= " + "9" * (MAX_EXPRESSION_LENGTH - 3)]
    assert validator.is_valid({"l0": longest}) and len(parse_gate("l0", longest).bounds) == MAX_GATE_EXPRESSIONS


_STRUCTURE = {"gates", "model", "data", "dataset", "data_files", "saes", "defaults", "gate_mode"}
_PROBES: list[object] = [
    0, 1, 8, 8.0, 8.5, -1, -1.0, 0.0, MAX_COUNT, float(MAX_COUNT), MAX_COUNT + 1, float(MAX_COUNT + 1), 1e300,
    math.inf, -math.inf, True, False, None, "8", "8.0", "", " ", "x", "cpu", "cuda:0", "float32", "a:b", "sae_lens",
    "blocks.0.hook_z", "a/b", "a\0b", [], [0], [0.0], [50256.0], [0.5], [True], [-1], [-1.0], ["1"], [MAX_TOKEN_ID],
    [MAX_TOKEN_ID + 1], [float(2**62)], [float(2**63)], {"a": 1},
]
"""Values for every kind of key: integers and the floats that stand for them (``8.0``) or do not (``8.5``),
bounds and one past them, booleans, strings, lists."""


def _refused(section: str, name: str, value: object) -> bool:
    try:
        check_field(section, name, value)
    except Invalid:
        return True
    return False


@pytest.mark.parametrize(("section", "name", "kind"), [(s, f.name, f.kind) for s, entries in SECTIONS.items()
                                                       for f in entries if f.kind not in _STRUCTURE])
def test_the_schema_accepts_no_value_the_loader_refuses(section: str, name: str, kind: str) -> None:
    """Each key's fragment against its check. An integer key says ``integer`` with the check's minimum and
    maximum, so there they agree both ways; JSON Schema's integers (``8.0`` too) are integers to the check."""
    schema = suite_schema()
    fragment = (schema if section == "suite" else schema["$defs"][section])["properties"][name]
    validator = jsonschema.Draft202012Validator(fragment)
    for value in _PROBES:
        refused = _refused(section, name, value)
        assert not (validator.is_valid(value) and refused), f"the schema accepts {name}: {value!r}, the loader refuses it"
        if kind in ("count", "exclude"):
            assert validator.is_valid(value) == (not refused), f"{name}: {value!r}"
