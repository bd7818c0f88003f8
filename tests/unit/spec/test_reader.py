"""Reading a suite file's YAML: safe-load semantics, line numbers, refused tags and duplicate keys, and
every file-level error located at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.spec.loader import load_suite
from tests.unit.spec.suite_files import MINIMAL, assert_error, write


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SuiteError) as info:
        load_suite(tmp_path / "nope.yaml")
    assert str(info.value).startswith(f"{tmp_path / 'nope.yaml'}: suite file not found")
    assert "Fix: " in str(info.value)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="is a folder"):
        load_suite(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"model:\n  name: gpt2\n  dtype: \xff\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value).startswith(f"{path}:3: ") and "UTF-8" in str(info.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    assert_error(tmp_path, text, 1, None, "empty", "model:")


def test_malformed_yaml_reports_parser_line(tmp_path: Path) -> None:
    message = assert_error(
        tmp_path,
        """\
        model:
          name: gpt2
        data:
          tokens: t.npy
         context_size: 3
        saes: []
        """,
        5,
        None,
        "invalid YAML",
    )
    assert "syntax" in message


def test_unclosed_quote(tmp_path: Path) -> None:
    assert_error(tmp_path, 'model:\n  name: "gpt2\ndata: {}\n', 4, None, "invalid YAML")


@pytest.mark.parametrize("expr", [">= 10", "> 10"])
def test_unquoted_gate_expression_hint(tmp_path: Path, expr: str) -> None:
    assert_error(
        tmp_path,
        MINIMAL + f"    gates:\n      l0: {expr}\n",
        9,
        None,
        "invalid YAML",
        "quote gate expressions",
    )


def test_unquoted_gate_in_flow_list_hint(tmp_path: Path) -> None:
    assert_error(tmp_path, MINIMAL + "    gates:\n      l0: [>= 10, <= 60]\n", 9, None, "quote gate expressions")


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/object/apply:os.system ['echo hi']", "!!python/object/apply:os.system"),
        ("!!python/name:os.system", "!!python/name:os.system"),
        ("!!python/object:collections.OrderedDict {}", "!!python/object:collections.OrderedDict"),
        ("!custom thing", "!custom"),
        ("!!set {a, b}", "!!set"),
        ("!!binary aGVsbG8=", "!!binary"),
    ],
)
def test_tags_are_refused(tmp_path: Path, value: str, tag: str) -> None:
    assert_error(tmp_path, f"model:\n  name: gpt2\ndata:\n  tokens: {value}\n", 4, None, "tags are not allowed", tag)


def test_python_tag_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    assert_error(tmp_path, f"x: !!python/object/apply:os.system ['touch {marker}']\n", 1, None, "tags are not allowed")
    assert not marker.exists()


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    assert_error(tmp_path, "model:\n  name: gpt2\n  name: gpt3\n", 3, None, "duplicate key 'name'", "first on line 2")


def test_multiple_documents(tmp_path: Path) -> None:
    assert_error(tmp_path, MINIMAL + "---\nmodel: {name: x}\n", 8, None, "another document", "'---'")


def test_recursive_alias(tmp_path: Path) -> None:
    assert_error(tmp_path, "model: &a\n  name: *a\n", 1, None, "invalid YAML")


def test_loader_leaves_yaml_safe_load_alone(tmp_path: Path) -> None:
    import datetime

    import yaml

    load_suite(write(tmp_path, MINIMAL))
    assert yaml.safe_load("d: 2024-01-01") == {"d": datetime.date(2024, 1, 1)}
    assert type(yaml.safe_load("{a: 1}")) is dict
