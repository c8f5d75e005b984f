"""Quality checks of ingestion outputs, as pure functions (no Dagster).

Each check returns a small frozen dataclass with ``passed``, the counts a biologist wants to
see and a one-line ``message``; :mod:`deep_events_dagster.defs.ingestion.checks` turns them
into Dagster asset-check results beside the assets that produced the checked files.

==========================  ====================================  =========================
check                       what it looks at                      a failure means
==========================  ====================================  =========================
annotations_inside_movie    napari points vs. the movie's size    a point off the image or
                                                                  outside the movie's frames
metadata_complete           ``db.yaml``                           cell line, microscope,
                                                                  contrast, stain/labels or
                                                                  a default missing
one_peak_per_point          ground-truth TIFF vs. the points      an annotated point has no
                                                                  heatmap maximum ≥ threshold
                                                                  nearby in its frame
crops_valid                 ``ev_*`` folders of a manifest        missing, wrongly shaped,
                                                                  empty or mislabelled crops
catalog_matches_folders     catalog documents vs. the manifest    catalog and folders disagree
positive_negative_ratio     event / negative counts               annotations but no event
==========================  ====================================  =========================
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from deep_events_dagster.core import annotations as ann
from deep_events_dagster.core.crops import GROUND_TRUTH_NAME, IMAGES_NAME
from deep_events_dagster.core.events import (
    DEFAULT_MERGE_DISTANCE_PX,
    DEFAULT_THRESHOLD,
    find_frame_maxima,
    merge_windows,
)
from deep_events_dagster.core.ground_truth import GroundTruthReader, read_ground_truth_support
from deep_events_dagster.core.metadata import DEFAULTS

__all__ = [
    "BRIGHTFIELD_NAMES",
    "DEFAULT_KEYS",
    "REQUIRED_KEYS",
    "STAIN_KEYS",
    "AnnotationBounds",
    "CatalogAgreement",
    "CropsValidity",
    "EventBalance",
    "FilePoints",
    "Manifest",
    "MetadataCompleteness",
    "MissingPeak",
    "PeakCoverage",
    "annotations_inside_movie",
    "catalog_matches_folders",
    "crops_valid",
    "load_manifest",
    "metadata_complete",
    "one_peak_per_point",
    "positive_negative_ratio",
    "read_points",
]

REQUIRED_KEYS: tuple[str, ...] = ("cell_line", "microscope", "contrast")
"""``db.yaml`` keys every acquisition needs (training sets are selected on them)."""
STAIN_KEYS: tuple[str, ...] = ("stain", "labels")
"""At least one of these is needed, unless the contrast is brightfield (nothing stained)."""
DEFAULT_KEYS: tuple[str, ...] = tuple(DEFAULTS)
"""Keys the platform fills with defaults (``typically_use``, ``augmented``, ``scale_csv``,
``type``); missing means ``db.yaml`` was not written by this platform or was edited."""
BRIGHTFIELD_NAMES = frozenset({"brightfield", "bf", "bright_field", "bright-field", "bright field"})
"""Contrast names (lower case) that need no stain or labels."""
STAIN_OR_LABELS = "stain or labels"
MAX_LISTED = 20
"""At most this many problems are listed in a result (counts always cover everything)."""


def _plural(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def _name(file: str | Path) -> str:
    return Path(file).name


# ---------------------------------------------------------------- annotations


@dataclass(frozen=True)
class FilePoints:
    """Points of one annotation CSV: how many, and how many lie outside the movie."""

    file: str
    points: int
    outside: int


@dataclass(frozen=True)
class AnnotationBounds:
    """Result of :func:`annotations_inside_movie`.

    Attributes
    ----------
    passed
        Every point lies inside the movie.
    n_points, n_outside
        Points checked, and those outside the image, the frames or the channels.
    files
        Per CSV file (in the order given, then first appearance), its counts.
    problems
        One line per bad point (file, row, which bound), at most :data:`MAX_LISTED`.
    message
        One sentence (on failure: one line per file naming it).
    """

    passed: bool
    n_points: int
    n_outside: int
    files: tuple[FilePoints, ...]
    problems: tuple[str, ...]
    message: str


def read_points(
    folder: str | Path,
    kind: str,
    metadata: Mapping[str, Any],
    physical_size_x: float | None = None,
) -> tuple[list[ann.AnnotationPoint], tuple[Path, ...]]:
    """Every ``<kind>*.csv`` point of an acquisition folder, in pixels, without bound checks
    (see :func:`deep_events_dagster.core.annotations.read_kind_points`), so that
    :func:`annotations_inside_movie` can count the points outside the movie."""
    return ann.read_kind_points(folder, kind, metadata, physical_size_x)


def line_vertices(lines: Iterable[ann.LineAnnotation]) -> list[ann.AnnotationPoint]:
    """Every vertex of the lines as a point (frame, y, x, channel, file, row), so that
    :func:`annotations_inside_movie` checks lines as it checks points."""
    return [
        ann.AnnotationPoint(line.frame, y, x, line.channel, line.file, row)
        for line in lines
        for (y, x), row in zip(line.vertices, line.rows, strict=True)
    ]


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
        MissingPeak(_name(line.file), line.rows[0], line.frame, *map(float, line.center))
        for line in sorted(missing, key=lambda m: (m.file, m.rows[0]))[:MAX_LISTED]
    )
    n = len(lines)
    if missing:
        first = listed[0]
        message = (
            f"{len(missing)} of {_plural(n, 'annotated line')} are not in the ground truth "
            f"(first: {first.file} row {first.row}, frame {first.frame})"
        )
    else:
        message = f"every one of {_plural(n, 'annotated line')} is drawn" if n else "no lines"
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


def annotations_inside_movie(
    points: Iterable[ann.AnnotationPoint],
    *,
    n_frames: int,
    height: int,
    width: int,
    n_channels: int = 1,
    files: Sequence[str | Path] = (),
) -> AnnotationBounds:
    """Check that every annotated point lies inside the movie.

    Parameters
    ----------
    points
        Points in pixels (e.g. from :func:`read_points`).
    n_frames, height, width, n_channels
        The movie's size; bounds as in
        :func:`deep_events_dagster.core.annotations.validate_points` (pixel centres,
        ``0 ≤ y ≤ height − 1``, ``0 ≤ frame < n_frames``).
    files
        The CSV files read, so that a file is listed with its counts in the given order.

    Returns
    -------
    AnnotationBounds
        Passed when no point is outside; the message names every file with bad points and
        counts them out of the file's total.
    """
    points = list(points)
    problems = ann.validate_points(
        points, n_frames=n_frames, height=height, width=width, n_channels=n_channels
    )
    totals: dict[str, int] = {str(f): 0 for f in files}
    for p in points:
        totals[p.file] = totals.get(p.file, 0) + 1
    bad: dict[str, int] = {}
    for prob in problems:
        bad[prob.file] = bad.get(prob.file, 0) + 1
    per_file = tuple(
        FilePoints(file=_name(f), points=n, outside=bad.get(f, 0)) for f, n in totals.items()
    )
    listed = tuple(
        f"{_name(q.file)} row {q.row} (line {q.row + 2}): {q.reason}"
        for q in sorted(problems, key=lambda q: (q.file, q.row))[:MAX_LISTED]
    )
    size = f"{n_frames} frames, {width}×{height} px"
    if problems:
        renamed = [ann.PointProblem(_name(q.file), q.row, q.reason) for q in problems]
        named = [
            ann.AnnotationPoint(p.frame, p.y, p.x, p.channel, _name(p.file), p.row) for p in points
        ]
        message = ann.format_problems(renamed, named)
    elif points:
        message = (
            f"{_plural(len(points), 'point')} in {_plural(len(per_file), 'file')}, "
            f"all inside the movie ({size})"
        )
    else:
        message = "no annotated points"
    return AnnotationBounds(
        passed=not problems,
        n_points=len(points),
        n_outside=len(problems),
        files=per_file,
        problems=listed,
        message=message,
    )


# ---------------------------------------------------------------- metadata


@dataclass(frozen=True)
class MetadataCompleteness:
    """Result of :func:`metadata_complete`.

    Attributes
    ----------
    passed
        Nothing is missing.
    missing
        Missing or empty keys, in the order checked; ``"stain or labels"`` when both are.
    checked
        Every key (or key group) looked at.
    brightfield
        The contrast is brightfield, so stain / labels were not required.
    message
        One sentence.
    """

    passed: bool
    missing: tuple[str, ...]
    checked: tuple[str, ...]
    brightfield: bool
    message: str


def _empty(value: Any) -> bool:
    """None, blank text and containers holding only empty values are empty; ``False`` and
    ``0`` are values."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return all(_empty(v) for v in value)
    return False


def _is_brightfield(contrast: Any) -> bool:
    values = contrast if isinstance(contrast, list | tuple | set | frozenset) else [contrast]
    return any(isinstance(v, str) and v.strip().lower() in BRIGHTFIELD_NAMES for v in values)


def metadata_complete(metadata: Mapping[str, Any]) -> MetadataCompleteness:
    """Check that ``db.yaml`` holds what training-set queries select on.

    Required and non-empty: :data:`REQUIRED_KEYS` (``cell_line``, ``microscope``,
    ``contrast``); ``stain`` or ``labels`` (at least one; not required when the contrast is
    brightfield); and the platform's defaults :data:`DEFAULT_KEYS` (``typically_use``,
    ``augmented``, ``scale_csv``, ``type``). ``False`` and ``0`` count as values; ``None``,
    blank text and empty lists do not.

    Parameters
    ----------
    metadata
        The contents of ``db.yaml``.

    Returns
    -------
    MetadataCompleteness
    """
    missing: list[str] = [key for key in REQUIRED_KEYS if _empty(metadata.get(key))]
    brightfield = _is_brightfield(metadata.get("contrast"))
    if not brightfield and all(_empty(metadata.get(key)) for key in STAIN_KEYS):
        missing.append(STAIN_OR_LABELS)
    missing.extend(key for key in DEFAULT_KEYS if _empty(metadata.get(key)))
    checked = (*REQUIRED_KEYS, STAIN_OR_LABELS, *DEFAULT_KEYS)
    if missing:
        message = (
            f"db.yaml lacks {', '.join(missing)}: name the folders with the keys.yaml "
            "vocabulary or add them to a db_manual.yaml"
        )
    else:
        message = (
            "db.yaml has cell line, microscope, contrast, "
            + ("brightfield (no stain needed)" if brightfield else "stain/labels")
            + " and the defaults"
        )
    return MetadataCompleteness(
        passed=not missing,
        missing=tuple(missing),
        checked=checked,
        brightfield=brightfield,
        message=message,
    )


# ---------------------------------------------------------------- ground-truth peaks


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
    event detection finds them (:func:`deep_events_dagster.core.events.find_frame_maxima`:
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
        MissingPeak(_name(p.file), p.row, p.frame, round(p.y, 2), round(p.x, 2))
        for p in missing[:MAX_LISTED]
    )
    if missing:
        first = listed[0]
        message = (
            f"{len(missing)} of {_plural(n_points, 'annotated point')} have no ground-truth "
            f"maximum ≥ {threshold} within {merge_distance_px:g} px (first: {first.file} row "
            f"{first.row}, frame {first.frame}, y={first.y}, x={first.x}); event detection "
            "will miss them — is σ too small for sub-pixel points?"
        )
    elif n_points:
        message = (
            f"every one of {_plural(n_points, 'annotated point')} has a ground-truth maximum "
            f"≥ {threshold} within {merge_distance_px:g} px "
            f"({_plural(n_peaks, 'maximum', 'maxima')} in {_plural(len(by_frame), 'frame')})"
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


# ---------------------------------------------------------------- event folders


@dataclass(frozen=True)
class Manifest:
    """An ``events_<kind>.yaml``: where the event folders are and which ones."""

    path: Path
    event_root: Path
    entries: tuple[Mapping[str, Any], ...]

    @property
    def ids(self) -> tuple[str, ...]:
        """Event ids, in manifest order."""
        return tuple(str(e["_id"]) for e in self.entries)


def load_manifest(path: str | Path) -> Manifest:
    """Read an events manifest written by ``extract_events``.

    Raises
    ------
    FileNotFoundError
        No manifest (event crops were never materialised).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no events manifest; materialise event_crops")
    from deep_events_dagster.core.ingest import load_events_manifest_data

    data = load_events_manifest_data(path)
    event_root = Path(data.get("event_data") or path.parent)
    return Manifest(path=path, event_root=event_root, entries=tuple(data.get("events") or ()))


@dataclass(frozen=True)
class CropsValidity:
    """Result of :func:`crops_valid`.

    Attributes
    ----------
    passed
        Every listed folder exists and holds valid crops.
    n_events, n_positive, n_negative
        Folders listed in the manifest (events and automatic negatives).
    n_bad
        Folders with at least one problem.
    problems
        ``"<folder>: <problem>"``, at most :data:`MAX_LISTED`.
    message
        One sentence.
    """

    passed: bool
    n_events: int
    n_positive: int
    n_negative: int
    n_bad: int
    problems: tuple[str, ...]
    message: str


def _same_dtype(a: np.dtype, b: np.dtype) -> bool:
    return np.dtype(a).newbyteorder("=") == np.dtype(b).newbyteorder("=")


def _read_tiff(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].asarray()


def _image_stack_problems(
    path: Path, expected_shape: tuple[int, ...], dtype: np.dtype, frames: tuple[int, int]
) -> list[str]:
    """Shape and dtype from the file's header; constancy from the first plane (the whole
    stack is read only when that plane is constant)."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, stored = tuple(int(n) for n in series.shape), np.dtype(series.dtype)
        problems = []
        if shape != expected_shape:
            problems.append(
                f"{IMAGES_NAME} has shape {shape}, expected {expected_shape} "
                f"(frames {frames[0]}–{frames[1]})"
            )
        if not _same_dtype(stored, dtype):
            problems.append(f"{IMAGES_NAME} is {stored}, the movie is {np.dtype(dtype)}")
        first = tif.pages[0].asarray() if len(tif.pages) else np.empty(0)
        if first.size and first.min() != first.max():
            return problems
        images = series.asarray()
    if images.size == 0 or images.min() == images.max():
        value = images.flat[0] if images.size else "nothing"
        problems.append(f"{IMAGES_NAME} is empty (every pixel is {value})")
    return problems


def _folder_problems(
    folder: Path,
    entry: Mapping[str, Any],
    *,
    crop_size: int,
    dtype: np.dtype,
    n_channels: int,
    threshold: float,
) -> list[str]:
    if not folder.is_dir():
        return ["folder missing"]
    start, stop = (int(v) for v in entry.get("frames", (0, 0)))
    n_t = stop - start
    image_shape = (
        (n_t, crop_size, crop_size) if n_channels <= 1 else (n_t, n_channels, crop_size, crop_size)
    )
    gt_shape = (n_t, crop_size, crop_size)
    problems: list[str] = []
    try:
        problems += _image_stack_problems(folder / IMAGES_NAME, image_shape, dtype, (start, stop))
    except (OSError, ValueError, IndexError, tifffile.TiffFileError) as exc:
        problems.append(f"{IMAGES_NAME} unreadable ({type(exc).__name__}: {exc})")
    try:
        gt = _read_tiff(folder / GROUND_TRUTH_NAME)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        problems.append(f"{GROUND_TRUTH_NAME} unreadable ({type(exc).__name__}: {exc})")
        return problems
    if gt.shape != gt_shape:
        problems.append(f"{GROUND_TRUTH_NAME} has shape {tuple(gt.shape)}, expected {gt_shape}")
    peak = float(gt.max()) if gt.size else 0.0
    if entry.get("positive", True):
        if not peak >= threshold:
            problems.append(f"event crop whose ground truth peaks at {peak:.3g} < {threshold}")
    elif peak != 0.0:
        problems.append(f"negative crop with ground-truth signal (max {peak:.3g})")
    return problems


def crops_valid(
    manifest_path: str | Path,
    *,
    crop_size: int,
    dtype: Any,
    n_channels: int = 1,
    threshold: float = DEFAULT_THRESHOLD,
) -> CropsValidity:
    """Check the event folders an events manifest lists.

    For each folder: it exists; ``images.tif`` is ``(T, crop, crop)`` (``(T, C, crop, crop)``
    for multi-channel movies) with ``T = frames[1] − frames[0]``, in the movie's dtype, and not
    constant (an all-equal crop means nothing was read); ``ground_truth.tif`` is
    ``(T, crop, crop)``; events' ground truth reaches ``threshold``, negatives' is all 0.

    Parameters
    ----------
    manifest_path
        ``events_<kind>.yaml`` (a missing manifest fails the check).
    crop_size
        Crop side in pixels.
    dtype
        The movie's dtype (crops keep it bit-exactly).
    n_channels
        The movie's channels.
    threshold
        Detection threshold; an event's ground truth must reach it.

    Returns
    -------
    CropsValidity
    """
    try:
        manifest = load_manifest(manifest_path)
    except FileNotFoundError as exc:
        return CropsValidity(False, 0, 0, 0, 0, (str(exc),), str(exc))
    dtype = np.dtype(dtype)
    problems: list[str] = []
    n_bad = 0

    def check(entry: Mapping[str, Any]) -> list[str]:
        name = str(entry.get("folder", ""))
        if not name:
            return ["no folder named in the manifest"]
        # an entry cropped from another movie or one channel says so (kinds.py variants)
        return _folder_problems(
            manifest.event_root / name,
            entry,
            crop_size=crop_size,
            dtype=np.dtype(entry["dtype"]) if entry.get("dtype") else dtype,
            n_channels=int(entry.get("channels", n_channels)),
            threshold=threshold,
        )

    # reading files is mostly system calls and decompression: threads overlap them
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        results = list(pool.map(check, manifest.entries))
    for entry, found in zip(manifest.entries, results, strict=True):
        name = str(entry.get("folder", ""))
        if found:
            n_bad += 1
            problems.extend(f"{name or entry.get('_id')}: {p}" for p in found)
    n_events = len(manifest.entries)
    n_positive = sum(bool(e.get("positive", True)) for e in manifest.entries)
    if n_bad:
        message = f"{n_bad} of {_plural(n_events, 'event folder')} invalid (first: {problems[0]})"
    else:
        message = (
            f"{_plural(n_events, 'event folder')} valid ({n_positive} events, "
            f"{n_events - n_positive} negatives; {crop_size}×{crop_size} px, {dtype})"
        )
    return CropsValidity(
        passed=n_bad == 0,
        n_events=n_events,
        n_positive=n_positive,
        n_negative=n_events - n_positive,
        n_bad=n_bad,
        problems=tuple(problems[:MAX_LISTED]),
        message=message,
    )


# ---------------------------------------------------------------- catalog


@dataclass(frozen=True)
class CatalogAgreement:
    """Result of :func:`catalog_matches_folders`.

    Attributes
    ----------
    passed
        The partition's automatic documents are exactly the manifest's events and every
        ``event_path`` exists.
    n_manifest, n_documents
        Events in the manifest; automatic documents of the partition in the catalog.
    n_manual
        Manual documents of the partition (not compared).
    missing_ids
        Manifest ids without an automatic document.
    unexpected_ids
        Automatic documents the manifest does not list.
    missing_paths
        Ids of documents whose ``event_path`` folder does not exist.
    message
        One sentence.
    """

    passed: bool
    n_manifest: int
    n_documents: int
    n_manual: int
    missing_ids: tuple[str, ...]
    unexpected_ids: tuple[str, ...]
    missing_paths: tuple[str, ...]
    message: str


def catalog_matches_folders(
    documents: Iterable[Mapping[str, Any]], manifest: Manifest | str | Path
) -> CatalogAgreement:
    """Compare an acquisition's catalog documents with its events manifest.

    Parameters
    ----------
    documents
        The catalog documents of this acquisition and kind (``acquisition_key`` equal to the
        partition key); those with ``extraction_type: manual`` are left out of the comparison.
    manifest
        The ``events_<kind>.yaml`` (or its :class:`Manifest`).

    Returns
    -------
    CatalogAgreement
    """
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    documents = list(documents)
    automatic = [d for d in documents if d.get("extraction_type") != "manual"]
    expected = list(dict.fromkeys(manifest.ids))
    present = [str(d.get("_id")) for d in automatic]
    present_set, expected_set = set(present), set(expected)
    missing_ids = tuple(i for i in expected if i not in present_set)
    unexpected_ids = tuple(i for i in present if i not in expected_set)
    missing_paths = tuple(
        str(d.get("_id"))
        for d in automatic
        if not d.get("event_path") or not Path(str(d["event_path"])).is_dir()
    )
    passed = not (missing_ids or unexpected_ids or missing_paths)
    if passed:
        message = (
            f"catalog holds exactly the {_plural(len(expected), 'event folder')} of the "
            f"manifest, every event_path exists"
        )
    else:
        parts = []
        if missing_ids:
            parts.append(f"{len(missing_ids)} manifest event(s) missing from the catalog")
        if unexpected_ids:
            parts.append(f"{len(unexpected_ids)} catalog document(s) not in the manifest")
        if missing_paths:
            parts.append(f"{len(missing_paths)} document(s) whose event_path does not exist")
        message = "; ".join(parts)
    return CatalogAgreement(
        passed=passed,
        n_manifest=len(expected),
        n_documents=len(automatic),
        n_manual=len(documents) - len(automatic),
        missing_ids=missing_ids[:MAX_LISTED],
        unexpected_ids=unexpected_ids[:MAX_LISTED],
        missing_paths=missing_paths[:MAX_LISTED],
        message=message,
    )


# ---------------------------------------------------------------- balance


@dataclass(frozen=True)
class EventBalance:
    """Result of :func:`positive_negative_ratio`.

    Attributes
    ----------
    passed
        False only when points were annotated but no event crop was made.
    n_positive, n_negative
        Event crops and automatic negative crops.
    n_annotated_points
        Points in the acquisition's annotation CSVs of this kind.
    negatives_per_event
        ``n_negative / n_positive``; ``None`` without events.
    message
        One sentence.
    """

    passed: bool
    n_positive: int
    n_negative: int
    n_annotated_points: int
    negatives_per_event: float | None
    message: str


def positive_negative_ratio(
    n_positive: int, n_negative: int, *, n_annotated_points: int
) -> EventBalance:
    """Report the balance of event and negative crops.

    The check is informative: it fails only when the acquisition has annotated points but
    no event was detected (the ground truth or the detection parameters lost them).

    Returns
    -------
    EventBalance
    """
    ratio = n_negative / n_positive if n_positive else None
    passed = not (n_positive == 0 and n_annotated_points > 0)
    if n_positive:
        message = (
            f"{_plural(n_positive, 'event')}, {_plural(n_negative, 'negative')} "
            f"({ratio:.2f} negatives per event)"
        )
    elif n_annotated_points:
        message = (
            f"{_plural(n_annotated_points, 'annotated point')} but no event detected "
            f"({_plural(n_negative, 'negative')})"
        )
    else:
        message = "no annotations of this kind, so no events (nothing to check)"
    return EventBalance(
        passed=passed,
        n_positive=int(n_positive),
        n_negative=int(n_negative),
        n_annotated_points=int(n_annotated_points),
        negatives_per_event=None if ratio is None or not math.isfinite(ratio) else ratio,
        message=message,
    )
