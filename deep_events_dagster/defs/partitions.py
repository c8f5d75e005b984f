"""Partition sets."""

import dagster as dg

ACQUISITIONS = "acquisitions"

acquisitions_partitions = dg.DynamicPartitionsDefinition(name=ACQUISITIONS)
