"""The acquisition-level ingestion steps behind ``raw_movie`` (the movie checked complete and
fingerprinted) and ``acquisition_metadata`` (``db.yaml`` and its completeness check), as the
results Dagster records."""

from typing import Any

import dagster as dg

from deep_events_dagster.cluster.checks import require_visible
from deep_events_dagster.core import checks
from deep_events_dagster.defs.ingestion.checks import METADATA_COMPLETE, WARN, check_result
from deep_events_dagster.defs.ingestion.inputs import user_errors_as_failures
from deep_events_dagster.defs.resources import IngestionResource

# db.yaml fields shown in acquisition_metadata's summary table
SUMMARY_FIELDS = (
    "date",
    "cell_line",
    "microscope",
    "contrast",
    "stain",
    "labels",
    "fps",
    "frame_interval_s",
)


def inspect_movie(
    context: dg.AssetExecutionContext, ingestion: IngestionResource
) -> dg.MaterializeResult:
    """Check the partition's movie is complete and fingerprint it; its data version is the
    fingerprint."""
    ref = ingestion.acquisition(context.partition_key)
    # the run's first step: on a cluster it may run on a machine that does not see the share
    paths = {"acquisition folder": ref.folder}
    user_errors_as_failures(lambda: require_visible(paths))
    step = user_errors_as_failures(lambda: ingestion.pipeline().movie(ref))
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
            "frame_interval_s": info.frame_interval_s or 0.0,
            "fps": info.fps or 0.0,
            "fingerprint": step.fingerprint.digest,
        },
    )


def write_metadata(
    context: dg.AssetExecutionContext, ingestion: IngestionResource
) -> dg.MaterializeResult:
    """Build and write the partition's ``db.yaml``; check it names what training sets query."""
    ref = ingestion.acquisition(context.partition_key)
    metadata, path = user_errors_as_failures(
        lambda: ingestion.pipeline(with_vocabulary=True).metadata(ref)
    )
    rows = "\n".join(f"| {key} | {metadata.get(key, '—')} |" for key in SUMMARY_FIELDS)
    completeness = checks.metadata_complete(metadata)
    check_metadata: dict[str, Any] = {
        "missing": ", ".join(completeness.missing) or "none",
        "checked": ", ".join(completeness.checked),
        "brightfield": completeness.brightfield,
        "db_yaml": dg.MetadataValue.path(str(path)),
    }
    complete = check_result(METADATA_COMPLETE, completeness, severity=WARN, metadata=check_metadata)
    return dg.MaterializeResult(
        check_results=[complete],
        metadata={
            "db_yaml": dg.MetadataValue.path(str(path)),
            "summary": dg.MetadataValue.md(f"| field | value |\n|---|---|\n{rows}"),
            "cell_line": str(metadata.get("cell_line", "")),
            "microscope": str(metadata.get("microscope", "")),
            "contrast": str(metadata.get("contrast", "")),
        },
    )
