"""torch's optimiser and learning-rate schedules in TensorFlow, for the Keras trainer.

:class:`TorchAdam` is ``torch.optim.Adam`` (Keras' ``Adam`` puts ε inside the bias correction
and its ``weight_decay`` is decoupled, AdamW; torch's is an L2 term added to the gradient);
:class:`PlateauSchedule` is ``ReduceLROnPlateau`` and :class:`OneCycleSchedule` is
``OneCycleLR`` (β₁ cycled too), with the torch trainer's constants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from deep_events_dagster.ml.tensorflow.compat import tf

__all__ = [
    "PLATEAU_FACTOR",
    "PLATEAU_PATIENCE",
    "PLATEAU_THRESHOLD",
    "OneCycleSchedule",
    "PlateauSchedule",
    "TorchAdam",
]

# The torch trainer's recipe constants (ml/torch/train.py); the same values, not tuned.
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 3
PLATEAU_THRESHOLD = 1e-4  # torch ReduceLROnPlateau's default: relative improvement needed


class TorchAdam:
    """``torch.optim.Adam`` in TensorFlow, for a fixed list of variables.

    Per step ``t``, with ``g`` the (clipped) gradient: ``g ← g + weight_decay·θ`` (L2, as
    torch's ``weight_decay``), ``m ← β₁m + (1−β₁)g``, ``v ← β₂v + (1−β₂)g²``,
    ``θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)``. ``learning_rate`` and ``beta_1`` are
    variables, so schedules change them without retracing.
    """

    def __init__(
        self,
        variables: Sequence[tf.Variable],
        learning_rate: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        epsilon: float = 1e-8,
    ):
        self.variables = list(variables)
        self.learning_rate = tf.Variable(learning_rate, dtype=tf.float32, trainable=False)
        self.beta_1 = tf.Variable(betas[0], dtype=tf.float32, trainable=False)
        self.beta_2 = float(betas[1])
        self.epsilon = float(epsilon)
        self.weight_decay = float(weight_decay)
        self.iterations = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self.first_moments = [tf.Variable(tf.zeros(v.shape, tf.float32)) for v in self.variables]
        self.second_moments = [tf.Variable(tf.zeros(v.shape, tf.float32)) for v in self.variables]

    def apply(self, gradients: Sequence[tf.Tensor]) -> None:
        """One step with one gradient per variable (traced inside the training step)."""
        self.iterations.assign_add(1.0)
        t = self.iterations
        beta_1 = self.beta_1
        step_size = self.learning_rate / (1.0 - beta_1**t)
        correction_2 = tf.sqrt(1.0 - self.beta_2**t)
        for variable, gradient, m, v in zip(
            self.variables, gradients, self.first_moments, self.second_moments
        ):
            gradient = tf.cast(gradient, tf.float32)
            if self.weight_decay:
                gradient = gradient + self.weight_decay * tf.convert_to_tensor(variable)
            m.assign(beta_1 * m + (1.0 - beta_1) * gradient)
            v.assign(self.beta_2 * v + (1.0 - self.beta_2) * tf.square(gradient))
            variable.assign_sub(step_size * m / (tf.sqrt(v) / correction_2 + self.epsilon))


class PlateauSchedule:
    """torch's ``ReduceLROnPlateau(mode="min", factor, patience)``: the learning rate is
    multiplied by ``factor`` once more than ``patience`` scores in a row failed to improve on
    the best by a relative ``threshold``."""

    def __init__(
        self,
        factor: float = PLATEAU_FACTOR,
        patience: int = PLATEAU_PATIENCE,
        threshold: float = PLATEAU_THRESHOLD,
    ):
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.best = math.inf
        self.bad_scores = 0

    def step(self, score: float, learning_rate: float) -> float:
        """The learning rate after ``score``."""
        if score < self.best * (1.0 - self.threshold):
            self.best = score
            self.bad_scores = 0
        else:
            self.bad_scores += 1
        if self.bad_scores > self.patience:
            self.bad_scores = 0
            reduced = learning_rate * self.factor
            if learning_rate - reduced > 1e-8:
                return reduced
        return learning_rate


@dataclass(frozen=True)
class OneCycleSchedule:
    """torch's ``OneCycleLR(max_lr, total_steps)`` with its defaults: cosine from
    ``max_lr/25`` up to ``max_lr`` over the first 30 % of the steps, then down to
    ``max_lr/25/10⁴``; Adam's β₁ goes the other way between 0.95 and 0.85."""

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def at(self, step: int) -> tuple[float, float]:
        """``(learning rate, β₁)`` for the optimiser step after ``step`` scheduler steps."""
        initial = self.max_lr / self.div_factor
        minimum = initial / self.final_div_factor
        phases = (
            (self.pct_start * self.total_steps - 1, initial, self.max_lr, self.max_momentum),
            (self.total_steps - 1, self.max_lr, minimum, self.base_momentum),
        )
        start = 0.0
        for number, (end, lr_start, lr_end, beta_start) in enumerate(phases):
            if step <= end or number == len(phases) - 1:
                pct = (step - start) / (end - start) if end != start else 1.0
                beta_end = self.base_momentum + self.max_momentum - beta_start
                return _cosine(lr_start, lr_end, pct), _cosine(beta_start, beta_end, pct)
            start = end
        raise AssertionError("unreachable")


def _cosine(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)
