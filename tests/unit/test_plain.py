"""The one to-plain-data walker: scalars (numpy's too), NaN kept or written as null, containers,
dataclasses and ``to_dict()`` objects, text that never holds a memory address, and the depth cap."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pytest_saeval.plain import MAX_DEPTH, to_plain

NAN, INF = float("nan"), float("inf")


class _Version(str):
    """A ``str`` subclass, as ``torch.__version__`` is."""


class _Thing:
    """A plain object: its ``str()`` holds a memory address."""


@dataclass
class _Inner:
    x: float
    tags: tuple[str, ...] = ()


@dataclass
class _Outer:
    inner: _Inner
    path: Path
    extra: dict[int, object] = field(default_factory=dict)


class _WithToDict:
    def to_dict(self) -> dict[str, object]:
        return {"k": np.int32(1), "v": (np.float64(0.25),)}


@dataclass
class _BrokenToDict:
    a: int

    def to_dict(self) -> dict[str, object]:
        raise RuntimeError("cannot")


def test_scalars_become_builtins_of_the_same_value() -> None:
    assert to_plain(None) is None
    assert to_plain(True) is True and to_plain(False) is False
    for value, expected, kind in ((np.int64(3), 3, int), (np.int8(-3), -3, int), (np.uint16(7), 7, int),
                                  (np.float32(0.5), 0.5, float), (np.float64(1e-9), 1e-9, float),
                                  (7, 7, int), (2.5, 2.5, float)):
        out = to_plain(value)
        assert out == expected and type(out) is kind, value
    version = to_plain(_Version("2.12.0+cpu"))
    assert version == "2.12.0+cpu" and type(version) is str


def test_non_finite_numbers_kept_or_written_as_null() -> None:
    kept = to_plain([NAN, INF, -INF, np.float32("nan"), 1.0])
    assert isinstance(kept, list)
    assert math.isnan(kept[0]) and kept[1] == INF and kept[2] == -INF and math.isnan(kept[3]) and kept[4] == 1.0
    assert to_plain([NAN, INF, -INF, np.float64("nan"), 1.0, 2], nonfinite="null") == [None, None, None, None, 1.0, 2]
    nested = to_plain({"a": {"b": (NAN,)}}, nonfinite="null")
    assert nested == {"a": {"b": [None]}}
    assert json.loads(json.dumps(nested, allow_nan=False)) == nested  # strict JSON


def test_containers() -> None:
    assert to_plain({1: "a", (1, 2): "b", None: 3}) == {"1": "a", "(1, 2)": "b", "None": 3}
    assert to_plain((1, (2, [3]))) == [1, [2, [3]]]
    assert to_plain({3, 1, 2}) == [1, 2, 3]  # sets in a stable order
    assert to_plain(frozenset({"b", "a"})) == ["a", "b"]
    assert to_plain({"b": 1, "a": 2}) == {"b": 1, "a": 2}  # mappings keep their order


def test_dataclasses_and_objects_with_to_dict() -> None:
    outer = _Outer(_Inner(np.float32(0.5), ("x", "y")), Path("/data/tokens.npy"), {1: np.int64(2)})
    assert to_plain(outer) == {"inner": {"x": 0.5, "tags": ["x", "y"]}, "path": "/data/tokens.npy",
                               "extra": {"1": 2}}
    assert to_plain(_WithToDict()) == {"k": 1, "v": [0.25]}
    assert to_plain({"cfg": _WithToDict()}) == {"cfg": {"k": 1, "v": [0.25]}}
    assert to_plain(_BrokenToDict(4)) == {"a": 4}  # a failing to_dict falls back to the fields
    assert to_plain(_Outer).startswith("<class ")  # a class is text, never called or walked


def test_text_never_holds_a_memory_address() -> None:
    assert to_plain(_Thing()) == "_Thing"
    assert to_plain(object()) == "object"
    assert to_plain(lambda: 1) == "function"
    assert to_plain([_Thing(), _Thing()]) == ["_Thing", "_Thing"]
    assert " at 0x" not in json.dumps(to_plain({"thing": _Thing(), "fn": print}))


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_self_referencing_objects_stop_at_the_depth_cap(kind: str) -> None:
    if kind == "list":
        loop: list[object] = []
        loop.append(loop)
        out = to_plain(loop)
        for _ in range(MAX_DEPTH):
            assert isinstance(out, list) and len(out) == 1
            out = out[0]
    else:
        cycle: dict[str, object] = {}
        cycle["self"] = cycle
        out = to_plain(cycle)
        for _ in range(MAX_DEPTH):
            assert isinstance(out, dict) and list(out) == ["self"]
            out = out["self"]
    assert out == kind
    assert to_plain([[[1.5]]]) == [[[1.5]]]  # shallow data is untouched by the cap


def test_numpy_and_torch_zero_dimensional_scalars_become_builtins() -> None:
    import numpy as np
    import torch

    out = to_plain({"flag": np.bool_(True), "off": np.bool_(False), "t": torch.tensor(2.5), "n": np.array(7)})
    assert out == {"flag": True, "off": False, "t": 2.5, "n": 7}
    assert type(out["flag"]) is bool and type(out["n"]) is int  # type: ignore[index]
