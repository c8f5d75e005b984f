"""Helpers that build realistic data for tests, benchmarks and the demo (no Dagster)."""
