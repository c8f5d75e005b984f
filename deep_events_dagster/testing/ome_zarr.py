"""OME-Zarr movie writer for synthetic data (tests, benchmarks, the demo).

Owns :func:`write_ome_zarr` (an OME-Zarr image, NGFF 0.4 on zarr v2 or NGFF 0.5 on zarr v3,
one full-resolution level with ``omero`` channels, from an array or frame by frame) and the
compressions it knows (:data:`ZARR_COMPRESSIONS`). ``zarr`` and ``numcodecs`` are imported
when a movie is written.

The OME-TIFF writer is :mod:`deep_events_dagster.testing.ome_tiff`. The platform only reads
movies (``core/zarr_movie.py``); nothing but tests, benchmarks and the demo writes them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.fsutil import atomic_directory
from deep_events_dagster.testing.ome_tiff import checked_movie_source

__all__ = [
    "ZARR_COMPRESSIONS",
    "write_ome_zarr",
]

ZARR_COMPRESSIONS = ("blosc-zstd", "blosc-lz4", "zstd", "gzip", None)
"""Compressions :func:`write_ome_zarr` knows; ``"blosc-zstd"`` (level 5, byte shuffle) is
ome-zarr-py's default, ``None`` stores raw chunks."""
_ZARR_TIME_UNITS = {"s": "second", "ms": "millisecond", "min": "minute"}
_ZARR_SPACE_UNITS = {"um": "micrometer", "µm": "micrometer", "nm": "nanometer"}
_ZARR_UNIT_FACTORS = {"second": 1.0, "millisecond": 1e3, "minute": 1 / 60}
_ZARR_SPACE_FACTORS = {"micrometer": 1.0, "nanometer": 1e3}
_CHANNEL_COLOURS = ("00FF00", "FF00FF", "00FFFF", "FFFF00")


def _zarr_compressors(compression: str | None, zarr_format: int) -> Any:
    if compression is None:
        return None
    if zarr_format == 2:
        import numcodecs

        codecs = {
            "blosc-zstd": lambda: numcodecs.Blosc("zstd", 5, numcodecs.Blosc.SHUFFLE),
            "blosc-lz4": lambda: numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
            "zstd": lambda: numcodecs.Zstd(level=1),
            "gzip": lambda: numcodecs.GZip(level=1),
        }
    else:
        from zarr import codecs as zc

        codecs = {
            "blosc-zstd": lambda: zc.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),
            "blosc-lz4": lambda: zc.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
            "zstd": lambda: zc.ZstdCodec(level=1),
            "gzip": lambda: zc.GzipCodec(level=1),
        }
    return (codecs[compression](),)


def write_ome_zarr(
    path: str | Path,
    movie: np.ndarray | Callable[[int], np.ndarray],
    *,
    axes: str = "TYX",
    physical_size_um: float,
    frame_interval_s: float,
    channel_names: Sequence[str] | None = None,
    version: str = "0.4",
    chunks: Sequence[int] | None = None,
    compression: str | None = "blosc-zstd",
    shape: Sequence[int] | None = None,
    dtype: str | np.dtype | None = None,
    time_unit: str = "s",
    space_unit: str = "um",
    image_name: str | None = None,
) -> Path:
    """Write a movie as an OME-Zarr image (one full-resolution level, ``omero`` channels).

    Parameters
    ----------
    path
        Target folder (``*.ome.zarr``); written into a temporary folder beside it and renamed
        into place (an existing one is replaced).
    movie
        The movie as an array of shape ``shape``, or a callable ``frame(t)`` returning frame
        ``t`` (``C×Y×X`` or ``Y×X``), called once per frame in order (needs ``shape``).
    axes
        ``"TYX"`` or ``"TCYX"`` (NGFF axes ``t, y, x`` / ``t, c, y, x``).
    physical_size_um
        Pixel size in µm (y and x).
    frame_interval_s
        Frame interval in seconds.
    channel_names
        One name per channel (``omero.channels[].label``; default ``Channel 0`` …).
    version
        ``"0.4"`` (zarr v2: ``.zattrs``, ``.zarray``, chunk keys ``t/y/x``) or ``"0.5"``
        (zarr v3: ``zarr.json`` with the metadata under ``attributes.ome``, keys ``c/t/y/x``).
    chunks
        Chunk shape in ``axes`` order (default one frame and channel of up to 512×512 px).
    compression
        One of :data:`ZARR_COMPRESSIONS`.
    shape, dtype
        As in :func:`~deep_events_dagster.testing.ome_tiff.write_ome_movie` (``shape`` is
        required with a callable).
    time_unit, space_unit
        Units written on the t axis (``"s"``, ``"ms"``, ``"min"``) and on y/x (``"um"``,
        ``"nm"``); the scale values are converted to them.
    image_name
        ``multiscales[0].name`` (default: the folder name).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Every chunk is written, also those holding only the fill value (zarr skips them by
    default), as the platform's completeness check expects of a finished movie.
    """
    import zarr

    path = Path(path)
    if axes not in ("TYX", "TCYX"):
        raise ConfigurationError(f"{path}: axes must be 'TYX' or 'TCYX', not {axes!r}")
    if version not in ("0.4", "0.5"):
        raise ConfigurationError(f"{path}: version must be '0.4' or '0.5', not {version!r}")
    if compression not in ZARR_COMPRESSIONS:
        raise ConfigurationError(f"{path}: compression must be one of {ZARR_COMPRESSIONS}")
    if time_unit not in _ZARR_TIME_UNITS or space_unit not in _ZARR_SPACE_UNITS:
        raise ConfigurationError(f"{path}: unknown unit {time_unit!r} or {space_unit!r}")
    movie, shape, out_dtype = checked_movie_source(path, movie, shape, dtype, axes)
    n_channels = shape[1] if axes == "TCYX" else 1
    if channel_names is None:
        channel_names = [f"Channel {c}" for c in range(n_channels)]
    if len(channel_names) != n_channels:
        raise ConfigurationError(f"{path}: {len(channel_names)} channel names for {n_channels}")
    if chunks is None:
        chunks = (1,) * (len(shape) - 2) + (min(512, shape[-2]), min(512, shape[-1]))
    chunks = tuple(int(c) for c in chunks)
    if len(chunks) != len(shape):
        raise ConfigurationError(f"{path}: chunks {chunks} do not match shape {shape}")
    zarr_format = 2 if version == "0.4" else 3

    t_unit, s_unit = _ZARR_TIME_UNITS[time_unit], _ZARR_SPACE_UNITS[space_unit]
    names = [a.lower() for a in axes]
    ngff_axes: list[dict[str, Any]] = []
    scale: list[float] = []
    for name in names:
        if name == "t":
            ngff_axes.append({"name": "t", "type": "time", "unit": t_unit})
            scale.append(float(frame_interval_s) * _ZARR_UNIT_FACTORS[t_unit])
        elif name == "c":
            ngff_axes.append({"name": "c", "type": "channel"})
            scale.append(1.0)
        else:
            ngff_axes.append({"name": name, "type": "space", "unit": s_unit})
            scale.append(float(physical_size_um) * _ZARR_SPACE_FACTORS[s_unit])
    multiscale: dict[str, Any] = {
        "name": image_name if image_name is not None else path.name,
        "axes": ngff_axes,
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        ],
    }
    if version == "0.4":
        multiscale = {"version": "0.4", **multiscale}
    top = np.iinfo(out_dtype).max if out_dtype.kind in "ui" else 1.0
    omero = {
        "channels": [
            {
                "label": str(name),
                "color": _CHANNEL_COLOURS[c % len(_CHANNEL_COLOURS)],
                "active": True,
                "window": {"start": 0, "end": int(top), "min": 0, "max": int(top)},
            }
            for c, name in enumerate(channel_names)
        ],
        "rdefs": {"model": "color" if n_channels > 1 else "greyscale"},
    }
    if version == "0.4":
        attributes: dict[str, Any] = {"multiscales": [multiscale], "omero": omero}
    else:
        attributes = {"ome": {"version": "0.5", "multiscales": [multiscale], "omero": omero}}

    with atomic_directory(path, durable=False) as tmp:
        os.chmod(tmp, 0o755)  # a temporary folder is private; the movie is not
        group = zarr.open_group(str(tmp), mode="w", zarr_format=zarr_format)
        array = group.create_array(
            "0",
            shape=shape,
            chunks=chunks,
            dtype=out_dtype,
            compressors=_zarr_compressors(compression, zarr_format),
            fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"} if zarr_format == 2 else None,
            dimension_names=names if zarr_format == 3 else None,
            config={"write_empty_chunks": True},
        )
        if callable(movie):
            frame_shape = shape[1:]
            step = chunks[0]
            for t0 in range(0, shape[0], step):
                t1 = min(shape[0], t0 + step)
                block = np.empty((t1 - t0, *frame_shape), dtype=out_dtype)
                for t in range(t0, t1):
                    frame = np.asarray(movie(t))
                    if frame.size != math.prod(frame_shape):
                        raise ConfigurationError(
                            f"{path}: frame {t} has shape {frame.shape}, expected {frame_shape}"
                        )
                    block[t - t0] = frame.reshape(frame_shape)
                array[t0:t1] = block
        else:
            array[...] = np.ascontiguousarray(movie, dtype=out_dtype)
        group.attrs.update(attributes)
    return path
