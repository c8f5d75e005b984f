"""What the ingestion checks read next to a step's own output when the step does not hand it
over — a kind's annotation CSVs with ``db.yaml`` and, unless given, the movie's OME header — and
how bad user input becomes a clean Dagster failure naming the file."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from deep_events_dagster.core import checks
from deep_events_dagster.core.acquisition_ref import AcquisitionRef, movie_header
from deep_events_dagster.core.annotations import AnnotationPoint, read_kind_lines
from deep_events_dagster.core.errors import ConfigurationError, InputError
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import read_db_yaml
from deep_events_dagster.core.ome import MovieInfo


def user_errors_as_failures(step: Callable[[], Any]) -> Any:
    """Run a core step; bad input becomes a clean Dagster failure naming the file."""
    try:
        return step()
    except (InputError, ConfigurationError, FileNotFoundError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def read_annotations(
    ref: AcquisitionRef,
    kind: str,
    layout: Layout,
    shape: str = "points",
    *,
    info: MovieInfo | None = None,
) -> tuple[list[AnnotationPoint], tuple, MovieInfo]:
    """The acquisition's points of one kind (in pixels, outside ones included; for a lines
    kind its lines' vertices), the CSV files and the movie's header (``info`` when the caller
    has read it)."""
    if shape == "lines":
        lines, files, info = read_lines(ref, kind, layout, info=info)
        return checks.line_vertices(lines), files, info
    info = movie_header(ref) if info is None else info
    metadata = read_db_yaml(layout.db_yaml(ref.folder, ref.root))
    points, files = checks.read_points(ref.folder, kind, metadata, info.physical_size_x)
    return points, files, info


def read_lines(
    ref: AcquisitionRef, kind: str, layout: Layout, *, info: MovieInfo | None = None
) -> tuple[list, tuple, MovieInfo]:
    """A lines kind's annotations (in pixels, outside ones included), its CSVs, the movie's
    header (``info`` when the caller has read it)."""
    info = movie_header(ref) if info is None else info
    metadata = read_db_yaml(layout.db_yaml(ref.folder, ref.root))
    lines, files = read_kind_lines(ref.folder, kind, metadata, info.physical_size_x)
    return lines, files, info
