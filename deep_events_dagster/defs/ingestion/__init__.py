"""Ingestion: one acquisition partition → movie fingerprint → db.yaml → per kind ground truth →
event crops → catalog, with their checks, the acquisition sensor, the ``ingest`` job and the
``legacy_events`` import (``assets`` lists them; the other modules hold the steps)."""
