"""Loading what suites name, once each: a model per distinct model spec (even across suites), a token
set per data spec, an SAE per entry. Every source error comes out located at the suite key it came
from (file, line, key path) and names its subject (suite, SAE entry)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pytest_saeval.errors import SaevalError, Subject
from pytest_saeval.run.plan import ModelKey, Overrides, SAEEntry, group_key, located_in
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
            out[entry.unique_id] = self._saes[key]
        return out

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
