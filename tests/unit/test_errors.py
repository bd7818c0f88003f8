"""Errors: one line naming where, what and the fix; the subject as data; located and moved copies;
pickling (pytest-xdist ships errors between processes); long messages cut in the middle, the whole
text kept in ``detail``."""

from __future__ import annotations

import pickle

import pytest

from pytest_saeval.errors import (
    MESSAGE_LIMIT,
    BaselineError,
    InputError,
    Location,
    SaevalError,
    SourceError,
    Subject,
    SuiteError,
    brief,
    clip,
    did_you_mean,
)


def _raised_from(cause: BaseException, error: SaevalError) -> SaevalError:
    try:
        raise error from cause
    except SaevalError as e:
        return e


def test_one_line_with_file_line_key_message_and_fix() -> None:
    e = SuiteError("unknown metric 'x'", fix="rename the gate", file="s.yaml", line=7, key="saes[0].gates.x")
    assert str(e) == "s.yaml:7: saes[0].gates.x: unknown metric 'x'. Fix: rename the gate"
    assert e.location == Location(file="s.yaml", line=7, key="saes[0].gates.x")
    assert (e.message, e.fix) == ("unknown metric 'x'", "rename the gate")
    assert e.subject == Subject()
    assert str(SaevalError("no SAEs")) == "no SAEs"
    assert str(SaevalError("no SAEs.", fix="add one")) == "no SAEs. Fix: add one"  # one period before the fix


@pytest.mark.parametrize(
    ("location", "prefix"),
    [
        (Location(), ""),
        (Location(file="a.yaml"), "a.yaml"),
        (Location(file="a.yaml", line=3), "a.yaml:3"),
        (Location(key="data.tokens"), "data.tokens"),
        (Location(line=3, key="data.tokens"), "data.tokens"),  # a line without its file is not shown
        (Location(file="a.yaml", line=3, key="data.tokens"), "a.yaml:3: data.tokens"),
    ],
)
def test_location_prefix(location: Location, prefix: str) -> None:
    assert location.prefix() == prefix


def test_every_error_type_is_a_saeval_error() -> None:
    for cls in (SuiteError, SourceError, InputError, BaselineError):
        assert issubclass(cls, SaevalError)
        assert isinstance(cls("m"), Exception)


def test_an_error_about_an_sae_outside_a_suite_derives_its_key_from_the_subject() -> None:
    e = InputError("d_in is 7 but the hook gives 16", fix="use the SAE's own hook",
                   subject=Subject(sae="layer1", part="d_in"))
    assert e.location.key == "saes.layer1.d_in"
    assert str(e) == "saes.layer1.d_in: d_in is 7 but the hook gives 16. Fix: use the SAE's own hook"
    assert InputError("m", subject=Subject(sae="layer1")).location.key == "saes.layer1"
    # inside a suite, or with a key given, nothing is derived
    assert InputError("m", subject=Subject(suite="s.yaml", sae="layer1")).location.key is None
    assert InputError("m", key="saes[0]", subject=Subject(sae="layer1", part="d_in")).location.key == "saes[0]"
    assert InputError("m", subject=Subject(part="d_in")).location.key is None


def test_located_fills_only_the_missing_parts() -> None:
    bare = SourceError("model folder does not exist", fix="check the path")
    located = bare.located(file="s.yaml", line=3, key="model.path")
    assert str(located) == "s.yaml:3: model.path: model folder does not exist. Fix: check the path"
    assert type(located) is SourceError and located is not bare
    assert bare.location == Location()  # the original is left as it was

    own = SourceError("bad row", file="s.yaml", line=2, key="tokens")
    assert own.located(file="s.yaml", line=9, key="data.tokens").location == Location("s.yaml", 2, "tokens")
    keyless = SourceError("bad row", file="s.yaml", line=2)
    assert keyless.located(file="s.yaml", line=9, key="data.tokens").location == Location("s.yaml", 2, "data.tokens")


def test_located_gives_a_line_only_to_its_own_file() -> None:
    other_file = SourceError("truncated", file="tokens.npy").located(file="s.yaml", line=9, key="data.tokens")
    assert other_file.location == Location(file="tokens.npy", line=None, key="data.tokens")
    assert str(other_file) == "tokens.npy: data.tokens: truncated"
    same_file = SourceError("truncated", file="s.yaml").located(file="s.yaml", line=9)
    assert same_file.location == Location(file="s.yaml", line=9)


def test_located_replaces_the_subject_only_when_given() -> None:
    e = SaevalError("m", subject=Subject(sae="x"))
    assert e.located(file="s.yaml").subject == Subject(sae="x")
    where = Subject(suite="s.yaml", entry=1)
    assert e.located(file="s.yaml", subject=where).subject == where


def test_moved_relocates_every_part_and_keeps_type_fix_and_cause() -> None:
    e = _raised_from(OSError("disk"), InputError("d_in is 7", fix="f", subject=Subject(sae="s.yaml::a", part="d_in")))
    assert e.location.key == "saes.s.yaml::a.d_in"
    where = Subject(suite="s.yaml", entry=1, sae="a", part="d_in")
    moved = e.moved(file="s.yaml", line=12, key="saes[1].d_in", subject=where)
    assert str(moved) == "s.yaml:12: saes[1].d_in: d_in is 7. Fix: f"
    assert type(moved) is InputError and moved.subject == where and moved.fix == "f"
    assert isinstance(moved.__cause__, OSError)
    assert isinstance(e.located(file="s.yaml").__cause__, OSError)
    # unlike located(), moved() also replaces parts the error had
    anywhere = e.moved(file=None, line=None, key=None, subject=Subject())
    assert anywhere.location == Location() and str(anywhere) == "d_in is 7. Fix: f"


@pytest.mark.parametrize("cls", [SaevalError, SuiteError, SourceError, InputError, BaselineError])
def test_pickling_keeps_type_location_fix_and_subject(cls: type[SaevalError]) -> None:
    e = cls("no value", fix="record it", file="s.yaml", line=4, key="saes[0].gates.l0",
            subject=Subject(suite="s.yaml", entry=0, sae="a", part="W_dec"))
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is cls and str(again) == str(e)
    assert again.location == e.location and again.subject == e.subject
    assert (again.message, again.fix) == ("no value", "record it")


def test_pickling_an_error_with_a_derived_key() -> None:
    again = pickle.loads(pickle.dumps(InputError("m", subject=Subject(sae="a", part="d_in"))))
    assert again.location.key == "saes.a.d_in" and again.subject == Subject(sae="a", part="d_in")


def test_did_you_mean() -> None:
    assert did_you_mean("explained_varience", ["explained_variance", "l0"]) == " (did you mean 'explained_variance'?)"
    assert did_you_mean("accuracy", ["l0", "l1"]) == ""
    assert did_you_mean("l", ["l0", "l1", "mse"]) == " (did you mean 'l1' or 'l0'?)"
    assert did_you_mean("l", ["l0", "l1", "l2", "l3"], n=3).count("'") == 6  # at most n suggestions


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
