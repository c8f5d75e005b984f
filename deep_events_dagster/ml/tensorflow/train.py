"""Train a Keras model on a training-set folder; the ``backend: tensorflow`` trainer.

The Keras twin of :mod:`deep_events_dagster.ml.torch.train`: the same networks
(:func:`~deep_events_dagster.ml.tensorflow.models.build_keras_model`), settings, losses on logits
(:mod:`.losses`), augmentation (:func:`~deep_events_dagster.ml.augmentation.augment_sample`),
oversampling, schedules, early stopping, history, TensorBoard tags and the same command line.

This module owns the training loop (:class:`TrainingSession`, :func:`prepare_training`,
:func:`train`) and the command line (:func:`main`); the rest of the backend: devices, threads
and precision policies (:mod:`.devices`), weight files (:mod:`.checkpoints`), prediction
(:mod:`.predictor`), the optimiser and schedules (:mod:`.optim`), pixel metrics
(:mod:`.metrics`), TensorBoard (:mod:`.board`), networks (:mod:`.models`), losses
(:mod:`.losses`). It writes a model folder:

=========================  ===================================================================
``settings.yaml``          the validated training settings (every key, defaults filled in)
``db_prompt.yaml``         copied from the training set: the catalog query it was built from
``training_set.yaml``      the manifest reference: ``path`` and ``id`` of the training set
``keras.weights.h5``       the weights of the kept epoch (``monitor``) of the logits network;
                           :func:`~.checkpoints.load_keras_model`,
                           :func:`~.predictor.load_predictor`
``keras_best.weights.h5``  same as ``keras.weights.h5``, written whenever the kept epoch changes
``keras_last.weights.h5``  the weights of the last epoch (every ``save_frequency`` epochs)
``history.csv``            one row per epoch, the torch trainer's columns
``<log_dir>/``             TensorBoard (``logs`` by default): the torch trainer's scalar tags and
                           input | ground truth | prediction panels
``training_summary.yaml``  the :class:`TrainingSummary` (``backend: tensorflow``)
=========================  ===================================================================

The weight files are Keras HDF5 weight files that also say what they hold, so one file
rebuilds its network, like torch's ``model.pt`` (:mod:`.checkpoints`).

The recipe is the torch trainer's (see its module docstring): seeds fixed (Python, numpy,
TensorFlow, the shuffling and the augmentation); every training sample ``n_augmentations`` times
per epoch, cut to a random ``patch_size`` window and augmented by the shared numpy code;
positives oversampled to ``positive_fraction`` by a seeded weighted draw with replacement; the
output bias starting at the positive pixel prior; Adam with torch's semantics; gradients clipped
to ``gradient_clip_norm`` (global norm); ``plateau`` (factor 0.5 after 3 validations without a
lower validation loss, torch's ``ReduceLROnPlateau`` rule), ``onecycle`` (torch's ``OneCycleLR``
defaults, β₁ cycled too) or ``constant`` learning rate; validation on the eval stack every
``val_frequency`` epochs (loss, pixel precision/recall/F1 at 0.5, event-level counts at 0.5);
the epoch kept by ``monitor`` and early stopping after ``patience`` epochs without a better one
(:mod:`deep_events_dagster.ml.epochs`, shared with torch), restoring the kept weights.
Mixed precision as torch: float16 with dynamic loss scaling (torch's ``GradScaler`` constants)
on a GPU, bfloat16 on CPUs with native bfloat16 instructions (``auto``) or any CPU (``on``).

Where the backends still differ (none changes the recipe; the parity test trains both):

* the epoch's order is drawn by numpy, not torch: the same distribution, other draws;
* initial weights come from TensorFlow's generator (same initialisers, other draws);
* Keras' batch normalisation updates its moving variance with the biased batch variance, torch
  with the unbiased one (a factor ``n/(n−1)`` over ``n`` ≥ 8·128² pixels);
* frame sides must be multiples of 4 in training (Keras upsamples by exactly 2); prediction
  pads other sizes with zeros to the next multiple of 4 and crops the result.

Adam is torch's (:class:`~.optim.TorchAdam`), not Keras': Keras' ``Adam`` puts ε inside the
bias correction and its ``weight_decay`` is decoupled (AdamW), torch's is an L2 term added to
the gradient; and the one-cycle schedule changes β₁ every step.

Command line (also what the ``trained_model`` asset runs through Dagster Pipes)::

    python -m deep_events_dagster.ml.tensorflow.train --training-set DIR --model-dir DIR \\
        [--settings YAML] [--device auto|cpu|cuda:N] [--home DIR] [--when-busy wait|cpu]
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from deep_events_dagster.ml.epochs import Checkpoints, Validation, run_epochs
from deep_events_dagster.ml.model_folder import (
    KERAS_BEST_FILE,
    KERAS_LAST_FILE,
    KERAS_WEIGHTS_FILE,
)
from deep_events_dagster.ml.tensorflow.board import Board
from deep_events_dagster.ml.tensorflow.checkpoints import load_keras_model, save_weights
from deep_events_dagster.ml.tensorflow.compat import tf
from deep_events_dagster.ml.tensorflow.devices import (
    PRECISION_NAMES,
    KerasDevice,
    global_policy,
    gpu_count,
    precision_policy,
    resolve_device,
)
from deep_events_dagster.ml.tensorflow.losses import build_loss
from deep_events_dagster.ml.tensorflow.metrics import PixelCounts, pixel_counts
from deep_events_dagster.ml.tensorflow.models import build_keras_model, count_keras_parameters
from deep_events_dagster.ml.tensorflow.optim import OneCycleSchedule, PlateauSchedule, TorchAdam
from deep_events_dagster.ml.tensorflow.predictor import FRAME_MULTIPLE, channels_last, predict
from deep_events_dagster.ml.training_log import (
    EpochResult,
    Trainer,
    TrainingSummary,
    run_training_command,
    write_model_files,
)

# load_keras_model lives in .checkpoints; it is re-exported here because
# deep_events_dagster.ml.export imports it from this module.
__all__ = [
    "TrainingSession",
    "load_keras_model",
    "main",
    "prepare_training",
    "train",
]

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
    """The model, optimiser, schedule and data path of one Keras training — what :func:`train`
    runs (the torch trainer's ``TrainingSession``, same methods).

    Use :func:`prepare_training` to build one.
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
        """Write a weights file (see :func:`load_keras_model`)."""
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


def prepare_training(
    training_set: str | Path | TrainingArrays,
    settings: TrainingSettings | None = None,
    device: str | KerasDevice = "cpu",
) -> TrainingSession:
    """Seed, build the model, optimiser, loss and data path for a training set.

    Raises
    ------
    ValueError
        The training set disagrees with the settings (``n_timepoints``, ``nb_input_channels``),
        its frames (or ``patch_size`` windows) have sides that are not multiples of 4, it is
        malformed, or the settings ask for another backend.
    """
    settings = settings or TrainingSettings(backend="tensorflow")
    if settings.backend != "tensorflow":
        raise ValueError(
            f"settings ask for backend {settings.backend!r}; this is the tensorflow one"
        )
    device = resolve_device(device)
    data = training_set if isinstance(training_set, TrainingArrays) else None
    data = data or TrainingArrays.load(training_set)
    if data.n_timepoints < settings.n_timepoints:
        raise ValueError(
            f"{data.path}: samples have {data.n_timepoints} frame(s) but the settings say "
            f"n_timepoints: {settings.n_timepoints}"
        )
    data = data.with_frames(settings.n_timepoints)
    if settings.nb_input_channels is not None and settings.nb_input_channels != data.n_timepoints:
        raise ValueError(
            f"{data.path}: samples have {data.n_timepoints} channel(s) but the settings say "
            f"nb_input_channels: {settings.nb_input_channels}"
        )
    height, width = data.frame_shape
    patch = settings.patch_size
    train_sides = (height, width) if patch is None else (min(patch, height), min(patch, width))
    if any(side % FRAME_MULTIPLE for side in (height, width, *train_sides)):
        raise ValueError(
            f"{data.path}: the Keras networks need frame sides that are multiples of "
            f"{FRAME_MULTIPLE}; samples are {height}×{width}"
            + ("" if patch is None else f" (patch_size {patch})")
        )
    return TrainingSession(data, settings, device)


def train(
    training_set_dir: str | Path,
    model_dir: str | Path,
    settings: TrainingSettings | None = None,
    *,
    device: str | KerasDevice = "cpu",
    progress: Callable[[EpochResult], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainingSummary:
    """Train a Keras model on a training-set folder and write the model folder (module
    docstring).

    Parameters
    ----------
    training_set_dir
        Folder with ``train_images.npy``, ``train_masks.npy``, ``eval_images.npy``,
        ``eval_masks.npy``, ``manifest.yaml``, ``db_prompt.yaml``.
    model_dir
        Output folder (created; files in it are replaced).
    settings
        Training settings with ``backend: tensorflow`` (default: all defaults).
    device
        ``"cpu"``, ``"cuda:N"`` (or ``"gpu:N"``) — chosen by the caller (see
        :func:`deep_events_dagster.ml.devices.allocate_device`); ``"auto"`` takes the first GPU
        TensorFlow sees, or the CPU.
    progress
        Called after every epoch with its :class:`EpochResult`.
    log
        Called with informational lines (default: nothing).

    Returns
    -------
    TrainingSummary

    Raises
    ------
    ValueError
        The training set disagrees with the settings or is malformed, or the settings ask for
        another backend.
    FloatingPointError
        The training loss became NaN or infinite.
    """
    started = time.perf_counter()
    settings = settings or TrainingSettings(backend="tensorflow")
    log = log or (lambda message: None)
    session = prepare_training(training_set_dir, settings, device)
    data = session.data
    model_dir = Path(model_dir).resolve()
    model_dir.mkdir(parents=True, exist_ok=True)
    write_model_files(model_dir, data.path, settings, data.manifest_id)
    for note in settings.effect_notes():
        log(note)

    return run_epochs(
        session,
        model_dir,
        Board(settings.tensorboard_dir(model_dir), log),
        checkpoints=Checkpoints(KERAS_BEST_FILE, KERAS_LAST_FILE, KERAS_WEIGHTS_FILE),
        backend="tensorflow",
        label=f"{settings.model} (Keras)",
        started=started,
        progress=progress,
        log=log,
    )


# -- command line / Dagster Pipes ------------------------------------------------------------


TRAINER = Trainer(
    module="deep_events_dagster.ml.tensorflow.train", train=train, gpu_count=gpu_count
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); returns the exit status."""
    return run_training_command(argv, TRAINER)


if __name__ == "__main__":
    sys.exit(main())
