"""Which device trains a model: one model per GPU, the CPU when there is none.

Backend neutral: nothing here imports torch or tensorflow (the caller passes the number of GPUs
its backend sees; :func:`visible_gpu_count` asks torch lazily when it does not).

GPUs are reserved with lock files ``<home>/gpu_locks/<host>-gpu<ID>.lock`` held with ``flock``: the
kernel releases the lock when the holding process exits, also when it crashes or is killed, so
a lock never outlives its trainer. ``ID`` is the physical GPU (``CUDA_VISIBLE_DEVICES`` maps the
process's ``cuda:N`` to it), so processes with different visible-device lists still agree on
which card is taken. ``host`` is the machine's name: hosts sharing a home (a cluster) each have
their own GPU 0. A lock file holds ``pid host time`` of its holder, for people looking.

Policy of :func:`allocate_device`:

``"cpu"``
    The CPU, no lock.
``"cuda:N"`` (or ``"cuda"`` = ``cuda:0``)
    That GPU (an error when it does not exist); when another process holds it, wait until it is
    free (``timeout_s``), then :class:`DeviceBusyError`.
``"auto"``
    The first free visible GPU; the CPU when no GPU is visible; when every GPU is taken,
    ``when_busy="wait"`` (default) polls until one frees (``timeout_s``, then
    :class:`DeviceBusyError`) and ``when_busy="cpu"`` trains on the CPU instead.

The Dagster asset also sits in the ``gpu`` pool, which bounds how many trainings run at once;
the locks are what keeps two of them (or a standalone run) off the same card.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

try:  # POSIX; elsewhere GPUs are not reserved (documented, logged once per allocation)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_DIR_NAME",
    "DeviceAllocation",
    "DeviceBusyError",
    "allocate_device",
    "gpu_lock_dir",
    "gpu_lock_name",
    "parse_device",
    "physical_gpu_ids",
    "visible_gpu_count",
]

LOCK_DIR_NAME = "gpu_locks"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class DeviceBusyError(RuntimeError):
    """No allowed device became free in time."""


def parse_device(spec: str) -> tuple[str, int | None]:
    """Split a device name into ``(kind, index)``.

    ``"auto"`` → ``("auto", None)``, ``"cpu"`` → ``("cpu", None)``, ``"cuda"``/``"gpu"`` →
    ``("cuda", 0)``, ``"cuda:1"``/``"gpu:1"`` → ``("cuda", 1)``.

    Raises
    ------
    ValueError
        Anything else.
    """
    text = str(spec).strip().lower()
    if text in ("auto", "cpu"):
        return text, None
    match = re.fullmatch(r"(cuda|gpu)(?::(\d+))?", text)
    if not match:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    return "cuda", int(match.group(2) or 0)


def physical_gpu_ids(count: int, env: Mapping[str, str] | None = None) -> list[str]:
    """Physical ids of the process's ``cuda:0 … cuda:count-1``.

    From ``CUDA_VISIBLE_DEVICES`` when it lists them (indices or UUIDs), else ``0 … count-1``.
    """
    env = os.environ if env is None else env
    listed = [p.strip() for p in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if p.strip()]
    ids = []
    for index in range(count):
        raw = listed[index] if index < len(listed) else str(index)
        ids.append(_SAFE.sub("_", raw))
    return ids


def visible_gpu_count(env: Mapping[str, str] | None = None) -> int:
    """How many GPUs torch sees (0 without torch or CUDA, or with an empty/-1 visible list)."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def gpu_lock_name(physical_id: str, host: str | None = None) -> str:
    """``<host>-gpu<ID>.lock``: the lock file of a physical GPU of this (or the named) host."""
    name = host or socket.gethostname()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "host"
    return f"{safe}-gpu{physical_id}.lock"


def gpu_lock_dir(home: str | Path | None = None) -> Path:
    """``<home>/gpu_locks``; home: the argument, else ``$DEEP_EVENTS_HOME``, else
    ``.deep_events``."""
    from deep_events_dagster.settings.platform import resolve_home

    return resolve_home(home) / LOCK_DIR_NAME


@dataclass
class DeviceAllocation:
    """A chosen device and, for a GPU, the lock that reserves it until :meth:`release`.

    Use as a context manager, or keep it alive for the process's lifetime (the lock is released
    when the process exits in any case).

    Attributes
    ----------
    device
        ``"cpu"`` or ``"cuda:N"`` (N as the process sees it).
    reason
        Why this device, in words (for logs).
    lock_path
        The held lock file, or None.
    waited_s
        Seconds spent waiting for a GPU.
    """

    device: str
    reason: str
    lock_path: Path | None = None
    waited_s: float = 0.0
    _handle: IO[str] | None = field(default=None, repr=False)

    @property
    def is_gpu(self) -> bool:
        """Whether the device is a GPU."""
        return self.device.startswith("cuda")

    def release(self) -> None:
        """Free the GPU (idempotent)."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()  # closing the descriptor drops the flock
            self._handle = None

    def __enter__(self) -> DeviceAllocation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _try_lock(path: Path) -> IO[str] | None:
    """Open and flock ``path`` without blocking; the open handle, or None when taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while the lock is held
    if fcntl is None:  # pragma: no cover - no locking on this platform
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} host {socket.gethostname()} since {time.time():.0f}\n")
    handle.flush()
    return handle


def allocate_device(
    requested: str = "auto",
    *,
    home: str | Path | None = None,
    gpu_count: int | None = None,
    when_busy: Literal["wait", "cpu"] = "wait",
    timeout_s: float | None = None,
    poll_s: float = 2.0,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> DeviceAllocation:
    """Choose the training device and reserve it (see the module docstring for the policy).

    Parameters
    ----------
    requested
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    home
        Platform home holding ``gpu_locks/`` (default: ``$DEEP_EVENTS_HOME`` or
        ``.deep_events``).
    gpu_count
        GPUs visible to the backend (default: :func:`visible_gpu_count`). Tests pass a number to
        simulate GPUs on a machine without any.
    when_busy
        For ``"auto"`` with every GPU taken: ``"wait"`` for one, or ``"cpu"``.
    timeout_s
        Longest wait for a GPU (None: no limit).
    poll_s
        Seconds between attempts while waiting.
    env
        Environment to read ``CUDA_VISIBLE_DEVICES`` from (default ``os.environ``).
    log
        Called with a line when waiting starts.

    Returns
    -------
    DeviceAllocation
        Holding the GPU's lock until released or until the process exits.

    Raises
    ------
    ValueError
        A malformed device name, or a GPU that does not exist.
    DeviceBusyError
        The GPU(s) stayed taken for ``timeout_s``.
    """
    kind, index = parse_device(requested)
    if kind == "cpu":
        return DeviceAllocation("cpu", "requested")
    count = visible_gpu_count(env) if gpu_count is None else int(gpu_count)
    if kind == "auto" and count == 0:
        return DeviceAllocation("cpu", "no GPU visible")
    if kind == "cuda" and (index is None or index >= count):
        raise ValueError(
            f"device {requested!r} does not exist: {count} GPU(s) visible"
            + (" (CUDA_VISIBLE_DEVICES may hide them)" if count == 0 else "")
        )
    ids = physical_gpu_ids(count, env)
    folder = gpu_lock_dir(home)
    candidates = [index] if kind == "cuda" else list(range(count))
    start = time.monotonic()
    announced = False
    while True:
        for candidate in candidates:
            path = folder / gpu_lock_name(ids[candidate])
            handle = _try_lock(path)
            if handle is not None:
                waited = time.monotonic() - start
                reason = "requested" if kind == "cuda" else "first free GPU"
                if fcntl is None:  # pragma: no cover
                    reason += " (no file locking on this platform: not reserved)"
                return DeviceAllocation(f"cuda:{candidate}", reason, path, waited, handle)
        if kind == "auto" and when_busy == "cpu":
            return DeviceAllocation("cpu", f"all {count} GPU(s) busy")
        waited = time.monotonic() - start
        if timeout_s is not None and waited >= timeout_s:
            which = f"GPU {requested}" if kind == "cuda" else f"all {count} GPU(s)"
            raise DeviceBusyError(
                f"{which} still in use by other trainings after {waited:.0f} s (locks in {folder})"
            )
        if not announced and log is not None:
            log(f"waiting for a free GPU (locks in {folder})")
            announced = True
        delay = poll_s if timeout_s is None else max(0.0, min(poll_s, timeout_s - waited))
        time.sleep(delay)
