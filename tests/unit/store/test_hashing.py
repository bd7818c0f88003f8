"""The one content hasher: files, tensors, state dicts, models and SAEs; the fingerprints memo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import xxhash

from pytest_saeval.store.hashing import (
    ALGORITHM,
    Fingerprints,
    code_hash,
    file_hash,
    module_hash,
    name_digest,
    tensor_hash,
)


def test_file_hash_streams_the_bytes(tmp_path: Path) -> None:
    data = b"abc" * 1_000_000
    (tmp_path / "f").write_bytes(data)
    assert file_hash(tmp_path / "f") == xxhash.xxh3_128(ALGORITHM.encode() + data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_hash(str(tmp_path / "empty")) == xxhash.xxh3_128(ALGORITHM.encode()).hexdigest()
    (tmp_path / "g").write_bytes(data[:-1] + b"d")
    assert file_hash(tmp_path / "g") != file_hash(tmp_path / "f")
    with pytest.raises(FileNotFoundError):
        file_hash(tmp_path / "missing")


def test_name_digest_is_a_stable_prefix_of_the_names_xxh3() -> None:
    assert name_digest("suite::sae") == xxhash.xxh3_128_hexdigest(b"suite::sae")[:16]
    assert name_digest("suite::sae", 32) == xxhash.xxh3_128_hexdigest(b"suite::sae")
    assert len(name_digest("x", 10)) == 10 and name_digest("x/y") != name_digest("x_y")


def test_tensor_hash_covers_dtype_shape_and_values() -> None:
    t = torch.arange(12, dtype=torch.int64).reshape(3, 4)
    assert tensor_hash(t) == tensor_hash(t.clone())
    assert tensor_hash(t) != tensor_hash(t.reshape(4, 3))
    assert tensor_hash(t) != tensor_hash(t.to(torch.int32))
    changed = t.clone()
    changed[2, 3] += 1
    assert tensor_hash(t) != tensor_hash(changed)
    assert tensor_hash(t.T) == tensor_hash(t.T.contiguous())
    assert tensor_hash(torch.tensor([True, False])) != tensor_hash(torch.tensor([False, True]))


def test_a_module_hash_is_value_sensitive() -> None:
    torch.manual_seed(0)
    layer, twin = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    twin.load_state_dict(layer.state_dict())
    assert module_hash("sae", layer) == module_hash("sae", twin)
    with torch.no_grad():
        twin.bias[0] += 1e-7
    assert module_hash("sae", layer) != module_hash("sae", twin)
    assert module_hash("sae", layer) != module_hash("model", layer)


def test_fingerprints_hash_each_object_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_saeval.store.hashing as hashing

    calls: list[str] = []
    real = hashing.tensor_hash
    monkeypatch.setattr(hashing, "tensor_hash", lambda t: calls.append("t") or real(t))
    memo = Fingerprints()
    tokens = torch.randint(0, 9, (6, 4))
    first = memo.tokens(tokens, 4)
    assert memo.tokens(tokens, 4) == first and calls == ["t"]
    assert memo.tokens(tokens, 6) != first and calls == ["t", "t"], "other rows, another hash"
    assert memo.tokens(tokens.clone(), 4) == first, "the same content, the same hash"


def test_fingerprints_read_a_source_file_shared_by_many_objects_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytest_saeval.store.hashing as hashing

    read: list[str] = []
    real = hashing.file_hash
    monkeypatch.setattr(hashing, "file_hash", lambda p: read.append(os.path.basename(p)) or real(p))
    (tmp_path / "mysae.py").write_text(SAE_CODE)
    module = _load_module(tmp_path / "mysae.py", "mysae_shared")
    memo = Fingerprints()
    one, two = module.PlainSAE(), module.PlainSAE()
    assert memo.code(one) == memo.code(two) == code_hash(one)
    shared = [name for name in read if name == "module.py"]  # torch's nn.Module: in both classes' MRO
    assert len(shared) == 2, read  # once through the memo (for both objects), once by the direct code_hash
    assert read.count("mysae.py") == 2
    (tmp_path / "mysae.py").write_text(SAE_CODE + "\n# edited\n")  # another size: read again
    assert memo.code(module.PlainSAE()) != memo.code(one)  # the new object's file is read anew


def test_tensor_hash_layout_free() -> None:
    t = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    assert tensor_hash(t) == tensor_hash(t.clone())
    assert tensor_hash(t) == tensor_hash(t.T.contiguous().T)  # layout does not matter
    assert tensor_hash(t) != tensor_hash(t.reshape(3, 2))  # shape does
    assert tensor_hash(t) != tensor_hash(t.to(torch.int32))  # dtype does
    changed = t.clone()
    changed[1, 2] = 7
    assert tensor_hash(t) != tensor_hash(changed)
    assert len(tensor_hash(torch.tensor(1.5, dtype=torch.bfloat16))) == 32
    assert tensor_hash(torch.zeros(0)) != tensor_hash(torch.zeros(0, 2))


def test_a_model_folder_in_another_place_is_the_same_model(tmp_path: Path) -> None:
    """A checkout in another folder (a CI runner's workspace) loads the same model: its hash leaves out
    the folder's own path (``tokenizer_name``), while a changed weight still changes it."""
    import shutil

    from pytest_saeval.sources.models import load_model
    from pytest_saeval.store.hashing import LOCAL_PATH, module_hash, placeless

    source = Path(__file__).resolve().parents[3] / "examples" / "tiny" / "model"
    a, b = tmp_path / "a" / "model", tmp_path / "b" / "model"
    shutil.copytree(source, a)
    shutil.copytree(source, b)
    model_a, model_b = load_model(path=a, device="cpu"), load_model(path=b, device="cpu")
    assert str(a) in repr(vars(model_a.cfg)), "the model's config names its folder"
    assert module_hash("model", model_a) == module_hash("model", model_b)
    with torch.no_grad():
        model_b.W_U[0, 0] += 1.0
    assert module_hash("model", model_a) != module_hash("model", model_b)
    assert placeless({"p": str(a), "q": ["/no/such/place", "gpt2"], "n": 3}) == \
        {"p": LOCAL_PATH, "q": ["/no/such/place", "gpt2"], "n": 3}


def _load_module(path: Path, name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SAE_CODE = """
import torch


class PlainSAE(torch.nn.Module):
    def encode(self, x):
        return torch.relu(x)

    def decode(self, f):
        return f
"""


def test_the_code_hash_follows_the_source_of_the_class_and_its_methods(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "mysae.py").write_text(SAE_CODE)
    first = _load_module(tmp_path / "a" / "mysae.py", "mysae_a").PlainSAE()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mysae.py").write_text(SAE_CODE)  # the same code, elsewhere (a moved checkout)
    assert code_hash(_load_module(tmp_path / "b" / "mysae.py", "mysae_b").PlainSAE()) == code_hash(first)
    (tmp_path / "b" / "mysae.py").write_text(SAE_CODE.replace("torch.relu(x)", "torch.relu(x - 3.0)"))
    edited = _load_module(tmp_path / "b" / "mysae.py", "mysae_b2").PlainSAE()
    assert code_hash(edited) != code_hash(first)  # same class name, same (no) weights: the code differs
    (tmp_path / "patch.py").write_text("def encode(x):\n    return x\n")
    patched = _load_module(tmp_path / "a" / "mysae.py", "mysae_a2").PlainSAE()
    patched.encode = _load_module(tmp_path / "patch.py", "patch").encode  # set on the instance by a factory
    assert code_hash(patched) != code_hash(first)


HELPER = "def encode(x):\n    return x\n"


def _patched(tmp_path: Path, checkout: str, tag: str) -> Any:
    """An SAE object whose class lives in ``checkout/mysae.py`` and whose encode in ``m/helper.py``."""
    (tmp_path / checkout).mkdir(exist_ok=True)
    (tmp_path / checkout / "mysae.py").write_text(SAE_CODE)
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "helper.py").write_text(HELPER)
    sae = _load_module(tmp_path / checkout / "mysae.py", f"mysae_{tag}").PlainSAE()
    sae.encode = _load_module(tmp_path / "m" / "helper.py", f"helper_{tag}").encode
    return sae


def test_the_code_hash_does_not_depend_on_where_the_checkout_lies(tmp_path: Path) -> None:
    # a_checkout sorts before m/, z_checkout after it: the key must not follow the paths' order
    assert code_hash(_patched(tmp_path, "a_checkout", "a")) == code_hash(_patched(tmp_path, "z_checkout", "z"))


def test_installed_packages_below_the_standard_library_are_hashed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import sysconfig

    stdlib, site = tmp_path / "lib" / "python3", tmp_path / "lib" / "python3" / "site-packages"
    site.mkdir(parents=True)
    real = sysconfig.get_paths()
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {**real, "stdlib": str(stdlib), "purelib": str(site),
                                                         "platlib": str(site)})
    (site / "installed_sae.py").write_text(SAE_CODE)  # a project installed with `pip install .` on a system Python
    first = code_hash(_load_module(site / "installed_sae.py", "installed_a").PlainSAE())
    (site / "installed_sae.py").write_text(SAE_CODE.replace("torch.relu(x)", "torch.relu(x - 1.0)"))
    assert code_hash(_load_module(site / "installed_sae.py", "installed_b").PlainSAE()) != first
    (stdlib / "stdlib_like.py").write_text(SAE_CODE)  # the standard library itself stays out
    one = code_hash(_load_module(stdlib / "stdlib_like.py", "stdlib_a").PlainSAE())
    (stdlib / "stdlib_like.py").write_text(SAE_CODE + "\n# another Python build\n")
    assert code_hash(_load_module(stdlib / "stdlib_like.py", "stdlib_b").PlainSAE()) == one


def test_an_adapter_whose_getattr_raises_anything_is_hashed() -> None:
    class Adapter:
        def __init__(self, parts: dict[str, object]) -> None:
            self.parts = parts

        def __getattr__(self, name: str) -> object:
            return self.parts[name]  # KeyError, not AttributeError, for a missing name

    assert code_hash(Adapter({})) == code_hash(Adapter({}))
