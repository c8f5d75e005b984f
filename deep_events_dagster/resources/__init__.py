"""Package data: ``dagster.yaml``, the template of a home's Dagster instance file."""
