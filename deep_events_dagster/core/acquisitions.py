"""Find acquisition folders under data roots and pick their movie.

A movie is an OME-TIFF file (``*.ome.tif``/``*.ome.tiff``) or an OME-Zarr image, a folder
named ``*.ome.zarr``. Discovery never enters an OME-Zarr folder (it may hold thousands of
chunk files): it is the movie, not a place where acquisitions live.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MOVIE_SUFFIXES = (".ome.tif", ".ome.tiff")
MOVIE_DIR_SUFFIXES = (".ome.zarr",)
SKIPPED_FOLDER_PREFIXES = ("event_data", "training_data", ".")
MOVIE_PATTERNS = "*.ome.tif / *.ome.tiff / *.ome.zarr"
"""The movie names, for messages ("no … movie in this folder")."""


# Files the platform itself writes beside a movie (ml.predict: predictions_<kind>.ome.tif and
# .csv): never the acquisition's movie, never one of its annotations
DERIVED_MOVIE_PREFIXES = ("predictions_",)


def is_side_csv(name: str) -> bool:
    """True for the CSVs of an acquisition folder that are input (annotations), not the
    platform's own outputs (``predictions_<kind>.csv``) nor hidden files."""
    lower = name.lower()
    return (
        lower.endswith(".csv")
        and not name.startswith(".")
        and not lower.startswith(DERIVED_MOVIE_PREFIXES)
    )


def is_movie_file(name: str) -> bool:
    """True for ``*.ome.tif`` / ``*.ome.tiff`` names that are not temporary files nor the
    platform's own outputs (``predictions_<kind>.ome.tif``)."""
    lower = name.lower()
    return (
        lower.endswith(MOVIE_SUFFIXES)
        and not name.startswith(".")
        and not lower.startswith(DERIVED_MOVIE_PREFIXES)
    )


def is_movie_dir(name: str) -> bool:
    """True for ``*.ome.zarr`` folder names (OME-Zarr images) that are not temporary."""
    return name.lower().endswith(MOVIE_DIR_SUFFIXES) and not name.startswith(".")


def is_zarr_movie(path: str | Path) -> bool:
    """True when ``path`` names an OME-Zarr movie (``*.ome.zarr``, by name only: no I/O)."""
    name = Path(path).name
    return name.lower().endswith(MOVIE_DIR_SUFFIXES)


def movie_in_folder(folder: str | Path) -> Path | None:
    """The folder's movie: its most recently modified ``*.ome.tif[f]`` file or ``*.ome.zarr``
    folder (by the folder's own mtime), or ``None``.

    ``folder`` may itself be an OME-Zarr movie (a ``*.ome.zarr`` folder): it is returned, so
    that a command given a movie or an acquisition folder can always call this.
    """
    folder = Path(folder)
    if is_zarr_movie(folder) and folder.is_dir():
        return folder
    candidates: list[tuple[int, str, Path]] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if (entry.is_file() and is_movie_file(entry.name)) or (
                    is_movie_dir(entry.name) and entry.is_dir()
                ):
                    candidates.append((entry.stat().st_mtime_ns, entry.name, Path(entry.path)))
    except OSError:
        return None
    if not candidates:
        return None
    return max(candidates)[2]


@dataclass(frozen=True)
class Acquisition:
    """One acquisition folder under a data root."""

    folder: Path
    root: Path
    movie: Path

    @property
    def key(self) -> str:
        """The partition key: the folder's absolute path."""
        return acquisition_key(self.folder)


def acquisition_key(folder: str | Path) -> str:
    """Partition key of an acquisition folder: its absolute, normalised POSIX path."""
    return Path(os.path.abspath(folder)).as_posix()


def iter_acquisitions(
    roots: Iterable[str | Path], *, exclude: Iterable[str | Path] = ()
) -> Iterator[Acquisition]:
    """Walk the roots and yield every folder that holds an OME-TIFF or OME-Zarr movie.

    Folders named ``event_data*``, ``training_data`` or starting with a dot are not
    entered, nor are ``*.ome.zarr`` folders (movies) or the ``exclude`` folders (e.g. an
    ``output_root`` inside a root). Unreadable folders are skipped. Results are sorted by
    path for determinism.
    """
    excluded = {Path(os.path.abspath(p)) for p in exclude}
    for root in roots:
        root_path = Path(os.path.abspath(root))
        found: list[Acquisition] = []
        for dirpath, dirnames, filenames in os.walk(root_path, onerror=lambda _e: None):
            current = Path(dirpath)
            has_zarr = any(is_movie_dir(d) for d in dirnames)
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(SKIPPED_FOLDER_PREFIXES)
                and not is_zarr_movie(d)
                and (current / d) not in excluded
            )
            if has_zarr or any(is_movie_file(f) for f in filenames):
                movie = movie_in_folder(current)
                if movie is not None:
                    found.append(Acquisition(folder=current, root=root_path, movie=movie))
        yield from sorted(found, key=lambda a: a.folder.as_posix())


def root_of(folder: str | Path, roots: Iterable[str | Path]) -> Path:
    """The deepest of ``roots`` containing ``folder``; the folder's parent when none does."""
    folder = Path(os.path.abspath(folder))
    best: Path | None = None
    for root in roots:
        root_path = Path(os.path.abspath(root))
        inside = folder == root_path or root_path in folder.parents
        if inside and (best is None or len(root_path.parts) > len(best.parts)):
            best = root_path
    return best if best is not None else folder.parent
