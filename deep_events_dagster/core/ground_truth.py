"""Writing ground truth: the tiled TIFF of heatmaps and its JSON sidecar, frame by frame.

:func:`write_ground_truth` renders each frame (Gaussians of points and strokes of lines,
:mod:`~deep_events_dagster.core.ground_truth_render`) and encodes it at once, so memory stays
O(one frame).

On disk the volume is a multi-page TIFF (one page per frame,
``photometric=minisblack``), **tiled 256×256 and deflate-compressed** (TIFF compression 8,
"zlib"): tiles are independent, so reading a 256×256 window costs at most four small tile
decodes, and deflate is readable by every TIFF reader (tifffile, Bio-Formats/Fiji, libtiff,
GDAL). Writing is fast because the encoder knows where the signal is: tiles that no Gaussian
touches are emitted as one pre-compressed all-zero blob (≈ 250 bytes) without being looked at,
and only the few touched tiles are compressed (``zlib`` level 1; zlib-ng through imagecodecs
when present). A 2048×2048×100 volume with 200 points renders and writes in ≈ 0.1 s.

A JSON sidecar ``<stem>.json`` next to the TIFF records σ, cutoff, shape, the number of points
(and, when lines are given, ``line_width`` and the number of lines) and the *support* — per
frame, the windows ``[y0, y1, x0, x1]`` (half-open) that contain every non-zero pixel — so
event detection can skip empty space. The sidecar carries a random id that is also stored in
the TIFF's metadata; reading the support back, and the frames and windows of the TIFF, is
:mod:`~deep_events_dagster.core.ground_truth_reader`.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from deep_events_dagster.core.fsutil import atomic_path, atomic_write_text
from deep_events_dagster.core.ground_truth_reader import sidecar_path
from deep_events_dagster.core.ground_truth_render import (
    DEFAULT_CUTOFF,
    DEFAULT_LINE_WIDTH,
    DEFAULT_SIGMA,
    check_render_args,
    render_frames,
)
from deep_events_dagster.core.regions import Window

__all__ = [
    "SIDECAR_FORMAT",
    "TILE",
    "ZLIB_LEVEL",
    "GroundTruthSummary",
    "write_ground_truth",
]

TILE = 256
ZLIB_LEVEL = 1
SIDECAR_FORMAT = 1


@dataclass(frozen=True)
class GroundTruthSummary:
    """What :func:`write_ground_truth` wrote.

    Attributes
    ----------
    path, sidecar_path
        The TIFF and its JSON sidecar.
    shape
        ``(n_frames, height, width)``.
    n_points
        Points that contributed signal (frame inside the movie and window inside the image).
    frames_with_signal
        Number of frames with at least one non-zero pixel.
    support
        Frame → windows ``(y0, y1, x0, x1)`` covering every non-zero pixel of that frame;
        frames without signal are absent.
    n_lines
        Lines that contributed signal (0 when none were given).
    line_width
        The stroke width in pixels when lines were given, else ``None``.
    """

    path: Path
    sidecar_path: Path
    shape: tuple[int, int, int]
    n_points: int
    frames_with_signal: int
    support: dict[int, list[Window]]
    n_lines: int = 0
    line_width: float | None = None


def _tile_shape(height: int, width: int) -> tuple[int, int]:
    def fit(n: int) -> int:
        return min(TILE, ((n + 15) // 16) * 16)

    return fit(height), fit(width)


def _encoded_tiles(
    frames: Iterable[tuple[int, np.ndarray, list[Window]]],
    height: int,
    width: int,
    tile: tuple[int, int],
    support: dict[int, list[Window]],
) -> Iterator[bytes]:
    th, tw = tile
    n_ty, n_tx = -(-height // th), -(-width // tw)
    zero_blob = zlib.compress(bytes(th * tw * 4), 9)
    padded = np.zeros((th, tw), dtype=np.float32)
    for t, frame, windows in frames:
        touched: set[tuple[int, int]] = set()
        for y0, y1, x0, x1 in windows:
            for ty in range(y0 // th, (y1 - 1) // th + 1):
                for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                    touched.add((ty, tx))
        if windows:
            support[t] = list(windows)
        for ty in range(n_ty):
            for tx in range(n_tx):
                if (ty, tx) not in touched:
                    yield zero_blob
                    continue
                block = frame[ty * th : (ty + 1) * th, tx * tw : (tx + 1) * tw]
                if block.shape != (th, tw):
                    padded.fill(0)
                    padded[: block.shape[0], : block.shape[1]] = block
                    block = padded
                yield _deflate(np.ascontiguousarray(block).tobytes())


def _deflate(data: bytes) -> bytes:
    """zlib stream at level 1 (zlib-ng through imagecodecs when present: ~2× faster)."""
    if _ZLIBNG_ENCODE is not None:
        return _ZLIBNG_ENCODE(data, level=ZLIB_LEVEL)
    return zlib.compress(data, ZLIB_LEVEL)


def _find_zlibng():
    try:
        import imagecodecs

        return imagecodecs.zlibng_encode if imagecodecs.ZLIBNG.available else None
    except Exception:  # imagecodecs missing or built without zlib-ng
        return None


_ZLIBNG_ENCODE = _find_zlibng()


def write_ground_truth(
    path: str | Path,
    points: Any,
    *,
    n_frames: int,
    height: int,
    width: int,
    sigma: float = DEFAULT_SIGMA,
    cutoff: float = DEFAULT_CUTOFF,
    lines: Any = (),
    line_width: float = DEFAULT_LINE_WIDTH,
) -> GroundTruthSummary:
    """Render and write a ``T×Y×X`` float32 ground-truth TIFF plus its JSON sidecar.

    Frames are rendered and encoded one at a time (memory O(one frame)); both files are
    written atomically (TIFF first, then the sidecar). See the module docstring for the file
    layout (256×256 deflate tiles, all-zero tiles pre-encoded).

    Parameters
    ----------
    path
        Target TIFF, e.g. ``<acquisition>/ground_truth_<kind>.tif``.
    points
        :class:`AnnotationPoint`-like objects or an ``N×3`` array of ``(frame, y, x)`` in pixels.
    n_frames, height, width
        Movie size.
    sigma, cutoff
        Gaussian σ in pixels and the relative cutoff (see
        :func:`~deep_events_dagster.core.ground_truth_render.render_frame`).
    lines
        :class:`~deep_events_dagster.core.annotations.LineAnnotation`-like objects or
        ``(frame, vertices)`` pairs, drawn as strokes (see
        :func:`~deep_events_dagster.core.ground_truth_render.render_lines_frame`); points
        and lines may both be given (pass ``()`` as ``points`` for lines only).
    line_width
        Stroke width in pixels. When ``lines`` is not empty it is recorded in the sidecar
        (``line_width``, with ``n_lines``) and in the TIFF's metadata.

    Returns
    -------
    GroundTruthSummary
    """
    check_render_args(
        sigma=sigma,
        cutoff=cutoff,
        line_width=line_width,
        n_frames=n_frames,
        height=height,
        width=width,
    )
    lines = list(lines)
    path = Path(path)
    side = sidecar_path(path)
    gt_id = uuid.uuid4().hex
    tile = _tile_shape(height, width)
    support: dict[int, list[Window]] = {}
    counts = [0, 0]  # points drawn, lines drawn

    def frames() -> Iterator[tuple[int, np.ndarray, list[Window]]]:
        for t, frame, windows, n_points, n_lines in render_frames(
            points,
            lines,
            n_frames=n_frames,
            height=height,
            width=width,
            sigma=sigma,
            cutoff=cutoff,
            line_width=float(line_width),
        ):
            counts[0] += n_points
            counts[1] += n_lines
            yield t, frame, windows

    metadata: dict[str, Any] = {
        "axes": "TYX",
        "gt_id": gt_id,
        "sigma": float(sigma),
        "cutoff": cutoff,
    }
    if lines:
        metadata["line_width"] = float(line_width)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            _encoded_tiles(frames(), height, width, tile, support),
            shape=(n_frames, height, width),
            dtype=np.float32,
            photometric="minisblack",
            tile=tile,
            compression="zlib",
            metadata=metadata,
        )
    sidecar: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "gt_id": gt_id,
        "sigma": float(sigma),
        "cutoff": float(cutoff),
        "shape": [int(n_frames), int(height), int(width)],
        "n_points": counts[0],
    }
    if lines:
        sidecar["line_width"] = float(line_width)
        sidecar["n_lines"] = counts[1]
    sidecar["support"] = {str(t): [list(w) for w in ws] for t, ws in sorted(support.items())}
    atomic_write_text(side, json.dumps(sidecar, indent=None, separators=(",", ":")))
    return GroundTruthSummary(
        path=path,
        sidecar_path=side,
        shape=(int(n_frames), int(height), int(width)),
        n_points=counts[0],
        frames_with_signal=len(support),
        support=support,
        n_lines=counts[1],
        line_width=float(line_width) if lines else None,
    )
