"""Written exports loaded back as predictors (``.predict(N×T×H×W) → N×H×W`` probabilities).

How each format is loaded, as its users load it: ONNX Runtime on the CPU
(:class:`OnnxPredictor`, :data:`ONNX_THREADS` intra-op threads; the file's input is named
:data:`ONNX_INPUT`, its output :data:`ONNX_OUTPUT`); TorchScript
(:class:`deep_events_dagster.ml.torch.export.TorchScriptPredictor`); Keras
``load_model(compile=False)`` as the microscope does (:class:`KerasPredictor`). Samples with
more frames than the model takes keep their latest frames (:func:`latest_frames_batches`).

This module imports neither torch, TensorFlow nor ONNX Runtime at import time; each format
imports what it needs when it is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deep_events_dagster.ml.model_folder import ModelFolder

__all__ = [
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "ONNX_THREADS",
    "PREDICT_BATCH",
    "KerasPredictor",
    "OnnxPredictor",
    "latest_frames_batches",
    "load_export",
    "load_export_file",
    "load_onnx_session",
]

ONNX_INPUT = "input"
ONNX_OUTPUT = "probabilities"
ONNX_THREADS = 2
PREDICT_BATCH = 8


def latest_frames_batches(
    images: np.ndarray, in_channels: int, batch_size: int = PREDICT_BATCH
) -> Iterator[np.ndarray]:
    """Contiguous float32 batches of ``N×T×H×W`` samples, keeping the latest ``in_channels``
    frames of longer windows (as the trainer's predictor does)."""
    if images.ndim != 4:
        raise ValueError(f"expected N×T×H×W samples, got shape {images.shape}")
    if images.shape[1] < in_channels:
        raise ValueError(f"the model takes {in_channels} frames per sample, got {images.shape[1]}")
    first = images.shape[1] - in_channels
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size, first:]
        # writable: torch warns on (and must not share) a read-only memory map
        yield np.require(batch, dtype=np.float32, requirements=("C", "W"))


def load_onnx_session(path: str | Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime session on the CPU (``threads`` intra-op threads, default
    :data:`ONNX_THREADS`)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(ONNX_THREADS if threads is None else threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


class OnnxPredictor:
    """An ONNX export behind :class:`deep_events_dagster.ml.backend.Predictor` (ONNX Runtime,
    CPU)."""

    def __init__(self, path: str | Path, *, threads: int | None = None):
        self.path = Path(path)
        self.session = load_onnx_session(path, threads=threads)
        self.in_channels = int(self.session.get_inputs()[0].shape[1])

    def predict(self, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """``N×T×H×W`` samples → ``N×H×W`` probabilities."""
        out = [
            self.session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0][:, 0]
            for batch in latest_frames_batches(images, self.in_channels, batch_size)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)


class KerasPredictor:
    """A Keras probabilities model (``N×H×W×T`` → ``N×H×W×1``) behind
    :class:`~deep_events_dagster.ml.backend.Predictor` (takes ``N×T×H×W``)."""

    def __init__(self, keras_model: Any):
        self.model = keras_model
        self.in_channels = int(keras_model.input_shape[-1])

    @classmethod
    def from_h5(cls, path: str | Path) -> KerasPredictor:
        """Load ``model.h5`` as the microscope does (``load_model(compile=False)``)."""
        from deep_events_dagster.ml.tensorflow.convert import load_keras_h5

        return cls(load_keras_h5(path))

    def predict(self, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """``N×T×H×W`` samples → ``N×H×W`` probabilities."""
        out = [
            # an eager call: predict_on_batch traces a graph per new input shape
            np.asarray(self.model(batch.transpose(0, 2, 3, 1), training=False))[..., 0]
            for batch in latest_frames_batches(images, self.in_channels, batch_size)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)


def load_export(model_dir: str | Path, export_format: str) -> Any:
    """A written export of a model folder as a predictor (``.predict(N×T×H×W) → N×H×W``).

    Parameters
    ----------
    model_dir
        The model folder.
    export_format
        ``keras``, ``onnx`` or ``torchscript``.
    """
    path = ModelFolder(Path(model_dir)).export_path(export_format)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {export_format} export (run the export first)")
    return load_export_file(export_format, path)


def load_export_file(export_format: str, path: Path) -> Any:
    """The export file ``path`` of ``export_format`` as a predictor."""
    if export_format == "onnx":
        return OnnxPredictor(path)
    if export_format == "torchscript":
        from deep_events_dagster.ml.torch.export import TorchScriptPredictor

        return TorchScriptPredictor(path)
    if export_format == "keras":
        return KerasPredictor.from_h5(path)
    raise ValueError(f"cannot load {export_format!r} exports as a predictor")
