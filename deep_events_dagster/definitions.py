"""The single Dagster entry point (``dagster dev -m deep_events_dagster.definitions``)."""

import dagster as dg

from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.settings.platform import HOME_ENV, load_settings


@dg.definitions
def defs() -> dg.Definitions:
    """Definitions for the home named by ``DEEP_EVENTS_HOME`` (read when Dagster loads them)."""
    import os

    settings = load_settings()
    return build_definitions(settings, home_from_env=HOME_ENV in os.environ)
