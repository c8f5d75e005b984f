"""Tests for ml.evaluate: event, frame and pixel evaluation and the evaluation.yaml layout."""

from __future__ import annotations

import io

import numpy as np
import pytest
import yaml
from PIL import Image

from deep_events_dagster.core.metrics import (
    METRICS,
    best_threshold,
    event_counts,
    metrics_from_counts,
    thresholds,
)
from deep_events_dagster.ml.evaluate import evaluate_predictions, units_markdown

COUNTS = ["tp", "fp", "fn", "tn"]
TOP_KEYS = [
    "unit",
    "grouping",
    "threshold",
    "beta",
    *METRICS,
    *COUNTS,
    "n_events",
    "n_positive_events",
    "frame",
    "pixel",
]


def _stack():
    """Four events of two samples each (2×2 maps, one hot pixel per map).

    E0 positive, GT in its first sample, its highest score (0.805) in its second sample;
    E1 auto-negative scoring 0.605; E2 positive, GT in its second sample, scoring 0.905 in its
    first; E3 negative and low. At event level every threshold in (0.605, 0.805) is perfect; per
    frame the hot samples are negatives, so the frame-level best threshold is elsewhere.
    """
    prob_max = np.array([0.305, 0.805, 0.605, 0.2, 0.905, 0.405, 0.1, 0.1], dtype=np.float32)
    truth_max = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.0, 0.0], dtype=np.float32)
    probabilities = np.full((8, 2, 2), 0.01, dtype=np.float32)
    probabilities[:, 0, 1] = prob_max
    masks = np.zeros((8, 2, 2), dtype=np.float32)
    masks[:, 0, 1] = truth_max
    masks[0, 1, 1] = 0.6  # a second positive pixel, scored 0.01
    events = [
        {"_id": "e2", "split": "eval", "first_sample": 4, "n_samples": 2},
        {"_id": "t0", "split": "train", "first_sample": 0, "n_samples": 50},
        {"_id": "e0", "split": "eval", "first_sample": 0, "n_samples": 2},
        {"_id": "e1", "split": "eval", "first_sample": 2, "n_samples": 2},
        {"_id": "e3", "split": "eval", "first_sample": 6, "n_samples": 2},
    ]
    return probabilities, masks, events


def test_layout_and_values():
    probabilities, masks, events = _stack()
    evaluation = evaluate_predictions(probabilities, masks, events)
    values = evaluation.values
    assert list(values) == TOP_KEYS
    assert values["unit"] == "event" and values["grouping"] == "event"
    assert values["beta"] == 0.1
    assert list(values["frame"]) == [*METRICS, *COUNTS, "n_samples", "n_positive_samples"]
    assert list(values["pixel"]) == [*METRICS, *COUNTS, "n_pixels", "n_positive_pixels"]
    assert yaml.safe_load(yaml.safe_dump(values, sort_keys=False)) == values  # plain values
    # the event-level best: every threshold from above the false positive at 0.605 (0.61) to
    # below the lowest positive, 0.805 (0.80), is perfect; the middle of that plateau is kept
    t = values["threshold"]
    assert t == pytest.approx(0.70)
    assert (values["tp"], values["fp"], values["fn"], values["tn"]) == (2, 0, 0, 2)
    assert values["precision"] == values["recall"] == values["f1"] == values["fbeta"] == 1.0
    assert values["mcc"] == 1.0 and values["specificity"] == 1.0
    assert values["n_events"] == 4 and values["n_positive_events"] == 2
    # frame block at the same threshold: samples 1 (0.805) and 4 (0.905) are negatives → FP;
    # samples 0 and 5 (positives) are missed
    frame = values["frame"]
    assert (frame["tp"], frame["fp"], frame["fn"], frame["tn"]) == (0, 2, 2, 4)
    assert frame["f1"] == 0.0 and frame["n_samples"] == 8 and frame["n_positive_samples"] == 2
    # pixel block at the same threshold, probability ≥ t vs mask > 0.5, by brute force
    predicted = probabilities >= t
    positive = masks > 0.5
    pixel = values["pixel"]
    assert pixel["tp"] == int(np.sum(predicted & positive)) == 0
    assert pixel["fp"] == int(np.sum(predicted & ~positive)) == 2
    assert pixel["fn"] == int(np.sum(~predicted & positive)) == 3
    assert pixel["tn"] == int(np.sum(~predicted & ~positive))
    assert pixel["n_pixels"] == 32 and pixel["n_positive_pixels"] == 3
    expected = metrics_from_counts(pixel["tp"], pixel["fp"], pixel["tn"], pixel["fn"])
    for name in METRICS:
        assert pixel[name] == pytest.approx(float(expected[name]))
    # the sweeps and per-event scores (in the manifest's order of eval rows) come back
    np.testing.assert_allclose(evaluation.event_scores, [0.905, 0.805, 0.605, 0.1], rtol=1e-6)
    np.testing.assert_array_equal(evaluation.event_truth, [True, True, False, False])
    assert evaluation.event.unit == "event" and evaluation.frame.unit == "frame"


def test_the_threshold_maximises_event_level_fbeta():
    probabilities, masks, events = _stack()
    evaluation = evaluate_predictions(probabilities, masks, events)
    values = evaluation.values
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    prob_max = probabilities.reshape(8, -1).max(axis=1)
    truth_max = masks.reshape(8, -1).max(axis=1)
    fbetas = []
    for t in thresholds():
        tp, fp, fn, tn = event_counts(prob_max, truth_max, groups, threshold=t)
        fbetas.append(float(metrics_from_counts(tp, fp, tn, fn)["fbeta"]))
    perfect = np.flatnonzero(np.array(fbetas) == max(fbetas))  # one run: 0.61 … 0.80
    assert np.all(np.diff(perfect) == 1)
    assert values["threshold"] == pytest.approx(thresholds()[perfect[(len(perfect) - 1) // 2]])
    assert values["fbeta"] == pytest.approx(max(fbetas))
    # not the frame-level or pixel-level choice
    assert best_threshold(evaluation.frame) != pytest.approx(values["threshold"])
    assert best_threshold(evaluation.pixel) != pytest.approx(values["threshold"])


def test_without_event_rows_each_sample_is_a_unit():
    probabilities, masks, _ = _stack()
    for events in (None, []):
        values = evaluate_predictions(probabilities, masks, events).values
        assert values["unit"] == "event" and values["grouping"] == "sample"
        assert values["n_events"] == 8 and values["n_positive_events"] == 2
        # the top level is then the frame level
        for key in (*COUNTS, *METRICS):
            assert values[key] == values["frame"][key], key
        assert values["fp"] + values["tn"] == 6


def test_bad_input():
    probabilities, masks, events = _stack()
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_predictions(probabilities[:3], masks, events)
    with pytest.raises(ValueError, match="no eval samples"):
        evaluate_predictions(probabilities[:0], masks[:0], None)
    with pytest.raises(ValueError, match="belong to no eval event"):
        evaluate_predictions(probabilities, masks, events[:-1])


def test_units_markdown_table():
    probabilities, masks, events = _stack()
    text = units_markdown(evaluate_predictions(probabilities, masks, events).values)
    lines = text.splitlines()
    assert lines[0].startswith("| unit | precision | recall | F1 | F-beta | MCC | TP | FP |")
    assert lines[2] == "| event | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 2 | 0 | 0 | 2 |"
    assert lines[3].startswith("| frame | 0.000 |") and lines[3].endswith("| 0 | 2 | 2 | 4 |")
    assert lines[4].startswith("| pixel |")
    assert "threshold 0.70" in text


def test_evaluate_model_folder_writes_evaluation_and_plot(tmp_path):
    pytest.importorskip("torch")
    from deep_events_dagster.ml.config import TrainingSettings
    from deep_events_dagster.ml.evaluate import evaluate_model_folder
    from deep_events_dagster.ml.synthetic import write_synthetic_training_set
    from deep_events_dagster.ml.torch.checkpoints import load_model
    from deep_events_dagster.ml.torch.predictor import predict
    from deep_events_dagster.ml.torch.train import train

    folder = write_synthetic_training_set(tmp_path / "ts", n_train=8, n_eval=6, size=(32, 32))
    manifest_path = folder / "manifest.yaml"
    manifest = yaml.safe_load(manifest_path.read_text())
    manifest["events"] = [
        {"_id": "a", "split": "eval", "first_sample": 0, "n_samples": 4},
        {"_id": "b", "split": "eval", "first_sample": 4, "n_samples": 2},
        {"_id": "c", "split": "train", "first_sample": 0, "n_samples": 8},
    ]
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    settings = TrainingSettings(
        nb_filters=4, first_conv_size=3, epochs=1, batch_size=4, n_augmentations=1, n_log_images=1
    )
    model_dir = tmp_path / "model"
    train(folder, model_dir, settings, device="cpu")

    summary = evaluate_model_folder(model_dir, device="cpu", batch_size=4)
    assert summary.evaluation_path == model_dir / "evaluation.yaml"
    written = yaml.safe_load(summary.evaluation_path.read_text())
    assert written == summary.values
    assert list(written) == TOP_KEYS
    assert written["grouping"] == "event" and written["n_events"] == 2
    assert written["frame"]["n_samples"] == 6 and written["pixel"]["n_pixels"] == 6 * 32 * 32
    assert 0.05 <= written["threshold"] <= 1.0
    # the same values as evaluating the model's predictions directly
    images = np.load(folder / "eval_images.npy")
    masks = np.load(folder / "eval_masks.npy")
    probabilities = predict(load_model(model_dir / "model.pt"), images, batch_size=4)
    direct = evaluate_predictions(probabilities, masks, manifest["events"]).values
    assert direct["threshold"] == written["threshold"]
    for key in COUNTS:
        assert direct[key] == written[key], key
    # perf.png on disk and in memory
    assert summary.plot_path == model_dir / "perf.png"
    assert summary.plot_path.read_bytes() == summary.plot_png
    assert Image.open(io.BytesIO(summary.plot_png)).size == (1200, 500)
