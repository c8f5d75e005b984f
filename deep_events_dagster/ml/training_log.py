"""What every backend's training writes and reports, and the command line they share.

Backend-neutral (no torch, no TensorFlow): the per-epoch record (:class:`EpochResult`, a row of
``history.csv``), the :class:`TrainingSummary`, the first files of a model folder, the
``trained_model`` asset's metadata, and :func:`run_training_command` — the
``python -m deep_events_dagster.ml.<backend>.train`` command line and Dagster Pipes process of
every backend, given its :class:`Trainer`.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deep_events_dagster.core.fsutil import atomic_path, atomic_write_text
from deep_events_dagster.ml.config import TrainingSettings, TrainingSettingsInvalid
from deep_events_dagster.ml.model_folder import (
    DB_PROMPT_FILE,
    HISTORY_FILE,
    SETTINGS_FILE,
    TRAINING_SET_FILE,
)

__all__ = [
    "HISTORY_FIELDS",
    "EpochResult",
    "Trainer",
    "TrainingSummary",
    "history_markdown",
    "pick_log_samples",
    "read_settings",
    "run_training_command",
    "summary_metadata",
    "tensorboard_command",
    "write_history",
    "write_model_files",
]

HISTORY_FIELDS = (
    "epoch",
    "train_loss",
    "train_f1",
    "val_loss",
    "val_precision",
    "val_recall",
    "val_f1",
    "val_event_f1",
    "val_event_tp",
    "val_event_fp",
    "val_event_fn",
    "val_event_tn",
    "val_event_threshold",
    "val_event_f1_at_threshold",
    "learning_rate",
    "seconds",
    "samples_per_s",
    "best",
)


@dataclass(frozen=True)
class EpochResult:
    """One epoch's numbers (a row of ``history.csv``), given to the progress callback.

    Precision, recall and F1 are pixel-wise at probability 0.5 against ``mask > 0.5``;
    ``val_event_*`` are event-level at 0.5 (an eval event is predicted when the maximum
    probability over its samples passes 0.5, positive when its ground truth does), except
    ``val_event_f1_at_threshold``: event-level F1 at ``val_event_threshold``, the threshold the
    evaluation would choose on this epoch's eval events (best F-beta, β 0.1); ``val_*``
    are NaN (counts −1) when the training set has no eval samples or the epoch was not
    validated (``val_frequency``).
    """

    epoch: int
    epochs: int
    train_loss: float
    train_f1: float
    val_loss: float
    val_precision: float
    val_recall: float
    val_f1: float
    learning_rate: float
    seconds: float
    samples_per_s: float
    best: bool
    val_event_f1: float = math.nan
    val_event_tp: int = -1
    val_event_fp: int = -1
    val_event_fn: int = -1
    val_event_tn: int = -1
    val_event_threshold: float = math.nan
    val_event_f1_at_threshold: float = math.nan

    def describe(self) -> str:
        """A one-line summary."""
        val = (
            f"val loss {self.val_loss:.4f}, event F1 {self.val_event_f1:.3f} "
            f"(tp {self.val_event_tp} fp {self.val_event_fp} fn {self.val_event_fn} "
            f"tn {self.val_event_tn}), event F1 {self.val_event_f1_at_threshold:.3f} at "
            f"{self.val_event_threshold:.2f}, pixel F1 {self.val_f1:.3f}"
            if not math.isnan(self.val_loss)
            else "not validated"
        )
        return (
            f"epoch {self.epoch}/{self.epochs}: train loss {self.train_loss:.4f} "
            f"pixel F1 {self.train_f1:.3f}, {val}, lr {self.learning_rate:.2g}, "
            f"{self.samples_per_s:.1f} samples/s" + (" (best)" if self.best else "")
        )


@dataclass(frozen=True)
class TrainingSummary:
    """What a training produced.

    Attributes
    ----------
    epochs
        Epochs run.
    best_val_loss
        Lowest validation loss (the training loss when there were no eval samples).
    best_epoch
        The epoch (1-based) ``model.pt`` comes from.
    samples_per_s
        Training samples (augmented copies included) per second of training, data path
        included.
    device
        ``"cpu"`` or ``"cuda:N"``.
    parameters
        Trainable parameters.
    model_dir
        The model folder (absolute).
    train_samples, eval_samples
        Samples in the training set's stacks (before augmentation).
    seconds
        Wall time of the whole training.
    precision
        ``"float32"``, ``"bfloat16"`` or ``"float16"`` (autocast).
    monitor
        What picked the kept epoch: ``"event_f1"``, ``"val_loss"``, or ``"train_loss"``
        without eval samples (:mod:`deep_events_dagster.ml.epochs`).
    best_val_f1
        Pixel F1 at 0.5 of the best epoch on the eval stack (NaN without eval samples).
    best_val_event_f1
        Event-level F1 at 0.5 of the best epoch (NaN without eval samples).
    stopped_early
        True when ``patience`` epochs passed without improvement before ``epochs``.
    log_dir
        The TensorBoard folder.
    backend
        ``torch`` or ``tensorflow``.
    best_val_event_f1_at_threshold, best_val_threshold
        The best epoch's event-level F1 on the eval events at the threshold the evaluation
        would choose, and that threshold (NaN without a positive eval event).
    """

    epochs: int
    best_val_loss: float
    best_epoch: int
    samples_per_s: float
    device: str
    parameters: int
    model_dir: Path
    train_samples: int
    eval_samples: int
    seconds: float
    precision: str
    monitor: str
    best_val_f1: float
    best_val_event_f1: float = math.nan
    stopped_early: bool = False
    log_dir: Path | None = None
    backend: str = "torch"
    best_val_event_f1_at_threshold: float = math.nan
    best_val_threshold: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        """Plain values for YAML."""
        data = asdict(self)
        data["model_dir"] = str(self.model_dir)
        data["log_dir"] = None if self.log_dir is None else str(self.log_dir)
        return data


@dataclass(frozen=True)
class Trainer:
    """What :func:`run_training_command` needs from a backend.

    Attributes
    ----------
    module
        The module run with ``python -m`` (its name in the help text).
    train
        ``train(training_set_dir, model_dir, settings, *, device, progress, log)`` →
        :class:`TrainingSummary`.
    gpu_count
        Number of GPUs the backend sees.
    """

    module: str
    train: Callable[..., TrainingSummary]
    gpu_count: Callable[[], int]


_COUNT_FIELDS = ("val_event_tp", "val_event_fp", "val_event_fn", "val_event_tn")


def _history_cell(key: str, value: Any) -> str | int:
    if key in ("epoch", "best"):
        return int(value)
    if key in _COUNT_FIELDS:
        return "" if value < 0 else int(value)
    return "" if math.isnan(value) else f"{value:.6g}"


def write_history(path: Path, rows: list[EpochResult]) -> None:
    """Write ``history.csv`` (one row per epoch, :data:`HISTORY_FIELDS`) atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        values = asdict(row)
        writer.writerow({key: _history_cell(key, values[key]) for key in HISTORY_FIELDS})
    atomic_write_text(path, buffer.getvalue())


def pick_log_samples(masks: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` eval indices, positives first, spread over (the first 512 of) the stack."""
    if n <= 0 or len(masks) == 0:
        return np.zeros(0, dtype=np.int64)
    peaks = np.array([float(np.max(m)) for m in masks[:512]])
    positive = np.flatnonzero(peaks > 0.5)
    pool = positive if len(positive) >= n else np.arange(len(peaks))
    chosen = pool[np.linspace(0, len(pool) - 1, num=min(n, len(pool))).round().astype(int)]
    return np.unique(chosen)


def write_model_files(
    model_dir: Path, training_set: Path, settings: TrainingSettings, manifest_id: str
) -> None:
    """``settings.yaml``, ``training_set.yaml`` and ``db_prompt.yaml`` of a new model folder."""
    atomic_write_text(
        model_dir / SETTINGS_FILE, yaml.safe_dump(settings.as_dict(), sort_keys=False)
    )
    atomic_write_text(
        model_dir / TRAINING_SET_FILE,
        yaml.safe_dump({"path": str(training_set), "id": manifest_id}, sort_keys=False),
    )
    prompt = training_set / DB_PROMPT_FILE
    if prompt.is_file():
        with atomic_path(model_dir / DB_PROMPT_FILE) as tmp:
            shutil.copyfile(prompt, tmp)


def tensorboard_command(model_dir: str | Path, log_dir: str | Path = "logs") -> str:
    """The command that shows a model folder's TensorBoard logs (``log_dir`` inside it)."""
    return f"tensorboard --logdir {Path(model_dir) / log_dir}"


def summary_metadata(summary: TrainingSummary) -> dict[str, Any]:
    """The ``trained_model`` materialization's metadata for a training's summary."""
    metadata: dict[str, Any] = {
        "backend": summary.backend,
        "epochs": summary.epochs,
        "best_epoch": summary.best_epoch,
        "best_val_loss": summary.best_val_loss,
        "samples_per_s": round(summary.samples_per_s, 2),
        "device": summary.device,
        "precision": summary.precision,
        "parameters": summary.parameters,
        "model_dir": {"raw_value": str(summary.model_dir), "type": "path"},
        "tensorboard": {
            "raw_value": tensorboard_command(summary.model_dir, summary.log_dir or "logs"),
            "type": "text",
        },
        "train_samples": summary.train_samples,
        "eval_samples": summary.eval_samples,
        "training_seconds": round(summary.seconds, 1),
        "monitor": summary.monitor,
    }
    if not math.isnan(summary.best_val_f1):
        metadata["best_val_f1_at_0.5"] = round(summary.best_val_f1, 4)
    if not math.isnan(summary.best_val_event_f1):
        metadata["best_val_event_f1_at_0.5"] = round(summary.best_val_event_f1, 4)
    if not math.isnan(summary.best_val_event_f1_at_threshold):
        metadata["best_val_event_f1"] = round(summary.best_val_event_f1_at_threshold, 4)
        metadata["best_val_threshold"] = round(summary.best_val_threshold, 4)
    metadata["stopped_early"] = summary.stopped_early
    history = summary.model_dir / HISTORY_FILE
    if history.is_file():
        metadata["history"] = {"raw_value": history_markdown(history), "type": "md"}
    return metadata


def history_markdown(path: Path, last: int = 25) -> str:
    rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))[-last:]
    columns = [
        "epoch",
        "train_loss",
        "val_loss",
        "val_event_f1_at_threshold",
        "val_event_threshold",
        "val_event_f1",
        "val_f1",
        "learning_rate",
        "best",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row.get(c, "") for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description="Train a deep-events model on a training-set folder.",
    )
    parser.add_argument("--training-set", required=True, type=Path, help="training-set folder")
    parser.add_argument("--model-dir", required=True, type=Path, help="output model folder")
    parser.add_argument("--settings", type=Path, help="YAML mapping of training settings")
    parser.add_argument(
        "--device", default="auto", help="auto (a free GPU, else the CPU), cpu, cuda or cuda:N"
    )
    parser.add_argument("--home", type=Path, help="platform home (GPU locks under gpu_locks/)")
    parser.add_argument(
        "--when-busy",
        choices=("wait", "cpu"),
        default="wait",
        help="with --device auto and every GPU taken: wait for one (default) or use the CPU",
    )
    parser.add_argument(
        "--wait-timeout", type=float, default=None, help="longest wait for a GPU, seconds"
    )
    return parser


def read_settings(path: Path | None) -> TrainingSettings:
    """The training settings in a YAML file (all defaults without one).

    Raises
    ------
    TrainingSettingsInvalid
        The file cannot be read or its settings are invalid (one line naming the file).
    """
    if path is None:
        return TrainingSettings()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrainingSettingsInvalid(f"{path}: cannot read training settings: {exc}") from exc
    return TrainingSettings.from_mapping(data, source=str(path))


def _run(args: argparse.Namespace, log: Callable[[str], None], trainer: Trainer) -> TrainingSummary:
    from deep_events_dagster.ml.devices import allocate_device

    settings = read_settings(args.settings)
    gpu_count = trainer.gpu_count()
    with allocate_device(
        args.device,
        home=args.home,
        gpu_count=gpu_count,
        when_busy=args.when_busy,
        timeout_s=args.wait_timeout,
        log=log,
    ) as allocation:
        log(
            f"device {allocation.device} ({allocation.reason}"
            + (f", lock {allocation.lock_path}" if allocation.lock_path else "")
            + (f", waited {allocation.waited_s:.0f} s" if allocation.waited_s >= 1 else "")
            + ")"
        )
        return trainer.train(
            args.training_set,
            args.model_dir,
            settings,
            device=allocation.device,
            progress=lambda result: log(result.describe()),
            log=log,
        )


def _in_pipes_process() -> bool:
    try:
        from dagster_pipes import PipesEnvVarParamsLoader
    except ImportError:
        return False
    return PipesEnvVarParamsLoader().is_dagster_pipes_process()


def run_training_command(argv: Sequence[str] | None, trainer: Trainer) -> int:
    """A backend's command line (also the ``trained_model`` asset's Pipes process).

    Standalone it prints one line per epoch and a summary; under Dagster Pipes it logs each
    epoch through Pipes and reports the materialization's metadata. Returns the exit status
    (2 with one ``error:`` line for a user error).
    """
    from deep_events_dagster.ml.devices import DeviceBusyError

    args = _parser(trainer.module).parse_args(argv)
    if _in_pipes_process():
        from dagster_pipes import open_dagster_pipes

        with open_dagster_pipes() as pipes:

            def log(message: str) -> None:
                pipes.log.info(message)
                print(message, flush=True)

            summary = _run(args, log, trainer)
            pipes.report_asset_materialization(metadata=summary_metadata(summary))
        return 0

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        summary = _run(args, say, trainer)
    except (TrainingSettingsInvalid, ValueError, FileNotFoundError, DeviceBusyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    board = tensorboard_command(summary.model_dir, summary.log_dir or "logs")
    say(
        f"done: {summary.epochs} epochs, best {summary.monitor} {summary.best_val_loss:.4f} "
        f"(epoch {summary.best_epoch}), {summary.samples_per_s:.1f} samples/s on "
        f"{summary.device}; model in {summary.model_dir}\n{board}"
    )
    return 0
