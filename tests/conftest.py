"""Shared test set-up."""

import pytest

# The CLI points this process at a home by setting these (as `deep-events` must for the
# Dagster processes it starts); every test starts without them, whatever the caller's shell has.
PLATFORM_ENV = (
    "DAGSTER_HOME",
    "DEEP_EVENTS_HOME",
    "DEEP_EVENTS_KINDS",
    "DEEP_EVENTS_ROOTS",
    "DEEP_EVENTS_OUTPUT_ROOT",
    "DEEP_EVENTS_CATALOG_URI",
    "DEEP_EVENTS_QUIET_SECONDS",
)


@pytest.fixture(autouse=True)
def clean_platform_env(monkeypatch):
    """Remove the platform's environment variables for the test (restored afterwards)."""
    for name in PLATFORM_ENV:
        monkeypatch.delenv(name, raising=False)
