"""An acquisition as the ingestion steps see it: its folder, the data root it belongs to and its
partition key (:class:`AcquisitionRef`), and its movie (:func:`acquisition_movie`,
:func:`movie_header`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deep_events_dagster.core.acquisitions import acquisition_key, movie_in_folder, root_of
from deep_events_dagster.core.errors import MovieError
from deep_events_dagster.core.ome import MovieInfo, read_movie_info


@dataclass(frozen=True)
class AcquisitionRef:
    """An acquisition folder, the data root it belongs to and its partition key."""

    folder: Path
    root: Path

    @property
    def key(self) -> str:
        """Partition key (absolute POSIX path of the folder)."""
        return acquisition_key(self.folder)

    @classmethod
    def from_key(cls, key: str, roots: Sequence[str | Path] = ()) -> AcquisitionRef:
        """Rebuild from a partition key, finding its data root among ``roots``."""
        folder = Path(key)
        return cls(folder=folder, root=root_of(folder, roots))


def acquisition_movie(ref: AcquisitionRef) -> Path:
    """The acquisition's movie (``*.ome.tif``, ``*.ome.tiff`` or ``*.ome.zarr``).

    Parameters
    ----------
    ref
        The acquisition.

    Returns
    -------
    Path
        The movie file (or OME-Zarr folder).

    Raises
    ------
    MovieError
        No movie in the folder.
    """
    movie = movie_in_folder(ref.folder)
    if movie is None:
        raise MovieError(ref.folder, "no *.ome.tif / *.ome.tiff / *.ome.zarr movie in this folder")
    return movie


def movie_header(ref: AcquisitionRef) -> MovieInfo:
    """The OME header of the acquisition's movie (its pages not verified).

    Parameters
    ----------
    ref
        The acquisition.

    Returns
    -------
    MovieInfo

    Raises
    ------
    MovieError
        No movie in the folder, or an unreadable one.
    """
    return read_movie_info(acquisition_movie(ref), verify_pages=False)
