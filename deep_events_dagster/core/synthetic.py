"""Deterministic synthetic microscopy acquisitions for tests, the demo and benchmarks.

Everything here is a pure function of a seed: the same seed gives byte-identical movies,
CSVs and YAML files.

The image model is mitochondria-like: a dim, smooth background; tubular structures (random
smooth curves rendered with a Gaussian blur) that drift slightly over time; and *events*, bright
spots on a tubule at an annotated position that last a few consecutive frames (as a fission
site marked by a biologist). Photon counts get Poisson noise (or a fast Gaussian approximation
for very large movies) and a camera offset of ~100 counts; movies are ``uint16``.

Files are written as the real data look:

- an OME-TIFF movie (``T×Y×X`` or ``T×C×Y×X``) with hand-written OME-XML (physical pixel sizes,
  time increment, channels, instrument/detector, one ``Plane`` with ``DeltaT`` per plane), or
  the same pixels as an OME-Zarr image (:func:`write_ome_zarr`, NGFF 0.4 or 0.5);
- napari point-layer CSVs (``index,axis-0,...``) in µm or pixels, one point per event frame;
- ``db_manual.yaml`` at the tree root and in some folders, folder names carrying the tokens of
  ``keys.yaml`` (sometimes through aliases, optionally with awkward characters).

The truth (event tracks in pixels, and the metadata a correct ``db.yaml`` must hold) is
returned as frozen dataclasses.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import tifffile
import yaml
from scipy import ndimage

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.fsutil import atomic_directory, atomic_path, atomic_write_text

__all__ = [
    "SyntheticAcquisition",
    "SyntheticEvent",
    "SyntheticMovie",
    "SyntheticMovieFile",
    "SyntheticTree",
    "build_ome_xml",
    "event_csv_rows",
    "generate_tree",
    "synth_main",
    "synthesize_movie",
    "write_large_movie",
    "write_napari_points_csv",
    "write_ome_movie",
    "write_ome_zarr",
]

OME_NAMESPACE = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
CAMERA_OFFSET = 100
DEFAULT_INSTRUMENT: dict[str, Any] = {
    "detector": {"manufacturer": "PMPCIECam00", "model": "sCMOS", "offset": 100.0, "type": "CMOS"}
}
_OME_TYPES = {
    "uint8": "uint8",
    "int8": "int8",
    "uint16": "uint16",
    "int16": "int16",
    "uint32": "uint32",
    "int32": "int32",
    "float32": "float",
    "float64": "double",
}
# Random-stream identifiers (so that adding a stream never changes another one).
_STREAM_DRIFT, _STREAM_TUBES, _STREAM_EVENTS, _STREAM_BG, _STREAM_NOISE = 1, 2, 3, 4, 5


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticEvent:
    """The truth for one synthetic event.

    Attributes
    ----------
    kind
        Annotation kind (CSV file-name prefix), e.g. ``"points"``.
    points
        The annotated points ``(frame, y, x)`` in pixels, exactly what the CSV holds (one per
        frame of the event, or only the first one in one-point-per-event mode).
    channel
        The channel the event is visible in for ``TCYX`` movies, ``None`` for ``TYX``.
    track
        Every rendered position ``(frame, y, x)`` of the event (one per frame where the event
        is visible). Equal to ``points`` unless one point per event was annotated.
    """

    kind: str
    points: tuple[tuple[int, float, float], ...]
    channel: int | None = None
    track: tuple[tuple[int, float, float], ...] = ()

    @property
    def frames(self) -> tuple[int, int]:
        """Half-open frame range ``(start, stop)`` where the event is visible."""
        track = self.track or self.points
        return track[0][0], track[-1][0] + 1

    @property
    def center(self) -> tuple[float, float]:
        """Mean ``(y, x)`` of the track, in pixels."""
        track = self.track or self.points
        return (
            float(np.mean([p[1] for p in track])),
            float(np.mean([p[2] for p in track])),
        )


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


@dataclass(frozen=True, eq=False)
class SyntheticMovieFile:
    """A movie written by :func:`write_large_movie` and its annotated points.

    Attributes
    ----------
    path
        The OME-TIFF.
    axes, shape, dtype
        As in :class:`SyntheticAcquisition`.
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


# --------------------------------------------------------------------------------------------
# OME-TIFF writing
# --------------------------------------------------------------------------------------------


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
    if dtype_name not in _OME_TYPES:
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
        'Creator="deep_events_dagster.core.synthetic">',
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
        "Type": _OME_TYPES[dtype_name],
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


# --------------------------------------------------------------------------------------------
# OME-Zarr writing
# --------------------------------------------------------------------------------------------

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
        As in :func:`write_ome_movie` (``shape`` is required with a callable).
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
    shape = tuple(int(n) for n in shape)
    if len(shape) != len(axes):
        raise ConfigurationError(f"{path}: shape {shape} does not match axes {axes}")
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


# --------------------------------------------------------------------------------------------
# Image model
# --------------------------------------------------------------------------------------------


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *stream]))


def _ou_drift(rng: np.random.Generator, n_frames: int, n_layers: int) -> np.ndarray:
    """Slow mean-reverting drift per layer: ``(n_layers, T, 2)``, zero at t=0, steps ≤ 0.6 px."""
    steps = np.clip(rng.normal(0.0, 0.2, size=(n_layers, n_frames, 2)), -0.6, 0.6)
    drift = np.zeros((n_layers, n_frames, 2))
    for t in range(1, n_frames):
        drift[:, t] = 0.995 * drift[:, t - 1] + steps[:, t]
    # a mean-reverting walk can step by up to 0.6 + 0.005·|d|; clip the step size explicitly
    delta = np.clip(np.diff(drift, axis=1), -0.6, 0.6)
    drift[:, 1:] = np.cumsum(delta, axis=1)
    return drift


def _splat(canvas_shape: tuple[int, int], ys, xs, weights) -> np.ndarray:
    """Bilinear splatting of weighted points into a float32 image."""
    h, w = canvas_shape
    ys = np.asarray(ys, dtype=np.float64).ravel()
    xs = np.asarray(xs, dtype=np.float64).ravel()
    weights = np.asarray(weights, dtype=np.float64).ravel()
    iy = np.floor(ys).astype(np.int64)
    ix = np.floor(xs).astype(np.int64)
    fy = ys - iy
    fx = xs - ix
    out = np.zeros(h * w, dtype=np.float64)
    for dy, dx, wt in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy = iy + dy
        xx = ix + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        out += np.bincount(yy[ok] * w + xx[ok], weights=(weights * wt)[ok], minlength=h * w)
    return out.reshape(h, w).astype(np.float32)


def _random_tubes(
    rng: np.random.Generator, n: int, canvas_shape: tuple[int, int], step: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample points of ``n`` random smooth curves (``ys, xs, relative weight``)."""
    h, w = canvas_shape
    lengths = rng.uniform(20.0, 90.0, size=n)
    n_samples = math.ceil(float(lengths.max()) / step) if n else 1
    heading = rng.uniform(0, 2 * np.pi, size=(n, 1)) + np.cumsum(
        rng.normal(0.0, 0.05, size=(n, n_samples)), axis=1
    )
    y0 = rng.uniform(0, h, size=(n, 1))
    x0 = rng.uniform(0, w, size=(n, 1))
    ys = y0 + np.cumsum(step * np.sin(heading), axis=1)
    xs = x0 + np.cumsum(step * np.cos(heading), axis=1)
    s = np.arange(n_samples) * step
    mask = s[None, :] < lengths[:, None]
    brightness = rng.uniform(0.6, 1.2, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    weights = brightness * (1.0 + 0.25 * np.sin(phase + s[None, :] / 6.0)) * mask
    return ys, xs, weights


def _event_tube(
    rng: np.random.Generator, center: tuple[float, float], step: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A slightly bent tubule passing exactly through ``center``."""
    half = rng.uniform(15.0, 30.0)
    s = np.arange(-half, half + step / 2, step)
    theta = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(-0.01, 0.01)
    dy, dx = np.sin(theta), np.cos(theta)
    ys = center[0] + s * dy + bend * s**2 * dx
    xs = center[1] + s * dx - bend * s**2 * dy
    return ys, xs, np.full_like(s, rng.uniform(0.8, 1.1))


@dataclass(frozen=True)
class _EventPlan:
    kind: str
    start: int
    length: int
    anchor: tuple[float, float]
    channel: int | None
    jitter: tuple[tuple[float, float], ...]
    amplitude: float


class SyntheticMovie:
    """A deterministic mitochondria-like movie, rendered frame by frame on demand.

    Build it with :func:`synthesize_movie`. ``frame(t)`` depends only on the seed and ``t``
    (not on which frames were rendered before), so writing frame by frame and writing
    ``render()`` give identical files.

    Attributes
    ----------
    shape, axes, dtype
        ``(T, Y, X)``/``"TYX"`` or ``(T, C, Y, X)``/``"TCYX"``; ``uint16``.
    events
        The events, all kinds.
    """

    def __init__(
        self,
        *,
        n_frames: int,
        height: int,
        width: int,
        n_channels: int,
        seed: int,
        drift: np.ndarray,
        plans: Sequence[_EventPlan],
        one_point_per_event: bool,
        noise: str,
        tube_density: float,
        tube_sigma: float,
        spot_sigma: float,
        offset: int,
    ):
        if noise not in ("poisson", "gaussian"):
            raise ConfigurationError(f"noise must be 'poisson' or 'gaussian', not {noise!r}")
        self.n_frames, self.height, self.width = int(n_frames), int(height), int(width)
        self.n_channels = int(n_channels)
        self.seed = int(seed)
        self.noise = noise
        self.offset = int(offset)
        self.spot_sigma = float(spot_sigma)
        self.axes = "TYX" if n_channels == 1 else "TCYX"
        self.shape: tuple[int, ...] = (
            (self.n_frames, self.height, self.width)
            if n_channels == 1
            else (self.n_frames, self.n_channels, self.height, self.width)
        )
        self.dtype = np.dtype("uint16")
        self._drift = drift  # (n_layers, T, 2)
        self.pad = math.ceil(float(np.abs(drift).max())) + 2
        canvas = (self.height + 2 * self.pad + 1, self.width + 2 * self.pad + 1)
        rng = _rng(seed, _STREAM_TUBES)

        # channel 0: tubules on two layers drifting independently; event tubules on layer 0
        area_mpx = self.height * self.width / 1e6
        n_tubes = max(4, round(250 * tube_density * area_mpx))
        ys, xs, ws = _random_tubes(rng, n_tubes, canvas)
        layer_of = rng.integers(0, 2, size=n_tubes)
        tube_peak = rng.uniform(700.0, 1100.0)
        w_scale = tube_peak * 0.5 * math.sqrt(2 * math.pi) * tube_sigma
        self._layers: list[tuple[int, int, np.ndarray]] = []  # (channel, drift layer, canvas)
        for layer in (0, 1):
            sel = layer_of == layer
            pys, pxs, pws = [ys[sel].ravel()], [xs[sel].ravel()], [ws[sel].ravel()]
            if layer == 0:
                for plan in plans:
                    d0 = drift[0, plan.start]
                    c = (plan.anchor[0] + self.pad - d0[0], plan.anchor[1] + self.pad - d0[1])
                    eys, exs, ews = _event_tube(rng, c)
                    pys.append(eys)
                    pxs.append(exs)
                    pws.append(ews)
            img = _splat(
                canvas,
                np.concatenate(pys),
                np.concatenate(pxs),
                np.concatenate(pws) * w_scale,
            )
            self._layers.append((0, layer, ndimage.gaussian_filter(img, tube_sigma)))
        if n_channels > 1:
            # channel 1..: sparse puncta (e.g. a Drp1-like marker) drifting on layer 2
            for c in range(1, n_channels):
                n_dots = max(8, round(400 * area_mpx))
                dys = rng.uniform(0, canvas[0], n_dots)
                dxs = rng.uniform(0, canvas[1], n_dots)
                dws = rng.uniform(0.3, 0.8, n_dots) * 600.0 * 2 * math.pi * 1.5**2
                img = _splat(canvas, dys, dxs, dws)
                self._layers.append((c, 2, ndimage.gaussian_filter(img, 1.5)))

        # static smooth background (illumination and cytosol), one per channel
        brng = _rng(seed, _STREAM_BG)
        yy = (np.arange(self.height, dtype=np.float32) / self.height)[:, None]
        xx = (np.arange(self.width, dtype=np.float32) / self.width)[None, :]
        self._background = []
        for c in range(n_channels):
            level = brng.uniform(40.0, 80.0) * (1.0 if c == 0 else 0.6)
            bg = np.full((self.height, self.width), level, dtype=np.float32)
            for _ in range(3):
                fy, fx = brng.uniform(0.3, 1.5, size=2)
                ph = brng.uniform(0, 2 * np.pi)
                amp = level * brng.uniform(0.05, 0.2)
                bg += amp * np.cos(2 * np.pi * fy * yy + ph) * np.cos(2 * np.pi * fx * xx - ph)
            self._background.append(np.maximum(bg, 1.0))

        # event spots per frame: t -> list of (channel, y, x, amplitude)
        self._spots: dict[int, list[tuple[int, float, float, float]]] = {}
        events = []
        for plan in plans:
            track = []
            d0 = drift[0, plan.start]
            for k in range(plan.length):
                t = plan.start + k
                y = plan.anchor[0] + drift[0, t, 0] - d0[0] + plan.jitter[k][0]
                x = plan.anchor[1] + drift[0, t, 1] - d0[1] + plan.jitter[k][1]
                y, x = round(float(y), 4), round(float(x), 4)
                track.append((t, y, x))
                profile = 0.6 + 0.4 * math.sin(math.pi * (k + 0.5) / plan.length)
                amp = plan.amplitude * tube_peak * profile
                self._spots.setdefault(t, []).append((plan.channel or 0, y, x, amp))
            track_t = tuple(track)
            events.append(
                SyntheticEvent(
                    kind=plan.kind,
                    points=track_t[:1] if one_point_per_event else track_t,
                    channel=plan.channel,
                    track=track_t,
                )
            )
        self.events: tuple[SyntheticEvent, ...] = tuple(events)

    def _shifted(self, canvas: np.ndarray, d: np.ndarray) -> np.ndarray:
        h, w = self.height, self.width
        cy, cx = self.pad - d[0], self.pad - d[1]
        iy, ix = math.floor(cy), math.floor(cx)
        fy, fx = np.float32(cy - iy), np.float32(cx - ix)
        top = (
            canvas[iy : iy + h, ix : ix + w] * (1 - fx)
            + canvas[iy : iy + h, ix + 1 : ix + 1 + w] * fx
        )
        bottom = (
            canvas[iy + 1 : iy + 1 + h, ix : ix + w] * (1 - fx)
            + canvas[iy + 1 : iy + 1 + h, ix + 1 : ix + 1 + w] * fx
        )
        return top * (1 - fy) + bottom * fy

    def expected(self, t: int) -> np.ndarray:
        """Noise-free expected photon counts of frame ``t`` (float32, ``C×Y×X``)."""
        if not 0 <= t < self.n_frames:
            raise IndexError(f"frame {t} outside 0..{self.n_frames - 1}")
        lam = np.stack([bg.copy() for bg in self._background])
        for channel, layer, canvas in self._layers:
            lam[channel] += self._shifted(canvas, self._drift[layer, t])
        s = self.spot_sigma
        r = math.ceil(4 * s)
        for channel, y, x, amp in self._spots.get(t, ()):
            y0, y1 = max(0, math.floor(y) - r), min(self.height, math.floor(y) + r + 2)
            x0, x1 = max(0, math.floor(x) - r), min(self.width, math.floor(x) + r + 2)
            gy = np.exp(-((np.arange(y0, y1) - y) ** 2) / (2 * s * s)).astype(np.float32)
            gx = np.exp(-((np.arange(x0, x1) - x) ** 2) / (2 * s * s)).astype(np.float32)
            lam[channel, y0:y1, x0:x1] += np.float32(amp) * gy[:, None] * gx[None, :]
        return lam

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as ``uint16`` (``Y×X`` for one channel, else ``C×Y×X``)."""
        lam = self.expected(t)
        rng = _rng(self.seed, _STREAM_NOISE, t)
        if self.noise == "poisson":
            counts = rng.poisson(lam).astype(np.float32)
        else:
            counts = lam + np.sqrt(lam) * rng.standard_normal(lam.shape, dtype=np.float32)
            np.rint(counts, out=counts)
        counts += self.offset
        out = np.clip(counts, 0, 65535).astype(np.uint16)
        return out[0] if self.n_channels == 1 else out

    def render(self) -> np.ndarray:
        """The whole movie in memory (``shape``, ``uint16``)."""
        out = np.empty(self.shape, dtype=self.dtype)
        for t in range(self.n_frames):
            out[t] = self.frame(t)
        return out


def _as_range(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    lo, hi = value
    return int(lo), int(hi)


def _plan_events(
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
) -> list[_EventPlan]:
    lo, hi = event_frames
    if lo < 1 or hi < lo:
        raise ConfigurationError(f"event_frames must be 1 <= min <= max, got {event_frames}")
    if n_frames < hi + 2:
        raise ConfigurationError(f"{n_frames} frames are too few for events of {hi} frames")
    kinds = [k for k, n in counts for _ in range(n)]
    plans: list[_EventPlan] = []

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
            plans.append(_EventPlan(kind, start, length, anchor, channel(), jitter(length), amp))

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
        plans.append(
            _EventPlan(kind, start, length, anchor, channel(), jitter(length), amplitude())
        )

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
        plans.append(
            _EventPlan(kind, start, length, anchor, channel(), jitter(length), amplitude())
        )
    return plans


def synthesize_movie(
    *,
    n_frames: int = 24,
    height: int = 320,
    width: int = 400,
    n_channels: int = 1,
    seed: int = 0,
    kinds: Sequence[str] = ("points",),
    events_per_kind: int | Sequence[int] = (2, 3),
    event_frames: int | Sequence[int] = (3, 6),
    two_close_events: bool = False,
    edge_event: bool = False,
    one_point_per_event: bool = False,
    noise: str = "poisson",
    margin: int = 24,
    min_separation: float = 96.0,
    tube_density: float = 1.0,
    tube_sigma: float = 2.0,
    spot_sigma: float = 2.0,
    offset: int = CAMERA_OFFSET,
) -> SyntheticMovie:
    """Plan events and build a deterministic mitochondria-like movie model (no files).

    Parameters
    ----------
    n_frames, height, width, n_channels
        Movie size; ``n_channels`` 1 gives ``TYX``, more gives ``TCYX``.
    seed
        Everything derives from it.
    kinds
        Annotation kinds; each gets ``events_per_kind`` events.
    events_per_kind
        Number of events per kind, or an inclusive ``(min, max)`` range.
    event_frames
        Event duration in frames, or an inclusive ``(min, max)`` range.
    two_close_events
        Two simultaneous events exactly 150 px apart (same frames, same drift), e.g. to check
        that event detection keeps them apart. Needs a side ≥ ``150 + 2·margin + 5`` px.
    edge_event
        One event within 10 px of an image edge (its centre stays 2–9 px from the border).
    one_point_per_event
        Annotate each event with one point (its first frame) instead of one per frame.
    noise
        ``"poisson"`` (exact) or ``"gaussian"`` (``λ + √λ·N(0, 1)``, ~6× faster on big frames).
    margin
        Minimum distance of ordinary events from the image border, px.
    min_separation
        Minimum distance between events whose frames are within 5 frames of each other
        (except the close pair), px.
    tube_density, tube_sigma, spot_sigma
        Number of tubules relative to the default (~250 per megapixel), their blur σ and the
        event spot σ in pixels.
    offset
        Camera offset added to all counts.

    Returns
    -------
    SyntheticMovie
        Call ``frame(t)`` or ``render()``; ``events`` holds the truth.
    """
    lo, hi = _as_range(events_per_kind)
    ev_rng = _rng(seed, _STREAM_EVENTS)
    counts = [(k, int(ev_rng.integers(lo, hi + 1))) for k in kinds]
    drift = _ou_drift(_rng(seed, _STREAM_DRIFT), n_frames, 3)
    plans = _plan_events(
        ev_rng,
        drift0=drift[0],
        n_frames=n_frames,
        height=height,
        width=width,
        n_channels=n_channels,
        counts=counts,
        event_frames=_as_range(event_frames),
        two_close_events=two_close_events,
        edge_event=edge_event,
        margin=margin,
        min_separation=min_separation,
    )
    return SyntheticMovie(
        n_frames=n_frames,
        height=height,
        width=width,
        n_channels=n_channels,
        seed=seed,
        drift=drift,
        plans=plans,
        one_point_per_event=one_point_per_event,
        noise=noise,
        tube_density=tube_density,
        tube_sigma=tube_sigma,
        spot_sigma=spot_sigma,
        offset=offset,
    )


# --------------------------------------------------------------------------------------------
# napari CSVs
# --------------------------------------------------------------------------------------------


def event_csv_rows(
    events: Sequence[SyntheticEvent], *, four_axis: bool, um_per_px: float | None
) -> list[tuple[float, ...]]:
    """Rows ``(frame, [channel,] y, x)`` of the annotated points of ``events``.

    Parameters
    ----------
    events
        Events, written in order, each event's points in frame order.
    four_axis
        Include the channel column (``TCYX`` movies); a ``None`` channel is written as 0.
    um_per_px
        Multiply y and x by it (µm CSVs, ``scale_csv: true``); ``None`` keeps pixels.

    Returns
    -------
    list of tuple of float
    """
    scale = 1.0 if um_per_px is None else float(um_per_px)
    rows: list[tuple[float, ...]] = []
    for ev in events:
        for t, y, x in ev.points:
            if four_axis:
                rows.append((float(t), float(ev.channel or 0), y * scale, x * scale))
            else:
                rows.append((float(t), y * scale, x * scale))
    return rows


def write_napari_points_csv(path: str | Path, rows: Sequence[Sequence[float]]) -> Path:
    """Write points as napari's points writer does.

    Header ``index,axis-0,...,axis-{D-1}``; every value (the index too) written as a Python
    float (``0.0``, ``12.345678``), ``\\r\\n`` line endings (``csv.writer`` defaults).

    Parameters
    ----------
    path
        Target CSV (written atomically).
    rows
        ``N`` rows of ``D`` coordinates.

    Returns
    -------
    Path
        ``path``.
    """
    rows = [tuple(float(v) for v in row) for row in rows]
    ndim = len(rows[0]) if rows else 3
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["index", *(f"axis-{n}" for n in range(ndim))])
    for i, row in enumerate(rows):
        writer.writerow([repr(float(i)), *(repr(v) for v in row)])
    return atomic_write_text(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------
# Large movies for benchmarks
# --------------------------------------------------------------------------------------------


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
    lo, hi = _as_range(event_frames)
    if n_points < 1:
        raise ConfigurationError("n_points must be at least 1")
    # choose event lengths summing to n_points (the last may be shorter than lo)
    rng = _rng(seed, _STREAM_EVENTS, 1)
    lengths: list[int] = []
    while sum(lengths) < n_points:
        lengths.append(min(int(rng.integers(lo, hi + 1)), n_points - sum(lengths)))
    drift = _ou_drift(_rng(seed, _STREAM_DRIFT), n_frames, 3)
    plans: list[_EventPlan] = []
    ev_rng = _rng(seed, _STREAM_EVENTS)
    for length in lengths:
        plans.extend(
            _plan_events_fixed(
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
        channel_names=_channel_names(n_channels),
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


def _plan_events_fixed(
    rng: np.random.Generator,
    existing: Sequence[_EventPlan],
    *,
    drift0: np.ndarray,
    n_frames: int,
    height: int,
    width: int,
    n_channels: int,
    length: int,
    min_separation: float,
    margin: int = 24,
) -> list[_EventPlan]:
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
    return [_EventPlan("points", start, length, anchor, channel, jitter, rng.uniform(0.9, 1.4))]


def _channel_names(n_channels: int) -> list[str]:
    names = ["mito", "drp1", "er", "dna"]
    return [names[c] if c < len(names) else f"ch{c}" for c in range(n_channels)]


# --------------------------------------------------------------------------------------------
# Trees of acquisitions
# --------------------------------------------------------------------------------------------

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
        interval (its unit included) and channel names as an OME-Zarr image
        ``*.ome.zarr`` (:func:`write_ome_zarr`); everything else is equal. A stale movie
        stays an OME-TIFF.
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
    rng = _rng(seed, 0)

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
            jit = _rng(acq_seed, 99).uniform(-5e-4, 5e-4, size=n_frames - 2)
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
                channel_names=_channel_names(n_channels),
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
                channel_names=_channel_names(n_channels),
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
                channel_names=tuple(_channel_names(n_channels)),
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
