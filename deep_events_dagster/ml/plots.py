"""Evaluation plots (matplotlib, Agg, no pyplot state): what a biologist looks at to trust a
threshold.

``perf.png`` has two panels: on the left the event-level precision, recall, F1, F-beta and MCC
against the threshold, the chosen threshold as a vertical line; on the right the histogram of the
maximum probability of the positive and of the negative eval events (the same bins over [0, 1]),
the threshold marked — events right of the line trigger the microscope.

The figure is drawn on a ``matplotlib.figure.Figure`` with an Agg canvas, never through
``pyplot``, so it is safe in worker threads and never opens a window or changes the global
backend.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deep_events_dagster.core.fsutil import atomic_write_bytes
from deep_events_dagster.core.metrics import SweepResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "HISTOGRAM_BINS",
    "PLOTTED_METRICS",
    "performance_figure",
    "performance_plot",
    "performance_plot_png",
    "score_timeline_png",
]

# (metric, legend label, colour)
PLOTTED_METRICS = (
    ("precision", "precision", "#1f77b4"),
    ("recall", "recall", "#ff7f0e"),
    ("f1", "F1", "#2ca02c"),
    ("fbeta", "F-beta", "#17becf"),
    ("mcc", "MCC", "#d62728"),
)
HISTOGRAM_BINS = np.linspace(0.0, 1.0, 41)
_POSITIVE_COLOUR = "#d62728"
_NEGATIVE_COLOUR = "#1f77b4"


def _nouns(result: SweepResult) -> tuple[str, str]:
    if result.unit == "sample":
        return "sample", "samples"
    return result.unit, f"{result.unit}s"


def performance_figure(
    result: SweepResult,
    scores: Any,
    truth: Any,
    chosen_threshold: float | None,
    *,
    dpi: int = 100,
) -> Figure:
    """The two-panel figure (12×5 inches): metric curves and the histogram of unit scores.

    Parameters
    ----------
    result
        The event-level sweep (:func:`deep_events_dagster.core.metrics.max_sweep`).
    scores
        Per event, the maximum of its probability maps.
    truth
        Per event, whether it is positive (booleans, or maximum ground truth ``> 0.5``).
    chosen_threshold
        Drawn as a dashed vertical line on both panels; None draws no line.
    dpi
        Resolution.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth).reshape(-1)
    positive = truth if truth.dtype == np.bool_ else truth > 0.5
    if scores.size != positive.size:
        raise ValueError(f"{scores.size} scores but {positive.size} truth values")
    noun, plural = _nouns(result)
    rule = ">" if result.strict else "≥"

    figure = Figure(figsize=(12, 5), dpi=dpi)
    FigureCanvasAgg(figure)
    curves, histogram = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})

    for name, label, colour in PLOTTED_METRICS:
        if name == "fbeta":
            label = f"F-beta (β = {result.beta:g})"
        width = 2.2 if name == "fbeta" else 1.3
        curves.plot(result.thresholds, result.metric(name), label=label, color=colour, lw=width)
    counts = ""
    if chosen_threshold is not None:
        index = result.index(chosen_threshold)
        curves.axvline(
            chosen_threshold,
            color="black",
            linestyle="--",
            lw=1.2,
            label=f"chosen {chosen_threshold:.2f} (F-beta {result.fbeta[index]:.3f})",
        )
        counts = (
            f" — at {chosen_threshold:.2f}: TP {int(result.tp[index])}, FP {int(result.fp[index])},"
            f" FN {int(result.fn[index])}, TN {int(result.tn[index])}"
        )
    curves.set_xlim(0.0, 1.0)
    curves.set_ylim(-1.02, 1.02)
    curves.axhline(0.0, color="#cccccc", lw=0.8, zorder=0)
    curves.set_xlabel(f"threshold (max probability {rule} threshold triggers)")
    curves.set_ylabel(f"{noun}-level score")
    curves.grid(True, alpha=0.3)
    curves.legend(loc="lower left", fontsize="small", ncol=2)

    n_pos = int(np.count_nonzero(positive))
    n_neg = int(positive.size - n_pos)
    clipped = np.clip(scores, 0.0, 1.0)
    histogram.hist(
        [clipped[~positive], clipped[positive]],
        bins=HISTOGRAM_BINS,
        color=[_NEGATIVE_COLOUR, _POSITIVE_COLOUR],
        label=[f"negative ({n_neg})", f"positive ({n_pos})"],
        alpha=0.6,
        histtype="stepfilled",
    )
    if chosen_threshold is not None:
        histogram.axvline(chosen_threshold, color="black", linestyle="--", lw=1.2)
    histogram.set_xlim(0.0, 1.0)
    histogram.set_xlabel(f"maximum probability of the {noun}")
    histogram.set_ylabel(plural)
    histogram.yaxis.set_major_locator(MaxNLocator(integer=True))
    histogram.grid(True, alpha=0.3)
    histogram.legend(loc="upper center", fontsize="small")

    figure.suptitle(
        f"{result.n_units:,} eval {plural} ({result.n_positive:,} positive){counts}",
        fontsize="medium",
    )
    figure.tight_layout()
    return figure


def performance_plot_png(
    result: SweepResult,
    scores: Any,
    truth: Any,
    chosen_threshold: float | None,
    *,
    dpi: int = 100,
) -> bytes:
    """PNG bytes of :func:`performance_figure` (1200×500 pixels at 100 dpi)."""
    figure = performance_figure(result, scores, truth, chosen_threshold, dpi=dpi)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def performance_plot(
    result: SweepResult,
    scores: Any,
    truth: Any,
    chosen_threshold: float | None,
    path: str | Path,
) -> Path:
    """Write :func:`performance_plot_png` to ``path`` (e.g. ``<model>/perf.png``) atomically.

    Returns
    -------
    Path
        ``path``.
    """
    return atomic_write_bytes(
        Path(path), performance_plot_png(result, scores, truth, chosen_threshold)
    )


def score_timeline_png(
    scores: Sequence[float],
    threshold: float,
    *,
    annotated: Sequence[tuple[int, int]] = (),
    predicted: Sequence[tuple[int, int]] = (),
    title: str = "",
    dpi: int = 100,
) -> bytes:
    """PNG bytes (1200×320 at 100 dpi): a movie's score per frame (the maximum probability),
    the decision threshold, the annotated events' frames (shaded) and the predicted events
    (marked along the top).

    Parameters
    ----------
    scores
        One score per frame.
    threshold
        The model's decision threshold (a frame above it triggers).
    annotated, predicted
        ``[start, stop)`` frame ranges of annotated and of predicted events.
    title
        The figure's title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.asarray(scores, dtype=np.float64)
    frames = np.arange(len(values))
    figure = Figure(figsize=(12, 3.2), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for i, (start, stop) in enumerate(annotated):
        axes.axvspan(
            start - 0.5,
            stop - 0.5,
            color=_POSITIVE_COLOUR,
            alpha=0.15,
            lw=0,
            label="annotated event" if i == 0 else None,
        )
    axes.plot(frames, values, color="#333333", lw=1.2, label="score (max probability)")
    axes.axhline(threshold, color="#2ca02c", ls="--", lw=1.2, label=f"threshold {threshold:.2f}")
    for i, (start, stop) in enumerate(predicted):
        axes.plot(
            [start - 0.4, stop - 0.6],
            [1.03, 1.03],
            color=_NEGATIVE_COLOUR,
            lw=4,
            solid_capstyle="butt",
            label="predicted event" if i == 0 else None,
        )
    axes.set_xlim(-0.5, max(len(values), 1) - 0.5)
    axes.set_ylim(0.0, 1.08)
    axes.set_xlabel("frame")
    axes.set_ylabel("score")
    axes.legend(loc="upper left", fontsize="small", ncol=4, framealpha=0.8)
    if title:
        axes.set_title(title, fontsize="medium")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
