"""What the commands check before anything loads (each refusal one error naming its flag), ``schema``'s output,
and whether a stream is a terminal. (Whole runs through ``main``: tests/integration/test_cli_*.py.)"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pytest_saeval.cli import commands
from pytest_saeval.cli.args import parser
from pytest_saeval.cli.signals import Signals
from pytest_saeval.errors import InputError, OutputError, SaevalError
from pytest_saeval.spec.schema import schema_text


def _args(*argv: str):
    return parser().parse_args(list(argv))


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.schema(_args("schema"), Signals()) == commands.EXIT_OK
    out = capsys.readouterr().out
    assert out == schema_text() and json.loads(out)["type"] == "object"


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", "CUDA"])  # one lower-case vocabulary, as --saeval-device
def test_run_refuses_an_unknown_device_before_reading_any_suite(tmp_path: Path, device: str) -> None:
    with pytest.raises(InputError, match=f"unknown device '{device}'") as info:
        commands.run(_args("run", str(tmp_path / "missing.yaml"), "--device", device), Signals())
    assert info.value.location.key == "--device" and "--device auto, cpu, cuda or cuda:N" in (info.value.fix or "")


def test_run_refuses_a_file_as_output_or_cache_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for flag in ("--output-dir", "--cache-dir"):
        with pytest.raises(InputError, match="folder is a file") as info:
            commands.run(_args("run", str(tmp_path / "missing.yaml"), flag, str(tmp_path / "f")), Signals())
        assert info.value.location.key == flag and info.value.location.file == str(tmp_path / "f")


def test_run_refuses_a_report_that_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "page.html").mkdir()
    with pytest.raises(OutputError, match="cannot write .*page.html: it is a folder") as info:
        commands.run(_args("run", str(tmp_path / "missing.yaml"), "--report", str(tmp_path / "page.html")), Signals())
    assert info.value.location.key == "--report"


def test_merge_never_writes_into_a_shards_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="would overwrite a shard's folder") as info:
        commands.merge(_args("merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--output-dir",
                             str(tmp_path / "s2" / ".." / "s2")), Signals())
    assert info.value.location.key == "--output-dir"


def test_init_without_a_suite_names_every_missing_flag(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="without a suite file, init needs --sae, --tokens, --output") as info:
        commands.init(_args("init", "--model", str(tmp_path)), Signals())
    assert info.value.location.key == "init"


def test_init_with_a_suite_refuses_the_new_suite_flags(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="a suite file and --model, --tokens were given") as info:
        commands.init(_args("init", "s.yaml", "--model", "m", "--tokens", "t.npy"), Signals())
    assert info.value.location.key == "init" and "drop --model, --tokens to propose gates for s.yaml" in str(info.value)


def test_a_new_suites_sae_folders_are_checked_by_flag_before_it_is_written(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "tokens.npy").write_bytes(b"")
    argv = ["--model", str(tmp_path / "model"), "--sae", str(tmp_path / "empty"), "--tokens", str(tmp_path / "tokens.npy")]
    with pytest.raises(SaevalError, match="holds no SAE checkpoint") as info:
        commands.init(_args("init", *argv, "--output", str(tmp_path / "new.yaml")), Signals())
    assert info.value.location.key == "--sae" and info.value.location.file is None
    assert not (tmp_path / "new.yaml").exists()


@pytest.mark.parametrize(("flag", "name", "what"), [("--model", "nope", "does not exist; it must be a folder"),
                                                    ("--sae", "tokens.npy", "is a file; it must be a folder"),
                                                    ("--tokens", "model", "is a folder; it must be a file")])
def test_a_new_suites_inputs_are_checked_by_flag_before_it_is_written(tmp_path: Path, flag: str, name: str,
                                                                      what: str) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "sae").mkdir()
    (tmp_path / "tokens.npy").write_bytes(b"")
    given = {"--model": tmp_path / "model", "--sae": tmp_path / "sae", "--tokens": tmp_path / "tokens.npy",
             flag: tmp_path / name}
    argv = [arg for f, path in given.items() for arg in (f, str(path))]
    with pytest.raises(InputError) as info:
        commands.init(_args("init", *argv, "--output", str(tmp_path / "new.yaml")), Signals())
    assert info.value.location.key == flag and info.value.message == f"{tmp_path / name} {what}"
    assert not (tmp_path / "new.yaml").exists()


def test_a_bad_margin_names_its_flag(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        commands.init(_args("init", str(tmp_path / "s.yaml"), "--margin-rel", "-1"), Signals())
    assert info.value.location.key == "--margin-rel" and "--margin-rel" in info.value.message
    assert info.value.message == "--margin-rel must be a number from 0 to 10, got -1.0"
    assert "give --margin-rel a number from 0 to 10" in (info.value.fix or "")


def test_the_cache_folder_expands_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quoted ``--cache-dir '~/c'`` or a ``SAEVAL_CACHE_DIR=~/x`` from CI used to make a folder named ``~``."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    suite = tmp_path / "s.yaml"
    assert commands._run_options(_args("run", str(suite), "--cache-dir", "~/c"), suite).cache_dir == tmp_path / "home" / "c"
    monkeypatch.setenv("SAEVAL_CACHE_DIR", "~/x")
    assert commands._run_options(_args("run", str(suite)), suite).cache_dir == tmp_path / "home" / "x"
    monkeypatch.setenv("SAEVAL_CACHE_DIR", " ")  # blank: unset, the project's cache folder
    assert commands._run_options(_args("run", str(suite)), suite).cache_dir == tmp_path / ".saeval-cache"


def test_is_terminal() -> None:
    assert commands.is_terminal(io.StringIO()) is False
    closed = io.StringIO()
    closed.close()
    assert commands.is_terminal(closed) is False
    assert commands.is_terminal(object()) is False

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert commands.is_terminal(Tty()) is True
