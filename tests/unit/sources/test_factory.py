"""Factories (`module:function`) that build models: module lookup next to the suite, and every import and call error."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.models import load_model

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
    assert type(model).__name__ == "HookedTransformer"
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


@pytest.mark.parametrize(("code", "doing"), [
    ("import not_installed_dependency_xyz\n", "importing '{name}'"),
    ("def f():\n    import not_installed_dependency_xyz\n", "calling f()"),  # fails only when called
], ids=["on-import", "when-called"])
def test_factory_with_a_missing_package_gets_install_fix(tmp_path, code, doing):
    """Imported by the module or only inside the factory function: "install it" either way, not "fix f()"."""
    name = f"saeval_dep_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(code)
    with pytest.raises(SourceError) as excinfo:
        load_model(factory=f"{name}:f", base_dir=tmp_path, device="cpu")
    expected = f"{doing.format(name=name)} failed because module 'not_installed_dependency_xyz' is missing"
    assert expected in _message(excinfo)
    assert (excinfo.value.fix or "").startswith("install not_installed_dependency_xyz (e.g. pip install")


def test_factory_file_with_missing_dependency_gets_install_fix(tmp_path):
    (tmp_path / "build.py").write_text("import not_installed_dependency_xyz\n")
    with pytest.raises(SourceError) as excinfo:
        load_model(factory="build.py:f", base_dir=tmp_path, device="cpu")
    assert "module 'not_installed_dependency_xyz' is missing" in _message(excinfo)
    assert (excinfo.value.fix or "").startswith("install not_installed_dependency_xyz")


@pytest.mark.parametrize(("module", "package"), [("sklearn.linear_model", "scikit-learn"), ("yaml_not_here", "yaml_not_here")])
def test_missing_package_is_named_as_pip_knows_it(tmp_path, module, package):
    name = f"saeval_pkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(f"def f():\n    raise ModuleNotFoundError('x', name={module!r})\n")
    with pytest.raises(SourceError) as excinfo:
        load_model(factory=f"{name}:f", base_dir=tmp_path, device="cpu")
    assert (excinfo.value.fix or "").startswith(f"install {package} (e.g. pip install {package}), the package that provides {module!r}")


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


# -- where factory modules are found: as pytest with pythonpath = ["."] ----------------------------


def _repo(tmp_path: Path) -> tuple[Path, str]:
    """A training repo: pyproject.toml at the root, a package ``mysae_<id>`` there, suites in thresholds/."""
    package = f"mysae_{uuid.uuid4().hex[:8]}"
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'repo'\n")
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "custom.py").write_text("def load():\n    return 'loaded'\n")
    (tmp_path / "thresholds").mkdir()
    (tmp_path / "tests").mkdir()
    return tmp_path, package


def test_search_dirs_are_the_suite_folder_cwd_and_project_root(tmp_path, monkeypatch):
    from pytest_saeval.sources.factory import search_dirs

    root, _ = _repo(tmp_path)
    monkeypatch.chdir(root / "tests")
    assert search_dirs(root / "thresholds") == [root / "thresholds", root / "tests", root]
    monkeypatch.chdir(root)
    assert search_dirs(root / "thresholds") == [root / "thresholds", root]


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("pyproject.toml", '[tool.pytest.ini_options]\npythonpath = ["src", "lib"]\n', ["src", "lib"]),
    ("pyproject.toml", '[tool.pytest.ini_options]\npythonpath = "src"\n', ["src"]),
    ("pyproject.toml", '[tool.pytest]\npythonpath = ["src"]\n', ["src"]),
    ("pyproject.toml", '[tool.ruff]\nline-length = 1\n', []),  # not pytest's: the next file would be asked
    ("pyproject.toml", "[tool.pytest.ini_options\n", []),  # broken: pytest says so, not us
    ("pytest.ini", "[pytest]\npythonpath = src lib\n", ["src", "lib"]),
    ("tox.ini", "[pytest]\npythonpath = src\n", ["src"]),
    ("setup.cfg", "[tool:pytest]\npythonpath = src\n", ["src"]),
    ("setup.cfg", "[metadata]\nname = x\n", []),
])
def test_the_project_s_pytest_pythonpath_is_read_as_pytest_reads_it(tmp_path, name, text, expected):
    from pytest_saeval.sources.factory import pytest_pythonpath

    (tmp_path / name).write_text(text)
    assert pytest_pythonpath(tmp_path) == [tmp_path / e for e in expected]


def test_a_factory_in_a_src_layout_is_found_through_the_project_s_pythonpath(tmp_path, monkeypatch):
    from pytest_saeval.sources.factory import factory_function, search_dirs

    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["src"]\n')
    (tmp_path / "src" / "srcpkg_fac").mkdir(parents=True)
    (tmp_path / "src" / "srcpkg_fac" / "__init__.py").write_text("")
    (tmp_path / "src" / "srcpkg_fac" / "custom.py").write_text("def load():\n    return 'loaded'\n")
    (tmp_path / "thresholds").mkdir()
    monkeypatch.chdir(tmp_path)
    assert search_dirs(tmp_path / "thresholds")[-1] == tmp_path / "src"
    assert factory_function("srcpkg_fac.custom:load", base_dir=tmp_path / "thresholds")() == "loaded"


@pytest.mark.parametrize("cwd", [".", "tests", "thresholds"])
def test_a_package_at_the_project_root_is_found_from_any_folder(tmp_path, monkeypatch, cwd):
    import sys

    from pytest_saeval.sources.factory import factory_function

    root, package = _repo(tmp_path)
    monkeypatch.chdir(root / cwd)
    before = list(sys.path)
    function = factory_function(f"{package}.custom:load", base_dir=root / "thresholds")
    assert function() == "loaded"
    assert sys.path == before  # the search folders are added only while importing


def test_a_missing_module_lists_where_it_was_looked_for(tmp_path, monkeypatch):
    from pytest_saeval.sources.factory import factory_function

    root, _ = _repo(tmp_path)
    monkeypatch.chdir(root / "tests")
    with pytest.raises(SourceError) as excinfo:
        factory_function("elsewhere_xyz.custom:load", base_dir=root / "thresholds")
    message = str(excinfo.value)
    assert "module 'elsewhere_xyz.custom' not found" in message
    for folder in (root / "thresholds", root / "tests", root):
        assert str(folder) in message


def test_project_root_is_the_nearest_folder_with_a_marker(tmp_path):
    from pytest_saeval.sources.common import project_root

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "pytest.ini").write_text("[pytest]\n")
    assert project_root(tmp_path / "a" / "b") == tmp_path / "a"
    (tmp_path / "a" / "b" / "setup.cfg").write_text("")
    assert project_root(tmp_path / "a" / "b") == tmp_path / "a" / "b"
