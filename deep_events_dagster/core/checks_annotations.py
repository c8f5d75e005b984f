"""Check of the annotations against the movie: every napari point (and line vertex) inside it.

:func:`annotations_inside_movie` counts, per CSV, the points outside the movie's frames,
channels or image (:class:`AnnotationBounds`); :func:`read_points` and :func:`line_vertices`
give it the points of an acquisition folder and the vertices of its lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deep_events_dagster.core import annotations as ann
from deep_events_dagster.core.checks_common import MAX_LISTED, file_name, plural

__all__ = [
    "AnnotationBounds",
    "FilePoints",
    "annotations_inside_movie",
    "line_vertices",
    "read_points",
]


@dataclass(frozen=True)
class FilePoints:
    """Points of one annotation CSV: how many, and how many lie outside the movie."""

    file: str
    points: int
    outside: int


@dataclass(frozen=True)
class AnnotationBounds:
    """Result of :func:`annotations_inside_movie`.

    Attributes
    ----------
    passed
        Every point lies inside the movie.
    n_points, n_outside
        Points checked, and those outside the image, the frames or the channels.
    files
        Per CSV file (in the order given, then first appearance), its counts.
    problems
        One line per bad point (file, row, which bound), at most :data:`MAX_LISTED`.
    message
        One sentence (on failure: one line per file naming it).
    """

    passed: bool
    n_points: int
    n_outside: int
    files: tuple[FilePoints, ...]
    problems: tuple[str, ...]
    message: str


def read_points(
    folder: str | Path,
    kind: str,
    metadata: Mapping[str, Any],
    physical_size_x: float | None = None,
) -> tuple[list[ann.AnnotationPoint], tuple[Path, ...]]:
    """Every ``<kind>*.csv`` point of an acquisition folder, in pixels, without bound checks
    (see :func:`deep_events_dagster.core.annotations.read_kind_points`), so that
    :func:`annotations_inside_movie` can count the points outside the movie."""
    return ann.read_kind_points(folder, kind, metadata, physical_size_x)


def line_vertices(lines: Iterable[ann.LineAnnotation]) -> list[ann.AnnotationPoint]:
    """Every vertex of the lines as a point (frame, y, x, channel, file, row), so that
    :func:`annotations_inside_movie` checks lines as it checks points."""
    return [
        ann.AnnotationPoint(line.frame, y, x, line.channel, line.file, row)
        for line in lines
        for (y, x), row in zip(line.vertices, line.rows, strict=True)
    ]


def annotations_inside_movie(
    points: Iterable[ann.AnnotationPoint],
    *,
    n_frames: int,
    height: int,
    width: int,
    n_channels: int = 1,
    files: Sequence[str | Path] = (),
) -> AnnotationBounds:
    """Check that every annotated point lies inside the movie.

    Parameters
    ----------
    points
        Points in pixels (e.g. from :func:`read_points`).
    n_frames, height, width, n_channels
        The movie's size; bounds as in
        :func:`deep_events_dagster.core.annotations.validate_points` (pixel centres,
        ``0 ≤ y ≤ height − 1``, ``0 ≤ frame < n_frames``).
    files
        The CSV files read, so that a file is listed with its counts in the given order.

    Returns
    -------
    AnnotationBounds
        Passed when no point is outside; the message names every file with bad points and
        counts them out of the file's total.
    """
    points = list(points)
    problems = ann.validate_points(
        points, n_frames=n_frames, height=height, width=width, n_channels=n_channels
    )
    totals: dict[str, int] = {str(f): 0 for f in files}
    for p in points:
        totals[p.file] = totals.get(p.file, 0) + 1
    bad: dict[str, int] = {}
    for prob in problems:
        bad[prob.file] = bad.get(prob.file, 0) + 1
    per_file = tuple(
        FilePoints(file=file_name(f), points=n, outside=bad.get(f, 0)) for f, n in totals.items()
    )
    listed = tuple(
        f"{file_name(q.file)} row {q.row} (line {q.row + 2}): {q.reason}"
        for q in sorted(problems, key=lambda q: (q.file, q.row))[:MAX_LISTED]
    )
    size = f"{n_frames} frames, {width}×{height} px"
    if problems:
        renamed = [ann.PointProblem(file_name(q.file), q.row, q.reason) for q in problems]
        named = [
            ann.AnnotationPoint(p.frame, p.y, p.x, p.channel, file_name(p.file), p.row)
            for p in points
        ]
        message = ann.format_problems(renamed, named)
    elif points:
        message = (
            f"{plural(len(points), 'point')} in {plural(len(per_file), 'file')}, "
            f"all inside the movie ({size})"
        )
    else:
        message = "no annotated points"
    return AnnotationBounds(
        passed=not problems,
        n_points=len(points),
        n_outside=len(problems),
        files=per_file,
        problems=listed,
        message=message,
    )
