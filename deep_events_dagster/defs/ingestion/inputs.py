"""What the ingestion checks read next to a step's own output — the movie's OME header,
``db.yaml`` and a kind's annotation CSVs — and how bad user input becomes a clean Dagster
failure naming the file."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from deep_events_dagster.core import checks, ingest
from deep_events_dagster.core.acquisitions import movie_in_folder
from deep_events_dagster.core.annotations import AnnotationPoint, read_kind_lines
from deep_events_dagster.core.errors import ConfigurationError, InputError, MovieError
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import read_db_yaml
from deep_events_dagster.core.ome import MovieInfo, read_movie_info


def user_errors_as_failures(step: Callable[[], Any]) -> Any:
    """Run a core step; bad input becomes a clean Dagster failure naming the file."""
    try:
        return step()
    except (InputError, ConfigurationError, FileNotFoundError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def movie_info(ref: ingest.AcquisitionRef) -> MovieInfo:
    """The OME header of the acquisition's movie (pages not verified)."""
    movie = movie_in_folder(ref.folder)
    if movie is None:
        raise MovieError(ref.folder, "no *.ome.tif / *.ome.tiff / *.ome.zarr movie in this folder")
    return read_movie_info(movie, verify_pages=False)


def read_annotations(
    ref: ingest.AcquisitionRef, kind: str, layout: Layout, shape: str = "points"
) -> tuple[list[AnnotationPoint], tuple, MovieInfo]:
    """The acquisition's points of one kind (in pixels, outside ones included; for a lines
    kind its lines' vertices), the CSV files and the movie's header."""
    if shape == "lines":
        lines, files, info = read_lines(ref, kind, layout)
        return checks.line_vertices(lines), files, info
    info = movie_info(ref)
    metadata = read_db_yaml(layout.db_yaml(ref.folder, ref.root))
    points, files = checks.read_points(ref.folder, kind, metadata, info.physical_size_x)
    return points, files, info


def read_lines(
    ref: ingest.AcquisitionRef, kind: str, layout: Layout
) -> tuple[list, tuple, MovieInfo]:
    """A lines kind's annotations (in pixels, outside ones included), its CSVs, the movie's
    header."""
    info = movie_info(ref)
    metadata = read_db_yaml(layout.db_yaml(ref.folder, ref.root))
    lines, files = read_kind_lines(ref.folder, kind, metadata, info.physical_size_x)
    return lines, files, info
