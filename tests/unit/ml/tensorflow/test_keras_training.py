"""The Keras trainer: its model folder, early stopping, command line, and the pieces of the
recipe that must match torch's numerically (losses, Adam, schedules)."""

from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import yaml

pytest.importorskip("tf_keras")

from deep_events_dagster.ml import backend as backends
from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.tensorflow import losses as tf_losses
from deep_events_dagster.ml.tensorflow.checkpoints import load_keras_model
from deep_events_dagster.ml.tensorflow.compat import tf
from deep_events_dagster.ml.tensorflow.optim import OneCycleSchedule, PlateauSchedule, TorchAdam
from deep_events_dagster.ml.tensorflow.predictor import load_predictor
from deep_events_dagster.ml.tensorflow.session import TrainingSession
from deep_events_dagster.ml.tensorflow.train import prepare_training, train
from deep_events_dagster.ml.training_log import HISTORY_FIELDS
from deep_events_dagster.testing.learning import build_learning_set

MODEL_FILES = (
    "settings.yaml",
    "db_prompt.yaml",
    "training_set.yaml",
    "keras.weights.h5",
    "keras_best.weights.h5",
    "keras_last.weights.h5",
    "history.csv",
    "training_summary.yaml",
)
TINY = {
    "backend": "tensorflow",
    "nb_filters": 4,
    "first_conv_size": 3,
    "epochs": 2,
    "batch_size": 8,
    "n_augmentations": 2,
    "n_log_images": 2,
    "mixed_precision": "off",
}


@pytest.fixture(scope="module")
def training_set(tmp_path_factory):
    """32² crops of 2 frames (a U-Net of 1 frame takes the last one)."""
    root = tmp_path_factory.mktemp("keras_learning")
    data = build_learning_set(
        root,
        n_train_acquisitions=3,
        n_held_out_acquisitions=2,
        size=128,
        crop_size=32,
        n_frames=8,
        events_per_acquisition=(2, 3),
        sigma=2.0,
        settings={"max_n_timepoints": 2},
    )
    return data.training_set.path


@pytest.fixture(scope="module")
def trained(training_set, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("keras_model") / "m"
    seen = []
    summary = train(
        training_set,
        model_dir,
        TrainingSettings.from_mapping(TINY),
        device="cpu",
        progress=seen.append,
    )
    return model_dir, summary, seen


def _weights_attrs(path):
    import h5py

    with h5py.File(path, "r") as h5:
        return dict(h5.attrs)


def test_two_epochs_write_the_model_folder(trained, training_set):
    model_dir, summary, seen = trained
    for name in MODEL_FILES:
        assert (model_dir / name).is_file(), name
    assert [r.epoch for r in seen] == [1, 2]
    assert summary.backend == "tensorflow" and summary.device == "cpu"
    assert summary.precision == "float32" and summary.samples_per_s > 0
    assert summary.best_val_loss == min(r.val_loss for r in seen)
    written = yaml.safe_load((model_dir / "training_summary.yaml").read_text())
    assert written["backend"] == "tensorflow" and written["best_epoch"] == summary.best_epoch
    assert yaml.safe_load((model_dir / "settings.yaml").read_text())["backend"] == "tensorflow"
    with (model_dir / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == HISTORY_FIELDS  # the torch trainer's columns
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(r["val_event_f1"] != "" and int(r["val_event_tn"]) >= 0 for r in rows)
    assert _weights_attrs(model_dir / "keras.weights.h5")["epoch"] == summary.best_epoch
    assert _weights_attrs(model_dir / "keras_last.weights.h5")["epoch"] == 2

    images = np.load(training_set / "eval_images.npy", mmap_mode="r")
    for name in ("keras.weights.h5", "keras_best.weights.h5", "keras_last.weights.h5"):
        model = load_keras_model(model_dir / name)
        assert model.input_shape[-1] == 1
    predictor = backends.load_predictor(model_dir)  # dispatched by settings.yaml's backend
    assert predictor.in_channels == 1
    probabilities = predictor.predict(images[:5], batch_size=3)  # 2 frames: the last is used
    assert probabilities.shape == (5, 32, 32) and probabilities.dtype == np.float32
    assert 0.0 <= probabilities.min() <= probabilities.max() <= 1.0
    # sides that are not multiples of 4 are padded and cropped back
    odd = load_predictor(model_dir).predict(np.ascontiguousarray(images[:2, :, :30, :29]))
    assert odd.shape == (2, 30, 29)


def test_tensorboard_has_the_torch_tags(trained):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    model_dir, _, _ = trained
    events = accumulator.EventAccumulator(str(model_dir / "logs"), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])  # tf.summary writes tensors, not legacy scalars
    assert {"loss/train", "loss/val", "event_f1_at_0.5/val", "learning_rate"} <= tags
    assert "eval/input|ground_truth|prediction" in tags
    assert [e.step for e in events.Tensors("loss/val")] == [1, 2]


def test_early_stopping_restores_the_best_epoch(training_set, tmp_path, monkeypatch):
    scripted = iter([0.5, 0.3, 0.4, 0.45, 0.2, 0.1])
    real_validate = TrainingSession.validate

    def validate(self):
        return dataclasses.replace(real_validate(self), loss=next(scripted))

    monkeypatch.setattr(TrainingSession, "validate", validate)
    settings = TrainingSettings.from_mapping(
        {**TINY, "epochs": 6, "patience": 2, "monitor": "val_loss", "n_augmentations": 1}
    )
    summary = train(training_set, tmp_path / "m", settings, device="cpu")
    assert summary.stopped_early and summary.epochs == 4 and summary.best_epoch == 2
    assert summary.best_val_loss == pytest.approx(0.3)
    assert _weights_attrs(tmp_path / "m" / "keras.weights.h5")["epoch"] == 2
    assert _weights_attrs(tmp_path / "m" / "keras_last.weights.h5")["epoch"] == 4
    best = load_keras_model(tmp_path / "m").get_weights()
    last = load_keras_model(tmp_path / "m" / "keras_last.weights.h5").get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(best, last))


def test_bottleneck_lstm_of_two_frames_trains(training_set, tmp_path):
    settings = TrainingSettings.from_mapping(
        {**TINY, "epochs": 1, "model": "bottleneck_lstm", "n_timepoints": 2, "loss": "soft_focal"}
    )
    summary = train(training_set, tmp_path / "m", settings, device="cpu")
    assert summary.epochs == 1 and np.isfinite(summary.best_val_loss)
    predictor = load_predictor(tmp_path / "m")
    assert predictor.in_channels == 2
    images = np.load(training_set / "eval_images.npy", mmap_mode="r")[:3]
    assert predictor.predict(images).shape == (3, 32, 32)


def test_settings_must_fit_the_backend_and_the_data(training_set):
    with pytest.raises(ValueError, match="backend 'torch'"):
        prepare_training(training_set, TrainingSettings(nb_filters=4))
    with pytest.raises(ValueError, match="n_timepoints"):
        prepare_training(training_set, TrainingSettings(backend="tensorflow", n_timepoints=3))
    with pytest.raises(ValueError, match="multiples of 4"):
        prepare_training(training_set, TrainingSettings(backend="tensorflow", patch_size=30))


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "deep_events_dagster.ml.tensorflow.train", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_command_line(training_set, tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({**TINY, "epochs": 1}))
    done = _cli(
        "--training-set",
        training_set,
        "--model-dir",
        tmp_path / "m",
        "--settings",
        settings,
        "--device",
        "cpu",
        "--home",
        tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr
    assert "epoch 1/1" in done.stdout and "tensorboard --logdir" in done.stdout
    for name in MODEL_FILES:
        assert (tmp_path / "m" / name).is_file(), name

    settings.write_text("backend: tensorflow\nnb_filter: 4\n")
    done = _cli(
        "--training-set", training_set, "--model-dir", tmp_path / "n", "--settings", settings
    )
    assert done.returncode == 2
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "nb_filter" in error and "nb_filters" in error


# -- the recipe's numbers against torch ------------------------------------------------------


def test_losses_equal_torch_losses():
    torch = pytest.importorskip("torch")
    from deep_events_dagster.ml.torch import losses as torch_losses

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (2, 8, 8, 1)).astype(np.float32)
    target = rng.uniform(0, 1, (2, 8, 8, 1)).astype(np.float32) * (rng.random((2, 8, 8, 1)) > 0.5)
    for loss, weight in (
        ("binary_crossentropy", {}),
        ("soft_focal", {"weight": {"alpha": 0.4, "gamma": 2}}),
        ("soft_focal", {"weight": {"alpha": 0.25, "gamma": 0.5}}),
        ("mse", {}),
    ):
        settings = TrainingSettings.from_mapping({"loss": loss, **weight})
        ours = float(tf_losses.build_loss(settings)(tf.constant(logits), tf.constant(target)))
        theirs = float(
            torch_losses.build_loss(settings)(torch.from_numpy(logits), torch.from_numpy(target))
        )
        assert ours == pytest.approx(theirs, rel=1e-5), loss


def test_adam_with_weight_decay_equals_torch():
    torch = pytest.importorskip("torch")
    start = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    gradients = np.random.default_rng(1).normal(0, 1, (5, 3)).astype(np.float32)
    theirs = torch.nn.Parameter(torch.from_numpy(start.copy()))
    torch_adam = torch.optim.Adam([theirs], lr=0.01, weight_decay=0.1)
    ours = tf.Variable(start)
    adam = TorchAdam([ours], 0.01, weight_decay=0.1)
    for gradient in gradients:
        theirs.grad = torch.from_numpy(gradient.copy())
        torch_adam.step()
        adam.apply([tf.constant(gradient)])
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_schedules_equal_torch_schedules():
    torch = pytest.importorskip("torch")
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=1e-3)
    onecycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=20)
    ours = OneCycleSchedule(1e-3, 20)
    for step in range(20):
        lr, beta_1 = ours.at(step)
        assert lr == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
        assert beta_1 == pytest.approx(optimizer.param_groups[0]["betas"][0], rel=1e-9)
        optimizer.step()
        onecycle.step()

    optimizer = torch.optim.Adam([parameter], lr=1e-3)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    ours, lr = PlateauSchedule(), 1e-3
    for score in [1.0, 0.9, 0.95, 0.9, 0.91, 0.92, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9]:
        plateau.step(score)
        lr = ours.step(score, lr)
        assert lr == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
