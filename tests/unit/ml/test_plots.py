"""Tests for ml.plots: event-level metric curves and the histogram of event max scores."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deep_events_dagster.core.fsutil import TEMP_PREFIX
from deep_events_dagster.core.metrics import best_threshold, max_sweep
from deep_events_dagster.ml.plots import (
    HISTOGRAM_BINS,
    performance_figure,
    performance_plot,
    performance_plot_png,
    score_timeline_png,
)


def _events():
    rng = np.random.default_rng(0)
    truth = rng.random(60) < 0.4
    scores = np.clip(np.where(truth, 0.55, 0.15) + rng.normal(0, 0.2, 60), 0, 1)
    return max_sweep(scores, truth), scores, truth


def test_png_bytes_decode_to_a_two_panel_figure():
    result, scores, truth = _events()
    threshold = best_threshold(result)
    png = performance_plot_png(result, scores, truth, threshold)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.size == (1200, 500)  # 12×5 inches at 100 dpi
    pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # curves were drawn
    # both halves hold a drawing (left: curves, right: histogram)
    for half in (pixels[:, :600], pixels[:, 700:]):
        assert (half.min(axis=2) < 200).mean() > 0.01
    # the chosen-threshold line changes the picture
    assert performance_plot_png(result, scores, truth, None) != png


def test_figure_panels_curves_histogram_and_title():
    result, scores, truth = _events()
    threshold = best_threshold(result)
    figure = performance_figure(result, scores, truth, threshold)
    assert len(figure.axes) == 2
    curves, histogram = figure.axes
    labels = [line.get_label() for line in curves.get_lines()]
    assert labels[:5] == ["precision", "recall", "F1", "F-beta (β = 0.1)", "MCC"]
    np.testing.assert_allclose(curves.get_lines()[3].get_ydata(), result.fbeta)
    # the vertical line at the chosen threshold on both panels
    for axes in (curves, histogram):
        xs = [np.asarray(line.get_xdata(), dtype=float) for line in axes.get_lines()]
        assert any(x.shape == (2,) and np.allclose(x, threshold) for x in xs)
    # the histogram: negatives and positives over the same bins, counts exact
    i = result.index(threshold)
    title = figure.get_suptitle()
    assert f"{len(scores)} eval events ({int(truth.sum())} positive)" in title
    assert f"TP {int(result.tp[i])}, FP {int(result.fp[i])}" in title
    legend = [t.get_text() for t in histogram.get_legend().get_texts()]
    assert sorted(legend) == [f"negative ({int((~truth).sum())})", f"positive ({int(truth.sum())})"]
    heights = [patch.get_path().vertices[:, 1].max() for patch in histogram.patches]
    expected_neg = np.histogram(scores[~truth], bins=HISTOGRAM_BINS)[0].max()
    expected_pos = np.histogram(scores[truth], bins=HISTOGRAM_BINS)[0].max()
    assert sorted(heights) == sorted([expected_neg, expected_pos])


def test_empty_class_and_length_mismatch():
    scores = np.array([0.9, 0.95])
    truth = np.array([True, True])
    result = max_sweep(scores, truth)
    figure = performance_figure(result, scores, truth, best_threshold(result))
    assert len(figure.axes) == 2
    with pytest.raises(ValueError, match="truth values"):
        performance_figure(result, scores, truth[:1], 0.5)


def test_performance_plot_writes_the_file_atomically(tmp_path):
    result, scores, truth = _events()
    target = tmp_path / "model" / "perf.png"
    target.parent.mkdir()
    written = performance_plot(result, scores, truth, 0.5, target)
    assert written == target
    assert target.read_bytes().startswith(b"\x89PNG")
    assert Image.open(target).size == (1200, 500)
    assert [p.name for p in target.parent.iterdir()] == ["perf.png"]
    assert not any(p.name.startswith(TEMP_PREFIX) for p in target.parent.iterdir())


def test_plotting_leaves_pyplot_and_the_backend_alone():
    code = (
        "import sys, numpy as np\n"
        "from deep_events_dagster.core.metrics import max_sweep\n"
        "from deep_events_dagster.ml.plots import performance_plot_png\n"
        "s, t = np.array([0.2, 0.9]), np.array([False, True])\n"
        "performance_plot_png(max_sweep(s, t), s, t, 0.5)\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_score_timeline_marks_the_threshold_and_the_annotated_frames():
    scores = np.r_[np.full(10, 0.1), np.full(5, 0.9), np.full(15, 0.1)]
    png = score_timeline_png(scores, 0.5, annotated=[(10, 15)], predicted=[(10, 15)])
    image = Image.open(io.BytesIO(png))
    assert image.size == (1200, 320)  # 12×3.2 inches at 100 dpi
    pixels = np.asarray(image.convert("RGB")).astype(int)
    # the annotated frames are shaded red (a pale red: red above green and blue)
    reddish = (pixels[..., 0] > pixels[..., 1] + 20) & (pixels[..., 0] > pixels[..., 2] + 20)
    assert reddish.mean() > 0.01
    # without annotations and predictions the picture differs
    assert score_timeline_png(scores, 0.5) != png
    assert score_timeline_png(scores, 0.3, annotated=[(10, 15)], predicted=[(10, 15)]) != png
