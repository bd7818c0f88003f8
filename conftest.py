"""Root conftest: makes pytest's ``pytester`` fixture available to the integration tests."""

pytest_plugins = ["pytester"]
