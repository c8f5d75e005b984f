"""napari points CSVs: :class:`AnnotationPoint` and its readers (and, re-exported, the rest).

A napari points layer saved as CSV has one row per point and the columns

* 3-axis files: ``axis-0`` (frame), ``axis-1`` (y, row), ``axis-2`` (x, column);
* 4-axis files: ``axis-0`` (frame), ``axis-1`` (channel), ``axis-2`` (y), ``axis-3`` (x);

plus an optional ``index`` column, which is *not* a key (duplicates are fine and it is ignored).
napari writes frames as floats (``3.0``); they must be integral within ``1e-6``. Units
(``scale_csv``), row numbering and file discovery are shared with the shapes files:
:mod:`~deep_events_dagster.core.annotation_csv`.

The rest of the annotations live beside this module and are importable from here: line
annotations (napari shapes CSVs) in :mod:`~deep_events_dagster.core.annotation_lines`, the
movie bounds of points and lines and their report in
:mod:`~deep_events_dagster.core.annotation_bounds`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deep_events_dagster.core.annotation_bounds import (
    PointProblem,
    format_problems,
    validate_lines,
    validate_points,
)
from deep_events_dagster.core.annotation_csv import (
    LAYOUT_3,
    LAYOUT_4,
    ScaleMode,
    coordinates,
    find_annotation_files,
    metadata_pixel_size,
    normalise_scale_mode,
    read_table,
    resolve_scale_csv,
    scale_factor,
)
from deep_events_dagster.core.annotation_lines import (
    LINE_SHAPE_TYPES,
    LineAnnotation,
    read_kind_lines,
    read_napari_shapes,
)
from deep_events_dagster.core.errors import AnnotationError

__all__ = [
    "LINE_SHAPE_TYPES",
    "AnnotationPoint",
    "LineAnnotation",
    "PointProblem",
    "ScaleMode",
    "find_annotation_files",
    "format_problems",
    "normalise_scale_mode",
    "read_kind_lines",
    "read_kind_points",
    "read_napari_points",
    "read_napari_shapes",
    "resolve_scale_csv",
    "validate_lines",
    "validate_points",
]

_EXPECTED = (
    "expected columns axis-0 (frame), axis-1 (y), axis-2 (x) "
    "or axis-0 (frame), axis-1 (channel), axis-2 (y), axis-3 (x)"
)


@dataclass(frozen=True)
class AnnotationPoint:
    """One annotated point, in pixels.

    Attributes
    ----------
    frame
        Frame (time) index.
    y, x
        Row and column in pixels (sub-pixel floats allowed; integer = pixel centre).
    channel
        Channel index for 4-axis files, ``None`` for 3-axis files.
    file
        The CSV the point came from (as the path was given).
    row
        0-based data row in that CSV (line ``row + 2`` of the file).
    """

    frame: int
    y: float
    x: float
    channel: int | None
    file: str
    row: int


def read_napari_points(
    csv_path: str | Path,
    *,
    scale_csv: object,
    physical_size_x: float | None,
) -> list[AnnotationPoint]:
    """Read a napari points CSV and return its points in pixels.

    Parameters
    ----------
    csv_path
        The CSV file.
    scale_csv
        ``True`` (coordinates in physical units, divided by ``physical_size_x``), ``False``
        (pixels) or ``"inverse"`` (multiplied by ``physical_size_x``). Use
        :func:`resolve_scale_csv` to get it from a per-kind mapping.
    physical_size_x
        Pixel size (µm per pixel); required and > 0 unless ``scale_csv`` is false.

    Returns
    -------
    list[AnnotationPoint]
        In file order.

    Raises
    ------
    AnnotationError
        Empty or header-only file, missing columns, non-numeric / NaN / infinite values,
        non-integral frames or channels, or scaling asked for without a usable pixel size.
        The message starts with the CSV path.
    """
    path = Path(csv_path)
    factor = scale_factor(path, scale_csv, physical_size_x)
    df = read_table(path, "points")
    columns = set(df.columns)
    layout = LAYOUT_4 if "axis-3" in columns else LAYOUT_3
    missing = [c for c in layout if c not in columns]
    if missing:
        raise AnnotationError(
            path,
            f"missing column(s) {', '.join(missing)}; {_EXPECTED}; found {list(df.columns)}",
        )
    if len(df) == 0:
        raise AnnotationError(path, "no points (the file has only a header)")
    frames, channels, ys, xs = coordinates(path, df, layout, factor)

    file = str(csv_path)
    return [
        AnnotationPoint(
            frame=int(frames[i]),
            y=float(ys[i]),
            x=float(xs[i]),
            channel=None if channels is None else int(channels[i]),
            file=file,
            row=i,
        )
        for i in range(len(df))
    ]


def read_kind_points(
    folder: str | Path,
    kind: str,
    metadata: Mapping[str, Any],
    physical_size_x: float | None = None,
) -> tuple[list[AnnotationPoint], tuple[Path, ...]]:
    """Read every ``<kind>*.csv`` of an acquisition folder, in pixels, without bound checks.

    Parameters
    ----------
    folder
        The acquisition folder.
    kind
        The annotation kind (CSV file-name prefix).
    metadata
        The acquisition's ``db.yaml``: ``scale_csv`` gives the units, ``ome.physical_size_x``
        the pixel size (else ``physical_size_x``).
    physical_size_x
        Pixel size in µm when the metadata has none.

    Raises
    ------
    AnnotationError
        A malformed CSV (the message names it).
    """
    files = tuple(find_annotation_files(folder, kind))
    scale = resolve_scale_csv(metadata.get("scale_csv", True), kind)
    pixel_size = metadata_pixel_size(metadata, physical_size_x)
    points: list[AnnotationPoint] = []
    for path in files:
        points.extend(read_napari_points(path, scale_csv=scale, physical_size_x=pixel_size))
    return points, files
