"""Checks of a ground-truth TIFF against the annotations: event detection will see them all.

:func:`one_peak_per_point` finds, as event detection does, a maximum near every annotated point;
:func:`lines_drawn` finds every annotated line drawn. Both return a :class:`PeakCoverage`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deep_events_dagster.core import annotations as ann
from deep_events_dagster.core.checks_common import MAX_LISTED, file_name, plural
from deep_events_dagster.core.detections import (
    DEFAULT_MERGE_DISTANCE_PX,
    DEFAULT_THRESHOLD,
    find_frame_maxima,
)
from deep_events_dagster.core.ground_truth_reader import (
    GroundTruthReader,
    read_ground_truth_support,
)
from deep_events_dagster.core.regions import merge_windows

__all__ = ["MissingPeak", "PeakCoverage", "lines_drawn", "one_peak_per_point"]


@dataclass(frozen=True)
class MissingPeak:
    """An annotated point without a ground-truth maximum near it."""

    file: str
    row: int
    frame: int
    y: float
    x: float


@dataclass(frozen=True)
class PeakCoverage:
    """Result of :func:`one_peak_per_point`.

    Attributes
    ----------
    passed
        Every point has a maximum ≥ ``threshold`` within ``merge_distance_px`` in its frame.
    n_points
        Points checked.
    n_peaks
        Maxima found in the frames that hold points (several close points share one).
    n_missing
        Points without a maximum nearby.
    frames_checked
        Frames that hold at least one point.
    used_support
        The ground truth's sidecar was valid, so only its windows were read.
    missing
        The first :data:`MAX_LISTED` points without a maximum.
    message
        One sentence.
    """

    passed: bool
    n_points: int
    n_peaks: int
    n_missing: int
    frames_checked: int
    used_support: bool
    missing: tuple[MissingPeak, ...]
    message: str


def one_peak_per_point(
    gt_path: str | Path,
    points: Iterable[ann.AnnotationPoint],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    merge_distance_px: float = DEFAULT_MERGE_DISTANCE_PX,
) -> PeakCoverage:
    """Check that event detection will see every annotated point.

    In each frame that holds points, the ground truth's local maxima are found exactly as
    event detection finds them (:func:`deep_events_dagster.core.detections.find_frame_maxima`:
    values ≥ ``threshold``, maxima closer than ``merge_distance_px`` merged); a point passes
    when a maximum lies within ``merge_distance_px`` of it. Two points closer than that may
    share one maximum (they are one event anyway).

    With a valid sidecar only its support windows are read (frames without support have no
    signal, so their points fail); otherwise the frames that hold points are read whole.

    Parameters
    ----------
    gt_path
        The ``ground_truth_<kind>.tif``.
    points
        The annotated points, in pixels.
    threshold, merge_distance_px
        Detection parameters (defaults: 0.5 and 10 px, those of event detection).

    Returns
    -------
    PeakCoverage
    """
    gt_path = Path(gt_path)
    by_frame: dict[int, list[ann.AnnotationPoint]] = {}
    for p in points:
        by_frame.setdefault(int(p.frame), []).append(p)
    support = read_ground_truth_support(gt_path)
    limit2 = float(merge_distance_px) ** 2
    missing: list[ann.AnnotationPoint] = []
    n_peaks = 0
    with GroundTruthReader(gt_path) as gt:
        for t in sorted(by_frame):
            in_frame = by_frame[t]
            if not 0 <= t < gt.n_frames:
                missing.extend(in_frame)
                continue
            if support is None:
                frame, windows = gt.read_frame(t), None
            else:
                windows = merge_windows(support.get(t, []))
                if not windows:
                    missing.extend(in_frame)
                    continue
                # np.zeros is allocated lazily: only the windows' pages are touched
                frame = np.zeros((gt.height, gt.width), dtype=gt.dtype)
                for y0, y1, x0, x1 in windows:
                    frame[y0:y1, x0:x1] = gt.read_window(t, y0, y1, x0, x1)
            maxima = find_frame_maxima(
                frame,
                frame_index=t,
                threshold=threshold,
                windows=windows,
                merge_distance_px=merge_distance_px,
            )
            n_peaks += len(maxima)
            for p in in_frame:
                if not any((m.y - p.y) ** 2 + (m.x - p.x) ** 2 <= limit2 for m in maxima):
                    missing.append(p)
    n_points = sum(len(v) for v in by_frame.values())
    missing.sort(key=lambda p: (p.file, p.row))
    listed = tuple(
        MissingPeak(file_name(p.file), p.row, p.frame, round(p.y, 2), round(p.x, 2))
        for p in missing[:MAX_LISTED]
    )
    if missing:
        first = listed[0]
        message = (
            f"{len(missing)} of {plural(n_points, 'annotated point')} have no ground-truth "
            f"maximum ≥ {threshold} within {merge_distance_px:g} px (first: {first.file} row "
            f"{first.row}, frame {first.frame}, y={first.y}, x={first.x}); event detection "
            "will miss them — is σ too small for sub-pixel points?"
        )
    elif n_points:
        message = (
            f"every one of {plural(n_points, 'annotated point')} has a ground-truth maximum "
            f"≥ {threshold} within {merge_distance_px:g} px "
            f"({plural(n_peaks, 'maximum', 'maxima')} in {plural(len(by_frame), 'frame')})"
        )
    else:
        message = "no annotated points"
    return PeakCoverage(
        passed=not missing,
        n_points=n_points,
        n_peaks=n_peaks,
        n_missing=len(missing),
        frames_checked=len(by_frame),
        used_support=support is not None,
        missing=listed,
        message=message,
    )


def lines_drawn(
    gt_path: str | Path,
    lines: Iterable[ann.LineAnnotation],
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> PeakCoverage:
    """Check that every annotated line is in the ground truth: at the middle of its first
    segment the ground truth reaches ``threshold`` in the line's frame (a stroke of any
    width ≥ 1 px is 1 on its centre line).

    Returns
    -------
    PeakCoverage
        ``n_points`` counts lines, ``n_peaks`` the lines found drawn.
    """
    lines = list(lines)
    missing: list[ann.LineAnnotation] = []
    frames = {int(line.frame) for line in lines}
    with GroundTruthReader(Path(gt_path)) as gt:
        for line in lines:
            (y0, x0), (y1, x1) = line.vertices[0], line.vertices[1]
            y, x = round((y0 + y1) / 2), round((x0 + x1) / 2)
            inside = 0 <= line.frame < gt.n_frames and 0 <= y < gt.height and 0 <= x < gt.width
            if not inside or gt.read_window(line.frame, y, y + 1, x, x + 1)[0, 0] < threshold:
                missing.append(line)
    listed = tuple(
        MissingPeak(file_name(line.file), line.rows[0], line.frame, *map(float, line.center))
        for line in sorted(missing, key=lambda m: (m.file, m.rows[0]))[:MAX_LISTED]
    )
    n = len(lines)
    if missing:
        first = listed[0]
        message = (
            f"{len(missing)} of {plural(n, 'annotated line')} are not in the ground truth "
            f"(first: {first.file} row {first.row}, frame {first.frame})"
        )
    else:
        message = f"every one of {plural(n, 'annotated line')} is drawn" if n else "no lines"
    return PeakCoverage(
        passed=not missing,
        n_points=n,
        n_peaks=n - len(missing),
        n_missing=len(missing),
        frames_checked=len(frames),
        used_support=False,
        missing=listed,
        message=message,
    )
