"""Rendering ground truth: Gaussians of points and strokes of lines, one frame at a time.

Each annotated point contributes a 2-D Gaussian to its frame,

    g(y, x) = exp(−((y − y_p)² + (x − x_p)²) / (2σ²)),

normalised to peak 1, with values below ``cutoff`` (default 0.1) of the peak set to 0.

Design decisions (differences from the original deep-events code — mention them when comparing
models trained on old ground truth):

* **σ is honest, in pixels** (default 5.0). The original's ``sigma=5`` rendered σ = 2.5.
* **The centre is the exact sub-pixel point**, with pixel ``i`` centred at coordinate ``i``
  (napari's convention); there is no half-pixel shift (the original shifted centres by up to half
  a pixel). A point on an integer pixel has the value exactly 1.0 there; a sub-pixel point's
  brightest pixel is ``exp(−d²/2σ²)`` with ``d`` its distance to the nearest pixel centre
  (≥ 0.98 for σ = 5), i.e. the *continuous* Gaussian has peak 1.
* **Overlapping Gaussians are combined with ``np.maximum``**, so the heatmap stays in [0, 1] and
  every peak is still 1 — a probability-like target for binary cross-entropy, and two events
  close together stay two maxima. The original summed into ``uint8 × 254`` and wrapped around.
  (Applying the cutoff per Gaussian or after combining gives the same result with ``maximum``.)
* **Output is float32**, ``T×Y×X``.
* **Only a local window is rendered**: rows/columns within ``min(4σ, σ·√(2·ln(1/cutoff)))`` of
  the point (beyond that every value is below the cutoff, so nothing is lost), clipped to the
  image, and shrunk to the rows/columns that hold non-zero values. Frames are produced one at a
  time, so memory is O(one frame). Height and width are never confused (non-square frames).

**Lines** (napari ``line``/``path`` shapes, :class:`~deep_events_dagster.core.annotations.
LineAnnotation`) are drawn instead of (or beside) Gaussians by :func:`render_lines_frame`: a
stroke ``line_width`` pixels wide (default 7, as the original) around each polyline, anti-aliased
by a one-pixel linear ramp at its edge,

    v(y, x) = clip(line_width / 2 + 0.5 − d, 0, 1),

with ``d`` the distance from the pixel centre to the nearest segment: pixels within
``line_width / 2 − 0.5`` of the line are 1, pixels ``line_width / 2 + 0.5`` or farther are 0, and
a pixel whose centre lies on the stroke's edge is 0.5 (so the pixels ≥ 0.5 are the stroke's
``line_width`` px). Lines and Gaussians combine by ``np.maximum``. Each segment is rendered only
in its own bounding window, in pieces of at most 64 px along the segment, so a long diagonal
line never costs a window as large as its bounding box. The original's ``line_width`` default
(7 px) is kept.

Writing the rendered frames to a tiled TIFF is
:func:`~deep_events_dagster.core.ground_truth.write_ground_truth`; reading them back is
:mod:`~deep_events_dagster.core.ground_truth_reader`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.regions import Window

__all__ = [
    "DEFAULT_CUTOFF",
    "DEFAULT_LINE_WIDTH",
    "DEFAULT_SIGMA",
    "LINE_PIECE_PX",
    "check_render_args",
    "gaussian_radius",
    "iter_ground_truth",
    "render_frame",
    "render_frames",
    "render_lines_frame",
]

DEFAULT_SIGMA = 5.0
DEFAULT_CUTOFF = 0.1
DEFAULT_LINE_WIDTH = 7.0
LINE_PIECE_PX = 64.0
"""Segments are rendered in pieces of at most this length (pixels), each in its own window."""


def _check_params(sigma: float, cutoff: float) -> None:
    if not (math.isfinite(sigma) and sigma > 0):
        raise ConfigurationError(f"ground-truth sigma must be > 0 pixels, got {sigma!r}")
    if not (0 <= cutoff < 1):
        raise ConfigurationError(f"ground-truth cutoff must be in [0, 1), got {cutoff!r}")


def _check_line_width(line_width: float) -> None:
    if not (isinstance(line_width, (int, float, np.number)) and math.isfinite(line_width)):
        raise ConfigurationError(
            f"line_width must be a finite number of pixels, got {line_width!r}"
        )
    if not line_width > 0:
        raise ConfigurationError(f"line_width must be > 0 pixels, got {line_width!r}")


def _check_shape(n_frames: int, height: int, width: int) -> None:
    if n_frames < 1 or height < 1 or width < 1:
        raise ConfigurationError(
            f"ground-truth shape must be positive, got {n_frames}×{height}×{width} (T×Y×X)"
        )


def check_render_args(
    *, sigma: float, cutoff: float, line_width: float, n_frames: int, height: int, width: int
) -> None:
    """Check the arguments of a whole ground-truth volume before anything is rendered.

    Raises
    ------
    ConfigurationError
        σ not > 0 or not finite, ``cutoff`` outside ``[0, 1)``, ``line_width`` not a finite
        number > 0, or a shape that is not positive (checked in that order).
    """
    _check_params(sigma, cutoff)
    _check_line_width(line_width)
    _check_shape(n_frames, height, width)


def gaussian_radius(sigma: float = DEFAULT_SIGMA, cutoff: float = DEFAULT_CUTOFF) -> float:
    """Distance (pixels) beyond which a Gaussian is below ``cutoff``, capped at 4σ."""
    _check_params(sigma, cutoff)
    if cutoff <= 0:
        return 4.0 * sigma
    return min(4.0 * sigma, sigma * math.sqrt(2.0 * math.log(1.0 / cutoff)))


def _points_array(points: Any, fields: tuple[str, ...]) -> np.ndarray:
    """An (N, len(fields)) float64 array from objects with those attributes or an array-like."""
    width = len(fields)
    if isinstance(points, np.ndarray):
        arr = np.asarray(points, dtype=np.float64)
    else:
        items = list(points)
        if not items:
            return np.empty((0, width), dtype=np.float64)
        if all(hasattr(items[0], name) for name in fields):
            arr = np.array([[getattr(p, name) for name in fields] for p in items], np.float64)
        else:
            arr = np.asarray(items, dtype=np.float64)
    if arr.size == 0:
        return np.empty((0, width), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"points must be ({', '.join(fields)}) tuples, got shape {arr.shape}")
    return arr


def _yx_of(points: Any) -> np.ndarray:
    """Return an (N, 2) float64 array of (y, x)."""
    return _points_array(points, ("y", "x"))


def _frame_yx_of(points: Any) -> np.ndarray:
    """Return an (N, 3) float64 array of (frame, y, x)."""
    return _points_array(points, ("frame", "y", "x"))


def render_frame(
    points_in_frame: Any,
    height: int,
    width: int,
    sigma: float = DEFAULT_SIGMA,
    cutoff: float = DEFAULT_CUTOFF,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[Window]]:
    """Render the Gaussians of one frame.

    Parameters
    ----------
    points_in_frame
        ``(y, x)`` pairs in pixels (an ``N×2`` array, a list of pairs, or objects with ``.y`` and
        ``.x`` such as :class:`~deep_events_dagster.core.annotations.AnnotationPoint`).
        Points may lie partly or wholly outside the image; only the part inside is drawn.
    height, width
        Frame size in pixels.
    sigma
        Gaussian standard deviation in pixels.
    cutoff
        Values below ``cutoff`` (of the peak 1) become 0.
    out
        Optional ``height×width`` float32 array to draw into; its content is combined with the
        Gaussians by ``np.maximum`` (pass zeros for a fresh frame).

    Returns
    -------
    frame : np.ndarray
        ``height×width`` float32 in [0, 1].
    windows : list of (y0, y1, x0, x1)
        One per drawn point (half-open, clipped to the image, shrunk to its non-zero pixels);
        together they cover every non-zero pixel the points produced.
    """
    _check_params(sigma, cutoff)
    if out is None:
        out = np.zeros((height, width), dtype=np.float32)
    elif out.shape != (height, width) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {height}×{width}, got {out.dtype} {out.shape}")
    radius = gaussian_radius(sigma, cutoff)
    two_s2 = 2.0 * sigma * sigma
    windows: list[Window] = []
    for cy, cx in _yx_of(points_in_frame):
        y0 = max(0, math.ceil(cy - radius))
        y1 = min(height, math.floor(cy + radius) + 1)
        x0 = max(0, math.ceil(cx - radius))
        x1 = min(width, math.floor(cx + radius) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        gy = np.exp(-((np.arange(y0, y1, dtype=np.float64) - cy) ** 2) / two_s2)
        gx = np.exp(-((np.arange(x0, x1, dtype=np.float64) - cx) ** 2) / two_s2)
        g = np.outer(gy, gx)
        if cutoff > 0:
            g[g < cutoff] = 0.0
        rows = np.flatnonzero(g.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(g.any(axis=0))
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        g = g[r0:r1, c0:c1].astype(np.float32)
        wy0, wy1, wx0, wx1 = y0 + r0, y0 + r1, x0 + c0, x0 + c1
        view = out[wy0:wy1, wx0:wx1]
        np.maximum(view, g, out=view)
        windows.append(Window(wy0, wy1, wx0, wx1))
    return out, windows


def _vertices_of(line: Any) -> np.ndarray:
    """A ``K×2`` float64 array of ``(y, x)`` from a LineAnnotation-like object or an array."""
    arr = np.asarray(getattr(line, "vertices", line), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise ValueError(f"a line must be a sequence of (y, x) vertices, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("line vertices must be finite")
    return arr


def _draw_segment(out: np.ndarray, a: np.ndarray, b: np.ndarray, reach: float) -> Window | None:
    """Draw ``clip(reach − distance to segment ab, 0, 1)`` into ``out`` (by maximum) inside the
    segment's bounding window; return the window shrunk to its non-zero pixels."""
    height, width = out.shape
    ay, ax = float(a[0]), float(a[1])
    by, bx = float(b[0]), float(b[1])
    y0 = max(0, math.ceil(min(ay, by) - reach))
    y1 = min(height, math.floor(max(ay, by) + reach) + 1)
    x0 = max(0, math.ceil(min(ax, bx) - reach))
    x1 = min(width, math.floor(max(ax, bx) + reach) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    py = np.arange(y0, y1, dtype=np.float64)[:, None] - ay
    px = np.arange(x0, x1, dtype=np.float64)[None, :] - ax
    dy, dx = by - ay, bx - ax
    length2 = dy * dy + dx * dx
    if length2 > 0:
        t = np.clip((py * dy + px * dx) / length2, 0.0, 1.0)
        ey, ex = py - t * dy, px - t * dx
    else:
        ey, ex = np.broadcast_arrays(py, px)
    values = np.clip(reach - np.sqrt(ey * ey + ex * ex), 0.0, 1.0)
    rows = np.flatnonzero(values.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(values.any(axis=0))
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    window = Window(y0 + r0, y0 + r1, x0 + c0, x0 + c1)
    view = out[window.y0 : window.y1, window.x0 : window.x1]
    np.maximum(view, values[r0:r1, c0:c1].astype(np.float32), out=view)
    return window


def _draw_polyline(out: np.ndarray, vertices: np.ndarray, reach: float) -> list[Window]:
    """Draw one polyline (a single vertex draws a dot); return the windows drawn."""
    windows: list[Window] = []
    pairs = list(itertools.pairwise(vertices)) or [(vertices[0], vertices[0])]
    for a, b in pairs:
        step = b - a
        n_pieces = max(1, math.ceil(math.hypot(float(step[0]), float(step[1])) / LINE_PIECE_PX))
        for k in range(n_pieces):
            start = a if k == 0 else a + step * (k / n_pieces)
            stop = b if k == n_pieces - 1 else a + step * ((k + 1) / n_pieces)
            window = _draw_segment(out, start, stop, reach)
            if window is not None:
                windows.append(window)
    return windows


def _render_lines(
    lines: Iterable[Any], out: np.ndarray, line_width: float
) -> tuple[list[Window], int]:
    """Draw ``lines`` into ``out``; return the windows and the number of lines drawn."""
    reach = line_width / 2.0 + 0.5
    windows: list[Window] = []
    drawn = 0
    for line in lines:
        found = _draw_polyline(out, _vertices_of(line), reach)
        if found:
            drawn += 1
            windows.extend(found)
    return windows, drawn


def render_lines_frame(
    lines_in_frame: Iterable[Any],
    height: int,
    width: int,
    line_width: float = DEFAULT_LINE_WIDTH,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[Window]]:
    """Draw the lines (polylines) of one frame as anti-aliased strokes ``line_width`` px wide.

    A pixel's value is ``clip(line_width / 2 + 0.5 − d, 0, 1)`` with ``d`` the distance from
    its centre (pixel ``i`` is centred at coordinate ``i``) to the nearest segment of the
    polyline: 1 within ``line_width / 2 − 0.5``, a one-pixel linear ramp at the edge (0.5 at
    distance ``line_width / 2``), 0 from ``line_width / 2 + 0.5`` on. The ends are rounded
    (distance to the end vertex). Overlapping strokes combine by ``np.maximum``.

    Parameters
    ----------
    lines_in_frame
        Lines: objects with ``.vertices`` (such as
        :class:`~deep_events_dagster.core.annotations.LineAnnotation`) or sequences of
        ``(y, x)`` vertices in pixels (a ``K×2`` array). A single vertex draws a dot.
        Lines may lie partly or wholly outside the image; only the part inside is drawn.
    height, width
        Frame size in pixels.
    line_width
        Stroke width in pixels (> 0).
    out
        Optional ``height×width`` float32 array to draw into (combined by ``np.maximum``,
        e.g. a frame that already holds Gaussians).

    Returns
    -------
    frame : np.ndarray
        ``height×width`` float32 in [0, 1].
    windows : list of (y0, y1, x0, x1)
        Half-open, clipped to the image and shrunk to non-zero pixels: one per drawn piece of
        a segment (pieces are at most ``LINE_PIECE_PX`` long); together they cover every
        non-zero pixel the lines produced.
    """
    _check_line_width(line_width)
    if out is None:
        out = np.zeros((height, width), dtype=np.float32)
    elif out.shape != (height, width) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {height}×{width}, got {out.dtype} {out.shape}")
    windows, _ = _render_lines(lines_in_frame, out, float(line_width))
    return out, windows


def _group_lines_by_frame(lines: Any, n_frames: int) -> dict[int, list[np.ndarray]]:
    """Frame → vertex arrays, from LineAnnotation-like objects or ``(frame, vertices)`` pairs;
    lines whose frame is outside the movie are dropped."""
    groups: dict[int, list[np.ndarray]] = {}
    for line in lines:
        if hasattr(line, "frame") and hasattr(line, "vertices"):
            frame, vertices = line.frame, line.vertices
        else:
            frame, vertices = line
        t = round(float(frame))
        if 0 <= t < n_frames:
            groups.setdefault(int(t), []).append(_vertices_of(vertices))
    return groups


def _group_by_frame(points: Any, n_frames: int) -> dict[int, np.ndarray]:
    arr = _frame_yx_of(points)
    groups: dict[int, np.ndarray] = {}
    if arr.shape[0] == 0:
        return groups
    frames = np.round(arr[:, 0]).astype(np.int64)
    keep = (frames >= 0) & (frames < n_frames)
    arr, frames = arr[keep], frames[keep]
    order = np.argsort(frames, kind="stable")
    arr, frames = arr[order], frames[order]
    uniq, starts = np.unique(frames, return_index=True)
    bounds = [*starts.tolist(), len(frames)]
    for i, t in enumerate(uniq.tolist()):
        groups[int(t)] = arr[bounds[i] : bounds[i + 1], 1:3]
    return groups


def render_frames(
    points: Any,
    lines: Any,
    *,
    n_frames: int,
    height: int,
    width: int,
    sigma: float,
    cutoff: float,
    line_width: float,
) -> Iterator[tuple[int, np.ndarray, list[Window], int, int]]:
    """Yield ``(t, frame, windows, points drawn, lines drawn)`` for every frame ``t``.

    What :func:`iter_ground_truth` yields, plus the number of points and lines that drew
    something in the frame (the counts of the sidecar). The arguments are not checked: call
    :func:`check_render_args` first. ``line_width`` must be a float.
    """
    groups = _group_by_frame(points, n_frames)
    line_groups = _group_lines_by_frame(lines, n_frames)
    for t in range(n_frames):
        frame = np.zeros((height, width), dtype=np.float32)
        yx = groups.get(t)
        drawn_lines = line_groups.get(t)
        windows: list[Window] = []
        n_points = n_lines = 0
        if yx is not None:
            frame, windows = render_frame(yx, height, width, sigma, cutoff, out=frame)
            n_points = len(windows)
        if drawn_lines:
            line_windows, n_lines = _render_lines(drawn_lines, frame, line_width)
            windows = [*windows, *line_windows]
        yield t, frame, windows, n_points, n_lines


def iter_ground_truth(
    points: Any,
    *,
    n_frames: int,
    height: int,
    width: int,
    sigma: float = DEFAULT_SIGMA,
    cutoff: float = DEFAULT_CUTOFF,
    lines: Any = (),
    line_width: float = DEFAULT_LINE_WIDTH,
) -> Iterator[tuple[int, np.ndarray, list[Window]]]:
    """Yield ``(t, frame, windows)`` for every frame ``t`` in ``range(n_frames)``.

    ``points`` are :class:`AnnotationPoint`-like objects (``.frame``, ``.y``, ``.x``) or an
    ``N×3`` array of ``(frame, y, x)``; points whose frame is outside the movie are skipped
    (report them with :func:`~deep_events_dagster.core.annotations.validate_points`). Each
    yielded frame is a new float32 array (allocated lazily by the OS, so empty frames cost
    almost nothing); only one frame is alive at a time unless the caller keeps them.

    ``lines`` are :class:`~deep_events_dagster.core.annotations.LineAnnotation`-like objects
    (``.frame``, ``.vertices``) or ``(frame, vertices)`` pairs, drawn ``line_width`` px wide
    by :func:`render_lines_frame` over the Gaussians (by maximum); lines whose frame is
    outside the movie are skipped. ``windows`` then holds the points' windows followed by the
    lines'.
    """
    check_render_args(
        sigma=sigma,
        cutoff=cutoff,
        line_width=line_width,
        n_frames=n_frames,
        height=height,
        width=width,
    )
    for t, frame, windows, _, _ in render_frames(
        points,
        lines,
        n_frames=n_frames,
        height=height,
        width=width,
        sigma=sigma,
        cutoff=cutoff,
        line_width=float(line_width),
    ):
        yield t, frame, windows
