"""Trained and evaluated model folders for the export tests.

One small training set from synthetic acquisitions (128² movies of 8 frames, 32² crops, windows
of 3 frames; 3 training and 2 held-out acquisitions), and three tiny networks trained on it for
one or two CPU epochs: a U-Net whose held-out event decisions are mixed (some events above the
threshold, some below, so the decision check has something to compare), a bottleneck ConvLSTM,
and a U-Net trained by the tensorflow backend.

The fixtures are module-scoped, but each folder is built once per test session (per xdist
worker) under pytest's base temporary folder and shared by every module that uses them
(``test_export``, ``test_bioimageio``, ``test_cli_export``); tests that change a folder work on
a copy (:func:`copy_model_dir`). A test module uses them by importing this module and binding
the fixtures it needs to module names (``unet_model_dir = export_fixtures.unet_model_dir``),
plus :func:`one_thread`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

N_TIMEPOINTS = 3
LEARNING_SET = {
    "size": 128,
    "crop_size": 32,
    "n_frames": 8,
    "n_train_acquisitions": 3,
    "n_held_out_acquisitions": 2,
    "events_per_acquisition": (2, 3),
    "sigma": 2.0,
    "settings": {"n_timepoints": N_TIMEPOINTS},
}
TINY = {
    "nb_filters": 4,
    "first_conv_size": 3,
    "n_timepoints": N_TIMEPOINTS,
    "batch_size": 8,
    "n_augmentations": 1,
    "n_log_images": 0,
    "initial_learning_rate": 0.01,
}
# Two epochs without the output prior, the epoch kept by the validation loss: held-out event
# decisions on both sides of the threshold (the event-F1 rule may keep an epoch that calls every
# event positive when its F1 is the higher one — right for a model, useless for this fixture).
UNET = {**TINY, "model": "unet", "epochs": 2, "output_bias_prior": False, "monitor": "val_loss"}
LSTM = {**TINY, "model": "bottleneck_lstm", "epochs": 1}
KERAS_UNET = {**TINY, "backend": "tensorflow", "model": "unet", "epochs": 1}


def train_and_evaluate(training_set: Path, model_dir: Path, settings: dict) -> Path:
    """Train ``settings`` on ``training_set`` into ``model_dir`` (CPU) and evaluate it."""
    from deep_events_dagster.ml.backend import get_backend
    from deep_events_dagster.ml.config import TrainingSettings
    from deep_events_dagster.ml.evaluate import evaluate_model_folder

    training = TrainingSettings.from_mapping(settings)
    get_backend(training.backend).train(training_set, model_dir, training, device="cpu")
    evaluate_model_folder(model_dir, device="cpu")
    return model_dir


DONE_MARKER = ".built"


def _built_once(folder: Path, build) -> Path:
    """``build(folder)`` unless an earlier call of this session completed it."""
    if not (folder / DONE_MARKER).exists():
        shutil.rmtree(folder, ignore_errors=True)
        build(folder)
        (folder / DONE_MARKER).touch()
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread(request):
    """Torch and ONNX Runtime on one thread while a module's tests run (restored after).

    These networks are tiny: on a busy 2-core machine two threads spend most of their time
    waiting for each other at every layer (measured 10× slower than one).
    """
    import torch

    from deep_events_dagster.ml import export_predictors

    threads = torch.get_num_threads()
    onnx_threads = export_predictors.ONNX_THREADS
    torch.set_num_threads(1)
    export_predictors.ONNX_THREADS = 1
    yield
    torch.set_num_threads(threads)
    export_predictors.ONNX_THREADS = onnx_threads


@pytest.fixture(scope="module")
def export_root(tmp_path_factory) -> Path:
    """The session's shared folder for the export fixtures."""
    root = tmp_path_factory.getbasetemp() / "export_fixtures"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="module")
def learning_training_set(export_root) -> Path:
    """The training-set folder (eval split: the held-out acquisitions)."""
    from deep_events_dagster.testing.learning import build_learning_set

    def build(folder: Path) -> None:
        result = build_learning_set(folder, **LEARNING_SET)
        (folder / "training_set_path.txt").write_text(str(result.training_set.path))

    folder = _built_once(export_root / "data", build)
    return Path((folder / "training_set_path.txt").read_text())


@pytest.fixture(scope="module")
def unet_model_dir(export_root, learning_training_set) -> Path:
    """A trained, evaluated U-Net model folder (exports may exist from other tests)."""
    return _built_once(
        export_root / "unet",
        lambda folder: train_and_evaluate(learning_training_set, folder, UNET),
    )


@pytest.fixture(scope="module")
def lstm_model_dir(export_root, learning_training_set) -> Path:
    """A trained, evaluated bottleneck ConvLSTM model folder."""
    return _built_once(
        export_root / "lstm",
        lambda folder: train_and_evaluate(learning_training_set, folder, LSTM),
    )


@pytest.fixture(scope="module")
def keras_model_dir(export_root, learning_training_set) -> Path:
    """A U-Net trained by the tensorflow backend (the exports' source is its Keras model)."""
    return _built_once(
        export_root / "keras_unet",
        lambda folder: train_and_evaluate(learning_training_set, folder, KERAS_UNET),
    )


def copy_model_dir(model_dir: Path, target: Path, *, exports: bool = False) -> Path:
    """A copy of a model folder (its training set is shared), for tests that change it;
    without its exports unless ``exports``."""
    from deep_events_dagster.ml.model_folder import EXPORT_FORMATS, EXPORTS_FILE

    skip = set() if exports else {*EXPORT_FORMATS.values(), EXPORTS_FILE}
    shutil.copytree(model_dir, target, ignore=lambda _dir, names: [n for n in names if n in skip])
    (target / DONE_MARKER).unlink(missing_ok=True)
    return target
