"""The one content hasher: xxh3-128 over dtype, shape and bytes of tensors, over configs and over files.

Every key the caches use and every hash the provenance records comes from here, and a
:class:`Fingerprints` memo makes sure a run hashes each loaded model, SAE and token array once
(the results cache's key and the provenance read the same digest).

A tensor's hash covers its dtype, shape and raw bytes (on the CPU, contiguous), so it does not
depend on the device the tensor lives on and changes when any value, the dtype or the shape does.
:func:`code_hash` covers what the weights do not: the source files an object's behaviour comes from
(a factory's SAE class in the user's project changes without its weights changing).
"""

from __future__ import annotations

import inspect
import json
import os
import sysconfig
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import xxhash

from pytest_saeval.plain import JSON, to_plain

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ALGORITHM", "LOCAL_PATH", "Fingerprints", "Hasher", "code_hash", "file_hash", "module_hash", "name_digest",
           "placeless", "tensor_hash"]

ALGORITHM = "xxh3_128"
"""The hash function (xxHash's XXH3, 128 bits: several GB/s, not cryptographic)."""

_CHUNK = 1 << 20


class Hasher:
    """An incremental xxh3-128 digest whose inputs are length-prefixed, so concatenations cannot collide."""

    def __init__(self) -> None:
        self._h = xxhash.xxh3_128()
        self._h.update(ALGORITHM.encode())

    def text(self, s: str) -> None:
        """Add a string (length-prefixed)."""
        data = s.encode()
        self._h.update(len(data).to_bytes(8, "little"))
        self._h.update(data)

    def data(self, value: object) -> None:
        """Add a plain-data value (a config, settings) through its canonical JSON."""
        self.text(json.dumps(to_plain(value), sort_keys=True, default=str))

    def tensor(self, t: torch.Tensor) -> None:
        """Add a tensor's dtype, shape and bytes."""
        import torch

        data = t.detach()
        if data.device.type != "cpu":
            data = data.to("cpu")
        data = data.contiguous()
        self.text(f"{str(data.dtype).removeprefix('torch.')}{tuple(data.shape)}")
        if data.numel():
            flat = data.reshape(-1)
            if flat.dtype == torch.bool:
                flat = flat.to(torch.uint8)
            self._h.update(flat.view(torch.uint8).numpy().data)

    def raw(self, chunk: bytes | memoryview) -> None:
        """Add bytes as they are (for streams whose length is framed by the caller)."""
        self._h.update(chunk)

    def hexdigest(self) -> str:
        """The digest so far, 32 hex digits."""
        return str(self._h.hexdigest())


def name_digest(text: str, length: int = 16) -> str:
    """A short digest of a name, for identifiers made from it (file names, xdist group names, partition
    ids): the first ``length`` hex characters (at most 32) of the xxh3-128 of ``text``."""
    return xxhash.xxh3_128_hexdigest(text.encode())[:length]


def tensor_hash(t: torch.Tensor) -> str:
    """Hash of a tensor's dtype, shape and bytes."""
    h = Hasher()
    h.tensor(t)
    return h.hexdigest()


def _add_state(h: Hasher, state: Mapping[str, Any]) -> None:
    import torch

    for key in sorted(state):
        h.text(key)
        value = state[key]
        if isinstance(value, torch.Tensor):
            h.tensor(value)
        else:
            h.text(repr(value))


def _config_of(obj: Any) -> object:
    cfg = getattr(obj, "cfg", None)
    if cfg is None:
        return None
    to_dict = getattr(cfg, "to_dict", None)
    if callable(to_dict):
        try:
            return to_dict()
        except Exception:  # noqa: BLE001 - fall back to the attributes
            pass
    try:
        return vars(cfg)
    except TypeError:
        return repr(cfg)


LOCAL_PATH = "<local path>"
"""What an absolute path of this machine in a config is hashed as (see :func:`placeless`)."""


def placeless(value: JSON) -> JSON:
    """``value`` with every string that is an absolute path existing on this machine replaced by
    :data:`LOCAL_PATH`: where a model or SAE was loaded from (``tokenizer_name`` of a model read from a
    folder, an SAE's training ``dataset_path``) says nothing about what it computes, whose weights are
    hashed themselves, and must not make a checkout in another folder, or a CI runner's workspace, a
    different model."""
    if isinstance(value, dict):
        return {k: placeless(v) for k, v in value.items()}
    if isinstance(value, list):
        return [placeless(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and os.path.exists(value):
        return LOCAL_PATH
    return value


def module_hash(kind: str, obj: Any) -> str:
    """Hash of a model or SAE: ``kind``, its class, its config (``cfg``, its local paths left out: see
    :func:`placeless`), its tokenizer's padding side (when it has a tokenizer) and every weight and
    buffer (an SAE without ``state_dict``: its ``W_enc``, ``W_dec``, ``b_enc``, ``b_dec``)."""
    h = Hasher()
    h.text(kind)
    h.text(f"{type(obj).__module__}.{type(obj).__qualname__}")
    h.data(placeless(to_plain(_config_of(obj))))
    tokenizer = getattr(obj, "tokenizer", None)
    if tokenizer is not None:
        h.text(f"padding_side={getattr(tokenizer, 'padding_side', None)}")
    from pytest_saeval.engine.weights import state_of  # torch: only ever called on loaded objects

    _add_state(h, state_of(obj))
    return h.hexdigest()


_BEHAVIOUR = ("encode", "decode", "forward", "run_with_hooks", "run_with_cache")
"""Methods whose defining file :func:`code_hash` covers even when they are not the class's own (set on
the instance, or inherited from a mixin)."""


def code_hash(obj: Any, digest_of: Callable[[str], str] | None = None) -> str:
    """Hash of the source files ``obj``'s behaviour is defined in: the file of each class of its type's
    MRO and of its :data:`_BEHAVIOUR` methods (an instance's own included), each by its name and bytes
    (not its folder, and in an order that does not depend on it: a moved checkout keys the same). Files of
    the standard library are left out (they change with Python, not with a project), but not installed
    packages below it (a system or conda Python keeps site-packages there): library files (torch, SAE
    Lens) and a project installed with ``pip install .`` are hashed like the rest. A project's own SAE or
    model class is what this is for: its code can change while its weights do not. Modules those files
    import are not followed (a helper module's edit is not seen). ``digest_of`` gives a file's digest
    (default :func:`file_hash`; :class:`Fingerprints` passes its memo, so a library file that many objects'
    classes share is read once a run)."""
    digest_of = digest_of or file_hash
    files: set[str] = {_source_of(cls) for cls in type(obj).__mro__ if cls.__module__ != "builtins"}
    for name in _BEHAVIOUR:
        try:
            method = getattr(obj, name, None)
        except Exception:  # noqa: BLE001 - an adapter's __getattr__ may raise anything for a missing name
            continue
        code = getattr(getattr(method, "__func__", method), "__code__", None)  # a bound method's function
        if code is not None:
            files.add(code.co_filename)
    parts = []
    in_stdlib = _stdlib_test()
    for file in (f for f in files if f and not in_stdlib(f)):
        try:
            parts.append((os.path.basename(file), digest_of(file)))
        except OSError:  # generated or zipped code: its name is what is known
            parts.append((os.path.basename(file), "unreadable"))
    h = Hasher()
    for name, digest in sorted(parts):
        h.text(name)
        h.text(digest)
    return h.hexdigest()


def _stdlib_test() -> Callable[[str], bool]:
    """Whether a file is part of Python's standard library (not an installed package that lives below it),
    with this interpreter's folders looked up once."""
    paths = sysconfig.get_paths()
    stdlib = os.path.realpath(paths["stdlib"]) + os.sep
    installed = tuple(os.path.realpath(paths[k]) + os.sep for k in ("purelib", "platlib") if k in paths)

    def in_stdlib(file: str) -> bool:
        real = os.path.realpath(file)
        return real.startswith(stdlib) and not real.startswith(installed)

    return in_stdlib


def _source_of(cls: type) -> str:
    try:
        return inspect.getsourcefile(cls) or ""
    except (TypeError, OSError):  # a class defined in C or in an interactive session
        return ""


def file_hash(path: str | os.PathLike[str]) -> str:
    """Hash of a file's bytes, read in 1 MiB chunks into one reused buffer."""
    h = Hasher()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.raw(view[:n])
    return h.hexdigest()


class Fingerprints:
    """Hashes of loaded models, SAEs and token arrays, each computed once per object.

    Kept per object while it lives (by ``id()`` together with a weak reference to the object, so an
    ``id()`` reused by a later object never returns a stale hash; tensors cannot be dictionary keys
    themselves, their ``==`` is elementwise). An object that cannot be weakly referenced is hashed
    again when asked again.
    """

    def __init__(self) -> None:
        self._memo: dict[tuple[int, str], tuple[weakref.ref[Any], str]] = {}
        self._files: dict[tuple[str, int, int, int], str] = {}
        """Source files' digests for :meth:`code`, by path, inode, size and modification time."""

    def model(self, model: Any) -> str:
        """:func:`module_hash` of a model."""
        return self._once(model, "model", lambda: module_hash("model", model))

    def sae(self, sae: Any) -> str:
        """:func:`module_hash` of an SAE."""
        return self._once(sae, "sae", lambda: module_hash("sae", sae))

    def code(self, obj: Any) -> str:
        """:func:`code_hash` of a model or SAE."""
        return self._once(obj, "code", lambda: code_hash(obj, self._file))

    def _file(self, path: str) -> str:
        """:func:`file_hash` of a source file, read once while its inode, size and modification time stay."""
        st = os.stat(path)
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._files:
            self._files[key] = file_hash(path)
        return self._files[key]

    def tokens(self, tokens: torch.Tensor, rows: int) -> str:
        """:func:`tensor_hash` of the first ``rows`` rows of a token array (the rows a pass reads)."""
        return self._once(tokens, f"tokens:{rows}", lambda: tensor_hash(tokens[:rows]))

    def _once(self, obj: Any, what: str, compute: Callable[[], str]) -> str:
        key = (id(obj), what)
        found = self._memo.get(key)
        if found is not None and found[0]() is obj:
            return found[1]
        digest = compute()
        def forget(_: object) -> None:
            self._memo.pop(key, None)

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:  # not weakly referenceable
            return digest
        self._memo[key] = (ref, digest)
        return digest
