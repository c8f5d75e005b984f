"""Read OME-TIFF movies: OME-XML to snake_case metadata, frame rate, shape checks.

OME-Zarr movies (``*.ome.zarr`` folders) go through the same :func:`read_movie_info`, which
hands them to :mod:`deep_events_dagster.core.zarr_movie`.
"""

from __future__ import annotations

import math
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tifffile

from deep_events_dagster.core.acquisitions import is_zarr_movie
from deep_events_dagster.core.errors import MovieError

_TIME_UNITS_IN_SECONDS = {
    "s": 1.0,
    "sec": 1.0,
    "ms": 1e-3,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "us": 1e-6,
    "ns": 1e-9,
    "ps": 1e-12,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
SIGNIFICANT_DIGITS = 9
"""Frame intervals and rates are rounded to this many significant digits (tidy YAML, never 0)."""


@dataclass(frozen=True)
class MovieInfo:
    """What the platform needs to know about one movie.

    ``frame_interval_s`` is the time between frames in seconds and :attr:`fps` the frame
    rate in frames per second (an OME TimeIncrement of 5000 ms gives ``frame_interval_s: 5.0``
    and ``fps: 0.2``); both are ``None`` when the OME-XML holds no time information.
    """

    path: Path
    axes: str
    shape: tuple[int, ...]
    dtype: str
    n_frames: int
    n_channels: int
    height: int
    width: int
    physical_size_x: float | None
    physical_size_y: float | None
    frame_interval_s: float | None
    ome: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def fps(self) -> float | None:
        """Frames per second, ``1 / frame_interval_s`` (``None`` without time information)."""
        return frames_per_second(self.frame_interval_s)


def snake_case(name: str) -> str:
    """Convert an OME name to snake_case (``PhysicalSizeX`` → ``physical_size_x``)."""
    name = name.split("}")[-1]
    if name.isupper():
        return name.lower()
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    name = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", name)
    return name.lower()


def _convert(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _element_to_dict(element: ET.Element) -> dict[str, Any]:
    result: dict[str, Any] = {snake_case(k): _convert(v) for k, v in element.attrib.items()}
    children: dict[str, list[Any]] = {}
    for child in element:
        children.setdefault(snake_case(child.tag), []).append(_element_to_dict(child))
    for key, values in children.items():
        result[key] = values[0] if len(values) == 1 else values
    text = (element.text or "").strip()
    if text and not result:
        return {"value": _convert(text)}
    return result


def parse_ome_xml(xml: str, *, source: str | Path = "<ome-xml>") -> dict[str, Any]:
    """Parse OME-XML into the ``ome:`` mapping of ``db.yaml``.

    Parameters
    ----------
    xml
        The OME-XML document (the first IFD's ImageDescription).
    source
        The file the XML came from, used in error messages.

    Returns
    -------
    dict
        Pixels attributes in snake_case (``size_x``, ``physical_size_x``, ``time_increment``…),
        ``channel`` (a mapping, or a list for several channels), ``instrument`` and ``planes``
        (a list of plane mappings with ``the_t``, ``the_c``, ``delta_t``…).
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise MovieError(source, f"OME-XML is not valid XML ({exc})") from exc
    ns = {"ome": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}

    def find(parent: ET.Element, tag: str) -> ET.Element | None:
        return parent.find(f"ome:{tag}", ns) if ns else parent.find(tag)

    def findall(parent: ET.Element, tag: str) -> list[ET.Element]:
        return parent.findall(f"ome:{tag}", ns) if ns else parent.findall(tag)

    image = find(root, "Image")
    pixels = find(image, "Pixels") if image is not None else None
    if pixels is None:
        raise MovieError(source, "OME-XML has no Image/Pixels element")
    ome: dict[str, Any] = {snake_case(k): _convert(v) for k, v in pixels.attrib.items()}
    channels = [
        {snake_case(k): _convert(v) for k, v in c.attrib.items()}
        for c in findall(pixels, "Channel")
    ]
    if channels:
        ome["channel"] = channels[0] if len(channels) == 1 else channels
    instrument = find(root, "Instrument")
    if instrument is not None:
        ome["instrument"] = _element_to_dict(instrument)
    planes = [
        {snake_case(k): _convert(v) for k, v in p.attrib.items()} for p in findall(pixels, "Plane")
    ]
    if planes:
        ome["planes"] = planes
    return ome


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (a non-zero value stays non-zero)."""
    return float(f"{float(value):.{digits}g}")


def seconds(value: Any, unit: Any = None) -> float | None:
    """A time in seconds from an OME value and its unit (OME's default unit is seconds).

    Returns ``None`` when the value is not a finite number or the unit is unknown.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    unit_text = "s" if unit is None or str(unit).strip() == "" else str(unit).strip()
    factor = _TIME_UNITS_IN_SECONDS.get(unit_text)
    return None if factor is None else number * factor


def frames_per_second(interval_s: float | None) -> float | None:
    """The frame rate ``1 / interval_s`` in frames per second, to 9 significant digits.

    Parameters
    ----------
    interval_s
        Frame interval in seconds.

    Returns
    -------
    float or None
        ``None`` when ``interval_s`` is ``None`` or not a positive finite number.
    """
    if interval_s is None:
        return None
    try:
        interval = float(interval_s)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(interval) or interval <= 0:
        return None
    return round_significant(1.0 / interval)


def frame_interval_seconds(ome: Mapping[str, Any]) -> float | None:
    """Frame interval in seconds from plane DeltaT (mean step over time), else TimeIncrement.

    Units are honoured (``delta_t_unit``, ``time_increment_unit``; seconds when absent). The
    result is rounded to 9 significant digits, so even sub-millisecond intervals stay exact
    enough and never round to zero.

    Parameters
    ----------
    ome
        The ``ome:`` mapping of :func:`parse_ome_xml` (or of a ``db.yaml``/``event_db.yaml``,
        which has no ``planes``).

    Returns
    -------
    float or None
        ``None`` when neither is present (or usable) or the movie has a single frame.
    """
    planes = []
    raw_planes = ome.get("planes", [])
    if isinstance(raw_planes, Mapping):
        raw_planes = [raw_planes]
    for p in raw_planes if isinstance(raw_planes, list) else []:
        if not isinstance(p, Mapping) or "delta_t" not in p:
            continue
        try:
            if int(p.get("the_c", 0)) == 0 and int(p.get("the_z", 0)) == 0:
                planes.append(p)
        except (TypeError, ValueError):
            continue
    if len(planes) >= 2:
        try:
            planes.sort(key=lambda p: int(p.get("the_t", 0)))
            steps = int(planes[-1].get("the_t", 0)) - int(planes[0].get("the_t", 0))
        except (TypeError, ValueError):
            steps = 0
        first = seconds(planes[0]["delta_t"], planes[0].get("delta_t_unit"))
        last = seconds(planes[-1]["delta_t"], planes[-1].get("delta_t_unit"))
        if steps > 0 and first is not None and last is not None and last > first:
            return round_significant((last - first) / steps)
    if "time_increment" in ome:
        interval = seconds(ome["time_increment"], ome.get("time_increment_unit"))
        if interval is not None and interval > 0:
            return round_significant(interval)
    return None


def read_movie_info(path: str | Path, *, verify_pages: bool = True) -> MovieInfo:
    """Open an OME-TIFF (or OME-Zarr) movie and check it is complete and consistent.

    Parameters
    ----------
    path
        The ``*.ome.tif[f]`` file, or a ``*.ome.zarr`` folder (read by
        :func:`deep_events_dagster.core.zarr_movie.read_zarr_movie_info`).
    verify_pages
        Also decode the first and last planes, which catches truncated files (for OME-Zarr:
        also check that every chunk of the declared shape is present).

    Returns
    -------
    MovieInfo

    Raises
    ------
    MovieError
        Unreadable or truncated TIFF, no OME-XML, or OME sizes disagreeing with the pages.
    """
    path = Path(path)
    if is_zarr_movie(path):
        from deep_events_dagster.core.zarr_movie import read_zarr_movie_info

        return read_zarr_movie_info(path, verify_pages=verify_pages)
    try:
        with tifffile.TiffFile(path) as tif:
            description = tif.pages.first.description if len(tif.pages) else ""
            if not tif.is_ome or "<OME" not in (description or ""):
                raise MovieError(path, "not an OME-TIFF: the first page has no OME-XML metadata")
            ome = parse_ome_xml(description, source=path)
            n_pages = len(tif.pages)
            size_t = int(ome.get("size_t", 1))
            size_c = int(ome.get("size_c", 1))
            size_z = int(ome.get("size_z", 1))
            if size_t * size_c * size_z != n_pages:
                raise MovieError(
                    path,
                    f"OME header promises SizeT={size_t} × SizeC={size_c} × SizeZ={size_z} = "
                    f"{size_t * size_c * size_z} planes but the file holds {n_pages} pages"
                    + _truncation_note(tif, size_t * size_c * size_z),
                )
            if size_z != 1:
                raise MovieError(path, f"z-stacks are not supported (SizeZ={size_z})")
            first = tif.pages.first
            height, width = int(first.shape[-2]), int(first.shape[-1])
            if (int(ome.get("size_y", height)), int(ome.get("size_x", width))) != (height, width):
                raise MovieError(
                    path,
                    f"OME header says {ome.get('size_x')}×{ome.get('size_y')} px but pages are "
                    f"{width}×{height} px",
                )
            dtype = str(first.dtype)
            if verify_pages:
                for page in (tif.pages[0], tif.pages[n_pages - 1]):
                    page.asarray()
    except MovieError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise MovieError(path, f"cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    axes = "TCYX" if size_c > 1 else "TYX"
    shape = (size_t, size_c, height, width) if size_c > 1 else (size_t, height, width)
    return MovieInfo(
        path=path,
        axes=axes,
        shape=shape,
        dtype=dtype,
        n_frames=size_t,
        n_channels=size_c,
        height=height,
        width=width,
        physical_size_x=_float_or_none(ome.get("physical_size_x")),
        physical_size_y=_float_or_none(ome.get("physical_size_y")),
        frame_interval_s=frame_interval_seconds(ome),
        ome=ome,
    )


def _truncation_note(tif: tifffile.TiffFile, planes: int) -> str:
    """``"; the file is truncated …"`` when its chain of pages runs past the end of the file.

    A complete TIFF's last page says "no next page" (offset 0); a file cut short (still being
    copied, a full disk) has a last readable page pointing beyond the end, or no room left for
    the pointer at all. A header that merely disagrees with the pages gets no note.
    """
    try:
        fh = tif.filehandle
        fh.seek(tif.pages.next_page_offset)
        raw = fh.read(tif.tiff.offsetsize)
        if len(raw) == tif.tiff.offsetsize and struct.unpack(tif.tiff.offsetformat, raw)[0] == 0:
            return ""
        size = int(fh.size)
    except Exception:  # no claim when the file cannot even tell
        return ""
    return (
        f"; the file is truncated ({size} bytes, its page {len(tif.pages)} of {planes} points "
        "past the end; still being copied?)"
    )


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def ome_for_db(ome: dict[str, Any]) -> dict[str, Any]:
    """The ``ome:`` mapping written to ``db.yaml``: everything but the per-plane list."""
    return {k: v for k, v in ome.items() if k != "planes"}
