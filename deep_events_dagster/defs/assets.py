"""Ingestion assets: one acquisition partition → db.yaml → ground truth → event crops → catalog."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from deep_events_dagster.core import ingest
from deep_events_dagster.core.errors import ConfigurationError, InputError
from deep_events_dagster.core.thumbnails import markdown_image
from deep_events_dagster.defs.partitions import acquisitions_partitions
from deep_events_dagster.defs.resources import CatalogResource, IngestionResource

INGESTION_GROUP = "ingestion"
MAX_TABLE_ROWS = 60


def _user_errors_as_failures(step: Callable[[], Any]) -> Any:
    """Run a core step; bad input becomes a clean Dagster failure naming the file."""
    try:
        return step()
    except (InputError, ConfigurationError, FileNotFoundError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


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
    ref = ingestion.acquisition(context.partition_key)
    step = _user_errors_as_failures(lambda: ingest.inspect_movie(ref))
    info = step.info
    context.log.info(f"{info.path.name}: {info.axes} {info.shape} {info.dtype}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(step.fingerprint.digest),
        metadata={
            "movie": dg.MetadataValue.path(str(info.path)),
            "axes": info.axes,
            "shape": str(list(info.shape)),
            "dtype": info.dtype,
            "frames": info.n_frames,
            "channels": info.n_channels,
            "size_mb": round(step.fingerprint.size / 1e6, 2),
            "pixel_size_um": info.physical_size_x or 0.0,
            "frame_interval_s": info.fps or 0.0,
            "fingerprint": step.fingerprint.digest,
        },
    )


@dg.asset(
    partitions_def=acquisitions_partitions,
    group_name=INGESTION_GROUP,
    deps=[raw_movie],
    code_version="1",
    kinds={"yaml"},
)
def acquisition_metadata(
    context: dg.AssetExecutionContext, ingestion: IngestionResource
) -> dg.MaterializeResult:
    """``db.yaml`` of the acquisition: OME fields, frame interval, date / cell line /
    microscope / contrast / stain / labels inferred from folder names (keys.yaml), every
    ``db_manual.yaml`` from the root down (nearer wins), then defaults."""
    ref = ingestion.acquisition(context.partition_key)
    metadata, path = _user_errors_as_failures(
        lambda: ingest.make_metadata(ref, ingestion.layout(), ingestion.vocabulary())
    )
    shown = ["date", "cell_line", "microscope", "contrast", "stain", "labels", "fps"]
    rows = "\n".join(f"| {key} | {metadata.get(key, '—')} |" for key in shown)
    return dg.MaterializeResult(
        metadata={
            "db_yaml": dg.MetadataValue.path(str(path)),
            "summary": dg.MetadataValue.md(f"| field | value |\n|---|---|\n{rows}"),
            "cell_line": str(metadata.get("cell_line", "")),
            "microscope": str(metadata.get("microscope", "")),
            "contrast": str(metadata.get("contrast", "")),
        }
    )


def _events_table(step: ingest.EventsStep) -> str:
    lines = ["| id | kind | frames | box (x0, y0, x1, y1) | detections |", "|---|---|---|---|---|"]
    for record in step.events[:MAX_TABLE_ROWS]:
        lines.append(
            f"| `{record.event_id}` | {'event' if record.positive else 'negative'} | "
            f"{list(record.frames)} | {list(record.crop_box)} | {record.n_detections} |"
        )
    if len(step.events) > MAX_TABLE_ROWS:
        lines.append(f"| … {len(step.events) - MAX_TABLE_ROWS} more | | | | |")
    return "\n".join(lines)


def build_kind_assets(kind: str) -> list[dg.AssetsDefinition]:
    """The ground truth, event crops and catalog assets of one annotation kind."""

    @dg.asset(
        key=[kind, "ground_truth"],
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
    )
    def ground_truth(
        context: dg.AssetExecutionContext, ingestion: IngestionResource
    ) -> dg.MaterializeResult:
        ref = ingestion.acquisition(context.partition_key)
        step = _user_errors_as_failures(
            lambda: ingest.make_ground_truth(
                ref, kind, ingestion.layout(), sigma=ingestion.sigma, cutoff=ingestion.gt_cutoff
            )
        )
        context.log.info(f"{step.n_points} points from {len(step.csv_files)} CSV file(s)")
        return dg.MaterializeResult(
            metadata={
                "ground_truth": dg.MetadataValue.path(str(step.path)),
                "annotation_files": ", ".join(p.name for p in step.csv_files) or "none",
                "points": step.n_points,
                "frames_with_signal": step.frames_with_signal,
                "sigma_px": ingestion.sigma,
                "preview": dg.MetadataValue.md(
                    markdown_image(ingest.ground_truth_thumbnail(step.path), "ground truth")
                ),
            }
        )

    @dg.asset(
        key=[kind, "event_crops"],
        partitions_def=acquisitions_partitions,
        group_name=INGESTION_GROUP,
        deps=[ground_truth],
        code_version="1",
        kinds={"tiff"},
        description=(
            "Events detected in the ground truth (local maxima linked over frames), cropped "
            "from the movie bit-exactly plus signal-free negatives, one `ev_*` folder each "
            f"under `event_data_{kind}/`."
        ),
    )
    def event_crops(
        context: dg.AssetExecutionContext, ingestion: IngestionResource
    ) -> dg.MaterializeResult:
        ref = ingestion.acquisition(context.partition_key)
        step = _user_errors_as_failures(
            lambda: ingest.extract_events(
                ref, kind, ingestion.layout(), progress=context.log.info, **ingestion.event_params()
            )
        )
        return dg.MaterializeResult(
            metadata={
                "events": step.n_positive,
                "negatives": step.n_negative,
                "removed_stale": step.removed_stale,
                "manifest": dg.MetadataValue.path(str(step.manifest)),
                "event_table": dg.MetadataValue.md(_events_table(step)),
                "thumbnail": dg.MetadataValue.md(
                    markdown_image(step.thumbnail_png, "max projection with event boxes")
                ),
            }
        )

    @dg.asset(
        key=[kind, "event_catalog"],
        partitions_def=acquisitions_partitions,
        group_name=INGESTION_GROUP,
        deps=[event_crops],
        code_version="1",
        kinds={"mongodb"},
        description=(
            f"The acquisition's events in the catalog collection `event_data_{kind}`: upserted "
            "with deterministic ids; stale automatic events of this acquisition removed; "
            "manual events never touched."
        ),
    )
    def event_catalog(
        context: dg.AssetExecutionContext, ingestion: IngestionResource, catalog: CatalogResource
    ) -> dg.MaterializeResult:
        ref = ingestion.acquisition(context.partition_key)
        layout = ingestion.layout()
        documents = _user_errors_as_failures(
            lambda: ingest.event_documents(layout.events_manifest(ref.folder, ref.root, kind))
        )
        collection = f"event_data_{kind}"
        db = catalog.open()
        try:
            result = db.replace_partition(collection, ref.key, documents)
            total = db.count(collection, {"acquisition_key": ref.key})
            where = db.describe()
        finally:
            db.close()
        context.log.info(f"{len(documents)} documents → {where} / {collection}")
        return dg.MaterializeResult(
            metadata={
                "collection": collection,
                "catalog": where,
                "documents": total,
                "inserted": result.inserted,
                "replaced": result.replaced,
                "deleted_stale": result.deleted_stale,
                "kept_manual": result.kept_manual,
            }
        )

    return [ground_truth, event_crops, event_catalog]
