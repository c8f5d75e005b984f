"""Keras training metrics: pixel confusion counts of a batch (:func:`pixel_counts`, traced
into the training and eval steps) and their running sums with the loss (:class:`PixelCounts`),
kept on the device so that a step never waits for the host.
"""

from __future__ import annotations

import math

from deep_events_dagster.ml.tensorflow.compat import tf

__all__ = ["PixelCounts", "pixel_counts"]


def pixel_counts(logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """``[tp, fp, fn]`` (float64) at probability 0.5 (logit 0) against ``target > 0.5``."""
    predicted = logits > 0
    positive = target > 0.5

    def count(flags):
        return tf.cast(tf.reduce_sum(tf.cast(flags, tf.int32)), tf.float64)

    return tf.stack(
        [
            count(predicted & positive),
            count(predicted & ~positive),
            count(~predicted & positive),
        ]
    )


class PixelCounts:
    """Running loss and pixel confusion counts at probability 0.5; adds stay on the device."""

    def __init__(self):
        self.counts = tf.zeros(3, tf.float64)  # tp, fp, fn
        self.loss_sum = tf.zeros((), tf.float64)
        self.samples = 0

    def add(self, counts: tf.Tensor, loss: tf.Tensor, n: int) -> None:
        """Add one batch's ``[tp, fp, fn]``, its mean loss and its size."""
        self.counts = self.counts + counts
        self.loss_sum = self.loss_sum + tf.cast(loss, tf.float64) * n
        self.samples += int(n)

    def result(self) -> tuple[float, float, float, float]:
        """(mean loss, precision, recall, F1); NaN when nothing was added."""
        if self.samples == 0:
            return (math.nan,) * 4
        tp, fp, fn = (float(v) for v in self.counts.numpy())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        return float(self.loss_sum.numpy()) / self.samples, precision, recall, f1
