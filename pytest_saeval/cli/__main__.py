"""``python -m pytest_saeval.cli``: the ``saeval`` command."""

import sys

from pytest_saeval.cli import console

sys.exit(console())
