"""Train a Keras model on a training-set folder; the ``backend: tensorflow`` trainer.

The Keras twin of :mod:`deep_events_dagster.ml.torch.train`: the same networks
(:func:`~deep_events_dagster.ml.tensorflow.models.build_keras_model`), settings, losses on logits
(:mod:`.losses`), augmentation (:func:`~deep_events_dagster.ml.augmentation.augment_sample`),
oversampling, schedules, early stopping, history, TensorBoard tags and the same command line.
It writes a model folder:

=========================  ===================================================================
``settings.yaml``          the validated training settings (every key, defaults filled in)
``db_prompt.yaml``         copied from the training set: the catalog query it was built from
``training_set.yaml``      the manifest reference: ``path`` and ``id`` of the training set
``keras.weights.h5``       the weights of the kept epoch (``monitor``) of the logits network;
                           :func:`load_keras_model`, :func:`load_predictor`
``keras_best.weights.h5``  same as ``keras.weights.h5``, written whenever the kept epoch changes
``keras_last.weights.h5``  the weights of the last epoch (every ``save_frequency`` epochs)
``history.csv``            one row per epoch, the torch trainer's columns
``<log_dir>/``             TensorBoard (``logs`` by default): the torch trainer's scalar tags and
                           input | ground truth | prediction panels
``training_summary.yaml``  the :class:`TrainingSummary` (``backend: tensorflow``)
=========================  ===================================================================

The weight files are Keras HDF5 weight files (``model.save_weights``) whose root attributes
also say what they hold (``deep_events_format``, ``settings`` as JSON, ``in_channels``,
``epoch``, ``val_loss``, ``training_set_id``), so one file rebuilds its network, like torch's
``model.pt``.

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

Adam is implemented here (:class:`TorchAdam`) rather than taken from Keras: Keras' ``Adam``
puts ε inside the bias correction and its ``weight_decay`` is decoupled (AdamW), torch's is an
L2 term added to the gradient; and the one-cycle schedule changes β₁ every step.

Command line (also what the ``trained_model`` asset runs through Dagster Pipes)::

    python -m deep_events_dagster.ml.tensorflow.train --training-set DIR --model-dir DIR \\
        [--settings YAML] [--device auto|cpu|cuda:N] [--home DIR] [--when-busy wait|cpu]
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from deep_events_dagster.core.fsutil import atomic_path
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
    SETTINGS_FILE,
)
from deep_events_dagster.ml.tensorflow.compat import keras, tf
from deep_events_dagster.ml.tensorflow.losses import build_loss
from deep_events_dagster.ml.tensorflow.models import build_keras_model, count_keras_parameters
from deep_events_dagster.ml.training_log import (
    EpochResult,
    Trainer,
    TrainingSummary,
    run_training_command,
    write_model_files,
)

__all__ = [
    "KerasDevice",
    "KerasPredictor",
    "OneCycleSchedule",
    "PixelCounts",
    "PlateauSchedule",
    "TorchAdam",
    "TrainingSession",
    "Validation",
    "configure_threads",
    "gpu_count",
    "load_keras_model",
    "load_predictor",
    "main",
    "precision_policy",
    "predict",
    "prepare_training",
    "resolve_device",
    "train",
]

# The torch trainer's recipe constants (ml/torch/train.py); the same values, not tuned.
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 3
PLATEAU_THRESHOLD = 1e-4  # torch ReduceLROnPlateau's default: relative improvement needed
WEIGHTS_FORMAT = "deep-events-keras-weights"
WEIGHTS_VERSION = 1
# torch.amp.GradScaler's defaults.
LOSS_SCALE_INITIAL = 2.0**16
LOSS_SCALE_GROWTH_INTERVAL = 2000
# Keras networks upsample by exactly 2, twice: frame sides must divide by 4.
FRAME_MULTIPLE = 4


# -- devices, threads and precision ----------------------------------------------------------


@dataclass(frozen=True)
class KerasDevice:
    """Where TensorFlow computes.

    Attributes
    ----------
    name
        ``"cpu"`` or ``"cuda:N"`` (the platform's names, as in the summary).
    tf_name
        TensorFlow's logical device, e.g. ``"/CPU:0"`` or ``"/GPU:0"``.
    """

    name: str
    tf_name: str

    @property
    def kind(self) -> str:
        """``"cpu"`` or ``"cuda"``."""
        return "cpu" if self.name == "cpu" else "cuda"

    def __str__(self) -> str:
        return self.name


def configure_threads() -> None:
    """Size TensorFlow's thread pools to the CPUs this process may use (intra-op) and at most
    two concurrent ops (inter-op), so that both pools together do not oversubscribe the
    machine. Only possible before TensorFlow's runtime starts; a no-op afterwards."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, cpus))
    except RuntimeError:
        pass  # the runtime is already initialised (another model in this process)


def gpu_count() -> int:
    """The number of GPUs TensorFlow sees."""
    return len(tf.config.list_physical_devices("GPU"))


def _claim_gpu(index: int) -> str:
    """Make GPU ``index`` the process's only visible GPU, growing its memory on demand (before
    the runtime starts), and return its logical name."""
    gpus = tf.config.list_physical_devices("GPU")
    try:
        tf.config.set_visible_devices([gpus[index]], "GPU")
        tf.config.experimental.set_memory_growth(gpus[index], True)
    except RuntimeError:
        pass  # the runtime is already initialised: keep what is visible
    visible = tf.config.get_visible_devices("GPU")
    if gpus[index] not in visible:
        raise ValueError(
            f"cuda:{index} is not visible to TensorFlow in this process (already restricted "
            f"to {[d.name for d in visible]})"
        )
    return f"/GPU:{visible.index(gpus[index])}"


def resolve_device(spec: str | KerasDevice = "auto") -> KerasDevice:
    """A :class:`KerasDevice` from ``"auto"`` (the first GPU TensorFlow sees, else the CPU),
    ``"cpu"``, ``"cuda"``/``"gpu"`` or ``"cuda:N"``/``"gpu:N"``. Reserves nothing (see
    :func:`deep_events_dagster.ml.devices.allocate_device`).

    Raises
    ------
    ValueError
        An unknown device name, or a GPU TensorFlow does not see.
    """
    if isinstance(spec, KerasDevice):
        return spec
    from deep_events_dagster.ml.devices import parse_device

    kind, index = parse_device(str(spec))
    configure_threads()
    if kind == "auto":
        kind, index = ("cuda", 0) if gpu_count() else ("cpu", None)
    if kind == "cpu":
        return KerasDevice("cpu", "/CPU:0")
    count = gpu_count()
    if index >= count:
        raise ValueError(
            f"device cuda:{index} asked for, but TensorFlow sees {count} GPU(s)"
            + ("" if count else " (tensorflow-cpu, or no CUDA driver)")
        )
    return KerasDevice(f"cuda:{index}", _claim_gpu(index))


def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def precision_policy(device: KerasDevice, mode: str = "auto") -> str:
    """The Keras dtype policy for ``mixed_precision`` ``mode`` on ``device``.

    The torch trainer's rule: ``"mixed_float16"`` on a GPU unless ``"off"``; on a CPU
    ``"mixed_bfloat16"`` for ``"on"``, and for ``"auto"`` when the CPU has native bfloat16
    instructions; ``"float32"`` otherwise.
    """
    if mode == "off":
        return "float32"
    if device.kind == "cuda":
        return "mixed_float16"
    if mode == "on" or _cpu_has_native_bf16():
        return "mixed_bfloat16"
    return "float32"


_PRECISION_NAMES = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


@contextmanager
def _global_policy(policy: str) -> Iterator[None]:
    """Build layers under a dtype policy without leaving it set for the rest of the process."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    tf.random.set_seed(seed % 2**31)


# -- weight files ----------------------------------------------------------------------------


def _save_weights(
    path: Path,
    model: keras.Model,
    settings: TrainingSettings,
    in_channels: int,
    epoch: int,
    val_loss: float,
    training_set_id: str,
) -> None:
    import h5py  # a TensorFlow dependency

    with atomic_path(path) as tmp:  # the temporary name ends in .h5: Keras writes HDF5
        model.save_weights(str(tmp))
        with h5py.File(tmp, "r+") as h5:
            h5.attrs["deep_events_format"] = WEIGHTS_FORMAT
            h5.attrs["deep_events_version"] = WEIGHTS_VERSION
            h5.attrs["settings"] = json.dumps(settings.as_dict())
            h5.attrs["in_channels"] = int(in_channels)
            h5.attrs["epoch"] = int(epoch)
            h5.attrs["val_loss"] = float(val_loss)
            h5.attrs["training_set_id"] = training_set_id


def _weights_description(path: Path) -> tuple[TrainingSettings, int]:
    """Settings and ``in_channels`` recorded in a weights file, else the folder's
    ``settings.yaml`` (``in_channels`` = ``n_timepoints``: the trainer checks they agree)."""
    import h5py

    with h5py.File(path, "r") as h5:
        attrs = dict(h5.attrs)
    if attrs.get("deep_events_format") == WEIGHTS_FORMAT:
        settings = TrainingSettings.from_mapping(json.loads(attrs["settings"]), source=str(path))
        return settings, int(attrs["in_channels"])
    settings_file = path.parent / SETTINGS_FILE
    if not settings_file.is_file():
        raise ValueError(f"{path}: not a {WEIGHTS_FORMAT} file and no {SETTINGS_FILE} beside it")
    settings = TrainingSettings.from_mapping(
        yaml.safe_load(settings_file.read_text(encoding="utf-8")), source=str(settings_file)
    )
    return settings, settings.n_timepoints


def load_keras_model(path: str | Path, device: str | KerasDevice = "cpu") -> keras.Model:
    """The logits network (float32) of a model folder's ``keras.weights.h5``, or of any weights
    file the trainer wrote (``keras_best.weights.h5``, ``keras_last.weights.h5``).

    Parameters
    ----------
    path
        A model folder, or one of its weight files.
    device
        Where the weights live (``"cpu"``, ``"cuda:N"``, ``"auto"``).

    Returns
    -------
    keras.Model
        ``N×H×W×T`` → ``N×H×W×1`` logits.

    Raises
    ------
    FileNotFoundError
        No weights file.
    ValueError
        The file does not match the network its settings describe.
    """
    path = Path(path)
    if path.is_dir():
        path = path / KERAS_WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no Keras weights (train a tensorflow model first)")
    device = resolve_device(device)
    settings, in_channels = _weights_description(path)
    with tf.device(device.tf_name), _global_policy("float32"):
        model = build_keras_model(settings, in_channels)
        try:
            model.load_weights(str(path))
        except ValueError as exc:
            raise ValueError(f"{path}: weights do not fit the {settings.model}: {exc}") from exc
    return model


# -- prediction ------------------------------------------------------------------------------

_PROBABILITY_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probability_function(model: keras.Model):
    """A traced ``x → σ(logits)[..., 0]`` for ``model`` (traced once per model)."""
    function = _PROBABILITY_FUNCTIONS.get(model)
    if function is None:
        channels = int(model.input_shape[-1])

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)])
        def function(x):
            logits = model(x, training=False)
            return tf.sigmoid(tf.cast(logits, tf.float32))[..., 0]

        _PROBABILITY_FUNCTIONS[model] = function
    return function


def _channels_last(images: np.ndarray) -> np.ndarray:
    """``N×T×H×W`` (any array-like, e.g. a memory-map slice) → float32 ``N×H×W×T``."""
    return np.ascontiguousarray(np.asarray(images, dtype=np.float32).transpose(0, 2, 3, 1))


def predict(
    model: keras.Model,
    images: np.ndarray,
    batch_size: int = 8,
    device: str | KerasDevice = "cpu",
) -> np.ndarray:
    """Probabilities ``σ(logits)`` for a stack of samples.

    Parameters
    ----------
    model
        A logits network from :func:`load_keras_model` or
        :func:`~deep_events_dagster.ml.tensorflow.models.build_keras_model`.
    images
        ``N×T×H×W`` float32 (a memory map is fine: read batch by batch); a window longer than
        the model's input gives its latest frames. Sides that are not multiples of 4 are padded
        with zeros (bottom, right) and the result cropped back.
    batch_size
        Samples per forward pass.
    device
        Where to compute.

    Returns
    -------
    numpy.ndarray
        ``N×H×W`` float32 in [0, 1].
    """
    device = resolve_device(device)
    wanted = int(model.input_shape[-1])
    if images.shape[1] < wanted:
        raise ValueError(f"samples have {images.shape[1]} frame(s); the model needs {wanted}")
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % FRAME_MULTIPLE, -width % FRAME_MULTIPLE
    function = _probability_function(model)
    out = np.empty((len(images), height, width), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        x = _channels_last(images[start : start + batch_size, images.shape[1] - wanted :])
        if pad_h or pad_w:
            x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        with tf.device(device.tf_name):
            probabilities = function(tf.constant(x)).numpy()
        out[start : start + len(x)] = probabilities[:, :height, :width]
    return out


class KerasPredictor:
    """A Keras model behind :class:`deep_events_dagster.ml.backend.Predictor`."""

    def __init__(self, model: keras.Model, device: str | KerasDevice = "cpu"):
        self.model = model
        self.device = resolve_device(device)
        self.in_channels = int(model.input_shape[-1])

    def predict(self, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """``N×T×H×W`` samples → ``N×H×W`` probabilities (see :func:`predict`)."""
        return predict(self.model, images, batch_size=batch_size, device=self.device)


def load_predictor(
    model_dir: str | Path, device: str | KerasDevice = "cpu", precision: str = "float32"
) -> KerasPredictor:
    """The kept weights of a tensorflow model folder (``keras.weights.h5``) as a predictor.

    ``precision`` is accepted for the backends' common signature; Keras models always predict
    in float32.
    """
    if precision not in ("float32", "auto"):
        raise ValueError(f"precision must be float32 or auto, got {precision!r}")
    device = resolve_device(device)
    return KerasPredictor(load_keras_model(model_dir, device), device)


# -- optimiser and schedules -----------------------------------------------------------------


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


# -- metrics ---------------------------------------------------------------------------------


def _pixel_counts(logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
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


# -- TensorBoard -----------------------------------------------------------------------------


class _Board:
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


# -- training --------------------------------------------------------------------------------


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
        self.precision = _PRECISION_NAMES[self.policy]
        with tf.device(device.tf_name), _global_policy(self.policy):
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
            return loss, _pixel_counts(logits, y)

        return step

    def _make_eval_step(self):
        model, loss_fn = self.model, self.loss_fn

        @tf.function(input_signature=self._input_specs())
        def step(x, y):
            logits = tf.cast(model(x, training=False), tf.float32)
            peak = tf.sigmoid(tf.reduce_max(logits, axis=[1, 2, 3]))
            return loss_fn(logits, y), _pixel_counts(logits, y), peak

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
            x = _channels_last(data.eval_images[start : start + size])
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
        _save_weights(
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
        _Board(settings.tensorboard_dir(model_dir), log),
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
