"""Checks of the event folders an events manifest lists, of the catalog and of the balance.

:func:`load_manifest` reads an ``events_<kind>.yaml``; :func:`crops_valid` checks the folders it
lists (shapes, dtype, not constant, ground truth of events and negatives);
:func:`catalog_matches_folders` compares the catalog's documents with it;
:func:`positive_negative_ratio` reports the balance of event and negative crops.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from deep_events_dagster.core.checks_common import MAX_LISTED, plural
from deep_events_dagster.core.crops import GROUND_TRUTH_NAME, IMAGES_NAME
from deep_events_dagster.core.detections import DEFAULT_THRESHOLD

__all__ = [
    "CatalogAgreement",
    "CropsValidity",
    "EventBalance",
    "Manifest",
    "catalog_matches_folders",
    "crops_valid",
    "load_manifest",
    "positive_negative_ratio",
]


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
    from deep_events_dagster.core.events_manifest import load_events_manifest_data

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
        message = f"{n_bad} of {plural(n_events, 'event folder')} invalid (first: {problems[0]})"
    else:
        message = (
            f"{plural(n_events, 'event folder')} valid ({n_positive} events, "
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
            f"catalog holds exactly the {plural(len(expected), 'event folder')} of the "
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
            f"{plural(n_positive, 'event')}, {plural(n_negative, 'negative')} "
            f"({ratio:.2f} negatives per event)"
        )
    elif n_annotated_points:
        message = (
            f"{plural(n_annotated_points, 'annotated point')} but no event detected "
            f"({plural(n_negative, 'negative')})"
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
