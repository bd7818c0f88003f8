"""``evaluate()``: every catalogue metric for many SAEs on one model, in one fused pass (torch).

No files and no suites here: a model, SAEs and a token array in, typed results out.

- :mod:`.evaluate`: ``evaluate`` and :class:`~.evaluate.EngineOptions`; :mod:`.fused`: the schedule;
  :mod:`.forwards`, :mod:`.hooks`: the model's forwards and hook-level helpers; :mod:`.head`: the
  unembedding and next-token scoring; :mod:`.collect`: one host transfer into results;
- :mod:`.losses`, :mod:`.sparsity`, :mod:`.weights`: the metric accumulators and weight metrics;
- :mod:`.records`: the SAE-independent part of a pass (for a model-side store); :mod:`.inputs`:
  checks of what ``evaluate`` is given; :mod:`.results`: :class:`~.results.SAEResult` (imports no torch);
  :mod:`.protocols`: the SAE protocol (:class:`~.protocols.SAELike`).
"""
