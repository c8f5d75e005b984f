"""TorchScript and ONNX exports of a torch network, and their loaders.

The networks of :mod:`deep_events_dagster.ml.torch.models` return logits; every export holds
:class:`ProbabilityModel` (the network followed by a sigmoid), so that what leaves the platform
outputs probabilities, as the microscope's software expects. Input ``N×T×H×W`` float32 (frames
oldest first, normalised per frame as in the training set), output ``N×1×H×W`` probabilities.

Both exports are made by tracing the network once, on a small example on the CPU in float32:

* TorchScript: ``torch.jit.trace``. The sizes the U-Net upsamples to are read from the traced
  tensors' shapes, so the traced module takes any batch, height and width (the bottleneck
  ConvLSTM's loop over the frames is unrolled to its ``T``, which a model fixes anyway).
* ONNX: torch's TorchScript-based exporter (``dynamo=False``) at opset 17, with dynamic batch,
  height and width. In torch 2.13 it exports the bilinear resize and the unrolled ConvLSTM
  exactly (differences ~1e-7) in under a second, whereas the ``torch.export``-based exporter
  takes 10–15 s per model and its down-conversion to opset 17 writes ``Split`` nodes that
  ONNX Runtime rejects. Should the TorchScript-based exporter be gone, the ``torch.export``-based
  one is used at opset 18 instead (:func:`export_onnx`'s ``exporter``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deep_events_dagster.core.fsutil import atomic_path
from deep_events_dagster.ml.export_predictors import (
    ONNX_INPUT,
    ONNX_OUTPUT,
    latest_frames_batches,
    load_onnx_session,
)

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ProbabilityModel",
    "TorchScriptPredictor",
    "export_onnx",
    "export_torchscript",
    "load_onnx",
    "load_torchscript",
    "onnx_opset",
    "probability_model",
    "torchscript_in_channels",
]

INPUT_NAME = ONNX_INPUT
OUTPUT_NAME = ONNX_OUTPUT
DEFAULT_OPSET = 17
# torch.export-based exporter: its lowest opset without a lossy down-conversion.
DYNAMO_MIN_OPSET = 18
# Name of the JSON the TorchScript file carries beside the module (``in_channels``…).
TORCHSCRIPT_FACTS = "deep_events.json"
# Tracing example: one sample of this size (a multiple of 4, as every export input must be).
TRACE_SIZE = 32


class ProbabilityModel(nn.Module):
    """A logits network followed by a sigmoid: ``N×T×H×W`` → ``N×1×H×W`` probabilities.

    Parameters
    ----------
    logits_model
        A network of :mod:`deep_events_dagster.ml.torch.models` (returns logits).
    """

    def __init__(self, logits_model: nn.Module):
        super().__init__()
        self.logits_model = logits_model
        self.in_channels = int(getattr(logits_model, "in_channels", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits_model(x))


def probability_model(model: nn.Module) -> ProbabilityModel:
    """``model`` (logits) wrapped with a sigmoid, in eval mode, float32 on the CPU.

    A :class:`ProbabilityModel` is returned as it is (moved to the CPU, eval mode).
    """
    wrapped = model if isinstance(model, ProbabilityModel) else ProbabilityModel(model)
    return wrapped.to(device="cpu", dtype=torch.float32).eval()


def _example_input(model: ProbabilityModel) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, model.in_channels, TRACE_SIZE, TRACE_SIZE, generator=generator)


@contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the deprecation and tracer notices of torch's exporters (the exports are
    checked numerically instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        yield


def _trace(model: ProbabilityModel) -> torch.jit.ScriptModule:
    with _quiet_export(), torch.no_grad():
        return torch.jit.trace(model, _example_input(model), check_trace=False)


def export_torchscript(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` (logits) with a sigmoid as a traced TorchScript module.

    Parameters
    ----------
    model
        A torch network returning ``N×1×H×W`` logits from ``N×T×H×W``.
    path
        The file to write (atomically), e.g. ``model.torchscript.pt``.

    Returns
    -------
    Path
        ``path``. :func:`load_torchscript` loads it; any batch, height and width run.
    """
    wrapped = probability_model(model)
    traced = _trace(wrapped)
    facts = {"in_channels": wrapped.in_channels, "input": "N×T×H×W", "output": "probabilities"}
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_FACTS: json.dumps(facts)})
    return Path(path)


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """A TorchScript export, on the CPU in eval mode."""
    module = torch.jit.load(str(path), map_location="cpu")
    return module.eval()


def torchscript_in_channels(path: str | Path) -> int | None:
    """The frames per sample a TorchScript export takes (None for files not written by
    :func:`export_torchscript`)."""
    extra = {TORCHSCRIPT_FACTS: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    try:
        return int(json.loads(extra[TORCHSCRIPT_FACTS])["in_channels"])
    except (ValueError, KeyError, TypeError):
        return None


def _dynamic_axes() -> dict[str, dict[int, str]]:
    axes = {0: "batch", 2: "height", 3: "width"}
    return {INPUT_NAME: axes, OUTPUT_NAME: dict(axes)}


def _export_onnx_torchscript(model: ProbabilityModel, path: Path, opset: int) -> None:
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(
            model,
            (_example_input(model),),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes=_dynamic_axes(),
            do_constant_folding=True,
            dynamo=False,
        )


def _export_onnx_dynamo(model: ProbabilityModel, path: Path, opset: int) -> None:
    batch = torch.export.Dim("batch")
    height = torch.export.Dim("height")
    width = torch.export.Dim("width")
    with _quiet_export(), torch.no_grad():
        program = torch.onnx.export(
            model,
            (_example_input(model),),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=max(opset, DYNAMO_MIN_OPSET),
            dynamic_shapes={"x": {0: batch, 2: height, 3: width}},
            dynamo=True,
            verbose=False,
        )
        program.save(str(path))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
) -> Path:
    """Write ``model`` (logits) with a sigmoid as ONNX.

    Parameters
    ----------
    model
        A torch network returning ``N×1×H×W`` logits from ``N×T×H×W``.
    path
        The file to write (atomically), e.g. ``model.onnx``.
    opset
        ONNX opset (at least 17).
    exporter
        ``"torchscript"`` (torch's TorchScript-based exporter), ``"dynamo"`` (the
        ``torch.export``-based one, at opset ≥ 18) or ``"auto"``: the first, else the second
        when the first is unavailable (see the module docstring).

    Returns
    -------
    Path
        ``path``: input ``input`` ``N×T×H×W``, output ``probabilities`` ``N×1×H×W``, batch,
        height and width dynamic. :func:`load_onnx` loads it.
    """
    if opset < DEFAULT_OPSET:
        raise ValueError(f"ONNX opset {opset} is too old; use {DEFAULT_OPSET} or newer")
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ValueError(f"unknown ONNX exporter {exporter!r}; use auto, torchscript or dynamo")
    wrapped = probability_model(model)
    with atomic_path(path) as tmp:
        if exporter == "dynamo":
            _export_onnx_dynamo(wrapped, tmp, opset)
        elif exporter == "torchscript":
            _export_onnx_torchscript(wrapped, tmp, opset)
        else:
            try:
                _export_onnx_torchscript(wrapped, tmp, opset)
            except (ImportError, AttributeError, NotImplementedError, RuntimeError, TypeError):
                tmp.unlink(missing_ok=True)
                _export_onnx_dynamo(wrapped, tmp, opset)
    return Path(path)


def onnx_opset(path: str | Path) -> int:
    """The default-domain opset an ONNX file was written for."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    default_domain = ("", "ai.onnx")
    return next(int(e.version) for e in model.opset_import if e.domain in default_domain)


def load_onnx(path: str | Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime session on the CPU for an ONNX export.

    Parameters
    ----------
    path
        An ONNX file.
    threads
        Intra-op threads (default
        :data:`deep_events_dagster.ml.export_predictors.ONNX_THREADS`, 2: the microscope PCs
        and the platform's workers share their cores).

    Returns
    -------
    onnxruntime.InferenceSession
        Run it as ``session.run(["probabilities"], {"input": x})``; see also
        :class:`~deep_events_dagster.ml.export_predictors.OnnxPredictor`.
    """
    return load_onnx_session(path, threads=threads)


class TorchScriptPredictor:
    """A TorchScript export behind :class:`deep_events_dagster.ml.backend.Predictor`."""

    def __init__(self, path: str | Path, in_channels: int | None = None):
        self.path = Path(path)
        self.module = load_torchscript(path)
        if in_channels is None:
            in_channels = torchscript_in_channels(path)
        if in_channels is None:
            raise ValueError(f"{path}: give in_channels (the file does not record it)")
        self.in_channels = int(in_channels)

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """``N×T×H×W`` samples → ``N×H×W`` probabilities."""
        out = [
            self.module(torch.from_numpy(batch))[:, 0].numpy()
            for batch in latest_frames_batches(images, self.in_channels, batch_size)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)
