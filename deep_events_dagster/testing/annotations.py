"""napari annotation CSVs, written as napari writes them: points and shapes (lines).

- :func:`write_napari_points_csv` writes a points layer: header ``index,axis-0,...``, every
  value (the index too) a Python float; :func:`event_csv_rows` turns synthetic events into its
  rows (one point per event frame), in µm or in pixels.
- :func:`write_napari_shapes_csv` writes line/path shapes as napari's shapes writer does: one
  row per vertex with the columns ``index,shape-type,vertex-index,axis-0,axis-1,axis-2[,axis-3]``
  — ``axis-0`` the frame, then ``y, x`` (3 axes) or ``channel, y, x`` (4 axes); the shape and
  vertex indices as integers, coordinates as Python floats (``3.0``, ``10.25``).

Both write atomically with ``\\r\\n`` line endings (``csv.writer``'s defaults).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deep_events_dagster.core.fsutil import atomic_write_text

if TYPE_CHECKING:
    from deep_events_dagster.testing.movies import SyntheticEvent

__all__ = ["ShapeSpec", "event_csv_rows", "write_napari_points_csv", "write_napari_shapes_csv"]


# --------------------------------------------------------------------------------------------
# Points
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
# Shapes (lines)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeSpec:
    """One shape to write, in pixels.

    Attributes
    ----------
    frame
        Frame index (every vertex lies in it).
    vertices
        ``(y, x)`` pairs in vertex order.
    shape_type
        napari's type: ``"line"``, ``"path"`` (or, to write invalid files, anything else).
        ``None`` chooses ``line`` for two vertices and ``path`` otherwise.
    channel
        Channel written in 4-axis files (0 when ``None``).
    """

    frame: int
    vertices: tuple[tuple[float, float], ...]
    shape_type: str | None = None
    channel: int | None = None


def _as_spec(shape: Any) -> ShapeSpec:
    if isinstance(shape, ShapeSpec):
        return shape
    if hasattr(shape, "frame") and hasattr(shape, "vertices"):
        return ShapeSpec(
            frame=int(shape.frame),
            vertices=tuple((float(y), float(x)) for y, x in shape.vertices),
            shape_type=getattr(shape, "shape_type", None),
            channel=getattr(shape, "channel", None),
        )
    frame, vertices, *rest = shape
    return ShapeSpec(
        frame=int(frame),
        vertices=tuple((float(y), float(x)) for y, x in vertices),
        shape_type=rest[0] if rest else None,
    )


def write_napari_shapes_csv(
    path: str | Path,
    shapes: Iterable[Any],
    *,
    four_axes: bool = False,
    micrometres_per_pixel: float | None = None,
) -> Path:
    """Write line/path shapes as a napari shapes CSV.

    Parameters
    ----------
    path
        Target CSV (written atomically, ``\\r\\n`` line endings as ``csv.writer`` writes).
    shapes
        :class:`ShapeSpec` objects, :class:`~deep_events_dagster.core.annotations.
        LineAnnotation`-like objects (``.frame``, ``.vertices``, optional ``.channel``), or
        ``(frame, vertices)`` / ``(frame, vertices, shape_type)`` tuples; vertices ``(y, x)``
        in pixels. Shape ``i`` (in the given order) gets ``index`` ``i``.
    four_axes
        Write ``axis-0`` (frame), ``axis-1`` (channel), ``axis-2`` (y), ``axis-3`` (x).
    micrometres_per_pixel
        When given, y and x are written in µm (pixels × this), as for ``scale_csv: true``;
        by default they are written in pixels.

    Returns
    -------
    Path
        ``path``.
    """
    scale = 1.0 if micrometres_per_pixel is None else float(micrometres_per_pixel)
    n_axes = 4 if four_axes else 3
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["index", "shape-type", "vertex-index", *(f"axis-{n}" for n in range(n_axes))])
    for i, shape in enumerate(shapes):
        spec = _as_spec(shape)
        kind = spec.shape_type or ("line" if len(spec.vertices) == 2 else "path")
        for k, (y, x) in enumerate(spec.vertices):
            axes = [float(spec.frame)]
            if four_axes:
                axes.append(float(spec.channel or 0))
            axes += [y * scale, x * scale]
            writer.writerow([str(i), kind, str(k), *(repr(float(v)) for v in axes)])
    return atomic_write_text(path, buffer.getvalue())
