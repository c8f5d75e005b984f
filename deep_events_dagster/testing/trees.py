"""Trees of synthetic acquisition folders, as the real data look, and their truth.

:func:`generate_tree` writes ``db_manual.yaml`` at the tree root and in some folders,
folder names carrying the tokens of ``core/keys.yaml`` (sometimes through aliases, optionally
with awkward characters), and in every acquisition folder one movie of the image model
(:mod:`deep_events_dagster.testing.movies`) as an OME-TIFF or OME-Zarr
(:mod:`deep_events_dagster.testing.ome_tiff`, :mod:`deep_events_dagster.testing.ome_zarr`)
and napari points CSVs in µm or pixels
(:mod:`deep_events_dagster.testing.annotations`). The truth (event tracks in pixels, and the
metadata a correct ``db.yaml`` must hold) comes back as frozen dataclasses
(:class:`SyntheticTree`, :class:`SyntheticAcquisition`). :func:`synth_main` makes the demo
tree of ``deep-events synth``.

Everything is a pure function of a seed: the same seed gives byte-identical movies, CSVs and
YAML files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.testing.annotations import event_csv_rows, write_napari_points_csv
from deep_events_dagster.testing.movies import (
    CAMERA_OFFSET,
    SyntheticEvent,
    channel_names_of,
    stream_rng,
    synthesize_movie,
)
from deep_events_dagster.testing.ome_tiff import write_ome_movie
from deep_events_dagster.testing.ome_zarr import write_ome_zarr

__all__ = ["SyntheticAcquisition", "SyntheticTree", "generate_tree", "synth_main"]


@dataclass(frozen=True)
class SyntheticAcquisition:
    """One generated acquisition folder and its truth.

    Attributes
    ----------
    folder
        The acquisition folder.
    movie_path
        The movie in ``folder`` (an OME-TIFF, or an ``*.ome.zarr`` folder).
    axes
        ``"TYX"`` or ``"TCYX"``.
    shape
        Movie shape, ``(T, Y, X)`` or ``(T, C, Y, X)``.
    dtype
        Movie dtype name (``"uint16"``).
    physical_size_x, physical_size_y
        µm per pixel.
    time_increment_s
        Frame interval in seconds (``db.yaml``'s ``frame_interval_s``; its ``fps`` is the
        reciprocal, in frames per second).
    events
        Every event, all kinds together.
    csv_files
        Annotation CSVs per kind.
    scale_csv
        True when the CSV coordinates are in µm, False when in pixels (then the folder's
        ``db_manual.yaml`` says ``scale_csv: false``).
    expected_metadata
        What ``db.yaml`` must contain for this acquisition: ``date``, ``cell_line``,
        ``microscope``, ``contrast``, ``stain``, ``labels`` (lists of canonical names), the
        merged ``db_manual.yaml`` fields, ``scale_csv``, ``fps`` (frames per second,
        ``1 / time_increment_s``), ``frame_interval_s`` (seconds) and an ``ome`` sub-dict with
        ``size_x, size_y, size_t, size_c, physical_size_x, physical_size_y``.
    channel_names
        OME channel names.
    time_unit
        Unit of ``TimeIncrement``/``DeltaT`` in the OME-XML (``"s"`` or ``"ms"``).
    """

    folder: Path
    movie_path: Path
    axes: str
    shape: tuple[int, ...]
    dtype: str
    physical_size_x: float
    physical_size_y: float
    time_increment_s: float
    events: tuple[SyntheticEvent, ...]
    csv_files: dict[str, tuple[Path, ...]]
    scale_csv: bool
    expected_metadata: dict[str, Any]
    channel_names: tuple[str, ...] = ()
    time_unit: str = "s"

    def events_of(self, kind: str) -> tuple[SyntheticEvent, ...]:
        """Events of one annotation kind."""
        return tuple(e for e in self.events if e.kind == kind)


@dataclass(frozen=True)
class SyntheticTree:
    """A generated tree of acquisitions.

    Attributes
    ----------
    root
        The tree root (holds ``db_manual.yaml``).
    acquisitions
        The acquisitions, in generation order.
    seed
        The seed that generated the tree.
    """

    root: Path
    acquisitions: tuple[SyntheticAcquisition, ...]
    seed: int

    def by_folder(self, folder: str | Path) -> SyntheticAcquisition:
        """The acquisition whose folder is ``folder`` (``KeyError`` when none)."""
        target = Path(folder).resolve()
        for acq in self.acquisitions:
            if acq.folder.resolve() == target:
                return acq
        raise KeyError(str(folder))


# (canonical name, aliases that appear in folder names; all present in keys.yaml)
_CELL_LINES = [
    ("cos7", ["cos7", "COS7", "COS-7", "cos"]),
    ("hela", ["HeLa", "hela"]),
    ("u2os", ["U2OS"]),
]
_MICROSCOPES = [("isim", ["iSIM", "isim"]), ("zeiss", ["zeiss", "LSM980"]), ("widefield", ["wf"])]
_CONTRASTS = [("fluorescence", ["fl", "fluo", "Fluorescent", "fluorescence"])]
_STAINS_1 = [
    (["mitotracker"], ["mitotracker", "MTR", "MitoTracker"]),
    (["mtstaygold"], ["mtStayGold", "staygold"]),
    (["tmrm"], ["TMRM"]),
]
_STAINS_2 = [(["mitotracker", "drp1"], ["mtr_drp1", "MitoTracker_Drp1"])]
_DATES = ["250312", "240117", "230905", "221021", "250601", "241130"]
_PIXEL_SIZES = [0.056, 0.0645, 0.104, 0.08]
_TIME_INCREMENTS = [5.0, 1.0, 0.5, 2.0]

_AWKWARD_PARENTS = [
    "{date} {cell} {micro} {contrast} (Bob's copy)",
    "{date}_{cell}_{micro}_{contrast}_µ-é",
    "{date}_{cell}_{micro}_{contrast} [old]",
]
_AWKWARD_LEAVES = [
    "{stain} [{n}]",
    '{stain}_é "{n}"',
    "{stain} - 0.5µm 'run {n}'",
]


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(0, len(seq)))]


def _write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
    return atomic_write_text(path, text)


def generate_tree(
    root: str | Path,
    *,
    seed: int = 0,
    n_acquisitions: int = 3,
    height: int = 320,
    width: int = 400,
    n_frames: int = 24,
    events_per_acquisition: int | Sequence[int] = (2, 3),
    channels: int | Sequence[int] = (1, 2),
    non_square: bool = True,
    awkward_names: bool = False,
    kinds: Sequence[str] = ("points",),
    csv_units: str = "mixed",
    two_close_events: bool = False,
    edge_event: bool = False,
    one_point_per_event: bool = False,
    time_units: str = "mixed",
    split_csv: bool = True,
    stale_movie: bool = False,
    noise: str = "poisson",
    min_separation: float = 96.0,
    movie_format: str = "ome-tiff",
    zarr_version: str = "0.4",
) -> SyntheticTree:
    """Generate a tree of synthetic acquisitions with movies, CSVs and ``db_manual.yaml``.

    Layout: ``<root>/db_manual.yaml`` and ``<root>/<date>_<cell>_<microscope>_<contrast>/
    <stain>_<n>/`` (one movie ``*.ome.tif``, ``<kind>.csv``/``<kind>_2.csv``, sometimes a
    ``db_manual.yaml``). Acquisitions share parent folders two by two; the 4th sits one level
    deeper (``.../series_b/<leaf>``); with 3+ acquisitions the 3rd has no stain token in its
    name and gets its stain from its ``db_manual.yaml``; the 2nd parent folder has a
    ``db_manual.yaml`` overriding ``event_content`` (nearer wins).

    Parameters
    ----------
    root
        Tree root (created).
    seed
        Everything derives from it: same seed, byte-identical files.
    n_acquisitions
        Number of acquisitions.
    height, width, n_frames
        Movie size. With ``non_square`` False frames are ``height × height``.
    events_per_acquisition
        Events per kind per acquisition, or an inclusive ``(min, max)`` range.
    channels
        Channels per acquisition, cycled: ``(1, 2)`` alternates ``TYX`` and ``TCYX``.
    non_square
        Keep ``height != width``; False makes square frames.
    awkward_names
        Folder and file names with spaces, ``µ``, ``é``, brackets and quotes.
    kinds
        Annotation kinds (CSV prefixes), e.g. ``("points", "fission")``.
    csv_units
        ``"um"`` (``scale_csv: true``), ``"px"`` (``db_manual.yaml`` says ``scale_csv: false``)
        or ``"mixed"`` (alternating, starting with µm).
    two_close_events
        Acquisition 0 holds two simultaneous events 150 px apart (needs a side ≥ 204 px).
    edge_event
        The last acquisition holds an event within 10 px of the image edge.
    one_point_per_event
        Annotate one point per event instead of one per frame.
    time_units
        Unit of ``TimeIncrement``/``DeltaT`` in the OME-XML: ``"s"``, ``"ms"`` or ``"mixed"``
        (every 3rd acquisition in ms, as the original microscope files).
    split_csv
        Split a kind's points over ``<kind>.csv`` and ``<kind>_2.csv`` in every 2nd
        acquisition (when it has 2+ events of that kind).
    stale_movie
        Also put an older, smaller ``*.ome.tif`` in the first acquisition folder (the newest
        file is the movie).
    noise
        ``"poisson"`` or ``"gaussian"``.
    min_separation
        Minimum distance (px) between events within 5 frames of each other (the close pair
        excepted); lower it for many events in small frames.
    movie_format
        ``"ome-tiff"`` (``*.ome.tif``) or ``"ome-zarr"``: the same pixels, pixel size, frame
        interval (its unit included) and channel names as an OME-Zarr image ``*.ome.zarr``
        (:func:`~deep_events_dagster.testing.ome_zarr.write_ome_zarr`); everything else is
        equal. A stale movie stays an OME-TIFF.
    zarr_version
        NGFF version of the OME-Zarr movies: ``"0.4"`` or ``"0.5"``.

    Returns
    -------
    SyntheticTree
    """
    if movie_format not in ("ome-tiff", "ome-zarr"):
        raise ConfigurationError(
            f"movie_format must be 'ome-tiff' or 'ome-zarr', not {movie_format!r}"
        )
    if csv_units not in ("um", "px", "mixed"):
        raise ConfigurationError(f"csv_units must be 'um', 'px' or 'mixed', not {csv_units!r}")
    if time_units not in ("s", "ms", "mixed"):
        raise ConfigurationError(f"time_units must be 's', 'ms' or 'mixed', not {time_units!r}")
    if not kinds:
        raise ConfigurationError("at least one annotation kind is needed")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not non_square:
        width = height
    channel_cycle = [channels] if isinstance(channels, int) else list(channels)
    rng = stream_rng(seed, 0)

    root_manual = {"event_content": "division", "labels": ["mitochondria"], "typically_use": True}
    _write_yaml(root / "db_manual.yaml", root_manual)

    parents: dict[int, tuple[Path, dict[str, Any], dict[str, Any]]] = {}
    acquisitions = []
    for i in range(n_acquisitions):
        n_channels = int(channel_cycle[i % len(channel_cycle)])
        if n_channels not in (1, 2):
            raise ConfigurationError(f"channels must be 1 or 2, not {n_channels}")
        # ---- folders and the metadata they imply
        p = i // 2
        if p not in parents:
            cell, cell_aliases = _CELL_LINES[p % len(_CELL_LINES)]
            micro, micro_aliases = _MICROSCOPES[p % len(_MICROSCOPES)]
            contrast, contrast_aliases = _CONTRASTS[0]
            tokens = {
                "date": _DATES[p % len(_DATES)],
                "cell": _pick(rng, cell_aliases),
                "micro": _pick(rng, micro_aliases),
                "contrast": _pick(rng, contrast_aliases),
            }
            template = (
                _AWKWARD_PARENTS[p % len(_AWKWARD_PARENTS)]
                if awkward_names
                else "{date}_{cell}_{micro}_{contrast}"
            )
            parent = root / template.format(**tokens)
            parent.mkdir(parents=True, exist_ok=True)
            parent_manual: dict[str, Any] = {}
            if p == 1:
                parent_manual = {"event_content": "fission"}
                _write_yaml(parent / "db_manual.yaml", parent_manual)
            inferred = {
                "date": tokens["date"],
                "cell_line": [cell],
                "microscope": [micro],
                "contrast": [contrast],
            }
            parents[p] = (parent, inferred, parent_manual)
        parent, inferred, parent_manual = parents[p]
        stains, stain_aliases = _pick(rng, _STAINS_1 if n_channels == 1 else _STAINS_2)
        stain_token = _pick(rng, stain_aliases)
        n = i + 1
        manual: dict[str, Any] = {}
        if i == 2 and n_channels == 1:
            # no stain token in the folder name: the stain comes from db_manual.yaml
            leaf_name = f"cell {n}" if awkward_names else f"cell_{n}"
            manual["stain"] = list(stains)
        elif awkward_names:
            leaf_name = _AWKWARD_LEAVES[i % len(_AWKWARD_LEAVES)].format(stain=stain_token, n=n)
        else:
            leaf_name = f"{stain_token}_{n}"
        folder = parent / "series_b" / leaf_name if i == 3 else parent / leaf_name
        folder.mkdir(parents=True, exist_ok=True)

        # ---- acquisition parameters
        psx = _PIXEL_SIZES[i % len(_PIXEL_SIZES)]
        dt_s = _TIME_INCREMENTS[i % len(_TIME_INCREMENTS)]
        if csv_units == "mixed":
            scale_csv = i % 2 == 0
        else:
            scale_csv = csv_units == "um"
        if not scale_csv:
            manual["scale_csv"] = False
        if i == 1:
            manual["labels"] = ["mitochondria", "er"]
        if time_units == "mixed":
            time_unit = "ms" if i % 3 == 2 else "s"
        else:
            time_unit = time_units
        if manual:
            _write_yaml(folder / "db_manual.yaml", manual)

        # ---- movie
        acq_seed = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, i]).generate_state(1)[0])
        model = synthesize_movie(
            n_frames=n_frames,
            height=height,
            width=width,
            n_channels=n_channels,
            seed=acq_seed,
            kinds=kinds,
            events_per_kind=events_per_acquisition,
            two_close_events=two_close_events and i == 0,
            edge_event=edge_event and i == n_acquisitions - 1,
            one_point_per_event=one_point_per_event,
            noise=noise,
            min_separation=min_separation,
        )
        # DeltaT: exact multiples of the interval, interior frames jittered by < 1 ms in
        # every 2nd acquisition (the mean frame interval stays exact)
        delta_t = [t * dt_s for t in range(n_frames)]
        if i % 2 == 1 and n_frames > 2:
            jit = stream_rng(acq_seed, 99).uniform(-5e-4, 5e-4, size=n_frames - 2)
            delta_t = [delta_t[0], *(d + j for d, j in zip(delta_t[1:-1], jit)), delta_t[-1]]
        date = inferred["date"]
        if awkward_names:
            movie_name = f"{date} {stain_token} é {n}.ome.tif"
        else:
            movie_name = f"{date}_{stain_token}_{n}.ome.tif"
        if stale_movie and i == 0:
            stale = folder / f"{date}_stale_{n}.ome.tif"
            small = np.full((2, 16, 16), CAMERA_OFFSET, dtype=np.uint16)
            write_ome_movie(
                stale,
                small,
                axes="TYX",
                physical_size_x=psx,
                physical_size_y=psx,
                time_increment_s=dt_s,
            )
            os.utime(stale, (1_600_000_000, 1_600_000_000))
        if movie_format == "ome-zarr":
            movie_path = write_ome_zarr(
                folder / (movie_name.removesuffix(".ome.tif") + ".ome.zarr"),
                model.frame,
                axes=model.axes,
                shape=model.shape,
                dtype="uint16",
                physical_size_um=psx,
                frame_interval_s=dt_s,
                channel_names=channel_names_of(n_channels),
                version=zarr_version,
                time_unit=time_unit,
            )
        else:
            movie_path = write_ome_movie(
                folder / movie_name,
                model.frame,
                axes=model.axes,
                shape=model.shape,
                dtype="uint16",
                physical_size_x=psx,
                physical_size_y=psx,
                time_increment_s=dt_s,
                channel_names=channel_names_of(n_channels),
                delta_t=delta_t,
                time_unit=time_unit,
            )

        # ---- CSVs
        csv_files: dict[str, tuple[Path, ...]] = {}
        for kind in kinds:
            evs = [e for e in model.events if e.kind == kind]
            groups = [evs]
            if split_csv and i % 2 == 1 and len(evs) >= 2:
                groups = [evs[: len(evs) // 2], evs[len(evs) // 2 :]]
            paths = []
            for g, group in enumerate(groups):
                name = f"{kind}.csv" if g == 0 else f"{kind}_{g + 1}.csv"
                rows = event_csv_rows(
                    group, four_axis=n_channels > 1, um_per_px=psx if scale_csv else None
                )
                paths.append(write_napari_points_csv(folder / name, rows))
            csv_files[kind] = tuple(paths)

        # ---- expected db.yaml content
        merged: dict[str, Any] = {}
        for layer in (root_manual, parent_manual, manual):
            merged.update(layer)
        expected = {
            "date": date,
            "cell_line": list(inferred["cell_line"]),
            "microscope": list(inferred["microscope"]),
            "contrast": list(inferred["contrast"]),
            "stain": list(stains),
            "labels": [],
        }
        expected.update(merged)
        expected["scale_csv"] = scale_csv
        expected["fps"] = 1.0 / dt_s  # frames per second
        expected["frame_interval_s"] = float(dt_s)
        shape = model.shape
        expected["ome"] = {
            "size_x": width,
            "size_y": height,
            "size_t": n_frames,
            "size_c": n_channels,
            "physical_size_x": psx,
            "physical_size_y": psx,
        }
        acquisitions.append(
            SyntheticAcquisition(
                folder=folder,
                movie_path=movie_path,
                axes=model.axes,
                shape=tuple(shape),
                dtype="uint16",
                physical_size_x=psx,
                physical_size_y=psx,
                time_increment_s=dt_s,
                events=model.events,
                csv_files=csv_files,
                scale_csv=scale_csv,
                expected_metadata=expected,
                channel_names=tuple(channel_names_of(n_channels)),
                time_unit=time_unit,
            )
        )
    return SyntheticTree(root=root, acquisitions=tuple(acquisitions), seed=int(seed))


def synth_main(out: str | Path, seed: int = 0) -> SyntheticTree:
    """Generate the demo tree (``deep-events synth OUT --seed N``).

    Four acquisitions of 40 frames of 512×640 px, alternating ``TYX``/``TCYX``, CSVs in µm and
    in pixels, two kinds (``points`` and ``fission``), one acquisition with two simultaneous
    events 150 px apart and one with an event at the image edge.

    Parameters
    ----------
    out
        Tree root.
    seed
        Seed.

    Returns
    -------
    SyntheticTree
    """
    return generate_tree(
        out,
        seed=seed,
        n_acquisitions=4,
        height=512,
        width=640,
        n_frames=40,
        events_per_acquisition=(2, 3),
        channels=(1, 2),
        kinds=("points", "fission"),
        csv_units="mixed",
        two_close_events=True,
        edge_event=True,
    )
