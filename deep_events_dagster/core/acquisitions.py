"""Find acquisition folders under data roots and pick their movie."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MOVIE_SUFFIXES = (".ome.tif", ".ome.tiff")
SKIPPED_FOLDER_PREFIXES = ("event_data", "training_data", ".")


def is_movie_file(name: str) -> bool:
    """True for ``*.ome.tif`` / ``*.ome.tiff`` names that are not temporary files."""
    lower = name.lower()
    return lower.endswith(MOVIE_SUFFIXES) and not name.startswith(".")


def movie_in_folder(folder: str | Path) -> Path | None:
    """The folder's movie: its most recently modified ``*.ome.tif[f]``, or ``None``."""
    folder = Path(folder)
    candidates: list[tuple[int, str, Path]] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file() and is_movie_file(entry.name):
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
    """Walk the roots and yield every folder that holds an OME-TIFF movie.

    Folders named ``event_data*``, ``training_data`` or starting with a dot are not
    entered, nor are the ``exclude`` folders (e.g. an ``output_root`` inside a root).
    Unreadable folders are skipped. Results are sorted by path for determinism.
    """
    excluded = {Path(os.path.abspath(p)) for p in exclude}
    for root in roots:
        root_path = Path(os.path.abspath(root))
        found: list[Acquisition] = []
        for dirpath, dirnames, filenames in os.walk(root_path, onerror=lambda _e: None):
            current = Path(dirpath)
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(SKIPPED_FOLDER_PREFIXES) and (current / d) not in excluded
            )
            if any(is_movie_file(f) for f in filenames):
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
