"""Dagster wiring: partitions, resources, assets, checks, sensors, jobs."""
