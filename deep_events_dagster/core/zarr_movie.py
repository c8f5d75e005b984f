"""OME-Zarr movies: NGFF 0.4 (zarr v2) and NGFF 0.5 (zarr v3) images in ``*.ome.zarr`` folders.

An acquisition's movie may be an OME-Zarr image instead of an OME-TIFF. The platform's entry
points dispatch on the path (a ``*.ome.zarr`` name), so everything downstream sees the same
:class:`~deep_events_dagster.core.ome.MovieInfo`, fingerprint and
:class:`~deep_events_dagster.core.movie_reader.MovieReader` windows.

This module owns the ``MovieInfo`` of an OME-Zarr movie: :func:`read_zarr_movie_info` (its
``ome`` mapping has the keys the OME-TIFF one has: ``size_x`` … ``physical_size_x``/``_unit``,
``time_increment``/``_unit`` converted from the axes' units, ``channel``; plus
``ngff_version`` and ``zarr_format``), which with ``verify_pages`` checks that every chunk of
the declared shape is present and that the first and last decode. The rest lives beside it, and
its public names are importable from here:

- :mod:`~deep_events_dagster.core.zarr_metadata`: :func:`read_ome_zarr` parses the metadata
  with the standard library only (JSON files: ``.zattrs``/``.zarray`` for 0.4, ``zarr.json``
  for 0.5; a ``bioformats2raw`` layout's first series is followed): axes
  ``t``/``c``/``z``/``y``/``x`` (``z`` of size 1 only), the full-resolution level
  (``multiscales[0].datasets[0]``), its ``scale`` transform and ``omero`` channels;
- :mod:`~deep_events_dagster.core.zarr_store`: :func:`missing_chunks`, the completeness rule of
  the acquisition sensor; :func:`tree_signature`, the cheap ``(total bytes, newest mtime)`` of
  the whole folder; :func:`fingerprint_zarr_movie`, the content fingerprint (sizes, mtimes,
  hashes of the stored chunks of the first and last frames);
- :mod:`~deep_events_dagster.core.zarr_reader`: :class:`ZarrMovieReader` reads windows through
  the ``zarr`` library (only the chunks a window touches, decoded chunks kept in a small LRU
  cache), bit-exact in the array's dtype.

``zarr`` itself is imported only when pixels are decoded (it takes about a second to import).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deep_events_dagster.core.errors import MovieError
from deep_events_dagster.core.ome import MovieInfo, frame_interval_seconds
from deep_events_dagster.core.zarr_metadata import OmeZarrImage, ZarrArrayInfo, read_ome_zarr
from deep_events_dagster.core.zarr_reader import CHUNK_CACHE_BYTES, ZarrMovieReader, open_zarr_array
from deep_events_dagster.core.zarr_store import (
    fingerprint_zarr_movie,
    missing_chunks,
    tree_signature,
)

__all__ = [
    "CHUNK_CACHE_BYTES",
    "OME_PIXEL_TYPES",
    "OmeZarrImage",
    "ZarrArrayInfo",
    "ZarrMovieReader",
    "fingerprint_zarr_movie",
    "missing_chunks",
    "read_ome_zarr",
    "read_zarr_movie_info",
    "tree_signature",
]

# numpy dtype name → OME ``Pixels/@Type`` (OME-XML and the NGFF ``omero`` block)
OME_PIXEL_TYPES = {
    "uint8": "uint8",
    "int8": "int8",
    "uint16": "uint16",
    "int16": "int16",
    "uint32": "uint32",
    "int32": "int32",
    "float32": "float",
    "float64": "double",
}
# NGFF units are UDUNITS-2 names; abbreviations are accepted too.
_SPACE_UNITS_IN_UM = {
    "angstrom": 1e-4,
    "\u00e5": 1e-4,
    "\u212b": 1e-4,
    "picometer": 1e-6,
    "pm": 1e-6,
    "nanometer": 1e-3,
    "nm": 1e-3,
    "micrometer": 1.0,
    "micron": 1.0,
    "\u00b5m": 1.0,  # micro sign
    "\u03bcm": 1.0,  # Greek mu
    "um": 1.0,
    "millimeter": 1e3,
    "mm": 1e3,
    "centimeter": 1e4,
    "cm": 1e4,
    "meter": 1e6,
    "m": 1e6,
}
_TIME_UNITS_IN_S = {
    "picosecond": 1e-12,
    "ps": 1e-12,
    "nanosecond": 1e-9,
    "ns": 1e-9,
    "microsecond": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "us": 1e-6,
    "millisecond": 1e-3,
    "ms": 1e-3,
    "second": 1.0,
    "sec": 1.0,
    "s": 1.0,
    "minute": 60.0,
    "min": 60.0,
    "hour": 3600.0,
    "h": 3600.0,
    "day": 86400.0,
    "d": 86400.0,
}


def _physical(value: float, unit: str | None, table: Mapping[str, float]) -> float | None:
    """``value`` in µm (space) or s (time); no unit means µm / s, an unknown one gives None."""
    if not math.isfinite(value) or value <= 0:
        return None
    factor = 1.0 if unit is None else table.get(unit.strip(), table.get(unit.strip().lower()))
    if factor is None:
        return None
    return value if factor == 1.0 else float(f"{value * factor:.12g}")


def _dimension_order(axes: Sequence[str]) -> str:
    """OME's DimensionOrder for the array's axes (fastest first, missing axes appended)."""
    order = [a.upper() for a in reversed(axes)]
    order += [a for a in "ZCT" if a not in order]
    return "".join(order)


def _ome_mapping(image: OmeZarrImage) -> dict[str, Any]:
    """The ``ome:`` mapping of ``db.yaml``, with the OME-TIFF one's keys where they exist."""
    dtype = image.array.dtype
    ome: dict[str, Any] = {
        "dimension_order": _dimension_order(image.axes),
        "type": OME_PIXEL_TYPES.get(dtype.newbyteorder("=").name, dtype.newbyteorder("=").name),
        "significant_bits": dtype.itemsize * 8,
        "big_endian": dtype.byteorder == ">" or (dtype.byteorder == "=" and not _little()),
        "interleaved": False,
        "size_x": image.width,
        "size_y": image.height,
        "size_z": 1,
        "size_c": image.n_channels,
        "size_t": image.n_frames,
    }
    if image.scale is not None:
        for axis in ("x", "y", "z"):
            if axis in image.axes:
                i = image.axes.index(axis)
                size = _physical(image.scale[i], image.units[i], _SPACE_UNITS_IN_UM)
                if size is not None:
                    ome[f"physical_size_{axis}"] = size
                    ome[f"physical_size_{axis}_unit"] = "\u00b5m"
        if "t" in image.axes:
            i = image.axes.index("t")
            interval = _physical(image.scale[i], image.units[i], _TIME_UNITS_IN_S)
            if interval is not None:
                ome["time_increment"] = interval
                ome["time_increment_unit"] = "s"
    channels = []
    for c in range(image.n_channels):
        entry: dict[str, Any] = {"id": f"Channel:0:{c}"}
        if c < len(image.channels) and image.channels[c].get("label") not in (None, ""):
            entry["name"] = str(image.channels[c]["label"])
        entry["samples_per_pixel"] = 1
        channels.append(entry)
    if image.channels:
        ome["channel"] = channels[0] if len(channels) == 1 else channels
    ome["ngff_version"] = image.ngff_version
    ome["zarr_format"] = image.array.zarr_format
    return ome


def _little() -> bool:
    return np.little_endian


def read_zarr_movie_info(path: str | Path, *, verify_pages: bool = True) -> MovieInfo:
    """:func:`~deep_events_dagster.core.ome.read_movie_info` for an OME-Zarr movie.

    Parameters
    ----------
    path
        The ``*.ome.zarr`` folder.
    verify_pages
        Also check that every chunk of the full-resolution array's declared shape is present
        and decode the first and the last one (the OME-TIFF check decodes its first and last
        pages): catches a movie still being written or copied.

    Raises
    ------
    MovieError
        Malformed metadata, a missing chunk, or a chunk that cannot be decoded.
    """
    image = read_ome_zarr(path)
    if verify_pages:
        missing, examples = missing_chunks(image.array)
        if missing:
            raise MovieError(image.array.path, _missing_message(image.array, missing, examples))
        _decode_first_and_last(image)
    n_frames, n_channels = image.n_frames, image.n_channels
    height, width = image.height, image.width
    ome = _ome_mapping(image)
    return MovieInfo(
        path=image.path,
        axes="TCYX" if n_channels > 1 else "TYX",
        shape=(n_frames, n_channels, height, width)
        if n_channels > 1
        else (n_frames, height, width),
        dtype=image.array.dtype.newbyteorder("=").name,
        n_frames=n_frames,
        n_channels=n_channels,
        height=height,
        width=width,
        physical_size_x=ome.get("physical_size_x"),
        physical_size_y=ome.get("physical_size_y"),
        frame_interval_s=frame_interval_seconds(ome),
        ome=ome,
    )


def _missing_message(array: ZarrArrayInfo, missing: int, examples: Sequence[str]) -> str:
    shown = ", ".join(examples)
    more = f" and {missing - len(examples)} more" if missing > len(examples) else ""
    return (
        f"incomplete: {missing} of the {array.n_chunks} chunks of shape {array.shape} "
        f"(chunks {array.chunks}) are missing ({shown}{more}); still being written or copied?"
    )


def _decode_first_and_last(image: OmeZarrImage) -> None:
    array = open_zarr_array(image.array)
    grid = image.array.grid
    for index in {(0,) * len(grid), tuple(g - 1 for g in grid)}:
        try:
            array.get_block_selection(index)
        except Exception as exc:
            key = image.array.chunk_key(index)
            raise MovieError(
                image.array.path / key, f"cannot decode chunk {key} ({type(exc).__name__}: {exc})"
            ) from exc
