"""Negative crops: signal-free boxes next to events, and hard negatives at bright places.

* :func:`negative_boxes` — up to four (``count``) boxes shifted by one crop size (up, right,
  down, left) from an event's box, kept only when inside the image and free of ground-truth
  signal over the event's frames; :func:`negative_boxes_in_file` does it for every event of a
  ground-truth TIFF, with :func:`signal_checker` reading only the support windows that matter.
* :func:`hard_negative_boxes` (optional, ``hard_negatives`` per acquisition; not in the
  original) — crops centred on the brightest places of the movie that hold no ground truth:
  tubule crossings, bends and blobs are what a detector mistakes for an event, and crops next
  to events rarely show them.

Defaults: ``count = 4`` (all four neighbours, the original's ``auto_negatives: true``) and no
hard negatives (``DEFAULT_HARD_NEGATIVES = 0``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from deep_events_dagster.core.ground_truth_reader import (
    GroundTruthReader,
    opened_reader,
    read_ground_truth_support,
)
from deep_events_dagster.core.regions import DEFAULT_CROP_SIZE, Box, Window, crop_box
from deep_events_dagster.core.tracks import Event

__all__ = [
    "DEFAULT_HARD_NEGATIVES",
    "DEFAULT_NEGATIVE_COUNT",
    "hard_negative_boxes",
    "negative_boxes",
    "negative_boxes_in_file",
    "signal_checker",
]

DEFAULT_NEGATIVE_COUNT = 4
DEFAULT_HARD_NEGATIVES = 0  # hard negatives per acquisition (not in the original)


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
    the box :func:`~deep_events_dagster.core.regions.crop_box` centred on it over the frames
    ``[t − length // 2, … + length)`` shifted inside ``[0, n_frames)``; it is kept when
    ``gt_has_signal(box, frames)`` is false and its centre is at least ``crop_size / 2`` from
    every kept one (so the crops show different places).

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
    from scipy import ndimage  # loaded when used: settings and the CLI import this module

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
    (through ``reader`` when given, see
    :func:`~deep_events_dagster.core.events.detect_events_in_file`); at most ``count``
    (0–4) per event.

    Returns one list of boxes per event, in the order of ``events``.
    """
    _check_negative_count(count)
    if count == 0:
        return [[] for _ in events]
    gt_path = Path(gt_path)
    support = read_ground_truth_support(gt_path) if use_support else None
    with opened_reader(gt_path, reader) as reader:
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
