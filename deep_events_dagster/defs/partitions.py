"""Partition sets: acquisitions (ingestion, predictions) and training runs (training)."""

import dagster as dg

ACQUISITIONS = "acquisitions"
TRAINING_RUNS = "training_runs"

acquisitions_partitions = dg.DynamicPartitionsDefinition(name=ACQUISITIONS)
# one per (settings file, db_prompt), registered by the training settings sensor
training_runs_partitions = dg.DynamicPartitionsDefinition(name=TRAINING_RUNS)
