"""The ingestion assets, one acquisition partition each: ``raw_movie`` → ``acquisition_metadata``
→ per annotation kind ``<kind>/ground_truth`` → ``<kind>/event_crops`` → ``<kind>/event_catalog``,
plus ``legacy_events`` (original event folders into the catalog).

This module declares them — keys, dependencies, code versions, descriptions, checks — and
each step's work lives in a sibling module: ``acquisition`` (movie, db.yaml), ``ground_truth``,
``event_crops``, ``event_catalog``, ``legacy``; the check specs and results in ``checks``.
"""

from collections.abc import Iterator

import dagster as dg

from deep_events_dagster.catalog import collection_name
from deep_events_dagster.defs.ingestion import checks
from deep_events_dagster.defs.ingestion.acquisition import inspect_movie, write_metadata
from deep_events_dagster.defs.ingestion.event_catalog import store_events
from deep_events_dagster.defs.ingestion.event_crops import extract_event_crops
from deep_events_dagster.defs.ingestion.ground_truth import make_ground_truth
from deep_events_dagster.defs.ingestion.legacy import (
    LEGACY_ASSET,
    LEGACY_GROUP,
    LegacyImportConfig,
    import_legacy_events,
)
from deep_events_dagster.defs.partitions import acquisitions_partitions
from deep_events_dagster.defs.resources import CatalogResource, IngestionResource

INGESTION_GROUP = "ingestion"


@dg.asset(
    partitions_def=acquisitions_partitions,
    group_name=INGESTION_GROUP,
    code_version="1",
    kinds={"tiff"},
)
def raw_movie(
    context: dg.AssetExecutionContext, ingestion: IngestionResource
) -> dg.MaterializeResult:
    """The acquisition's OME-TIFF movie: checked complete, fingerprinted (path, size, mtime,
    hashes of its first and last planes). Its data version follows the fingerprint, so a
    changed movie marks everything downstream stale."""
    return inspect_movie(context, ingestion)


@dg.asset(
    partitions_def=acquisitions_partitions,
    group_name=INGESTION_GROUP,
    deps=[raw_movie],
    # 2: fps in frames per second (was the interval in s), plus frame_interval_s
    code_version="2",
    kinds={"yaml"},
    check_specs=checks.acquisition_metadata_checks(),
)
def acquisition_metadata(
    context: dg.AssetExecutionContext, ingestion: IngestionResource
) -> dg.MaterializeResult:
    """``db.yaml`` of the acquisition: OME fields, ``fps`` (frames per second) and
    ``frame_interval_s`` (seconds), date / cell line / microscope / contrast / stain / labels
    inferred from folder names (keys.yaml), every ``db_manual.yaml`` from the root down
    (nearer wins), then defaults."""
    return write_metadata(context, ingestion)


def build_kind_assets(kind: str) -> list[dg.AssetsDefinition]:
    """The ground truth, event crops and catalog assets of one annotation kind, with checks."""
    ground_truth = build_ground_truth(kind)
    event_crops = build_event_crops(kind, ground_truth)
    event_catalog = build_event_catalog(kind, event_crops)
    return [ground_truth, event_crops, event_catalog]


def build_ground_truth(kind: str) -> dg.AssetsDefinition:
    """``<kind>/ground_truth``, after ``acquisition_metadata``."""
    key = dg.AssetKey([kind, "ground_truth"])

    @dg.asset(
        key=key,
        partitions_def=acquisitions_partitions,
        group_name=INGESTION_GROUP,
        deps=[acquisition_metadata],
        code_version="1",
        kinds={"tiff"},
        description=(
            f"Gaussian ground truth of the `{kind}*.csv` annotations: one Gaussian (σ in px, "
            "peak 1, values under 10% of the peak set to 0) per napari point in its frame; "
            f"written as `ground_truth_{kind}.tif` next to the movie."
        ),
        check_specs=checks.ground_truth_checks(kind, key),
    )
    def ground_truth(
        context: dg.AssetExecutionContext, ingestion: IngestionResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        yield from make_ground_truth(context, ingestion, kind)

    return ground_truth


def build_event_crops(kind: str, ground_truth: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """``<kind>/event_crops``, after the kind's ground truth."""
    key = dg.AssetKey([kind, "event_crops"])

    @dg.asset(
        key=key,
        partitions_def=acquisitions_partitions,
        group_name=INGESTION_GROUP,
        deps=[ground_truth],
        # 2: event_db.yaml copies db.yaml's new fps (frames per second) and frame_interval_s
        code_version="2",
        kinds={"tiff"},
        description=(
            "Events detected in the ground truth (local maxima linked over frames), cropped "
            "from the movie bit-exactly plus signal-free negatives, one `ev_*` folder each "
            f"under `event_data_{kind}/`."
        ),
        check_specs=checks.event_crops_checks(key),
    )
    def event_crops(
        context: dg.AssetExecutionContext, ingestion: IngestionResource
    ) -> dg.MaterializeResult:
        return extract_event_crops(context, ingestion, kind)

    return event_crops


def build_event_catalog(kind: str, event_crops: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """``<kind>/event_catalog``, after the kind's event crops."""
    key = dg.AssetKey([kind, "event_catalog"])
    collection = collection_name(kind)

    @dg.asset(
        key=key,
        partitions_def=acquisitions_partitions,
        group_name=INGESTION_GROUP,
        deps=[event_crops],
        # 2: documents carry fps in frames per second and frame_interval_s
        code_version="2",
        kinds={"mongodb"},
        description=(
            f"The acquisition's events in the catalog collection `{collection}`: upserted "
            "with deterministic ids; stale automatic events of this acquisition removed; "
            "manual events never touched."
        ),
        check_specs=checks.event_catalog_checks(key),
    )
    def event_catalog(
        context: dg.AssetExecutionContext, ingestion: IngestionResource, catalog: CatalogResource
    ) -> dg.MaterializeResult:
        return store_events(context, ingestion, catalog, kind, collection)

    return event_catalog


@dg.asset(
    name=LEGACY_ASSET,
    group_name=LEGACY_GROUP,
    kinds={"mongodb"},
    check_specs=checks.legacy_events_checks(),
)
def legacy_events(
    context: dg.AssetExecutionContext, config: LegacyImportConfig, catalog: CatalogResource
) -> dg.MaterializeResult:
    """Event folders written by the original deep-events (``ev_*/`` with ``images.tif``,
    ``ground_truth.tif``, ``event_db.yaml``), upserted into a catalog collection.

    Folders come from the run config (``folders``), else from ``legacy_folders`` in
    ``<home>/deep_events.yaml`` (a folder or a list; relative ones under the home); each is
    searched recursively. Documents keep their ``_id`` and fields; ``event_path`` becomes the
    folder's current path (the old one is kept in ``original_event_path``) and
    ``imported_from`` is ``legacy``. Folders written before the original's June 2023 fix hold
    the frame interval under ``fps``: when ``ome.time_increment`` gives it, ``fps`` becomes
    frames per second and ``frame_interval_s`` the interval, the old value is kept in
    ``fps_as_written`` and ``fps_corrected`` counts them. Re-running updates the same documents
    and leaves the rest of the collection alone. Folders that cannot be imported are listed in
    the metadata and fail the ``all_folders_imported`` check; the others are still imported."""
    return import_legacy_events(context, config, catalog)
