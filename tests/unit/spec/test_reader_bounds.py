"""Reading suite files: hostile YAML is refused at once, located, in one short message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.spec.reader import MAX_DEPTH, MAX_INT_DIGITS, MAX_NODES, MAX_SUITE_BYTES, read_yaml


def _read(tmp_path: Path, content: str | bytes) -> object:
    path = tmp_path / "s.yaml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return read_yaml(path, str(path))


def _refused(tmp_path: Path, content: str | bytes, *needles: str, line: int | None = None) -> str:
    started = time.monotonic()
    with pytest.raises(SuiteError) as info:
        _read(tmp_path, content)
    assert time.monotonic() - started < 2.0, "a hostile file must be refused at once"
    message = str(info.value)
    assert len(message) < 600, message
    for needle in needles:
        assert needle in message, message
    if line is not None:
        assert info.value.location.line == line, message
    assert "Fix: " in message
    return message


def _bomb(levels: int, width: int = 9) -> str:
    items = ["&a0 [" + ", ".join(["0"] * width) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize(("char", "code"), [("\x07", "U+0007"), ("\x00", "U+0000"), ("\x1b", "U+001B"),
                                            ("\ufffe", "U+FFFE")])
def test_control_characters_are_located(tmp_path: Path, char: str, code: str) -> None:
    _refused(tmp_path, f"a: 1\nb: x{char}y\n", code, "control character", line=2)


def test_a_file_larger_than_the_limit_is_refused_without_parsing(tmp_path: Path) -> None:
    _refused(tmp_path, "a: 1\n#" + "x" * MAX_SUITE_BYTES, "larger than 256 KiB")
    assert _read(tmp_path, "a: 1\n#" + "x" * (MAX_SUITE_BYTES - 20)) == {"a": 1}  # just under: read


def test_nesting_is_capped_in_flow_and_block_style(tmp_path: Path) -> None:
    _refused(tmp_path, "a: " + "[" * 20000 + "]" * 20000 + "\n", f"more than {MAX_DEPTH} levels", line=1)
    block = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5))
    _refused(tmp_path, block, f"more than {MAX_DEPTH} levels")
    ok = "a: " + "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2) + "\n"
    assert isinstance(_read(tmp_path, ok), dict)


def test_nesting_through_aliases_is_capped(tmp_path: Path) -> None:
    deep = "[" * 20 + "1" + "]" * 20
    _refused(tmp_path, f"a: &x {deep}\nb: &y {deep.replace('1', '*x')}\n", "through aliases", line=2)


def test_alias_bombs_are_refused_before_anything_expands_them(tmp_path: Path) -> None:
    text = f"lol: {_bomb(9)}\n"
    assert len(text) < 1000  # under a kilobyte, 9**9 values once expanded
    _refused(tmp_path, text, f"more than {MAX_NODES:,} values")
    merge = ["m0: &m0 {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1}"]
    merge += [f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 9) + "]}" for i in range(1, 9)]
    _refused(tmp_path, "\n".join(merge) + "\n", "values through anchors and aliases")


def test_small_shared_blocks_through_aliases_still_work(tmp_path: Path) -> None:
    data = _read(tmp_path, "g: &g {l0: '>= 1', frac_alive: '>= 0.9'}\na: *g\nb: {<<: *g, l0: '>= 2'}\n")
    assert data == {"g": {"l0": ">= 1", "frac_alive": ">= 0.9"}, "a": {"l0": ">= 1", "frac_alive": ">= 0.9"},
                    "b": {"l0": ">= 2", "frac_alive": ">= 0.9"}}
    assert len(_read(tmp_path, f"lol: {_bomb(4)}\n")["lol"]) == 4  # 9**4 values: under the cap


def test_an_alias_inside_its_own_block_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "a: &a [1, *a]\n", "invalid YAML", "contains it", line=1)


def test_huge_integers_are_refused_and_ordinary_ones_kept(tmp_path: Path) -> None:
    _refused(tmp_path, "a: 1\nb: " + "9" * 5000 + "\n", "5000 digits", line=2)
    _refused(tmp_path, "b: -0x" + "f" * 40 + "\n", f"at most {MAX_INT_DIGITS}")
    assert _read(tmp_path, f"a: {2**63 - 1}\nb: -12\nc: 0x1F\nd: 1_000\n") == {"a": 2**63 - 1, "b": -12, "c": 31,
                                                                                 "d": 1000}


@pytest.mark.parametrize("what", ["fifo", "folder", "unreadable-name"])
def test_what_is_not_a_readable_file_is_located(tmp_path: Path, what: str) -> None:
    import os

    path = tmp_path / "s.yaml"
    if what == "fifo":
        os.mkfifo(path)
        expect = "not a regular file"
    elif what == "folder":
        path.mkdir()
        expect = "is a folder"
    else:
        path = tmp_path / ("x" * 300 + ".yaml")
        expect = "cannot read the suite file"
    with pytest.raises(SuiteError, match=expect):
        read_yaml(path, str(path))
