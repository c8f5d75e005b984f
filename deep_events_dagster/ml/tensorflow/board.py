"""The Keras trainer's TensorBoard writer through ``tf.summary``: the torch trainer's tags
(:mod:`deep_events_dagster.ml.torch.board`) — per-epoch scalars, batch losses, text, and the
``input | ground truth | prediction`` panels of a few eval samples.

The trainer (:mod:`.train`) hands a :class:`Board` to
:func:`deep_events_dagster.ml.epochs.run_epochs`. Without tensorboard it is a no-op.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deep_events_dagster.ml.tensorflow.compat import tf
from deep_events_dagster.ml.training_log import EpochResult

__all__ = ["Board"]


class Board:
    """The torch trainer's TensorBoard scalars and panels through ``tf.summary``; a no-op (with
    one warning) when ``tf.summary`` has no writers (tensorboard missing)."""

    def __init__(self, folder: Path, log: Callable[[str], None]):
        self.writer = None
        if not hasattr(tf.summary, "scalar"):
            log("TensorBoard logging disabled: tf.summary.scalar is missing (tensorboard)")
            return
        with tf.device("/CPU:0"):
            self.writer = tf.summary.create_file_writer(str(folder))

    def _scalars(self, step: int, values: dict[str, float]) -> None:
        with tf.device("/CPU:0"), self.writer.as_default(step=step):
            for tag, value in values.items():
                tf.summary.scalar(tag, float(value))

    def batch_loss(self, step: int, loss: float) -> None:
        if self.writer is not None:
            self._scalars(step, {"loss/train_batch": loss})

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            with tf.device("/CPU:0"), self.writer.as_default(step=0):
                tf.summary.text(tag, text)

    def epoch(self, result: EpochResult) -> None:
        if self.writer is None:
            return
        values = {"loss/train": result.train_loss, "f1_at_0.5/train": result.train_f1}
        if not math.isnan(result.val_loss):
            values.update(
                {
                    "loss/val": result.val_loss,
                    "event_f1_at_0.5/val": result.val_event_f1,
                    "f1_at_0.5/val": result.val_f1,
                    "precision_at_0.5/val": result.val_precision,
                    "recall_at_0.5/val": result.val_recall,
                }
            )
        values["learning_rate"] = result.learning_rate
        values["speed/samples_per_s"] = result.samples_per_s
        self._scalars(result.epoch, values)

    def panels(self, images: np.ndarray, masks: np.ndarray, probabilities: np.ndarray, step: int):
        """``input (last frame) | ground truth | prediction`` per sample, one row each."""
        if self.writer is None or len(images) == 0:
            return
        rows = []
        for image, mask, probability in zip(images, masks, probabilities):
            frame = image[-1].astype(np.float32)
            low, high = float(frame.min()), float(frame.max())
            frame = (frame - low) / (high - low) if high > low else np.zeros_like(frame)
            gap = np.ones((frame.shape[0], 2), dtype=np.float32)
            rows.append(np.concatenate([frame, gap, mask, gap, probability], axis=1))
            rows.append(np.ones((2, rows[-1].shape[1]), dtype=np.float32))
        panel = np.clip(np.concatenate(rows[:-1], axis=0), 0.0, 1.0)
        with tf.device("/CPU:0"), self.writer.as_default(step=step):
            tf.summary.image("eval/input|ground_truth|prediction", panel[None, :, :, None])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
