"""``module:function`` factories named in suite files: import the module, call the function."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any

from pytest_saeval.errors import SourceError, did_you_mean
from pytest_saeval.sources.common import project_root, resolve_path, short

__all__ = ["call_factory", "factory_function", "pytest_pythonpath", "search_dirs"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def call_factory(spec: str, *, base_dir: str | os.PathLike[str] | None = None, what: str = "object") -> Any:
    """Import ``module:function`` (see :func:`factory_function`) and return ``function()``.

    ``what`` names the expected result in error messages (``"model"``, ``"SAE"``).
    """
    function = factory_function(spec, base_dir=base_dir, what=what)
    module_name, func_name = (part.strip() for part in spec.split(":"))
    try:
        return function()
    except SourceError:
        raise
    except ModuleNotFoundError as e:  # an import inside the function: a package that is not installed
        raise _missing_dependency(spec, f"calling {func_name}()", e) from e
    except Exception as e:  # the user's code: report whatever it raised
        raise SourceError(
            f"factory {spec!r} raised {short(e)}",
            fix=f"fix {func_name}() in {module_name} so that it returns the {what} when called with no arguments",
        ) from e


def search_dirs(base_dir: str | os.PathLike[str] | None) -> list[Path]:
    """Where a factory's module is looked for besides ``sys.path``, as pytest with ``pythonpath = ["."]``
    would find it: the suite's folder, the current folder and the project's root (see
    :func:`~pytest_saeval.sources.common.project_root`), then the folders of the project's own pytest
    ``pythonpath`` setting (e.g. ``src`` in a src layout)."""
    root = project_root(base_dir) if base_dir is not None else project_root(Path.cwd())
    found: list[Path] = []
    for folder in (base_dir, Path.cwd(), root, *(pytest_pythonpath(root) if root is not None else ())):
        if folder is not None and Path(folder).resolve() not in found:
            found.append(Path(folder).resolve())
    return found


def pytest_pythonpath(root: Path) -> list[Path]:
    """The ``pythonpath`` folders of the pytest configuration in ``root``, relative to it, from the first of
    ``pytest.ini``, ``pyproject.toml`` (``[tool.pytest.ini_options]`` or ``[tool.pytest]``), ``tox.ini``
    (``[pytest]``) and ``setup.cfg`` (``[tool:pytest]``) that configures pytest, as pytest picks it. A
    file that cannot be read or parsed gives none (pytest itself will say what is wrong with it)."""
    import configparser
    import shlex

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - pytest itself depends on tomli below 3.11
        import tomli as tomllib

    for name, section in (("pytest.ini", "pytest"), ("pyproject.toml", None), ("tox.ini", "pytest"),
                          ("setup.cfg", "tool:pytest")):
        path = root / name
        try:
            if not path.is_file():
                continue
            if section is None:
                tool = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("pytest")
                if not isinstance(tool, dict):
                    continue
                table = tool.get("ini_options", tool)
                value = table.get("pythonpath", []) if isinstance(table, dict) else []
            else:
                parser = configparser.ConfigParser(interpolation=None)
                parser.read_string(path.read_text(encoding="utf-8"))
                if not parser.has_section(section):
                    continue
                value = parser.get(section, "pythonpath", fallback="")
        except (OSError, ValueError, configparser.Error):
            return []
        entries = shlex.split(value) if isinstance(value, str) else [str(v) for v in value] if isinstance(value, list) else []
        return [root / entry for entry in entries]
    return []


def factory_function(spec: str, *, base_dir: str | os.PathLike[str] | None = None, what: str = "object") -> Any:
    """Import ``module:function`` and return the function, without calling it.

    ``module`` is a dotted module path importable from ``sys.path`` or from :func:`search_dirs` (added
    to ``sys.path`` while importing), or a ``.py`` file path (relative to ``base_dir``). ``function``
    may be dotted (``Class.method``).
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise SourceError(
            f"factory {spec!r} is not of the form 'module:function'",
            fix="write the factory as 'package.module:function' (a module on sys.path or next to the suite file)",
        )
    module_name, func_name = (part.strip() for part in spec.split(":"))
    is_file = module_name.endswith(".py")
    if (
        not module_name
        or not func_name
        or not all(_IDENTIFIER.fullmatch(p) for p in func_name.split("."))
        or (not is_file and not all(_IDENTIFIER.fullmatch(p) for p in module_name.split(".")))
    ):
        raise SourceError(
            f"factory {spec!r} is not of the form 'module:function'",
            fix="write the factory as 'package.module:function' with Python identifiers on both sides",
        )

    module = _import_factory_module(module_name, spec=spec, base_dir=base_dir, is_file=is_file)

    target: Any = module
    for i, part in enumerate(func_name.split(".")):
        if not hasattr(target, part):
            owner = module_name if i == 0 else ".".join(func_name.split(".")[:i])
            public = [n for n in dir(target) if not n.startswith("_")]
            raise SourceError(
                f"factory {spec!r}: {owner!r} has no attribute {part!r}{did_you_mean(part, public)}",
                fix=f"define {func_name}() in {module_name} or correct the name after ':'",
            )
        target = getattr(target, part)
    if not callable(target):
        raise SourceError(
            f"factory {spec!r}: {func_name!r} is a {type(target).__name__}, not a function",
            fix=f"point the factory at a function that takes no arguments and returns the {what}",
        )
    return target


def _import_factory_module(module_name: str, *, spec: str, base_dir: Any, is_file: bool) -> Any:
    if is_file:
        file = resolve_path(module_name, base_dir)
        if not file.is_file():
            raise SourceError(
                f"factory {spec!r}: module file '{file}' does not exist",
                fix="give the .py file relative to the suite file, or use a dotted module name",
            )
        unique = "_saeval_factory_" + re.sub(r"\W", "_", str(file.resolve()))
        if unique in sys.modules:
            return sys.modules[unique]
        mod_spec = importlib.util.spec_from_file_location(unique, file)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        added = _push_sys_path(file.parent)
        try:
            sys.modules[unique] = module
            mod_spec.loader.exec_module(module)
        except ModuleNotFoundError as e:
            sys.modules.pop(unique, None)
            raise _missing_dependency(spec, f"importing '{file}'", e) from e
        except Exception as e:
            sys.modules.pop(unique, None)
            raise SourceError(
                f"factory {spec!r}: importing '{file}' raised {short(e)}",
                fix="fix the error in that module (or its imports)",
            ) from e
        finally:
            _pop_sys_path(added)
        return module

    folders = search_dirs(base_dir)
    pushed = [_push_sys_path(folder) for folder in reversed(folders)]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            where = " (looked on sys.path and in " + ", ".join(f"'{f}'" for f in folders) + ")"
            raise SourceError(
                f"factory {spec!r}: module {module_name!r} not found{where}",
                fix="install the package that provides it, put the module in the project (next to the suite file, "
                "in the current folder, the project's root or a folder of its pytest pythonpath setting) or on "
                "PYTHONPATH, or correct the name before ':'",
            ) from e
        raise _missing_dependency(spec, f"importing {module_name!r}", e) from e
    except Exception as e:
        raise SourceError(
            f"factory {spec!r}: importing {module_name!r} raised {short(e)}",
            fix="fix the error in that module (or its imports)",
        ) from e
    finally:
        for entry in pushed:
            _pop_sys_path(entry)


def _push_sys_path(folder: Path) -> str | None:
    entry = str(folder.resolve())
    if entry in sys.path:
        return None
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    return entry


def _pop_sys_path(entry: str | None) -> None:
    if entry is not None:
        try:
            sys.path.remove(entry)
        except ValueError:
            pass


# Import names whose package on PyPI has another name (the common ones in ML code); any other module
# is suggested under its own top-level name, which pip accepts for most packages.
_PACKAGE_OF = {
    "sklearn": "scikit-learn", "skimage": "scikit-image", "yaml": "pyyaml", "cv2": "opencv-python",
    "PIL": "pillow", "bs4": "beautifulsoup4", "attr": "attrs", "dateutil": "python-dateutil",
    "google": "protobuf", "sae_lens": "sae-lens", "transformer_lens": "transformer-lens",
    "sparsify": "eai-sparsify", "dictionary_learning": "dictionary-learning", "jwt": "PyJWT",
}


def _missing_dependency(spec: str, doing: str, e: ModuleNotFoundError) -> SourceError:
    """A factory module (or the function, ``doing`` says which) imports a package that is not installed:
    the fix is to install it, named as pip knows it where its import name differs."""
    missing = e.name or str(e)
    top = missing.split(".")[0]
    package = _PACKAGE_OF.get(top, top)
    return SourceError(
        f"factory {spec!r}: {doing} failed because module {missing!r} is missing",
        fix=f"install {package} (e.g. pip install {package}), the package that provides {missing!r}",
    )
