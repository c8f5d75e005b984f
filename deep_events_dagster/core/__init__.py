"""The science: pure functions over files and arrays (no dagster, no torch, no tensorflow)."""
