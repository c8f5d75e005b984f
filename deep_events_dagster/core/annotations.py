"""napari point- and shapes-layer CSVs: finding, parsing, scaling and validating annotations.

A napari points layer saved as CSV has one row per point and the columns

* 3-axis files: ``axis-0`` (frame), ``axis-1`` (y, row), ``axis-2`` (x, column);
* 4-axis files: ``axis-0`` (frame), ``axis-1`` (channel), ``axis-2`` (y), ``axis-3`` (x);

plus an optional ``index`` column, which is *not* a key (duplicates are fine and it is ignored).
napari writes frames as floats (``3.0``); they must be integral within ``1e-6``.

Coordinates are converted to pixels according to ``scale_csv`` (from ``db.yaml``):

* ``True`` — the CSV holds physical units (µm); y and x are divided by ``physical_size_x``;
* ``False`` — the CSV holds pixels; used as is;
* ``"inverse"`` — y and x are multiplied by ``physical_size_x``.

Rows are numbered from 0, the first line after the header (napari's own ``index``); messages
also give the 1-based line number in the file (header = line 1).

Points outside the movie are not an error at parse time: :func:`validate_points` reports them
so a failing check can name the file and rows (the original drew them onto the border, wrapped
frame −1 to the last frame, or zeroed the whole frame).

**Line annotations** (annotation kinds of type ``lines``, e.g. mitochondrial pearling) are napari
*shapes* layers saved as CSV (:func:`read_napari_shapes`): one row per vertex with the columns
``index`` (the shape; here it *is* the key), ``shape-type``, ``vertex-index`` and the axes as for
points (``axis-0`` the frame, then y, x, or channel, y, x). ``line`` and ``path`` (polyline)
shapes are accepted; every vertex of a shape must lie in the same frame (and channel). Units and
``scale_csv`` are as for points. :func:`validate_lines` reports vertices outside the movie.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from deep_events_dagster.core.errors import AnnotationError, ConfigurationError

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

ScaleMode = bool | Literal["inverse"]

FRAME_TOLERANCE = 1e-6

_LAYOUT_3 = ("axis-0", "axis-1", "axis-2")
_LAYOUT_4 = ("axis-0", "axis-1", "axis-2", "axis-3")
_EXPECTED = (
    "expected columns axis-0 (frame), axis-1 (y), axis-2 (x) "
    "or axis-0 (frame), axis-1 (channel), axis-2 (y), axis-3 (x)"
)
_SHAPE_KEYS = ("index", "shape-type", "vertex-index")
_EXPECTED_SHAPES = (
    "a napari shapes CSV has the columns index, shape-type, vertex-index, then axis-0 (frame), "
    "axis-1 (y), axis-2 (x) or axis-0 (frame), axis-1 (channel), axis-2 (y), axis-3 (x)"
)
LINE_SHAPE_TYPES = ("line", "path")
"""napari shape types drawn as lines (a ``path`` is a polyline)."""


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


@dataclass(frozen=True)
class PointProblem:
    """A point (or a line, see :func:`validate_lines`) that lies outside the movie;
    ``reason`` says which bound it breaks."""

    file: str
    row: int
    reason: str


def find_annotation_files(folder: str | Path, kind: str) -> list[Path]:
    """Return the annotation CSVs ``<kind>*.csv`` directly in ``folder``, sorted by name.

    The prefix match is case-sensitive and the search is not recursive. A missing folder
    yields an empty list.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.startswith(kind) and p.name.endswith(".csv")
    ]
    return sorted(found, key=lambda p: p.name)


def normalise_scale_mode(value: object) -> ScaleMode:
    """Turn a ``scale_csv`` value (bool, 0/1, "true"/"false"/"inverse", None) into a mode.

    ``None`` means the default, ``True``. Anything else raises :class:`ConfigurationError`.
    """
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "inverse":
            return "inverse"
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
    raise ConfigurationError(
        f"scale_csv must be true, false or 'inverse' (or a mapping kind → one of these), "
        f"got {value!r}"
    )


def resolve_scale_csv(scale_csv: object, kind: str) -> ScaleMode:
    """Return the scale mode for annotation ``kind``.

    Parameters
    ----------
    scale_csv
        The ``scale_csv`` value from ``db.yaml``: a bool (or "inverse") for all kinds, or a
        mapping kind → bool/"inverse". A kind missing from the mapping gets ``True``.
    kind
        Annotation kind (CSV file-name prefix).
    """
    if isinstance(scale_csv, Mapping):
        return normalise_scale_mode(scale_csv.get(kind, True))
    return normalise_scale_mode(scale_csv)


def _line(row: int) -> str:
    return f"row {row} (line {row + 2})"


def _numeric_column(path: Path, df: pd.DataFrame, column: str) -> np.ndarray:
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    spelled_nan = raw.str.strip().str.lower().isin(["nan", "-nan", "+nan"]).to_numpy()
    bad_text = np.isnan(values) & raw.notna().to_numpy() & ~spelled_nan
    if bad_text.any():
        row = int(np.flatnonzero(bad_text)[0])
        raise AnnotationError(
            path,
            f"non-numeric value {raw.iloc[row]!r} in column {column}, {_line(row)}",
        )
    not_finite = ~np.isfinite(values)
    if not_finite.any():
        row = int(np.flatnonzero(not_finite)[0])
        what = "missing value (NaN)" if np.isnan(values[row]) else f"infinite value {values[row]}"
        raise AnnotationError(path, f"{what} in column {column}, {_line(row)}")
    return values


def _integral(path: Path, values: np.ndarray, column: str, what: str) -> np.ndarray:
    rounded = np.round(values)
    off = np.abs(values - rounded) > FRAME_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise AnnotationError(
            path,
            f"{what} must be a whole number, got {values[row]!r} in column {column}, {_line(row)}",
        )
    return rounded.astype(np.int64)


def _scale_factor(path: Path, scale_csv: object, physical_size_x: float | None) -> float:
    """The factor turning CSV coordinates into pixels (see the module docstring)."""
    mode = normalise_scale_mode(scale_csv)
    if mode is False:
        return 1.0
    valid = (
        physical_size_x is not None
        and isinstance(physical_size_x, (int, float, np.number))
        and math.isfinite(float(physical_size_x))
        and float(physical_size_x) > 0
    )
    if not valid:
        raise AnnotationError(
            path,
            f"scale_csv is {mode!r} but the movie's physical_size_x is "
            f"{'missing' if physical_size_x is None else repr(physical_size_x)}; "
            "set scale_csv: false if the CSV is in pixels",
        )
    size = float(physical_size_x)  # type: ignore[arg-type]
    return 1.0 / size if mode is True else size


def _read_table(path: Path, noun: str) -> pd.DataFrame:
    """The CSV as strings (empty cells NaN), column names stripped."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise AnnotationError(path, f"file is empty (no header, no {noun})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AnnotationError(path, f"not a readable CSV: {exc}") from None
    except OSError as exc:
        raise AnnotationError(path, f"cannot read file: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _coordinates(
    path: Path, df: pd.DataFrame, layout: tuple[str, ...], factor: float
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """``(frames, channels or None, ys, xs)`` of every row, y and x scaled to pixels."""
    frames = _integral(path, _numeric_column(path, df, "axis-0"), "axis-0", "frame")
    if layout is _LAYOUT_4:
        channels = _integral(path, _numeric_column(path, df, "axis-1"), "axis-1", "channel")
        ys = _numeric_column(path, df, "axis-2")
        xs = _numeric_column(path, df, "axis-3")
    else:
        channels = None
        ys = _numeric_column(path, df, "axis-1")
        xs = _numeric_column(path, df, "axis-2")
    if factor != 1.0:
        ys = ys * factor
        xs = xs * factor
    return frames, channels, ys, xs


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
    factor = _scale_factor(path, scale_csv, physical_size_x)
    df = _read_table(path, "points")
    columns = set(df.columns)
    layout = _LAYOUT_4 if "axis-3" in columns else _LAYOUT_3
    missing = [c for c in layout if c not in columns]
    if missing:
        raise AnnotationError(
            path,
            f"missing column(s) {', '.join(missing)}; {_EXPECTED}; found {list(df.columns)}",
        )
    if len(df) == 0:
        raise AnnotationError(path, "no points (the file has only a header)")
    frames, channels, ys, xs = _coordinates(path, df, layout, factor)

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


def _rows_text(rows: Sequence[int]) -> str:
    return ", ".join(_line(int(r)) for r in rows)


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
    factor = _scale_factor(path, scale_csv, physical_size_x)
    df = _read_table(path, "shapes")
    columns = set(df.columns)
    layout = _LAYOUT_4 if "axis-3" in columns else _LAYOUT_3
    missing = [c for c in (*_SHAPE_KEYS, *layout) if c not in columns]
    if missing:
        raise AnnotationError(
            path,
            f"missing column(s) {', '.join(missing)}; {_EXPECTED_SHAPES}; found {list(df.columns)}",
        )
    if len(df) == 0:
        raise AnnotationError(path, "no shapes (the file has only a header)")

    shape_ids = _integral(path, _numeric_column(path, df, "index"), "index", "shape index")
    types = df["shape-type"]
    for row, raw in enumerate(types.tolist()):
        if not isinstance(raw, str) or not raw.strip():
            raise AnnotationError(path, f"missing shape type in column shape-type, {_line(row)}")
        kind = raw.strip().lower()
        if kind not in LINE_SHAPE_TYPES:
            raise AnnotationError(
                path,
                f"shape type {raw.strip()!r} in column shape-type, {_line(row)} (shape index "
                f"{int(shape_ids[row])}) cannot be drawn as a line; only line and path shapes "
                "are supported (not rectangle, ellipse or polygon)",
            )
    kinds = [str(t).strip().lower() for t in types.tolist()]
    vertex_ids = _integral(
        path, _numeric_column(path, df, "vertex-index"), "vertex-index", "vertex index"
    )
    frames, channels, ys, xs = _coordinates(path, df, layout, factor)

    by_shape: dict[int, list[int]] = {}
    for row, shape in enumerate(shape_ids.tolist()):
        by_shape.setdefault(int(shape), []).append(row)

    file = str(csv_path)
    lines: list[LineAnnotation] = []
    for shape in sorted(by_shape):
        rows = sorted(by_shape[shape], key=lambda r: (int(vertex_ids[r]), r))
        what = f"shape index {shape}"
        if len({kinds[r] for r in rows}) > 1:
            listed = ", ".join(f"{kinds[r]!r} at {_line(r)}" for r in rows)
            raise AnnotationError(path, f"{what} mixes shape types: {listed}")
        if len(rows) < 2:
            raise AnnotationError(
                path,
                f"{what} has a single vertex ({_line(rows[0])}); a line needs at least 2",
            )
        seen: dict[int, int] = {}
        for r in rows:
            v = int(vertex_ids[r])
            if v in seen:
                raise AnnotationError(
                    path,
                    f"{what} repeats vertex-index {v} ({_line(seen[v])} and {_line(r)})",
                )
            seen[v] = r
        if len({int(frames[r]) for r in rows}) > 1:
            listed = ", ".join(f"frame {int(frames[r])} at {_line(r)}" for r in rows)
            raise AnnotationError(
                path,
                f"{what} has vertices in different frames ({listed}); a napari shape lies "
                "in one frame: draw one shape per frame",
            )
        if channels is not None and len({int(channels[r]) for r in rows}) > 1:
            listed = ", ".join(f"channel {int(channels[r])} at {_line(r)}" for r in rows)
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


def _fmt(value: float) -> str:
    return str(round(float(value), 3))


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
    pixel_size = _pixel_size(metadata, physical_size_x)
    points: list[AnnotationPoint] = []
    for path in files:
        points.extend(read_napari_points(path, scale_csv=scale, physical_size_x=pixel_size))
    return points, files


def _pixel_size(metadata: Mapping[str, Any], physical_size_x: float | None) -> float | None:
    return (metadata.get("ome") or {}).get("physical_size_x", physical_size_x)


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
    pixel_size = _pixel_size(metadata, physical_size_x)
    lines: list[LineAnnotation] = []
    for path in files:
        lines.extend(read_napari_shapes(path, scale_csv=scale, physical_size_x=pixel_size))
    return lines, files


def validate_points(
    points: Iterable[AnnotationPoint],
    *,
    n_frames: int,
    height: int,
    width: int,
    n_channels: int = 1,
) -> list[PointProblem]:
    """Report the points that lie outside the movie.

    A point is inside when ``0 ≤ frame < n_frames``, ``0 ≤ y ≤ height − 1``,
    ``0 ≤ x ≤ width − 1`` (pixel centres; no rounding) and, for 4-axis files,
    ``0 ≤ channel < n_channels``. One problem per bad point, naming every bound it breaks.
    """
    problems: list[PointProblem] = []
    for p in points:
        reasons = _frame_channel_reasons(p.frame, p.channel, n_frames, n_channels)
        reasons.extend(_yx_reasons(p.y, p.x, height, width))
        if reasons:
            problems.append(PointProblem(file=p.file, row=p.row, reason=", ".join(reasons)))
    return problems


def _frame_channel_reasons(
    frame: int, channel: int | None, n_frames: int, n_channels: int
) -> list[str]:
    reasons: list[str] = []
    if frame < 0:
        reasons.append(f"frame {frame} < 0")
    elif frame >= n_frames:
        reasons.append(f"frame {frame} ≥ {n_frames} frames")
    if channel is not None:
        if channel < 0:
            reasons.append(f"channel {channel} < 0")
        elif channel >= n_channels:
            reasons.append(f"channel {channel} ≥ {n_channels} channels")
    return reasons


def _yx_reasons(y: float, x: float, height: int, width: int) -> list[str]:
    reasons: list[str] = []
    for name, value, size, dim in (("y", y, height, "height"), ("x", x, width, "width")):
        if value < 0:
            reasons.append(f"{name}={_fmt(value)} < 0")
        elif value > size - 1:
            reasons.append(f"{name}={_fmt(value)} > {size - 1} ({dim} {size})")
    return reasons


def validate_lines(
    lines: Iterable[LineAnnotation],
    *,
    n_frames: int,
    height: int,
    width: int,
    n_channels: int = 1,
) -> list[PointProblem]:
    """Report the lines that lie (partly) outside the movie.

    The bounds are those of :func:`validate_points`, applied to the shape's frame and channel
    and to every vertex. One problem per bad line, with ``row`` its first vertex's row and a
    reason naming the shape index and each bad vertex's row, e.g. ``shape index 2: frame 10 ≥
    10 frames; vertex 1 (row 5): x=900.0 > 499 (width 500)``. Pass the problems to
    :func:`format_problems` with ``noun="line"``.
    """
    problems: list[PointProblem] = []
    for line in lines:
        reasons = _frame_channel_reasons(line.frame, line.channel, n_frames, n_channels)
        for k, (y, x) in enumerate(line.vertices):
            bad = _yx_reasons(y, x, height, width)
            if bad:
                row = line.rows[k] if k < len(line.rows) else None
                where = f"vertex {k}" + (f" (row {row})" if row is not None else "")
                reasons.append(f"{where}: {', '.join(bad)}")
        if reasons:
            first_row = line.rows[0] if line.rows else 0
            problems.append(
                PointProblem(
                    file=line.file,
                    row=first_row,
                    reason=f"shape index {line.index}: {'; '.join(reasons)}",
                )
            )
    return problems


def format_problems(
    problems: Sequence[PointProblem],
    points: Iterable[AnnotationPoint] | Iterable[LineAnnotation] | None = None,
    *,
    max_rows: int = 5,
    noun: str = "point",
) -> str:
    """Summarise problems per file, one line each.

    Example: ``points.csv: 3 of 12 points outside the movie (row 4: x=812.0 > 799 (width 800);
    row 7: frame 100 ≥ 100 frames; row 9: y=-2.0 < 0)``. ``of N`` appears when ``points``
    (all points read) is given; at most ``max_rows`` rows are listed per file. ``noun`` names
    the items (``"line"`` for the problems of :func:`validate_lines`, with the lines read as
    ``points``).
    """
    if not problems:
        return ""
    totals: dict[str, int] = {}
    if points is not None:
        for p in points:
            totals[p.file] = totals.get(p.file, 0) + 1
    by_file: dict[str, list[PointProblem]] = {}
    for prob in problems:
        by_file.setdefault(prob.file, []).append(prob)
    lines = []
    for file in sorted(by_file):
        items = sorted(by_file[file], key=lambda q: q.row)
        count = f"{len(items)} of {totals[file]}" if file in totals else f"{len(items)}"
        word = noun if (totals.get(file, len(items)) == 1) else f"{noun}s"
        listed = "; ".join(f"row {q.row}: {q.reason}" for q in items[:max_rows])
        more = f"; … and {len(items) - max_rows} more" if len(items) > max_rows else ""
        lines.append(f"{file}: {count} {word} outside the movie ({listed}{more})")
    return "\n".join(lines)
