"""The torch trainer's TensorBoard writer: per-epoch scalars, batch losses, text, and the
``input | ground truth | prediction`` panels of a few eval samples (``torch.utils.tensorboard``).

The tags are those of every backend (:mod:`deep_events_dagster.ml.tensorflow.board` writes the
same); the trainer (:mod:`.train`) hands a :class:`Board` to
:func:`deep_events_dagster.ml.epochs.run_epochs`. Without tensorboard it is a no-op.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deep_events_dagster.ml.training_log import EpochResult

__all__ = ["Board"]


class Board:
    """TensorBoard scalars and image panels; a no-op (with one warning) without tensorboard."""

    def __init__(self, folder: Path, log: Callable[[str], None]):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # tensorboard is a dependency; be robust anyway
            log(f"TensorBoard logging disabled: {exc}")
            return
        self.writer = SummaryWriter(log_dir=str(folder))

    def batch_loss(self, step: int, loss: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar("loss/train_batch", loss, step)

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, 0)

    def epoch(self, result: EpochResult) -> None:
        if self.writer is None:
            return
        step = result.epoch
        self.writer.add_scalar("loss/train", result.train_loss, step)
        self.writer.add_scalar("f1_at_0.5/train", result.train_f1, step)
        if not math.isnan(result.val_loss):
            self.writer.add_scalar("loss/val", result.val_loss, step)
            self.writer.add_scalar("event_f1_at_0.5/val", result.val_event_f1, step)
            self.writer.add_scalar("f1_at_0.5/val", result.val_f1, step)
            self.writer.add_scalar("precision_at_0.5/val", result.val_precision, step)
            self.writer.add_scalar("recall_at_0.5/val", result.val_recall, step)
        self.writer.add_scalar("learning_rate", result.learning_rate, step)
        self.writer.add_scalar("speed/samples_per_s", result.samples_per_s, step)

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
        self.writer.add_image("eval/input|ground_truth|prediction", panel[None], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
