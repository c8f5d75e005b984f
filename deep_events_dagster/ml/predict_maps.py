"""Probability maps of a model over normalised frame windows: windows, tiles and blending.

* **Windows.** :func:`window_frames` gives the ``n_timepoints`` frames ending at a frame, ``k``
  apart, oldest first, clamped to frame 0 (the first frames see a window that repeats frame 0).
* **Tiles.** :func:`probability_maps` sends a frame of at most ``max_tile²`` pixels through the
  network whole; a larger one in overlapping tiles of at most ``max_tile`` per side
  (``tile_overlap`` pixels shared, :func:`tile_starts`), blended with weights that ignore the
  outer quarter of the overlap (where the network sees the tile's edge) and ramp linearly over
  the rest, so seams do not show. The U-Net pools twice: it needs sides divisible by 4 (frames
  are padded by reflection and the output cropped back) and gives the same output only for
  shifts by multiples of 4 (tiles start at those).

:func:`deep_events_dagster.ml.predict.predict_movie` streams a movie through these.
"""

from __future__ import annotations

import numpy as np

from deep_events_dagster.ml.backend import Predictor

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_TILE",
    "DEFAULT_TILE_OVERLAP",
    "SIDE_MULTIPLE",
    "probability_maps",
    "tile_starts",
    "window_frames",
]

# Frames up to 2048² go through the network whole: tiles would overlap (a 2048² frame in 1024²
# tiles computes 2.25× its pixels) and the whole frame fits in a few GB (make bench, predictions).
DEFAULT_MAX_TILE = 2048
DEFAULT_TILE_OVERLAP = 128
DEFAULT_BATCH_SIZE = 4
# The U-Net pools twice: its input sides must be multiples of this.
SIDE_MULTIPLE = 4


def window_frames(frame: int, n_timepoints: int, step: int = 1) -> tuple[int, ...]:
    """The frames of the window ending at ``frame``, oldest first, clamped to frame 0.

    ``window_frames(5, 3, 2) == (1, 3, 5)`` and ``window_frames(1, 3, 2) == (0, 0, 1)``.
    """
    if n_timepoints < 1 or step < 1:
        raise ValueError(f"n_timepoints and step must be ≥ 1, got {n_timepoints}, {step}")
    return tuple(max(0, frame - (n_timepoints - 1 - j) * step) for j in range(n_timepoints))


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, size)`` with at least ``overlap``
    pixels shared by neighbours; the last tile ends at ``size``. One tile when it fits.

    With ``align`` (dividing ``size`` and ``tile``) every start is a multiple of it.
    """
    if size <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be in [0, {tile})")
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def _ramp(length: int, overlap: int, *, first: bool, last: bool) -> np.ndarray:
    """Blending weights along one tile side.

    At an end inside the image the weight is 0 over the outer quarter of the overlap (where the
    network sees the tile's padding instead of the image), then ramps linearly to 1 at the
    overlap's end; at an end on the image border it is 1. Neighbouring tiles share at least
    ``overlap`` pixels, so every pixel keeps a positive weight in some tile.
    """
    weight = np.ones(length, dtype=np.float32)
    if overlap <= 0:
        return weight
    margin = overlap // 4
    distance = np.arange(length, dtype=np.float32)
    rising = np.clip((distance - margin + 1) / (overlap - 2 * margin + 1), 0.0, 1.0)
    if not first:
        weight = np.minimum(weight, rising)
    if not last:
        weight = np.minimum(weight, rising[::-1])
    return weight


def _pad_mode(height: int, width: int) -> str:
    # reflection needs more pixels than it pads (at most 3 here)
    return "reflect" if min(height, width) >= SIDE_MULTIPLE else "edge"


def _pad_to_multiple(images: np.ndarray) -> np.ndarray:
    """``…×h×w`` padded at the bottom and right to sides divisible by 4 (itself when they are)."""
    height, width = images.shape[-2:]
    pad_y, pad_x = -height % SIDE_MULTIPLE, -width % SIDE_MULTIPLE
    if not (pad_y or pad_x):
        return images
    padding = [(0, 0)] * (images.ndim - 2) + [(0, pad_y), (0, pad_x)]
    return np.pad(images, padding, mode=_pad_mode(height, width))


def _predict_padded(predictor: Predictor, images: np.ndarray, batch_size: int) -> np.ndarray:
    """``N×T×h×w`` → ``N×h×w`` probabilities, padding the sides to multiples of 4."""
    height, width = images.shape[-2:]
    padded = _pad_to_multiple(images)
    out = np.asarray(predictor.predict(np.ascontiguousarray(padded), batch_size=batch_size))
    expected = (padded.shape[0], *padded.shape[-2:])
    if out.shape != expected:
        raise ValueError(f"the model returned shape {out.shape} for inputs {padded.shape}")
    return out[:, :height, :width].astype(np.float32, copy=False)


def probability_maps(
    predictor: Predictor,
    windows: np.ndarray,
    *,
    max_tile: int = DEFAULT_MAX_TILE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Probability maps of normalised windows, whole or in blended tiles.

    Parameters
    ----------
    predictor
        The model (:func:`deep_events_dagster.ml.backend.load_predictor`).
    windows
        ``N×T×H×W`` float32, each frame normalised whole (tiles are cut afterwards).
    max_tile
        Frames of at most ``max_tile²`` pixels go through whole; larger ones in tiles of at most
        ``max_tile`` per side.
    tile_overlap
        Pixels neighbouring tiles share at least (capped at half the tile). The outer quarter
        of it gets no weight: it must exceed how far a tile's edge changes the network's
        output (measured about 25 px for the tests' small U-Net with ``first_conv_size`` 5;
        the default 128 leaves 32 px).
    batch_size
        Samples (windows or tiles) per forward pass.

    Returns
    -------
    numpy.ndarray
        ``N×H×W`` float32 probabilities.
    """
    if windows.ndim != 4:
        raise ValueError(f"windows must be N×T×H×W, got shape {windows.shape}")
    if max_tile < SIDE_MULTIPLE:
        raise ValueError(f"max_tile must be ≥ {SIDE_MULTIPLE}, got {max_tile}")
    n, _, height, width = windows.shape
    if height * width <= max_tile * max_tile:
        return _predict_padded(predictor, windows, batch_size)

    # Tile the frame padded to multiples of 4, at offsets that are multiples of 4: the U-Net
    # pools twice, so only such shifts leave its output unchanged away from the tiles' edges.
    padded = _pad_to_multiple(windows)
    padded_height, padded_width = padded.shape[-2:]
    side = max(SIDE_MULTIPLE, max_tile // SIDE_MULTIPLE * SIDE_MULTIPLE)
    tile_y, tile_x = min(side, padded_height), min(side, padded_width)
    overlap = max(0, min(int(tile_overlap), min(tile_y, tile_x) // 2))
    ys = tile_starts(padded_height, tile_y, overlap, SIDE_MULTIPLE)
    xs = tile_starts(padded_width, tile_x, overlap, SIDE_MULTIPLE)
    boxes = [(y0, x0) for y0 in ys for x0 in xs]
    weights = {
        (y0, x0): np.outer(
            _ramp(tile_y, overlap, first=y0 == 0, last=y0 + tile_y == padded_height),
            _ramp(tile_x, overlap, first=x0 == 0, last=x0 + tile_x == padded_width),
        )
        for y0, x0 in boxes
    }
    out = np.empty((n, height, width), dtype=np.float32)
    for i in range(n):
        total = np.zeros((padded_height, padded_width), dtype=np.float32)
        weight_sum = np.zeros((padded_height, padded_width), dtype=np.float32)
        for first in range(0, len(boxes), batch_size):
            chunk = boxes[first : first + batch_size]
            tiles = np.stack([padded[i, :, y0 : y0 + tile_y, x0 : x0 + tile_x] for y0, x0 in chunk])
            maps = _predict_padded(predictor, tiles, batch_size)
            for (y0, x0), prob in zip(chunk, maps, strict=True):
                weight = weights[(y0, x0)]
                total[y0 : y0 + tile_y, x0 : x0 + tile_x] += weight * prob
                weight_sum[y0 : y0 + tile_y, x0 : x0 + tile_x] += weight
        out[i] = (total / weight_sum)[:height, :width]
    return out
