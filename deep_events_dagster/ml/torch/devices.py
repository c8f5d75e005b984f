"""Torch devices and mixed precision: which device a name means, and which autocast dtype a
device gets under ``mixed_precision``.

Shared by the trainer (:mod:`.train`) and prediction (:mod:`.predictor`). Choosing and reserving
a GPU among processes is :mod:`deep_events_dagster.ml.devices`; this module only turns a name
into a ``torch.device``.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

__all__ = ["autocast_context", "autocast_dtype", "resolve_device"]


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """A torch device from ``"auto"`` (the first GPU when there is one, else the CPU),
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Reserves nothing (see
    :func:`deep_events_dagster.ml.devices.allocate_device` for that)."""
    if isinstance(spec, torch.device):
        return spec
    if str(spec).strip().lower() == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    from deep_events_dagster.ml.devices import parse_device

    kind, index = parse_device(spec)
    return torch.device("cpu") if kind == "cpu" else torch.device(f"cuda:{index}")


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


def autocast_dtype(device: torch.device, mode: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``device`` under ``mixed_precision`` ``mode`` (None: float32).

    CUDA: float16 unless ``"off"``. CPU: bfloat16 for ``"on"``, and for ``"auto"`` when the
    CPU has native bfloat16 instructions (avx512_bf16 or AMX); float32 otherwise.
    """
    if mode == "off":
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and (mode == "on" or _cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``; a no-op context for ``None`` (float32)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
