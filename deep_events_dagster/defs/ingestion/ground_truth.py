"""The ``<kind>/ground_truth`` step: render the Gaussian ground truth of a kind's annotations
and check it (every point inside the movie, one peak per point)."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from deep_events_dagster.core import checks
from deep_events_dagster.core.detections import DEFAULT_MERGE_DISTANCE_PX
from deep_events_dagster.core.errors import AnnotationError, ConfigurationError, InputError
from deep_events_dagster.core.previews import ground_truth_thumbnail
from deep_events_dagster.core.thumbnails import markdown_image
from deep_events_dagster.defs.ingestion.checks import (
    ERROR,
    ONE_PEAK_PER_POINT,
    annotation_bounds,
    check_result,
)
from deep_events_dagster.defs.ingestion.inputs import read_annotations, user_errors_as_failures
from deep_events_dagster.defs.resources import IngestionResource
from deep_events_dagster.settings.ingestion import IngestionParams


def make_ground_truth(
    context: dg.AssetExecutionContext, ingestion: IngestionResource, kind: str
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Write ``ground_truth_<kind>.tif`` and yield its result with both checks.

    Points outside the movie write nothing: the ``annotations_inside_movie`` result listing
    them is yielded, then the step fails naming the file.
    """
    ref = ingestion.acquisition(context.partition_key)
    layout = ingestion.layout()
    settings = user_errors_as_failures(lambda: ingestion.kind(kind))
    params, prefix = settings.params, settings.options.annotations
    shape = settings.options.shape
    pipeline = ingestion.pipeline(settings)
    try:
        step = pipeline.ground_truth(ref, kind)
    except AnnotationError as exc:
        # nothing was written; record which points lie outside, then fail naming the file
        # (when the CSVs cannot even be parsed there is nothing to count)
        try:
            outside = annotation_bounds(*read_annotations(ref, prefix, layout, shape))
        except (InputError, ConfigurationError, OSError):
            outside = None
        if outside is not None and not outside.passed:
            yield outside
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except (InputError, ConfigurationError, FileNotFoundError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info(f"{step.n_points} points from {len(step.csv_files)} CSV file(s)")

    # the checks read the annotations, CSVs and movie header the step read
    files, info = step.csv_files, step.info
    if shape == "lines":  # the vertices for the bounds, the lines for the check
        lines = list(step.annotations)
        points = checks.line_vertices(lines)
        peaks = checks.lines_drawn(step.path, lines, threshold=params.detection_threshold)
    else:
        points = list(step.annotations)
        peaks = checks.one_peak_per_point(step.path, points, threshold=params.detection_threshold)
    yield dg.MaterializeResult(
        metadata={
            "ground_truth": dg.MetadataValue.path(str(step.path)),
            "annotation_files": ", ".join(p.name for p in step.csv_files) or "none",
            "points": step.n_points,
            "frames_with_signal": step.frames_with_signal,
            "sigma_px": params.sigma,
            "preview": dg.MetadataValue.md(
                markdown_image(ground_truth_thumbnail(step.path), "ground truth")
            ),
        },
        check_results=[
            annotation_bounds(points, files, info),
            check_result(
                ONE_PEAK_PER_POINT, peaks, severity=ERROR, metadata=_peak_metadata(peaks, params)
            ),
        ],
    )


def _peak_metadata(peaks: Any, params: IngestionParams) -> dict[str, Any]:
    """``one_peak_per_point``'s metadata, with the points without a peak as a table."""
    metadata: dict[str, Any] = {
        "points": peaks.n_points,
        "peaks_found": peaks.n_peaks,
        "missing": peaks.n_missing,
        "frames_checked": peaks.frames_checked,
        "threshold": params.detection_threshold,
        "tolerance_px": DEFAULT_MERGE_DISTANCE_PX,
        "sigma_px": params.sigma,
        "read": "support windows (sidecar)" if peaks.used_support else "whole frames",
    }
    if peaks.missing:
        missing = ["| file | row | frame | y (px) | x (px) |", "|---|---|---|---|---|"]
        missing += [f"| {m.file} | {m.row} | {m.frame} | {m.y} | {m.x} |" for m in peaks.missing]
        metadata["points_without_peak"] = dg.MetadataValue.md("\n".join(missing))
    return metadata
