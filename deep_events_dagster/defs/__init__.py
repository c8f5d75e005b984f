"""Dagster wiring, the only Dagster layer: ``ingestion/`` (acquisitions → catalog) and
``training/`` (training runs → models → evaluation, exports, predictions), each with its assets,
checks, sensors and jobs; shared here: ``partitions``, ``resources``, ``executors`` and
``build`` (assembles the Definitions)."""
