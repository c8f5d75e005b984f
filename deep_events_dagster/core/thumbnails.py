"""Small PNG pictures for the UI: max projections with event boxes, encoded without extra deps."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterable, Sequence

import numpy as np

POSITIVE_COLOUR = (255, 64, 64)
NEGATIVE_COLOUR = (64, 160, 255)


def encode_png(image: np.ndarray) -> bytes:
    """Encode a ``Y×X`` (grey) or ``Y×X×3`` (RGB) uint8 array as PNG bytes."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 2:
        colour_type, channels = 0, 1
    elif image.ndim == 3 and image.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise ValueError(f"expected Y×X or Y×X×3, got shape {image.shape}")
    height, width = image.shape[:2]
    rows = image.reshape(height, width * channels)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 3))
        + chunk(b"IEND", b"")
    )


def to_display(image: np.ndarray, *, low: float = 1.0, high: float = 99.7) -> np.ndarray:
    """Contrast-stretch a 2-D image to uint8 between two percentiles."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(image, [low, high]) if image.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((image - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def downsample_factor(height: int, width: int, max_side: int) -> int:
    """Integer stride so that the longer side is at most ``max_side``."""
    return max(1, int(np.ceil(max(height, width) / max_side)))


def draw_boxes(
    grey: np.ndarray,
    boxes: Iterable[tuple[Sequence[int], tuple[int, int, int]]],
    *,
    scale: int = 1,
    thickness: int = 2,
) -> np.ndarray:
    """Draw rectangle outlines on a grey uint8 image; boxes are ``((x0, y0, x1, y1), rgb)``."""
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    height, width = grey.shape
    for box, colour in boxes:
        x0, y0, x1, y1 = (int(v) // scale for v in box)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(width, max(x0 + 1, x1)), min(height, max(y0 + 1, y1))
        t = thickness
        rgb[y0 : min(y0 + t, y1), x0:x1] = colour
        rgb[max(y1 - t, y0) : y1, x0:x1] = colour
        rgb[y0:y1, x0 : min(x0 + t, x1)] = colour
        rgb[y0:y1, max(x1 - t, x0) : x1] = colour
    return rgb


def markdown_image(png: bytes, alt: str = "thumbnail") -> str:
    """Markdown embedding a PNG as a data URI (Dagster renders it in the asset's metadata)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
