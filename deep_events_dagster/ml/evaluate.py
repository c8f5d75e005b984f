"""Evaluate a trained model folder on its training set's held-out events.

:func:`evaluate_predictions` computes, from the eval stack's probabilities and masks and the
training set manifest's ``events`` rows, the three threshold sweeps of
:mod:`deep_events_dagster.core.metrics` — **event** (the microscope's rule, the unit the
threshold is chosen on), **frame** and **pixel** — and the values ``evaluation.yaml`` holds:

.. code-block:: yaml

    unit: event            # what the top-level metrics count
    grouping: event        # event: one unit per manifest event; sample: no event rows, per sample
    threshold: 0.63        # maximises event-level F-beta (β = 0.1), lowest among ties
    beta: 0.1
    precision: …           # event-level metrics at the threshold
    recall: …
    f1: …
    mcc: …
    weighted_mcc: …
    kappa: …
    specificity: …
    npv: …
    fbeta: …
    tp: 12                 # event counts at the threshold
    fp: 1
    fn: 3
    tn: 20
    n_events: 36           # units (samples when grouping is sample)
    n_positive_events: 15
    frame:                 # one unit per eval sample, same threshold, same rule (max > t)
      precision: … (the nine metrics) …
      tp: … fp: … fn: … tn: …
      n_samples: …
      n_positive_samples: …
    pixel:                 # every pixel, same threshold, probability ≥ t vs mask > 0.5
      precision: … (the nine metrics) …
      tp: … fp: … fn: … tn: …
      n_pixels: …
      n_positive_pixels: …

:func:`evaluate_model_folder` predicts with the saved model, calls it, writes ``evaluation.yaml``
and ``perf.png`` (:mod:`deep_events_dagster.ml.plots`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deep_events_dagster.core.fsutil import atomic_write_bytes, atomic_write_text
from deep_events_dagster.core.metric_units import event_groups, sample_max, unit_scores
from deep_events_dagster.core.metrics import (
    BETA,
    METRICS,
    SweepResult,
    best_threshold,
    evaluation_summary,
    max_sweep,
    sweep,
)
from deep_events_dagster.ml.model_folder import EVALUATION_FILE, PLOT_FILE

__all__ = [
    "EVALUATION_FILE",
    "PLOT_FILE",
    "Evaluation",
    "EvaluationSummary",
    "evaluate_model_folder",
    "evaluate_predictions",
    "units_markdown",
]


@dataclass(frozen=True)
class Evaluation:
    """The three sweeps of an eval stack and the values of ``evaluation.yaml``.

    Attributes
    ----------
    values
        The plain dict written to ``evaluation.yaml`` (module docstring).
    event, frame, pixel
        The sweeps (``event.unit`` is ``"sample"`` when grouping fell back to samples).
    event_scores, event_truth
        Per event: the maximum probability, and whether it is positive (for the histogram).
    """

    values: dict[str, Any]
    event: SweepResult = field(hash=False)
    frame: SweepResult = field(hash=False)
    pixel: SweepResult = field(hash=False)
    event_scores: np.ndarray = field(hash=False)
    event_truth: np.ndarray = field(hash=False)


@dataclass(frozen=True)
class EvaluationSummary:
    """Where the evaluation went, the values of ``evaluation.yaml`` and the plot's PNG bytes."""

    evaluation_path: Path
    plot_path: Path
    values: dict[str, Any]
    plot_png: bytes = field(default=b"", repr=False)


def _block(summary: Mapping[str, Any], noun: str) -> dict[str, Any]:
    block: dict[str, Any] = {name: summary[name] for name in METRICS}
    block.update({name: summary[name] for name in ("tp", "fp", "fn", "tn")})
    block[f"n_{noun}"] = summary["n_units"]
    block[f"n_positive_{noun}"] = summary["n_positive"]
    return block


def evaluate_predictions(
    probabilities: Any,
    masks: Any,
    manifest_events: Sequence[Mapping[str, Any]] | None = None,
    *,
    beta: float = BETA,
) -> Evaluation:
    """Event, frame and pixel sweeps of an eval stack; the threshold chosen at event level.

    Parameters
    ----------
    probabilities
        ``N×H×W`` predicted probabilities of the eval samples.
    masks
        ``N×H×W`` ground truth (positive where ``> 0.5``); a memory map is fine.
    manifest_events
        The training set manifest's ``events`` rows; the ``split: eval`` rows group the samples
        into events (:func:`~deep_events_dagster.core.metric_units.event_groups`). None or empty:
        one unit per sample (``grouping: sample``).
    beta
        β of the F-beta score the threshold maximises.

    Returns
    -------
    Evaluation
        ``values`` is the content of ``evaluation.yaml`` (module docstring).

    Raises
    ------
    ValueError
        Shapes differ, the stack is empty, or the manifest's rows do not cover the stack.
    """
    if np.shape(probabilities) != np.shape(masks):
        raise ValueError(
            f"probabilities {np.shape(probabilities)} and masks {np.shape(masks)} differ in shape"
        )
    n_samples = len(probabilities)
    if n_samples == 0:
        raise ValueError("no eval samples to evaluate on")
    groups = event_groups(manifest_events, n_samples)
    grouping = "sample" if groups is None else "event"
    prob_max = sample_max(probabilities)
    truth_max = sample_max(masks)
    event_scores = unit_scores(prob_max, groups)
    event_truth = unit_scores(truth_max, groups) > 0.5
    event = max_sweep(event_scores, event_truth, beta=beta, unit=grouping)
    frame = max_sweep(prob_max, truth_max > 0.5, beta=beta, unit="frame")
    pixel = sweep(probabilities, masks, beta=beta)
    threshold = best_threshold(event, "fbeta")

    top = evaluation_summary(event, threshold)
    values: dict[str, Any] = {
        "unit": "event",
        "grouping": grouping,
        "threshold": top["threshold"],
        "beta": float(beta),
    }
    values.update(_block(top, "events"))
    values["frame"] = _block(evaluation_summary(frame, threshold), "samples")
    values["pixel"] = _block(evaluation_summary(pixel, threshold), "pixels")
    return Evaluation(values, event, frame, pixel, event_scores, event_truth)


def units_markdown(values: Mapping[str, Any]) -> str:
    """A markdown table of the event, frame and pixel metrics of ``evaluation.yaml`` values."""
    columns = ("precision", "recall", "f1", "fbeta", "mcc", "tp", "fp", "fn", "tn")
    header = "| unit | precision | recall | F1 | F-beta | MCC | TP | FP | FN | TN |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    event_label = "event" if values.get("grouping", "event") == "event" else "event (per sample)"
    for label, block in (
        (event_label, values),
        ("frame", values["frame"]),
        ("pixel", values["pixel"]),
    ):
        cells = [
            f"{block[c]:.3f}" if isinstance(block[c], float) else f"{block[c]:,}" for c in columns
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"threshold {values['threshold']:.2f} (max of the probability map > threshold)")
    return "\n".join(lines)


def _training_set_dir(model_dir: Path) -> Path:
    reference = yaml.safe_load((model_dir / "training_set.yaml").read_text(encoding="utf-8"))
    return Path(reference["path"])


def _manifest_events(training_set: Path) -> list[dict[str, Any]] | None:
    path = training_set / "manifest.yaml"
    if not path.is_file():
        return None
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict):
        return None
    return manifest.get("events") or None


def evaluate_model_folder(
    model_dir: str | Path, *, device: str = "auto", batch_size: int = 8
) -> EvaluationSummary:
    """Predict the eval stack, evaluate it, write ``evaluation.yaml`` and ``perf.png``.

    Parameters
    ----------
    model_dir
        A folder written by a trainer of either backend (``ml.model_folder``).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda:N"``.
    batch_size
        Prediction batch size.

    Raises
    ------
    ValueError
        The training set has no eval samples, or its manifest's rows do not match its stack.
    """
    from deep_events_dagster.ml.backend import load_predictor
    from deep_events_dagster.ml.plots import performance_plot_png

    model_dir = Path(model_dir)
    training_set = _training_set_dir(model_dir)
    images = np.load(training_set / "eval_images.npy", mmap_mode="r")
    masks = np.load(training_set / "eval_masks.npy", mmap_mode="r")
    if len(images) == 0:
        raise ValueError(f"{training_set}: the training set has no eval samples to evaluate on")
    events = _manifest_events(training_set)
    predictor = load_predictor(model_dir, device=device)
    probabilities = predictor.predict(images, batch_size=batch_size)
    try:
        evaluation = evaluate_predictions(probabilities, masks, events)
    except ValueError as error:
        raise ValueError(f"{training_set}: {error}") from error
    values = evaluation.values
    evaluation_path = atomic_write_text(
        model_dir / EVALUATION_FILE, yaml.safe_dump(values, sort_keys=False)
    )
    png = performance_plot_png(
        evaluation.event, evaluation.event_scores, evaluation.event_truth, values["threshold"]
    )
    plot_path = atomic_write_bytes(model_dir / PLOT_FILE, png)
    return EvaluationSummary(Path(evaluation_path), Path(plot_path), values, png)
