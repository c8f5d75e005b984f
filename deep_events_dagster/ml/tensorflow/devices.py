"""TensorFlow devices, threads and mixed precision: which logical device a name means, how
TensorFlow's thread pools are sized, and which Keras dtype policy a device gets under
``mixed_precision``.

Shared by the trainer (:mod:`.train`), the weight files (:mod:`.checkpoints`) and prediction
(:mod:`.predictor`). Choosing and reserving a GPU among processes is
:mod:`deep_events_dagster.ml.devices`; this module only turns a name into a :class:`KerasDevice`
(claiming that GPU for this process, before TensorFlow's runtime starts).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from deep_events_dagster.ml.tensorflow.compat import keras, tf

__all__ = [
    "PRECISION_NAMES",
    "KerasDevice",
    "configure_threads",
    "global_policy",
    "gpu_count",
    "precision_policy",
    "resolve_device",
]


@dataclass(frozen=True)
class KerasDevice:
    """Where TensorFlow computes.

    Attributes
    ----------
    name
        ``"cpu"`` or ``"cuda:N"`` (the platform's names, as in the summary).
    tf_name
        TensorFlow's logical device, e.g. ``"/CPU:0"`` or ``"/GPU:0"``.
    """

    name: str
    tf_name: str

    @property
    def kind(self) -> str:
        """``"cpu"`` or ``"cuda"``."""
        return "cpu" if self.name == "cpu" else "cuda"

    def __str__(self) -> str:
        return self.name


def configure_threads() -> None:
    """Size TensorFlow's thread pools to the CPUs this process may use (intra-op) and at most
    two concurrent ops (inter-op), so that both pools together do not oversubscribe the
    machine. Only possible before TensorFlow's runtime starts; a no-op afterwards."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, cpus))
    except RuntimeError:
        pass  # the runtime is already initialised (another model in this process)


def gpu_count() -> int:
    """The number of GPUs TensorFlow sees."""
    return len(tf.config.list_physical_devices("GPU"))


def _claim_gpu(index: int) -> str:
    """Make GPU ``index`` the process's only visible GPU, growing its memory on demand (before
    the runtime starts), and return its logical name."""
    gpus = tf.config.list_physical_devices("GPU")
    try:
        tf.config.set_visible_devices([gpus[index]], "GPU")
        tf.config.experimental.set_memory_growth(gpus[index], True)
    except RuntimeError:
        pass  # the runtime is already initialised: keep what is visible
    visible = tf.config.get_visible_devices("GPU")
    if gpus[index] not in visible:
        raise ValueError(
            f"cuda:{index} is not visible to TensorFlow in this process (already restricted "
            f"to {[d.name for d in visible]})"
        )
    return f"/GPU:{visible.index(gpus[index])}"


def resolve_device(spec: str | KerasDevice = "auto") -> KerasDevice:
    """A :class:`KerasDevice` from ``"auto"`` (the first GPU TensorFlow sees, else the CPU),
    ``"cpu"``, ``"cuda"``/``"gpu"`` or ``"cuda:N"``/``"gpu:N"``. Reserves nothing (see
    :func:`deep_events_dagster.ml.devices.allocate_device`).

    Raises
    ------
    ValueError
        An unknown device name, or a GPU TensorFlow does not see.
    """
    if isinstance(spec, KerasDevice):
        return spec
    from deep_events_dagster.ml.devices import parse_device

    kind, index = parse_device(str(spec))
    configure_threads()
    if kind == "auto":
        kind, index = ("cuda", 0) if gpu_count() else ("cpu", None)
    if kind == "cpu":
        return KerasDevice("cpu", "/CPU:0")
    count = gpu_count()
    if index >= count:
        raise ValueError(
            f"device cuda:{index} asked for, but TensorFlow sees {count} GPU(s)"
            + ("" if count else " (tensorflow-cpu, or no CUDA driver)")
        )
    return KerasDevice(f"cuda:{index}", _claim_gpu(index))


def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def precision_policy(device: KerasDevice, mode: str = "auto") -> str:
    """The Keras dtype policy for ``mixed_precision`` ``mode`` on ``device``.

    The torch trainer's rule: ``"mixed_float16"`` on a GPU unless ``"off"``; on a CPU
    ``"mixed_bfloat16"`` for ``"on"``, and for ``"auto"`` when the CPU has native bfloat16
    instructions; ``"float32"`` otherwise.
    """
    if mode == "off":
        return "float32"
    if device.kind == "cuda":
        return "mixed_float16"
    if mode == "on" or _cpu_has_native_bf16():
        return "mixed_bfloat16"
    return "float32"


# The Keras dtype policy → the precision the summary reports.
PRECISION_NAMES = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


@contextmanager
def global_policy(policy: str) -> Iterator[None]:
    """Build layers under a dtype policy without leaving it set for the rest of the process."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
