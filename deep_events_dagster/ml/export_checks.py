"""How an export is checked against the model it was made from and against ``evaluation.yaml``.

Every file written is loaded back (:mod:`deep_events_dagster.ml.export_predictors`: ONNX Runtime
on the CPU; TorchScript; Keras ``load_model(compile=False)`` as the microscope does) and checked:

1. its probabilities are within :data:`~deep_events_dagster.ml.export_report.OUTPUT_TOLERANCE`
   of the source model's (float32, CPU) on a few eval samples and on one input whose height and
   width differ from the training crops (multiples of 4);
2. its event decisions on **all** eval samples (an event is predicted when the maximum
   probability over its samples is ``>`` the threshold of ``evaluation.yaml``) give the
   ``tp``/``fp``/``fn``/``tn`` of ``evaluation.yaml``, allowing
   :data:`~deep_events_dagster.ml.export_report.EVENT_TOLERANCE` event decided differently (a
   probability a rounding error away from the threshold).

The model must have been evaluated (``evaluation.yaml``, else :class:`ModelNotEvaluated`), and
``evaluation.yaml`` must count the events of the model's training set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deep_events_dagster.core.metric_units import event_groups, sample_max
from deep_events_dagster.core.metrics import event_counts
from deep_events_dagster.ml.export_report import (
    EVENT_TOLERANCE,
    OUTPUT_TOLERANCE,
    EventCounts,
    ExportError,
    ModelNotEvaluated,
)
from deep_events_dagster.ml.model_folder import ModelFolder

__all__ = [
    "N_CHECK_SAMPLES",
    "CheckOutcome",
    "EvalData",
    "check_input",
    "check_predictor",
    "decision_counts",
    "eval_data",
]

N_CHECK_SAMPLES = 4


@dataclass(frozen=True)
class EvalData:
    """The eval samples and what their decisions must match (``evaluation.yaml``)."""

    images: np.ndarray  # N×T×H×W (memory map)
    truth_max: np.ndarray  # per sample
    groups: np.ndarray | None
    threshold: float
    expected: EventCounts
    check_inputs: tuple[np.ndarray, ...]  # inputs compared with the source


def check_input(sample: np.ndarray) -> np.ndarray:
    """One ``T×H×W`` sample grown to another size whose sides are multiples of 4 (mirrored at
    its borders): ``1×T×H'×W'`` with ``H' ≠ H``, ``W' ≠ W``, ``H' ≠ W'``."""
    _, height, width = sample.shape
    new_height = 4 * math.ceil((height + 8) / 4)
    new_width = 4 * math.ceil((width + 20) / 4)
    pads = [(0, 0)]
    for old, new in ((height, new_height), (width, new_width)):
        extra = new - old
        pads.append((extra // 2, extra - extra // 2))
    return np.pad(np.asarray(sample, dtype=np.float32), pads, mode="symmetric")[None]


def _check_sample_indices(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(N_CHECK_SAMPLES, n)).round().astype(np.int64))


def eval_data(folder: ModelFolder) -> EvalData:
    """The eval samples of the model's training set, ``evaluation.yaml``'s threshold and
    counts, and the inputs compared with the source model."""
    from deep_events_dagster.ml.evaluate import _manifest_events

    evaluation = folder.evaluation()
    if evaluation is None:
        raise ModelNotEvaluated(
            f"{folder.path}: the model has not been evaluated (no evaluation.yaml), so its "
            "exports cannot be checked; evaluate it first (deep_events_dagster.ml.evaluate."
            "evaluate_model_folder, or the model_evaluation asset)"
        )
    try:
        threshold = float(evaluation["threshold"])
        expected = EventCounts(*(int(evaluation[key]) for key in ("tp", "fp", "fn", "tn")))
    except (KeyError, TypeError, ValueError) as error:
        raise ExportError(
            f"{folder.evaluation_path}: no usable threshold/tp/fp/fn/tn ({error!r})"
        ) from error
    training_set = folder.training_set()
    images = np.load(training_set / "eval_images.npy", mmap_mode="r")
    masks = np.load(training_set / "eval_masks.npy", mmap_mode="r")
    if len(images) == 0:
        raise ExportError(f"{training_set}: no eval samples to check the exports on")
    groups = event_groups(_manifest_events(training_set), len(images))
    n_units = len(images) if groups is None else len(np.unique(groups))
    if sum(expected.as_dict().values()) != n_units:
        raise ExportError(
            f"{folder.evaluation_path} counts {sum(expected.as_dict().values())} events but the "
            f"training set {training_set} has {n_units}: evaluate the model again"
        )
    samples = np.asarray(images[_check_sample_indices(len(images))], dtype=np.float32)
    return EvalData(
        images=images,
        truth_max=sample_max(masks),
        groups=groups,
        threshold=threshold,
        expected=expected,
        check_inputs=(samples, check_input(samples[0])),
    )


def decision_counts(probabilities: np.ndarray, data: EvalData) -> EventCounts:
    """Event counts of per-sample probabilities at ``evaluation.yaml``'s threshold."""
    counts = event_counts(sample_max(probabilities), data.truth_max, data.groups, data.threshold)
    return EventCounts(counts.tp, counts.fp, counts.fn, counts.tn)


@dataclass(frozen=True)
class CheckOutcome:
    """How a predictor compared: largest difference, sizes checked, counts, problems."""

    max_abs_difference: float
    sizes: tuple[tuple[int, int], ...]
    counts: EventCounts
    differing: int
    problems: tuple[str, ...]


def check_predictor(
    predictor: Any, reference: Sequence[np.ndarray], data: EvalData
) -> CheckOutcome:
    """Compare ``predictor`` with the source model's ``reference`` outputs (one per
    ``data.check_inputs``) and its event decisions with ``evaluation.yaml``."""
    difference = 0.0
    sizes = []
    for inputs, expected in zip(data.check_inputs, reference):
        got = predictor.predict(inputs)
        if got.shape != expected.shape:
            raise ExportError(f"output of shape {got.shape}, the source gives {expected.shape}")
        difference = max(difference, float(np.max(np.abs(got - expected))))
        sizes.append(tuple(int(s) for s in inputs.shape[-2:]))
    counts = decision_counts(predictor.predict(data.images), data)
    differing = counts.differing(data.expected)
    problems = []
    if not difference <= OUTPUT_TOLERANCE:  # also catches NaN
        problems.append(
            f"max |difference| {difference:.3g} from the source model's probabilities exceeds "
            f"{OUTPUT_TOLERANCE:g} (sizes {', '.join(f'{h}×{w}' for h, w in sizes)})"
        )
    if differing > EVENT_TOLERANCE:
        problems.append(
            f"event decisions at threshold {data.threshold:g}: {counts.describe()}, but "
            f"evaluation.yaml has {data.expected.describe()} ({differing} events differ, "
            f"{EVENT_TOLERANCE} allowed)"
        )
    return CheckOutcome(difference, tuple(sizes), counts, differing, tuple(problems))
