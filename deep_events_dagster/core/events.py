"""Event detection on ground-truth heatmaps: maxima per frame, linking, crop boxes, negatives.

Pipeline:

1. :func:`find_frame_maxima` — per frame, local maxima at or above ``threshold`` (0.5 of the
   peak). Maxima closer than ``merge_distance_px`` are one detection (the stronger one; ties go
   to the smaller ``(y, x)``).
2. :func:`link_detections` — a detection joins the open track whose last position is nearest,
   within ``max_distance_px``, and whose last frame is at most ``max_gap_frames`` before it;
   otherwise it opens a new track. A track takes at most one detection per frame.
3. :func:`events_from_tracks` — each track becomes an :class:`Event` with its frame range
   ``[first − add_pre_frames, last + add_post_frames + 1)`` clipped to the movie, its centre
   (rounded mean position) and a ``crop_size`` box centred on it and shifted inside the image.
4. :func:`negative_boxes` — up to four (``count``) boxes shifted by one crop size (up, right,
   down, left), kept only when inside the image and free of ground-truth signal over the
   event's frames.
5. :func:`hard_negative_boxes` (optional, ``hard_negatives`` per acquisition; not in the
   original) — crops centred on the brightest places of the movie that hold no ground truth:
   tubule crossings, bends and blobs are what a detector mistakes for an event, and crops next
   to events rarely show them.

**Line ground truth** (napari shapes drawn as strokes, see
:func:`~deep_events_dagster.core.ground_truth.render_lines_frame`) is a plateau of 1s along each
line, so step 1 would find many maxima per line. For a kind of type ``lines`` step 1 is instead
one detection per line per frame at the centre of the line's bounding box:
:func:`detect_line_events` from the annotations themselves (exact: crossing lines stay two), or
:func:`find_frame_components` — one detection per 8-connected component ≥ ``threshold`` of the
ground truth, at its bounding box's centre (``detect_events(..., detector="components")``), when
only the ground truth is at hand. Steps 2–4 are unchanged, so the crop is centred on the line
and a line longer than the crop is cropped around its centre.
:func:`detect_line_events_in_file` is the drop-in for :func:`detect_events_in_file`.

Defaults and why:

* ``threshold = 0.5`` — half the Gaussian peak, as in the original.
* ``merge_distance_px = 10`` (= 2σ for the default σ = 5). With ``np.maximum`` ground truth two
  points always keep two peaks, however close; below 2σ their ≥ 0.5 cores (radius 1.18σ)
  overlap and they fall in the same crop anyway, so they are one event. 150 px apart they are
  two detections (the original suppressed everything within the 256 px crop size).
* ``max_distance_px = 24`` (≈ 5σ) — an event site (e.g. a mitochondrial fission) moves a few
  pixels per frame; 24 px tolerates that and annotation jitter while keeping simultaneous
  events ≥ 25 px apart separate. (The original used the crop size, 256 px, which merged events
  128–256 px apart.) Two detections in the same frame never join one track.
* ``max_gap_frames = 2`` — a detection may join a track whose last detection is at most two
  frames earlier (frames 10 → 12 link, 10 → 13 do not), as in the original (``i − last < 3``).
* ``add_pre_frames = 0``, ``add_post_frames = 5`` — the crop runs from the first detection to
  five frames after the last one, as in the original; ``frames`` records exactly the cropped
  ``[start, stop)`` (the original recorded one frame early).
* ``crop_size = 256``.

Speed: with the ground-truth sidecar's *support* only the windows that hold signal are read and
examined; without it each frame is thresholded and labelled once, and only the bounding boxes of
the components above threshold are examined further (the original ran a 256-wide maximum filter
over every frame). Both paths give identical detections.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.ground_truth import (
    GroundTruthReader,
    Window,
    read_ground_truth_support,
)

__all__ = [
    "DEFAULT_ADD_POST_FRAMES",
    "DEFAULT_ADD_PRE_FRAMES",
    "DEFAULT_CROP_SIZE",
    "DEFAULT_HARD_NEGATIVES",
    "DEFAULT_MAX_DISTANCE_PX",
    "DEFAULT_MAX_GAP_FRAMES",
    "DEFAULT_MERGE_DISTANCE_PX",
    "DEFAULT_NEGATIVE_COUNT",
    "DEFAULT_THRESHOLD",
    "DETECTORS",
    "Box",
    "Detection",
    "Event",
    "Track",
    "check_crop_fits",
    "crop_box",
    "detect_events",
    "detect_events_in_file",
    "detect_line_events",
    "detect_line_events_in_file",
    "events_from_tracks",
    "find_frame_components",
    "find_frame_maxima",
    "hard_negative_boxes",
    "line_detections",
    "link_detections",
    "merge_windows",
    "negative_boxes",
    "negative_boxes_in_file",
    "signal_checker",
]

DEFAULT_THRESHOLD = 0.5
DEFAULT_MERGE_DISTANCE_PX = 10.0
DEFAULT_MAX_DISTANCE_PX = 24.0
DEFAULT_MAX_GAP_FRAMES = 2
DEFAULT_ADD_PRE_FRAMES = 0
DEFAULT_ADD_POST_FRAMES = 5
DEFAULT_CROP_SIZE = 256
DEFAULT_NEGATIVE_COUNT = 4
DEFAULT_HARD_NEGATIVES = 0  # hard negatives per acquisition (not in the original)
DETECTORS = ("maxima", "components")


class Box(NamedTuple):
    """A crop box ``(x0, y0, x1, y1)`` — columns first — half-open, in pixels.

    Event and negative crops use it (``crop_box`` of event documents and manifests). Not to be
    confused with :class:`~deep_events_dagster.core.ground_truth.Window`,
    ``(y0, y1, x0, x1)``, of the ground-truth support. A plain tuple (it unpacks and compares
    as one); write it to files as ``list(box)``.
    """

    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True)
class Detection:
    """A local maximum of a heatmap frame (pixel position, value at that pixel)."""

    frame: int
    y: float
    x: float
    value: float


@dataclass(frozen=True)
class Track:
    """Detections linked over time, in frame order, at most one per frame."""

    detections: tuple[Detection, ...]

    @property
    def first_frame(self) -> int:
        return self.detections[0].frame

    @property
    def last_frame(self) -> int:
        return self.detections[-1].frame


@dataclass(frozen=True)
class Event:
    """One event: its detections, cropped frames ``[start, stop)``, centre and crop box.

    Attributes
    ----------
    detections
        The linked detections, in frame order.
    frames
        ``(start, stop)``, half-open: exactly the frames to crop.
    center
        ``(y, x)``: the mean detection position rounded to whole pixels (halves up).
    crop_box
        ``(x0, y0, x1, y1)``, half-open, ``crop_size`` wide and high, inside the image.
    """

    detections: tuple[Detection, ...]
    frames: tuple[int, int]
    center: tuple[int, int]
    crop_box: Box


# --------------------------------------------------------------------------- maxima


def _windows_overlap(a: Window, b: Window) -> bool:
    return a.y0 < b.y1 and b.y0 < a.y1 and a.x0 < b.x1 and b.x0 < a.x1


def merge_windows(windows: Iterable[Window]) -> list[Window]:
    """Merge overlapping ``(y0, y1, x0, x1)`` windows into disjoint bounding boxes, sorted.

    Windows that overlap (share at least one pixel) are replaced by their bounding box,
    repeatedly, until no two overlap. Empty windows are dropped.
    """
    regions = [Window(*(int(v) for v in w)) for w in windows]
    regions = [w for w in regions if w.y0 < w.y1 and w.x0 < w.x1]
    changed = True
    while changed:
        changed = False
        regions.sort()
        merged: list[Window] = []
        for window in regions:
            for i, other in enumerate(merged):
                if _windows_overlap(window, other):
                    merged[i] = Window(
                        min(window.y0, other.y0),
                        max(window.y1, other.y1),
                        min(window.x0, other.x0),
                        max(window.x1, other.x1),
                    )
                    changed = True
                    break
            else:
                merged.append(window)
        regions = merged
    return sorted(regions)


def _disk_offsets(radius: float) -> tuple[np.ndarray, int]:
    rr = math.floor(radius)
    dy, dx = np.mgrid[-rr : rr + 1, -rr : rr + 1]
    return (dy * dy + dx * dx) <= radius * radius, rr


def find_frame_maxima(
    frame: np.ndarray,
    *,
    frame_index: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    windows: Sequence[Window] | None = None,
    merge_distance_px: float = DEFAULT_MERGE_DISTANCE_PX,
) -> list[Detection]:
    """Local maxima of ``frame`` at or above ``threshold``, at least ``merge_distance_px`` apart.

    A pixel is a maximum when it is ≥ ``threshold`` and no pixel ≥ ``threshold`` within the
    Euclidean distance ``merge_distance_px`` is larger; among equal maxima closer than that the
    one with the smaller ``(y, x)`` is kept. So one Gaussian gives one detection, two Gaussians
    150 px apart give two, and two points closer than ``merge_distance_px`` give one.

    Parameters
    ----------
    frame
        A ``Y×X`` heatmap.
    frame_index
        Stored in the returned detections.
    threshold
        Minimum value (> 0).
    windows
        ``(y0, y1, x0, x1)`` windows that together contain every pixel ≥ ``threshold`` (e.g.
        the ground-truth support); only they (plus a ``merge_distance_px`` margin) are
        examined. ``None`` examines the whole frame. Both give the same result when the
        windows cover the signal.
    merge_distance_px
        Maxima closer than this (pixels) are merged.

    Returns
    -------
    list[Detection]
        Sorted by ``(y, x)``.
    """
    if frame.ndim != 2:
        raise ValueError(f"frame must be 2-D (Y×X), got shape {frame.shape}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    if merge_distance_px < 0:
        raise ValueError(f"merge_distance_px must be ≥ 0, got {merge_distance_px!r}")
    height, width = frame.shape
    footprint, rr = _disk_offsets(merge_distance_px)

    if windows is None:
        labels, _ = ndimage.label(frame >= threshold, structure=np.ones((3, 3), dtype=bool))
        regions: list[Window] = [
            Window(sl[0].start, sl[0].stop, sl[1].start, sl[1].stop)
            for sl in ndimage.find_objects(labels)
            if sl is not None
        ]
        del labels
    else:
        regions = [
            Window(
                max(0, int(w[0])), min(height, int(w[1])), max(0, int(w[2])), min(width, int(w[3]))
            )
            for w in windows
        ]
    # Pad every region by the merge radius and merge overlapping ones: any two pixels within
    # merge_distance_px of each other then share a cluster, so each cluster is independent.
    clusters = merge_windows(
        Window(max(0, y0 - rr), min(height, y1 + rr), max(0, x0 - rr), min(width, x1 + rr))
        for y0, y1, x0, x1 in regions
        if y0 < y1 and x0 < x1
    )

    found: list[Detection] = []
    for y0, y1, x0, x1 in clusters:
        crop = np.asarray(frame[y0:y1, x0:x1])
        mask = crop >= threshold
        if not mask.any():
            continue
        vals = np.where(mask, crop, 0).astype(np.float64)
        # candidates: 3×3 local maxima (every disk maximum is one when the disk holds 3×3)
        if merge_distance_px >= math.sqrt(2):
            local = ndimage.maximum_filter(vals, size=3, mode="constant", cval=0.0)
        else:
            local = ndimage.maximum_filter(vals, footprint=footprint, mode="constant", cval=0.0)
        cy, cx = np.nonzero(mask & (vals >= local))
        if cy.size == 0:
            continue
        padded = np.pad(vals, rr)
        cand_vals = vals[cy, cx]
        keep_y: list[int] = []
        keep_x: list[int] = []
        keep_v: list[float] = []
        order = np.lexsort((cx, cy, -cand_vals))
        for k in order:
            py, px, v = int(cy[k]), int(cx[k]), float(cand_vals[k])
            if rr > 0:
                disk = padded[py : py + 2 * rr + 1, px : px + 2 * rr + 1]
                if disk[footprint].max() > v:
                    continue
            if any(
                (py - qy) ** 2 + (px - qx) ** 2 <= merge_distance_px**2
                for qy, qx in zip(keep_y, keep_x)
            ):
                continue
            keep_y.append(py)
            keep_x.append(px)
            keep_v.append(v)
        for py, px, v in zip(keep_y, keep_x, keep_v):
            found.append(Detection(int(frame_index), float(py + y0), float(px + x0), v))
    found.sort(key=lambda d: (d.y, d.x))
    return found


def find_frame_components(
    frame: np.ndarray,
    *,
    frame_index: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    windows: Sequence[Window] | None = None,
) -> list[Detection]:
    """One detection per 8-connected component of ``frame ≥ threshold`` (line ground truth).

    The detection lies at the centre of the component's bounding box (``(r0 + r1 − 1) / 2``
    for rows ``r0 … r1 − 1``, likewise columns; a half-pixel when the extent is even) and
    carries the component's maximum value.

    Parameters
    ----------
    frame
        A ``Y×X`` heatmap.
    frame_index
        Stored in the returned detections.
    threshold
        Minimum value (> 0).
    windows
        ``(y0, y1, x0, x1)`` windows that together contain every pixel ≥ ``threshold``
        (e.g. the ground-truth support); only they (grown by one pixel and merged where they
        overlap, so no component is split) are labelled. ``None`` labels the whole frame. Both
        give the same result when the windows cover the signal.

    Returns
    -------
    list[Detection]
        Sorted by ``(y, x)``.
    """
    if frame.ndim != 2:
        raise ValueError(f"frame must be 2-D (Y×X), got shape {frame.shape}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    height, width = frame.shape
    if windows is None:
        regions: list[Window] = [Window(0, height, 0, width)]
    else:
        regions = merge_windows(
            Window(
                max(0, int(w[0]) - 1),
                min(height, int(w[1]) + 1),
                max(0, int(w[2]) - 1),
                min(width, int(w[3]) + 1),
            )
            for w in windows
        )
    structure = np.ones((3, 3), dtype=bool)
    found: list[Detection] = []
    for y0, y1, x0, x1 in regions:
        crop = np.asarray(frame[y0:y1, x0:x1])
        mask = crop >= threshold
        if not mask.any():
            continue
        labels, n_labels = ndimage.label(mask, structure=structure)
        peaks = ndimage.maximum(crop, labels, index=np.arange(1, n_labels + 1))
        for sl, peak in zip(ndimage.find_objects(labels), np.atleast_1d(peaks), strict=True):
            if sl is None:
                continue
            cy = y0 + (sl[0].start + sl[0].stop - 1) / 2.0
            cx = x0 + (sl[1].start + sl[1].stop - 1) / 2.0
            found.append(Detection(int(frame_index), float(cy), float(cx), float(peak)))
    found.sort(key=lambda d: (d.y, d.x))
    return found


# --------------------------------------------------------------------------- linking


def link_detections(
    detections: Iterable[Detection],
    *,
    max_distance_px: float = DEFAULT_MAX_DISTANCE_PX,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
) -> list[Track]:
    """Link detections over frames into tracks.

    Frames are processed in increasing order. A detection in frame ``f`` may join a track whose
    last detection is in a frame ``f − max_gap_frames ≤ last < f`` and within
    ``max_distance_px`` (Euclidean) of its last position. Within a frame, pairs are assigned
    greedily by increasing distance (ties: the more recent track, then the older track, then
    the detection's ``(y, x)``); each track takes at most one detection per frame and each
    detection joins at most one track. Unassigned detections open new tracks.

    Returns
    -------
    list[Track]
        In order of their first detection (frame, then ``(y, x)``).
    """
    if max_gap_frames < 1:
        raise ValueError(f"max_gap_frames must be ≥ 1, got {max_gap_frames!r}")
    by_frame: dict[int, list[Detection]] = {}
    for d in detections:
        by_frame.setdefault(int(d.frame), []).append(d)
    tracks: list[list[Detection]] = []
    open_ids: list[int] = []
    limit2 = float(max_distance_px) ** 2
    for f in sorted(by_frame):
        dets = sorted(by_frame[f], key=lambda d: (d.y, d.x))
        open_ids = [i for i in open_ids if tracks[i][-1].frame >= f - max_gap_frames]
        pairs = []
        for i in open_ids:
            last = tracks[i][-1]
            for j, d in enumerate(dets):
                dist2 = (d.y - last.y) ** 2 + (d.x - last.x) ** 2
                if dist2 <= limit2:
                    pairs.append((dist2, -last.frame, i, j))
        pairs.sort()
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        for _dist2, _neg_last, i, j in pairs:
            if i in used_tracks or j in used_dets:
                continue
            tracks[i].append(dets[j])
            used_tracks.add(i)
            used_dets.add(j)
        for j, d in enumerate(dets):
            if j not in used_dets:
                tracks.append([d])
                open_ids.append(len(tracks) - 1)
    return [Track(tuple(t)) for t in tracks]


# --------------------------------------------------------------------------- boxes


def check_crop_fits(crop_size: int, *, height: int, width: int) -> None:
    """Raise :class:`ConfigurationError` when a ``crop_size`` square does not fit the movie."""
    if crop_size < 1:
        raise ConfigurationError(f"crop_size must be ≥ 1, got {crop_size!r}")
    if crop_size > width or crop_size > height:
        raise ConfigurationError(
            f"movie is {width}×{height} px (width×height), smaller than the {crop_size} px "
            "crop; lower crop_size"
        )


def crop_box(
    center_y: float,
    center_x: float,
    *,
    crop_size: int = DEFAULT_CROP_SIZE,
    height: int,
    width: int,
) -> Box:
    """A ``crop_size`` square centred on ``(center_y, center_x)``, shifted inside the image.

    ``x0 = round(center_x) − crop_size // 2`` clipped to ``[0, width − crop_size]``; likewise
    ``y0`` against the height. Returns ``(x0, y0, x1, y1)``, half-open.

    Raises
    ------
    ConfigurationError
        When the movie is smaller than the crop in either dimension.
    """
    check_crop_fits(crop_size, height=height, width=width)
    half = crop_size // 2
    x0 = min(max(math.floor(center_x + 0.5) - half, 0), width - crop_size)
    y0 = min(max(math.floor(center_y + 0.5) - half, 0), height - crop_size)
    return Box(int(x0), int(y0), int(x0 + crop_size), int(y0 + crop_size))


def events_from_tracks(
    tracks: Iterable[Track],
    *,
    n_frames: int,
    height: int,
    width: int,
    add_pre_frames: int = DEFAULT_ADD_PRE_FRAMES,
    add_post_frames: int = DEFAULT_ADD_POST_FRAMES,
    crop_size: int = DEFAULT_CROP_SIZE,
) -> list[Event]:
    """Turn tracks into events, sorted by ``(start frame, x0, y0)`` (then stop, centre)."""
    if add_pre_frames < 0 or add_post_frames < 0:
        raise ValueError("add_pre_frames and add_post_frames must be ≥ 0")
    events = []
    for track in tracks:
        dets = track.detections
        start = max(0, dets[0].frame - add_pre_frames)
        stop = min(n_frames, dets[-1].frame + add_post_frames + 1)
        cy = math.floor(float(np.mean([d.y for d in dets])) + 0.5)
        cx = math.floor(float(np.mean([d.x for d in dets])) + 0.5)
        box = crop_box(cy, cx, crop_size=crop_size, height=height, width=width)
        events.append(Event(tuple(dets), (int(start), int(stop)), (int(cy), int(cx)), box))
    events.sort(key=lambda e: (e.frames[0], e.crop_box.x0, e.crop_box.y0, e.frames[1], e.center))
    return events


# --------------------------------------------------------------------------- detection

FrameSource = Callable[[int, "list[Window] | None"], np.ndarray] | Iterable[tuple[int, np.ndarray]]


def detect_events(
    frames: FrameSource,
    *,
    n_frames: int,
    height: int,
    width: int,
    support: dict[int, list[Window]] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    merge_distance_px: float = DEFAULT_MERGE_DISTANCE_PX,
    max_distance_px: float = DEFAULT_MAX_DISTANCE_PX,
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
    threshold, merge_distance_px
        See :func:`find_frame_maxima`.
    max_distance_px, max_gap_frames
        See :func:`link_detections`.
    add_pre_frames, add_post_frames, crop_size
        See :func:`events_from_tracks`.
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
            found = find_frame_components(arr, frame_index=t, threshold=threshold, windows=windows)
        else:
            found = find_frame_maxima(
                arr,
                frame_index=t,
                threshold=threshold,
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
        detections, max_distance_px=max_distance_px, max_gap_frames=max_gap_frames
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


@contextlib.contextmanager
def _opened(path: Path, reader: GroundTruthReader | None) -> Iterator[GroundTruthReader]:
    """``reader`` as it is (the caller closes it), else a reader of ``path`` closed on exit."""
    if reader is not None:
        yield reader
        return
    with GroundTruthReader(path) as opened:
        yield opened


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
    with _opened(gt_path, reader) as reader:
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
    max_distance_px: float = DEFAULT_MAX_DISTANCE_PX,
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
        detections, max_distance_px=max_distance_px, max_gap_frames=max_gap_frames
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


_GT_ONLY_PARAMS = ("threshold", "merge_distance_px", "detector")


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
    ``threshold`` and ``merge_distance_px`` are then accepted and unused. Without ``lines``,
    :func:`detect_events_in_file` with ``detector="components"``: one detection per connected
    stroke ≥ ``threshold`` per frame (lines that touch or cross in a frame are then one).

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
    with _opened(Path(gt_path), reader) as opened:
        n_frames, height, width = opened.n_frames, opened.height, opened.width
    return detect_line_events(lines, n_frames=n_frames, height=height, width=width, **params)


# --------------------------------------------------------------------------- negatives


def negative_boxes(
    event_box: Box,
    *,
    crop_size: int = DEFAULT_CROP_SIZE,
    height: int,
    width: int,
    gt_has_signal: Callable[[Box, tuple[int, int]], bool],
    frames: tuple[int, int],
    count: int = DEFAULT_NEGATIVE_COUNT,
) -> list[Box]:
    """Up to ``count`` signal-free boxes next to an event's box.

    Candidates are ``event_box`` shifted by one ``crop_size`` up, right, down and left (in that
    order); a candidate is kept when it lies fully inside the image and
    ``gt_has_signal(box, frames)`` is false. Candidates are taken in that order until
    ``count`` (0–4, the original's ``auto_negatives`` as a number) are kept, so a rejected
    candidate makes room for the next one; ``count=0`` checks nothing and returns ``[]``.
    """
    _check_negative_count(count)
    x0, y0, x1, y1 = event_box
    shifts = ((0, -crop_size), (crop_size, 0), (0, crop_size), (-crop_size, 0))
    kept: list[Box] = []
    for dx, dy in shifts:
        if len(kept) >= count:
            break
        box = Box(x0 + dx, y0 + dy, x1 + dx, y1 + dy)
        if box.x0 < 0 or box.y0 < 0 or box.x1 > width or box.y1 > height:
            continue
        if gt_has_signal(box, frames):
            continue
        kept.append(box)
    return kept


def hard_negative_boxes(
    frames: Sequence[tuple[int, np.ndarray]],
    *,
    count: int,
    crop_size: int = DEFAULT_CROP_SIZE,
    n_frames: int,
    length: int,
    gt_has_signal: Callable[[Box, tuple[int, int]], bool],
    smooth_px: float = 2.0,
) -> list[tuple[tuple[int, int], Box]]:
    """Up to ``count`` signal-free crops centred on the brightest places of a movie.

    Candidates are the local maxima (within ``crop_size // 4``) of each given frame after a
    Gaussian blur of ``smooth_px`` (so a single hot pixel does not count), brightest first
    over all frames (ties: earlier frame, then ``(y, x)``). A candidate in frame ``t`` gives
    the box :func:`crop_box` centred on it over the frames ``[t − length // 2, … + length)``
    shifted inside ``[0, n_frames)``; it is kept when ``gt_has_signal(box, frames)`` is false
    and its centre is at least ``crop_size / 2`` from every kept one (so the crops show
    different places).

    Parameters
    ----------
    frames
        ``(frame index, Y×X image)`` pairs, e.g. a sample of the movie's frames.
    count
        How many to keep at most (≥ 0).
    n_frames
        Frames in the movie.
    length
        Frames per crop (typically an event's).
    gt_has_signal
        As for :func:`negative_boxes`.

    Returns
    -------
    list[tuple[tuple[int, int], Box]]
        ``((start, stop), box)`` per crop, in the order chosen.
    """
    if isinstance(count, bool) or count < 0:
        raise ValueError(f"count of hard negatives must be an integer ≥ 0, got {count!r}")
    if count == 0 or not frames:
        return []
    length = max(1, min(int(length), n_frames))
    candidates: list[tuple[float, int, int, int]] = []
    for t, image in frames:
        blurred = ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), smooth_px)
        local = ndimage.maximum_filter(blurred, size=max(3, crop_size // 4 | 1), mode="nearest")
        ys, xs = np.nonzero((blurred >= local) & (blurred > blurred.min()))
        candidates.extend((-float(blurred[y, x]), int(t), int(y), int(x)) for y, x in zip(ys, xs))
    candidates.sort()
    height, width = frames[0][1].shape
    min_distance2 = (crop_size / 2) ** 2
    kept: list[tuple[tuple[int, int], Box]] = []
    centres: list[tuple[int, int]] = []
    for _value, t, y, x in candidates:
        if len(kept) >= count:
            break
        if any((y - cy) ** 2 + (x - cx) ** 2 < min_distance2 for cy, cx in centres):
            continue
        start = min(max(0, t - length // 2), n_frames - length)
        span = (start, start + length)
        box = crop_box(y, x, crop_size=crop_size, height=height, width=width)
        if gt_has_signal(box, span):
            continue
        kept.append((span, box))
        centres.append((y, x))
    return kept


def _check_negative_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= 4:
        raise ValueError(f"count of negatives must be an integer from 0 to 4, got {count!r}")


def signal_checker(
    reader: GroundTruthReader,
    support: dict[int, list[Window]] | None = None,
) -> Callable[[Box, tuple[int, int]], bool]:
    """Build ``gt_has_signal(box, (start, stop))`` for :func:`negative_boxes` from a GT file.

    With ``support`` only frames whose support windows intersect the box are read, and only
    the intersections; without it the box is read in every frame of the range. Signal means a
    value > 0. The reader must stay open while the checker is used.
    """

    def has_signal(box: Box, frames: tuple[int, int]) -> bool:
        bx0, by0, bx1, by1 = box
        start, stop = max(0, frames[0]), min(reader.n_frames, frames[1])
        if support is None:
            return reader.has_signal(box, (start, stop))
        for t in range(start, stop):
            for wy0, wy1, wx0, wx1 in support.get(t, ()):
                iy0, iy1 = max(by0, wy0), min(by1, wy1)
                ix0, ix1 = max(bx0, wx0), min(bx1, wx1)
                if iy0 < iy1 and ix0 < ix1 and reader.read_window(t, iy0, iy1, ix0, ix1).any():
                    return True
        return False

    return has_signal


def negative_boxes_in_file(
    gt_path: str | Path,
    events: Sequence[Event],
    *,
    crop_size: int = DEFAULT_CROP_SIZE,
    use_support: bool = True,
    reader: GroundTruthReader | None = None,
    count: int = DEFAULT_NEGATIVE_COUNT,
) -> list[list[Box]]:
    """:func:`negative_boxes` for every event, checking signal in the GT TIFF ``gt_path``
    (through ``reader`` when given, see :func:`detect_events_in_file`); at most ``count``
    (0–4) per event.

    Returns one list of boxes per event, in the order of ``events``.
    """
    _check_negative_count(count)
    if count == 0:
        return [[] for _ in events]
    gt_path = Path(gt_path)
    support = read_ground_truth_support(gt_path) if use_support else None
    with _opened(gt_path, reader) as reader:
        check = signal_checker(reader, support)
        return [
            negative_boxes(
                ev.crop_box,
                crop_size=crop_size,
                height=reader.height,
                width=reader.width,
                gt_has_signal=check,
                frames=ev.frames,
                count=count,
            )
            for ev in events
        ]
