"""A bioimage.io model package of a trained model folder (model description format 0.5).

:func:`write_bioimageio_package` writes ``<model_dir>/bioimageio/``:

=========================  ================================================================
``rdf.yaml``               the model description (bioimage.io model spec 0.5)
``model.torchscript.pt``   TorchScript weights (the checked export)
``model.onnx``             ONNX weights (the checked export; ``parent: torchscript``)
``test_input.npy``         the eval sample the model scores highest, ``1×T×H×W`` float32
``test_output.npy``        the model's probabilities for it ``1×1×H×W``
``sample_input.tif``       the same sample ``T×H×W`` and its output ``1×H×W`` as TIFF (the
``sample_output.tif``      spec's human-readable samples)
``cover.png``              the sample's latest frame | the predicted probabilities
``README.md``              documentation: input, output, pre-processing, threshold, validation
=========================  ================================================================

Tensors: input ``input`` with axes ``batch``, ``channel`` (the ``T`` frames of a window as
channels ``frame1`` … ``frameT``, oldest first), ``y``, ``x`` (any size ≥ :data:`MIN_SIZE` in
steps of 4); output ``probabilities`` with axes ``batch``, ``channel`` (one: ``probability``),
``y``, ``x`` (the input's size).

Pre-processing: the training set normalises every frame on its own (its minimum → 0, then
divided by its maximum when that is above 0.2; :func:`deep_events_dagster.core.normalisation.
normalize_image_frames`). Written as the spec's ``scale_range`` with ``axes: [y, x]`` (per
sample and per channel, i.e. per frame) and percentiles 0 and 100: ``(x − min) / (max − min +
1e-6)``. The two differ only for frames whose range is at most 0.2 (practically never for raw
uint16 movies; the training set leaves those unscaled) and by the ``1e-6`` in the divisor.
Post-processing: none (the network ends with a sigmoid).

The writer needs neither ``bioimageio.spec`` nor network access;
:func:`deep_events_dagster.ml.bioimageio_check.check_bioimageio_package` validates the package
with ``bioimageio.spec`` when it is installed (offline: local files only, no download) and checks
the test output against the ONNX weights run on the pre-processed test input.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import yaml

from deep_events_dagster.core.fsutil import atomic_directory
from deep_events_dagster.ml.model_folder import (
    BIOIMAGEIO_DIR,
    ONNX_FILE,
    TORCHSCRIPT_FILE,
    ModelFolder,
)

__all__ = [
    "CITATION_URL",
    "MIN_SIZE",
    "RDF_FILE",
    "format_version",
    "write_bioimageio_package",
]

RDF_FILE = "rdf.yaml"
TEST_INPUT_FILE = "test_input.npy"
TEST_OUTPUT_FILE = "test_output.npy"
SAMPLE_INPUT_FILE = "sample_input.tif"
SAMPLE_OUTPUT_FILE = "sample_output.tif"
COVER_FILE = "cover.png"
README_FILE = "README.md"
CITATION_URL = "https://github.com/LEB-EPFL/deep-events"
LICENSE = "MIT"
MIN_SIZE = 16
SIZE_STEP = 4
SCALE_EPS = 1e-6
# bioimage.io model description version written when bioimageio.spec is not installed: the one
# bioimageio.spec 0.5.14.x implements (the library's version is the format version + a patch).
DEFAULT_FORMAT_VERSION = "0.5.14"
TEST_TOLERANCE = 1e-4


def format_version() -> str:
    """The model description version to write: the installed ``bioimageio.spec``'s (its
    version without the last part, e.g. ``0.5.14.3`` → ``0.5.14``), else
    :data:`DEFAULT_FORMAT_VERSION`."""
    try:
        version = importlib.metadata.version("bioimageio.spec")
    except importlib.metadata.PackageNotFoundError:
        return DEFAULT_FORMAT_VERSION
    parts = version.split(".")
    return ".".join(parts[:3]) if len(parts) >= 3 else DEFAULT_FORMAT_VERSION


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _scale_range(images: np.ndarray) -> np.ndarray:
    """The package's pre-processing (``scale_range``, per sample and frame, percentiles 0/100)."""
    images = np.asarray(images, dtype=np.float32)
    low = images.min(axis=(-2, -1), keepdims=True)
    high = images.max(axis=(-2, -1), keepdims=True)
    return ((images - low) / (high - low + np.float32(SCALE_EPS))).astype(np.float32)


def _test_sample(training_set: Path, predictor: Any) -> tuple[np.ndarray, np.ndarray]:
    """The eval sample whose predicted probability peaks highest, and the prediction: a clear
    cover, and a test output far above the test tolerance."""
    images = np.load(training_set / "eval_images.npy", mmap_mode="r")
    if len(images) == 0:
        raise ValueError(f"{training_set}: no eval samples for the package's test tensors")
    peaks = predictor.predict(images).max(axis=(-2, -1))
    index = int(np.argmax(peaks))
    first = images.shape[1] - int(predictor.in_channels)
    sample = np.ascontiguousarray(images[index : index + 1, first:], dtype=np.float32)
    return sample, predictor.predict(sample)[:, None].astype(np.float32)


def _reproducibility_tolerance(test_output: np.ndarray) -> float:
    """The absolute tolerance of the test output: :data:`TEST_TOLERANCE`, at most 1 % of the
    output's maximum (the spec's rule against tolerances swamping small outputs)."""
    return float(min(TEST_TOLERANCE, 0.01 * float(np.max(test_output))))


def _cover_png(sample: np.ndarray, probabilities: np.ndarray) -> bytes:
    """``latest frame | probabilities`` side by side (2:1, grey, at least 256 px high)."""
    from PIL import Image

    frame = sample[0, -1].astype(np.float32)
    low, high = float(frame.min()), float(frame.max())
    frame = (frame - low) / (high - low) if high > low else np.zeros_like(frame)
    panel = np.concatenate([frame, np.clip(probabilities[0, 0], 0.0, 1.0)], axis=1)
    image = Image.fromarray((panel * 255).round().astype(np.uint8), mode="L")
    scale = max(1, int(np.ceil(256 / panel.shape[0])))
    image = image.resize((panel.shape[1] * scale, panel.shape[0] * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _readme(name: str, settings: dict[str, Any], in_channels: int, evaluation: dict) -> str:
    threshold = evaluation.get("threshold")
    counts = ", ".join(f"{k} {evaluation[k]}" for k in ("tp", "fp", "fn", "tn") if k in evaluation)
    metrics = ", ".join(
        f"{k} {float(evaluation[k]):.3f}"
        for k in ("precision", "recall", "f1", "fbeta")
        if isinstance(evaluation.get(k), int | float)
    )
    return textwrap.dedent(
        f"""\
        # {name}

        A U-Net ({settings.get("model", "unet")}, {settings.get("nb_filters")} filters, first
        convolution {settings.get("first_conv_size")}×{settings.get("first_conv_size")})
        trained with deep-events-dagster to detect events (e.g. mitochondrial fission) in
        live-cell microscopy movies, so that a microscope can react to them (event-driven
        acquisition). After the original deep-events: {CITATION_URL}

        ## Input

        `input`: `batch × {in_channels} × y × x` float32, the last {in_channels} frame(s) of
        the movie as channels, **oldest first**; y and x at least {MIN_SIZE} and multiples of
        {SIZE_STEP}. Pre-processing (in the description): every frame scaled to [0, 1] on its
        own (`scale_range` over y, x, percentiles 0 and 100), as the training data were.

        ## Output

        `probabilities`: `batch × 1 × y × x` float32 in [0, 1], the probability that each pixel
        belongs to an event (the network ends with a sigmoid; no post-processing).

        ## Decision rule

        An event is detected in a window when the **maximum** of its probability map is greater
        than the threshold chosen on held-out events: **{threshold}**.

        ## Validation

        Evaluated per event on held-out acquisitions (`evaluation.yaml` of the model folder):
        threshold {threshold}: {counts}{"; " + metrics if metrics else ""}. The weights in this
        package (TorchScript and ONNX) were checked to give the same probabilities as the
        trained model within 1e-4 and the same event decisions on every held-out sample.
        """
    )


def _rdf(
    name: str,
    in_channels: int,
    settings: dict[str, Any],
    evaluation: dict[str, Any],
    files: dict[str, Path],
    versions: dict[str, Any],
    source_backend: str,
    tolerance: float,
) -> dict[str, Any]:
    def file_entry(key: str) -> dict[str, str]:
        return {"source": files[key].name, "sha256": _sha256(files[key])}

    space = {"min": MIN_SIZE, "step": SIZE_STEP}
    converted = (
        "converted from the Keras model through its torch twin"
        if source_backend == "tensorflow"
        else "traced from the trained torch model"
    )
    return {
        "type": "model",
        "format_version": format_version(),
        "name": name,
        "description": (
            "Detects events (e.g. mitochondrial fission) in live-cell microscopy movies: "
            f"{in_channels} frame(s) in, a per-pixel event probability map out."
        ),
        "authors": [{"name": "deep-events-dagster"}],
        "cite": [
            {
                "text": "deep-events: event-driven microscopy with deep learning "
                "(Laboratory of Experimental Biophysics, EPFL)",
                "url": CITATION_URL,
            }
        ],
        "license": LICENSE,
        "git_repo": CITATION_URL,
        "documentation": file_entry("readme"),
        "covers": [file_entry("cover")],
        "tags": ["unet", "event-detection", "live-cell-imaging", "microscopy", "2d", "pytorch"],
        "inputs": [
            {
                "id": "input",
                "description": "frames of a time window as channels, oldest first",
                "axes": [
                    {"type": "batch"},
                    {
                        "type": "channel",
                        "channel_names": [f"frame{i + 1}" for i in range(in_channels)],
                        "description": "time: frame1 is the oldest, the last the latest",
                    },
                    {"type": "space", "id": "y", "size": dict(space)},
                    {"type": "space", "id": "x", "size": dict(space)},
                ],
                "test_tensor": file_entry("test_input"),
                "sample_tensor": file_entry("sample_input"),
                "data": {"type": "float32"},
                "preprocessing": [
                    {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                    {
                        "id": "scale_range",
                        "kwargs": {
                            "axes": ["y", "x"],
                            "min_percentile": 0.0,
                            "max_percentile": 100.0,
                            "eps": SCALE_EPS,
                        },
                    },
                ],
            }
        ],
        "outputs": [
            {
                "id": "probabilities",
                "description": "per-pixel event probability (sigmoid included)",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["probability"]},
                    {"type": "space", "id": "y", "size": {"tensor_id": "input", "axis_id": "y"}},
                    {"type": "space", "id": "x", "size": {"tensor_id": "input", "axis_id": "x"}},
                ],
                "test_tensor": file_entry("test_output"),
                "sample_tensor": file_entry("sample_output"),
                "data": {"type": "float32", "range": [0.0, 1.0]},
            }
        ],
        "weights": {
            "torchscript": {
                **file_entry("torchscript"),
                "pytorch_version": versions["pytorch_version"],
                "comment": converted,
            },
            "onnx": {
                **file_entry("onnx"),
                "opset_version": int(versions["opset"]),
                "parent": "torchscript",
                "comment": "exported from the TorchScript model's torch network",
            },
        },
        "config": {
            "bioimageio": {
                "reproducibility_tolerance": [
                    {
                        "output_ids": ["probabilities"],
                        "absolute_tolerance": tolerance,
                        "relative_tolerance": 1e-3,
                        "mismatched_elements_per_million": 100,
                    }
                ]
            },
            "deep_events": {
                "threshold": evaluation.get("threshold"),
                "decision": "an event when max(probabilities) > threshold",
                "evaluation": {
                    k: evaluation[k] for k in ("tp", "fp", "fn", "tn") if k in evaluation
                },
                "backend": source_backend,
                "model": settings.get("model"),
                "n_timepoints": in_channels,
            },
        },
    }


def _checked_weights(folder: ModelFolder) -> dict[str, Any]:
    """The TorchScript and ONNX exports' entries of ``exports.yaml``, exporting them first when
    they are missing."""
    entries = folder.exports()

    def usable(name: str) -> bool:
        entry = entries.get(name)
        return (
            isinstance(entry, dict)
            and entry.get("status") == "ok"
            and folder.export_path(name).is_file()
        )

    missing = [name for name in ("torchscript", "onnx") if not usable(name)]
    if missing:
        from deep_events_dagster.ml.export import export_model

        export_model(folder.path, missing)
        entries = folder.exports()
    return entries


def write_bioimageio_package(
    model_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    predictor: Any = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write a bioimage.io model package (see the module docstring) of a model folder.

    Parameters
    ----------
    model_dir
        A trained and evaluated model folder. Its TorchScript and ONNX exports are used (made
        and checked by :func:`deep_events_dagster.ml.export.export_model` first when missing).
    out_dir
        The package folder (default ``<model_dir>/bioimageio/``); replaced as a whole.
    predictor
        The model as a predictor for the test output (default: the trained model,
        :func:`deep_events_dagster.ml.backend.load_predictor` on the CPU).
    log
        Called with a progress line.

    Returns
    -------
    Path
        The package folder (``rdf.yaml`` inside).
    """
    say = log or (lambda message: None)
    folder = ModelFolder(Path(model_dir))
    settings = folder.settings()
    evaluation = folder.evaluation()
    if evaluation is None:
        from deep_events_dagster.ml.export_report import ModelNotEvaluated

        raise ModelNotEvaluated(
            f"{folder.path}: the model has not been evaluated (no evaluation.yaml); the "
            "package records its threshold and validation, so evaluate it first"
        )
    entries = _checked_weights(folder)
    out = Path(out_dir) if out_dir is not None else folder.file(BIOIMAGEIO_DIR)
    if predictor is None:
        from deep_events_dagster.ml.backend import load_predictor

        predictor = load_predictor(folder.path, device="cpu")
    in_channels = int(predictor.in_channels)
    sample, output = _test_sample(folder.training_set(), predictor)
    name = f"deep-events {settings.get('model', 'unet')} ({folder.path.name})"[:128]
    name = "".join(ch if ch.isalnum() or ch in " _-()" else "_" for ch in name)
    say(f"writing the bioimage.io package {out} …")
    with atomic_directory(out) as tmp:
        tmp.chmod(0o755)  # a package to share, not a private temporary folder
        files = {
            "torchscript": tmp / TORCHSCRIPT_FILE,
            "onnx": tmp / ONNX_FILE,
            "test_input": tmp / TEST_INPUT_FILE,
            "test_output": tmp / TEST_OUTPUT_FILE,
            "sample_input": tmp / SAMPLE_INPUT_FILE,
            "sample_output": tmp / SAMPLE_OUTPUT_FILE,
            "cover": tmp / COVER_FILE,
            "readme": tmp / README_FILE,
        }
        shutil.copyfile(folder.export_path("torchscript"), files["torchscript"])
        shutil.copyfile(folder.export_path("onnx"), files["onnx"])
        np.save(files["test_input"], sample)
        np.save(files["test_output"], output)
        tifffile.imwrite(files["sample_input"], sample[0])
        tifffile.imwrite(files["sample_output"], output[0])
        files["cover"].write_bytes(_cover_png(sample, output))
        files["readme"].write_text(
            _readme(name, settings, in_channels, evaluation), encoding="utf-8"
        )
        versions = {
            "pytorch_version": str(entries["torchscript"].get("pytorch_version") or "2.0"),
            "opset": int(entries["onnx"].get("opset") or 17),
        }
        rdf = _rdf(
            name,
            in_channels,
            settings,
            evaluation,
            files,
            versions,
            folder.backend(),
            _reproducibility_tolerance(output),
        )
        (tmp / RDF_FILE).write_text(
            yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
    return out
