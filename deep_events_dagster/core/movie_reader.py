"""Reading movie windows: :class:`MovieReader` for OME-TIFF (and plain TIFF) movies.

:class:`MovieReader` reads only the frames and the box that are asked for: through a numpy
memmap when the movie's image data is one uncompressed contiguous block, else page by page.
Values keep the movie's dtype bit-exactly (the original cast crops to float16, which loses
precision above 2048). A truncated or corrupt file raises :class:`MovieError` when it is
opened (tifffile's warnings are listened to while the file is parsed) or, for compressed
pages, when the damaged page is read. Resident pages of a memory-mapped movie are handed
back every :data:`RELEASE_MAPPED_BYTES`.

``MovieReader(path)`` of an OME-Zarr movie (a ``*.ome.zarr`` folder) returns a
:class:`~deep_events_dagster.core.zarr_reader.ZarrMovieReader`, which reads the same windows.
"""

from __future__ import annotations

import contextlib
import logging
import math
import mmap
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from deep_events_dagster.core.acquisitions import is_zarr_movie
from deep_events_dagster.core.errors import MovieError

if TYPE_CHECKING:
    from deep_events_dagster.core.regions import Box

__all__ = ["RELEASE_MAPPED_BYTES", "MovieReader"]

# Resident movie pages a reader lets accumulate before it hands them back (see
# MovieReader._release_mapped_pages): bounds the RSS a memory-mapped movie adds.
RELEASE_MAPPED_BYTES = 64 * 1024 * 1024
# Axes that stand for time when a file carries no explicit T axis (plain stacks, ImageJ).
_TIME_LIKE = ("T", "I", "Q", "Z")
# tifffile log messages that mean the file's structure points past its end (truncation).
_CORRUPTION_HINTS = ("invalid page offset", "invalid value offset", "invalid tag offset")


class _LogCapture(logging.Handler):
    """Collect tifffile's warnings while a file is parsed."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # pragma: no cover - formatting problems must not hide errors
            self.messages.append(str(record.msg))


def checked_window(
    frames: tuple[int, int], box: Box, *, n_frames: int, height: int, width: int
) -> tuple[int, int, int, int, int, int]:
    """``(t0, t1, x0, y0, x1, y1)`` of a window read, as ints, checked to be non-empty and
    inside a movie of ``n_frames`` frames of ``height``×``width``.

    Raises
    ------
    ValueError
        The frame range or box is empty or outside the movie.
    """
    t0, t1 = (int(v) for v in frames)
    x0, y0, x1, y1 = (int(v) for v in box)
    if not 0 <= t0 < t1 <= n_frames:
        raise ValueError(f"frames {(t0, t1)} outside [0, {n_frames}) or empty")
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {(x0, y0, x1, y1)} outside the {width}×{height} image or empty")
    return t0, t1, x0, y0, x1, y1


class MovieReader:
    """Read windows of an OME-TIFF (or plain TIFF) movie with axes ``TYX`` or ``TCYX``.

    For an OME-Zarr movie (a ``*.ome.zarr`` folder) ``MovieReader(path)`` returns a
    :class:`~deep_events_dagster.core.zarr_movie.ZarrMovieReader`, which reads the same
    windows from the full-resolution array chunk by chunk.

    Parameters
    ----------
    path
        The movie file. It is opened immediately; use the reader as a context manager or call
        :meth:`close`.

    Raises
    ------
    MovieError
        The file is missing, unreadable, truncated, or its axes are not a time series of
        (multi-channel) 2-D planes.

    Notes
    -----
    Returned arrays are ``T×Y×X`` (one channel) or ``T×C×Y×X`` in the movie's dtype (native byte
    order) regardless of the order of T and C in the file. Axes of size 1 other than T are
    dropped; a file without a time axis but with one ``I``/``Q``/``Z`` axis is read as time; a
    single plane is a one-frame movie. :meth:`read_window` may be called from several threads
    at once when :attr:`uses_memmap` is true.
    """

    def __new__(cls, path: str | Path, *args: Any, **kwargs: Any) -> MovieReader:
        if cls is MovieReader and is_zarr_movie(path):
            from deep_events_dagster.core.zarr_movie import ZarrMovieReader

            return super().__new__(ZarrMovieReader)
        return super().__new__(cls)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tif: tifffile.TiffFile | None = None
        self._memmap: np.memmap | None = None
        self._mapped_bytes = 0
        self._release_lock = threading.Lock()
        capture = _LogCapture()
        tiff_logger = logging.getLogger("tifffile")
        saved_level = tiff_logger.level
        if tiff_logger.getEffectiveLevel() > logging.WARNING:  # silenced: still listen
            tiff_logger.setLevel(logging.WARNING)
        tiff_logger.addHandler(capture)
        try:
            self._tif = tifffile.TiffFile(self.path)
            series = self._tif.series[0]
            file_axes = series.axes
            file_shape = tuple(int(n) for n in series.shape)
            dataoffset = series.dataoffset
            file_dtype = np.dtype(series.dtype)
            pages = series.pages
        except FileNotFoundError as exc:
            self.close()
            raise MovieError(self.path, f"movie not found ({exc.strerror})") from exc
        except Exception as exc:
            self.close()
            raise MovieError(self.path, f"cannot read TIFF: {type(exc).__name__}: {exc}") from exc
        finally:
            tiff_logger.removeHandler(capture)
            tiff_logger.setLevel(saved_level)
        corrupt = [m for m in capture.messages if any(h in m for h in _CORRUPTION_HINTS)]
        if corrupt:
            self.close()
            raise MovieError(self.path, f"corrupt or truncated TIFF: {corrupt[0]}")
        try:
            self._setup(file_axes, file_shape, file_dtype, dataoffset, pages)
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------

    def _setup(
        self,
        file_axes: str,
        file_shape: tuple[int, ...],
        file_dtype: np.dtype,
        dataoffset: int | None,
        pages: Any,
    ) -> None:
        if len(file_axes) != len(file_shape) or not file_axes.endswith("YX"):
            raise MovieError(self.path, f"unsupported axes {file_axes!r}: planes must be YX")
        if file_dtype.kind not in "uif":
            raise MovieError(self.path, f"unsupported pixel type {file_dtype}")
        leading = file_axes[:-2]
        time_axis: int | None = leading.index("T") if "T" in leading else None
        if time_axis is None:
            # plain stacks and ImageJ files: one varying I/Q/Z axis stands for time
            candidates = [i for i, a in enumerate(leading) if a in "IQZ" and file_shape[i] > 1]
            if len(candidates) == 1:
                time_axis = candidates[0]
        channel_axis: int | None = leading.index("C") if "C" in leading else None
        others = [
            a
            for i, a in enumerate(leading)
            if i not in (time_axis, channel_axis) and file_shape[i] > 1
        ]
        if others:
            raise MovieError(
                self.path,
                f"unsupported axes {file_axes!r} {file_shape}: only time and channel may "
                f"vary besides YX",
            )

        self._file_axes = file_axes
        self._file_shape = file_shape
        self._time_axis = time_axis
        self._channel_axis = channel_axis
        self._leading_shape = file_shape[:-2]
        self._dtype = file_dtype.newbyteorder("=")
        self._height = file_shape[-2]
        self._width = file_shape[-1]
        self._n_frames = file_shape[time_axis] if time_axis is not None else 1
        self._n_channels = file_shape[channel_axis] if channel_axis is not None else 1
        self._has_channels = channel_axis is not None and self._n_channels > 1
        n_planes = math.prod(self._leading_shape)
        self._file_size = os.path.getsize(self.path)

        if dataoffset is not None:
            nbytes = math.prod(file_shape) * file_dtype.itemsize
            if self._file_size < dataoffset + nbytes:
                raise MovieError(
                    self.path,
                    f"truncated: image data needs {dataoffset + nbytes} bytes, "
                    f"the file has {self._file_size}",
                )
            assert self._tif is not None
            disk_dtype = file_dtype.newbyteorder(self._tif.byteorder)
            self._memmap = np.memmap(
                self.path, dtype=disk_dtype, mode="r", offset=dataoffset, shape=file_shape
            )
            self._pages = None
        else:
            self._pages = list(pages)
            if len(self._pages) < n_planes:
                raise MovieError(
                    self.path,
                    f"truncated: {len(self._pages)} image planes in the file, "
                    f"axes {file_axes} {file_shape} need {n_planes}",
                )

    # -- properties ----------------------------------------------------------------------

    @property
    def axes(self) -> str:
        """Axes of the arrays this reader returns: ``"TYX"`` or ``"TCYX"``."""
        return "TCYX" if self._has_channels else "TYX"

    @property
    def file_axes(self) -> str:
        """Axes of the image series as stored in the file (tifffile's squeezed axes)."""
        return self._file_axes

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the whole movie in :attr:`axes` order."""
        if self._has_channels:
            return (self._n_frames, self._n_channels, self._height, self._width)
        return (self._n_frames, self._height, self._width)

    @property
    def dtype(self) -> np.dtype:
        """Pixel dtype (native byte order)."""
        return self._dtype

    @property
    def n_frames(self) -> int:
        return self._n_frames

    @property
    def n_channels(self) -> int:
        return self._n_channels

    @property
    def height(self) -> int:
        return self._height

    @property
    def width(self) -> int:
        return self._width

    @property
    def uses_memmap(self) -> bool:
        """True when windows are sliced from a memory map of the file."""
        return self._memmap is not None

    # -- reading -------------------------------------------------------------------------

    def read_window(self, frames: tuple[int, int], box: Box) -> np.ndarray:
        """Read frames ``[start, stop)`` inside ``box = (x0, y0, x1, y1)`` (half-open).

        Returns
        -------
        numpy.ndarray
            ``T×Y×X`` or ``T×C×Y×X`` (see :attr:`axes`), the movie's dtype, a fresh array.

        Raises
        ------
        ValueError
            The frame range or box is empty or outside the movie.
        MovieError
            The needed part of the file cannot be read.
        """
        t0, t1, x0, y0, x1, y1 = checked_window(
            frames, box, n_frames=self._n_frames, height=self._height, width=self._width
        )
        if self._memmap is not None:
            return self._read_memmap(t0, t1, x0, y0, x1, y1)
        return self._read_pages(t0, t1, x0, y0, x1, y1)

    def read_frame(self, t: int, step: int = 1) -> np.ndarray:
        """Read one whole frame: ``C×Y×X`` for multi-channel movies, else ``Y×X``.

        With ``step`` > 1 only every ``step``-th row and column (a cheap preview: a
        memory-mapped movie then reads about ``1/step`` of the frame's pages).
        """
        if not 0 <= t < self._n_frames:
            raise ValueError(f"frame {t} outside [0, {self._n_frames})")
        box = (0, 0, self._width, self._height)
        if self._memmap is not None:
            return self._read_memmap(t, t + 1, *box, step=max(1, int(step)))[0]
        frame = self._read_pages(t, t + 1, *box)[0]
        return np.ascontiguousarray(frame[..., ::step, ::step]) if step > 1 else frame

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Yield every frame in order (see :meth:`read_frame`); memory stays O(one frame)."""
        for t in range(self._n_frames):
            yield self.read_frame(t)

    def _out_shape(self, nt: int, ny: int, nx: int) -> tuple[int, ...]:
        if self._has_channels:
            return (nt, self._n_channels, ny, nx)
        return (nt, ny, nx)

    def _release_mapped_pages(self, touched_bytes: int) -> None:
        """Count what a read mapped; past :data:`RELEASE_MAPPED_BYTES`, drop the mapping's
        resident pages (they stay in the page cache). Without this every page ever touched
        counts in the process's RSS until the movie is closed; doing it after every read
        instead costs about 1 ms a call (a TLB flush), more than reading a crop."""
        with self._release_lock:
            self._mapped_bytes += touched_bytes
            if self._mapped_bytes < RELEASE_MAPPED_BYTES:
                return
            self._mapped_bytes = 0
        mapping = getattr(self._memmap, "_mmap", None)
        if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):
                mapping.madvise(mmap.MADV_DONTNEED)

    def _read_memmap(
        self, t0: int, t1: int, x0: int, y0: int, x1: int, y1: int, step: int = 1
    ) -> np.ndarray:
        assert self._memmap is not None
        index: list[Any] = []
        for i in range(len(self._leading_shape)):
            index.append(slice(t0, t1) if i == self._time_axis else slice(None))
        index += [slice(y0, y1, step), slice(x0, x1, step)]
        try:
            view = self._memmap[tuple(index)]
            order = []
            if self._time_axis is not None:
                order.append(self._time_axis)
            if self._has_channels:
                order.append(self._channel_axis)
            kept = set(order)
            # size-1 leading axes that are neither T nor C are squeezed away
            squeeze = tuple(i for i in range(len(self._leading_shape)) if i not in kept)
            view = np.squeeze(view, axis=squeeze) if squeeze else view
            rank = {axis: pos for pos, axis in enumerate(sorted(kept))}
            view = np.transpose(view, [rank[a] for a in order] + [len(order), len(order) + 1])
            out = np.array(view, dtype=self._dtype, copy=True)
            # the kernel maps whole pages, and up to 64 KiB around each one touched: count
            # every plane's band of rows y0…y1 in full
            planes = out.size // max(1, out.shape[-1] * out.shape[-2])
            row_bytes = max(self._width * self._dtype.itemsize, mmap.PAGESIZE)
            self._release_mapped_pages(planes * (y1 - y0) * row_bytes)
        except (OSError, ValueError) as exc:  # pragma: no cover - I/O errors on the mapping
            raise MovieError(self.path, f"cannot read image data: {exc}") from exc
        if self._time_axis is None:
            out = out[np.newaxis]
        return out.reshape(self._out_shape(t1 - t0, *out.shape[-2:]))

    def _plane_index(self, t: int, c: int) -> int:
        coords = [0] * len(self._leading_shape)
        if self._time_axis is not None:
            coords[self._time_axis] = t
        if self._channel_axis is not None:
            coords[self._channel_axis] = c
        if not coords:
            return 0
        return int(np.ravel_multi_index(coords, self._leading_shape))

    def _read_plane(self, index: int) -> np.ndarray:
        page = self._pages[index] if self._pages is not None else None
        if page is None:
            raise MovieError(self.path, f"image plane {index} is missing")
        offsets = getattr(page, "dataoffsets", ()) or ()
        counts = getattr(page, "databytecounts", ()) or ()
        for offset, count in zip(offsets, counts, strict=False):
            if offset + count > self._file_size:
                raise MovieError(
                    self.path,
                    f"truncated: image plane {index} needs bytes up to {offset + count}, "
                    f"the file has {self._file_size}",
                )
        try:
            data = page.asarray()
        except Exception as exc:
            raise MovieError(
                self.path, f"cannot decode image plane {index}: {type(exc).__name__}: {exc}"
            ) from exc
        if data.size != self._height * self._width:
            raise MovieError(
                self.path,
                f"image plane {index} has shape {data.shape}, "
                f"expected {(self._height, self._width)}",
            )
        return data.reshape(self._height, self._width)

    def _read_pages(self, t0: int, t1: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        out = np.empty(self._out_shape(t1 - t0, y1 - y0, x1 - x0), dtype=self._dtype)
        for t in range(t0, t1):
            for c in range(self._n_channels if self._has_channels else 1):
                plane = self._read_plane(self._plane_index(t, c))[y0:y1, x0:x1]
                if self._has_channels:
                    out[t - t0, c] = plane
                else:
                    out[t - t0] = plane
        return out

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the file handle and the memory map (idempotent)."""
        memmap = self._memmap
        self._memmap = None
        if memmap is not None:
            mm = getattr(memmap, "_mmap", None)
            del memmap
            if mm is not None:
                with contextlib.suppress(BufferError, ValueError):  # a view still refers to it
                    mm.close()
        if self._tif is not None:
            self._tif.close()
            self._tif = None

    def __enter__(self) -> MovieReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MovieReader({str(self.path)!r}, axes={self.axes!r}, shape={self.shape})"
