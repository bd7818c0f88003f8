"""Baseline files: round trip, rounding, refusal of non-finite values, and every load error."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from pytest_saeval import fileio
from pytest_saeval.errors import BaselineError
from pytest_saeval.spec.baseline import Baseline, load_baseline, write_baseline
from pytest_saeval.spec.gates import parse_gate
from pytest_saeval.spec.verdict import check_gate
from tests.helpers import NEEDS_DEV_ZERO, NEEDS_FIFO


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "baselines" / "demo.json"
    values = {
        "layer1-topk": {"explained_variance": 0.8312345678, "l0": 35.12345678, "total_tokens_eval_reconstruction": 20480},
        "gpt2/res.8": {"ce_loss_score": 0.99},
    }
    provenance = {"layer1-topk": {"sae_xxh3": "ab" * 16, "tokens_xxh3": "cd" * 16, "n_rows": 160}}
    write_baseline(path, values, provenance)
    baseline = load_baseline(path)
    assert baseline.path == path
    assert baseline.sae_ids == ("gpt2/res.8", "layer1-topk")
    assert baseline.value("layer1-topk", "explained_variance") == 0.831235
    assert baseline.value("layer1-topk", "l0") == 35.1235
    assert baseline.value("layer1-topk", "total_tokens_eval_reconstruction") == 20480
    assert baseline.value("gpt2/res.8", "ce_loss_score") == 0.99
    assert baseline.value("layer1-topk", "mse") is None
    assert baseline.value("missing", "l0") is None
    assert baseline.provenance("layer1-topk") == provenance["layer1-topk"]
    assert baseline.provenance("gpt2/res.8") is None
    # a second write of what was read changes nothing
    before = path.read_bytes()
    write_baseline(path, baseline.values, baseline.provenances)
    assert path.read_bytes() == before
    assert load_baseline(path) == baseline


def test_file_format(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    write_baseline(path, {"z": {"l0": 12.3456789, "cossim": 1e-9 / 3}, "a": {"mse": 123456789.0}})
    text = path.read_text()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == (
        "{\n"
        '  "saes": {\n'
        '    "a": {\n'
        '      "mse": 123457000.0\n'
        "    },\n"
        '    "z": {\n'
        '      "cossim": 3.33333e-10,\n'
        '      "l0": 12.3457\n'
        "    }\n"
        "  }\n"
        "}\n"
    )
    assert "provenance" not in json.loads(text)


def test_baseline_value_feeds_gates(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    write_baseline(path, {"s": {"ce_loss_score": 0.9412}})
    baseline = load_baseline(path)
    gate = parse_gate("ce_loss_score", ">= baseline - 0.01")
    result = check_gate(gate, 0.9201, baseline.value("s", "ce_loss_score"))
    assert not result.passed and "(= 0.9312)" in result.message
    with pytest.raises(BaselineError, match="no baseline value"):
        check_gate(gate, 0.95, baseline.value("other", "ce_loss_score"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_write_refuses_non_finite(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "b.json"
    write_baseline(path, {"s": {"l0": 3.0}})
    before = path.read_bytes()
    with pytest.raises(BaselineError) as info:
        write_baseline(path, {"s": {"l0": 4.0, "explained_variance": bad}})
    message = str(info.value)
    assert message.startswith(f"{path}: saes.s.explained_variance: refusing to record")
    assert "Fix: " in message
    assert path.read_bytes() == before  # nothing written
    assert "NaN" not in path.read_text()


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"s": {"l0": "3"}}, "must be a number"),
        ({"s": {"l0": True}}, "must be a number"),
        ({"s": {"l0": None}}, "must be a number"),
        ({"": {"l0": 1.0}}, "SAE id must be a non-empty string"),
        ({1: {"l0": 1.0}}, "SAE id must be a non-empty string"),
        ({"s": {"": 1.0}}, "metric name"),
        ({"s": [1.0]}, "must be a mapping"),
    ],
)
def test_write_refuses_bad_values(tmp_path: Path, values: dict, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(BaselineError, match=needle):
        write_baseline(tmp_path / "b.json", values)
    assert not (tmp_path / "b.json").exists()


def test_write_refuses_unserialisable_provenance(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="provenance cannot be written"):
        write_baseline(tmp_path / "b.json", {"s": {"l0": 1.0}}, {"s": {"when": object()}})
    with pytest.raises(BaselineError, match="provenance cannot be written"):
        write_baseline(tmp_path / "b.json", {"s": {"l0": 1.0}}, {"s": {"x": float("nan")}})
    assert not (tmp_path / "b.json").exists()


def test_write_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "b.json"
    write_baseline(path, {"s": {"l0": 3.0}})
    before = path.read_bytes()
    real_write = os.write

    def half_then_fail(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "write", half_then_fail)
    with pytest.raises(BaselineError) as info:
        write_baseline(path, {"s": {"l0": 4.0}})
    assert "No space left on device" in str(info.value) and "Fix: " in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    message = str(info.value)
    assert message.startswith(f"baseline file '{path}' not found")
    assert "--saeval-update-baseline" in message and "saeval run --update-baseline" in message
    empty = load_baseline(path, missing_ok=True)
    assert empty.values == {} and empty.value("s", "l0") is None and empty.path == path


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="is a folder"):
        load_baseline(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "b.json"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = write(tmp_path, text)
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    assert "Fix: " in str(info.value)
    return str(info.value), path


def test_corrupt_json_reports_line(tmp_path: Path) -> None:
    message, path = load_error(tmp_path, '{\n  "saes": {\n    "s": {"l0": 1.0,}\n  }\n}\n')
    assert message.startswith(f"{path}:3: invalid JSON")
    message, path = load_error(tmp_path, "")
    assert message.startswith(f"{path}:1: invalid JSON")
    message, path = load_error(tmp_path, '{"saes": {}')
    assert message.startswith(f"{path}:1: invalid JSON")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_bytes(b'{\n"saes": {"\xff": {}}}')
    with pytest.raises(BaselineError, match="UTF-8") as info:
        load_baseline(path)
    assert str(info.value).startswith(f"{path}:2: ")


@pytest.mark.parametrize(
    ("text", "line", "key", "needle"),
    [
        ("[1, 2]", 1, None, "must be a JSON object"),
        ('{"provenance": {}}', 1, None, 'missing the "saes" key'),
        ('{\n  "sae": {}\n}', 2, "sae", "did you mean 'saes'"),
        ('{\n  "saes": [1]\n}', 2, "saes", '"saes" must be an object'),
        ('{\n  "saes": {\n    "s": 0.5\n  }\n}', 3, "saes.s", "must be an object"),
        ('{\n  "saes": {\n    "s": {\n      "l0": "3"\n    }\n  }\n}', 4, "saes.s.l0", "must be a number"),
        ('{"saes": {"s": {"l0": true}}}', 1, "saes.s.l0", "must be a number"),
        ('{\n  "saes": {\n    "a": {"l0": 1},\n    "s": {\n      "l0": NaN\n    }\n  }\n}', 5, "saes.s.l0", "NaN and infinity cannot be a baseline"),
        ('{"saes": {"s": {"l0": Infinity}}}', 1, "saes.s.l0", "cannot be a baseline"),
        ('{"saes": {"s": {"l0": -Infinity}}}', 1, "saes.s.l0", "cannot be a baseline"),
        ('{"saes": {"s": {"l0": 1e999}}}', 1, "saes.s.l0", "cannot be a baseline"),
        ('{"saes": {}, "provenance": [1]}', 1, "provenance", '"provenance" must be an object'),
        ('{"saes": {}, "provenance": {"s": 3}}', 1, "provenance.s", "must be an object"),
    ],
)
def test_structure_errors(tmp_path: Path, text: str, line: int, key: str | None, needle: str) -> None:
    message, path = load_error(tmp_path, text)
    prefix = f"{path}:{line}: " + (f"{key}: " if key else "")
    assert message.startswith(prefix), message
    assert needle in message, message


def test_duplicate_key(tmp_path: Path) -> None:
    message, path = load_error(tmp_path, '{\n  "saes": {\n    "s": {"l0": 1},\n    "s": {"l0": 2}\n  }\n}\n')
    assert message.startswith(f"{path}:3: duplicate key 's'")


def test_minimal_file_and_null_provenance(tmp_path: Path) -> None:
    baseline = load_baseline(write(tmp_path, '{"saes": {}, "provenance": null}'))
    assert baseline.values == {} and baseline.provenances == {}
    baseline = load_baseline(write(tmp_path, '{"saes": {"s": {"l0": 3}}}'))
    assert baseline.value("s", "l0") == 3.0 and isinstance(baseline.value("s", "l0"), float)


def test_baseline_dataclass() -> None:
    baseline = Baseline(path="b.json", values={"s": {"l0": 2}}, provenances={"s": {"h": "x"}})  # type: ignore[arg-type]
    assert baseline.path == Path("b.json")
    assert pickle.loads(pickle.dumps(baseline)) == baseline
    copy = baseline.provenance("s")
    assert copy is not None
    copy["h"] = "changed"
    assert baseline.provenance("s") == {"h": "x"}
    with pytest.raises(AttributeError):
        baseline.path = Path("x")  # type: ignore[misc]
    with pytest.raises(BaselineError, match="finite"):
        Baseline(path=Path("b.json"), values={"s": {"l0": float("nan")}})


@pytest.mark.parametrize(("text", "needle"), [
    ('{"saes": {"x": {"l0": ' + "[" * 100_000 + "]" * 100_000 + "}}}", "nested more than 100 levels deep"),
    ('{"saes": {}, "provenance": {"x": ' + '{"a": ' * 200 + "1" + "}" * 200 + "}}", "nested more than 100 levels deep"),
    ('{"saes": {"x": {"l0": ' + "9" * 5000 + "}}}", "an integer with too many digits"),
], ids=["deep", "deep-provenance", "long-int"])
def test_json_python_cannot_read_is_one_located_error(tmp_path: Path, text: str, needle: str) -> None:
    message, path = load_error(tmp_path, text)
    assert message.startswith(f"{path}: the baseline file cannot be read: the JSON "), message
    assert needle in message and "--saeval-update-baseline" in message


def test_an_integer_beyond_a_float_is_one_located_error(tmp_path: Path) -> None:
    message, path = load_error(tmp_path, '{\n  "saes": {\n    "x": {\n      "l0": ' + "9" * 400 + "\n    }\n  }\n}")
    assert message.startswith(f"{path}:4: saes.x.l0: baseline value is an integer of 1329 bits (too large for a float)")
    with pytest.raises(BaselineError, match="too large for a float"):
        Baseline(path=path, values={"x": {"l0": 10**400}})


def test_a_file_over_the_limit_is_refused_naming_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pytest_saeval.spec.baseline.MAX_BASELINE_BYTES", 1024)
    path = write(tmp_path, '{"saes": {}, "provenance": {"x": {"pad": "' + "x" * 2000 + '"}}}')
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    assert str(info.value).startswith(f"the baseline file '{path}' is larger than 1 KiB. Fix: ")
    assert info.value.location.file is None  # the caller locates it at the suite's `baseline:` line


@NEEDS_DEV_ZERO
def test_a_link_to_dev_zero_is_refused_unread(tmp_path: Path) -> None:
    link = tmp_path / "b.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(BaselineError) as info:
        load_baseline(link, missing_ok=True)
    assert str(info.value).startswith(f"baseline path '{link}' is not a regular file (a character device). Fix: ")


@NEEDS_FIFO
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "b.json"
    os.mkfifo(fifo)
    with pytest.raises(BaselineError, match=r"is not a regular file \(a FIFO\)") as info:
        load_baseline(fifo)
    assert "point `baseline:` at a JSON file" in str(info.value)
