"""The epoch loop every backend runs, and which epoch a training keeps.

Backend-neutral (no torch, no TensorFlow). A backend gives a :class:`Session` (its model,
optimiser and data path); :func:`run_epochs` trains it epoch by epoch, validates, keeps the best
epoch, stops early, writes checkpoints, ``history.csv``, TensorBoard scalars and the
:class:`~deep_events_dagster.ml.training_log.TrainingSummary` — the same way for every backend.

Which epoch is kept (``monitor``):

``event_f1`` (default)
    The epoch whose eval events are best decided by the microscope's rule at the threshold the
    evaluation will choose: event-level F1 at the F-beta (β 0.1) threshold of the epoch's
    96-step sweep (:func:`event_score`); among equal F1 the wider margin (more consecutive
    thresholds with the best F-beta: the events' scores are further from the threshold), then
    the lower validation loss. Measured in
    ``make bench`` (section ``learning``): the epoch with the lowest validation loss is often not
    the one that finds the events — the loss is a pixel average, dominated by background.
``val_loss``
    The lowest validation loss (the original's choice).

Without eval samples (or without a positive eval event for ``event_f1``) the loss decides.
Early stopping counts the epochs since the kept one.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from deep_events_dagster.core.fsutil import atomic_path, atomic_write_text
from deep_events_dagster.core.metric_units import unit_scores
from deep_events_dagster.core.metrics import (
    best_threshold,
    event_counts,
    f1_from_counts,
    max_sweep,
    threshold_margin,
)
from deep_events_dagster.ml.arrays import TrainingArrays, resolved_positive_fraction
from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.model_folder import HISTORY_FILE, SUMMARY_FILE
from deep_events_dagster.ml.training_log import (
    EpochResult,
    TrainingSummary,
    pick_log_samples,
    write_history,
)

__all__ = [
    "BestEpoch",
    "Checkpoints",
    "EventScore",
    "Session",
    "Validation",
    "event_score",
    "run_epochs",
]


@dataclass(frozen=True)
class EventScore:
    """How well an epoch decides the eval events at the evaluation's threshold.

    Attributes
    ----------
    f1
        Event-level F1 at :attr:`threshold` (NaN without a positive eval event).
    threshold
        The threshold of the 96-step sweep with the best F-beta (β 0.1).
    margin
        How many consecutive thresholds share that best F-beta when it separates the events
        (no false positive, at least one found; else 0): the wider, the further the scores
        are from the threshold and the safer the decisions on new data (see
        :func:`~deep_events_dagster.core.metrics.best_threshold`).
    """

    f1: float
    threshold: float
    margin: int = 0


def event_score(sample_max: Any, truth_max: Any, groups: Any = None) -> EventScore:
    """Event-level F1 at the threshold the evaluation would choose on these eval samples.

    Parameters
    ----------
    sample_max
        Per eval sample, the maximum of its probability map.
    truth_max
        Per eval sample, the maximum of its ground truth.
    groups
        Per eval sample, its event (None: every sample is its own unit).

    Returns
    -------
    EventScore
        NaN F1 (threshold 0.5) when no eval event is positive or there are no samples.
    """
    scores = unit_scores(np.asarray(sample_max, dtype=np.float64), groups)
    truth = unit_scores(np.asarray(truth_max, dtype=np.float64), groups) > 0.5
    if scores.size == 0 or not truth.any():
        return EventScore(math.nan, 0.5)
    sweep = max_sweep(scores, truth)
    threshold = best_threshold(sweep, "fbeta")
    index = sweep.index(threshold)
    # a plateau is a margin only where it separates: no false positive at the threshold (a
    # model scoring everything alike has a plateau over every threshold and no margin at all)
    separating = sweep.fp[index] == 0 and sweep.tp[index] > 0
    margin = threshold_margin(sweep, "fbeta") if separating else 0
    return EventScore(float(sweep.f1[index]), float(threshold), margin)


@dataclass(frozen=True)
class Validation:
    """One pass over the eval stack.

    Attributes
    ----------
    loss, precision, recall, f1
        Mean loss and pixel-wise metrics at probability 0.5.
    sample_max
        Per eval sample, the maximum of its probability map.
    event_counts
        ``(tp, fp, fn, tn)`` at 0.5 per eval event (the microscope's rule: an event is
        predicted when the maximum probability over its samples passes 0.5).
    event_f1
        F1 of those counts.
    event_score
        Event-level F1 at the threshold the evaluation would choose (:func:`event_score`).
    """

    loss: float
    precision: float
    recall: float
    f1: float
    sample_max: np.ndarray
    event_counts: tuple[int, int, int, int]
    event_f1: float
    event_score: EventScore = EventScore(math.nan, 0.5)

    @classmethod
    def from_maxima(
        cls,
        pixel: tuple[float, float, float, float],
        sample_max: np.ndarray,
        truth_max: np.ndarray,
        groups: Any = None,
    ) -> Validation:
        """A validation from the pixel ``(loss, precision, recall, f1)`` and per-sample maxima."""
        loss, precision, recall, f1 = pixel
        if len(sample_max):
            counts = event_counts(sample_max, truth_max, groups, 0.5)
            event_tuple = tuple(int(v) for v in counts)
            event_f1 = float(f1_from_counts(*counts))
            score = event_score(sample_max, truth_max, groups)
        else:
            event_tuple, event_f1, score = (0, 0, 0, 0), math.nan, EventScore(math.nan, 0.5)
        return cls(loss, precision, recall, f1, sample_max, event_tuple, event_f1, score)


class BestEpoch:
    """Keeps track of the best epoch so far and of early stopping.

    Parameters
    ----------
    monitor
        ``"event_f1"``, ``"val_loss"`` or ``"train_loss"`` (see the module docstring).
    patience
        Stop after this many epochs since the best one; None: never.
    """

    def __init__(self, monitor: str, patience: int | None):
        self.monitor = monitor
        self.patience = patience
        self.epoch = 0
        self.loss = math.inf
        self.event_f1 = math.nan
        self.margin = 0
        self.threshold = math.nan
        self.pixel_f1 = math.nan
        self.event_f1_at_half = math.nan
        self.since = 0

    def _key(self, loss: float, event_f1: float, margin: int) -> tuple[float, int, float]:
        if self.monitor == "event_f1" and math.isfinite(event_f1):
            return (event_f1, margin, -loss)
        if self.monitor == "event_f1":
            return (-1.0, 0, -loss)
        return (0.0, 0, -loss)

    def offer(self, epoch: int, loss: float, validation: Validation | None = None) -> bool:
        """Consider an epoch (its monitored loss and, when validated, its validation);
        returns whether it is the new best. Epochs without a finite loss are skipped."""
        if not math.isfinite(loss):
            return False
        score = validation.event_score if validation is not None else EventScore(math.nan, 0.5)
        improved = self.epoch == 0 or self._key(loss, score.f1, score.margin) > self._key(
            self.loss, self.event_f1, self.margin
        )
        if improved:
            self.epoch, self.loss, self.event_f1, self.margin = epoch, loss, score.f1, score.margin
            if validation is not None:
                self.threshold = validation.event_score.threshold
                self.pixel_f1 = validation.f1
                self.event_f1_at_half = validation.event_f1
        self.since = epoch - self.epoch
        return improved

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` epochs have passed since the best one."""
        return bool(self.patience) and self.since >= self.patience


class Session(Protocol):
    """What :func:`run_epochs` needs from a backend's training session."""

    data: TrainingArrays
    settings: TrainingSettings
    device: Any
    precision: str
    parameters: int
    copies: int
    oversampled: bool
    positive: np.ndarray
    positive_prior: float
    output_bias: float | None
    batch_log: Callable[[int, float], None] | None

    def train_epoch(self, epoch: int) -> tuple[Any, float]:
        """One epoch: pixel counts with ``.samples`` and ``.result()``, and its seconds."""

    def validate(self) -> Validation:
        """One pass over the eval stack."""

    def end_of_epoch(self, monitored: float) -> None:
        """Advance the learning-rate schedule."""

    def learning_rate(self) -> float:
        """The current learning rate."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities of ``N×T×H×W`` samples."""

    def save(self, path: Path, epoch: int, score: float) -> None:
        """Write a checkpoint."""

    def state(self) -> Any:
        """A copy of the weights."""

    def restore(self, state: Any) -> None:
        """Load weights from :meth:`state`."""


@dataclass(frozen=True)
class Checkpoints:
    """A backend's checkpoint file names in the model folder."""

    best: str
    last: str
    weights: str


def _intro(session: Session, monitor: str, label: str) -> str:
    data, settings = session.data, session.settings
    n_positive = int(np.asarray(session.positive).sum())
    kept = {
        "event_f1": "best epoch by eval event F1 at the chosen threshold",
        "val_loss": "best epoch by validation loss",
        "train_loss": "no eval samples: best epoch by training loss",
    }[monitor]
    return (
        f"training {label} ({session.parameters:,} parameters) on {session.device} "
        f"({session.precision}): {len(data.train_images)} training samples "
        f"({n_positive} with events, {len(data.train_images) - n_positive} without) × "
        f"{session.copies} copies"
        + (
            f", positives drawn ≥ {resolved_positive_fraction(settings):.0%}"
            if session.oversampled
            else ""
        )
        + f", {len(data.eval_images)} eval samples, up to {settings.epochs} epochs, "
        f"{settings.lr_schedule} learning rate from {settings.initial_learning_rate:g}"
        + (
            f", early stop after {settings.patience} epochs without improvement"
            if settings.patience
            else ""
        )
        + f"; {kept}"
    )


def resolved_monitor(settings: TrainingSettings, data: TrainingArrays) -> str:
    """What picks the kept epoch for this training set: the settings' ``monitor``, or the
    training loss when there are no eval samples."""
    if not len(data.eval_images):
        return "train_loss"
    return settings.monitor


def run_epochs(
    session: Session,
    model_dir: Path,
    board: Any,
    *,
    checkpoints: Checkpoints,
    backend: str,
    label: str,
    started: float,
    progress: Callable[[EpochResult], None] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> TrainingSummary:
    """Train ``session`` epoch by epoch and write the model folder's training files.

    Parameters
    ----------
    session
        The backend's training session (:class:`Session`).
    model_dir
        The model folder (exists; ``settings.yaml`` and the training-set files written).
    board
        TensorBoard writer with ``text``, ``epoch``, ``panels``, ``batch_loss``, ``close``.
    checkpoints
        The backend's file names.
    backend
        ``"torch"`` or ``"tensorflow"`` (in the summary).
    label
        How the log names the model.
    started
        ``time.perf_counter()`` when the training began (for the summary's seconds).
    progress
        Called after every epoch with its :class:`EpochResult`.
    log
        Called with informational lines.

    Raises
    ------
    FloatingPointError
        The training loss became NaN or infinite.
    """
    data, settings = session.data, session.settings
    log_indices = pick_log_samples(data.eval_masks, settings.n_log_images)
    log_images = np.array(data.eval_images[log_indices]) if len(log_indices) else None
    log_masks = np.array(data.eval_masks[log_indices]) if len(log_indices) else None
    monitor = resolved_monitor(settings, data)
    session.batch_log = board.batch_loss
    board.text("settings", "```\n" + yaml.safe_dump(settings.as_dict(), sort_keys=False) + "```")
    log(_intro(session, monitor, label))
    if session.output_bias is not None:
        log(
            f"output bias {session.output_bias:.2f}: the untrained model predicts the positive "
            f"pixel prior {session.positive_prior:.2e}"
        )

    history: list[EpochResult] = []
    best = BestEpoch(monitor, settings.patience)
    best_state = None
    stopped_early = False
    train_seconds = 0.0
    train_count = 0
    try:
        for epoch in range(1, settings.epochs + 1):
            train_counts, seconds = session.train_epoch(epoch)
            train_seconds += seconds
            train_count += train_counts.samples
            train_loss = train_counts.result()[0]
            if not math.isfinite(train_loss):
                raise FloatingPointError(
                    f"training loss became {train_loss} in epoch {epoch}; lower "
                    f"initial_learning_rate ({settings.initial_learning_rate})"
                )
            last = epoch == settings.epochs
            validated = monitor != "train_loss" and (epoch % settings.val_frequency == 0 or last)
            validation = session.validate() if validated else None
            if monitor == "train_loss":
                score = train_loss
            else:
                score = validation.loss if validation is not None else math.nan
            improved = best.offer(epoch, score, validation)
            if improved:
                best_state = session.state()
                session.save(model_dir / checkpoints.best, epoch, score)
            if math.isfinite(score):
                session.end_of_epoch(score)
            stop = best.should_stop and not last
            if epoch % settings.save_frequency == 0 or last or stop:
                session.save(model_dir / checkpoints.last, epoch, score)
            history.append(
                _epoch_result(
                    epoch,
                    settings,
                    train_counts,
                    seconds,
                    validation,
                    best=improved,
                    learning_rate=session.learning_rate(),
                )
            )
            write_history(model_dir / HISTORY_FILE, history)
            board.epoch(history[-1])
            if log_images is not None and validated:
                board.panels(log_images, log_masks, session.predict(log_images), epoch)
            if progress is not None:
                progress(history[-1])
            if stop:
                stopped_early = True
                log(
                    f"early stop after epoch {epoch}: no improvement of {monitor} for "
                    f"{best.since} epochs; the best epoch {best.epoch} is kept"
                )
                break
    finally:
        board.close()

    if best_state is not None:
        session.restore(best_state)
    with atomic_path(model_dir / checkpoints.weights) as tmp:
        shutil.copyfile(model_dir / checkpoints.best, tmp)
    summary = TrainingSummary(
        epochs=len(history),
        best_val_loss=float(best.loss),
        best_epoch=best.epoch,
        samples_per_s=train_count / train_seconds if train_seconds > 0 else math.nan,
        device=str(session.device),
        parameters=session.parameters,
        model_dir=model_dir,
        train_samples=len(data.train_images),
        eval_samples=len(data.eval_images),
        seconds=time.perf_counter() - started,
        precision=session.precision,
        monitor=monitor,
        best_val_f1=float(best.pixel_f1),
        best_val_event_f1=float(best.event_f1_at_half),
        stopped_early=stopped_early,
        log_dir=settings.tensorboard_dir(model_dir),
        backend=backend,
        best_val_event_f1_at_threshold=float(best.event_f1),
        best_val_threshold=float(best.threshold),
    )
    atomic_write_text(model_dir / SUMMARY_FILE, yaml.safe_dump(summary.as_dict(), sort_keys=False))
    return summary


def _epoch_result(
    epoch: int,
    settings: TrainingSettings,
    train_counts: Any,
    seconds: float,
    validation: Validation | None,
    *,
    best: bool,
    learning_rate: float,
) -> EpochResult:
    train_loss, _, _, train_f1 = train_counts.result()
    counts = validation.event_counts if validation is not None else (-1, -1, -1, -1)
    nan = math.nan
    return EpochResult(
        epoch=epoch,
        epochs=settings.epochs,
        train_loss=train_loss,
        train_f1=train_f1,
        val_loss=validation.loss if validation is not None else nan,
        val_precision=validation.precision if validation is not None else nan,
        val_recall=validation.recall if validation is not None else nan,
        val_f1=validation.f1 if validation is not None else nan,
        learning_rate=learning_rate,
        seconds=seconds,
        samples_per_s=train_counts.samples / seconds if seconds > 0 else nan,
        best=best,
        val_event_f1=validation.event_f1 if validation is not None else nan,
        val_event_tp=counts[0],
        val_event_fp=counts[1],
        val_event_fn=counts[2],
        val_event_tn=counts[3],
        val_event_threshold=validation.event_score.threshold if validation is not None else nan,
        val_event_f1_at_threshold=validation.event_score.f1 if validation is not None else nan,
    )
