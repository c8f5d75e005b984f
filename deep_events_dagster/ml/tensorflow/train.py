"""Train a Keras model on a training-set folder; the ``backend: tensorflow`` trainer.

The Keras twin of :mod:`deep_events_dagster.ml.torch.train`: the same networks
(:func:`~deep_events_dagster.ml.tensorflow.models.build_keras_model`), settings, losses on logits
(:mod:`.losses`), augmentation (:func:`~deep_events_dagster.ml.augmentation.augment_sample`),
oversampling, schedules, early stopping, history, TensorBoard tags and the same command line.

This module owns the training (:func:`prepare_training` checks the training set against the
settings, :func:`train` runs the shared epoch loop and writes the model folder) and the command
line (:func:`main`); the rest of the backend: one training's model, optimiser, steps and data
path (:class:`~.session.TrainingSession`), devices, threads and precision policies
(:mod:`.devices`), weight files (:mod:`.checkpoints`), prediction (:mod:`.predictor`), the
optimiser and schedules (:mod:`.optim`), pixel metrics (:mod:`.metrics`), TensorBoard
(:mod:`.board`), networks (:mod:`.models`), losses (:mod:`.losses`). It writes a model folder:

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

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from deep_events_dagster.ml.arrays import TrainingArrays
from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.epochs import Checkpoints, run_epochs
from deep_events_dagster.ml.model_folder import (
    KERAS_BEST_FILE,
    KERAS_LAST_FILE,
    KERAS_WEIGHTS_FILE,
)
from deep_events_dagster.ml.tensorflow.board import Board
from deep_events_dagster.ml.tensorflow.checkpoints import load_keras_model
from deep_events_dagster.ml.tensorflow.devices import KerasDevice, gpu_count, resolve_device
from deep_events_dagster.ml.tensorflow.predictor import FRAME_MULTIPLE
from deep_events_dagster.ml.tensorflow.session import TrainingSession
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
    "load_keras_model",
    "main",
    "prepare_training",
    "train",
]


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
