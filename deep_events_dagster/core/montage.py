"""A picture of a training set for the UI: a grid of samples with their masks outlined."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from deep_events_dagster.core.splits import SPLITS

__all__ = ["montage"]

_OVERLAY = np.array((255, 64, 64), dtype=np.float32)


def _tile(frame: np.ndarray, mask: np.ndarray, stride: int) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.float32)[::stride, ::stride]
    inside = np.asarray(mask)[::stride, ::stride] > 0.5
    low, high = (float(frame.min()), float(frame.max())) if frame.size else (0.0, 1.0)
    grey = np.clip((frame - low) / (high - low if high > low else 1.0), 0, 1) * 255
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[inside] = 0.6 * rgb[inside] + 0.4 * _OVERLAY
    outline = inside & ~ndimage.binary_erosion(inside)
    rgb[outline] = _OVERLAY
    return rgb.astype(np.uint8)


def montage(path: str | Path, n: int = 16, *, tile_size: int = 96, gap: int = 2) -> np.ndarray:
    """``Y×X×3`` uint8 grid of ``n`` samples of a training set, for a UI thumbnail.

    Samples are evenly spaced over the train then eval stacks; each tile is the last frame of
    the window (contrast-stretched), the mask (> 0.5) tinted red with a red outline. Tiles are
    subsampled to at most ``tile_size`` pixels a side.
    """
    path = Path(path)
    stacks = []
    for split in SPLITS:
        images = np.load(path / f"{split}_images.npy", mmap_mode="r")
        masks = np.load(path / f"{split}_masks.npy", mmap_mode="r")
        stacks.append((images, masks))
    total = sum(len(images) for images, _ in stacks)
    if total == 0 or n < 1:
        return np.zeros((tile_size, tile_size, 3), dtype=np.uint8)
    picks = np.unique(np.round(np.linspace(0, total - 1, min(n, total))).astype(np.int64))
    height, width = stacks[0][0].shape[-2:] if len(stacks[0][0]) else stacks[1][0].shape[-2:]
    stride = max(1, math.ceil(max(height, width) / tile_size))
    tiles = []
    n_train = len(stacks[0][0])
    for index in picks:
        images, masks = stacks[0] if index < n_train else stacks[1]
        local = int(index if index < n_train else index - n_train)
        tiles.append(_tile(images[local, -1], masks[local], stride))
    th, tw = tiles[0].shape[:2]
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    grid = np.full(
        (rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap, 3), 32, dtype=np.uint8
    )
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = tile
    return grid
