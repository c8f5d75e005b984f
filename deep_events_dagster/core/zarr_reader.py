"""OME-Zarr pixels: :class:`ZarrMovieReader`, windows decoded through ``zarr`` with a chunk cache.

``MovieReader(path)`` returns a :class:`ZarrMovieReader` for a ``*.ome.zarr`` path; it reads
only the chunks a window touches, keeps decoded chunks in a small LRU cache
(:data:`CHUNK_CACHE_BYTES`) and returns values bit-exact in the array's dtype.
:func:`open_zarr_array` opens the full-resolution array. ``zarr`` itself is imported only when
pixels are decoded (it takes about a second to import).
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deep_events_dagster.core.errors import MovieError
from deep_events_dagster.core.movie_reader import MovieReader, checked_window
from deep_events_dagster.core.zarr_metadata import ZarrArrayInfo, read_ome_zarr

if TYPE_CHECKING:
    from deep_events_dagster.core.regions import Box

__all__ = ["CHUNK_CACHE_BYTES", "ZarrMovieReader", "open_zarr_array"]

CHUNK_CACHE_BYTES = 64 * 1024 * 1024
"""Decoded chunks a :class:`ZarrMovieReader` keeps (an event's negatives, next to it, and
events close in time share chunks: about half the decoding of an ingestion is saved)."""


def open_zarr_array(array: ZarrArrayInfo) -> Any:
    """The full-resolution array, opened read-only with ``zarr`` (imported here, lazily)."""
    import zarr  # about a second to import: only when pixels are read

    try:
        return zarr.open_array(store=str(array.path), mode="r", zarr_format=array.zarr_format)
    except Exception as exc:
        raise MovieError(
            array.metadata_file, f"cannot open the zarr array ({type(exc).__name__}: {exc})"
        ) from exc


class _ChunkCache:
    """Decoded chunks by grid index, least recently used dropped past ``capacity`` bytes."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.nbytes = 0
        self._chunks: collections.OrderedDict[tuple[int, ...], np.ndarray] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, index: tuple[int, ...]) -> np.ndarray | None:
        with self._lock:
            chunk = self._chunks.get(index)
            if chunk is not None:
                self._chunks.move_to_end(index)
            return chunk

    def put(self, index: tuple[int, ...], chunk: np.ndarray) -> None:
        if chunk.nbytes > self.capacity:
            return
        with self._lock:
            old = self._chunks.pop(index, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._chunks[index] = chunk
            self.nbytes += chunk.nbytes
            while self.nbytes > self.capacity:
                _, dropped = self._chunks.popitem(last=False)
                self.nbytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self.nbytes = 0


class ZarrMovieReader(MovieReader):
    """:class:`~deep_events_dagster.core.movie_reader.MovieReader` of an OME-Zarr movie.

    ``MovieReader(path)`` returns one for a ``*.ome.zarr`` path. Windows are read from the
    full-resolution array through ``zarr``: only the chunks a window touches are read and
    decoded, and decoded chunks are kept in an LRU cache of ``cache_bytes``; reads of more
    than half the cache (whole frames) bypass it. Values are bit-exact in the array's dtype
    (native byte order). :meth:`read_window` may be called from several threads.

    Raises
    ------
    MovieError
        Malformed metadata or an array that cannot be opened; a chunk that cannot be read or
        decoded when a window needs it (a missing chunk reads as the fill value, as in zarr;
        completeness is :func:`read_zarr_movie_info`'s check).
    """

    def __init__(self, path: str | Path, *, cache_bytes: int = CHUNK_CACHE_BYTES):
        self.path = Path(path)
        self._tif = None
        self._memmap = None
        self._pages = None
        self._mapped_bytes = 0
        self._release_lock = threading.Lock()
        self.image = read_ome_zarr(self.path)
        image = self.image
        self._array = open_zarr_array(image.array)
        self._file_axes = "".join(image.axes).upper()
        self._file_shape = image.array.shape
        self._time_axis = image.axes.index("t") if "t" in image.axes else None
        self._channel_axis = image.axes.index("c") if "c" in image.axes else None
        self._leading_shape = image.array.shape[:-2]
        self._dtype = image.array.dtype.newbyteorder("=")
        self._height, self._width = image.height, image.width
        self._n_frames, self._n_channels = image.n_frames, image.n_channels
        self._has_channels = self._n_channels > 1
        self._chunks = image.array.chunks
        self._cache = _ChunkCache(cache_bytes)

    # -- reading -------------------------------------------------------------------------

    def read_window(self, frames: tuple[int, int], box: Box) -> np.ndarray:
        """See :meth:`MovieReader.read_window`."""
        t0, t1, x0, y0, x1, y1 = checked_window(
            frames, box, n_frames=self._n_frames, height=self._height, width=self._width
        )
        return self._to_output(self._read_region(t0, t1, y0, y1, x0, x1), t1 - t0)

    def read_frame(self, t: int, step: int = 1) -> np.ndarray:
        """See :meth:`MovieReader.read_frame` (a stepped read still decodes whole chunks)."""
        if not 0 <= t < self._n_frames:
            raise ValueError(f"frame {t} outside [0, {self._n_frames})")
        step = max(1, int(step))
        selection = self._selection(t, t + 1, 0, self._height, 0, self._width, step)
        return self._to_output(self._read_direct(selection), 1)[0]

    def _selection(
        self, t0: int, t1: int, y0: int, y1: int, x0: int, x1: int, step: int = 1
    ) -> tuple[slice, ...]:
        """The array selection of a window, in the array's own axis order (all channels)."""
        spans = {"t": slice(t0, t1), "y": slice(y0, y1, step), "x": slice(x0, x1, step)}
        return tuple(spans.get(axis, slice(None)) for axis in self.image.axes)

    def _to_output(self, region: np.ndarray, n_frames: int) -> np.ndarray:
        """``T×Y×X`` / ``T×C×Y×X`` from a region in the array's axis order."""
        axes = self.image.axes
        order = [axes.index(a) for a in ("t", "c") if a in axes]
        squeeze = tuple(i for i, a in enumerate(axes) if a == "z")
        view = np.transpose(region, [*order, *squeeze, len(axes) - 2, len(axes) - 1])
        ny, nx = view.shape[-2:]
        out = np.ascontiguousarray(view, dtype=self._dtype)
        return out.reshape(self._out_shape(n_frames, ny, nx))

    def _read_direct(self, selection: tuple[slice, ...]) -> np.ndarray:
        try:
            return np.asarray(self._array[selection])
        except Exception as exc:
            raise MovieError(
                self.image.array.path, f"cannot read image data ({type(exc).__name__}: {exc})"
            ) from exc

    def _read_region(self, t0: int, t1: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The window in the array's axis order, assembled from (cached) decoded chunks."""
        selection = self._selection(t0, t1, y0, y1, x0, x1)
        shape = self._file_shape
        bounds = [
            (s.start or 0, shape[i] if s.stop is None else s.stop) for i, s in enumerate(selection)
        ]
        ranges = [range(lo // c, (hi - 1) // c + 1) for (lo, hi), c in zip(bounds, self._chunks)]
        itemsize = self._dtype.itemsize
        chunk_bytes = math.prod(self._chunks) * itemsize
        touched = math.prod(len(r) for r in ranges)
        if touched * chunk_bytes > self._cache.capacity // 2:
            return self._read_direct(selection)
        found: dict[tuple[int, ...], np.ndarray] = {}
        missing: list[tuple[int, ...]] = []
        for index in itertools.product(*ranges):
            chunk = self._cache.get(index)
            if chunk is None:
                missing.append(index)
            else:
                found[index] = chunk
        if missing:
            # one zarr call for the chunk-aligned box around the missing chunks (decoding
            # happens in zarr's thread pool); every chunk in it is kept
            first = [min(m[i] for m in missing) for i in range(len(shape))]
            stop = [max(m[i] for m in missing) + 1 for i in range(len(shape))]
            block = self._read_direct(
                tuple(
                    slice(a * c, min(b * c, n))
                    for a, b, c, n in zip(first, stop, self._chunks, shape)
                )
            )
            for index in itertools.product(*(range(a, b) for a, b in zip(first, stop))):
                part = block[
                    tuple(
                        slice((i - a) * c, (i - a + 1) * c)
                        for i, a, c in zip(index, first, self._chunks)
                    )
                ]
                chunk = np.array(part, copy=True)  # not a view: the block is let go
                self._cache.put(index, chunk)
                found[index] = chunk
        dtype = next(iter(found.values())).dtype
        out = np.empty([hi - lo for lo, hi in bounds], dtype=dtype)
        for index, chunk in found.items():
            src, dst = [], []
            for axis, (i, (lo, hi)) in enumerate(zip(index, bounds)):
                base = i * self._chunks[axis]
                start, stop = max(lo, base), min(hi, base + self._chunks[axis])
                src.append(slice(start - base, stop - base))
                dst.append(slice(start - lo, stop - lo))
            out[tuple(dst)] = chunk[tuple(src)]
        return out

    # -- lifetime ------------------------------------------------------------------------

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded chunks held."""
        return self._cache.nbytes

    def close(self) -> None:
        """Drop the cached chunks (idempotent; the zarr array holds no open file)."""
        cache = getattr(self, "_cache", None)
        if cache is not None:
            cache.clear()

    def __repr__(self) -> str:
        return f"ZarrMovieReader({str(self.path)!r}, axes={self.axes!r}, shape={self.shape})"
