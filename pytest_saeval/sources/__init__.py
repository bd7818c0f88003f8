"""Sources: turn a model / SAE / token-data description into loaded objects.

- :mod:`.models`: ``load_model`` (Hugging Face folder, TransformerLens name or factory);
- :mod:`.saes`: ``load_saes`` (checkpoint folder, pretrained release + id or regex, or factory) and
  ``load_sae_folder``; :mod:`.formats` tells the folder formats apart (``detect_format``), and
  :mod:`.sparsify` / :mod:`.dictionary_learning` read EleutherAI sparsify and dictionary_learning
  checkpoints as SAE Lens SAEs, with hooks mapped by :mod:`.hookpoints`;
- :mod:`.tokens`: ``load_token_file``, ``check_tokens``; :mod:`.hf_datasets`: ``tokens_from_dataset``;
- :mod:`.hf_folder`: a local Hugging Face model folder as a TransformerLens model;
- :mod:`.devices`: ``resolve_device``, ``parse_dtype``; :mod:`.factory`: ``call_factory``;
  :mod:`.common`: offline mode, path resolution, reading library exceptions.

Nothing here imports torch, TransformerLens or SAE Lens at import time. Every error is one
:class:`~pytest_saeval.errors.SourceError` (or ``InputError``) without a file location: the run
layer fills it in with ``err.located(file=..., line=..., key=...)``.
"""
