"""Tests for ml.plots: the metrics-vs-threshold figure."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
from PIL import Image

from deep_events_dagster.core.fsutil import TEMP_PREFIX
from deep_events_dagster.core.metrics import best_threshold, sweep
from deep_events_dagster.ml.plots import performance_plot, performance_plot_png


def _result():
    rng = np.random.default_rng(0)
    truth = rng.random((4, 32, 32)) < 0.05
    probabilities = np.clip(truth * 0.7 + rng.random(truth.shape) * 0.4, 0, 1)
    return sweep(probabilities, truth)


def test_png_bytes_decode_to_an_rgb_figure():
    result = _result()
    png = performance_plot_png(result, best_threshold(result))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.size == (800, 500)  # 8×5 inches at 100 dpi
    pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # curves were drawn
    # the chosen-threshold line changes the picture
    assert performance_plot_png(result, None) != png


def test_performance_plot_writes_the_file_atomically(tmp_path):
    result = _result()
    target = tmp_path / "model" / "perf.png"
    written = performance_plot(result, 0.5, target)
    assert written == target
    assert target.read_bytes().startswith(b"\x89PNG")
    assert Image.open(target).size == (800, 500)
    assert [p.name for p in target.parent.iterdir()] == ["perf.png"]
    assert not any(p.name.startswith(TEMP_PREFIX) for p in target.parent.iterdir())


def test_plotting_leaves_pyplot_and_the_backend_alone():
    code = (
        "import sys, numpy as np\n"
        "from deep_events_dagster.core.metrics import sweep\n"
        "from deep_events_dagster.ml.plots import performance_plot_png\n"
        "performance_plot_png(sweep(np.array([0.2, 0.9]), np.array([False, True])), 0.5)\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
