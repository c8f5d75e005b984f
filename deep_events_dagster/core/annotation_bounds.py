"""Annotations against the movie's size: points and line vertices outside it, and the report.

Points outside the movie are not an error at parse time: :func:`validate_points` (and
:func:`validate_lines` for the vertices of line annotations) reports them as
:class:`PointProblem` items so a failing check can name the file and rows
(:func:`format_problems`); the original drew them onto the border, wrapped frame −1 to the last
frame, or zeroed the whole frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deep_events_dagster.core.annotation_lines import LineAnnotation
    from deep_events_dagster.core.annotations import AnnotationPoint

__all__ = ["PointProblem", "format_problems", "validate_lines", "validate_points"]


@dataclass(frozen=True)
class PointProblem:
    """A point (or a line, see :func:`validate_lines`) that lies outside the movie;
    ``reason`` says which bound it breaks."""

    file: str
    row: int
    reason: str


def _fmt(value: float) -> str:
    return str(round(float(value), 3))


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
