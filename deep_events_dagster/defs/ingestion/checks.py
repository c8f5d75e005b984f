"""The ingestion assets' checks: their names, their specs (what each promises and whether it
blocks what follows) and the check results built from the computations of ``core.checks``.

A blocking check that fails with ERROR severity fails its step after the materialisation is
recorded, so nothing downstream of it runs in that run; non-blocking ones only warn.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from deep_events_dagster.core import checks
from deep_events_dagster.core.annotations import AnnotationPoint
from deep_events_dagster.core.detections import DEFAULT_MERGE_DISTANCE_PX
from deep_events_dagster.core.ome import MovieInfo
from deep_events_dagster.defs.ingestion.legacy import LEGACY_ASSET, LEGACY_CHECK

METADATA_COMPLETE = "metadata_complete"
ANNOTATIONS_INSIDE_MOVIE = "annotations_inside_movie"
ONE_PEAK_PER_POINT = "one_peak_per_point"
CROPS_VALID = "crops_valid"
POSITIVE_NEGATIVE_RATIO = "positive_negative_ratio"
CATALOG_MATCHES_FOLDERS = "catalog_matches_folders"
ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


# ---------------------------------------------------------------- specs


def acquisition_metadata_checks() -> list[dg.AssetCheckSpec]:
    """The checks of ``acquisition_metadata``."""
    return [
        dg.AssetCheckSpec(
            METADATA_COMPLETE,
            asset="acquisition_metadata",
            blocking=False,
            description=(
                "db.yaml names the cell line, microscope, contrast and stain or labels (no "
                "stain needed for brightfield) and has the defaults typically_use, augmented, "
                "scale_csv and type. Missing keys make the acquisition's events invisible to "
                "training-set queries on them; fix the folder names or a db_manual.yaml."
            ),
        )
    ]


def ground_truth_checks(kind: str, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The checks of ``<kind>/ground_truth``."""
    return [
        dg.AssetCheckSpec(
            ANNOTATIONS_INSIDE_MOVIE,
            asset=key,
            blocking=True,
            description=(
                f"Every point of the `{kind}*.csv` files lies inside the movie (image, "
                "frames, channels). Points outside fail the ground truth itself (nothing is "
                "written) and this check then lists them per file; when it passes it "
                "reports the points checked per file."
            ),
        ),
        dg.AssetCheckSpec(
            ONE_PEAK_PER_POINT,
            asset=key,
            blocking=True,
            description=(
                "Every annotated point has a ground-truth maximum ≥ the detection "
                f"threshold within the merge distance ({DEFAULT_MERGE_DISTANCE_PX:g} px) in "
                "its frame, so event "
                "detection sees it. Fails e.g. when σ is too small for sub-pixel points; "
                "blocks event crops."
            ),
        ),
    ]


def event_crops_checks(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The checks of ``<kind>/event_crops``."""
    return [
        dg.AssetCheckSpec(
            CROPS_VALID,
            asset=key,
            blocking=True,
            description=(
                "Every event folder of the manifest exists; images.tif is T×[C×]crop×crop "
                "with T the event's frames, in the movie's dtype and not empty; "
                "ground_truth.tif matches; events' ground truth reaches the threshold and "
                "negatives' is zero. Blocks the catalog."
            ),
        ),
        dg.AssetCheckSpec(
            POSITIVE_NEGATIVE_RATIO,
            asset=key,
            blocking=False,
            description=(
                "How many event and negative crops the acquisition gave; warns when points "
                "were annotated but no event was detected."
            ),
        ),
    ]


def event_catalog_checks(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The checks of ``<kind>/event_catalog``."""
    return [
        dg.AssetCheckSpec(
            CATALOG_MATCHES_FOLDERS,
            asset=key,
            blocking=True,
            description=(
                "The catalog's automatic documents of this acquisition are exactly the "
                "event folders of the manifest and every event_path exists (manual "
                "documents are not compared). A manual document holding an automatic "
                "event's id, or a concurrent writer, makes it fail."
            ),
        )
    ]


def legacy_events_checks() -> list[dg.AssetCheckSpec]:
    """The check of ``legacy_events``."""
    return [
        dg.AssetCheckSpec(
            LEGACY_CHECK,
            asset=LEGACY_ASSET,
            description="Every event folder found was imported (no problem lines).",
        )
    ]


# ---------------------------------------------------------------- results


def check_result(
    name: str,
    outcome: Any,
    *,
    severity: dg.AssetCheckSeverity,
    metadata: dict[str, Any],
) -> dg.AssetCheckResult:
    """A check result from a ``core.checks`` outcome (``passed`` and ``message``)."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=bool(outcome.passed),
        severity=severity,
        metadata=metadata,
        description=outcome.message,
    )


def bullets(lines: Sequence[str], more: int = 0) -> dg.MetadataValue:
    """Markdown bullets, ``none`` when empty, and a last line counting those left out."""
    text = "\n".join(f"- {line}" for line in lines) or "none"
    if more > 0:
        text += f"\n- … and {more} more"
    return dg.MetadataValue.md(text)


def annotation_bounds(
    points: list[AnnotationPoint], files: tuple, info: MovieInfo
) -> dg.AssetCheckResult:
    """``annotations_inside_movie``: the points per file, and those outside the movie."""
    bounds = checks.annotations_inside_movie(
        points,
        n_frames=info.n_frames,
        height=info.height,
        width=info.width,
        n_channels=info.n_channels,
        files=files,
    )
    table = ["| file | points | outside the movie |", "|---|---|---|"]
    table += [f"| {f.file} | {f.points} | {f.outside} |" for f in bounds.files]
    channels = f", {info.n_channels} channels" if info.n_channels > 1 else ""
    metadata: dict[str, Any] = {
        "points": bounds.n_points,
        "outside": bounds.n_outside,
        "movie_size": f"{info.n_frames} frames, {info.width}×{info.height} px "
        f"(width×height){channels}",
        "files": dg.MetadataValue.md("\n".join(table)),
    }
    if bounds.problems:
        metadata["bad_points"] = bullets(bounds.problems, bounds.n_outside - len(bounds.problems))
    return check_result(ANNOTATIONS_INSIDE_MOVIE, bounds, severity=ERROR, metadata=metadata)
