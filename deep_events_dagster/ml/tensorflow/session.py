"""One Keras training's state, as :class:`deep_events_dagster.ml.epochs.Session`: the network,
torch's Adam and learning-rate schedules, the mixed-precision training step (torch's
``GradScaler`` rule), validation on the eval stack, weight files, and the data path (the epoch's
seeded order, oversampling, the shared numpy augmentation prepared ahead in threads).

:func:`deep_events_dagster.ml.tensorflow.train.prepare_training` builds one and
:func:`~deep_events_dagster.ml.tensorflow.train.train` runs it; the recipe is described there.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from deep_events_dagster.ml.arrays import (
    TrainingArrays,
    mask_statistics,
    oversampling_weights,
    resolved_positive_fraction,
)
from deep_events_dagster.ml.augmentation import AugmentationParams, augment_sample
from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.epochs import Validation
from deep_events_dagster.ml.tensorflow.checkpoints import save_weights
from deep_events_dagster.ml.tensorflow.compat import tf
from deep_events_dagster.ml.tensorflow.devices import (
    PRECISION_NAMES,
    KerasDevice,
    global_policy,
    precision_policy,
)
from deep_events_dagster.ml.tensorflow.losses import build_loss
from deep_events_dagster.ml.tensorflow.metrics import PixelCounts, pixel_counts
from deep_events_dagster.ml.tensorflow.models import build_keras_model, count_keras_parameters
from deep_events_dagster.ml.tensorflow.optim import OneCycleSchedule, PlateauSchedule, TorchAdam
from deep_events_dagster.ml.tensorflow.predictor import channels_last, predict

__all__ = ["TrainingSession"]

# torch.amp.GradScaler's defaults.
LOSS_SCALE_INITIAL = 2.0**16
LOSS_SCALE_GROWTH_INTERVAL = 2000


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    tf.random.set_seed(seed % 2**31)


def _default_workers(device: KerasDevice, requested: int) -> int:
    if requested > 0 or device.kind != "cuda":
        return requested
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _prefetched(
    make: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    batches: Iterable[np.ndarray],
    workers: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``make(batch)`` for each batch in order; with ``workers`` > 0 prepared ahead in threads
    (numpy augmentation mostly releases the GIL), at most ``2·workers`` batches ahead."""
    if workers <= 0:
        yield from (make(batch) for batch in batches)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="augment") as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.submit(make, batch))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class TrainingSession:
    """The model, optimiser, schedule and data path of one Keras training — what
    :func:`.train.train` runs (the torch trainer's ``TrainingSession``, same methods).

    Use :func:`.train.prepare_training` to build one.
    """

    def __init__(self, data: TrainingArrays, settings: TrainingSettings, device: KerasDevice):
        self.data = data
        self.settings = settings
        self.device = device
        _seed_everything(settings.seed)
        self.in_channels = data.n_timepoints
        self.policy = precision_policy(device, settings.mixed_precision)
        self.precision = PRECISION_NAMES[self.policy]
        with tf.device(device.tf_name), global_policy(self.policy):
            self.model = build_keras_model(settings, self.in_channels)
        self.parameters = count_keras_parameters(self.model)
        self.positive, self.positive_prior = mask_statistics(data.train_masks)
        self.output_bias = (
            self._set_output_prior(self.positive_prior) if settings.output_bias_prior else None
        )
        self.loss_fn = build_loss(settings)
        self.params = AugmentationParams.from_settings(settings)
        self.copies = max(1, int(settings.n_augmentations))
        self.n_items = len(data.train_images) * self.copies
        weights = oversampling_weights(self.positive, resolved_positive_fraction(settings))
        self.oversampled = weights is not None
        self.item_probabilities = (
            None
            if weights is None
            else np.repeat(weights, self.copies) / (weights.sum() * self.copies)
        )
        self.workers = _default_workers(device, settings.num_workers)
        self.steps_per_epoch = math.ceil(self.n_items / settings.batch_size)
        with tf.device(device.tf_name):
            self.optimizer = TorchAdam(
                self.model.trainable_variables,
                settings.initial_learning_rate,
                weight_decay=settings.weight_decay,
            )
            self.loss_scale = tf.Variable(
                LOSS_SCALE_INITIAL if self.policy == "mixed_float16" else 1.0, trainable=False
            )
            self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.onecycle = None
        self.plateau = None
        if settings.lr_schedule == "onecycle":
            self.onecycle = OneCycleSchedule(
                settings.initial_learning_rate, max(1, settings.epochs * self.steps_per_epoch)
            )
            self._set_schedule(0)
        elif settings.lr_schedule == "plateau":
            self.plateau = PlateauSchedule()
        self._train_step = self._make_train_step()
        self._eval_step = self._make_eval_step()
        self.global_step = 0
        self.batch_log: Callable[[int, float], None] | None = None

    def _set_output_prior(self, positive_prior: float) -> float:
        p = min(max(float(positive_prior), 1e-6), 1 - 1e-6)
        bias = math.log(p / (1 - p))
        self.model.get_layer("output").bias.assign([bias])
        return bias

    def _set_schedule(self, step: int) -> None:
        learning_rate, beta_1 = self.onecycle.at(step)
        self.optimizer.learning_rate.assign(learning_rate)
        self.optimizer.beta_1.assign(beta_1)

    def _input_specs(self) -> list[tf.TensorSpec]:
        return [
            tf.TensorSpec([None, None, None, self.in_channels], tf.float32),
            tf.TensorSpec([None, None, None, 1], tf.float32),
        ]

    def _make_train_step(self):
        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer
        variables = model.trainable_variables
        clip_norm = float(self.settings.gradient_clip_norm)
        scaled = self.policy == "mixed_float16"
        loss_scale, good_steps = self.loss_scale, self.good_steps

        def update(gradients):
            if clip_norm > 0:
                gradients, _ = tf.clip_by_global_norm(gradients, clip_norm)
            optimizer.apply(gradients)

        @tf.function(input_signature=self._input_specs())
        def step(x, y):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = loss_fn(logits, y)
                objective = loss * loss_scale if scaled else loss
            gradients = tape.gradient(objective, variables)
            if not scaled:
                update(gradients)
            else:  # torch's GradScaler: skip non-finite steps, halve or grow the scale
                gradients = [tf.cast(g, tf.float32) / loss_scale for g in gradients]
                finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])

                def apply():
                    update(gradients)
                    good_steps.assign_add(1)
                    if_grow = good_steps >= LOSS_SCALE_GROWTH_INTERVAL
                    loss_scale.assign(tf.where(if_grow, loss_scale * 2.0, loss_scale))
                    good_steps.assign(tf.where(if_grow, tf.zeros_like(good_steps), good_steps))
                    return tf.constant(True)

                def skip():
                    loss_scale.assign(loss_scale * 0.5)
                    good_steps.assign(0)
                    return tf.constant(False)

                tf.cond(finite, apply, skip)
            return loss, pixel_counts(logits, y)

        return step

    def _make_eval_step(self):
        model, loss_fn = self.model, self.loss_fn

        @tf.function(input_signature=self._input_specs())
        def step(x, y):
            logits = tf.cast(model(x, training=False), tf.float32)
            peak = tf.sigmoid(tf.reduce_max(logits, axis=[1, 2, 3]))
            return loss_fn(logits, y), pixel_counts(logits, y), peak

        return step

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The epoch's item order (item ``i`` is copy ``i % copies`` of sample
        ``i // copies``): a permutation, or with oversampling ``n_items`` weighted draws with
        replacement; a pure function of the seed and the epoch."""
        rng = np.random.default_rng([self.settings.seed & 0xFFFFFFFF, 1_000_003, epoch])
        if self.item_probabilities is None:
            return rng.permutation(self.n_items)
        return rng.choice(self.n_items, size=self.n_items, replace=True, p=self.item_probabilities)

    def batch(self, items: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Augmented ``N×H×W×T`` images and ``N×H×W×1`` masks of the given items."""
        images, masks = [], []
        for item in items:
            index, copy = divmod(int(item), self.copies)
            image, mask = augment_sample(
                self.data.train_images[index],
                self.data.train_masks[index],
                seed=self.settings.seed,
                epoch=epoch,
                index=index,
                copy=copy,
                params=self.params,
            )
            images.append(image)
            masks.append(mask)
        x = np.ascontiguousarray(np.stack(images).transpose(0, 2, 3, 1))
        return x, np.stack(masks)[..., None]

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
        """One optimisation step; returns (loss, pixel counts ``[tp, fp, fn]``) as tensors."""
        with tf.device(self.device.tf_name):
            loss, counts = self._train_step(tf.constant(x), tf.constant(y))
        self.global_step += 1
        if self.onecycle is not None:
            self._set_schedule(self.global_step)
        return loss, counts

    def steps(self, epoch: int, counts: PixelCounts) -> Iterator[int]:
        """Run one epoch's training steps lazily, yielding each batch's size after its step;
        loss and pixel counts accumulate into ``counts``."""
        order = self.epoch_order(epoch)
        size = self.settings.batch_size
        batches = (order[start : start + size] for start in range(0, len(order), size))
        for x, y in _prefetched(lambda items: self.batch(items, epoch), batches, self.workers):
            loss, batch_counts = self.train_step(x, y)
            counts.add(batch_counts, loss, len(x))
            frequency = self.settings.log_batch_frequency
            if self.batch_log is not None and frequency and self.global_step % frequency == 0:
                self.batch_log(self.global_step, float(loss))
            yield len(x)

    def train_epoch(self, epoch: int, max_steps: int | None = None) -> tuple[PixelCounts, float]:
        """One pass over the augmented training set (or its first ``max_steps`` batches).

        Returns the loss and pixel counts, and the seconds it took (data path included).
        """
        counts = PixelCounts()
        tick = time.perf_counter()
        for done, _ in enumerate(self.steps(epoch, counts), start=1):
            if max_steps is not None and done >= max_steps:
                break
        counts.result()  # waits for the device
        return counts, time.perf_counter() - tick

    def validate(self) -> Validation:
        """Loss, pixel metrics and event-level counts on the eval stack (no augmentation)."""
        counts = PixelCounts()
        data, size = self.data, self.settings.batch_size
        maxima, truth = [], []
        for start in range(0, len(data.eval_images), size):
            x = channels_last(data.eval_images[start : start + size])
            masks = np.asarray(data.eval_masks[start : start + size], dtype=np.float32)
            with tf.device(self.device.tf_name):
                loss, batch_counts, peak = self._eval_step(
                    tf.constant(x), tf.constant(masks[..., None])
                )
            counts.add(batch_counts, loss, len(x))
            maxima.append(peak.numpy())
            truth.append(masks.reshape(len(masks), -1).max(axis=1))
        sample_max = np.concatenate(maxima) if maxima else np.zeros(0, dtype=np.float32)
        truth_max = np.concatenate(truth) if truth else np.zeros(0, dtype=np.float32)
        return Validation.from_maxima(counts.result(), sample_max, truth_max, data.eval_groups)

    def end_of_epoch(self, monitored: float) -> None:
        """Advance a plateau schedule with the monitored validation loss."""
        if self.plateau is not None and math.isfinite(monitored):
            learning_rate = self.plateau.step(monitored, self.learning_rate())
            self.optimizer.learning_rate.assign(learning_rate)

    def learning_rate(self) -> float:
        """The optimiser's current learning rate."""
        return float(self.optimizer.learning_rate.numpy())

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities of ``N×T×H×W`` samples with the current weights."""
        return predict(self.model, images, self.settings.batch_size, self.device)

    def save(self, path: Path, epoch: int, score: float) -> None:
        """Write a weights file (see :func:`.checkpoints.load_keras_model`)."""
        save_weights(
            path,
            self.model,
            self.settings,
            self.in_channels,
            epoch,
            score,
            self.data.manifest_id,
        )

    def state(self) -> list[np.ndarray]:
        """A copy of the weights, batch-norm statistics included (for restoring the best)."""
        return [np.array(w) for w in self.model.get_weights()]

    def restore(self, state: list[np.ndarray]) -> None:
        """Load weights saved by :meth:`state`."""
        self.model.set_weights(state)
