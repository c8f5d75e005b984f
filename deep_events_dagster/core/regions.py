"""Pixel regions: :class:`Window` (rows first), :class:`Box` (columns first), crop placement.

Two half-open rectangles in pixels, kept apart on purpose:

* :class:`Window` ``(y0, y1, x0, x1)`` — the ground-truth *support* (the sidecar's windows that
  hold every non-zero pixel of a frame) and the regions event detection examines;
  :func:`merge_windows` turns overlapping windows into disjoint bounding boxes.
* :class:`Box` ``(x0, y0, x1, y1)`` — event and negative crops (``crop_box`` of event documents
  and manifests). :func:`crop_box` places a ``crop_size`` square centred on a point and shifted
  inside the image; :func:`check_crop_fits` rejects a movie smaller than the crop.

``DEFAULT_CROP_SIZE = 256`` (pixels), as in the original.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from deep_events_dagster.core.errors import ConfigurationError

__all__ = [
    "DEFAULT_CROP_SIZE",
    "Box",
    "Window",
    "check_crop_fits",
    "crop_box",
    "merge_windows",
]

DEFAULT_CROP_SIZE = 256


class Window(NamedTuple):
    """A region ``(y0, y1, x0, x1)`` — rows first, then columns — half-open, in pixels.

    The ground-truth support and the detection regions use it. Not to be confused with
    :class:`Box`, ``(x0, y0, x1, y1)``, of crops. A plain tuple (it unpacks and compares as
    one); write it to files as ``list(window)``.
    """

    y0: int
    y1: int
    x0: int
    x1: int


class Box(NamedTuple):
    """A crop box ``(x0, y0, x1, y1)`` — columns first — half-open, in pixels.

    Event and negative crops use it (``crop_box`` of event documents and manifests). Not to be
    confused with :class:`Window`, ``(y0, y1, x0, x1)``, of the ground-truth support. A plain
    tuple (it unpacks and compares as one); write it to files as ``list(box)``.
    """

    x0: int
    y0: int
    x1: int
    y1: int


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
