"""OME-Zarr metadata: NGFF 0.4 (zarr v2) and 0.5 (zarr v3) images parsed with the standard library.

:func:`read_ome_zarr` reads the JSON files (``.zattrs``/``.zarray`` for 0.4, ``zarr.json`` for
0.5; a ``bioformats2raw`` layout's first series is followed): axes ``t``/``c``/``z``/``y``/``x``
(``z`` of size 1 only), the full-resolution level (``multiscales[0].datasets[0]``), its
``scale`` transform and ``omero`` channels, into an :class:`OmeZarrImage` whose ``array`` is the
full-resolution :class:`ZarrArrayInfo` (shape, chunks, dtype, chunk keys). No pixel is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deep_events_dagster.core.errors import MovieError

__all__ = ["OmeZarrImage", "ZarrArrayInfo", "read_ome_zarr"]


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
