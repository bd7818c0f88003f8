"""``python -m pytest_saeval.cli``: the ``saeval`` command."""

import sys

from pytest_saeval.cli import main

sys.exit(main())
