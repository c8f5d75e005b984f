"""deep-events on Dagster: event detection data assets for live-cell microscopy."""

__version__ = "0.1.0"
