"""napari shapes CSVs of line annotations: :class:`LineAnnotation` and its readers.

**Line annotations** (annotation kinds of type ``lines``, e.g. mitochondrial pearling) are napari
*shapes* layers saved as CSV (:func:`read_napari_shapes`): one row per vertex with the columns
``index`` (the shape; here it *is* the key), ``shape-type``, ``vertex-index`` and the axes as for
points (``axis-0`` the frame, then y, x, or channel, y, x). ``line`` and ``path`` (polyline)
shapes are accepted; every vertex of a shape must lie in the same frame (and channel). Units and
``scale_csv`` are as for points (:mod:`deep_events_dagster.core.annotation_csv`);
:func:`~deep_events_dagster.core.annotation_bounds.validate_lines` reports vertices outside the
movie.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deep_events_dagster.core.annotation_csv import (
    LAYOUT_3,
    LAYOUT_4,
    coordinates,
    find_annotation_files,
    integral_values,
    metadata_pixel_size,
    numeric_column,
    read_table,
    resolve_scale_csv,
    row_text,
    scale_factor,
)
from deep_events_dagster.core.errors import AnnotationError

__all__ = ["LINE_SHAPE_TYPES", "LineAnnotation", "read_kind_lines", "read_napari_shapes"]

_SHAPE_KEYS = ("index", "shape-type", "vertex-index")
_EXPECTED_SHAPES = (
    "a napari shapes CSV has the columns index, shape-type, vertex-index, then axis-0 (frame), "
    "axis-1 (y), axis-2 (x) or axis-0 (frame), axis-1 (channel), axis-2 (y), axis-3 (x)"
)
LINE_SHAPE_TYPES = ("line", "path")
"""napari shape types drawn as lines (a ``path`` is a polyline)."""


@dataclass(frozen=True)
class LineAnnotation:
    """One annotated line or polyline (a napari ``line`` or ``path`` shape), in pixels.

    Attributes
    ----------
    frame
        Frame (time) index; every vertex of a napari shape lies in this frame.
    vertices
        ``(y, x)`` pairs in pixels, in ``vertex-index`` order (at least two).
    channel
        Channel index for 4-axis files, ``None`` for 3-axis files.
    file
        The CSV the shape came from (as the path was given).
    index
        The shape's napari ``index`` in that file.
    rows
        0-based data rows of the vertices in that CSV, in vertex order (row ``r`` is line
        ``r + 2`` of the file).
    """

    frame: int
    vertices: tuple[tuple[float, float], ...]
    channel: int | None
    file: str
    index: int
    rows: tuple[int, ...]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(y_min, y_max, x_min, x_max)`` of the vertices (pixel centres, inclusive)."""
        ys = [v[0] for v in self.vertices]
        xs = [v[1] for v in self.vertices]
        return min(ys), max(ys), min(xs), max(xs)

    @property
    def center(self) -> tuple[float, float]:
        """``(y, x)``: the centre of the vertices' bounding box."""
        y0, y1, x0, x1 = self.bounds
        return (y0 + y1) / 2.0, (x0 + x1) / 2.0


def read_napari_shapes(
    csv_path: str | Path,
    *,
    scale_csv: object,
    physical_size_x: float | None,
) -> list[LineAnnotation]:
    """Read a napari shapes CSV of lines and paths and return them in pixels.

    Parameters
    ----------
    csv_path
        The CSV file: one row per vertex, columns ``index`` (the shape), ``shape-type``,
        ``vertex-index``, then ``axis-0`` (frame), ``axis-1`` (y), ``axis-2`` (x), or with
        4 axes ``axis-0`` (frame), ``axis-1`` (channel), ``axis-2`` (y), ``axis-3`` (x).
    scale_csv, physical_size_x
        Units, as for :func:`read_napari_points`.

    Returns
    -------
    list[LineAnnotation]
        One per shape, ordered by the shape ``index``; vertices ordered by ``vertex-index``.

    Raises
    ------
    AnnotationError
        Empty or header-only file; missing columns; non-numeric / NaN / infinite values;
        non-integral index, vertex index, frame or channel; a shape type other than ``line``
        and ``path`` (rectangle, ellipse, polygon); a shape whose vertices disagree on the
        shape type, the frame or the channel, repeat a vertex index, or number fewer than two;
        scaling asked for without a usable pixel size. The message starts with the CSV path
        and names the row(s) (0-based, and the 1-based line of the file).
    """
    path = Path(csv_path)
    factor = scale_factor(path, scale_csv, physical_size_x)
    df = read_table(path, "shapes")
    columns = set(df.columns)
    layout = LAYOUT_4 if "axis-3" in columns else LAYOUT_3
    missing = [c for c in (*_SHAPE_KEYS, *layout) if c not in columns]
    if missing:
        raise AnnotationError(
            path,
            f"missing column(s) {', '.join(missing)}; {_EXPECTED_SHAPES}; found {list(df.columns)}",
        )
    if len(df) == 0:
        raise AnnotationError(path, "no shapes (the file has only a header)")

    shape_ids = integral_values(path, numeric_column(path, df, "index"), "index", "shape index")
    types = df["shape-type"]
    for row, raw in enumerate(types.tolist()):
        if not isinstance(raw, str) or not raw.strip():
            raise AnnotationError(path, f"missing shape type in column shape-type, {row_text(row)}")
        kind = raw.strip().lower()
        if kind not in LINE_SHAPE_TYPES:
            raise AnnotationError(
                path,
                f"shape type {raw.strip()!r} in column shape-type, {row_text(row)} (shape index "
                f"{int(shape_ids[row])}) cannot be drawn as a line; only line and path shapes "
                "are supported (not rectangle, ellipse or polygon)",
            )
    kinds = [str(t).strip().lower() for t in types.tolist()]
    vertex_ids = integral_values(
        path, numeric_column(path, df, "vertex-index"), "vertex-index", "vertex index"
    )
    frames, channels, ys, xs = coordinates(path, df, layout, factor)

    by_shape: dict[int, list[int]] = {}
    for row, shape in enumerate(shape_ids.tolist()):
        by_shape.setdefault(int(shape), []).append(row)

    file = str(csv_path)
    lines: list[LineAnnotation] = []
    for shape in sorted(by_shape):
        rows = sorted(by_shape[shape], key=lambda r: (int(vertex_ids[r]), r))
        what = f"shape index {shape}"
        if len({kinds[r] for r in rows}) > 1:
            listed = ", ".join(f"{kinds[r]!r} at {row_text(r)}" for r in rows)
            raise AnnotationError(path, f"{what} mixes shape types: {listed}")
        if len(rows) < 2:
            raise AnnotationError(
                path,
                f"{what} has a single vertex ({row_text(rows[0])}); a line needs at least 2",
            )
        seen: dict[int, int] = {}
        for r in rows:
            v = int(vertex_ids[r])
            if v in seen:
                raise AnnotationError(
                    path,
                    f"{what} repeats vertex-index {v} ({row_text(seen[v])} and {row_text(r)})",
                )
            seen[v] = r
        if len({int(frames[r]) for r in rows}) > 1:
            listed = ", ".join(f"frame {int(frames[r])} at {row_text(r)}" for r in rows)
            raise AnnotationError(
                path,
                f"{what} has vertices in different frames ({listed}); a napari shape lies "
                "in one frame: draw one shape per frame",
            )
        if channels is not None and len({int(channels[r]) for r in rows}) > 1:
            listed = ", ".join(f"channel {int(channels[r])} at {row_text(r)}" for r in rows)
            raise AnnotationError(path, f"{what} has vertices in different channels ({listed})")
        lines.append(
            LineAnnotation(
                frame=int(frames[rows[0]]),
                vertices=tuple((float(ys[r]), float(xs[r])) for r in rows),
                channel=None if channels is None else int(channels[rows[0]]),
                file=file,
                index=int(shape),
                rows=tuple(int(r) for r in rows),
            )
        )
    return lines


def read_kind_lines(
    folder: str | Path,
    kind: str,
    metadata: Mapping[str, Any],
    physical_size_x: float | None = None,
) -> tuple[list[LineAnnotation], tuple[Path, ...]]:
    """Read every ``<kind>*.csv`` (napari shapes) of an acquisition folder, in pixels.

    The counterpart of :func:`read_kind_points` for an annotation kind of type ``lines``:
    same file discovery (:func:`find_annotation_files`), same units (``scale_csv`` of
    ``db.yaml``, the pixel size from ``ome.physical_size_x`` else ``physical_size_x``), no
    bound checks (see :func:`validate_lines`).

    Returns
    -------
    lines, files
        The lines of every file (file by file, each by shape index) and the files read.

    Raises
    ------
    AnnotationError
        A malformed CSV (the message names it and the row).
    """
    files = tuple(find_annotation_files(folder, kind))
    scale = resolve_scale_csv(metadata.get("scale_csv", True), kind)
    pixel_size = metadata_pixel_size(metadata, physical_size_x)
    lines: list[LineAnnotation] = []
    for path in files:
        lines.extend(read_napari_shapes(path, scale_csv=scale, physical_size_x=pixel_size))
    return lines, files
