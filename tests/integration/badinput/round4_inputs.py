"""Round four of the bad-input matrix, what the user types: suite values beyond reason (gate lists and
numbers without end, digits of other scripts), paths with ``~`` or empty, ``saeval init``'s margins, and the
messages of smaller slips. Each ends as one located error, or a correct result.

What the matrix cannot express is tested where it can be: an empty path option (``saeval run --output-dir ''``) is
a usage error with no place in a suite file to point at (``tests/unit/cli/test_args.py``), ``SAEVAL_CACHE_DIR=~/x``
and a blank one need the caches the matrix turns off (``tests/unit/store/test_folder.py``,
``tests/unit/cli/test_commands.py``), the ini keys (``tests/unit/plugin/test_options.py``), Slurm's and CircleCI's
index variables (``tests/unit/run/test_shards.py``) and ``saeval init``'s margins
(``tests/integration/test_cli_init.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.integration.badinput.kit import Assets, BadInputCase, base_suite, edit, write_suite

__all__ = ["ROUND_FOUR_INPUTS"]

_GATE = 'l0: ">= 0"'
"""The base suite's one gate, which the cases replace."""


def _many_expressions(count: int) -> str:
    """A flow list of ``count`` copies of one bound on one line (a 220 KB suite for 20,000: within the reader's
    256 KiB): it used to print 1.28 MB under pytest and write 757 KB JSON files."""
    return "l0: [" + ", ".join(['">= 1000"'] * count) + "]"


_NINE = "l0:\n" + "".join(f'        - ">= {i}"\n' for i in range(9)).rstrip("\n")
"""A block list of nine different lower bounds, one more than a gate holds."""


def _under_home(*parts: str) -> Callable[[Path], None]:
    """Check that the run wrote ``HOME/parts`` (``HOME`` is ``{folder}/home``) and made no folder named ``~``."""

    def check(folder: Path) -> None:
        assert not (folder / "~").exists(), "a folder named ~ was made in the current folder"
        assert (folder / "home").joinpath(*parts).exists(), f"nothing at ~/{'/'.join(parts)}"

    return check


def _with_folder(name: str) -> Callable[[Path, Assets], Path]:
    def build(folder: Path, a: Assets) -> Path:
        (folder / name).mkdir()
        return write_suite(folder, base_suite(a))

    return build


def _base(folder: Path, a: Assets) -> Path:
    return write_suite(folder, base_suite(a))


_HOME = (("HOME", "{folder}/home"),)
_C = BadInputCase

ROUND_FOUR_INPUTS: tuple[BadInputCase, ...] = (
    # --- gates beyond reason: bounded, refused before anything loads -------------------------------
    _C("gate-list-of-20000-expressions", edit((_GATE, _many_expressions(20_000))),
       expect=("gate on l0 lists 20,000 expressions; a gate holds at most 8", '[">= LOW", "<= HIGH"]'),
       key="saes[0].gates.l0", line_of="l0:", max_seconds=10, schema=True),
    _C("gate-list-of-nine-expressions", edit((_GATE, _NINE)),
       expect=("gate on l0 lists 9 expressions; a gate holds at most 8",), key="saes[0].gates.l0", line_of="l0:",
       schema=True),
    _C("gate-number-of-100000-digits", edit((_GATE, 'l0: ">= ' + "0" * 100_000 + '1"')),
       expect=("is 100,004 characters long; an expression holds at most 100", "a few digits"),
       key="saes[0].gates.l0", line_of="l0:", max_seconds=5, schema=True),
    _C("gate-expression-repeated", edit((_GATE, 'l0: [">= 0", "<= 1000", ">= 0"]')),
       expect=("gate on l0 lists >= 0 twice (items 0 and 2)", "remove the repeated expression"),
       key="saes[0].gates.l0[2]", line_of="l0:", schema=True),
    # --- digits and spaces of other scripts: never read as the number they look like ----------------
    _C("gate-arabic-indic-digit", edit((_GATE, 'l0: ">= \u0663"')),  # float() reads it as 3
       expect=("U+0663", "not an ASCII digit, sign or space", "write the expression in ASCII"),
       key="saes[0].gates.l0", line_of="l0:", schema=True),
    _C("gate-fullwidth-digit", edit((_GATE, 'l0: ">= \uff13"')),
       expect=("U+FF13", "write the expression in ASCII"), key="saes[0].gates.l0", line_of="l0:", schema=True),
    _C("gate-no-break-space", edit((_GATE, 'l0: ">=\u00a00"')),
       expect=("U+00A0", "a no-break space"), key="saes[0].gates.l0", line_of="l0:", schema=True),
    # --- a slip whose message was about something else -------------------------------------------------
    _C("yaml-merge-key-of-a-number", edit((_GATE, "<<: 5\n      " + _GATE)),  # was "quote gate expressions"
       expect=("for merging", "a merge key `<<:` takes a mapping"), key=None, line_of="<<: 5"),
    # --- paths with ~ that no shell expanded (a quoted flag): under the home folder ------------------
    _C("output-dir-with-tilde", _base, outcome="ok", pytest=False, args=("--output-dir", "~/o"), env=_HOME,
       expect=("1 passed",), key=None, line_of=None, check=_under_home("o", "all_eval_results.json")),
    _C("cache-dir-with-tilde", _base, outcome="ok", pytest=False, args=("--cache-dir", "~/c"), env=_HOME,
       expect=("1 passed",), key=None, line_of=None, check=_under_home("c")),
    _C("report-with-tilde", _base, outcome="ok", pytest=False, args=("--report", "~/r/page.html"), env=_HOME,
       expect=("1 passed",), key=None, line_of=None, check=_under_home("r", "page.html")),
    # --- a step summary that is a folder: a fix for a folder, not for a full disk -------------------
    _C("step-summary-folder-fix", _with_folder("summary"), outcome="io", pytest=False,
       env=(("GITHUB_STEP_SUMMARY", "{folder}/summary"),),
       expect=("cannot write $GITHUB_STEP_SUMMARY", "a folder is in the way",
               "Fix: point GITHUB_STEP_SUMMARY at a file, not a folder"), key=None, line_of=None),
)
"""The round-four cases about what the user types."""
