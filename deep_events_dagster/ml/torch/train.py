"""Train a model on a training-set folder; also the ``trained_model`` asset's Pipes process.

This module owns the training (:func:`prepare_training` checks the training set against the
settings, :func:`train` runs the shared epoch loop and writes the model folder) and the command
line (:func:`main`). It runs on the rest of the package: one training's model, optimiser, steps
and data path (:class:`~.session.TrainingSession`), devices and autocast (:mod:`.devices`),
checkpoints (:mod:`.checkpoints`), prediction (:mod:`.predictor`), pixel metrics
(:mod:`.metrics`), TensorBoard (:mod:`.board`), networks (:mod:`.models`), losses
(:mod:`.losses`) and the augmented data (:mod:`.data`).

:func:`train` reads a training-set folder (see :mod:`deep_events_dagster.ml.torch.data`) and
writes a model folder:

=========================  ===================================================================
``settings.yaml``          the validated training settings (every key, defaults filled in)
``db_prompt.yaml``         copied from the training set: the catalog query it was built from
``training_set.yaml``      the manifest reference: ``path`` and ``id`` of the training set
``model.pt``               the weights of the kept epoch (``monitor``);
                           :func:`~.checkpoints.load_model`
``model_best.pt``          same as ``model.pt``, written whenever the kept epoch changes
``model_last.pt``          the weights of the last epoch (every ``save_frequency`` epochs)
``history.csv``            one row per epoch: losses, pixel precision/recall/F1 at 0.5, the
                           event-level validation F1 at 0.5 and its counts, learning rate, speed
``<log_dir>/``             TensorBoard (``logs`` by default): the same scalars; input | ground
                           truth | prediction images of a few eval samples per validation
``training_summary.yaml``  the :class:`TrainingSummary`
=========================  ===================================================================

Training: Adam (``initial_learning_rate``, ``weight_decay``), seeds fixed (Python, numpy, torch,
the shuffling and the augmentation), every training sample ``n_augmentations`` times per epoch
(augmented on the fly, every copy the sample's size), mixed precision on CUDA (float16 autocast
and a gradient scaler) and, with ``mixed_precision: auto``, bfloat16 autocast on CPUs with
native bfloat16 instructions. The validation loss is computed on the training set's eval stack
every ``val_frequency`` epochs (without augmentation); with no eval samples the training loss
picks the best epoch instead.

The recipe (each part measured side by side in ``make bench``, section ``learning``):

* the output layer's bias starts at ``log(p / (1 − p))`` with ``p`` the mean ground-truth value
  of the training masks (``output_bias_prior``): an untrained network predicts the rare event
  pixels' prior instead of 0.5 everywhere, whose first epochs are otherwise spent pushing every
  pixel down (one of the settings the issue found learning to predict nothing);
* positive samples (any ground truth in their mask) are drawn for at least
  ``positive_fraction`` (default :data:`DEFAULT_POSITIVE_FRACTION`) of an epoch when they are
  rarer, by weighted sampling with replacement;
* every sample is cut to a random ``patch_size``² window (default 128) before augmentation,
  a positive's window keeping its event (:func:`~deep_events_dagster.ml.augmentation.patch_corner`):
  the fully convolutional network evaluates whole frames, and a step costs a quarter of a
  256² crop's;
* gradients are clipped to ``gradient_clip_norm``;
* ``lr_schedule``: ``plateau`` halves the learning rate after :data:`~.session.PLATEAU_PATIENCE`
  validations without a lower validation loss; ``onecycle`` is torch's one-cycle policy over
  the whole run; ``constant`` keeps it;
* the kept epoch (``monitor``, :mod:`deep_events_dagster.ml.epochs`): by default the one
  whose eval events are best found at the threshold the evaluation will choose (event-level
  F1, ties by the lower validation loss); ``val_loss``: the lowest validation loss;
* early stopping: after ``patience`` epochs without a better epoch the run stops and the kept
  weights are restored (``model.pt`` is always the kept epoch).

Command line (also what the ``trained_model`` asset runs through Dagster Pipes)::

    python -m deep_events_dagster.ml.torch.train --training-set DIR --model-dir DIR \\
        [--settings YAML] [--device auto|cpu|cuda:N] [--home DIR] [--when-busy wait|cpu]

Standalone it prints one line per epoch. Launched by Dagster's ``PipesSubprocessClient`` it
logs each epoch through Pipes and reports the materialization's metadata (epochs, best
validation loss, samples/s, device, parameters, model folder, the TensorBoard command).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.epochs import Checkpoints, run_epochs
from deep_events_dagster.ml.model_folder import (
    TORCH_BEST_FILE,
    TORCH_LAST_FILE,
    TORCH_WEIGHTS_FILE,
)
from deep_events_dagster.ml.torch.board import Board
from deep_events_dagster.ml.torch.checkpoints import load_model
from deep_events_dagster.ml.torch.data import TrainingArrays
from deep_events_dagster.ml.torch.devices import resolve_device
from deep_events_dagster.ml.torch.predictor import TorchPredictor
from deep_events_dagster.ml.torch.session import TrainingSession
from deep_events_dagster.ml.training_log import (
    EpochResult,
    Trainer,
    TrainingSummary,
    run_training_command,
    write_model_files,
)

# TorchPredictor and load_model live in .predictor and .checkpoints; they are re-exported here
# because deep_events_dagster.ml.export imports them from this module.
__all__ = [
    "TorchPredictor",
    "load_model",
    "main",
    "prepare_training",
    "train",
]


def prepare_training(
    training_set: str | Path | TrainingArrays,
    settings: TrainingSettings | None = None,
    device: str | torch.device = "cpu",
) -> TrainingSession:
    """Seed, build the model, optimiser, loss and data loader for a training set.

    Raises
    ------
    ValueError
        The training set disagrees with the settings (``n_timepoints``, ``nb_input_channels``),
        is malformed, or the settings ask for another backend.
    """
    settings = settings or TrainingSettings()
    if settings.backend != "torch":
        raise ValueError(f"settings ask for backend {settings.backend!r}; this is the torch one")
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
    return TrainingSession(data, settings, resolve_device(device))


def train(
    training_set_dir: str | Path,
    model_dir: str | Path,
    settings: TrainingSettings | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: Callable[[EpochResult], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainingSummary:
    """Train a model on a training-set folder and write the model folder (module docstring).

    Parameters
    ----------
    training_set_dir
        Folder with ``train_images.npy``, ``train_masks.npy``, ``eval_images.npy``,
        ``eval_masks.npy``, ``manifest.yaml``, ``db_prompt.yaml``.
    model_dir
        Output folder (created; files in it are replaced).
    settings
        Training settings (default: all defaults).
    device
        ``"cpu"``, ``"cuda:N"`` or a ``torch.device`` — chosen by the caller (see
        :func:`deep_events_dagster.ml.devices.allocate_device`); ``"auto"`` takes the first GPU
        or the CPU without reserving anything.
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
        The training set disagrees with the settings (``n_timepoints``) or is malformed.
    FloatingPointError
        The training loss became NaN or infinite.
    """
    started = time.perf_counter()
    settings = settings or TrainingSettings()
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
        checkpoints=Checkpoints(TORCH_BEST_FILE, TORCH_LAST_FILE, TORCH_WEIGHTS_FILE),
        backend="torch",
        label=settings.model,
        started=started,
        progress=progress,
        log=log,
    )


# -- command line / Dagster Pipes ------------------------------------------------------------


def _gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


TRAINER = Trainer(module="deep_events_dagster.ml.torch.train", train=train, gpu_count=_gpu_count)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); returns the exit status."""
    return run_training_command(argv, TRAINER)


if __name__ == "__main__":
    sys.exit(main())
