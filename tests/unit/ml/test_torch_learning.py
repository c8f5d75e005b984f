"""Learning test: a model trained on synthetic acquisitions finds events in acquisitions it never
saw, measured per event (the microscope's rule), never on its training data."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

from deep_events_dagster.core.metric_units import event_groups, sample_max
from deep_events_dagster.core.metrics import event_counts, f1_from_counts
from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.evaluate import evaluate_model_folder
from deep_events_dagster.ml.torch.checkpoints import load_model
from deep_events_dagster.ml.torch.predictor import predict
from deep_events_dagster.ml.torch.train import train
from deep_events_dagster.testing.learning import (
    SMALL_PROBLEM,
    SMALL_PROBLEM_SETTINGS,
    build_learning_set,
)

# The original README's settings, on 64² crops with a smaller U-Net so that CI trains in ~1 min.
SETTINGS = {**SMALL_PROBLEM_SETTINGS, "epochs": 12}


@pytest.fixture(scope="module")
def learning(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    data = build_learning_set(root, seed=3, **SMALL_PROBLEM)
    settings = TrainingSettings.from_mapping(SETTINGS)
    summary = train(data.training_set.path, root / "model", settings, device="cpu")
    evaluation = evaluate_model_folder(root / "model", device="cpu")
    return data, summary, evaluation


@pytest.mark.slow
def test_held_out_acquisitions_never_reach_training(learning):
    data, _, _ = learning
    manifest = yaml.safe_load((data.training_set.path / "manifest.yaml").read_text())
    sides = {}
    for event in manifest["events"]:
        sides.setdefault(event["acquisition_key"], set()).add(event["split"])
    assert {k for k, s in sides.items() if s == {"train"}} == set(data.train_acquisitions)
    assert {k for k, s in sides.items() if s == {"eval"}} == set(data.held_out_acquisitions)
    assert not set(data.test_acquisitions) & set(sides)
    counts = manifest["counts"]
    assert counts["eval_positives"] > 10 and counts["eval_samples"] > counts["eval_positives"]


@pytest.mark.slow
def test_the_model_finds_events_in_held_out_acquisitions(learning):
    data, summary, evaluation = learning
    values = evaluation.values
    assert values["unit"] == "event" and values["grouping"] == "event"
    assert values["n_positive_events"] >= 8
    assert values["n_events"] > values["n_positive_events"]  # auto-negatives are scored too
    assert values["f1"] >= 0.8, values
    assert values["precision"] >= 0.8 and values["recall"] >= 0.7

    # the threshold chosen on the held-out events carries over to acquisitions never used
    manifest = yaml.safe_load((data.test_set.path / "manifest.yaml").read_text())
    images = np.load(data.test_set.path / "eval_images.npy")
    masks = np.load(data.test_set.path / "eval_masks.npy")
    probabilities = predict(load_model(summary.model_dir / "model.pt"), images)
    counts = event_counts(
        sample_max(probabilities),
        sample_max(masks),
        event_groups(manifest["events"], len(images)),
        values["threshold"],
    )
    assert counts.tp + counts.fn >= 8 and counts.tn >= 8
    assert f1_from_counts(*counts) >= 0.8, counts


@pytest.mark.slow
def test_history_carries_event_level_validation(learning):
    _, summary, _ = learning
    rows = list(csv.DictReader((summary.model_dir / "history.csv").read_text().splitlines()))
    assert len(rows) == summary.epochs
    f1 = [float(r["val_event_f1"]) for r in rows]
    assert all(0.0 <= v <= 1.0 for v in f1)
    assert max(f1) >= 0.8
    best = next(r for r in rows if int(r["epoch"]) == summary.best_epoch)
    assert float(best["val_event_f1"]) == pytest.approx(summary.best_val_event_f1, abs=1e-6)
    total = sum(int(best[f"val_event_{k}"]) for k in ("tp", "fp", "fn", "tn"))
    assert total > 16
