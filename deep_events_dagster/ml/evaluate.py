"""Evaluate a trained model folder on its training set's held-out events."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.core.metrics import best_threshold, evaluation_summary, sweep

EVALUATION_FILE = "evaluation.yaml"
PLOT_FILE = "perf.png"


@dataclass(frozen=True)
class EvaluationSummary:
    """Where the evaluation went and the metrics at the chosen threshold."""

    evaluation_path: Path
    plot_path: Path
    values: dict[str, Any]


def _training_set_dir(model_dir: Path) -> Path:
    reference = yaml.safe_load((model_dir / "training_set.yaml").read_text(encoding="utf-8"))
    return Path(reference["path"])


def evaluate_model_folder(
    model_dir: str | Path, *, device: str = "auto", batch_size: int = 8
) -> EvaluationSummary:
    """Predict the eval stack, sweep thresholds, write ``evaluation.yaml`` and ``perf.png``.

    Parameters
    ----------
    model_dir
        A folder written by the trainer (``model.pt``, ``training_set.yaml``…).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda:N"``.
    batch_size
        Prediction batch size.
    """
    from deep_events_dagster.ml.plots import performance_plot
    from deep_events_dagster.ml.torch.train import load_model, predict, resolve_device

    model_dir = Path(model_dir)
    training_set = _training_set_dir(model_dir)
    images = np.load(training_set / "eval_images.npy", mmap_mode="r")
    masks = np.load(training_set / "eval_masks.npy", mmap_mode="r")
    if len(images) == 0:
        raise ValueError(f"{training_set}: the training set has no eval samples to evaluate on")
    torch_device = resolve_device(device)
    model = load_model(model_dir / "model.pt", device=torch_device)
    probabilities = predict(model, np.asarray(images), batch_size=batch_size, device=torch_device)
    result = sweep(probabilities, np.asarray(masks) > 0.5)
    values = evaluation_summary(result)
    values["threshold"] = float(best_threshold(result, metric="fbeta"))
    evaluation_path = atomic_write_text(
        model_dir / EVALUATION_FILE, yaml.safe_dump(values, sort_keys=False)
    )
    plot_path = performance_plot(result, values["threshold"], model_dir / PLOT_FILE)
    return EvaluationSummary(evaluation_path, Path(plot_path), values)
