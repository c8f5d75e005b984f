"""Event detection on ground truth: heatmaps (or line annotations) to events.

Pipeline, one module per step:

1. Detections per frame (:mod:`~deep_events_dagster.core.detections`):
   :func:`~deep_events_dagster.core.detections.find_frame_maxima` — local maxima at or above
   ``threshold``, maxima closer than ``merge_distance_px`` merged — for Gaussian (points)
   ground truth; :func:`~deep_events_dagster.core.detections.find_frame_components` — one
   detection per connected stroke — for line ground truth.
2. Linking over frames into tracks
   (:func:`~deep_events_dagster.core.tracks.link_detections`).
3. Tracks into :class:`~deep_events_dagster.core.tracks.Event` records: frame range, centre
   and a ``crop_size`` crop box inside the image
   (:func:`~deep_events_dagster.core.tracks.events_from_tracks`,
   :func:`~deep_events_dagster.core.regions.crop_box`).
4. Negatives beside events and hard negatives at bright signal-free places
   (:mod:`~deep_events_dagster.core.negatives`).

This module owns the entry points of steps 1–3: :func:`detect_events` on any frame source and
:func:`detect_events_in_file` on a ground-truth TIFF (reading only the frames and tiles that
its sidecar's *support* says hold signal), and their drop-ins for a kind of type ``lines``.

**Line ground truth** (napari shapes drawn as strokes, see
:func:`~deep_events_dagster.core.ground_truth_render.render_lines_frame`) is a plateau of 1s
along each line, so step 1 would find many maxima per line. For a kind of type ``lines`` step 1
is instead one detection per line per frame at the centre of the line's bounding box:
:func:`detect_line_events` from the annotations themselves (exact: crossing lines stay two), or
:func:`~deep_events_dagster.core.detections.find_frame_components` when only the ground truth is
at hand (``detect_events(..., detector="components")``). Steps 2–4 are unchanged, so the crop is
centred on the line and a line longer than the crop is cropped around its centre.
:func:`detect_line_events_in_file` is the drop-in for :func:`detect_events_in_file`.

The defaults (and why) are documented where they are declared: ``threshold`` and
``merge_distance_px`` in :mod:`~deep_events_dagster.core.detections`; ``max_link_distance_px``,
``max_gap_frames``, ``add_pre_frames`` and ``add_post_frames`` in
:mod:`~deep_events_dagster.core.tracks`; ``crop_size`` in
:mod:`~deep_events_dagster.core.regions`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from deep_events_dagster.core.detections import (
    DEFAULT_MERGE_DISTANCE_PX,
    DEFAULT_THRESHOLD,
    Detection,
    find_frame_components,
    find_frame_maxima,
)
from deep_events_dagster.core.ground_truth_reader import (
    GroundTruthReader,
    opened_reader,
    read_ground_truth_support,
)
from deep_events_dagster.core.regions import (
    DEFAULT_CROP_SIZE,
    Window,
    check_crop_fits,
    merge_windows,
)
from deep_events_dagster.core.tracks import (
    DEFAULT_ADD_POST_FRAMES,
    DEFAULT_ADD_PRE_FRAMES,
    DEFAULT_MAX_GAP_FRAMES,
    DEFAULT_MAX_LINK_DISTANCE_PX,
    Event,
    events_from_tracks,
    link_detections,
)

__all__ = [
    "DETECTORS",
    "FrameSource",
    "detect_events",
    "detect_events_in_file",
    "detect_line_events",
    "detect_line_events_in_file",
    "line_detections",
]

DETECTORS = ("maxima", "components")

FrameSource = Callable[[int, "list[Window] | None"], np.ndarray] | Iterable[tuple[int, np.ndarray]]


def detect_events(
    frames: FrameSource,
    *,
    n_frames: int,
    height: int,
    width: int,
    support: dict[int, list[Window]] | None = None,
    detection_threshold: float = DEFAULT_THRESHOLD,
    merge_distance_px: float = DEFAULT_MERGE_DISTANCE_PX,
    max_link_distance_px: float = DEFAULT_MAX_LINK_DISTANCE_PX,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
    add_pre_frames: int = DEFAULT_ADD_PRE_FRAMES,
    add_post_frames: int = DEFAULT_ADD_POST_FRAMES,
    crop_size: int = DEFAULT_CROP_SIZE,
    detector: str = "maxima",
) -> list[Event]:
    """Detect events in a heatmap movie, frame by frame.

    Parameters
    ----------
    frames
        Either an iterable of ``(t, frame)`` pairs (whole ``Y×X`` frames, any order), or a
        callable ``read(t, windows) -> Y×X array``: with ``windows`` (a list of
        ``(y0, y1, x0, x1)``) the array needs correct values only inside them (zeros
        elsewhere); with ``None`` it must be the whole frame.
    n_frames, height, width
        Movie size.
    support
        Frame → windows covering every non-zero pixel (the ground-truth sidecar). When given,
        frames absent from it are skipped (a callable is not even called) and only the windows
        are examined. ``None`` scans every frame whole.
    detection_threshold, merge_distance_px
        The ``threshold`` and ``merge_distance_px`` of
        :func:`~deep_events_dagster.core.detections.find_frame_maxima`.
    max_link_distance_px, max_gap_frames
        See :func:`~deep_events_dagster.core.tracks.link_detections`.
    add_pre_frames, add_post_frames, crop_size
        See :func:`~deep_events_dagster.core.tracks.events_from_tracks`.
    detector
        ``"maxima"`` (Gaussian ground truth of points: :func:`find_frame_maxima`) or
        ``"components"`` (line ground truth: :func:`find_frame_components`, one detection per
        connected stroke; ``merge_distance_px`` is not used).

    Returns
    -------
    list[Event]
        Sorted by ``(start frame, x0, y0)``.

    Raises
    ------
    ConfigurationError
        When the movie is smaller than ``crop_size`` in either dimension (checked first).
    """
    check_crop_fits(crop_size, height=height, width=width)
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    detections: list[Detection] = []

    def scan(t: int, arr: np.ndarray, windows: list[Window] | None) -> None:
        if arr.shape != (height, width):
            raise ValueError(f"frame {t} has shape {arr.shape}, expected {(height, width)}")
        if detector == "components":
            found = find_frame_components(
                arr, frame_index=t, threshold=detection_threshold, windows=windows
            )
        else:
            found = find_frame_maxima(
                arr,
                frame_index=t,
                threshold=detection_threshold,
                windows=windows,
                merge_distance_px=merge_distance_px,
            )
        detections.extend(found)

    if callable(frames):
        if support is None:
            for t in range(n_frames):
                scan(t, frames(t, None), None)
        else:
            for t in sorted(support):
                if 0 <= t < n_frames and support[t]:
                    windows = merge_windows(support[t])
                    scan(t, frames(t, windows), windows)
    else:
        for t, arr in frames:
            t = int(t)
            if not 0 <= t < n_frames:
                raise ValueError(f"frame index {t} outside 0…{n_frames - 1}")
            if support is None:
                scan(t, np.asarray(arr), None)
            elif support.get(t):
                scan(t, np.asarray(arr), merge_windows(support[t]))

    tracks = link_detections(
        detections, max_link_distance_px=max_link_distance_px, max_gap_frames=max_gap_frames
    )
    return events_from_tracks(
        tracks,
        n_frames=n_frames,
        height=height,
        width=width,
        add_pre_frames=add_pre_frames,
        add_post_frames=add_post_frames,
        crop_size=crop_size,
    )


def _window_reader(reader: GroundTruthReader) -> Callable[[int, list[Window] | None], np.ndarray]:
    def read(t: int, windows: list[Window] | None) -> np.ndarray:
        if windows is None:
            return reader.read_frame(t)
        # np.zeros is lazily allocated: pages outside the windows are never touched.
        frame = np.zeros((reader.height, reader.width), dtype=reader.dtype)
        for y0, y1, x0, x1 in windows:
            frame[y0:y1, x0:x1] = reader.read_window(t, y0, y1, x0, x1)
        return frame

    return read


def detect_events_in_file(
    gt_path: str | Path,
    *,
    use_support: bool = True,
    reader: GroundTruthReader | None = None,
    **params: Any,
) -> list[Event]:
    """:func:`detect_events` on a ground-truth TIFF.

    With the sidecar (and ``use_support``) only the frames and tiles that hold signal are read;
    otherwise the file is read frame by frame (memory O(one frame)). ``reader`` is an open
    reader of ``gt_path`` to read through (e.g. one that caches tiles for later steps); by
    default the file is opened here. ``params`` are the keyword arguments of
    :func:`detect_events` other than ``frames``, ``n_frames``, ``height``, ``width`` and
    ``support``.
    """
    gt_path = Path(gt_path)
    support = read_ground_truth_support(gt_path) if use_support else None
    with opened_reader(gt_path, reader) as reader:
        return detect_events(
            _window_reader(reader),
            n_frames=reader.n_frames,
            height=reader.height,
            width=reader.width,
            support=support,
            **params,
        )


# --------------------------------------------------------------------------- lines


def line_detections(
    lines: Iterable[Any], *, n_frames: int, height: int, width: int
) -> list[Detection]:
    """One detection per line: its frame, the centre of its bounding box, value 1.

    ``lines`` are :class:`~deep_events_dagster.core.annotations.LineAnnotation`-like objects
    (``.frame``, ``.vertices`` of ``(y, x)``). The bounding box is clipped to the image first
    (a line partly outside is centred on its visible part); lines whose frame is outside
    ``[0, n_frames)`` or that lie wholly outside the image are skipped.

    Returns
    -------
    list[Detection]
        Sorted by ``(frame, y, x)``.
    """
    found: list[Detection] = []
    for line in lines:
        t = int(line.frame)
        if not 0 <= t < n_frames:
            continue
        vertices = np.asarray(line.vertices, dtype=np.float64).reshape(-1, 2)
        if vertices.shape[0] == 0:
            continue
        y_min, x_min = vertices.min(axis=0)
        y_max, x_max = vertices.max(axis=0)
        if y_max < 0 or x_max < 0 or y_min > height - 1 or x_min > width - 1:
            continue
        y0, y1 = max(0.0, float(y_min)), min(float(height - 1), float(y_max))
        x0, x1 = max(0.0, float(x_min)), min(float(width - 1), float(x_max))
        found.append(Detection(t, (y0 + y1) / 2.0, (x0 + x1) / 2.0, 1.0))
    found.sort(key=lambda d: (d.frame, d.y, d.x))
    return found


def detect_line_events(
    lines: Iterable[Any],
    *,
    n_frames: int,
    height: int,
    width: int,
    max_link_distance_px: float = DEFAULT_MAX_LINK_DISTANCE_PX,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
    add_pre_frames: int = DEFAULT_ADD_PRE_FRAMES,
    add_post_frames: int = DEFAULT_ADD_POST_FRAMES,
    crop_size: int = DEFAULT_CROP_SIZE,
) -> list[Event]:
    """Events of line annotations: one detection per line per frame, linked over frames.

    :func:`line_detections` (the centre of each line's bounding box), then
    :func:`link_detections` and :func:`events_from_tracks` as for points: a line drawn in
    frames 3–6 at about the same place is one event, two lines in one frame are two (even
    when they cross), and the crop box is centred on the line (a line longer than the crop
    is cropped around its centre).

    Raises
    ------
    ConfigurationError
        When the movie is smaller than ``crop_size`` in either dimension (checked first).
    """
    check_crop_fits(crop_size, height=height, width=width)
    detections = line_detections(lines, n_frames=n_frames, height=height, width=width)
    tracks = link_detections(
        detections, max_link_distance_px=max_link_distance_px, max_gap_frames=max_gap_frames
    )
    return events_from_tracks(
        tracks,
        n_frames=n_frames,
        height=height,
        width=width,
        add_pre_frames=add_pre_frames,
        add_post_frames=add_post_frames,
        crop_size=crop_size,
    )


_GT_ONLY_PARAMS = ("detection_threshold", "merge_distance_px", "detector")


def detect_line_events_in_file(
    gt_path: str | Path,
    lines: Iterable[Any] | None = None,
    *,
    use_support: bool = True,
    reader: GroundTruthReader | None = None,
    **params: Any,
) -> list[Event]:
    """Events of a line ground-truth TIFF: the drop-in for :func:`detect_events_in_file`.

    With ``lines`` (the kind's :class:`~deep_events_dagster.core.annotations.LineAnnotation`
    list), :func:`detect_line_events` on them, sized by the file (only its header is read);
    ``detection_threshold`` and ``merge_distance_px`` are then accepted and unused. Without
    ``lines``, :func:`detect_events_in_file` with ``detector="components"``: one detection per
    connected stroke ≥ ``detection_threshold`` per frame (lines that touch or cross in a frame
    are then one).

    ``params`` are the keyword arguments of :func:`detect_events` other than ``frames``,
    ``n_frames``, ``height``, ``width``, ``support`` and ``detector``; ``reader`` and
    ``use_support`` as for :func:`detect_events_in_file`.
    """
    params = dict(params)
    params.pop("detector", None)
    if lines is None:
        return detect_events_in_file(
            gt_path, use_support=use_support, reader=reader, detector="components", **params
        )
    for name in _GT_ONLY_PARAMS:
        params.pop(name, None)
    with opened_reader(Path(gt_path), reader) as opened:
        n_frames, height, width = opened.n_frames, opened.height, opened.width
    return detect_line_events(lines, n_frames=n_frames, height=height, width=width, **params)
