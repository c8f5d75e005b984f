"""The ingestion jobs: ``ingest`` (one acquisition partition through every ingestion asset)
and ``legacy_import`` (original event folders into the catalog)."""

import dagster as dg

from deep_events_dagster.defs.ingestion.assets import INGESTION_GROUP, legacy_events
from deep_events_dagster.defs.ingestion.legacy import LEGACY_ASSET, LEGACY_JOB
from deep_events_dagster.defs.partitions import acquisitions_partitions

INGEST_JOB = "ingest"

ingest_job = dg.define_asset_job(
    name=INGEST_JOB,
    selection=dg.AssetSelection.groups(INGESTION_GROUP) - dg.AssetSelection.assets(LEGACY_ASSET),
    partitions_def=acquisitions_partitions,
    description="Ingest one acquisition: movie → db.yaml → ground truth → event crops → catalog.",
)

legacy_import_job = dg.define_asset_job(
    name=LEGACY_JOB,
    selection=dg.AssetSelection.assets(legacy_events),
    description="Import original deep-events event folders into the catalog.",
)
