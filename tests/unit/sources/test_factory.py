"""Factories (`module:function`) that build models: module lookup next to the suite, and every import and call error."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.models import load_model, model_info

transformers = pytest.importorskip("transformers")


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


@pytest.fixture
def factory_module(tmp_path: Path) -> str:
    """A module file next to a pretend suite file; returns its (unique) module name."""
    name = f"saeval_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from tests.helpers import tiny_hooked_transformer

            NOT_CALLABLE = 3

            def good():
                return tiny_hooked_transformer()

            def wrong_type():
                return {"not": "a model"}

            def boom():
                raise RuntimeError("weights server said no")

            def needs_args(x):
                return x
            """
        )
    )
    return name


def test_factory_from_module_next_to_suite(factory_module, tmp_path):
    model = load_model(factory=f"{factory_module}:good", base_dir=tmp_path, device="cpu")
    assert model_info(model).backend == "hooked"
    assert model.tokenizer is not None
    assert str(tmp_path.resolve()) not in __import__("sys").path


def test_factory_from_py_file(factory_module, tmp_path):
    model = load_model(factory=f"{factory_module}.py:good", base_dir=tmp_path, device="cpu")
    assert model.cfg.n_layers == 2


def test_factory_from_importable_module():
    model = load_model(factory="tests.helpers:tiny_hooked_transformer", device="cpu")
    assert model.cfg.d_model == 32


@pytest.mark.parametrize("spec", ["no_colon", "a:b:c", ":f", "mod:", "mod:1bad", "bad-mod:f"])
def test_factory_bad_format(spec):
    with pytest.raises(SourceError, match="not of the form 'module:function'"):
        load_model(factory=spec, device="cpu")


def test_factory_module_not_found(tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(factory="no_such_module_xyz:load", base_dir=tmp_path, device="cpu")
    msg = _message(excinfo)
    assert "module 'no_such_module_xyz' not found" in msg and str(tmp_path) in msg


def test_factory_module_with_missing_dependency(tmp_path):
    name = f"saeval_dep_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import not_installed_dependency_xyz\n")
    with pytest.raises(SourceError) as excinfo:
        load_model(factory=f"{name}:f", base_dir=tmp_path, device="cpu")
    assert "module 'not_installed_dependency_xyz' is missing" in _message(excinfo)


def test_factory_module_raising_on_import(tmp_path):
    name = f"saeval_imp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("raise ValueError('bad module')\n")
    with pytest.raises(SourceError, match="raised ValueError: bad module"):
        load_model(factory=f"{name}:f", base_dir=tmp_path, device="cpu")


def test_factory_attribute_not_found(factory_module, tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(factory=f"{factory_module}:goood", base_dir=tmp_path, device="cpu")
    assert "has no attribute 'goood'" in _message(excinfo)
    assert "did you mean 'good'" in _message(excinfo)


def test_factory_not_callable(factory_module, tmp_path):
    with pytest.raises(SourceError, match="is a int, not a function"):
        load_model(factory=f"{factory_module}:NOT_CALLABLE", base_dir=tmp_path, device="cpu")


def test_factory_raising_is_chained(factory_module, tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(factory=f"{factory_module}:boom", base_dir=tmp_path, device="cpu")
    assert "raised RuntimeError: weights server said no" in _message(excinfo)
    assert isinstance(excinfo.value.__cause__, RuntimeError)


def test_factory_needing_arguments(factory_module, tmp_path):
    with pytest.raises(SourceError, match="raised TypeError"):
        load_model(factory=f"{factory_module}:needs_args", base_dir=tmp_path, device="cpu")


def test_factory_wrong_return_type(factory_module, tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(factory=f"{factory_module}:wrong_type", base_dir=tmp_path, device="cpu")
    msg = _message(excinfo)
    assert "builtins.dict" in msg and "run_with_hooks" in msg and "not a TransformerLens model" in msg
