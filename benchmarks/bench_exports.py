"""Inference speed of the exports on the CPU: one 2048×2048 frame through each, against torch.

``run(workdir, quick)`` builds ``UNet(1, 16, 12)`` (the original's settings, 155,345 parameters)
with random weights (speed does not depend on them; no training needed), writes its exports
with the project's exporters (:mod:`deep_events_dagster.ml.torch.export`,
:mod:`deep_events_dagster.ml.tensorflow.convert`) and times one ``1×1×2048×2048`` frame, all on
**2 threads**:

``torch``
    The network in float32, eager, ``torch.no_grad`` (and the sigmoid): the reference.
``torchscript``
    ``model.torchscript.pt`` loaded with ``torch.jit.load``.
``onnx``
    ``model.onnx`` in ONNX Runtime (CPU provider, 2 intra-op threads).
``keras``
    ``model.h5`` loaded as the microscope does (``load_model(compile=False)``), run with
    ``model.predict`` (TensorFlow's CPU kernels; frames last: ``1×2048×2048×1``).

Each is run once untimed (warm-up: graph building, allocator), then ``repeat`` times; the best
time counts (the least disturbed by other load). Outputs are compared with torch's (max
absolute difference) outside the timings. Goal: no export more than 2× slower than torch per
frame (the microscope reacts to events frame by frame). ``--quick``: 512×512, one timed run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["result", "run"]

SIZE = 2048
QUICK_SIZE = 512
THREADS = 2
SLOWDOWN_GOAL = 2.0
FORMATS = ("torch", "torchscript", "onnx", "keras")


def _configure_tensorflow_threads() -> str:
    """2 intra-op threads, 1 inter-op; only possible before TensorFlow's runtime starts."""
    from deep_events_dagster.ml.tensorflow.compat import tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        return "TensorFlow's runtime was already started: its thread pools could not be set"
    return ""


def _best_time(function: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
    output = function()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        output = function()
        best = min(best, time.perf_counter() - started)
    return best, output


def run(workdir: str | Path | None = None, quick: bool = False) -> dict[str, Any]:
    """Time one frame through torch and each export.

    Parameters
    ----------
    workdir
        Where the export files go (a temporary folder inside it, removed afterwards).
    quick
        A 512×512 frame and 1 timed run per format (a smoke run).

    Returns
    -------
    dict
        ``size``, ``threads``, ``parameters``, ``seconds`` (format → best seconds per frame),
        ``ratio`` (format → seconds ÷ torch's), ``max_abs_difference`` (format → vs torch),
        ``bytes`` (format → file size), ``repeat``, ``notes``.
    """
    import torch

    from deep_events_dagster.ml.export_predictors import KerasPredictor, OnnxPredictor
    from deep_events_dagster.ml.torch.export import (
        TorchScriptPredictor,
        export_onnx,
        export_torchscript,
    )
    from deep_events_dagster.ml.torch.models import UNet, count_parameters

    size = QUICK_SIZE if quick else SIZE
    repeat = 1 if quick else 2
    notes = []
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        torch.manual_seed(0)
        model = UNet(1, 16, 12).eval()
        frame = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
        seconds: dict[str, float] = {}
        outputs: dict[str, np.ndarray] = {}
        sizes: dict[str, int] = {}

        def torch_forward() -> np.ndarray:
            with torch.no_grad():
                return torch.sigmoid(model(torch.from_numpy(frame)))[:, 0].numpy()

        seconds["torch"], outputs["torch"] = _best_time(torch_forward, repeat)
        with tempfile.TemporaryDirectory(prefix="bench-exports-", dir=workdir) as tmp:
            folder = Path(tmp)
            path = export_torchscript(model, folder / "model.torchscript.pt")
            sizes["torchscript"] = path.stat().st_size
            scripted = TorchScriptPredictor(path)
            seconds["torchscript"], outputs["torchscript"] = _best_time(
                partial(scripted.predict, frame, batch_size=1), repeat
            )
            del scripted
            path = export_onnx(model, folder / "model.onnx")
            sizes["onnx"] = path.stat().st_size
            session = OnnxPredictor(path, threads=THREADS)
            seconds["onnx"], outputs["onnx"] = _best_time(
                partial(session.predict, frame, batch_size=1), repeat
            )
            del session
            try:
                note = _configure_tensorflow_threads()
                from deep_events_dagster.ml.tensorflow.convert import (
                    keras_model_from_torch,
                    load_keras_h5,
                    write_keras_h5,
                )
            except ImportError as error:
                notes.append(f"keras: not measured (TensorFlow not installed: {error})")
            else:
                if note:
                    notes.append(note)
                path = write_keras_h5(keras_model_from_torch(model), folder / "model.h5")
                sizes["keras"] = path.stat().st_size
                keras_model = KerasPredictor(load_keras_h5(path)).model
                channels_last = np.ascontiguousarray(frame.transpose(0, 2, 3, 1))
                seconds["keras"], keras_out = _best_time(
                    partial(keras_model.predict, channels_last, batch_size=1, verbose=0), repeat
                )
                outputs["keras"] = np.asarray(keras_out)[..., 0]
    finally:
        torch.set_num_threads(torch_threads)
    reference = outputs["torch"]
    return {
        "size": size,
        "threads": THREADS,
        "parameters": count_parameters(model),
        "repeat": repeat,
        "seconds": seconds,
        "ratio": {name: seconds[name] / seconds["torch"] for name in seconds},
        "max_abs_difference": {
            name: float(np.max(np.abs(out - reference))) for name, out in outputs.items()
        },
        "bytes": sizes,
        "notes": notes,
    }


def result(workdir: Path | None = None, quick: bool = False):
    """The benchmark as a report section of ``benchmarks.run`` (headline: the slowest export's
    time per frame ÷ torch's)."""
    from benchmarks.common import Line, Result

    data = run(workdir, quick=quick)
    lines = []
    for name in FORMATS:
        if name not in data["seconds"]:
            continue
        note = (
            "reference: float32 eager"
            if name == "torch"
            else (
                f"{data['ratio'][name]:.2f}× torch's time, max |Δ| "
                f"{data['max_abs_difference'][name]:.1e}, file {data['bytes'][name] / 1e6:.2f} MB"
            )
        )
        lines.append(Line(name, f"{data['seconds'][name]:.2f} s", note))
    exports = [name for name in data["seconds"] if name != "torch"]
    slowest = max(exports, key=lambda name: data["ratio"][name])
    info = [
        f"one {data['size']}×{data['size']} frame, UNet(1, 16, 12) ({data['parameters']:,} "
        f"parameters, random weights), {data['threads']} threads, best of {data['repeat']} "
        "after a warm-up; seconds per frame side by side: "
        + " | ".join(f"{name} {data['seconds'][name]:.2f} s" for name in data["seconds"]),
        f"slowest export: {slowest}",
        *data["notes"],
    ]
    return Result(
        name="exports",
        title=f"Inference of one {data['size']}×{data['size']} frame through each export, CPU, "
        f"{data['threads']} threads",
        compares="torch (float32 eager) vs TorchScript, ONNX Runtime and Keras model.h5, same "
        "weights, seconds per frame",
        lines=lines,
        ratio_label="slowest export ÷ torch",
        ratio=float(data["ratio"][slowest]),
        target=SLOWDOWN_GOAL,
        op="<=",
        unit="×",
        digits=2,
        info=info,
        data=data,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(json.dumps(run(quick=args.quick), indent=2))
