"""What a ``<kind>/predictions`` run reports: the out-of-sample record kept beside the movie
and in the model folder, and the metadata the UI shows (scores over time, a thumbnail of the
best frame, the predicted events and their comparison with the annotated ones)."""

import re
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from deep_events_dagster.core.movie_reader import MovieReader
from deep_events_dagster.core.thumbnails import (
    downsample_factor,
    draw_boxes,
    encode_png,
    markdown_image,
    to_display,
)

MAX_EVENT_ROWS = 60
_PREDICTED_COLOUR = (40, 120, 255)
_ANNOTATED_COLOUR = (255, 60, 60)


def safe_name(key: str) -> str:
    """A partition key as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_") or "acquisition"


def out_of_sample_record(
    key: str, kind: str, deployment, prediction, comparison, annotated=()
) -> dict:
    """``predictions_<kind>.yaml``: the model, its threshold, the events predicted and, where
    the acquisition is annotated, the annotated events and how the two compare."""
    record = {
        "acquisition": key,
        "kind": kind,
        "movie": str(prediction.movie),
        "model_identity": deployment.identity,
        "threshold": float(prediction.threshold),
        "frames": len(prediction.frames),
        "predicted_events": len(prediction.events),
        "events": [event.as_dict() for event in prediction.events],
    }
    if comparison is not None:
        record.update(
            annotated_events=comparison.tp + comparison.fn,
            tp=comparison.tp,
            fp=comparison.fp,
            fn=comparison.fn,
            precision=round(comparison.precision, 6),
            recall=round(comparison.recall, 6),
            f1=round(comparison.f1, 6),
            annotated=[
                {"frames": list(a.frames), "y": round(a.y, 2), "x": round(a.x, 2)}
                for a in annotated
            ],
        )
    return record


def predictions_metadata(
    movie: Path, kind: str, deployment, result, annotated, comparison
) -> dict[str, Any]:
    """The asset's metadata (reads the best-scoring frame of ``movie`` for the thumbnail)."""
    from deep_events_dagster.ml.plots import score_timeline_png

    scores = np.array([f.score for f in result.frames], dtype=np.float64)
    best_frame = int(np.argmax(scores)) if len(scores) else 0
    timeline = score_timeline_png(
        scores,
        result.threshold,
        annotated=[a.frames for a in annotated],
        predicted=[e.frames for e in result.events],
        title=f"{movie.name}: {kind} score per frame",
    )
    metadata: dict = {
        "model_dir": dg.MetadataValue.path(str(deployment.model_dir)),
        "model_identity": deployment.identity,
        "threshold": float(result.threshold),
        "threshold_source": result.threshold_source,
        "frames": len(result.frames),
        "frame_step": result.frame_step,
        "predicted_events": len(result.events),
        "frames_above_threshold": int(np.count_nonzero(scores > result.threshold)),
        "max_score": float(scores.max()) if len(scores) else 0.0,
        "seconds": round(result.seconds, 2),
        "scores_csv": dg.MetadataValue.path(str(result.csv_path)),
        "score_over_time": dg.MetadataValue.md(
            markdown_image(timeline, "score per frame, threshold, annotated events")
        ),
        "thumbnail": dg.MetadataValue.md(
            markdown_image(
                thumbnail(movie, best_frame, result.events, annotated),
                f"frame {best_frame}: predicted (blue) and annotated (red) events",
            )
        ),
        "events": dg.MetadataValue.md(events_markdown(result, comparison)),
    }
    if result.movie_out_path is not None:
        metadata["probability_movie"] = dg.MetadataValue.path(str(result.movie_out_path))
    if comparison is not None:
        metadata.update(
            annotated_events=comparison.tp + comparison.fn,
            tp=comparison.tp,
            fp=comparison.fp,
            fn=comparison.fn,
            precision=comparison.precision,
            recall=comparison.recall,
            f1=comparison.f1,
            comparison=dg.MetadataValue.md(
                "| | annotated | not annotated |\n|---|---|---|\n"
                f"| predicted | {comparison.tp} (found) | {comparison.fp} |\n"
                f"| not predicted | {comparison.fn} (missed) | — |\n\n"
                f"precision {comparison.precision:.3f}, recall {comparison.recall:.3f}, "
                f"F1 {comparison.f1:.3f}"
            ),
        )
    return metadata


def thumbnail(movie: Path, frame: int, events, annotated, max_side: int = 512) -> bytes:
    """The movie's highest-scoring frame, predicted events (blue) and annotated ones (red)."""
    with MovieReader(movie) as reader:
        image = reader.read_frame(frame)
    if image.ndim == 3:  # T×C×Y×X movies give C×Y×X
        image = image[0]
    scale = downsample_factor(*image.shape, max_side)
    grey = to_display(image[::scale, ::scale])
    half = 16
    boxes = [
        ((e.x - half, e.y - half, e.x + half, e.y + half), _PREDICTED_COLOUR)
        for e in events
        if e.frames[0] <= frame < e.frames[1]
    ]
    boxes += [
        ((a.x - half - 4, a.y - half - 4, a.x + half + 4, a.y + half + 4), _ANNOTATED_COLOUR)
        for a in annotated
        if a.frames[0] <= frame < a.frames[1]
    ]
    return encode_png(draw_boxes(grey, boxes, scale=scale))


def events_markdown(prediction, comparison) -> str:
    """Table of the predicted events (the first ``MAX_EVENT_ROWS``) and their annotated match."""
    lines = [
        "| predicted event | frames | y | x | score | annotated match |",
        "|---|---|---|---|---|---|",
    ]
    matched = {id(p): a for p, a in comparison.matches} if comparison else {}
    for i, event in enumerate(prediction.events[:MAX_EVENT_ROWS], start=1):
        match = matched.get(id(event))
        shown = "—" if match is None else f"frames {match.frames[0]}–{match.frames[1] - 1}"
        lines.append(
            f"| {i} | {event.frames[0]}–{event.frames[1] - 1} | {event.y} | {event.x} | "
            f"{event.score:.3f} | {shown} |"
        )
    if len(prediction.events) > MAX_EVENT_ROWS:
        lines.append(f"| … {len(prediction.events) - MAX_EVENT_ROWS} more | | | | | |")
    return "\n".join(lines)
