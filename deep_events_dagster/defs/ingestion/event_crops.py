"""The ``<kind>/event_crops`` step: detect events in the ground truth, crop them (and negatives)
into ``ev_*`` folders and check them (valid crops, events against negatives)."""

from typing import Any

import dagster as dg

from deep_events_dagster.core import checks
from deep_events_dagster.core.ingest import EventsStep
from deep_events_dagster.core.thumbnails import markdown_image
from deep_events_dagster.defs.ingestion.checks import (
    CROPS_VALID,
    ERROR,
    POSITIVE_NEGATIVE_RATIO,
    WARN,
    bullets,
    check_result,
)
from deep_events_dagster.defs.ingestion.inputs import read_annotations, user_errors_as_failures
from deep_events_dagster.defs.resources import IngestionResource

MAX_TABLE_ROWS = 60


def extract_event_crops(
    context: dg.AssetExecutionContext, ingestion: IngestionResource, kind: str
) -> dg.MaterializeResult:
    """Write the kind's event folders and manifest; the result carries both checks."""
    ref = ingestion.acquisition(context.partition_key)
    layout = ingestion.layout()
    settings = user_errors_as_failures(lambda: ingestion.kind(kind))
    params = settings.params
    pipeline = ingestion.pipeline(settings)
    step = user_errors_as_failures(
        lambda: pipeline.event_crops(ref, kind, progress=context.log.info)
    )
    info = step.movie  # the movie header the step read
    points, _files, _info = user_errors_as_failures(
        lambda: read_annotations(
            ref, settings.options.annotations, layout, settings.options.shape, info=info
        )
    )
    validity = checks.crops_valid(
        step.manifest,
        crop_size=params.crop_size,
        dtype=info.dtype,
        n_channels=info.n_channels,
        threshold=params.detection_threshold,
    )
    balance = checks.positive_negative_ratio(
        step.n_positive, step.n_negative, n_annotated_points=len(points)
    )
    crops_metadata: dict[str, Any] = {
        "event_folders": validity.n_events,
        "events": validity.n_positive,
        "negatives": validity.n_negative,
        "invalid": validity.n_bad,
        "crop_size_px": params.crop_size,
        "dtype": info.dtype,
    }
    if validity.problems:
        crops_metadata["problems"] = bullets(validity.problems)
    balance_metadata: dict[str, Any] = {
        "events": balance.n_positive,
        "negatives": balance.n_negative,
        "annotated_points": balance.n_annotated_points,
    }
    if balance.negatives_per_event is not None:
        balance_metadata["negatives_per_event"] = round(balance.negatives_per_event, 3)
    return dg.MaterializeResult(
        metadata={
            "events": step.n_positive,
            "negatives": step.n_negative,
            "removed_stale": step.removed_stale,
            "manifest": dg.MetadataValue.path(str(step.manifest)),
            "event_table": dg.MetadataValue.md(events_table(step)),
            "thumbnail": dg.MetadataValue.md(
                markdown_image(step.thumbnail_png, "max projection with event boxes")
            ),
        },
        check_results=[
            check_result(CROPS_VALID, validity, severity=ERROR, metadata=crops_metadata),
            check_result(
                POSITIVE_NEGATIVE_RATIO, balance, severity=WARN, metadata=balance_metadata
            ),
        ],
    )


def events_table(step: EventsStep) -> str:
    """Markdown table of the step's event folders (the first ``MAX_TABLE_ROWS``)."""
    lines = ["| id | kind | frames | box (x0, y0, x1, y1) | detections |", "|---|---|---|---|---|"]
    for record in step.events[:MAX_TABLE_ROWS]:
        lines.append(
            f"| `{record.event_id}` | {'event' if record.positive else 'negative'} | "
            f"{list(record.frames)} | {list(record.crop_box)} | {record.n_detections} |"
        )
    if len(step.events) > MAX_TABLE_ROWS:
        lines.append(f"| … {len(step.events) - MAX_TABLE_ROWS} more | | | | |")
    return "\n".join(lines)
