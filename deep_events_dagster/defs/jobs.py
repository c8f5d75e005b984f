"""Jobs."""

import dagster as dg

from deep_events_dagster.defs.assets import INGESTION_GROUP
from deep_events_dagster.defs.partitions import acquisitions_partitions

INGEST_JOB = "ingest"

ingest_job = dg.define_asset_job(
    name=INGEST_JOB,
    selection=dg.AssetSelection.groups(INGESTION_GROUP) - dg.AssetSelection.assets("legacy_events"),
    partitions_def=acquisitions_partitions,
    description="Ingest one acquisition: movie → db.yaml → ground truth → event crops → catalog.",
)
