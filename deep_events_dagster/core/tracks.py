"""Detections linked over frames into tracks, and tracks into events.

* :func:`link_detections` — a detection joins the open track whose last position is nearest,
  within ``max_link_distance_px``, and whose last frame is at most ``max_gap_frames`` before it;
  otherwise it opens a new track. A track takes at most one detection per frame.
* :func:`events_from_tracks` — each track becomes an :class:`Event` with its frame range
  ``[first − add_pre_frames, last + add_post_frames + 1)`` clipped to the movie, its centre
  (rounded mean position) and a ``crop_size`` box centred on it and shifted inside the image
  (:func:`~deep_events_dagster.core.regions.crop_box`).

Ground-truth detection (:mod:`~deep_events_dagster.core.events`) and the comparison of
predictions with annotations (:mod:`~deep_events_dagster.ml.predict_compare`) share these rules.

Defaults and why:

* ``max_link_distance_px = 24`` (≈ 5σ) — an event site (e.g. a mitochondrial fission) moves a few
  pixels per frame; 24 px tolerates that and annotation jitter while keeping simultaneous
  events ≥ 25 px apart separate. (The original used the crop size, 256 px, which merged events
  128–256 px apart.) Two detections in the same frame never join one track.
* ``max_gap_frames = 2`` — a detection may join a track whose last detection is at most two
  frames earlier (frames 10 → 12 link, 10 → 13 do not), as in the original (``i − last < 3``).
* ``add_pre_frames = 0``, ``add_post_frames = 5`` — the crop runs from the first detection to
  five frames after the last one, as in the original; ``frames`` records exactly the cropped
  ``[start, stop)`` (the original recorded one frame early).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from deep_events_dagster.core.detections import Detection
from deep_events_dagster.core.regions import DEFAULT_CROP_SIZE, Box, crop_box

__all__ = [
    "DEFAULT_ADD_POST_FRAMES",
    "DEFAULT_ADD_PRE_FRAMES",
    "DEFAULT_MAX_GAP_FRAMES",
    "DEFAULT_MAX_LINK_DISTANCE_PX",
    "Event",
    "Track",
    "events_from_tracks",
    "link_detections",
]

DEFAULT_MAX_LINK_DISTANCE_PX = 24.0
DEFAULT_MAX_GAP_FRAMES = 2
DEFAULT_ADD_PRE_FRAMES = 0
DEFAULT_ADD_POST_FRAMES = 5


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


def link_detections(
    detections: Iterable[Detection],
    *,
    max_link_distance_px: float = DEFAULT_MAX_LINK_DISTANCE_PX,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
) -> list[Track]:
    """Link detections over frames into tracks.

    Frames are processed in increasing order. A detection in frame ``f`` may join a track whose
    last detection is in a frame ``f − max_gap_frames ≤ last < f`` and within
    ``max_link_distance_px`` (Euclidean) of its last position. Within a frame, pairs are assigned
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
    limit2 = float(max_link_distance_px) ** 2
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
    """Turn tracks into events, sorted by ``(start frame, x0, y0)`` (then stop, centre).

    Parameters
    ----------
    tracks
        From :func:`link_detections`.
    n_frames, height, width
        Movie size: frame ranges are clipped to ``[0, n_frames)`` and boxes shifted inside
        the image.
    add_pre_frames, add_post_frames
        Frames added before the first and after the last detection (≥ 0).
    crop_size
        Side of the square crop box
        (:func:`~deep_events_dagster.core.regions.crop_box`).

    Returns
    -------
    list[Event]
        One per track.

    Raises
    ------
    ConfigurationError
        When the movie is smaller than ``crop_size`` in either dimension.
    """
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
