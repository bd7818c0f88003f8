"""Error messages: one line, long parts cut in the middle, the whole text kept in ``detail``."""

from __future__ import annotations

import pickle

from pytest_saeval.errors import MESSAGE_LIMIT, SuiteError, brief, clip


def test_short_messages_are_untouched() -> None:
    e = SuiteError("x must be 1", fix="set x: 1", file="s.yaml", line=3, key="x")
    assert str(e) == e.detail == "s.yaml:3: x: x must be 1. Fix: set x: 1"


def test_long_messages_are_cut_and_detail_keeps_them() -> None:
    message = "bad value " + "y" * 100_000
    e = SuiteError(message, fix="do " + "z" * 5000, file="s.yaml", line=3, key="x")
    line = str(e)
    assert len(line) < 2 * MESSAGE_LIMIT + 200
    assert line.startswith("s.yaml:3: x: bad value y") and "characters left out" in line and ". Fix: do z" in line
    assert e.detail == f"s.yaml:3: x: {message}. Fix: do " + "z" * 5000
    again = pickle.loads(pickle.dumps(e))  # xdist ships errors between processes
    assert again.detail == e.detail and str(again) == line


def test_clip_and_brief() -> None:
    assert clip("abc", 10) == "abc"
    cut = clip("a" * 1000 + "END", 100)
    assert len(cut) < 140 and cut.endswith("END") and "left out" in cut
    assert brief([0] * 10) == repr([0] * 10)
    long = brief(list(range(100_000)))
    assert len(long) < 100 and long.endswith("characters)")
