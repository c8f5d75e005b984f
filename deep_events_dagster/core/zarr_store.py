"""OME-Zarr folders as stored files: completeness, the tree signature and the fingerprint.

:func:`missing_chunks` is the completeness rule of the acquisition sensor (every chunk of the
declared shape has a file); :func:`tree_signature` the cheap ``(total bytes, newest mtime)`` of
the whole folder; :func:`fingerprint_zarr_movie` the content fingerprint (sizes, mtimes, hashes
of the stored chunks of the first and last frames). Only ``stat`` calls and file reads: no chunk
is decoded.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from deep_events_dagster.core.errors import MovieError
from deep_events_dagster.core.fingerprint import MovieFingerprint
from deep_events_dagster.core.zarr_metadata import ZarrArrayInfo, read_ome_zarr

__all__ = ["fingerprint_zarr_movie", "missing_chunks", "tree_signature"]

_V2_METADATA = (".zarray", ".zattrs", ".zgroup", ".zmetadata")
_V3_METADATA = ("zarr.json",)
_METADATA_NAMES = frozenset(_V2_METADATA + _V3_METADATA)


def _walk_files(folder: Path) -> Iterator[os.DirEntry]:
    """Every file below ``folder`` (symbolic links not followed); unreadable folders skipped."""
    stack = [str(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            yield entry
                    except OSError:
                        continue
        except OSError:
            continue


def _chunk_files(array: ZarrArrayInfo) -> dict[str, os.stat_result]:
    """Stored files of an array by key (``/``-separated relative path), metadata excluded."""
    root = str(array.path)
    files: dict[str, os.stat_result] = {}
    for entry in _walk_files(array.path):
        if entry.name in _METADATA_NAMES or entry.name.startswith("."):
            continue
        key = os.path.relpath(entry.path, root).replace(os.sep, "/")
        try:
            files[key] = entry.stat(follow_symlinks=False)
        except OSError:
            continue
    return files


def _all_keys(array: ZarrArrayInfo) -> Iterator[tuple[tuple[int, ...], str]]:
    for index in itertools.product(*(range(g) for g in array.grid)):
        yield index, array.chunk_key(index)


def missing_chunks(array: ZarrArrayInfo, *, examples: int = 3) -> tuple[int, list[str]]:
    """How many chunks of the declared shape have no file, and the first few keys.

    A zarr writer may leave out chunks that hold only the fill value; the platform counts
    them as missing (a movie of the camera never has such chunks; writers must not skip them).
    """
    present = _chunk_files(array)
    missing = 0
    first: list[str] = []
    for _, key in _all_keys(array):
        if key not in present:
            missing += 1
            if len(first) < examples:
                first.append(key)
    return missing, first


def tree_signature(path: str | Path) -> tuple[int, int]:
    """``(total bytes, newest mtime_ns)`` over every file and folder below ``path`` (itself
    included): what the sensor watches for its quiet period. Only ``stat`` calls."""
    path = Path(path)
    total = 0
    newest = os.stat(path).st_mtime_ns
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        stat = entry.stat(follow_symlinks=False)
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += stat.st_size
                        newest = max(newest, stat.st_mtime_ns)
                    except OSError:
                        continue
        except OSError:
            continue
    return total, newest


def fingerprint_zarr_movie(path: str | Path) -> MovieFingerprint:
    """:func:`~deep_events_dagster.core.fingerprint.fingerprint_movie` for an OME-Zarr movie.

    ``size`` and ``mtime_ns`` are the total and the newest over the image's metadata files
    and the full-resolution array's metadata and chunk files; the page hashes are BLAKE2b of
    the metadata files' bytes followed by the stored chunks holding the first frame, and of
    the stored chunks holding the last frame (a missing chunk hashes as a marker);
    ``n_pages`` counts the planes (frames × channels).

    Raises
    ------
    MovieError
        Malformed metadata.
    """
    image = read_ome_zarr(path)
    array = image.array
    files = _chunk_files(array)
    own = sorted(array.path / name for name in _METADATA_NAMES if (array.path / name).is_file())
    metadata = [*image.group_files, *own]
    size, newest = 0, 0
    for meta in metadata:
        try:
            stat = meta.stat()
        except OSError as exc:
            raise MovieError(meta, f"cannot read ({exc.strerror or exc})") from exc
        size, newest = size + stat.st_size, max(newest, stat.st_mtime_ns)
    for stat in files.values():
        size, newest = size + stat.st_size, max(newest, stat.st_mtime_ns)

    t_axis = image.axes.index("t") if "t" in image.axes else None
    t_chunk = array.chunks[t_axis] if t_axis is not None else 1

    def frame_hash(t: int, head: Sequence[Path] = ()) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for meta in head:
            digest.update(meta.read_bytes())
        ranges = [range(g) for g in array.grid]
        if t_axis is not None:
            ranges[t_axis] = range(t // t_chunk, t // t_chunk + 1)
        for index in itertools.product(*ranges):
            key = array.chunk_key(index)
            digest.update(key.encode() + b"\0")
            if key in files:
                digest.update((array.path / key).read_bytes())
            else:
                digest.update(b"<missing>")
        return digest.hexdigest()

    try:
        first = frame_hash(0, metadata)
        last = frame_hash(image.n_frames - 1)
    except OSError as exc:
        raise MovieError(array.path, f"cannot read a chunk ({exc})") from exc
    return MovieFingerprint(
        path=image.path.as_posix(),
        size=size,
        mtime_ns=newest,
        first_page_hash=first,
        last_page_hash=last,
        n_pages=image.n_frames * image.n_channels,
    )
