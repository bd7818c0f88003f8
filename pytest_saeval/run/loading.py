"""Loading what suites name, once each: a model per distinct model spec (even across suites), a token
set per data spec, an SAE per entry. Every source error comes out located at the suite key it came
from (file, line, key path) and names its subject (suite, SAE entry).

A sparsify or dictionary_learning checkpoint's hook is mapped from the names it records
(:mod:`~pytest_saeval.sources.hookpoints`) unless its entry names ``hook_name:``. Once the model is
loaded, such a mapped hook is checked against it: a hook the model lacks is named with the name it
came from, and an attention or MLP output hook that TransformerLens normalizes on this model
(:func:`~pytest_saeval.sources.hookpoints.post_norm_before`) is refused, since it does not hold the
module output the trainer hooked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pytest_saeval.errors import SaevalError, SourceError, Subject
from pytest_saeval.run.plan import ModelKey, Overrides, SAEEntry, group_key, located_in
from pytest_saeval.sources.hookpoints import MappedHook, post_norm_before
from pytest_saeval.spec.suite import Suite

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from pytest_saeval.engine.protocols import SAELike

__all__ = ["Loader"]


class Loader:
    """Loads and keeps models, token rows and SAEs for a run.

    ``device`` overrides every suite's ``model.device`` (given as ``device_option``, which its errors
    name); ``auto_device`` is what ``auto`` (and a plain ``cuda``, when it names a GPU itself) means, e.g.
    one GPU per pytest-xdist worker; ``threads`` caps torch's CPU threads, set before the first thing loads.
    """

    def __init__(self, device: str | None = None, auto_device: str | None = None, *, threads: int | None = None,
                 device_option: str = "--device") -> None:
        self.device = device
        self.device_option = device_option
        self.auto_device = auto_device
        self.threads = threads
        self._models: dict[ModelKey, Any] = {}
        self._tokens: dict[tuple[Any, ...], torch.Tensor] = {}
        self._saes: dict[tuple[Any, ...], Any] = {}
        self._mapped: dict[tuple[Any, ...], MappedHook | None] = {}  # the hook mapped from a checkpoint's names
        self._token_refs: list[Any] = []  # override arrays stay alive while their id() keys them

    def device_for(self, suite: Suite) -> str:
        """The device the suite's model is loaded on: ``device``, else ``auto_device`` for ``auto``, else the suite's."""
        wanted = suite.model.device
        if self.device:
            return self.device
        if self.auto_device and (wanted == "auto" or (wanted == "cuda" and self.auto_device.startswith("cuda"))):
            return self.auto_device
        return wanted

    def model(self, suite: Suite, overrides: Overrides) -> Any:
        """The suite's model, loaded once per distinct model spec (or the override)."""
        if overrides.model is not None:
            return overrides.model
        key = group_key(suite, self.device_for(suite)).model
        if key not in self._models:
            self._before_loading()
            from pytest_saeval.sources.devices import resolve_device
            from pytest_saeval.sources.models import load_model

            m = suite.model
            if self.device:  # the command line's device: a problem names its option, not the suite
                try:
                    resolve_device(self.device, option=self.device_option)
                except SaevalError as e:
                    raise e.located(key=self.device_option) from e
            try:
                resolve_device(self.device_for(suite))  # a device problem is located at model.device
            except SaevalError as e:
                raise located_in(e, suite, m.line_of("device"), "model.device") from e
            try:
                self._models[key] = load_model(name=m.name, path=m.path, factory=m.factory,
                                               device=self.device_for(suite), dtype=m.dtype, base_dir=suite.path.parent,
                                               trust_remote_code=m.trust_remote_code)
            except SaevalError as e:
                raise located_in(e, suite, m.line_of(m.kind), f"model.{m.kind}") from e
        return self._models[key]

    def tokens(self, suite: Suite, model: Any, overrides: Overrides) -> torch.Tensor:
        """The suite's token rows ``[n, context_size]``, checked against the model's vocabulary."""
        if overrides.tokens is not None:
            try:
                return self._override_tokens(overrides.tokens)
            except SaevalError as e:  # the conftest's tokens are at fault, not the suite's data: key
                raise e.moved(file=None, line=None, key=overrides.origins.get("tokens", "saeval_tokens"),
                              subject=Subject(suite=str(suite.path), part=e.subject.part)) from e
        d = suite.data
        key = ("tokens", str(d.tokens) if d.tokens else None, d.dataset, d.context_size, d.rows_needed,
               id(model) if d.dataset else None)
        if key not in self._tokens:
            self._before_loading()
            where = f"data.{d.kind}"
            try:
                self._tokens[key] = self._load_tokens(suite, model)
            except SaevalError as e:
                raise located_in(e, suite, d.line_of(d.kind), where) from e
        return self._tokens[key]

    def _before_loading(self) -> None:
        """Cap torch's threads once, before the first load (importing torch only then)."""
        if self.threads is not None:
            from pytest_saeval.sources.devices import limit_threads

            limit_threads(self.threads)
            self.threads = None

    def _override_tokens(self, tokens: Any) -> torch.Tensor:
        for loaded in self._tokens.values():
            if loaded is tokens:  # already one of ours (e.g. the saeval_tokens fixture's value)
                return loaded
        key = ("tokens-override", id(tokens))
        if key not in self._tokens:
            from pytest_saeval.engine.inputs import as_token_tensor

            self._tokens[key] = as_token_tensor(tokens)
            self._token_refs.append(tokens)
        return self._tokens[key]

    @staticmethod
    def _load_tokens(suite: Suite, model: Any) -> torch.Tensor:
        from pytest_saeval.sources.hf_datasets import tokens_from_dataset
        from pytest_saeval.sources.tokens import check_tokens, load_token_file

        d = suite.data
        if d.tokens is not None:
            toks = load_token_file(d.tokens, context_size=d.context_size, base_dir=suite.path.parent)
            source = str(d.tokens)
        else:
            ds = d.dataset
            assert ds is not None
            toks = tokens_from_dataset(ds, model=model, context_size=d.context_size, n_rows=d.rows_needed,
                                       base_dir=suite.path.parent)
            source = ds.path
        vocab = getattr(getattr(model, "cfg", None), "d_vocab", None)
        if vocab is not None:
            check_tokens(toks, int(vocab), source=source)
        return toks

    def saes(self, suite: Suite, entries: Iterable[SAEEntry], device: str, overrides: Overrides) -> dict[str, SAELike]:
        """The loaded SAEs of ``entries`` by unique id (each spec loaded once), or the overrides."""
        out: dict[str, Any] = {}
        for entry in entries:
            if overrides.saes is not None:
                if entry.unique_id not in overrides.saes:
                    raise SaevalError(
                        f"the saeval_saes fixture has no SAE {entry.unique_id!r}",
                        fix="return a mapping with an entry for every SAE id of the suite",
                        file=str(suite.path), line=entry.spec.line, key="saes",
                        subject=Subject(suite=str(suite.path), entry=entry.index, sae=entry.unique_id),
                    )
                out[entry.unique_id] = overrides.saes[entry.unique_id]
                continue
            key = ("sae", str(suite.path.absolute()), entry.spec.id, device, entry.release_sae_id)
            if key not in self._saes:
                self._before_loading()
                self._saes[key] = self._load_sae(suite, entry, device)
                self._mapped[key] = self._mapped_hook(suite, entry)
            self._check_mapped(suite, entry, self._mapped[key], self._model_of(suite, overrides))
            out[entry.unique_id] = self._saes[key]
        return out

    def _model_of(self, suite: Suite, overrides: Overrides) -> Any:
        """The suite's model when it is loaded (or overridden), else None."""
        if overrides.model is not None:
            return overrides.model
        return self._models.get(group_key(suite, self.device_for(suite)).model)

    @staticmethod
    def _mapped_hook(suite: Suite, entry: SAEEntry) -> MappedHook | None:
        """The hook a sparsify or dictionary_learning checkpoint's names map to, when the entry names none."""
        from pytest_saeval.sources.common import resolve_path
        from pytest_saeval.sources.dictionary_learning import dictionary_learning_folder_hook
        from pytest_saeval.sources.formats import detect_format
        from pytest_saeval.sources.sparsify import sparsify_folder_hook

        spec = entry.spec
        if spec.path is None or spec.hook_name is not None:
            return None
        folder = resolve_path(spec.path, suite.path.parent)
        try:
            found = detect_format(folder, spec.format)
            if found == "sparsify":
                return sparsify_folder_hook(folder)
            return dictionary_learning_folder_hook(folder) if found == "dictionary_learning" else None
        except SaevalError as e:  # it loaded a moment ago: a file changed meanwhile
            raise located_in(e, suite, spec.line_of("path"), f"saes[{entry.index}].path", entry.index) from e

    @staticmethod
    def _check_mapped(suite: Suite, entry: SAEEntry, mapped: MappedHook | None, model: Any) -> None:
        """A hook mapped from a checkpoint's names that the model lacks, or that TransformerLens normalizes on
        this model (so that it does not hold the module output the trainer hooked), is refused, asking for
        ``hook_name:``."""
        if mapped is None or model is None:
            return
        found = getattr(model, "hook_dict", None)
        hooks: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        said = f"{mapped.checkpoint} reads {mapped.hook}, mapped from {mapped.source}"
        if hooks and mapped.hook not in hooks:
            n_layers = getattr(getattr(model, "cfg", None), "n_layers", None)
            has = f" (it has {n_layers} layers, blocks.0 to blocks.{n_layers - 1})" if isinstance(n_layers, int) \
                and n_layers > 0 else ""
            error = SourceError(f"{said}, but the model has no such hook{has}",
                                fix="add hook_name: to the SAE entry with the hook of this model the SAE reads, or "
                                "point path at a checkpoint trained on this model")
        elif (norm := post_norm_before(mapped.hook, getattr(model, "cfg", None), hooks)) is not None:
            before = f"{norm}.hook_in"
            error = SourceError(
                f"{said}, but on this model TransformerLens applies {norm} to the output before {mapped.hook}, "
                "so that hook does not hold the module output the trainer hooked",
                fix="add hook_name: to the SAE entry with the TransformerLens hook the SAE reads"
                + (f" ({before} holds the output before {norm})" if before in hooks else "")
                + f"; hook_name: {mapped.hook} if it was trained on the output after {norm}")
        else:
            return
        spec = entry.spec
        raise error.located(file=str(suite.path), line=spec.line_of("path"), key=f"saes[{entry.index}].path",
                            subject=Subject(suite=str(suite.path), entry=entry.index, sae=entry.unique_id,
                                            part="hook_name"))

    @staticmethod
    def _load_sae(suite: Suite, entry: SAEEntry, device: str) -> Any:
        from pytest_saeval.sources.saes import load_sae_folder, load_saes

        spec = entry.spec
        try:
            if spec.path is not None:
                return load_sae_folder(spec.path, format=spec.format, hook_name=spec.hook_name, device=device,
                                       base_dir=suite.path.parent)
            loaded = load_saes(release=spec.release, sae_id=entry.release_sae_id if spec.release else None,
                               factory=spec.factory, device=device, base_dir=suite.path.parent)
        except SaevalError as e:
            raise located_in(e, suite, spec.line_of(spec.kind), f"saes[{entry.index}].{spec.kind}", entry.index) from e
        return loaded[0][1]
