"""``saeval schema`` and the bad-input matrix: the schema rejects the cases a schema can express, and
accepts the valid suite they start from."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from pytest_saeval.cli import main
from pytest_saeval.errors import SuiteError
from pytest_saeval.spec.loader import load_suite
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


_FLOAT_FOR_INT = [("context_size", "8.0", 8), ("context_size", "8.5", None), ("batch_size_prompts", "2.0", 2),
                  ("batch_size_prompts", "2.5", None), ("n_reconstruction_batches", "1.0", 1),
                  ("n_reconstruction_batches", "0.0", None), ("n_sparsity_batches", "1.0", 1),
                  ("n_sparsity_batches", ".inf", None), ("exclude_special_tokens", "[0.0, 3.0]", (0, 3)),
                  ("exclude_special_tokens", "[0.5]", None)]


@pytest.mark.parametrize(("key", "text", "value"), _FLOAT_FOR_INT, ids=[f"{k}-{t}" for k, t, _ in _FLOAT_FOR_INT])
def test_a_float_for_an_integer_is_judged_alike_by_the_schema_and_the_loader(
        tiny: Assets, tmp_path: Path, key: str, text: str, value: object) -> None:
    """JSON Schema's ``integer`` takes ``8.0`` (a number with no fractional part), so the loader reads it as 8;
    ``8.5``, ``0.0`` and ``.inf`` are refused by both, the loader's error located at the key."""
    base = base_suite(tiny)
    lines = [line for line in base.splitlines() if not line.strip().startswith(f"{key}:")]
    at = lines.index("data:") + 1
    suite = tmp_path / "suite.yaml"
    suite.write_text("\n".join([*lines[:at], f"  {key}: {text}", *lines[at:]]) + "\n", encoding="utf-8")
    valid = jsonschema.Draft202012Validator(suite_schema()).is_valid(yaml.safe_load(suite.read_text()))
    assert valid == (value is not None), f"the schema {'accepts' if valid else 'refuses'} {key}: {text}"
    if value is not None:
        loaded = getattr(load_suite(suite).data, key)
        assert loaded == value and all(type(v) is int for v in (loaded if isinstance(loaded, tuple) else (loaded,)))
    else:
        with pytest.raises(SuiteError) as info:
            load_suite(suite)
        assert info.value.location.key == f"data.{key}" and info.value.location.file == str(suite)
        assert info.value.location.line == at + 1
