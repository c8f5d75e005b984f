"""OME-TIFF movie writer for synthetic data (tests, benchmarks, the demo).

Owns the OME-TIFF files this project writes as a microscope would:

- :func:`build_ome_xml`: the hand-written OME-XML of an OME-TIFF (physical pixel sizes, time
  increment, channels, instrument/detector, one ``Plane`` with ``DeltaT`` per plane);
- :func:`write_ome_movie`: an OME-TIFF movie (``T×Y×X`` or ``T×C×Y×X``, one uncompressed page
  per plane), from an array or frame by frame for movies larger than memory.

The OME-Zarr writer is :mod:`deep_events_dagster.testing.ome_zarr`. The platform only reads
movies (``core/ome.py``, ``core/zarr_movie.py``); nothing but tests, benchmarks and the demo
writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import tifffile

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.fsutil import atomic_path
from deep_events_dagster.core.zarr_movie import OME_PIXEL_TYPES

__all__ = [
    "OME_NAMESPACE",
    "build_ome_xml",
    "write_ome_movie",
]

OME_NAMESPACE = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
CREATOR = "deep_events_dagster.testing.ome_writers"
"""``OME/@Creator`` of every OME-XML written here (the writers' former module name, kept so
that the files written stay byte-identical)."""
DEFAULT_INSTRUMENT: dict[str, Any] = {
    "detector": {"manufacturer": "PMPCIECam00", "model": "sCMOS", "offset": 100.0, "type": "CMOS"}
}


def _fmt(value: float) -> str:
    return repr(float(value))


def _camel(name: str) -> str:
    if any(c.isupper() for c in name):
        return name
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _attrs(values: Mapping[str, Any]) -> str:
    out = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = _fmt(value)
        else:
            text = str(value)
        out.append(f"{_camel(key)}={quoteattr(text)}")
    return " ".join(out)


def build_ome_xml(
    *,
    size_t: int,
    size_c: int,
    size_y: int,
    size_x: int,
    dtype: str | np.dtype = "uint16",
    physical_size_x: float,
    physical_size_y: float,
    time_increment: float,
    time_unit: str = "s",
    channel_names: Sequence[str] | None = None,
    delta_t: Sequence[float] | None = None,
    instrument: Mapping[str, Any] | None = None,
    image_name: str = "synthetic",
) -> str:
    """Build an OME-XML document for a ``T×C×Y×X`` movie stored one page per plane.

    Parameters
    ----------
    size_t, size_c, size_y, size_x
        Movie dimensions (``SizeZ`` is 1). Pages are in T then C order
        (``DimensionOrder="XYCZT"``).
    dtype
        Pixel type.
    physical_size_x, physical_size_y
        Pixel size in µm.
    time_increment
        Frame interval, in ``time_unit``.
    time_unit
        ``"s"`` or ``"ms"`` (units of ``TimeIncrement`` and ``DeltaT``).
    channel_names
        One name per channel (default ``Channel 0``, ...).
    delta_t
        ``DeltaT`` per frame (length ``size_t``) or per plane (length ``size_t*size_c``), in
        ``time_unit``. Default ``t * time_increment``.
    instrument
        ``{"detector": {...}, "objective": {...}}``; attribute names in snake_case or OME
        CamelCase. Default: a CMOS detector with offset 100.
    image_name
        ``Image/@Name``.

    Returns
    -------
    str
        The OME-XML, pure ASCII (non-ASCII characters such as ``µ`` are written as character
        references, so the TIFF ImageDescription tag stays 7-bit).
    """
    dtype_name = np.dtype(dtype).name
    if dtype_name not in OME_PIXEL_TYPES:
        raise ConfigurationError(f"dtype {dtype_name} cannot be written to OME-TIFF")
    n_planes = size_t * size_c
    if channel_names is None:
        channel_names = [f"Channel {c}" for c in range(size_c)]
    if len(channel_names) != size_c:
        raise ConfigurationError(f"{len(channel_names)} channel names for {size_c} channels")
    if delta_t is None:
        per_plane = [t * time_increment for t in range(size_t) for _ in range(size_c)]
    elif len(delta_t) == size_t:
        per_plane = [float(delta_t[t]) for t in range(size_t) for _ in range(size_c)]
    elif len(delta_t) == n_planes:
        per_plane = [float(v) for v in delta_t]
    else:
        raise ConfigurationError(
            f"delta_t has {len(delta_t)} values; expected {size_t} or {n_planes}"
        )
    instrument = dict(DEFAULT_INSTRUMENT if instrument is None else instrument)
    detector = dict(instrument.get("detector") or {})
    objective = instrument.get("objective")

    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<OME xmlns="{OME_NAMESPACE}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{OME_NAMESPACE} {OME_NAMESPACE}/ome.xsd" '
        f'Creator="{CREATOR}">',
        '  <Instrument ID="Instrument:0">',
    ]
    if objective:
        lines.append(f'    <Objective ID="Objective:0" {_attrs(objective)}/>')
    lines.append(f'    <Detector ID="Detector:0" {_attrs(detector)}/>')
    lines.append("  </Instrument>")
    lines.append(f"  <Image ID={quoteattr('Image:0')} Name={quoteattr(image_name)}>")
    lines.append('    <InstrumentRef ID="Instrument:0"/>')
    if objective:
        lines.append('    <ObjectiveSettings ID="Objective:0"/>')
    pixels = {
        "ID": "Pixels:0",
        "DimensionOrder": "XYCZT",
        "Type": OME_PIXEL_TYPES[dtype_name],
        "SignificantBits": np.dtype(dtype).itemsize * 8,
        "BigEndian": False,
        "Interleaved": False,
        "SizeX": size_x,
        "SizeY": size_y,
        "SizeZ": 1,
        "SizeC": size_c,
        "SizeT": size_t,
        "PhysicalSizeX": float(physical_size_x),
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": float(physical_size_y),
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 1.0,
        "PhysicalSizeZUnit": "µm",
        "TimeIncrement": float(time_increment),
        "TimeIncrementUnit": time_unit,
    }
    lines.append(f"    <Pixels {_attrs(pixels)}>")
    for c, name in enumerate(channel_names):
        lines.append(
            f"      <Channel ID={quoteattr(f'Channel:0:{c}')} Name={quoteattr(str(name))} "
            'SamplesPerPixel="1">'
        )
        lines.append('        <DetectorSettings ID="Detector:0"/>')
        lines.append("      </Channel>")
    lines.append(f'      <TiffData IFD="0" PlaneCount="{n_planes}"/>')
    for index in range(n_planes):
        t, c = divmod(index, size_c)
        lines.append(
            f'      <Plane TheT="{t}" TheZ="0" TheC="{c}" '
            f'DeltaT="{_fmt(per_plane[index])}" DeltaTUnit="{time_unit}"/>'
        )
    lines.append("    </Pixels>")
    lines.append("  </Image>")
    lines.append("</OME>")
    text = "\n".join(lines) + "\n"
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def checked_movie_source(
    path: Path, movie: Any, shape: Sequence[int] | None, dtype: Any, axes: str
) -> tuple[Any, tuple[int, ...], np.dtype]:
    """A writer's ``movie`` (an array, or a frame callable with an explicit ``shape``), its
    shape and the dtype to write, checked against ``axes``; errors name ``path``."""
    if callable(movie):
        if shape is None:
            raise ConfigurationError(f"{path}: a frame callable needs an explicit shape")
        out_dtype = np.dtype(dtype or "uint16")
    else:
        movie = np.asarray(movie)
        if shape is not None and tuple(shape) != movie.shape:
            raise ConfigurationError(f"{path}: shape {tuple(shape)} != array {movie.shape}")
        shape = movie.shape
        out_dtype = np.dtype(dtype or movie.dtype)
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(axes):
        raise ConfigurationError(f"{path}: shape {shape} does not match axes {axes}")
    return movie, shape, out_dtype


def write_ome_movie(
    path: str | Path,
    movie: np.ndarray | Callable[[int], np.ndarray],
    *,
    axes: str,
    physical_size_x: float,
    physical_size_y: float,
    time_increment_s: float,
    channel_names: Sequence[str] | None = None,
    delta_t: Sequence[float] | None = None,
    instrument: Mapping[str, Any] | None = None,
    shape: Sequence[int] | None = None,
    dtype: str | np.dtype | None = None,
    time_unit: str = "s",
    image_name: str | None = None,
) -> Path:
    """Write a movie as a real OME-TIFF, one uncompressed page per ``(t, c)`` plane.

    Parameters
    ----------
    path
        Target file (``*.ome.tif``); written atomically, folders created.
    movie
        The whole movie as an array of shape ``shape``, or a callable ``frame(t)`` returning
        frame ``t`` (``C×Y×X`` or ``Y×X``), called once per frame in order, so that movies
        larger than memory can be written. A callable needs ``shape``.
    axes
        ``"TYX"`` or ``"TCYX"``.
    physical_size_x, physical_size_y
        Pixel size in µm.
    time_increment_s
        Frame interval in seconds.
    channel_names
        One name per channel.
    delta_t
        Plane ``DeltaT`` values in seconds, per frame or per plane (default ``t × interval``).
    instrument
        See :func:`build_ome_xml`.
    shape
        Movie shape (required with a callable; checked against an array).
    dtype
        Pixel type (default: the array's, ``uint16`` for a callable). Arrays are cast.
    time_unit
        ``"s"`` (default) or ``"ms"``: unit written for ``TimeIncrement`` and ``DeltaT``.
    image_name
        OME ``Image/@Name`` (default: the file name).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if axes not in ("TYX", "TCYX"):
        raise ConfigurationError(f"{path}: axes must be 'TYX' or 'TCYX', not {axes!r}")
    movie, shape, out_dtype = checked_movie_source(path, movie, shape, dtype, axes)
    if axes == "TYX":
        size_t, size_y, size_x = shape
        size_c = 1
    else:
        size_t, size_c, size_y, size_x = shape
    if time_unit == "s":
        scale = 1.0
    elif time_unit == "ms":
        scale = 1000.0
    else:
        raise ConfigurationError(f"{path}: time_unit must be 's' or 'ms', not {time_unit!r}")
    xml = build_ome_xml(
        size_t=size_t,
        size_c=size_c,
        size_y=size_y,
        size_x=size_x,
        dtype=out_dtype,
        physical_size_x=physical_size_x,
        physical_size_y=physical_size_y,
        time_increment=time_increment_s * scale,
        time_unit=time_unit,
        channel_names=channel_names,
        delta_t=None if delta_t is None else [v * scale for v in delta_t],
        instrument=instrument,
        image_name=image_name if image_name is not None else path.name,
    )
    page_shape = (size_c, size_y, size_x)
    stored_shape = (size_t * size_c, size_y, size_x)
    nbytes = size_t * size_c * size_y * size_x * out_dtype.itemsize
    bigtiff = nbytes > 2**32 - 2**25

    if callable(movie):
        frame_fn = movie

        def pages() -> Iterator[np.ndarray]:
            for t in range(size_t):
                frame = np.asarray(frame_fn(t))
                if frame.size != size_c * size_y * size_x or frame.shape[-2:] != (size_y, size_x):
                    raise ConfigurationError(
                        f"{path}: frame {t} has shape {frame.shape}, expected {page_shape}"
                    )
                yield np.ascontiguousarray(frame.reshape(page_shape), dtype=out_dtype)

        data: Any = pages()
    else:
        data = np.ascontiguousarray(movie.reshape(stored_shape), dtype=out_dtype)

    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data,
            shape=stored_shape,
            dtype=out_dtype,
            photometric="minisblack",
            planarconfig=None,
            metadata=None,
            description=xml,
            compression=None,
            contiguous=True,
            bigtiff=bigtiff,
        )
    return path
