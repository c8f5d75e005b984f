"""Detections in one heatmap frame: local maxima (points) and connected components (lines).

* :func:`find_frame_maxima` — local maxima at or above ``threshold`` (0.5 of the peak). Maxima
  closer than ``merge_distance_px`` are one detection (the stronger one; ties go to the smaller
  ``(y, x)``). Step 1 of event detection for Gaussian (points) ground truth.
* :func:`find_frame_components` — one detection per 8-connected component ≥ ``threshold``, at
  its bounding box's centre. Line ground truth is a plateau of 1s along each line, where
  maxima would be many per line; this is step 1 for it when only the ground truth is at hand
  (``detect_events(..., detector="components")``).

A :class:`Detection` is a frame index, a position and the value there; linking them over frames
is :mod:`~deep_events_dagster.core.tracks`.

Defaults and why:

* ``threshold = 0.5`` — half the Gaussian peak, as in the original.
* ``merge_distance_px = 10`` (= 2σ for the default σ = 5). With ``np.maximum`` ground truth two
  points always keep two peaks, however close; below 2σ their ≥ 0.5 cores (radius 1.18σ)
  overlap and they fall in the same crop anyway, so they are one event. 150 px apart they are
  two detections (the original suppressed everything within the 256 px crop size).

Speed: given ``windows`` (the ground-truth sidecar's *support*) only they are examined; without
them each frame is thresholded and labelled once, and only the bounding boxes of the components
above threshold are examined further (the original ran a 256-wide maximum filter over every
frame). Both paths give identical detections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deep_events_dagster.core.regions import Window, merge_windows

__all__ = [
    "DEFAULT_MERGE_DISTANCE_PX",
    "DEFAULT_THRESHOLD",
    "Detection",
    "find_frame_components",
    "find_frame_maxima",
]

DEFAULT_THRESHOLD = 0.5
DEFAULT_MERGE_DISTANCE_PX = 10.0


@dataclass(frozen=True)
class Detection:
    """A local maximum of a heatmap frame (pixel position, value at that pixel)."""

    frame: int
    y: float
    x: float
    value: float


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
    from scipy import ndimage  # loaded when used: settings and the CLI import this module

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
    from scipy import ndimage  # loaded when used: settings and the CLI import this module

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
