"""Content-addressed storage around the engine: one content hasher, the results cache and the
model-side cache (safetensors files with a key and a digest, written atomically).

- :mod:`.hashing`: the hasher and the :class:`~.hashing.Fingerprints` memo;
- :mod:`.entries`: one cache file (read, verify, write);
- :mod:`.results`: :class:`~.results.ResultsCache`; :mod:`.model`: :class:`~.model.ModelCache`;
- :mod:`.cached`: :class:`~.cached.EvalCache`, ``evaluate`` through both caches.
"""
