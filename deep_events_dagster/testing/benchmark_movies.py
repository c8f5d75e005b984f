"""Big synthetic OME-TIFFs for benchmarks, written frame by frame (never held in memory).

:func:`write_large_movie` renders the image model of
:mod:`deep_events_dagster.testing.movies` with an exact number of annotated points (events
placed one by one), writes the OME-TIFF (BigTIFF above 4 GB) and optionally its napari points
CSV, and returns a :class:`SyntheticMovieFile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.testing.annotations import event_csv_rows, write_napari_points_csv
from deep_events_dagster.testing.event_plans import EventPlan, as_range, plan_events_fixed
from deep_events_dagster.testing.movies import (
    CAMERA_OFFSET,
    STREAM_DRIFT,
    STREAM_EVENTS,
    SyntheticEvent,
    SyntheticMovie,
    channel_names_of,
    ou_drift,
    stream_rng,
)
from deep_events_dagster.testing.ome_tiff import write_ome_movie

__all__ = ["SyntheticMovieFile", "write_large_movie"]


@dataclass(frozen=True, eq=False)
class SyntheticMovieFile:
    """A movie written by :func:`write_large_movie` and its annotated points.

    Attributes
    ----------
    path
        The OME-TIFF.
    axes, shape, dtype
        As in :class:`~deep_events_dagster.testing.trees.SyntheticAcquisition`.
    physical_size_x, physical_size_y, time_increment_s
        Pixel size (µm) and frame interval (s).
    events
        The events.
    points
        ``(N, 3)`` float array of the annotated points ``(frame, y, x)`` in pixels.
    csv_path
        The napari CSV when one was asked for.
    """

    path: Path
    axes: str
    shape: tuple[int, ...]
    dtype: str
    physical_size_x: float
    physical_size_y: float
    time_increment_s: float
    events: tuple[SyntheticEvent, ...]
    points: np.ndarray = field(repr=False)
    csv_path: Path | None = None


def write_large_movie(
    path: str | Path,
    *,
    n_frames: int,
    height: int,
    width: int,
    n_points: int,
    seed: int = 0,
    n_channels: int = 1,
    physical_size_x: float = 0.056,
    time_increment_s: float = 5.0,
    event_frames: int | Sequence[int] = (3, 6),
    noise: str = "gaussian",
    csv_path: str | Path | None = None,
    scale_csv: bool = True,
    min_separation: float = 96.0,
) -> SyntheticMovieFile:
    """Write a big synthetic OME-TIFF frame by frame (never holding the movie in memory).

    Parameters
    ----------
    path
        Target ``*.ome.tif`` (BigTIFF automatically above 4 GB).
    n_frames, height, width, n_channels
        Movie size, e.g. 100 (or 1000) × 2048 × 2048.
    n_points
        Total number of annotated points (one per event frame); events of ``event_frames``
        frames are added until the count is reached exactly.
    seed
        Everything derives from it.
    physical_size_x, time_increment_s
        Pixel size (µm, also used for y) and frame interval (s).
    event_frames
        Event duration range (inclusive).
    noise
        ``"gaussian"`` (default, fast) or ``"poisson"``.
    csv_path
        When given, also write the napari CSV there (µm when ``scale_csv``).
    scale_csv
        Units of that CSV.
    min_separation
        Minimum distance of time-overlapping events, px.

    Returns
    -------
    SyntheticMovieFile
        With ``points`` the ``(n_points, 3)`` annotated ``(frame, y, x)`` in pixels.
    """
    lo, hi = as_range(event_frames)
    if n_points < 1:
        raise ConfigurationError("n_points must be at least 1")
    # choose event lengths summing to n_points (the last may be shorter than lo)
    rng = stream_rng(seed, STREAM_EVENTS, 1)
    lengths: list[int] = []
    while sum(lengths) < n_points:
        lengths.append(min(int(rng.integers(lo, hi + 1)), n_points - sum(lengths)))
    drift = ou_drift(stream_rng(seed, STREAM_DRIFT), n_frames, 3)
    plans: list[EventPlan] = []
    ev_rng = stream_rng(seed, STREAM_EVENTS)
    for length in lengths:
        plans.extend(
            plan_events_fixed(
                ev_rng,
                plans,
                drift0=drift[0],
                n_frames=n_frames,
                height=height,
                width=width,
                n_channels=n_channels,
                length=length,
                min_separation=min_separation,
            )
        )
    model = SyntheticMovie(
        n_frames=n_frames,
        height=height,
        width=width,
        n_channels=n_channels,
        seed=seed,
        drift=drift,
        plans=plans,
        one_point_per_event=False,
        noise=noise,
        tube_density=1.0,
        tube_sigma=2.0,
        spot_sigma=2.0,
        offset=CAMERA_OFFSET,
    )
    path = write_ome_movie(
        path,
        model.frame,
        axes=model.axes,
        shape=model.shape,
        dtype="uint16",
        physical_size_x=physical_size_x,
        physical_size_y=physical_size_x,
        time_increment_s=time_increment_s,
        channel_names=channel_names_of(n_channels),
    )
    points = np.array([p for ev in model.events for p in ev.points], dtype=np.float64)
    written_csv = None
    if csv_path is not None:
        written_csv = write_napari_points_csv(
            csv_path,
            event_csv_rows(
                model.events,
                four_axis=n_channels > 1,
                um_per_px=physical_size_x if scale_csv else None,
            ),
        )
    return SyntheticMovieFile(
        path=Path(path),
        axes=model.axes,
        shape=model.shape,
        dtype="uint16",
        physical_size_x=physical_size_x,
        physical_size_y=physical_size_x,
        time_increment_s=time_increment_s,
        events=model.events,
        points=points,
        csv_path=written_csv,
    )
