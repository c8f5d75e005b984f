"""The model folder: every file a training writes, and every export, by name.

One module owns the names, so the trainers, the evaluation, the exports, the CLI and the assets
agree on them. A model folder holds:

=============================  ==============================================================
``settings.yaml``              the validated training settings (every key, defaults filled in)
``requested_settings.yaml``    what the settings file asked for (written by the asset)
``db_prompt.yaml``             the catalog query the training set was built from
``training_set.yaml``          ``path`` and ``id`` of the training set
``history.csv``                one row per epoch
``training_summary.yaml``      the trainer's summary (backend, epochs, best epoch…)
``<log_dir>/``                 TensorBoard logs (``logs`` by default)
``model.pt``                   torch backend: the best weights (project checkpoint)
``model_best.pt``              torch backend: written whenever the validation loss improves
``model_last.pt``              torch backend: the last epoch
``keras.weights.h5``           tensorflow backend: the best weights (logits network)
``keras_best.weights.h5``      tensorflow backend: written whenever the validation loss improves
``keras_last.weights.h5``      tensorflow backend: the last epoch
``evaluation.yaml``            event-level evaluation and the chosen threshold
``perf.png``                   evaluation curves and histogram of max scores
``model.h5``                   export: Keras HDF5, N×H×W×T in, N×H×W×1 probabilities out
``model.onnx``                 export: ONNX, N×T×H×W in, N×1×H×W probabilities out
``model.torchscript.pt``       export: TorchScript (torch models), N×T×H×W in, probabilities
``bioimageio/``                export: a bioimage.io model package (``rdf.yaml``…)
``exports.yaml``               what the exports wrote and how each was checked
=============================  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deep_events_dagster.core.training_run import DEFAULT_BACKEND

__all__ = [
    "BIOIMAGEIO_DIR",
    "DB_PROMPT_FILE",
    "EVALUATION_FILE",
    "EXPORTS_FILE",
    "EXPORT_FORMATS",
    "HISTORY_FILE",
    "KERAS_BEST_FILE",
    "KERAS_H5_FILE",
    "KERAS_LAST_FILE",
    "KERAS_WEIGHTS_FILE",
    "ONNX_FILE",
    "PLOT_FILE",
    "REQUESTED_SETTINGS_FILE",
    "SETTINGS_FILE",
    "SUMMARY_FILE",
    "TORCHSCRIPT_FILE",
    "TORCH_BEST_FILE",
    "TORCH_LAST_FILE",
    "TORCH_WEIGHTS_FILE",
    "TRAINING_SET_FILE",
    "ModelFolder",
]

SETTINGS_FILE = "settings.yaml"
REQUESTED_SETTINGS_FILE = "requested_settings.yaml"
DB_PROMPT_FILE = "db_prompt.yaml"
TRAINING_SET_FILE = "training_set.yaml"
HISTORY_FILE = "history.csv"
SUMMARY_FILE = "training_summary.yaml"
TORCH_WEIGHTS_FILE = "model.pt"
TORCH_BEST_FILE = "model_best.pt"
TORCH_LAST_FILE = "model_last.pt"
KERAS_WEIGHTS_FILE = "keras.weights.h5"
KERAS_BEST_FILE = "keras_best.weights.h5"
KERAS_LAST_FILE = "keras_last.weights.h5"
EVALUATION_FILE = "evaluation.yaml"
PLOT_FILE = "perf.png"
KERAS_H5_FILE = "model.h5"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
BIOIMAGEIO_DIR = "bioimageio"
EXPORTS_FILE = "exports.yaml"

# Export format name → file (or folder) it writes.
EXPORT_FORMATS = {
    "keras": KERAS_H5_FILE,
    "onnx": ONNX_FILE,
    "torchscript": TORCHSCRIPT_FILE,
    "bioimageio": BIOIMAGEIO_DIR,
}


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ModelFolder:
    """A model folder on disk (see the module docstring for its files).

    Attributes
    ----------
    path
        The folder.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def file(self, name: str) -> Path:
        """The path of one of the folder's files (a name of this module)."""
        return self.path / name

    @property
    def settings_path(self) -> Path:
        return self.path / SETTINGS_FILE

    @property
    def evaluation_path(self) -> Path:
        return self.path / EVALUATION_FILE

    def settings(self) -> dict[str, Any]:
        """``settings.yaml`` as a mapping.

        Raises
        ------
        FileNotFoundError
            The folder is not a model folder (no ``settings.yaml``).
        """
        if not self.settings_path.is_file():
            raise FileNotFoundError(
                f"{self.path}: not a model folder (no {SETTINGS_FILE}; train a model first)"
            )
        data = _read_yaml(self.settings_path)
        return data if isinstance(data, dict) else {}

    def backend(self) -> str:
        """``torch`` or ``tensorflow``: the backend that trained the model."""
        return str(self.settings().get("backend", DEFAULT_BACKEND))

    def weights_path(self) -> Path:
        """The best weights of the backend that trained the model."""
        name = KERAS_WEIGHTS_FILE if self.backend() == "tensorflow" else TORCH_WEIGHTS_FILE
        return self.path / name

    def training_set(self) -> Path:
        """The training-set folder the model was trained on."""
        return Path(_read_yaml(self.path / TRAINING_SET_FILE)["path"])

    def evaluation(self) -> dict[str, Any] | None:
        """``evaluation.yaml``, or None before the model was evaluated."""
        if not self.evaluation_path.is_file():
            return None
        data = _read_yaml(self.evaluation_path)
        return data if isinstance(data, dict) else None

    def threshold(self) -> float | None:
        """The threshold the evaluation chose (None before evaluation)."""
        evaluation = self.evaluation()
        return None if evaluation is None else float(evaluation["threshold"])

    def export_path(self, export_format: str) -> Path:
        """Where an export format writes (``keras``, ``onnx``, ``torchscript``, ``bioimageio``)."""
        try:
            return self.path / EXPORT_FORMATS[export_format]
        except KeyError:
            raise ValueError(
                f"unknown export format {export_format!r}; use one of " + ", ".join(EXPORT_FORMATS)
            ) from None

    def exports(self) -> dict[str, Any]:
        """``exports.yaml`` (empty before any export)."""
        path = self.path / EXPORTS_FILE
        if not path.is_file():
            return {}
        data = _read_yaml(path)
        return data if isinstance(data, dict) else {}
