"""One run shared by the plugin and the ``saeval`` command: what to evaluate, loading, evaluation,
gate checks, intervals, provenance, and the session that ties them together.

- :mod:`.plan`: SAE entries, overrides, the fused-pass group key; :mod:`.loading`: models, tokens, SAEs;
- :mod:`.evaluation`: one fused pass through the caches (torch); :mod:`.session`: :class:`~.session.Session`;
- :mod:`.checks`: gates checked; :mod:`.intervals`: bootstrap intervals; :mod:`.provenance`: what a
  result was measured on; :mod:`.outcome`: :class:`~.outcome.SuiteRun`; :mod:`.wire`: runs as plain data;
- :mod:`.quiet`: the loading libraries kept quiet.
"""
