"""Evaluation plots (matplotlib, Agg, no pyplot state): metrics against the threshold.

The figure is drawn on a ``matplotlib.figure.Figure`` with an Agg canvas, never through
``pyplot``, so it is safe in worker threads and never opens a window or changes the global
backend.
"""

from __future__ import annotations

import io
from pathlib import Path

from deep_events_dagster.core.fsutil import atomic_write_bytes
from deep_events_dagster.core.metrics import SweepResult

__all__ = ["PLOTTED_METRICS", "performance_plot", "performance_plot_png"]

# (metric, legend label, colour)
PLOTTED_METRICS = (
    ("precision", "precision", "#1f77b4"),
    ("recall", "recall", "#ff7f0e"),
    ("f1", "F1", "#2ca02c"),
    ("mcc", "MCC", "#d62728"),
    ("weighted_mcc", "weighted MCC", "#9467bd"),
    ("kappa", "kappa", "#8c564b"),
    ("specificity", "specificity", "#7f7f7f"),
    ("npv", "NPV", "#bcbd22"),
    ("fbeta", "F-beta", "#17becf"),
)


def performance_plot_png(
    result: SweepResult, chosen_threshold: float | None, *, dpi: int = 100
) -> bytes:
    """PNG bytes of the metrics against the threshold, the chosen threshold marked.

    Parameters
    ----------
    result
        A threshold sweep (:func:`deep_events_dagster.core.metrics.sweep`).
    chosen_threshold
        Drawn as a dashed vertical line with its F-beta value; None draws no line.
    dpi
        Resolution (the figure is 8×5 inches).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for name, label, colour in PLOTTED_METRICS:
        if name == "fbeta":
            label = f"F-beta (β = {result.beta:g})"
        width = 2.2 if name == "fbeta" else 1.3
        axes.plot(result.thresholds, result.metric(name), label=label, color=colour, lw=width)
    if chosen_threshold is not None:
        index = int(abs(result.thresholds - chosen_threshold).argmin())
        axes.axvline(
            chosen_threshold,
            color="black",
            linestyle="--",
            lw=1.2,
            label=f"chosen {chosen_threshold:.2f} (F-beta {result.fbeta[index]:.3f})",
        )
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(-1.02, 1.02)
    axes.axhline(0.0, color="#cccccc", lw=0.8, zorder=0)
    axes.set_xlabel("threshold (probability ≥ threshold is an event pixel)")
    axes.set_ylabel("score")
    axes.set_title(f"{result.n_pixels:,} pixels, {result.n_positive:,} positive", fontsize="medium")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower left", fontsize="small", ncol=2)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def performance_plot(result: SweepResult, chosen_threshold: float | None, path: str | Path) -> Path:
    """Write :func:`performance_plot_png` to ``path`` (e.g. ``<model>/perf.png``) atomically.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    atomic_write_bytes(path, performance_plot_png(result, chosen_threshold))
    return path
