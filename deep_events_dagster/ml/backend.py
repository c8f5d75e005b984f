"""The training backends behind one protocol: train, load, predict.

Evaluation, exports and predictions work on a model folder through :func:`backend_for` and a
:class:`Predictor`; only the backend modules (``ml/torch/``, ``ml/tensorflow/``) import torch or
TensorFlow, and only when a backend is used.

A backend trains a training-set folder into a model folder
(:mod:`deep_events_dagster.ml.model_folder`), runs as a module in its own process (the
``trained_model`` asset's Dagster Pipes subprocess: :attr:`Backend.train_module`), and loads a
trained model as a :class:`Predictor`: ``N×T×H×W`` float32 samples (frames oldest first,
normalised as in the training set) → ``N×H×W`` probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from deep_events_dagster.ml.model_folder import ModelFolder

__all__ = [
    "BACKENDS",
    "Backend",
    "Predictor",
    "backend_for",
    "get_backend",
    "load_predictor",
]


@runtime_checkable
class Predictor(Protocol):
    """A trained network ready to score samples."""

    in_channels: int

    def predict(self, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """``N×T×H×W`` float32 samples → ``N×H×W`` float32 probabilities in [0, 1].

        A window longer than the model's ``in_channels`` gives its latest frames.
        """
        ...


@dataclass(frozen=True)
class Backend:
    """One backend.

    Attributes
    ----------
    name
        ``torch`` or ``tensorflow`` (the settings' ``backend``).
    train_module
        The module run as ``python -m <train_module> --training-set DIR --model-dir DIR
        --settings YAML --device D --home DIR`` (also under Dagster Pipes).
    label
        What the UI shows as the asset kind.
    """

    name: str
    train_module: str
    label: str

    def train(self, training_set: str | Path, model_dir: str | Path, settings, **kwargs: Any):
        """Train in this process (see the backend's ``train``); returns its ``TrainingSummary``."""
        return self._module("train").train(training_set, model_dir, settings, **kwargs)

    def load_predictor(
        self, model_dir: str | Path, device: str = "cpu", precision: str = "float32"
    ) -> Predictor:
        """The kept weights of a model folder this backend trained, ready to predict.

        ``precision``: ``"float32"`` (exactly as evaluated) or ``"auto"`` (the backend's fast
        inference path where it has one: reduced-precision autocast on hardware made for it).
        """
        return self._module("predictor").load_predictor(
            model_dir, device=device, precision=precision
        )

    def _module(self, name: str):
        import importlib

        return importlib.import_module(f"deep_events_dagster.ml.{self.name}.{name}")


BACKENDS: dict[str, Backend] = {
    "torch": Backend("torch", "deep_events_dagster.ml.torch.train", "pytorch"),
    "tensorflow": Backend("tensorflow", "deep_events_dagster.ml.tensorflow.train", "tensorflow"),
}


def get_backend(name: str) -> Backend:
    """The backend called ``name``.

    Raises
    ------
    ValueError
        Unknown backend (the message lists the known ones).
    """
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}") from None


def backend_for(model_dir: str | Path) -> Backend:
    """The backend that trained the model in ``model_dir`` (from its ``settings.yaml``)."""
    return get_backend(ModelFolder(Path(model_dir)).backend())


def load_predictor(
    model_dir: str | Path, device: str = "cpu", precision: str = "float32"
) -> Predictor:
    """The model of a model folder, whichever backend trained it (``precision``: see
    :meth:`Backend.load_predictor`)."""
    return backend_for(model_dir).load_predictor(model_dir, device=device, precision=precision)
