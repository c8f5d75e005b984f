"""Content fingerprints of movies and of the small files that shape an acquisition's outputs."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import tifffile

from deep_events_dagster.core.acquisitions import is_zarr_movie
from deep_events_dagster.core.errors import MovieError


@dataclass(frozen=True)
class MovieFingerprint:
    """Identity of a movie file: cheap to compute, changes when the content changes."""

    path: str
    size: int
    mtime_ns: int
    first_page_hash: str
    last_page_hash: str
    n_pages: int

    @property
    def digest(self) -> str:
        """A 16-hex digest of all fields (the asset's data version)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


def _page_bytes_hash(handle, page) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for offset, count in zip(page.dataoffsets, page.databytecounts):
        handle.seek(offset)
        data = handle.read(count)
        if len(data) != count:
            raise MovieError(handle.name, "file is truncated: a page's data ends past the file end")
        digest.update(data)
    return digest.hexdigest()


def fingerprint_movie(path: str | Path) -> MovieFingerprint:
    """Fingerprint a TIFF movie: path, size, mtime and hashes of its first and last pages.

    An OME-Zarr movie (``*.ome.zarr`` folder) is fingerprinted by
    :func:`deep_events_dagster.core.zarr_movie.fingerprint_zarr_movie` (sizes and newest mtime
    of its metadata and chunk files, hashes of the stored chunks of its first and last frames).

    Raises
    ------
    MovieError
        When the TIFF cannot be opened or its pages point past the end of the file.
    """
    path = Path(path)
    if is_zarr_movie(path):
        from deep_events_dagster.core.zarr_movie import fingerprint_zarr_movie

        return fingerprint_zarr_movie(path)
    try:
        stat = path.stat()
        with tifffile.TiffFile(path) as tif, open(path, "rb") as handle:
            pages = tif.pages
            n_pages = len(pages)
            first = _page_bytes_hash(handle, pages[0])
            last = _page_bytes_hash(handle, pages[n_pages - 1])
    except MovieError:
        raise
    except Exception as exc:
        raise MovieError(path, f"cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    return MovieFingerprint(
        path=path.as_posix(),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        first_page_hash=first,
        last_page_hash=last,
        n_pages=n_pages,
    )


def fingerprint_files(paths: list[str | Path]) -> str:
    """A 16-hex digest of the names and contents of small files (CSVs, YAML)."""
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(Path(p) for p in paths):
        digest.update(path.as_posix().encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()


def file_signature(path: str | Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a file, or ``None`` when it does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns
