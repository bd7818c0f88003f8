"""pytest glue for pytest-saeval (options, collection, fixtures, marker, summary).

Imports nothing heavy at import time: torch, TransformerLens and SAE Lens load inside hooks.
"""

from __future__ import annotations
