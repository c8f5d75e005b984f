"""Training: it learns, writes the model folder, runs from the command line and under Pipes."""

import csv
import subprocess
import sys

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from deep_events_dagster.ml.config import TrainingSettings  # noqa: E402
from deep_events_dagster.ml.synthetic import write_synthetic_training_set  # noqa: E402
from deep_events_dagster.ml.torch.checkpoints import load_model  # noqa: E402
from deep_events_dagster.ml.torch.predictor import predict  # noqa: E402
from deep_events_dagster.ml.torch.train import prepare_training, train  # noqa: E402
from deep_events_dagster.ml.training_log import EpochResult  # noqa: E402

MODEL_FILES = (
    "settings.yaml",
    "db_prompt.yaml",
    "training_set.yaml",
    "model.pt",
    "model_best.pt",
    "model_last.pt",
    "history.csv",
    "training_summary.yaml",
)
TINY = {
    "nb_filters": 4,
    "first_conv_size": 3,
    "epochs": 2,
    "batch_size": 4,
    "n_augmentations": 2,
    "n_log_images": 2,
}


def _f1(tp, fp, fn):
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def event_f1(probabilities, masks, threshold):
    """An event is detected when the highest probability inside its mask region (mask > 0)
    reaches the threshold; a negative sample is a false positive when any pixel does."""
    tp = fp = fn = 0
    for p, m in zip(probabilities, masks):
        if m.max() > 0.5:
            if p[m > 0].max() >= threshold:
                tp += 1
            else:
                fn += 1
        elif p.max() >= threshold:
            fp += 1
    return _f1(tp, fp, fn)


def pixel_f1(probabilities, masks, threshold):
    predicted, positive = probabilities >= threshold, masks > 0.5
    return _f1(
        int((predicted & positive).sum()),
        int((predicted & ~positive).sum()),
        int((~predicted & positive).sum()),
    )


def test_learns_an_easy_synthetic_task(tmp_path):
    """64×64 noise with a bright Gaussian spot where the mask is (60 % of the samples);
    80 training and 20 held-out samples; a small U-Net, 10 CPU epochs (about 8 s on 2 cores).

    Event-level F1 (see :func:`event_f1`) at the best threshold must reach 0.8; pixel F1
    (``mask > 0.5``) is checked too, more loosely (its boundary pixels converge slower).
    """
    folder = write_synthetic_training_set(tmp_path / "ts", n_train=80, n_eval=20, seed=1)
    settings = TrainingSettings(
        nb_filters=8,
        first_conv_size=5,
        epochs=10,
        n_augmentations=4,
        initial_learning_rate=3e-3,
    )
    summary = train(folder, tmp_path / "model", settings, device="cpu")
    model = load_model(tmp_path / "model" / "model.pt")
    images = np.load(folder / "eval_images.npy")
    masks = np.load(folder / "eval_masks.npy")
    probabilities = predict(model, images, batch_size=8, device="cpu")
    thresholds = np.linspace(0.05, 0.95, 19)
    best_event = max(event_f1(probabilities, masks, t) for t in thresholds)
    best_pixel = max(pixel_f1(probabilities, masks, t) for t in thresholds)
    assert best_event >= 0.8, (best_event, summary)
    assert best_pixel >= 0.7, (best_pixel, summary)
    history = list(csv.DictReader((tmp_path / "model" / "history.csv").open()))
    assert float(history[-1]["train_loss"]) < float(history[0]["train_loss"])


def test_model_folder_and_summary(tmp_path):
    folder = write_synthetic_training_set(tmp_path / "ts", n_train=12, n_eval=4, size=(32, 32))
    seen: list[EpochResult] = []
    summary = train(
        folder, tmp_path / "m", TrainingSettings(**TINY), device="cpu", progress=seen.append
    )
    for name in MODEL_FILES:
        assert (tmp_path / "m" / name).is_file(), name
    assert [r.epoch for r in seen] == [1, 2]
    assert summary.epochs == 2 and summary.device == "cpu" and summary.samples_per_s > 0
    # kept: the best eval event F1 at the evaluation's threshold (ties: margin, then loss)
    kept = seen[summary.best_epoch - 1]
    assert kept.val_event_f1_at_threshold == max(r.val_event_f1_at_threshold for r in seen)
    assert summary.best_val_loss == kept.val_loss and kept.best
    assert summary.best_val_event_f1_at_threshold == kept.val_event_f1_at_threshold
    assert summary.monitor == "event_f1" and summary.eval_samples == 4
    reference = yaml.safe_load((tmp_path / "m" / "training_set.yaml").read_text())
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    assert reference == {"path": str(folder.resolve()), "id": manifest["id"]}
    settings = yaml.safe_load((tmp_path / "m" / "settings.yaml").read_text())
    assert settings["nb_filters"] == 4 and settings["loss"] == "binary_crossentropy"
    # model.pt is the best epoch's weights
    best = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert best["epoch"] == summary.best_epoch and best["in_channels"] == 1
    model = load_model(tmp_path / "m" / "model.pt")
    p = predict(model, np.load(folder / "eval_images.npy", mmap_mode="r"), batch_size=3)
    assert p.shape == (4, 32, 32) and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1


def test_tensorboard_logs(tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    folder = write_synthetic_training_set(tmp_path / "ts", n_train=8, n_eval=4, size=(32, 32))
    train(folder, tmp_path / "m", TrainingSettings(**TINY), device="cpu")
    events = accumulator.EventAccumulator(str(tmp_path / "m" / "logs"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/train", "loss/val", "f1_at_0.5/val"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss/val")] == [1, 2]
    (panel,) = tags["images"]
    images = events.Images(panel)
    assert [i.step for i in images] == [1, 2]
    # one row per logged sample: input | ground truth | prediction, 2-pixel white gaps
    n = TINY["n_log_images"]
    assert (images[0].width, images[0].height) == (3 * 32 + 4, n * 32 + 2 * (n - 1))


def test_seeded_training_is_reproducible(tmp_path):
    folder = write_synthetic_training_set(tmp_path / "ts", n_train=8, n_eval=4, size=(32, 32))
    settings = TrainingSettings(**{**TINY, "epochs": 1, "mixed_precision": "off"})
    a = train(folder, tmp_path / "a", settings, device="cpu")
    b = train(folder, tmp_path / "b", settings, device="cpu")
    assert a.best_val_loss == pytest.approx(b.best_val_loss, rel=1e-5)
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5) for k in wa)


def test_every_batch_has_the_sample_size(tmp_path):
    folder = write_synthetic_training_set(tmp_path / "ts", n_train=10, n_eval=2, size=(24, 40))
    session = prepare_training(folder, TrainingSettings(**{**TINY, "n_augmentations": 4}))
    assert len(session.dataset) == 40
    shapes = {tuple(x.shape[1:]) for x, _ in session.loader}
    assert shapes == {(1, 24, 40)}


def test_bottleneck_lstm_trains(tmp_path):
    folder = write_synthetic_training_set(
        tmp_path / "ts", n_train=8, n_eval=4, size=(32, 32), n_timepoints=3
    )
    settings = TrainingSettings(
        **{**TINY, "epochs": 1}, model="bottleneck_lstm", n_timepoints=3, loss="soft_focal"
    )
    summary = train(folder, tmp_path / "m", settings, device="cpu")
    assert summary.epochs == 1 and np.isfinite(summary.best_val_loss)
    model = load_model(tmp_path / "m" / "model.pt")
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)


def test_settings_must_match_the_data(tmp_path):
    folder = write_synthetic_training_set(tmp_path / "ts", n_train=4, n_eval=2, size=(16, 16))
    with pytest.raises(ValueError, match="n_timepoints"):
        train(folder, tmp_path / "m", TrainingSettings(n_timepoints=3), device="cpu")


def test_no_eval_samples_picks_best_by_training_loss(tmp_path):
    folder = write_synthetic_training_set(tmp_path / "ts", n_train=8, n_eval=0, size=(16, 16))
    summary = train(folder, tmp_path / "m", TrainingSettings(**TINY), device="cpu")
    assert summary.monitor == "train_loss" and summary.eval_samples == 0
    rows = list(csv.DictReader((tmp_path / "m" / "history.csv").open()))
    assert rows[0]["val_loss"] == ""


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "deep_events_dagster.ml.torch.train", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_standalone_command_line(tmp_path):
    folder = write_synthetic_training_set(tmp_path / "ts", n_train=8, n_eval=4, size=(32, 32))
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"backend": "torch", **TINY, "epochs": 1}))
    done = _cli(
        "--training-set",
        folder,
        "--model-dir",
        tmp_path / "m",
        "--settings",
        settings,
        "--device",
        "auto",
        "--home",
        tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr
    assert "epoch 1/1" in done.stdout and "tensorboard --logdir" in done.stdout
    for name in MODEL_FILES:
        assert (tmp_path / "m" / name).is_file(), name
    rows = list(csv.DictReader((tmp_path / "m" / "history.csv").open()))
    assert [row["epoch"] for row in rows] == ["1"]
    assert set(rows[0]) >= {"train_loss", "val_loss", "val_f1", "samples_per_s"}


def test_command_line_rejects_unknown_settings(tmp_path):
    folder = write_synthetic_training_set(tmp_path / "ts", n_train=4, n_eval=2, size=(16, 16))
    settings = tmp_path / "settings.yaml"
    settings.write_text("nb_filter: 4\n")
    done = _cli("--training-set", folder, "--model-dir", tmp_path / "m", "--settings", settings)
    assert done.returncode == 2
    assert "nb_filter" in done.stderr and "nb_filters" in done.stderr


def test_reports_through_dagster_pipes(tmp_path):
    dg = pytest.importorskip("dagster")
    folder = write_synthetic_training_set(tmp_path / "ts", n_train=8, n_eval=4, size=(32, 32))
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({**TINY, "epochs": 1}))
    command = [
        sys.executable,
        "-m",
        "deep_events_dagster.ml.torch.train",
        "--training-set",
        str(folder),
        "--model-dir",
        str(tmp_path / "m"),
        "--settings",
        str(settings),
        "--device",
        "cpu",
        "--home",
        str(tmp_path / "home"),
    ]

    @dg.asset
    def trained(context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient):
        return pipes.run(command=command, context=context).get_materialize_result()

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [trained], resources={"pipes": dg.PipesSubprocessClient()}, instance=instance
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("trained")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert metadata["epochs"] == 1 and metadata["device"] == "cpu"
    assert metadata["parameters"] > 0 and metadata["samples_per_s"] > 0
    assert metadata["best_val_loss"] > 0
    assert metadata["model_dir"] == str((tmp_path / "m").resolve())
    assert metadata["tensorboard"] == f"tensorboard --logdir {(tmp_path / 'm').resolve() / 'logs'}"
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("epoch 1/1" in message for message in messages)  # progress through Pipes


def test_mask_statistics_and_oversampling_weights():
    from deep_events_dagster.ml.arrays import mask_statistics, oversampling_weights

    masks = np.zeros((10, 4, 4), dtype=np.float32)
    masks[[2, 7], 1, 1] = 1.0
    masks[7, 2, 2] = 0.5
    positive, prior = mask_statistics(masks, chunk=3)  # chunks cut through the stack
    assert positive.tolist() == [i in (2, 7) for i in range(10)]
    assert prior == pytest.approx(2.5 / masks.size)
    weights = oversampling_weights(positive, 0.5)
    drawn = weights[positive].sum() / weights.sum()
    assert drawn == pytest.approx(0.5) and (weights[~positive] == 1).all()
    assert oversampling_weights(positive, 0.2) is None  # already 20 %
    assert oversampling_weights(np.zeros(5, dtype=bool), 0.5) is None


def test_output_prior_sets_the_untrained_prediction():
    from deep_events_dagster.ml.torch.models import build_model, set_output_prior

    model = build_model(TrainingSettings.from_mapping({"nb_filters": 4, "first_conv_size": 3}), 1)
    bias = set_output_prior(model, 1e-3)
    assert bias == pytest.approx(np.log(1e-3 / (1 - 1e-3)))
    assert torch.sigmoid(model.decoder.output.bias).item() == pytest.approx(1e-3)
