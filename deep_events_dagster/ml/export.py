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

Every file written is loaded back (ONNX Runtime on the CPU; TorchScript; Keras
``load_model(compile=False)`` as the microscope does) and checked:

1. its probabilities are within :data:`OUTPUT_TOLERANCE` of the source model's (float32, CPU)
   on a few eval samples and on one input whose height and width differ from the training
   crops (multiples of 4);
2. its event decisions on **all** eval samples (an event is predicted when the maximum
   probability over its samples is ``>`` the threshold of ``evaluation.yaml``) give the
   ``tp``/``fp``/``fn``/``tn`` of ``evaluation.yaml``, allowing :data:`EVENT_TOLERANCE` event
   decided differently (a probability a rounding error away from the threshold).

The model must have been evaluated (``evaluation.yaml``), and before anything is written the
source model's own decisions are compared with it: a stale or edited ``evaluation.yaml`` stops
the export with an error naming it and both sets of counts. A format that cannot hold the model is
recorded as ``skipped`` with the reason and writes no file; a file that fails a check is
removed, recorded as ``failed``, and :class:`ExportCheckFailed` names the file and the
difference (after ``exports.yaml`` is written). ``exports.yaml`` maps each format to its
entry (:meth:`ExportResult.as_dict`).

This module imports neither torch nor TensorFlow at import time; each format imports what it
needs when it is exported or loaded.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.core.metrics import event_counts, event_groups, sample_max
from deep_events_dagster.ml.model_folder import (
    BIOIMAGEIO_DIR,
    EXPORT_FORMATS,
    EXPORTS_FILE,
    ModelFolder,
)

__all__ = [
    "DEFAULT_FORMATS",
    "EVENT_TOLERANCE",
    "OUTPUT_TOLERANCE",
    "EventCounts",
    "ExportCheckFailed",
    "ExportError",
    "ExportReport",
    "ExportResult",
    "ExportUnsupported",
    "KerasPredictor",
    "ModelNotEvaluated",
    "OnnxPredictor",
    "check_input",
    "export_model",
    "latest_frames_batches",
    "load_export",
    "load_onnx_session",
]

DEFAULT_FORMATS = ("keras", "onnx", "torchscript")
OUTPUT_TOLERANCE = 1e-4
EVENT_TOLERANCE = 1
N_CHECK_SAMPLES = 4
ONNX_INPUT = "input"
ONNX_OUTPUT = "probabilities"
ONNX_THREADS = 2
PREDICT_BATCH = 8
# What the bioimage.io package is made from (exported first when asked for the package).
BIOIMAGEIO_WEIGHTS = ("torchscript", "onnx")


class ExportError(ValueError):
    """An export cannot be made (not evaluated, ``evaluation.yaml`` does not match the model,
    unknown format…)."""


class ModelNotEvaluated(ExportError):
    """The model folder has no ``evaluation.yaml``: there is nothing to check the exports
    against."""


class ExportUnsupported(Exception):
    """A format cannot hold this model; the message says why (recorded as ``skipped``)."""


class ExportCheckFailed(ExportError):
    """An export was written but did not pass its checks; it has been removed.

    Attributes
    ----------
    report
        The whole :class:`ExportReport` (``exports.yaml`` was written).
    """

    def __init__(self, message: str, report: ExportReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class EventCounts:
    """Event-level confusion counts at one threshold."""

    tp: int
    fp: int
    fn: int
    tn: int

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}

    def differing(self, other: EventCounts) -> int:
        """Events decided differently: with the same events, one flip moves one count between
        ``tp`` and ``fn`` or between ``fp`` and ``tn``."""
        return max(abs(self.tp - other.tp), abs(self.fn - other.fn)) + max(
            abs(self.fp - other.fp), abs(self.tn - other.tn)
        )

    def describe(self) -> str:
        return f"tp {self.tp} fp {self.fp} fn {self.fn} tn {self.tn}"


@dataclass(frozen=True)
class ExportResult:
    """How one format was exported and checked.

    Attributes
    ----------
    format
        ``keras``, ``onnx``, ``torchscript`` or ``bioimageio``.
    status
        ``ok``, ``skipped`` (the format cannot hold the model: no file) or ``failed`` (a check
        failed: the file was removed).
    path
        The file (folder for ``bioimageio``); None unless ``ok``.
    bytes
        Its size (the folder's files together); 0 unless ``ok``.
    max_abs_difference
        Largest difference from the source model's probabilities on the checked inputs.
    checked_sizes
        ``(H, W)`` of the inputs compared with the source model.
    event_counts
        The export's event counts on the eval samples at the threshold.
    events_differing
        Events decided differently from ``evaluation.yaml``.
    reason
        Why it was skipped or failed; notes for ``ok`` (e.g. the bioimage.io validation).
    seconds
        Time to write and check it.
    details
        Format-specific facts (ONNX opset, TensorFlow version…).
    """

    format: str
    status: str
    path: Path | None = None
    bytes: int = 0
    max_abs_difference: float | None = None
    checked_sizes: tuple[tuple[int, int], ...] = ()
    event_counts: EventCounts | None = None
    events_differing: int | None = None
    reason: str = ""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self, model_dir: Path | None = None) -> dict[str, Any]:
        """The plain entry of ``exports.yaml`` (paths relative to ``model_dir`` when inside)."""
        path = None
        if self.path is not None:
            path = str(self.path)
            if model_dir is not None and self.path.parent == model_dir:
                path = self.path.name
        entry: dict[str, Any] = {
            "status": self.status,
            "file": path,
            "bytes": int(self.bytes),
            "max_abs_difference": None
            if self.max_abs_difference is None
            else float(f"{self.max_abs_difference:.3g}"),
            "checked_sizes": [list(size) for size in self.checked_sizes],
            "event_counts": None if self.event_counts is None else self.event_counts.as_dict(),
            "events_differing": self.events_differing,
            "seconds": round(float(self.seconds), 2),
        }
        if self.reason:
            entry["reason"] = self.reason
        entry.update(self.details)
        return entry


def _size_text(n_bytes: int) -> str:
    if n_bytes <= 0:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and how each export was checked.

    Attributes
    ----------
    model_dir
        The model folder.
    source
        ``torch`` or ``keras``: the model the exports were made from and compared with.
    threshold
        ``evaluation.yaml``'s threshold.
    expected
        ``evaluation.yaml``'s event counts.
    results
        One per format, in the order exported.
    exports_file
        ``exports.yaml``.
    """

    model_dir: Path
    source: str
    threshold: float
    expected: EventCounts
    results: tuple[ExportResult, ...]
    exports_file: Path

    def result(self, export_format: str) -> ExportResult:
        """The result of one format (KeyError when it was not exported in this call)."""
        for result in self.results:
            if result.format == export_format:
                return result
        raise KeyError(export_format)

    @property
    def failed(self) -> tuple[ExportResult, ...]:
        return tuple(r for r in self.results if r.status == "failed")

    def lines(self) -> list[str]:
        """One line per format, for the command line."""
        out = [
            f"exports of {self.model_dir} (source: {self.source} model; evaluation.yaml: "
            f"threshold {self.threshold:g}, {self.expected.describe()})"
        ]
        width = max((len(r.format) for r in self.results), default=0)
        for r in self.results:
            if r.ok:
                diff = (
                    "" if r.max_abs_difference is None else f", max |Δ| {r.max_abs_difference:.1e}"
                )
                events = (
                    ""
                    if r.event_counts is None
                    else f", events {r.event_counts.describe()} ({r.events_differing} differ)"
                )
                out.append(
                    f"  {r.format:<{width}}  ok       {r.path}  {_size_text(r.bytes)}"
                    f"{diff}{events}" + (f"  [{r.reason}]" if r.reason else "")
                )
            else:
                out.append(f"  {r.format:<{width}}  {r.status:<7}  {r.reason}")
        return out

    def markdown(self) -> str:
        """A markdown table of the exports (Dagster metadata)."""
        rows = [
            "| format | status | file | size | max abs diff | tp | fp | fn | tn | note |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            counts = r.event_counts.as_dict() if r.event_counts else {}
            diff = "" if r.max_abs_difference is None else f"{r.max_abs_difference:.1e}"
            name = "" if r.path is None else f"`{r.path.name}`"
            note = r.reason.replace("|", "/").replace("\n", " ")
            cells = [r.format, r.status, name, _size_text(r.bytes) if r.ok else "", diff]
            cells += [str(counts.get(k, "")) for k in ("tp", "fp", "fn", "tn")]
            rows.append("| " + " | ".join([*cells, note]) + " |")
        rows.append("")
        rows.append(
            f"Source: the {self.source} model. Checked: probabilities within "
            f"{OUTPUT_TOLERANCE:g} of the source's; event decisions (max probability > "
            f"{self.threshold:g}) on every eval sample vs `evaluation.yaml` "
            f"({self.expected.describe()}), {EVENT_TOLERANCE} allowed to differ."
        )
        return "\n".join(rows)

    def as_dict(self) -> dict[str, Any]:
        """This call's entries of ``exports.yaml`` (format → entry)."""
        return {r.format: r.as_dict(self.model_dir) for r in self.results}


# -- loading the exports ---------------------------------------------------------------------


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
    return _load_file(export_format, path)


def _load_file(export_format: str, path: Path) -> Any:
    if export_format == "onnx":
        return OnnxPredictor(path)
    if export_format == "torchscript":
        from deep_events_dagster.ml.torch.export import TorchScriptPredictor

        return TorchScriptPredictor(path)
    if export_format == "keras":
        return KerasPredictor.from_h5(path)
    raise ValueError(f"cannot load {export_format!r} exports as a predictor")


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


# -- checking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _EvalData:
    images: np.ndarray  # N×T×H×W (memory map)
    truth_max: np.ndarray  # per sample
    groups: np.ndarray | None
    threshold: float
    expected: EventCounts
    check_inputs: tuple[np.ndarray, ...]  # inputs compared with the source


def check_input(sample: np.ndarray) -> np.ndarray:
    """One ``T×H×W`` sample grown to another size whose sides are multiples of 4 (mirrored at
    its borders): ``1×T×H'×W'`` with ``H' ≠ H``, ``W' ≠ W``, ``H' ≠ W'``."""
    _, height, width = sample.shape
    new_height = 4 * math.ceil((height + 8) / 4)
    new_width = 4 * math.ceil((width + 20) / 4)
    pads = [(0, 0)]
    for old, new in ((height, new_height), (width, new_width)):
        extra = new - old
        pads.append((extra // 2, extra - extra // 2))
    return np.pad(np.asarray(sample, dtype=np.float32), pads, mode="symmetric")[None]


def _check_sample_indices(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(N_CHECK_SAMPLES, n)).round().astype(np.int64))


def _eval_data(folder: ModelFolder) -> _EvalData:
    from deep_events_dagster.ml.evaluate import _manifest_events

    evaluation = folder.evaluation()
    if evaluation is None:
        raise ModelNotEvaluated(
            f"{folder.path}: the model has not been evaluated (no evaluation.yaml), so its "
            "exports cannot be checked; evaluate it first (deep_events_dagster.ml.evaluate."
            "evaluate_model_folder, or the model_evaluation asset)"
        )
    try:
        threshold = float(evaluation["threshold"])
        expected = EventCounts(*(int(evaluation[key]) for key in ("tp", "fp", "fn", "tn")))
    except (KeyError, TypeError, ValueError) as error:
        raise ExportError(
            f"{folder.evaluation_path}: no usable threshold/tp/fp/fn/tn ({error!r})"
        ) from error
    training_set = folder.training_set()
    images = np.load(training_set / "eval_images.npy", mmap_mode="r")
    masks = np.load(training_set / "eval_masks.npy", mmap_mode="r")
    if len(images) == 0:
        raise ExportError(f"{training_set}: no eval samples to check the exports on")
    groups = event_groups(_manifest_events(training_set), len(images))
    n_units = len(images) if groups is None else len(np.unique(groups))
    if sum(expected.as_dict().values()) != n_units:
        raise ExportError(
            f"{folder.evaluation_path} counts {sum(expected.as_dict().values())} events but the "
            f"training set {training_set} has {n_units}: evaluate the model again"
        )
    samples = np.asarray(images[_check_sample_indices(len(images))], dtype=np.float32)
    return _EvalData(
        images=images,
        truth_max=sample_max(masks),
        groups=groups,
        threshold=threshold,
        expected=expected,
        check_inputs=(samples, check_input(samples[0])),
    )


def _counts(probabilities: np.ndarray, data: _EvalData) -> EventCounts:
    counts = event_counts(sample_max(probabilities), data.truth_max, data.groups, data.threshold)
    return EventCounts(counts.tp, counts.fp, counts.fn, counts.tn)


@dataclass(frozen=True)
class _CheckOutcome:
    max_abs_difference: float
    sizes: tuple[tuple[int, int], ...]
    counts: EventCounts
    differing: int
    problems: tuple[str, ...]


def _check(predictor: Any, reference: Sequence[np.ndarray], data: _EvalData) -> _CheckOutcome:
    difference = 0.0
    sizes = []
    for inputs, expected in zip(data.check_inputs, reference):
        got = predictor.predict(inputs)
        if got.shape != expected.shape:
            raise ExportError(f"output of shape {got.shape}, the source gives {expected.shape}")
        difference = max(difference, float(np.max(np.abs(got - expected))))
        sizes.append(tuple(int(s) for s in inputs.shape[-2:]))
    counts = _counts(predictor.predict(data.images), data)
    differing = counts.differing(data.expected)
    problems = []
    if not difference <= OUTPUT_TOLERANCE:  # also catches NaN
        problems.append(
            f"max |difference| {difference:.3g} from the source model's probabilities exceeds "
            f"{OUTPUT_TOLERANCE:g} (sizes {', '.join(f'{h}×{w}' for h, w in sizes)})"
        )
    if differing > EVENT_TOLERANCE:
        problems.append(
            f"event decisions at threshold {data.threshold:g}: {counts.describe()}, but "
            f"evaluation.yaml has {data.expected.describe()} ({differing} events differ, "
            f"{EVENT_TOLERANCE} allowed)"
        )
    return _CheckOutcome(difference, tuple(sizes), counts, differing, tuple(problems))


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
    export_format: str, source: _Source, path: Path, reference, data: _EvalData
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
        predictor = _load_file(export_format, path)
        outcome = _check(predictor, reference, data)
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
    folder: ModelFolder, source: _Source, data: _EvalData, done: dict[str, ExportResult]
) -> ExportResult:
    from deep_events_dagster.ml.bioimageio import check_bioimageio_package, write_bioimageio_package

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
    data = _eval_data(folder)
    source = _load_source(folder)
    source_predictor = source.predictor()
    reference = [source_predictor.predict(inputs) for inputs in data.check_inputs]
    source_counts = _counts(source_predictor.predict(data.images), data)
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
