"""The ``deep-events`` command: the same Definitions and Dagster instance as the UI.

``parser`` reads the command line; ``ingestion``, ``training``, ``models`` and ``services`` hold
the commands; ``runs`` is the engine that runs jobs per partition on the home's instance.
"""

from deep_events_dagster.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
