"""The losses on logits of :mod:`deep_events_dagster.ml.torch.losses`, in TensorFlow.

Same formulas, same names, same reductions (the mean over every pixel of the batch), computed
in float32 whatever the logits' dtype (mixed precision). The definitions and why they differ
from the original's are in the torch module's docstring; the tests check both against each
other on the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

from deep_events_dagster.ml.tensorflow.compat import tf

__all__ = ["bce_with_logits", "build_loss", "mse_on_probabilities", "soft_focal_with_logits"]

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _float32(logits, target) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(logits, tf.float32), tf.cast(target, tf.float32)


def bce_with_logits(logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean binary cross-entropy of ``σ(logits)`` against ``target`` (soft targets allowed)."""
    z, y = _float32(logits, target)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z))


def soft_focal_with_logits(
    logits: tf.Tensor, target: tf.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> tf.Tensor:
    """Mean soft focal loss (the torch module's ``soft_focal_with_logits``).

    Parameters
    ----------
    logits, target
        Same shape; target in [0, 1].
    alpha
        Positive-class weight in [0, 1].
    gamma
        Focusing exponent ≥ 0.
    """
    z, y = _float32(logits, target)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)
    p = tf.sigmoid(z)
    p_t = y * p + (1.0 - y) * (1.0 - p)
    alpha_t = y * alpha + (1.0 - y) * (1.0 - alpha)
    # The floor keeps the gradient finite for 0 < γ < 1 where p_t reaches exactly 1 in float32.
    modulation = tf.maximum(1.0 - p_t, 1e-12) ** gamma if gamma != 0 else 1.0
    return tf.reduce_mean(alpha_t * modulation * bce)


def mse_on_probabilities(logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean squared error between ``σ(logits)`` and ``target``."""
    z, y = _float32(logits, target)
    return tf.reduce_mean(tf.square(tf.sigmoid(z) - y))


def build_loss(settings) -> LossFn:
    """The loss a :class:`~deep_events_dagster.ml.config.TrainingSettings` names.

    Returns
    -------
    callable
        ``loss(logits, target) -> scalar float32 tensor``.
    """
    if settings.loss == "binary_crossentropy":
        return bce_with_logits
    if settings.loss == "soft_focal":
        alpha, gamma = float(settings.weight.alpha), float(settings.weight.gamma)

        def focal(logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
            return soft_focal_with_logits(logits, target, alpha, gamma)

        return focal
    if settings.loss == "mse":
        return mse_on_probabilities
    raise ValueError(f"unknown loss {settings.loss!r}")
