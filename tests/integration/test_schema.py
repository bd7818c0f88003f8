"""``saeval schema`` and the bad-input matrix: the schema rejects the cases a schema can express, and
accepts the valid suite they start from."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from pytest_saeval.cli import main
from pytest_saeval.spec.schema import suite_schema
from tests.integration.badinput.cases import CASES, Assets, BadInputCase, materialise, shared_assets
from tests.integration.badinput.kit import base_suite

SCHEMA_CASES = [c for c in CASES if c.schema]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return shared_assets(tmp_path_factory)


def test_saeval_schema_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and json.loads(out) == suite_schema()


def test_the_valid_suite_the_cases_start_from_is_valid(tiny: Assets) -> None:
    jsonschema.validate(yaml.safe_load(base_suite(tiny)), suite_schema())


def test_enough_cases_are_schema_cases() -> None:
    assert len(SCHEMA_CASES) >= 30


@pytest.mark.parametrize("case", SCHEMA_CASES, ids=lambda c: c.name)
def test_the_schema_rejects_the_case(case: BadInputCase, tiny: Assets, tmp_path: Path) -> None:
    suite = materialise(case, tmp_path / "case", tiny)
    data = yaml.safe_load(suite.read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft202012Validator(suite_schema()).iter_errors(data))
    assert errors, f"the schema accepts {case.name}"
