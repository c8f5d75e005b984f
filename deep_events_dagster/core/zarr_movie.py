"""OME-Zarr movies: NGFF 0.4 (zarr v2) and NGFF 0.5 (zarr v3) images in ``*.ome.zarr`` folders.

An acquisition's movie may be an OME-Zarr image instead of an OME-TIFF. The platform's entry
points dispatch on the path (a ``*.ome.zarr`` name), so everything downstream sees the same
:class:`~deep_events_dagster.core.ome.MovieInfo`, fingerprint and
:class:`~deep_events_dagster.core.crops.MovieReader` windows:

- :func:`read_ome_zarr` parses the metadata with the standard library only (JSON files:
  ``.zattrs``/``.zarray`` for 0.4, ``zarr.json`` for 0.5; a ``bioformats2raw`` layout's first
  series is followed): axes ``t``/``c``/``z``/``y``/``x`` (``z`` of size 1 only), the
  full-resolution level (``multiscales[0].datasets[0]``), its ``scale`` transform (pixel size
  in µm, frame interval in seconds, converted from the axes' units) and ``omero`` channels;
- :func:`read_zarr_movie_info` makes the ``MovieInfo`` (its ``ome`` mapping has the keys the
  OME-TIFF one has: ``size_x`` … ``physical_size_x``/``_unit``, ``time_increment``/``_unit``,
  ``channel``; plus ``ngff_version`` and ``zarr_format``), and with ``verify_pages`` checks
  that every chunk of the declared shape is present and that the first and last decode;
- :func:`missing_chunks` is the completeness rule of the acquisition sensor;
- :func:`tree_signature` the cheap ``(total bytes, newest mtime)`` of the whole folder;
- :func:`fingerprint_zarr_movie` the content fingerprint (sizes, mtimes, hashes of the stored
  chunks of the first and last frames);
- :class:`ZarrMovieReader` reads windows through the ``zarr`` library (only the chunks a
  window touches, decoded chunks kept in a small LRU cache), bit-exact in the array's dtype.

``zarr`` itself is imported only when pixels are decoded (it takes about a second to import).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deep_events_dagster.core.crops import MovieReader
from deep_events_dagster.core.errors import MovieError
from deep_events_dagster.core.fingerprint import MovieFingerprint
from deep_events_dagster.core.ome import MovieInfo, frame_interval_seconds

if TYPE_CHECKING:
    from deep_events_dagster.core.events import Box

__all__ = [
    "CHUNK_CACHE_BYTES",
    "OmeZarrImage",
    "ZarrArrayInfo",
    "ZarrMovieReader",
    "fingerprint_zarr_movie",
    "missing_chunks",
    "read_ome_zarr",
    "read_zarr_movie_info",
    "tree_signature",
]

CHUNK_CACHE_BYTES = 64 * 1024 * 1024
"""Decoded chunks a :class:`ZarrMovieReader` keeps (an event's negatives, next to it, and
events close in time share chunks: about half the decoding of an ingestion is saved)."""

_V2_METADATA = (".zarray", ".zattrs", ".zgroup", ".zmetadata")
_V3_METADATA = ("zarr.json",)
_METADATA_NAMES = frozenset(_V2_METADATA + _V3_METADATA)
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


# -- metadata ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZarrArrayInfo:
    """The full-resolution array of an OME-Zarr image, from its own metadata file.

    Attributes
    ----------
    path
        The array's folder.
    metadata_file
        ``.zarray`` (zarr v2) or ``zarr.json`` (zarr v3).
    zarr_format
        2 or 3.
    shape, chunks
        Array and chunk (for zarr v3 with sharding: shard) shapes.
    dtype
        Pixel type as stored (byte order included).
    separator
        Separator of the chunk-key parts (``"."`` or ``"/"``).
    key_prefix
        ``"c"`` for zarr v3's default chunk-key encoding (``c/0/0/0``), else empty.
    """

    path: Path
    metadata_file: Path
    zarr_format: int
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    separator: str
    key_prefix: str

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of chunks along each axis (``ceil(shape / chunks)``)."""
        return tuple(math.ceil(s / c) for s, c in zip(self.shape, self.chunks))

    @property
    def n_chunks(self) -> int:
        """Chunks of the declared shape."""
        return math.prod(self.grid)

    def chunk_key(self, index: Sequence[int]) -> str:
        """The chunk's key, relative to :attr:`path` (``"0/1/2"``, ``"c/0/1/2"``, ``"0.1.2"``)."""
        parts = [str(int(i)) for i in index] or ["0"]
        if self.key_prefix:
            parts.insert(0, self.key_prefix)
        return self.separator.join(parts)


@dataclass(frozen=True)
class OmeZarrImage:
    """An OME-Zarr image's metadata, as far as the platform needs it.

    Attributes
    ----------
    path
        The ``*.ome.zarr`` folder.
    group
        The image group (``path``, or the first series of a ``bioformats2raw`` layout).
    group_files
        The metadata files of the group(s) that were read.
    ngff_version
        ``"0.4"``, ``"0.5"`` … as written (empty when none is).
    axes
        Lower-case axis names in array order (``("t", "c", "y", "x")``).
    units
        Each axis' unit as written (``None`` when absent).
    scale
        The full-resolution level's scale per axis (the dataset's scale times the
        multiscale's, when it has one), or ``None`` without a scale transform.
    array
        The full-resolution array.
    channels
        ``omero.channels`` (mappings with ``label``, ``color`` …), possibly empty.
    """

    path: Path
    group: Path
    group_files: tuple[Path, ...]
    ngff_version: str
    axes: tuple[str, ...]
    units: tuple[str | None, ...]
    scale: tuple[float, ...] | None
    array: ZarrArrayInfo
    channels: tuple[Mapping[str, Any], ...]

    def size(self, axis: str) -> int:
        """The size of an axis (1 when the image has no such axis)."""
        return self.array.shape[self.axes.index(axis)] if axis in self.axes else 1

    @property
    def n_frames(self) -> int:
        return self.size("t")

    @property
    def n_channels(self) -> int:
        return self.size("c")

    @property
    def height(self) -> int:
        return self.size("y")

    @property
    def width(self) -> int:
        return self.size("x")


def _load_json(path: Path, *, what: str) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        raise MovieError(path, f"{what} not found") from exc
    except OSError as exc:
        raise MovieError(path, f"cannot read {what} ({exc.strerror or exc})") from exc
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MovieError(path, f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise MovieError(path, f"{what} must be a JSON object, not {type(data).__name__}")
    return data


def _group_attributes(group: Path) -> tuple[dict[str, Any], tuple[Path, ...]]:
    """The NGFF attributes of a group (``.zattrs``, or ``zarr.json``'s ``attributes.ome``)
    and the metadata files read."""
    zarr_json = group / "zarr.json"
    zattrs = group / ".zattrs"
    if zarr_json.is_file():
        meta = _load_json(zarr_json, what="zarr.json")
        if meta.get("node_type", "group") != "group":
            raise MovieError(
                zarr_json, f"expected a zarr group, found node_type {meta['node_type']!r}"
            )
        attributes = meta.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise MovieError(zarr_json, "'attributes' must be a JSON object")
        ome = attributes.get("ome", attributes)
        if not isinstance(ome, dict):
            raise MovieError(zarr_json, "'attributes.ome' must be a JSON object")
        return ome, (zarr_json,)
    if zattrs.is_file() or (group / ".zgroup").is_file():
        files = tuple(p for p in (group / ".zgroup", zattrs) if p.is_file())
        return (_load_json(zattrs, what=".zattrs") if zattrs.is_file() else {}), files
    if not group.exists():
        raise MovieError(group, "OME-Zarr movie not found")
    raise MovieError(group, "not an OME-Zarr image: neither zarr.json (NGFF 0.5) nor .zattrs (0.4)")


def _axes(raw: Any, source: Path) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    if not isinstance(raw, list) or not raw:
        raise MovieError(source, "multiscales[0].axes must be a non-empty list")
    names: list[str] = []
    units: list[str | None] = []
    for axis in raw:
        if isinstance(axis, str):  # NGFF 0.3
            name, unit, kind = axis, None, None
        elif isinstance(axis, Mapping) and isinstance(axis.get("name"), str):
            name, unit, kind = axis["name"], axis.get("unit"), axis.get("type")
        else:
            raise MovieError(source, f"multiscales[0].axes: unreadable axis {axis!r}")
        name = name.lower()
        if name not in ("t", "c", "z", "y", "x") and kind in ("time", "channel"):
            name = "t" if kind == "time" else "c"  # e.g. {"name": "time", "type": "time"}
        names.append(name)
        units.append(str(unit) if unit not in (None, "") else None)
    if len(set(names)) != len(names):
        raise MovieError(source, f"multiscales[0].axes repeats an axis: {names}")
    unknown = [n for n in names if n not in ("t", "c", "z", "y", "x")]
    if unknown or names[-2:] != ["y", "x"]:
        raise MovieError(
            source,
            f"unsupported axes {names}: the platform reads t, c, z (of size 1), y, x "
            "with y and x last",
        )
    return tuple(names), tuple(units)


def _scale(multiscale: Mapping[str, Any], dataset: Mapping[str, Any], n: int, source: Path):
    scale = [1.0] * n
    found = False
    for transforms in (
        multiscale.get("coordinateTransformations"),
        dataset.get("coordinateTransformations"),
    ):
        if transforms is None:
            continue
        if not isinstance(transforms, list):
            raise MovieError(source, "coordinateTransformations must be a list")
        for transform in transforms:
            if not isinstance(transform, Mapping) or transform.get("type") != "scale":
                continue
            values = transform.get("scale")
            if not isinstance(values, list) or len(values) != n:
                raise MovieError(source, f"scale transform {values!r} does not have {n} values")
            try:
                scale = [a * float(b) for a, b in zip(scale, values)]
            except (TypeError, ValueError) as exc:
                raise MovieError(source, f"scale transform {values!r} is not numeric") from exc
            found = True
    return tuple(scale) if found else None


def _array_info(folder: Path) -> ZarrArrayInfo:
    zarr_json = folder / "zarr.json"
    zarray = folder / ".zarray"
    if zarr_json.is_file():
        meta = _load_json(zarr_json, what="zarr.json")
        if meta.get("node_type") != "array":
            raise MovieError(
                zarr_json, f"expected a zarr array, found node_type {meta.get('node_type')!r}"
            )
        try:
            shape = tuple(int(s) for s in meta["shape"])
            grid = meta["chunk_grid"]
            if grid.get("name") != "regular":
                raise MovieError(zarr_json, f"unsupported chunk grid {grid.get('name')!r}")
            chunks = tuple(int(c) for c in grid["configuration"]["chunk_shape"])
            dtype = np.dtype(str(meta["data_type"]))
        except MovieError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MovieError(
                zarr_json, f"malformed zarr v3 array metadata ({type(exc).__name__}: {exc})"
            ) from exc
        for codec in meta.get("codecs") or []:
            if isinstance(codec, Mapping) and codec.get("name") == "bytes":
                endian = (codec.get("configuration") or {}).get("endian", "little")
                dtype = dtype.newbyteorder("<" if endian == "little" else ">")
        encoding = meta.get("chunk_key_encoding") or {"name": "default"}
        name = encoding.get("name", "default")
        config = encoding.get("configuration") or {}
        if name == "default":
            separator, prefix = config.get("separator", "/"), "c"
        elif name == "v2":
            separator, prefix = config.get("separator", "."), ""
        else:
            raise MovieError(zarr_json, f"unsupported chunk key encoding {name!r}")
        return ZarrArrayInfo(folder, zarr_json, 3, shape, chunks, dtype, separator, prefix)
    if zarray.is_file():
        meta = _load_json(zarray, what=".zarray")
        try:
            shape = tuple(int(s) for s in meta["shape"])
            chunks = tuple(int(c) for c in meta["chunks"])
            dtype = np.dtype(meta["dtype"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MovieError(
                zarray, f"malformed zarr v2 array metadata ({type(exc).__name__}: {exc})"
            ) from exc
        separator = meta.get("dimension_separator") or "."
        return ZarrArrayInfo(folder, zarray, 2, shape, chunks, dtype, separator, "")
    if not folder.exists():
        raise MovieError(folder, "the full-resolution array is missing")
    raise MovieError(folder, "not a zarr array: neither zarr.json nor .zarray")


def read_ome_zarr(path: str | Path) -> OmeZarrImage:
    """Parse an OME-Zarr image's metadata (standard library only, no pixel is read).

    Parameters
    ----------
    path
        The ``*.ome.zarr`` folder: an image group (NGFF 0.4 or 0.5), or a ``bioformats2raw``
        layout (its first series, ``0/``, is read).

    Raises
    ------
    MovieError
        Missing or malformed metadata (the message names the file at fault), no
        ``multiscales``, axes other than t/c/z/y/x with y and x last, a shape that disagrees
        with the axes, a z axis longer than 1, a pixel type that is not an integer or float.
    """
    path = Path(path)
    attributes, files = _group_attributes(path)
    group = path
    source = files[-1] if files else path
    if "multiscales" not in attributes and "bioformats2raw.layout" in attributes:
        group = path / "0"
        attributes, more = _group_attributes(group)
        files += more
        source = more[-1] if more else group
    multiscales = attributes.get("multiscales")
    if (
        not isinstance(multiscales, list)
        or not multiscales
        or not isinstance(multiscales[0], Mapping)
    ):
        raise MovieError(source, "not an OME-Zarr image: no 'multiscales' in its attributes")
    multiscale = multiscales[0]
    version = str(attributes.get("version") or multiscale.get("version") or "")
    axes, units = _axes(multiscale.get("axes"), source)
    datasets = multiscale.get("datasets")
    if not isinstance(datasets, list) or not datasets or not isinstance(datasets[0], Mapping):
        raise MovieError(source, "multiscales[0].datasets must be a non-empty list")
    dataset = datasets[0]
    dataset_path = dataset.get("path")
    if not isinstance(dataset_path, str) or not dataset_path or ".." in Path(dataset_path).parts:
        raise MovieError(source, f"multiscales[0].datasets[0].path {dataset_path!r} is not usable")
    scale = _scale(multiscale, dataset, len(axes), source)
    array = _array_info(group / dataset_path)
    if len(array.shape) != len(axes):
        raise MovieError(
            array.metadata_file,
            f"the array has {len(array.shape)} dimensions {array.shape}, the axes are {list(axes)}",
        )
    if len(array.chunks) != len(array.shape) or any(c < 1 for c in array.chunks):
        raise MovieError(
            array.metadata_file, f"chunks {array.chunks} do not fit shape {array.shape}"
        )
    if array.dtype.kind not in "uif":
        raise MovieError(array.metadata_file, f"unsupported pixel type {array.dtype}")
    if "z" in axes and array.shape[axes.index("z")] != 1:
        raise MovieError(
            array.metadata_file, f"z-stacks are not supported (z = {array.shape[axes.index('z')]})"
        )
    omero = attributes.get("omero") if isinstance(attributes.get("omero"), Mapping) else {}
    channels = omero.get("channels") if isinstance(omero.get("channels"), list) else []
    return OmeZarrImage(
        path=path,
        group=group,
        group_files=files,
        ngff_version=version,
        axes=axes,
        units=units,
        scale=scale,
        array=array,
        channels=tuple(c if isinstance(c, Mapping) else {} for c in channels),
    )


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
        "type": _OME_TYPES.get(dtype.newbyteorder("=").name, dtype.newbyteorder("=").name),
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
    array = _open_array(image.array)
    grid = image.array.grid
    for index in {(0,) * len(grid), tuple(g - 1 for g in grid)}:
        try:
            array.get_block_selection(index)
        except Exception as exc:
            key = image.array.chunk_key(index)
            raise MovieError(
                image.array.path / key, f"cannot decode chunk {key} ({type(exc).__name__}: {exc})"
            ) from exc


# -- completeness, signatures, fingerprints ------------------------------------------------


def _walk_files(folder: Path) -> Iterator[os.DirEntry]:
    """Every file below ``folder`` (symbolic links not followed); unreadable folders skipped."""
    stack = [str(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            yield entry
                    except OSError:
                        continue
        except OSError:
            continue


def _chunk_files(array: ZarrArrayInfo) -> dict[str, os.stat_result]:
    """Stored files of an array by key (``/``-separated relative path), metadata excluded."""
    root = str(array.path)
    files: dict[str, os.stat_result] = {}
    for entry in _walk_files(array.path):
        if entry.name in _METADATA_NAMES or entry.name.startswith("."):
            continue
        key = os.path.relpath(entry.path, root).replace(os.sep, "/")
        try:
            files[key] = entry.stat(follow_symlinks=False)
        except OSError:
            continue
    return files


def _all_keys(array: ZarrArrayInfo) -> Iterator[tuple[tuple[int, ...], str]]:
    for index in itertools.product(*(range(g) for g in array.grid)):
        yield index, array.chunk_key(index)


def missing_chunks(array: ZarrArrayInfo, *, examples: int = 3) -> tuple[int, list[str]]:
    """How many chunks of the declared shape have no file, and the first few keys.

    A zarr writer may leave out chunks that hold only the fill value; the platform counts
    them as missing (a movie of the camera never has such chunks; writers must not skip them).
    """
    present = _chunk_files(array)
    missing = 0
    first: list[str] = []
    for _, key in _all_keys(array):
        if key not in present:
            missing += 1
            if len(first) < examples:
                first.append(key)
    return missing, first


def tree_signature(path: str | Path) -> tuple[int, int]:
    """``(total bytes, newest mtime_ns)`` over every file and folder below ``path`` (itself
    included): what the sensor watches for its quiet period. Only ``stat`` calls."""
    path = Path(path)
    total = 0
    newest = os.stat(path).st_mtime_ns
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        stat = entry.stat(follow_symlinks=False)
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += stat.st_size
                        newest = max(newest, stat.st_mtime_ns)
                    except OSError:
                        continue
        except OSError:
            continue
    return total, newest


def fingerprint_zarr_movie(path: str | Path) -> MovieFingerprint:
    """:func:`~deep_events_dagster.core.fingerprint.fingerprint_movie` for an OME-Zarr movie.

    ``size`` and ``mtime_ns`` are the total and the newest over the image's metadata files
    and the full-resolution array's metadata and chunk files; the page hashes are BLAKE2b of
    the metadata files' bytes followed by the stored chunks holding the first frame, and of
    the stored chunks holding the last frame (a missing chunk hashes as a marker);
    ``n_pages`` counts the planes (frames × channels).

    Raises
    ------
    MovieError
        Malformed metadata.
    """
    image = read_ome_zarr(path)
    array = image.array
    files = _chunk_files(array)
    own = sorted(array.path / name for name in _METADATA_NAMES if (array.path / name).is_file())
    metadata = [*image.group_files, *own]
    size, newest = 0, 0
    for meta in metadata:
        try:
            stat = meta.stat()
        except OSError as exc:
            raise MovieError(meta, f"cannot read ({exc.strerror or exc})") from exc
        size, newest = size + stat.st_size, max(newest, stat.st_mtime_ns)
    for stat in files.values():
        size, newest = size + stat.st_size, max(newest, stat.st_mtime_ns)

    t_axis = image.axes.index("t") if "t" in image.axes else None
    t_chunk = array.chunks[t_axis] if t_axis is not None else 1

    def frame_hash(t: int, head: Sequence[Path] = ()) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for meta in head:
            digest.update(meta.read_bytes())
        ranges = [range(g) for g in array.grid]
        if t_axis is not None:
            ranges[t_axis] = range(t // t_chunk, t // t_chunk + 1)
        for index in itertools.product(*ranges):
            key = array.chunk_key(index)
            digest.update(key.encode() + b"\0")
            if key in files:
                digest.update((array.path / key).read_bytes())
            else:
                digest.update(b"<missing>")
        return digest.hexdigest()

    try:
        first = frame_hash(0, metadata)
        last = frame_hash(image.n_frames - 1)
    except OSError as exc:
        raise MovieError(array.path, f"cannot read a chunk ({exc})") from exc
    return MovieFingerprint(
        path=image.path.as_posix(),
        size=size,
        mtime_ns=newest,
        first_page_hash=first,
        last_page_hash=last,
        n_pages=image.n_frames * image.n_channels,
    )


# -- pixels --------------------------------------------------------------------------------------


def _open_array(array: ZarrArrayInfo) -> Any:
    import zarr  # about a second to import: only when pixels are read

    try:
        return zarr.open_array(store=str(array.path), mode="r", zarr_format=array.zarr_format)
    except Exception as exc:
        raise MovieError(
            array.metadata_file, f"cannot open the zarr array ({type(exc).__name__}: {exc})"
        ) from exc


class _ChunkCache:
    """Decoded chunks by grid index, least recently used dropped past ``capacity`` bytes."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.nbytes = 0
        self._chunks: collections.OrderedDict[tuple[int, ...], np.ndarray] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, index: tuple[int, ...]) -> np.ndarray | None:
        with self._lock:
            chunk = self._chunks.get(index)
            if chunk is not None:
                self._chunks.move_to_end(index)
            return chunk

    def put(self, index: tuple[int, ...], chunk: np.ndarray) -> None:
        if chunk.nbytes > self.capacity:
            return
        with self._lock:
            old = self._chunks.pop(index, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._chunks[index] = chunk
            self.nbytes += chunk.nbytes
            while self.nbytes > self.capacity:
                _, dropped = self._chunks.popitem(last=False)
                self.nbytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self.nbytes = 0


class ZarrMovieReader(MovieReader):
    """:class:`~deep_events_dagster.core.crops.MovieReader` of an OME-Zarr movie.

    ``MovieReader(path)`` returns one for a ``*.ome.zarr`` path. Windows are read from the
    full-resolution array through ``zarr``: only the chunks a window touches are read and
    decoded, and decoded chunks are kept in an LRU cache of ``cache_bytes``; reads of more
    than half the cache (whole frames) bypass it. Values are bit-exact in the array's dtype
    (native byte order). :meth:`read_window` may be called from several threads.

    Raises
    ------
    MovieError
        Malformed metadata or an array that cannot be opened; a chunk that cannot be read or
        decoded when a window needs it (a missing chunk reads as the fill value, as in zarr;
        completeness is :func:`read_zarr_movie_info`'s check).
    """

    def __init__(self, path: str | Path, *, cache_bytes: int = CHUNK_CACHE_BYTES):
        self.path = Path(path)
        self._tif = None
        self._memmap = None
        self._pages = None
        self._mapped_bytes = 0
        self._release_lock = threading.Lock()
        self.image = read_ome_zarr(self.path)
        image = self.image
        self._array = _open_array(image.array)
        self._file_axes = "".join(image.axes).upper()
        self._file_shape = image.array.shape
        self._time_axis = image.axes.index("t") if "t" in image.axes else None
        self._channel_axis = image.axes.index("c") if "c" in image.axes else None
        self._leading_shape = image.array.shape[:-2]
        self._dtype = image.array.dtype.newbyteorder("=")
        self._height, self._width = image.height, image.width
        self._n_frames, self._n_channels = image.n_frames, image.n_channels
        self._has_channels = self._n_channels > 1
        self._chunks = image.array.chunks
        self._cache = _ChunkCache(cache_bytes)

    # -- reading -------------------------------------------------------------------------

    def read_window(self, frames: tuple[int, int], box: Box) -> np.ndarray:
        """See :meth:`MovieReader.read_window`."""
        t0, t1 = (int(v) for v in frames)
        x0, y0, x1, y1 = (int(v) for v in box)
        if not 0 <= t0 < t1 <= self._n_frames:
            raise ValueError(f"frames {(t0, t1)} outside [0, {self._n_frames}) or empty")
        if not (0 <= x0 < x1 <= self._width and 0 <= y0 < y1 <= self._height):
            raise ValueError(
                f"box {(x0, y0, x1, y1)} outside the {self._width}×{self._height} image or empty"
            )
        return self._to_output(self._read_region(t0, t1, y0, y1, x0, x1), t1 - t0)

    def read_frame(self, t: int, step: int = 1) -> np.ndarray:
        """See :meth:`MovieReader.read_frame` (a stepped read still decodes whole chunks)."""
        if not 0 <= t < self._n_frames:
            raise ValueError(f"frame {t} outside [0, {self._n_frames})")
        step = max(1, int(step))
        selection = self._selection(t, t + 1, 0, self._height, 0, self._width, step)
        return self._to_output(self._read_direct(selection), 1)[0]

    def _selection(
        self, t0: int, t1: int, y0: int, y1: int, x0: int, x1: int, step: int = 1
    ) -> tuple[slice, ...]:
        """The array selection of a window, in the array's own axis order (all channels)."""
        spans = {"t": slice(t0, t1), "y": slice(y0, y1, step), "x": slice(x0, x1, step)}
        return tuple(spans.get(axis, slice(None)) for axis in self.image.axes)

    def _to_output(self, region: np.ndarray, n_frames: int) -> np.ndarray:
        """``T×Y×X`` / ``T×C×Y×X`` from a region in the array's axis order."""
        axes = self.image.axes
        order = [axes.index(a) for a in ("t", "c") if a in axes]
        squeeze = tuple(i for i, a in enumerate(axes) if a == "z")
        view = np.transpose(region, [*order, *squeeze, len(axes) - 2, len(axes) - 1])
        ny, nx = view.shape[-2:]
        out = np.ascontiguousarray(view, dtype=self._dtype)
        return out.reshape(self._out_shape(n_frames, ny, nx))

    def _read_direct(self, selection: tuple[slice, ...]) -> np.ndarray:
        try:
            return np.asarray(self._array[selection])
        except Exception as exc:
            raise MovieError(
                self.image.array.path, f"cannot read image data ({type(exc).__name__}: {exc})"
            ) from exc

    def _read_region(self, t0: int, t1: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The window in the array's axis order, assembled from (cached) decoded chunks."""
        selection = self._selection(t0, t1, y0, y1, x0, x1)
        shape = self._file_shape
        bounds = [
            (s.start or 0, shape[i] if s.stop is None else s.stop) for i, s in enumerate(selection)
        ]
        ranges = [range(lo // c, (hi - 1) // c + 1) for (lo, hi), c in zip(bounds, self._chunks)]
        itemsize = self._dtype.itemsize
        chunk_bytes = math.prod(self._chunks) * itemsize
        touched = math.prod(len(r) for r in ranges)
        if touched * chunk_bytes > self._cache.capacity // 2:
            return self._read_direct(selection)
        found: dict[tuple[int, ...], np.ndarray] = {}
        missing: list[tuple[int, ...]] = []
        for index in itertools.product(*ranges):
            chunk = self._cache.get(index)
            if chunk is None:
                missing.append(index)
            else:
                found[index] = chunk
        if missing:
            # one zarr call for the chunk-aligned box around the missing chunks (decoding
            # happens in zarr's thread pool); every chunk in it is kept
            first = [min(m[i] for m in missing) for i in range(len(shape))]
            stop = [max(m[i] for m in missing) + 1 for i in range(len(shape))]
            block = self._read_direct(
                tuple(
                    slice(a * c, min(b * c, n))
                    for a, b, c, n in zip(first, stop, self._chunks, shape)
                )
            )
            for index in itertools.product(*(range(a, b) for a, b in zip(first, stop))):
                part = block[
                    tuple(
                        slice((i - a) * c, (i - a + 1) * c)
                        for i, a, c in zip(index, first, self._chunks)
                    )
                ]
                chunk = np.array(part, copy=True)  # not a view: the block is let go
                self._cache.put(index, chunk)
                found[index] = chunk
        dtype = next(iter(found.values())).dtype
        out = np.empty([hi - lo for lo, hi in bounds], dtype=dtype)
        for index, chunk in found.items():
            src, dst = [], []
            for axis, (i, (lo, hi)) in enumerate(zip(index, bounds)):
                base = i * self._chunks[axis]
                start, stop = max(lo, base), min(hi, base + self._chunks[axis])
                src.append(slice(start - base, stop - base))
                dst.append(slice(start - lo, stop - lo))
            out[tuple(dst)] = chunk[tuple(src)]
        return out

    # -- lifetime ------------------------------------------------------------------------

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded chunks held."""
        return self._cache.nbytes

    def close(self) -> None:
        """Drop the cached chunks (idempotent; the zarr array holds no open file)."""
        cache = getattr(self, "_cache", None)
        if cache is not None:
            cache.clear()

    def __repr__(self) -> str:
        return f"ZarrMovieReader({str(self.path)!r}, axes={self.axes!r}, shape={self.shape})"
