"""Reading a suite file's YAML: safe-load semantics, line numbers, refused tags and duplicate keys, and
every file-level error located at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.reader import YamlMap, YamlSeq, key_line, key_lines, read_yaml
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


@pytest.mark.parametrize("merge", ["<<: 5", "<<: [1, 2]", '<<: ">= 1"'])
def test_a_merge_key_without_a_mapping_says_so(tmp_path: Path, merge: str) -> None:
    """The line starts with '<', as an unquoted gate does, but the fix is about the merge key."""
    message = assert_error(tmp_path, MINIMAL + f"    gates:\n      {merge}\n      l0: \">= 1\"\n", 9, None,
                           "invalid YAML", "for merging", "Fix: a merge key `<<:` takes a mapping")
    assert "quote gate expressions" not in message


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


# ---------------------------------------------------------------------------- read_yaml itself

READ = """\
# a comment
top:
  name: gpt2
  items:
    - first
    - {inline: 1}
base: &base
  x: 1
  y: 2
derived:
  <<: *base
  y: 3
when: 2024-01-01
"""


def _read(tmp_path: Path, text: str, shown: str = "shown.yaml") -> object:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return read_yaml(path, shown)


def test_mappings_and_lists_remember_their_lines(tmp_path: Path) -> None:
    data = _read(tmp_path, READ)
    assert isinstance(data, YamlMap) and data.line == 2
    assert data.key_lines == {"top": 2, "base": 7, "derived": 10, "when": 13}
    top = data["top"]
    assert isinstance(top, YamlMap) and top.line == 3 and top.key_lines == {"name": 3, "items": 4}
    items = top["items"]
    assert isinstance(items, YamlSeq) and items == ["first", {"inline": 1}]
    assert items.line == 5 and items.item_lines == [5, 6]
    assert isinstance(items[1], YamlMap) and items[1].line == 6
    assert key_line(data, "derived", None) == 10 and key_line(data, "missing", 99) == 99
    assert key_line({"plain": 1}, "plain", 7) == 7  # a mapping not read here has no lines
    assert key_lines(top) == (("name", 3), ("items", 4)) and key_lines({"plain": 1}) == ()


def test_merge_keys_come_first_and_explicit_keys_win(tmp_path: Path) -> None:
    data = _read(tmp_path, READ)
    derived = data["derived"]  # type: ignore[index]
    assert derived == {"x": 1, "y": 3}
    assert derived.key_lines["y"] == 12  # the explicit key's own line
    assert derived.key_lines["x"] == 8  # a merged key keeps the line where it was written


def test_safe_load_values(tmp_path: Path) -> None:
    data = _read(tmp_path, "a: 1\nb: 1.5\nc: true\nd: null\ne: '>= 0.8'\nf: 2024-01-01\ng: 0x10\n")
    assert data == {"a": 1, "b": 1.5, "c": True, "d": None, "e": ">= 0.8", "f": "2024-01-01", "g": 16}
    assert type(data["f"]) is str  # type: ignore[index]
    assert _read(tmp_path, "42\n") == 42 and _read(tmp_path, "- a\n- b\n") == ["a", "b"]  # the loader judges shape


def test_errors_name_the_file_as_given(tmp_path: Path) -> None:
    with pytest.raises(SuiteError) as info:
        _read(tmp_path, "a: 1\na: 2\n", shown="thresholds/demo.yaml")
    assert str(info.value).startswith("thresholds/demo.yaml:2: duplicate key 'a' (first on line 1). Fix: ")
    with pytest.raises(SuiteError) as info:
        read_yaml(tmp_path / "missing.yaml", "thresholds/missing.yaml")
    assert str(info.value).startswith("thresholds/missing.yaml: suite file not found. Fix: ")


def test_a_key_that_is_not_a_plain_value(tmp_path: Path) -> None:
    with pytest.raises(SuiteError) as info:
        _read(tmp_path, "model: x\n? [a, b]\n: 1\n")
    assert str(info.value).startswith("shown.yaml:2: a mapping key must be a plain value, not a list or mapping")


@pytest.mark.parametrize("tag", ["!!omap", "!!pairs"])
def test_ordered_maps_and_pairs_are_tags_too(tmp_path: Path, tag: str) -> None:
    with pytest.raises(SuiteError, match=f"tags are not allowed: '{tag}'") as info:
        _read(tmp_path, f"model: x\ngates: {tag} [{{a: 1}}]\n")
    assert info.value.location.line == 2
