"""Records of whole-movie predictions: frame scores, predicted and annotated events, comparisons.

What :func:`deep_events_dagster.ml.predict.predict_movie` returns (:class:`MoviePrediction`,
its :class:`FrameScore` and :class:`PredictedEvent` items) and what
:func:`deep_events_dagster.ml.predict_compare.compare_events` matches them with
(:class:`AnnotatedEvent`) and returns (:class:`EventComparison`). Plain frozen dataclasses, no
computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "AnnotatedEvent",
    "EventComparison",
    "FrameScore",
    "MoviePrediction",
    "PredictedEvent",
]


@dataclass(frozen=True)
class FrameScore:
    """The score of one frame: the maximum of its probability map and where it is.

    Attributes
    ----------
    frame
        Frame index.
    score
        Highest probability in the frame, in [0, 1].
    y, x
        Row and column of that maximum (the first one in row-major order on ties).
    """

    frame: int
    score: float
    y: int
    x: int

    def as_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "score": self.score, "y": self.y, "x": self.x}


@dataclass(frozen=True)
class PredictedEvent:
    """Consecutive frames scoring above the threshold at nearby positions.

    Attributes
    ----------
    frames
        ``(start, stop)``, half-open: the first and one past the last frame above threshold.
    y, x
        Position of the maximum in the event's highest-scoring frame.
    score
        The event's highest frame score.
    """

    frames: tuple[int, int]
    y: int
    x: int
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"frames": list(self.frames), "y": self.y, "x": self.x, "score": self.score}


@dataclass(frozen=True)
class AnnotatedEvent:
    """An event a person marked: frames ``(start, stop)`` (half-open) and a position in px."""

    frames: tuple[int, int]
    y: float
    x: float


@dataclass(frozen=True)
class MoviePrediction:
    """What :func:`predict_movie` found in one movie.

    Attributes
    ----------
    movie
        The movie file.
    model_dir
        The model folder.
    kind
        The annotation kind the model detects (names the output files).
    threshold
        The decision threshold used for events.
    threshold_source
        ``"evaluation.yaml"``, ``"default 0.5"`` (the model was not evaluated) or
        ``"argument"`` (given by the caller).
    frame_step
        Frames between the frames of a window (``k``).
    n_timepoints
        Frames per window.
    channel
        The movie channel scored (0 for single-channel movies).
    frames
        One :class:`FrameScore` per movie frame, in order.
    events
        The predicted events, by start frame.
    csv_path
        ``predictions_<kind>.csv`` when written, else None.
    movie_out_path
        ``predictions_<kind>.ome.tif`` (probabilities × 255, uint8) when written, else None.
    seconds
        Wall time of the prediction.
    notes
        Decisions the caller should know about (default threshold, frame step fallbacks…).
    """

    movie: Path
    model_dir: Path
    kind: str
    threshold: float
    threshold_source: str
    frame_step: int
    n_timepoints: int
    channel: int
    frames: tuple[FrameScore, ...]
    events: tuple[PredictedEvent, ...]
    csv_path: Path | None
    movie_out_path: Path | None
    seconds: float
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """Plain values: acquisition folder, movie name, threshold, frame scores and events."""
        return {
            "acquisition": str(self.movie.parent),
            "movie": self.movie.name,
            "threshold": float(self.threshold),
            "frames": [f.as_dict() for f in self.frames],
            "events": [e.as_dict() for e in self.events],
        }


@dataclass(frozen=True)
class EventComparison:
    """Predicted events matched one-to-one with annotated events.

    Attributes
    ----------
    tp, fp, fn
        Matched annotated events, unmatched predicted events, unmatched annotated events.
    precision, recall, f1
        From the counts; 0 when a ratio is undefined (no predictions, no annotations).
    matches
        ``(predicted, annotated)`` pairs, closest first.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    matches: tuple[tuple[PredictedEvent, AnnotatedEvent], ...]
