import io

import numpy as np
from PIL import Image

from deep_events_dagster.core.thumbnails import draw_boxes, encode_png, markdown_image, to_display


def test_png_round_trip_grey_and_rgb():
    grey = (np.arange(12 * 7).reshape(7, 12) * 3 % 256).astype(np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(grey))))
    assert np.array_equal(decoded, grey)
    rgb = np.stack([grey, 255 - grey, grey // 2], axis=2)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(rgb))))
    assert np.array_equal(decoded, rgb)


def test_boxes_drawn_at_scaled_positions():
    grey = np.zeros((50, 60), np.uint8)
    rgb = draw_boxes(grey, [((20, 10, 60, 50), (255, 0, 0))], scale=2, thickness=1)
    assert tuple(rgb[5, 10]) == (255, 0, 0)  # top-left corner at (x0/2, y0/2)
    assert tuple(rgb[15, 20]) == (0, 0, 0)  # inside untouched


def test_display_stretch_and_markdown():
    image = np.linspace(0, 1000, 100).reshape(10, 10)
    out = to_display(image, low=0, high=100)
    assert out.min() == 0 and out.max() == 255
    assert markdown_image(b"\x89PNG").startswith("![thumbnail](data:image/png;base64,")
