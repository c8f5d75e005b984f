"""Predictions on whole movies: a model folder's network over every frame of a movie.

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
  one in overlapping tiles of at most ``max_tile`` per side (``tile_overlap`` pixels shared),
  blended with weights that ignore the outer quarter of the overlap (where the network sees
  the tile's edge) and ramp linearly over the rest, so seams do not show. The U-Net pools
  twice: it needs sides divisible by 4 (frames are padded by reflection and the output cropped
  back) and gives the same output only for shifts by multiples of 4 (tiles start at those).
* **Memory.** Frames are read one at a time (:class:`~deep_events_dagster.core.crops.MovieReader`)
  and only the normalised frames a later window still needs are kept: memory depends on the
  frame size, ``n_timepoints·k`` and ``batch_size``, never on the movie's length. The
  probability movie is written page by page.
* **Events.** A frame whose score is above the threshold (strictly, as the microscope decides)
  is a frame with an event. Where the events are comes from every local maximum of the
  probability map above the threshold (maxima closer than ``merge_distance_px`` are one, as
  the ground truth's maxima are); maxima within ``max_link_distance_px`` are linked over
  frames, bridging up to ``max_gap_frames − 1`` frames below the threshold, into one
  :class:`PredictedEvent` (:func:`deep_events_dagster.core.events.link_detections`, the rule
  the annotations are linked by). So two simultaneous events are two events, and an event
  whose score dips for a frame, or whose maximum alternates with another event's, is not cut
  into pieces.

:func:`compare_events` matches predicted events with annotated ones (:func:`annotated_events`
reads them from an acquisition's annotation CSVs): the out-of-sample check of a deployed model.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import yaml
from scipy import stats

from deep_events_dagster.core.annotations import read_kind_points
from deep_events_dagster.core.crops import MovieReader
from deep_events_dagster.core.errors import InputError, MovieError
from deep_events_dagster.core.events import (
    DEFAULT_MAX_DISTANCE_PX,
    DEFAULT_MAX_GAP_FRAMES,
    DEFAULT_MERGE_DISTANCE_PX,
    Detection,
    find_frame_maxima,
    link_detections,
)
from deep_events_dagster.core.frame_windows import frame_step
from deep_events_dagster.core.fsutil import atomic_path, atomic_write_text
from deep_events_dagster.core.metadata import DB_FILE, read_db_yaml
from deep_events_dagster.core.metrics import f1_from_counts
from deep_events_dagster.core.normalisation import normalize_image_frames
from deep_events_dagster.core.ome import read_movie_info
from deep_events_dagster.ml.backend import Predictor, load_predictor
from deep_events_dagster.ml.model_folder import DB_PROMPT_FILE, SETTINGS_FILE, ModelFolder

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
# Frames up to 2048² go through the network whole: tiles would overlap (a 2048² frame in 1024²
# tiles computes 2.25× its pixels) and the whole frame fits in a few GB (make bench, predictions).
DEFAULT_MAX_TILE = 2048
DEFAULT_TILE_OVERLAP = 128
DEFAULT_BATCH_SIZE = 4
BATCH_PIXELS = 1 << 20
CSV_COLUMNS = ("frame", "score", "y", "x")
THRESHOLD_FROM_EVALUATION = "evaluation.yaml"
THRESHOLD_DEFAULT = "default 0.5"
THRESHOLD_FROM_ARGUMENT = "argument"
# The U-Net pools twice: its input sides must be multiples of this.
SIDE_MULTIPLE = 4

ProgressCallback = Callable[[int, int], None]
# Whole movies take the backend's fast inference path (bfloat16 autocast where the CPU has it):
# scores within 0.02 of float32 (tests) at several times the speed (make bench, predictions).
DEFAULT_PRECISION = "auto"


# --------------------------------------------------------------------------- records


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


# --------------------------------------------------------------------------- windows and tiles


def window_frames(frame: int, n_timepoints: int, step: int = 1) -> tuple[int, ...]:
    """The frames of the window ending at ``frame``, oldest first, clamped to frame 0.

    ``window_frames(5, 3, 2) == (1, 3, 5)`` and ``window_frames(1, 3, 2) == (0, 0, 1)``.
    """
    if n_timepoints < 1 or step < 1:
        raise ValueError(f"n_timepoints and step must be ≥ 1, got {n_timepoints}, {step}")
    return tuple(max(0, frame - (n_timepoints - 1 - j) * step) for j in range(n_timepoints))


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, size)`` with at least ``overlap``
    pixels shared by neighbours; the last tile ends at ``size``. One tile when it fits.

    With ``align`` (dividing ``size`` and ``tile``) every start is a multiple of it.
    """
    if size <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be in [0, {tile})")
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def _ramp(length: int, overlap: int, *, first: bool, last: bool) -> np.ndarray:
    """Blending weights along one tile side.

    At an end inside the image the weight is 0 over the outer quarter of the overlap (where the
    network sees the tile's padding instead of the image), then ramps linearly to 1 at the
    overlap's end; at an end on the image border it is 1. Neighbouring tiles share at least
    ``overlap`` pixels, so every pixel keeps a positive weight in some tile.
    """
    weight = np.ones(length, dtype=np.float32)
    if overlap <= 0:
        return weight
    margin = overlap // 4
    distance = np.arange(length, dtype=np.float32)
    rising = np.clip((distance - margin + 1) / (overlap - 2 * margin + 1), 0.0, 1.0)
    if not first:
        weight = np.minimum(weight, rising)
    if not last:
        weight = np.minimum(weight, rising[::-1])
    return weight


def _pad_mode(height: int, width: int) -> str:
    # reflection needs more pixels than it pads (at most 3 here)
    return "reflect" if min(height, width) >= SIDE_MULTIPLE else "edge"


def _pad_to_multiple(images: np.ndarray) -> np.ndarray:
    """``…×h×w`` padded at the bottom and right to sides divisible by 4 (itself when they are)."""
    height, width = images.shape[-2:]
    pad_y, pad_x = -height % SIDE_MULTIPLE, -width % SIDE_MULTIPLE
    if not (pad_y or pad_x):
        return images
    padding = [(0, 0)] * (images.ndim - 2) + [(0, pad_y), (0, pad_x)]
    return np.pad(images, padding, mode=_pad_mode(height, width))


def _predict_padded(predictor: Predictor, images: np.ndarray, batch_size: int) -> np.ndarray:
    """``N×T×h×w`` → ``N×h×w`` probabilities, padding the sides to multiples of 4."""
    height, width = images.shape[-2:]
    padded = _pad_to_multiple(images)
    out = np.asarray(predictor.predict(np.ascontiguousarray(padded), batch_size=batch_size))
    expected = (padded.shape[0], *padded.shape[-2:])
    if out.shape != expected:
        raise ValueError(f"the model returned shape {out.shape} for inputs {padded.shape}")
    return out[:, :height, :width].astype(np.float32, copy=False)


def probability_maps(
    predictor: Predictor,
    windows: np.ndarray,
    *,
    max_tile: int = DEFAULT_MAX_TILE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Probability maps of normalised windows, whole or in blended tiles.

    Parameters
    ----------
    predictor
        The model (:func:`deep_events_dagster.ml.backend.load_predictor`).
    windows
        ``N×T×H×W`` float32, each frame normalised whole (tiles are cut afterwards).
    max_tile
        Frames of at most ``max_tile²`` pixels go through whole; larger ones in tiles of at most
        ``max_tile`` per side.
    tile_overlap
        Pixels neighbouring tiles share at least (capped at half the tile). The outer quarter
        of it gets no weight: it must exceed how far a tile's edge changes the network's
        output (measured about 25 px for the tests' small U-Net with ``first_conv_size`` 5;
        the default 128 leaves 32 px).
    batch_size
        Samples (windows or tiles) per forward pass.

    Returns
    -------
    numpy.ndarray
        ``N×H×W`` float32 probabilities.
    """
    if windows.ndim != 4:
        raise ValueError(f"windows must be N×T×H×W, got shape {windows.shape}")
    if max_tile < SIDE_MULTIPLE:
        raise ValueError(f"max_tile must be ≥ {SIDE_MULTIPLE}, got {max_tile}")
    n, _, height, width = windows.shape
    if height * width <= max_tile * max_tile:
        return _predict_padded(predictor, windows, batch_size)

    # Tile the frame padded to multiples of 4, at offsets that are multiples of 4: the U-Net
    # pools twice, so only such shifts leave its output unchanged away from the tiles' edges.
    padded = _pad_to_multiple(windows)
    padded_height, padded_width = padded.shape[-2:]
    side = max(SIDE_MULTIPLE, max_tile // SIDE_MULTIPLE * SIDE_MULTIPLE)
    tile_y, tile_x = min(side, padded_height), min(side, padded_width)
    overlap = max(0, min(int(tile_overlap), min(tile_y, tile_x) // 2))
    ys = tile_starts(padded_height, tile_y, overlap, SIDE_MULTIPLE)
    xs = tile_starts(padded_width, tile_x, overlap, SIDE_MULTIPLE)
    boxes = [(y0, x0) for y0 in ys for x0 in xs]
    weights = {
        (y0, x0): np.outer(
            _ramp(tile_y, overlap, first=y0 == 0, last=y0 + tile_y == padded_height),
            _ramp(tile_x, overlap, first=x0 == 0, last=x0 + tile_x == padded_width),
        )
        for y0, x0 in boxes
    }
    out = np.empty((n, height, width), dtype=np.float32)
    for i in range(n):
        total = np.zeros((padded_height, padded_width), dtype=np.float32)
        weight_sum = np.zeros((padded_height, padded_width), dtype=np.float32)
        for first in range(0, len(boxes), batch_size):
            chunk = boxes[first : first + batch_size]
            tiles = np.stack([padded[i, :, y0 : y0 + tile_y, x0 : x0 + tile_x] for y0, x0 in chunk])
            maps = _predict_padded(predictor, tiles, batch_size)
            for (y0, x0), prob in zip(chunk, maps, strict=True):
                weight = weights[(y0, x0)]
                total[y0 : y0 + tile_y, x0 : x0 + tile_x] += weight * prob
                weight_sum[y0 : y0 + tile_y, x0 : x0 + tile_x] += weight
        out[i] = (total / weight_sum)[:height, :width]
    return out


# --------------------------------------------------------------------------- the movie


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
        peaks, max_distance_px=max_link_distance_px, max_gap_frames=max_gap_frames
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
    max_link_distance_px: float = DEFAULT_MAX_DISTANCE_PX,
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


# --------------------------------------------------------------------------- comparison


def compare_events(
    predicted: Sequence[PredictedEvent],
    annotated: Sequence[AnnotatedEvent],
    *,
    max_link_distance_px: float = DEFAULT_MAX_DISTANCE_PX,
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
    max_link_distance_px: float = DEFAULT_MAX_DISTANCE_PX,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
) -> tuple[AnnotatedEvent, ...]:
    """The events annotated in an acquisition's ``<kind>*.csv`` files.

    Points are linked over frames as the ground truth's maxima are
    (:func:`deep_events_dagster.core.events.link_detections`); each track is an event from its
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
        detections, max_distance_px=max_link_distance_px, max_gap_frames=max_gap_frames
    )
    return tuple(
        AnnotatedEvent(
            frames=(track.first_frame, track.last_frame + 1),
            y=float(np.mean([d.y for d in track.detections])),
            x=float(np.mean([d.x for d in track.detections])),
        )
        for track in tracks
    )


# --------------------------------------------------------------------------- metrics


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
