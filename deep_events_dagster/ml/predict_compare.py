"""Predicted events against annotated ones: the out-of-sample check of a deployed model.

:func:`annotated_events` reads the events a person marked in an acquisition's annotation CSVs
(points linked over frames as the ground truth's maxima are); :func:`compare_events` matches
them one-to-one with :func:`deep_events_dagster.ml.predict.predict_movie`'s events;
:func:`frame_score_auroc` ranks frame scores against frame labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from deep_events_dagster.core.annotations import read_kind_points
from deep_events_dagster.core.detections import Detection
from deep_events_dagster.core.errors import MovieError
from deep_events_dagster.core.metadata import DB_FILE, read_db_yaml
from deep_events_dagster.core.metrics import f1_from_counts
from deep_events_dagster.core.ome import read_movie_info
from deep_events_dagster.core.tracks import (
    DEFAULT_MAX_GAP_FRAMES,
    DEFAULT_MAX_LINK_DISTANCE_PX,
    link_detections,
)
from deep_events_dagster.ml.predict_records import AnnotatedEvent, EventComparison, PredictedEvent

__all__ = ["annotated_events", "compare_events", "frame_score_auroc"]


def compare_events(
    predicted: Sequence[PredictedEvent],
    annotated: Sequence[AnnotatedEvent],
    *,
    max_link_distance_px: float = DEFAULT_MAX_LINK_DISTANCE_PX,
) -> EventComparison:
    """Match predicted events with annotated ones, one-to-one.

    A pair can match when the two share at least one frame and their positions are at most
    ``max_link_distance_px`` apart. Pairs are taken greedily, closest first (ties: earlier
    annotated event, then earlier predicted event); each event matches at most once.

    Returns
    -------
    EventComparison
        ``tp`` matched annotated events, ``fp`` unmatched predictions, ``fn`` unmatched
        annotations; precision, recall and F1 are 0 when undefined.
    """
    limit2 = float(max_link_distance_px) ** 2
    candidates = []
    for j, a in enumerate(annotated):
        for i, p in enumerate(predicted):
            if p.frames[0] < a.frames[1] and a.frames[0] < p.frames[1]:
                dist2 = (p.y - a.y) ** 2 + (p.x - a.x) ** 2
                if dist2 <= limit2:
                    candidates.append((dist2, j, i))
    candidates.sort()
    used_predicted: set[int] = set()
    used_annotated: set[int] = set()
    matches = []
    for _dist2, j, i in candidates:
        if i in used_predicted or j in used_annotated:
            continue
        used_predicted.add(i)
        used_annotated.add(j)
        matches.append((predicted[i], annotated[j]))
    tp = len(matches)
    fp = len(predicted) - tp
    fn = len(annotated) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = f1_from_counts(tp, fp, fn)
    return EventComparison(
        tp=tp, fp=fp, fn=fn, precision=precision, recall=recall, f1=f1, matches=tuple(matches)
    )


def annotated_events(
    acquisition_folder: str | Path,
    kind: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    root: str | Path | None = None,
    max_link_distance_px: float = DEFAULT_MAX_LINK_DISTANCE_PX,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
) -> tuple[AnnotatedEvent, ...]:
    """The events annotated in an acquisition's ``<kind>*.csv`` files.

    Points are linked over frames as the ground truth's maxima are
    (:func:`deep_events_dagster.core.tracks.link_detections`); each track is an event from its
    first to its last point (half-open), at the mean position of its points.

    Parameters
    ----------
    acquisition_folder
        The folder holding the movie and the CSVs.
    kind
        The annotation kind (CSV file-name prefix).
    metadata
        The acquisition's ``db.yaml`` contents (``scale_csv`` and the pixel size). By default
        the folder's ``db.yaml``; without one, the metadata are built from the movie and the
        ``db_manual.yaml`` files from ``root`` down (pass ``metadata`` when the derived files
        live under an ``output_root``).
    root
        The data root (default: the acquisition folder itself), when metadata are built.
    max_link_distance_px, max_gap_frames
        Linking of points into events.

    Returns
    -------
    tuple[AnnotatedEvent, ...]
        In order of their first point.

    Raises
    ------
    AnnotationError
        A malformed CSV (the message names it).
    MovieError
        No readable movie, when the metadata have to be built.
    """
    from deep_events_dagster.core.acquisitions import movie_in_folder
    from deep_events_dagster.core.metadata import build_metadata, load_vocabulary

    folder = Path(acquisition_folder)
    if metadata is None and (folder / DB_FILE).is_file():
        metadata = read_db_yaml(folder / DB_FILE)
    if metadata is None:
        movie = movie_in_folder(folder)
        if movie is None:
            raise MovieError(folder, "no *.ome.tif / *.ome.tiff / *.ome.zarr movie in this folder")
        metadata = build_metadata(
            read_movie_info(movie, verify_pages=False),
            folder=folder,
            root=folder if root is None else root,
            vocabulary=load_vocabulary(),
        )
    points, _files = read_kind_points(folder, kind, metadata)
    detections = [Detection(frame=p.frame, y=p.y, x=p.x, value=1.0) for p in points]
    tracks = link_detections(
        detections, max_link_distance_px=max_link_distance_px, max_gap_frames=max_gap_frames
    )
    return tuple(
        AnnotatedEvent(
            frames=(track.first_frame, track.last_frame + 1),
            y=float(np.mean([d.y for d in track.detections])),
            x=float(np.mean([d.x for d in track.detections])),
        )
        for track in tracks
    )


def frame_score_auroc(scores: Sequence[float] | np.ndarray, positive: Sequence[bool]) -> float:
    """Area under the ROC curve of frame scores against frame labels (rank based, ties count
    half): the probability that a positive frame scores above a negative one.

    Returns
    -------
    float
        In [0, 1]; ``nan`` without positive or without negative frames.
    """
    values = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(positive, dtype=bool)
    if values.shape != labels.shape:
        raise ValueError(f"{values.shape[0]} scores for {labels.shape[0]} labels")
    n_positive = int(labels.sum())
    n_negative = labels.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return math.nan
    ranks = stats.rankdata(values)
    rank_sum = float(ranks[labels].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)
