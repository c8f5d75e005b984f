"""Exports of a trained model folder, each loaded back and checked against the model.

:func:`export_model` writes the formats the microscope and other tools load (file names from
:mod:`deep_events_dagster.ml.model_folder`):

===============  ==========================  ================================================
``keras``        ``model.h5``                Keras 2 HDF5, ``N×H×W×T`` → ``N×H×W×1``
                                             probabilities
``onnx``         ``model.onnx``              opset ≥ 17, ``input`` ``N×T×H×W`` →
                                             ``probabilities`` ``N×1×H×W``; batch, height and
                                             width dynamic
``torchscript``  ``model.torchscript.pt``    traced, ``N×T×H×W`` → ``N×1×H×W`` probabilities
``bioimageio``   ``bioimageio/``             a bioimage.io model package
                                             (:mod:`deep_events_dagster.ml.bioimageio`)
===============  ==========================  ================================================

Every export holds the sigmoid: it outputs probabilities, frames oldest first, normalised per
frame as in the training set. ``H`` and ``W`` must be multiples of 4 for the Keras file (its
upsampling doubles the pooled maps); the others take any size.

The source is the model the backend trained: the torch network for ``backend: torch``; the
Keras network for ``backend: tensorflow`` (``model.h5`` directly, ONNX and TorchScript through
its torch twin, whose weights come from
:func:`deep_events_dagster.ml.tensorflow.convert.torch_state_from_keras`).

Every file written is loaded back (:mod:`deep_events_dagster.ml.export_predictors`) and checked
against the source model and ``evaluation.yaml`` (:mod:`deep_events_dagster.ml.export_checks`).
Before anything is written the source model's own decisions are compared with
``evaluation.yaml``: a stale or edited ``evaluation.yaml`` stops the export with an error naming
it and both sets of counts. A format that cannot hold the model is recorded as ``skipped`` with
the reason and writes no file; a file that fails a check is removed, recorded as ``failed``, and
:class:`~deep_events_dagster.ml.export_report.ExportCheckFailed` names the file and the
difference (after ``exports.yaml`` is written). ``exports.yaml`` maps each format to its entry
(:mod:`deep_events_dagster.ml.export_report`).

This module imports neither torch nor TensorFlow at import time; each format imports what it
needs when it is exported or loaded.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.ml.export_checks import (
    EvalData,
    check_predictor,
    decision_counts,
    eval_data,
)
from deep_events_dagster.ml.export_predictors import KerasPredictor, load_export_file
from deep_events_dagster.ml.export_report import (
    EVENT_TOLERANCE,
    OUTPUT_TOLERANCE,
    ExportCheckFailed,
    ExportError,
    ExportReport,
    ExportResult,
    ExportUnsupported,
)
from deep_events_dagster.ml.model_folder import (
    BIOIMAGEIO_DIR,
    EXPORT_FORMATS,
    EXPORTS_FILE,
    ModelFolder,
)

__all__ = [
    "DEFAULT_FORMATS",
    # re-exported: the command line imports it from here
    "ExportCheckFailed",
    "export_model",
]

DEFAULT_FORMATS = ("keras", "onnx", "torchscript")
# What the bioimage.io package is made from (exported first when asked for the package).
BIOIMAGEIO_WEIGHTS = ("torchscript", "onnx")


# -- the source model ------------------------------------------------------------------------


@dataclass
class _Source:
    """The trained model, its torch form (for ONNX/TorchScript) and its Keras form (lazily)."""

    kind: str  # "torch" or "keras"
    settings: Any
    in_channels: int
    torch_model: Any = None  # logits network
    keras_model: Any = None  # probabilities network

    def predictor(self) -> Any:
        if self.kind == "keras":
            return KerasPredictor(self.keras_model)
        from deep_events_dagster.ml.torch.train import TorchPredictor

        return TorchPredictor(self.torch_model, "cpu")

    def keras(self) -> Any:
        if self.keras_model is None:
            from deep_events_dagster.ml.tensorflow.convert import keras_model_from_torch

            self.keras_model = keras_model_from_torch(self.torch_model, probabilities=True)
        return self.keras_model


def _load_source(folder: ModelFolder) -> _Source:
    from deep_events_dagster.ml.config import TrainingSettings

    settings = TrainingSettings.from_mapping(folder.settings(), source=str(folder.settings_path))
    if folder.backend() == "tensorflow":
        from deep_events_dagster.ml.tensorflow.models import build_keras_model
        from deep_events_dagster.ml.tensorflow.train import load_keras_model

        logits = load_keras_model(folder.path)
        in_channels = int(logits.input_shape[-1])
        keras_model = build_keras_model(settings, in_channels, probabilities=True)
        keras_model.set_weights(logits.get_weights())
        return _Source("keras", settings, in_channels, keras_model=keras_model)
    from deep_events_dagster.ml.model_folder import TORCH_WEIGHTS_FILE
    from deep_events_dagster.ml.torch.train import load_model

    weights = folder.file(TORCH_WEIGHTS_FILE)
    if not weights.is_file():
        raise ExportError(f"{folder.path}: no {TORCH_WEIGHTS_FILE} (the training did not finish)")
    model = load_model(weights, device="cpu").float()
    return _Source("torch", settings, int(model.in_channels), torch_model=model)


def _torch_model(source: _Source) -> Any:
    """The torch network to trace: the trained one, or the Keras model's torch twin."""
    if source.torch_model is None:
        from deep_events_dagster.ml.tensorflow.convert import torch_state_from_keras
        from deep_events_dagster.ml.torch.models import build_model

        twin = build_model(source.settings, source.in_channels)
        twin.load_state_dict(torch_state_from_keras(source.keras_model))
        source.torch_model = twin.eval()
    return source.torch_model


# -- writing ---------------------------------------------------------------------------------


def _write(export_format: str, source: _Source, path: Path) -> dict[str, Any]:
    """Write one format; returns format-specific facts for ``exports.yaml``."""
    if export_format == "keras":
        try:
            from deep_events_dagster.ml.tensorflow.compat import keras_version, tf_version
            from deep_events_dagster.ml.tensorflow.convert import write_keras_h5
        except ImportError as error:
            raise ExportUnsupported(f"TensorFlow/Keras is not installed ({error})") from error
        try:
            keras_model = source.keras()
        except NotImplementedError as error:
            raise ExportUnsupported(f"Keras cannot hold this model: {error}") from error
        write_keras_h5(keras_model, path)
        return {"tensorflow_version": tf_version(), "keras_version": keras_version()}
    if export_format == "onnx":
        from deep_events_dagster.ml.torch.export import export_onnx, onnx_opset

        try:
            export_onnx(_torch_model(source), path)
        except NotImplementedError as error:
            raise ExportUnsupported(f"ONNX cannot hold this model: {error}") from error
        return {"opset": onnx_opset(path)}
    if export_format == "torchscript":
        import torch

        from deep_events_dagster.ml.torch.export import export_torchscript

        try:
            export_torchscript(_torch_model(source), path)
        except NotImplementedError as error:
            raise ExportUnsupported(f"TorchScript cannot hold this model: {error}") from error
        return {"pytorch_version": torch.__version__.split("+")[0]}
    raise ValueError(export_format)


def _bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _export_file(
    export_format: str, source: _Source, path: Path, reference, data: EvalData
) -> ExportResult:
    started = time.perf_counter()
    try:
        details = _write(export_format, source, path)
    except ExportUnsupported as reason:
        _remove(path)
        return ExportResult(export_format, "skipped", reason=str(reason))
    except Exception as error:  # an exporter's own error: no file, and say why
        _remove(path)
        return ExportResult(
            export_format,
            "failed",
            reason=f"{path}: cannot be written: {type(error).__name__}: "
            + " ".join(str(error).split()),
            seconds=time.perf_counter() - started,
        )
    try:
        predictor = load_export_file(export_format, path)
        outcome = check_predictor(predictor, reference, data)
    except Exception as error:
        _remove(path)
        return ExportResult(
            export_format,
            "failed",
            reason=f"{path}: cannot be loaded back and run: {' '.join(str(error).split())}",
            seconds=time.perf_counter() - started,
        )
    result = ExportResult(
        export_format,
        "ok" if not outcome.problems else "failed",
        path=path if not outcome.problems else None,
        bytes=_bytes(path) if not outcome.problems else 0,
        max_abs_difference=outcome.max_abs_difference,
        checked_sizes=outcome.sizes,
        event_counts=outcome.counts,
        events_differing=outcome.differing,
        reason="; ".join(f"{path}: {p}" for p in outcome.problems),
        seconds=time.perf_counter() - started,
        details=details,
    )
    if outcome.problems:
        _remove(path)
    return result


def _export_bioimageio(
    folder: ModelFolder, source: _Source, data: EvalData, done: dict[str, ExportResult]
) -> ExportResult:
    from deep_events_dagster.ml.bioimageio import write_bioimageio_package
    from deep_events_dagster.ml.bioimageio_check import check_bioimageio_package

    started = time.perf_counter()
    missing = [f for f in BIOIMAGEIO_WEIGHTS if not (f in done and done[f].ok)]
    if missing:
        return ExportResult(
            "bioimageio",
            "skipped",
            reason="the package needs checked "
            + " and ".join(missing)
            + " exports, which "
            + ("were" if len(missing) > 1 else "was")
            + " not written: "
            + "; ".join(done[f].reason for f in missing if f in done),
        )
    package = folder.file(BIOIMAGEIO_DIR)
    try:
        write_bioimageio_package(folder.path, package, predictor=source.predictor())
        check = check_bioimageio_package(package)
    except ExportUnsupported as reason:
        _remove(package)
        return ExportResult("bioimageio", "skipped", reason=str(reason))
    except Exception as error:
        _remove(package)
        return ExportResult(
            "bioimageio",
            "failed",
            reason=f"{package}: {' '.join(str(error).split())}",
            seconds=time.perf_counter() - started,
        )
    weights = done["onnx"]
    return ExportResult(
        "bioimageio",
        "ok" if not check.problems else "failed",
        path=package if not check.problems else None,
        bytes=_bytes(package) if not check.problems else 0,
        max_abs_difference=weights.max_abs_difference,
        checked_sizes=weights.checked_sizes,
        event_counts=weights.event_counts,
        events_differing=weights.events_differing,
        reason="; ".join([*check.notes, *(f"{package}: {p}" for p in check.problems)]),
        seconds=time.perf_counter() - started,
        details={"format_version": check.format_version},
    )


def _requested(formats: Sequence[str] | str) -> list[str]:
    if isinstance(formats, str):
        formats = [formats]
    wanted = []
    for name in formats:
        if name not in EXPORT_FORMATS:
            raise ExportError(
                f"unknown export format {name!r}; use one of {', '.join(EXPORT_FORMATS)}"
            )
        if name == "bioimageio":
            wanted += [f for f in BIOIMAGEIO_WEIGHTS if f not in wanted]
        if name not in wanted:
            wanted.append(name)
    # the package is made from the other exports: last
    return sorted(wanted, key=lambda f: f == "bioimageio")


def _previous_entries(folder: ModelFolder) -> dict[str, Any]:
    """``exports.yaml`` entries of earlier calls whose exports still exist."""
    return {
        name: entry
        for name, entry in folder.exports().items()
        if name in EXPORT_FORMATS
        and isinstance(entry, dict)
        and entry.get("status") == "ok"
        and folder.export_path(name).exists()
    }


def _write_exports_yaml(folder: ModelFolder, entries: dict[str, Any]) -> Path:
    ordered = {name: entries[name] for name in EXPORT_FORMATS if name in entries}
    return atomic_write_text(
        folder.file(EXPORTS_FILE), yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True)
    )


def export_model(
    model_dir: str | Path,
    formats: Sequence[str] | str = DEFAULT_FORMATS,
    *,
    log: Callable[[str], None] | None = None,
    raise_on_failure: bool = True,
) -> ExportReport:
    """Write the exports of a trained, evaluated model folder and check each one.

    Parameters
    ----------
    model_dir
        A model folder (``settings.yaml``, the weights, ``training_set.yaml``,
        ``evaluation.yaml``).
    formats
        Any of ``keras``, ``onnx``, ``torchscript``, ``bioimageio`` (default
        :data:`DEFAULT_FORMATS`). ``bioimageio`` also exports ``torchscript`` and ``onnx`` (its
        weights).
    log
        Called with one progress line per format.
    raise_on_failure
        Raise :class:`ExportCheckFailed` when a check failed (after writing ``exports.yaml``);
        False: only record it in the report.

    Returns
    -------
    ExportReport
        Per format: path, size, differences, event counts, status. ``exports.yaml`` keeps the
        entries of earlier calls for formats not exported now (when their files still exist).

    Raises
    ------
    FileNotFoundError
        Not a model folder (no ``settings.yaml``).
    ModelNotEvaluated
        No ``evaluation.yaml``.
    ExportError
        Unknown format, unusable ``evaluation.yaml`` or training set.
    ExportCheckFailed
        An export did not pass its checks (its file was removed); the message names the file
        and the difference.
    """
    say = log or (lambda message: None)
    folder = ModelFolder(Path(model_dir))
    folder.settings()  # FileNotFoundError with a clear message when not a model folder
    wanted = _requested(formats)
    data = eval_data(folder)
    source = _load_source(folder)
    source_predictor = source.predictor()
    reference = [source_predictor.predict(inputs) for inputs in data.check_inputs]
    source_counts = decision_counts(source_predictor.predict(data.images), data)
    if source_counts.differing(data.expected) > EVENT_TOLERANCE:
        raise ExportError(
            f"{folder.evaluation_path} does not match the model: at threshold "
            f"{data.threshold:g} the {source.kind} model gives {source_counts.describe()}, "
            f"evaluation.yaml has {data.expected.describe()}; evaluate the model again"
        )

    meta = {
        "source": source.kind,
        "threshold": data.threshold,
        "evaluation_counts": data.expected.as_dict(),
        "tolerance": OUTPUT_TOLERANCE,
    }
    entries = _previous_entries(folder)
    done: dict[str, ExportResult] = {}
    for export_format in wanted:
        say(f"exporting {export_format} …")
        if export_format == "bioimageio":
            result = _export_bioimageio(folder, source, data, done)
        else:
            result = _export_file(
                export_format, source, folder.export_path(export_format), reference, data
            )
        done[export_format] = result
        # written after every format: the bioimage.io package reads its weights' entries
        entries[export_format] = {**result.as_dict(folder.path), **copy.deepcopy(meta)}
        _write_exports_yaml(folder, entries)
        say(f"{export_format}: {result.status}" + (f" ({result.reason})" if result.reason else ""))
    report = ExportReport(
        model_dir=folder.path,
        source=source.kind,
        threshold=data.threshold,
        expected=data.expected,
        results=tuple(done.values()),
        exports_file=folder.file(EXPORTS_FILE),
    )
    if raise_on_failure and report.failed:
        raise ExportCheckFailed(
            "export check failed: " + "; ".join(r.reason for r in report.failed), report
        )
    return report
