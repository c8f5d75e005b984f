"""Reading ground-truth TIFFs: :class:`GroundTruthReader` and the sidecar's support.

:class:`GroundTruthReader` reads frames or windows of a ``T×Y×X`` TIFF by decoding only the
tiles (or strips) a window overlaps, so a 256×256 window of the tiled file that
:func:`~deep_events_dagster.core.ground_truth.write_ground_truth` writes costs at most four
small tile decodes; the writer's pre-encoded all-zero tiles are recognised by their bytes and
never decoded. Any single-channel ``T×Y×X`` TIFF can be read (strips, ImageJ hyperstacks).

The JSON sidecar ``<stem>.json`` (:func:`sidecar_path`) records the *support* — per frame, the
windows ``[y0, y1, x0, x1]`` that contain every non-zero pixel — and a random id that is also
stored in the TIFF's metadata. :func:`read_ground_truth_support` ignores a sidecar whose id does
not match (e.g. a crash between writing the two files), and detection then scans whole frames.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.regions import Box, Window

__all__ = [
    "GroundTruthReader",
    "opened_reader",
    "read_ground_truth_support",
    "sidecar_path",
]


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a ground-truth TIFF: ``<folder>/<stem>.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".json")


def _tiff_gt_id(path: Path) -> str | None:
    try:
        with tifffile.TiffFile(path) as tif:
            meta = tif.shaped_metadata
    except (OSError, ValueError, tifffile.TiffFileError):
        return None
    if not meta:
        return None
    value = meta[0].get("gt_id")
    return str(value) if value is not None else None


def read_ground_truth_support(path: str | Path) -> dict[int, list[Window]] | None:
    """Return the support recorded in the sidecar of ground-truth TIFF ``path``.

    Returns ``None`` — meaning "scan whole frames" — when the sidecar is missing, unreadable,
    or belongs to another version of the TIFF (its id differs from the TIFF's metadata).
    Frames without signal are absent from the mapping.
    """
    path = Path(path)
    side = sidecar_path(path)
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
        gt_id = data["gt_id"]
        raw = data["support"]
        support = {
            int(t): [Window(int(w[0]), int(w[1]), int(w[2]), int(w[3])) for w in ws]
            for t, ws in raw.items()
        }
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    if _tiff_gt_id(path) != gt_id:
        return None
    return support


def _zero_tile_for(tif: tifffile.TiffFile) -> bytes | None:
    """The compressed bytes of an all-zero tile as
    :func:`~deep_events_dagster.core.ground_truth.write_ground_truth` writes it."""
    first = tif.pages.first
    if not first.is_tiled or first.compression != 8 or first.dtype != np.float32:
        return None
    return zlib.compress(bytes(first.tilelength * first.tilewidth * 4), 9)


class GroundTruthReader:
    """Read frames or windows of a ground-truth (or any single-channel ``T×Y×X``) TIFF.

    Windows are read by decoding only the tiles (or strips) that overlap them, so a 256×256
    window of a tiled file costs at most four tile decodes. Use as a context manager.

    Parameters
    ----------
    path
        The TIFF file.
    cache_bytes
        Keep up to this many bytes of decoded tiles (least recently used dropped first), for
        callers that read the same places several times (detection, then negatives, then
        crops). 0 (default) keeps none.
    """

    def __init__(self, path: str | Path, *, cache_bytes: int = 0):
        self.path = Path(path)
        self._cache_limit = max(0, int(cache_bytes))
        self._segments: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()
        self._cached_bytes = 0
        self._tif = tifffile.TiffFile(self.path)
        try:
            series = self._tif.series[0]
            shape = tuple(int(s) for s in series.shape)
            axes = series.axes
            if len(shape) == 2:
                shape = (1, *shape)
            elif len(shape) != 3 or axes[-2:] != "YX":
                raise ConfigurationError(
                    f"{self.path}: expected a T×Y×X ground truth, got axes {axes} {shape}"
                )
            self.shape: tuple[int, int, int] = shape  # type: ignore[assignment]
            self.dtype = np.dtype(series.dtype)
            self._memmap: np.ndarray | None = None
            self._page_cache: dict[int, Any] = {}
            self._zero_tile: bytes | None = _zero_tile_for(self._tif)
            n_pages = len(self._tif.pages)
            if n_pages < shape[0]:
                # e.g. ImageJ hyperstacks store one IFD; data are contiguous and uncompressed.
                self._memmap = tifffile.memmap(self.path, mode="r").reshape(shape)
        except Exception:
            self._tif.close()
            raise

    @property
    def n_frames(self) -> int:
        return self.shape[0]

    @property
    def height(self) -> int:
        return self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[2]

    def close(self) -> None:
        self._tif.close()

    def __enter__(self) -> GroundTruthReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _page(self, t: int):
        page = self._page_cache.get(t)
        if page is None:
            page = self._tif.pages[t]
            if len(self._page_cache) > 4096:
                self._page_cache.clear()
            self._page_cache[t] = page
        return page

    def read_frame(self, t: int) -> np.ndarray:
        """Return frame ``t`` as a ``Y×X`` array of the file's dtype."""
        return self.read_window(t, 0, self.height, 0, self.width)

    def read_window(self, t: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Return ``frame[t][y0:y1, x0:x1]`` (clipped to the image), decoding only that."""
        if not 0 <= t < self.n_frames:
            raise IndexError(f"frame {t} outside 0…{self.n_frames - 1}")
        y0, y1 = max(0, int(y0)), min(self.height, int(y1))
        x0, x1 = max(0, int(x0)), min(self.width, int(x1))
        out = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), dtype=self.dtype)
        if out.size == 0:
            return out
        if self._memmap is not None:
            out[...] = self._memmap[t, y0:y1, x0:x1]
            return out
        page = self._page(t)
        kf = page.keyframe
        if kf.samplesperpixel != 1 or kf.imagedepth != 1 or not page.dataoffsets:
            out[...] = page.asarray()[y0:y1, x0:x1]
            return out
        if kf.is_tiled:
            th, tw = kf.tilelength, kf.tilewidth
            n_tx = -(-kf.imagewidth // tw)
            indices = [
                ty * n_tx + tx
                for ty in range(y0 // th, (y1 - 1) // th + 1)
                for tx in range(x0 // tw, (x1 - 1) // tw + 1)
            ]
        else:
            rps = kf.rowsperstrip or kf.imagelength
            rps = min(rps, kf.imagelength)
            indices = list(range(y0 // rps, (y1 - 1) // rps + 1))
        for index in indices:
            found = self._segment(t, page, index)
            if found is None:
                continue
            seg, sy, sx = found
            oy0, oy1 = max(y0, sy), min(y1, sy + seg.shape[0])
            ox0, ox1 = max(x0, sx), min(x1, sx + seg.shape[1])
            if oy0 < oy1 and ox0 < ox1:
                out[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0] = seg[
                    oy0 - sy : oy1 - sy, ox0 - sx : ox1 - sx
                ]
        return out

    def _segment(self, t: int, page: Any, index: int) -> tuple[np.ndarray, int, int] | None:
        """Decoded tile or strip ``index`` of frame ``t`` with its top-left corner; None when
        it holds only zeros."""
        key = (t, index)
        if key in self._segments:
            self._segments.move_to_end(key)
            return self._segments[key]
        found = self._decode_segment(page, index)
        if self._cache_limit:
            size = 64 + (found[0].nbytes if found is not None else 0)
            self._segments[key] = found
            self._cached_bytes += size
            while self._cached_bytes > self._cache_limit and self._segments:
                _, dropped = self._segments.popitem(last=False)
                self._cached_bytes -= 64 + (dropped[0].nbytes if dropped is not None else 0)
        return found

    def _decode_segment(self, page: Any, index: int) -> tuple[np.ndarray, int, int] | None:
        count = page.databytecounts[index]
        if count == 0:
            return None  # sparse (empty) segment: zeros
        fh = self._tif.filehandle
        fh.seek(page.dataoffsets[index])
        data = fh.read(count)
        if self._zero_tile is not None and data == self._zero_tile:
            return None  # the writer's pre-encoded all-zero tile
        seg, pos, _shape = page.keyframe.decode(data, index)
        if seg is None:
            return None
        seg = seg.reshape(seg.shape[-3], seg.shape[-2])
        seg.flags.writeable = False  # shared by the cache
        return seg, int(pos[2]), int(pos[3])

    def has_signal(self, box: Box, frames: tuple[int, int]) -> bool:
        """Whether any pixel of ``box`` ``(x0, y0, x1, y1)`` is > 0 in frames ``[start, stop)``."""
        x0, y0, x1, y1 = box
        start, stop = max(0, frames[0]), min(self.n_frames, frames[1])
        return any(self.read_window(t, y0, y1, x0, x1).any() for t in range(start, stop))


@contextlib.contextmanager
def opened_reader(path: Path, reader: GroundTruthReader | None) -> Iterator[GroundTruthReader]:
    """Yield ``reader`` as it is (the caller closes it), else a reader of ``path`` closed on exit.

    Parameters
    ----------
    path
        The ground-truth TIFF.
    reader
        An open reader of ``path`` (e.g. one that caches tiles for later steps), or ``None``.
    """
    if reader is not None:
        yield reader
        return
    with GroundTruthReader(path) as opened:
        yield opened
