"""Round four of the bad-input matrix, sources: model folders, datasets and SAE configs that used to load
with something missing or misread (a model folder without some of its weights evaluated with random ones, a
pretokenized column of strings tokenized as text, special tokens to exclude without a tokenizer to name
them). Each now ends as one located error, or a correct result with a note.
"""

from __future__ import annotations

from tests.integration.badinput.kit import BadInputCase

__all__ = ["ROUND_FOUR_SOURCES"]

ROUND_FOUR_SOURCES: tuple[BadInputCase, ...] = ()
