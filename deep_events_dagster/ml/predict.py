"""Predictions on whole movies: a model folder's network over every frame of a movie.

This module owns the movie loop: loading the model folder, :func:`predict_movie` (frame windows
streamed through the network, frame scores, event linking, the output files) and
:func:`load_model_predictor`. The pieces it uses live beside it: the records it returns in
:mod:`~deep_events_dagster.ml.predict_records`, windows, tiles and probability maps in
:mod:`~deep_events_dagster.ml.predict_maps`, and the comparison with annotated events in
:mod:`~deep_events_dagster.ml.predict_compare` (all re-exported here).

:func:`predict_movie` streams a movie through a trained model and scores every frame the way
the microscope does: the maximum of the frame's probability map, and where it is.

* **Windows.** The input for frame ``i`` is the model's ``n_timepoints`` frames ending at ``i``,
  ``k`` frames apart, oldest first (``i − (n − 1)·k, …, i − k, i``), as the training set's
  windows. Indices before the start are clamped to frame 0, so every frame gets a score (the
  first frames see a window that repeats frame 0). ``k`` is the training set's rule
  (:func:`deep_events_dagster.core.frame_windows.frame_step`) applied to the movie's frame rate
  and the model's ``fps``; when that rule would skip the movie (or a rate is unknown) ``k`` is
  1 and the result says so in its ``notes``.
* **Normalisation.** Every frame is normalised whole, as in the training set
  (:func:`~deep_events_dagster.core.normalisation.normalize_image_frames`: minimum → 0, divided
  by its maximum when that is above 0.2), before any tiling.
* **Tiles.** A frame of at most ``max_tile²`` pixels goes through the network whole; a larger
  one in overlapping, blended tiles (:func:`~deep_events_dagster.ml.predict_maps.probability_maps`).
* **Memory.** Frames are read one at a time
  (:class:`~deep_events_dagster.core.movie_reader.MovieReader`) and only the normalised frames
  a later window still needs are kept: memory depends on the frame size, ``n_timepoints·k``
  and ``batch_size``, never on the movie's length. The probability movie is written page by
  page.
* **Events.** A frame whose score is above the threshold (strictly, as the microscope decides)
  is a frame with an event. Where the events are comes from every local maximum of the
  probability map above the threshold (maxima closer than ``merge_distance_px`` are one, as
  the ground truth's maxima are); maxima within ``max_link_distance_px`` are linked over
  frames, bridging up to ``max_gap_frames − 1`` frames below the threshold, into one
  :class:`PredictedEvent` (:func:`deep_events_dagster.core.tracks.link_detections`, the rule
  the annotations are linked by). So two simultaneous events are two events, and an event
  whose score dips for a frame, or whose maximum alternates with another event's, is not cut
  into pieces.

:func:`compare_events` matches predicted events with annotated ones (:func:`annotated_events`
reads them from an acquisition's annotation CSVs): the out-of-sample check of a deployed model.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import yaml

from deep_events_dagster.core.detections import (
    DEFAULT_MERGE_DISTANCE_PX,
    Detection,
    find_frame_maxima,
)
from deep_events_dagster.core.errors import InputError, MovieError
from deep_events_dagster.core.frame_windows import frame_step
from deep_events_dagster.core.fsutil import atomic_path, atomic_write_text
from deep_events_dagster.core.movie_reader import MovieReader
from deep_events_dagster.core.normalisation import normalize_image_frames
from deep_events_dagster.core.ome import read_movie_info
from deep_events_dagster.core.tracks import (
    DEFAULT_MAX_GAP_FRAMES,
    DEFAULT_MAX_LINK_DISTANCE_PX,
    link_detections,
)
from deep_events_dagster.ml.backend import Predictor, load_predictor
from deep_events_dagster.ml.model_folder import DB_PROMPT_FILE, SETTINGS_FILE, ModelFolder

# re-exported: callers import these from here (cli.py, demo.py, defs/training/predictions.py)
from deep_events_dagster.ml.predict_compare import (
    annotated_events,
    compare_events,
    frame_score_auroc,
)
from deep_events_dagster.ml.predict_maps import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_TILE,
    DEFAULT_TILE_OVERLAP,
    probability_maps,
    tile_starts,
    window_frames,
)
from deep_events_dagster.ml.predict_records import (
    AnnotatedEvent,
    EventComparison,
    FrameScore,
    MoviePrediction,
    PredictedEvent,
)

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_TILE",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TILE_OVERLAP",
    "AnnotatedEvent",
    "EventComparison",
    "FrameScore",
    "MoviePrediction",
    "PredictedEvent",
    "annotated_events",
    "compare_events",
    "frame_score_auroc",
    "load_model_predictor",
    "predict_movie",
    "prediction_paths",
    "probability_maps",
    "tile_starts",
    "window_frames",
]

DEFAULT_THRESHOLD = 0.5
BATCH_PIXELS = 1 << 20
CSV_COLUMNS = ("frame", "score", "y", "x")
THRESHOLD_FROM_EVALUATION = "evaluation.yaml"
THRESHOLD_DEFAULT = "default 0.5"
THRESHOLD_FROM_ARGUMENT = "argument"

ProgressCallback = Callable[[int, int], None]
# Whole movies take the backend's fast inference path (bfloat16 autocast where the CPU has it):
# scores within 0.02 of float32 (tests) at several times the speed (make bench, predictions).
DEFAULT_PRECISION = "auto"


def prediction_paths(out_dir: str | Path, kind: str) -> tuple[Path, Path]:
    """``(predictions_<kind>.csv, predictions_<kind>.ome.tif)`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return out_dir / f"predictions_{kind}.csv", out_dir / f"predictions_{kind}.ome.tif"


def _model_channel(model: ModelFolder) -> int | None:
    """The channel the model's training set used, when its catalog query names one."""
    path = model.file(DB_PROMPT_FILE)
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    prompt = data.get("db_prompt") if isinstance(data, dict) else None
    value = prompt.get("channel_contrast") if isinstance(prompt, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _movie_fps(movie: Path) -> float | None:
    try:
        return read_movie_info(movie, verify_pages=False).fps
    except MovieError:  # a plain TIFF: no OME time information
        return None


def _choose_frame_step(movie_fps: float | None, model_fps: Any, notes: list[str]) -> int:
    if model_fps is None:
        return 1
    step, reason = frame_step(movie_fps, float(model_fps))
    if step is None:
        movie_rate = "unknown" if movie_fps is None else f"{movie_fps:g}"
        notes.append(
            f"frame step 1: the model was trained at {float(model_fps):g} fps and the movie's "
            f"rate is {movie_rate} fps ({reason})"
        )
        return 1
    return step


def _load_model(
    model_dir: Path, device: str, predictor: Predictor | None, precision: str = DEFAULT_PRECISION
) -> tuple[ModelFolder, dict[str, Any], Predictor]:
    model = ModelFolder(model_dir)
    if not model.settings_path.is_file():
        raise InputError(model_dir, f"not a model folder (no {SETTINGS_FILE}; train a model first)")
    try:
        settings = model.settings()
        if predictor is None:
            predictor = load_predictor(model_dir, device=device, precision=precision)
    except FileNotFoundError as exc:
        raise InputError(
            exc.filename or model_dir, "missing: the model folder is incomplete"
        ) from exc
    except Exception as exc:  # torch/keras/yaml errors of a damaged folder: name the folder
        raise InputError(model_dir, f"cannot load the model: {type(exc).__name__}: {exc}") from exc
    return model, settings, predictor


def load_model_predictor(
    model_dir: str | Path, device: str = "cpu", precision: str = DEFAULT_PRECISION
) -> Predictor:
    """Load a model folder's network once, to score several movies with :func:`predict_movie`
    (``precision``: see :func:`predict_movie`).

    Raises
    ------
    InputError
        Not a model folder, or a damaged one (the message names the folder or the file).
    """
    return _load_model(Path(model_dir), device, None, precision)[2]


def _iter_probabilities(
    reader: MovieReader,
    predictor: Predictor,
    *,
    channel: int,
    n_timepoints: int,
    step: int,
    max_tile: int,
    tile_overlap: int,
    batch_size: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame, probability map)`` for every frame, reading each frame once."""
    normalised: dict[int, np.ndarray] = {}

    def frame(t: int) -> np.ndarray:
        if t not in normalised:
            raw = reader.read_frame(t)
            if raw.ndim == 3:
                raw = raw[channel]
            normalised[t] = normalize_image_frames(raw)
        return normalised[t]

    n_frames = reader.n_frames
    span = (n_timepoints - 1) * step
    whole_frames = reader.height * reader.width <= max_tile * max_tile
    # whole frames are batched across frames up to about a megapixel per pass (larger passes
    # leave the CPU caches: one 2048² frame at a time is 20 % faster than four, and lighter);
    # tiles are batched within a frame
    chunk = (
        max(1, min(batch_size, BATCH_PIXELS // (reader.height * reader.width)))
        if whole_frames
        else 1
    )
    for start in range(0, n_frames, chunk):
        ends = range(start, min(n_frames, start + chunk))
        windows = np.empty((len(ends), n_timepoints, reader.height, reader.width), dtype=np.float32)
        for row, i in enumerate(ends):
            for column, t in enumerate(window_frames(i, n_timepoints, step)):
                windows[row, column] = frame(t)
        maps = probability_maps(
            predictor,
            windows,
            max_tile=max_tile,
            tile_overlap=tile_overlap,
            batch_size=batch_size,
        )
        del windows
        oldest_needed = ends[-1] + 1 - span
        for t in [t for t in normalised if t < oldest_needed]:
            del normalised[t]
        yield from zip(ends, maps, strict=True)


def _frame_score(t: int, prob: np.ndarray) -> FrameScore:
    index = int(np.argmax(prob))
    y, x = divmod(index, prob.shape[1])
    return FrameScore(frame=t, score=float(prob.flat[index]), y=int(y), x=int(x))


def _to_uint8(prob: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)


def _frame_peaks(
    t: int, prob: np.ndarray, threshold: float, merge_distance_px: float
) -> list[Detection]:
    """The maxima of one probability map strictly above ``threshold``."""
    peaks = find_frame_maxima(
        prob,
        frame_index=t,
        threshold=max(float(threshold), 1e-6),
        merge_distance_px=merge_distance_px,
    )
    return [d for d in peaks if d.value > threshold]


def _events_from_peaks(
    peaks: Sequence[Detection], max_link_distance_px: float, max_gap_frames: int
) -> tuple[PredictedEvent, ...]:
    tracks = link_detections(
        peaks, max_link_distance_px=max_link_distance_px, max_gap_frames=max_gap_frames
    )
    events = []
    for track in tracks:
        best = max(track.detections, key=lambda d: d.value)
        events.append(
            PredictedEvent(
                frames=(track.first_frame, track.last_frame + 1),
                y=int(best.y),
                x=int(best.x),
                score=float(best.value),
            )
        )
    events.sort(key=lambda e: (e.frames, e.y, e.x))
    return tuple(events)


def _csv_text(frames: Sequence[FrameScore]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for f in frames:
        writer.writerow([f.frame, repr(f.score), f.y, f.x])
    return buffer.getvalue()


def predict_movie(
    movie_path: str | Path,
    model_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    kind: str = "points",
    device: str = "cpu",
    precision: str = DEFAULT_PRECISION,
    threshold: float | None = None,
    channel: int | None = None,
    max_tile: int = DEFAULT_MAX_TILE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    write_movie: bool = True,
    max_link_distance_px: float = DEFAULT_MAX_LINK_DISTANCE_PX,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
    merge_distance_px: float = DEFAULT_MERGE_DISTANCE_PX,
    progress: ProgressCallback | None = None,
    predictor: Predictor | None = None,
) -> MoviePrediction:
    """Score every frame of a movie with a trained model and find the predicted events.

    Parameters
    ----------
    movie_path
        An OME-TIFF (or plain TIFF) movie, ``T×Y×X`` or ``T×C×Y×X``.
    model_dir
        A trained model folder (:class:`~deep_events_dagster.ml.model_folder.ModelFolder`).
    out_dir
        Where to write ``predictions_<kind>.csv`` and ``predictions_<kind>.ome.tif``
        (atomically); None writes nothing.
    kind
        The annotation kind the model detects (names the files).
    device
        ``cpu``, ``cuda``, ``cuda:1``… (see :mod:`deep_events_dagster.ml.devices`).
    precision
        ``"auto"`` (default): the backend's fast inference path — for torch, batch norm folded
        and bfloat16 autocast on CPUs with native bfloat16 (float16 on CUDA), scores within
        0.02 of float32 (tests); ``"float32"``: exactly as the evaluation computed them.
    threshold
        Decision threshold for events; None takes the one ``evaluation.yaml`` chose, else 0.5
        (and says so in ``notes``).
    channel
        Movie channel of multi-channel movies; None takes the integer ``channel_contrast`` of
        the model's ``db_prompt.yaml`` when there is one, else 0.
    max_tile, tile_overlap
        Tiling of large frames (see :func:`probability_maps`).
    batch_size
        Samples per forward pass.
    write_movie
        Also write the probability movie (``T×Y×X`` uint8, probability × 255, zlib).
    max_link_distance_px
        Largest jump (px) of a maximum between consecutive frames of one predicted event.
    max_gap_frames
        A maximum may join an event whose last maximum is at most this many frames before it
        (2 bridges one frame below the threshold, as the annotations are linked).
    merge_distance_px
        Maxima of one probability map closer than this (px) are one.
    progress
        Called as ``progress(frames_done, n_frames)`` after each frame.
    predictor
        The model folder's network, already loaded (to score several movies with one load);
        None loads it (:func:`deep_events_dagster.ml.backend.load_predictor`).

    Returns
    -------
    MoviePrediction

    Raises
    ------
    MovieError
        The movie is missing or unreadable (the message names it).
    InputError
        The model folder cannot be loaded, or ``channel`` is not a channel of the movie.
    """
    started = time.perf_counter()
    movie_path, model_dir = Path(movie_path), Path(model_dir)
    if not kind or Path(kind).name != kind:
        raise ValueError(f"kind must be a plain name (it names the output files), got {kind!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    notes: list[str] = []
    model, settings, predictor = _load_model(model_dir, device, predictor, precision)

    if threshold is not None:
        threshold_source = THRESHOLD_FROM_ARGUMENT
    else:
        threshold = model.threshold()
        threshold_source = THRESHOLD_FROM_EVALUATION
        if threshold is None:
            threshold, threshold_source = DEFAULT_THRESHOLD, THRESHOLD_DEFAULT
            notes.append("the model has no evaluation.yaml: threshold 0.5")
    threshold = float(threshold)

    n_timepoints = int(settings.get("n_timepoints") or 1)
    in_channels = int(getattr(predictor, "in_channels", n_timepoints))
    if in_channels > n_timepoints:
        notes.append(f"the network takes {in_channels} frames; settings say {n_timepoints}")
        n_timepoints = in_channels

    csv_path = movie_out_path = None
    with MovieReader(movie_path) as reader:
        if channel is None:
            channel = _model_channel(model) or 0
            if channel >= reader.n_channels:
                notes.append(f"the model's channel {channel} is not in the movie: channel 0")
                channel = 0
        if not 0 <= channel < reader.n_channels:
            raise InputError(
                movie_path, f"channel {channel} asked for; the movie has {reader.n_channels}"
            )
        step = _choose_frame_step(_movie_fps(movie_path), settings.get("fps"), notes)
        scores: list[FrameScore] = []
        peaks: list[Detection] = []
        n_frames = reader.n_frames

        def scored_frames() -> Iterator[np.ndarray]:
            for t, prob in _iter_probabilities(
                reader,
                predictor,
                channel=channel,
                n_timepoints=n_timepoints,
                step=step,
                max_tile=max_tile,
                tile_overlap=tile_overlap,
                batch_size=batch_size,
            ):
                scores.append(_frame_score(t, prob))
                if scores[-1].score > threshold:
                    peaks.extend(_frame_peaks(t, prob, threshold, merge_distance_px))
                if progress is not None:
                    progress(t + 1, n_frames)
                yield prob

        if out_dir is not None and write_movie:
            csv_path, movie_out_path = prediction_paths(out_dir, kind)
            with atomic_path(movie_out_path) as tmp, tifffile.TiffWriter(tmp, ome=True) as tif:
                tif.write(
                    (_to_uint8(prob) for prob in scored_frames()),
                    shape=(n_frames, reader.height, reader.width),
                    dtype=np.uint8,
                    compression="zlib",
                    photometric="minisblack",
                    metadata={"axes": "TYX"},
                )
        else:
            for _ in scored_frames():
                pass

    if out_dir is not None:
        csv_path = prediction_paths(out_dir, kind)[0]
        atomic_write_text(csv_path, _csv_text(scores))
    events = _events_from_peaks(peaks, max_link_distance_px, max_gap_frames)
    return MoviePrediction(
        movie=movie_path,
        model_dir=model_dir,
        kind=kind,
        threshold=threshold,
        threshold_source=threshold_source,
        frame_step=step,
        n_timepoints=n_timepoints,
        channel=channel,
        frames=tuple(scores),
        events=events,
        csv_path=csv_path,
        movie_out_path=movie_out_path,
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )
