"""Shared test set-up."""

import sys

import pytest


def pytest_sessionstart(session):
    """absl (TensorFlow's logging) binds its handler to the sys.stderr of its first import —
    pytest's capture stream in a test — and closes it when logging's handlers are shut down
    (Dagster's log configuration does): initialise it once on the process's own stderr."""
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__


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
