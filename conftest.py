"""Root conftest: makes pytest's ``pytester`` fixture available to the integration tests."""

pytest_plugins = ["pytester"]

import os

# On shared CPUs, spinning OpenMP threads slow every torch call badly; waiting passively does not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
