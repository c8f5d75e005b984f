"""Where and when the events of a synthetic movie happen, before anything is rendered.

An :class:`EventPlan` is one event: kind, first frame, length, anchor position, channel,
per-frame jitter and brightness. :func:`plan_events` places the events of
:func:`~deep_events_dagster.testing.movies.synthesize_movie` (optionally two simultaneous
events 150 px apart and one at the image edge) away from the border and from each other,
following the drift of the tubule layer they sit on; :func:`plan_events_fixed` places one
event of a given length (the benchmark movies of
:mod:`deep_events_dagster.testing.benchmark_movies`). Both draw from the generator they are
given, in a fixed order: the same generator state gives the same plans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deep_events_dagster.core.errors import ConfigurationError

__all__ = ["EventPlan", "as_range", "plan_events", "plan_events_fixed"]


@dataclass(frozen=True)
class EventPlan:
    """One planned event: kind, first frame, length in frames, ``(y, x)`` anchor at its first
    frame (px), channel (``None`` in ``TYX`` movies), ``(dy, dx)`` jitter per frame and relative
    amplitude."""

    kind: str
    start: int
    length: int
    anchor: tuple[float, float]
    channel: int | None
    jitter: tuple[tuple[float, float], ...]
    amplitude: float


def as_range(value: int | Sequence[int]) -> tuple[int, int]:
    """``n`` as ``(n, n)``; an inclusive ``(min, max)`` pair as integers."""
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    lo, hi = value
    return int(lo), int(hi)


def plan_events(
    rng: np.random.Generator,
    *,
    drift0: np.ndarray,
    n_frames: int,
    height: int,
    width: int,
    n_channels: int,
    counts: Sequence[tuple[str, int]],
    event_frames: tuple[int, int],
    two_close_events: bool,
    edge_event: bool,
    margin: int,
    min_separation: float,
    close_distance: float = 150.0,
) -> list[EventPlan]:
    """Plan the events of one movie (the close pair first, then the edge event, then the rest).

    Parameters
    ----------
    rng
        Source of every draw, in a fixed order.
    drift0
        ``(T, 2)`` drift of the layer the events sit on; tracks follow it from their first frame.
    n_frames, height, width, n_channels
        Movie size.
    counts
        ``(kind, number of events)`` pairs, planned in that order.
    event_frames
        Inclusive ``(min, max)`` event length in frames.
    two_close_events, edge_event, margin, min_separation
        As in :func:`~deep_events_dagster.testing.movies.synthesize_movie`.
    close_distance
        Distance of the close pair, px.

    Returns
    -------
    list of EventPlan

    Raises
    ------
    ConfigurationError
        When the events do not fit (too few frames, frames too small, too many events).
    """
    lo, hi = event_frames
    if lo < 1 or hi < lo:
        raise ConfigurationError(f"event_frames must be 1 <= min <= max, got {event_frames}")
    if n_frames < hi + 2:
        raise ConfigurationError(f"{n_frames} frames are too few for events of {hi} frames")
    kinds = [k for k, n in counts for _ in range(n)]
    plans: list[EventPlan] = []

    def jitter(length: int) -> tuple[tuple[float, float], ...]:
        return tuple((float(a), float(b)) for a, b in rng.uniform(-0.25, 0.25, size=(length, 2)))

    def channel() -> int | None:
        return None if n_channels == 1 else int(rng.integers(0, n_channels))

    def track_ok(anchor, start, length, lo_m: float, hi_m: float | None = None) -> bool:
        hi_m = lo_m if hi_m is None else hi_m
        d = drift0[start : start + length] - drift0[start]
        ys = anchor[0] + d[:, 0]
        xs = anchor[1] + d[:, 1]
        return bool(
            ys.min() >= lo_m
            and xs.min() >= lo_m
            and ys.max() <= height - 1 - hi_m
            and xs.max() <= width - 1 - hi_m
        )

    def separated(anchor, start, length, ignore=()) -> bool:
        for i, p in enumerate(plans):
            if i in ignore:
                continue
            overlap = start < p.start + p.length + 5 and p.start < start + length + 5
            if overlap and math.dist(anchor, p.anchor) < min_separation:
                return False
        return True

    def amplitude() -> float:
        return float(rng.uniform(0.9, 1.4))

    queue = list(kinds)
    if two_close_events:
        if len(queue) < 2:
            raise ConfigurationError("two_close_events needs at least two events")
        horizontal = width - 2 * margin - 4 > close_distance
        vertical = height - 2 * margin - 4 > close_distance
        if not (horizontal or vertical):
            raise ConfigurationError(
                f"two_close_events needs a side of at least {close_distance + 2 * margin + 5:.0f}"
                f" px, the frame is {height}×{width}"
            )
        for _ in range(1000):
            length = int(rng.integers(lo, hi + 1))
            start = int(rng.integers(1, n_frames - length))
            along_x = horizontal and (not vertical or rng.random() < 0.7)
            off = (0.0, close_distance) if along_x else (close_distance, 0.0)
            a = (
                float(rng.uniform(margin, height - 1 - margin - off[0])),
                float(rng.uniform(margin, width - 1 - margin - off[1])),
            )
            b = (a[0] + off[0], a[1] + off[1])
            if track_ok(a, start, length, margin) and track_ok(b, start, length, margin):
                break
        else:  # pragma: no cover - drift is far smaller than the margin
            raise ConfigurationError("could not place the two close events")
        amp = amplitude()
        for anchor, kind in ((a, queue.pop(0)), (b, queue.pop(0))):
            plans.append(EventPlan(kind, start, length, anchor, channel(), jitter(length), amp))

    if edge_event and queue:
        kind = queue.pop(0)
        for _ in range(2000):
            length = int(rng.integers(lo, hi + 1))
            start = int(rng.integers(1, n_frames - length))
            side = int(rng.integers(0, 4))
            if side in (0, 1):  # top / bottom
                y = 6.0 if side == 0 else height - 7.0
                anchor = (y, float(rng.uniform(margin, width - 1 - margin)))
            else:  # left / right
                x = 6.0 if side == 2 else width - 7.0
                anchor = (float(rng.uniform(margin, height - 1 - margin)), x)
            if track_ok(anchor, start, length, 2.0) and separated(anchor, start, length):
                d = drift0[start : start + length] - drift0[start]
                near = np.minimum.reduce(
                    [
                        anchor[0] + d[:, 0],
                        anchor[1] + d[:, 1],
                        height - 1 - anchor[0] - d[:, 0],
                        width - 1 - anchor[1] - d[:, 1],
                    ]
                )
                if near.max() <= 9.0:
                    break
        else:
            raise ConfigurationError("could not place an edge event")
        plans.append(EventPlan(kind, start, length, anchor, channel(), jitter(length), amplitude()))

    for kind in queue:
        for _ in range(5000):
            length = int(rng.integers(lo, hi + 1))
            start = int(rng.integers(1, n_frames - length))
            anchor = (
                float(rng.uniform(margin, height - 1 - margin)),
                float(rng.uniform(margin, width - 1 - margin)),
            )
            if track_ok(anchor, start, length, margin) and separated(anchor, start, length):
                break
        else:
            raise ConfigurationError(
                f"could not place {len(kinds)} events {min_separation} px apart in a "
                f"{n_frames}×{height}×{width} movie (margin {margin} px); use fewer events, "
                "more frames, larger frames or a smaller min_separation"
            )
        plans.append(EventPlan(kind, start, length, anchor, channel(), jitter(length), amplitude()))
    return plans


def plan_events_fixed(
    rng: np.random.Generator,
    existing: Sequence[EventPlan],
    *,
    drift0: np.ndarray,
    n_frames: int,
    height: int,
    width: int,
    n_channels: int,
    length: int,
    min_separation: float,
    margin: int = 24,
) -> list[EventPlan]:
    """Plan one ``points`` event of ``length`` frames, ``margin`` px inside the frame and
    ``min_separation`` px from every time-overlapping plan of ``existing``.

    Returns
    -------
    list of EventPlan
        The one new plan (``existing`` is not changed).
    """
    if n_frames < length + 2:
        raise ConfigurationError(f"{n_frames} frames are too few for events of {length} frames")
    for _ in range(5000):
        start = int(rng.integers(1, n_frames - length))
        anchor = (
            float(rng.uniform(margin, height - 1 - margin)),
            float(rng.uniform(margin, width - 1 - margin)),
        )
        d = drift0[start : start + length] - drift0[start]
        ys, xs = anchor[0] + d[:, 0], anchor[1] + d[:, 1]
        inside = (
            ys.min() >= margin
            and xs.min() >= margin
            and ys.max() <= height - 1 - margin
            and xs.max() <= width - 1 - margin
        )
        if not inside:
            continue
        if all(
            not (start < p.start + p.length + 5 and p.start < start + length + 5)
            or math.dist(anchor, p.anchor) >= min_separation
            for p in existing
        ):
            break
    else:
        raise ConfigurationError(
            f"could not place {len(existing) + 1} events in a {n_frames}×{height}×{width} movie"
        )
    jitter = tuple((float(a), float(b)) for a, b in rng.uniform(-0.25, 0.25, size=(length, 2)))
    channel = None if n_channels == 1 else int(rng.integers(0, n_channels))
    return [EventPlan("points", start, length, anchor, channel, jitter, rng.uniform(0.9, 1.4))]
