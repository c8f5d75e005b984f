"""Backend parity: the same training set and settings give the same detector in Keras and torch,
measured with the same evaluation code on held-out acquisitions."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytest.importorskip("tf_keras")
pytest.importorskip("torch")

from deep_events_dagster.ml.backend import get_backend
from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.evaluate import evaluate_predictions
from deep_events_dagster.testing.learning import (
    SMALL_PROBLEM,
    SMALL_PROBLEM_SETTINGS,
    build_learning_set,
)

# tests/unit/ml/test_torch_learning.py's settings (the original README's, on 64² crops with a
# smaller U-Net) with fewer epochs: 2 CPU cores train each backend 8 epochs in about a minute.
SETTINGS = {**SMALL_PROBLEM_SETTINGS, "epochs": 8}


@pytest.mark.slow
def test_both_backends_reach_the_same_event_f1(tmp_path):
    data = build_learning_set(tmp_path, seed=3, **SMALL_PROBLEM)
    folder = data.training_set.path
    images = np.load(folder / "eval_images.npy", mmap_mode="r")
    masks = np.load(folder / "eval_masks.npy", mmap_mode="r")
    events = yaml.safe_load((folder / "manifest.yaml").read_text())["events"]
    f1, parameters = {}, {}
    for name in ("torch", "tensorflow"):
        backend = get_backend(name)
        settings = TrainingSettings.from_mapping({**SETTINGS, "backend": name})
        summary = backend.train(folder, tmp_path / name, settings, device="cpu")
        probabilities = backend.load_predictor(tmp_path / name, device="cpu").predict(images)
        values = evaluate_predictions(probabilities, masks, events).values
        assert values["grouping"] == "event" and values["n_positive_events"] >= 8
        f1[name], parameters[name] = values["f1"], summary.parameters
    assert min(f1.values()) >= 0.8, f1
    assert abs(f1["tensorflow"] - f1["torch"]) <= 0.05, f1
    assert parameters["tensorflow"] == parameters["torch"]
