"""Device allocation: one model per GPU (simulated GPUs, no CUDA needed), CPU when none."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from deep_events_dagster.ml.devices import (
    DeviceBusyError,
    allocate_device,
    gpu_lock_name,
    parse_device,
    physical_gpu_ids,
)

NO_ENV: dict[str, str] = {}


def test_parse_device():
    assert parse_device("auto") == ("auto", None)
    assert parse_device("CPU") == ("cpu", None)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("cuda:3") == ("cuda", 3)
    assert parse_device("gpu:1") == ("cuda", 1)
    with pytest.raises(ValueError):
        parse_device("tpu")


def test_no_gpu_means_cpu(tmp_path):
    allocation = allocate_device("auto", home=tmp_path, gpu_count=0, env=NO_ENV)
    assert allocation.device == "cpu" and allocation.lock_path is None


def test_two_gpus_two_models_then_cpu_or_wait(tmp_path):
    first = allocate_device("auto", home=tmp_path, gpu_count=2, env=NO_ENV)
    second = allocate_device("auto", home=tmp_path, gpu_count=2, env=NO_ENV)
    assert {first.device, second.device} == {"cuda:0", "cuda:1"}
    assert first.lock_path == tmp_path / "gpu_locks" / gpu_lock_name("0")
    assert "pid" in first.lock_path.read_text()

    third = allocate_device("auto", home=tmp_path, gpu_count=2, when_busy="cpu", env=NO_ENV)
    assert third.device == "cpu" and "busy" in third.reason

    tick = time.monotonic()
    with pytest.raises(DeviceBusyError, match="2 GPU"):
        allocate_device("auto", home=tmp_path, gpu_count=2, timeout_s=0.3, poll_s=0.05, env=NO_ENV)
    assert time.monotonic() - tick < 5

    first.release()
    with allocate_device("auto", home=tmp_path, gpu_count=2, env=NO_ENV) as reused:
        assert reused.device == first.device
    second.release()
    second.release()  # idempotent


def test_explicit_device(tmp_path):
    with allocate_device("cuda:1", home=tmp_path, gpu_count=2, env=NO_ENV) as held:
        assert held.device == "cuda:1"
        with pytest.raises(DeviceBusyError, match="cuda:1"):
            allocate_device(
                "cuda:1", home=tmp_path, gpu_count=2, timeout_s=0.1, poll_s=0.02, env=NO_ENV
            )
        # the other GPU is still free for "auto"
        with allocate_device("auto", home=tmp_path, gpu_count=2, env=NO_ENV) as other:
            assert other.device == "cuda:0"
    assert allocate_device("cpu", home=tmp_path, gpu_count=2, env=NO_ENV).device == "cpu"
    with pytest.raises(ValueError, match="does not exist"):
        allocate_device("cuda:2", home=tmp_path, gpu_count=2, env=NO_ENV)


def test_waiting_gets_the_gpu_when_it_frees(tmp_path):
    import threading

    held = allocate_device("auto", home=tmp_path, gpu_count=1, env=NO_ENV)
    threading.Timer(0.3, held.release).start()
    lines: list[str] = []
    got = allocate_device(
        "auto", home=tmp_path, gpu_count=1, timeout_s=10, poll_s=0.05, env=NO_ENV, log=lines.append
    )
    assert got.device == "cuda:0" and got.waited_s > 0.1
    assert lines and "waiting" in lines[0]
    got.release()


def test_physical_ids_follow_cuda_visible_devices(tmp_path):
    assert physical_gpu_ids(2, {"CUDA_VISIBLE_DEVICES": "3,1"}) == ["3", "1"]
    assert physical_gpu_ids(2, {}) == ["0", "1"]
    env = {"CUDA_VISIBLE_DEVICES": "2"}
    with allocate_device("auto", home=tmp_path, gpu_count=1, env=env) as allocation:
        assert allocation.device == "cuda:0"
        assert allocation.lock_path.name == gpu_lock_name("2")


def test_lock_is_released_when_the_holder_dies(tmp_path):
    code = (
        "import sys, time\n"
        "from deep_events_dagster.ml.devices import allocate_device\n"
        f"a = allocate_device('auto', home={str(tmp_path)!r}, gpu_count=1, env={{}})\n"
        "print(a.device, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "cuda:0"
        busy = allocate_device("auto", home=tmp_path, gpu_count=1, when_busy="cpu", env=NO_ENV)
        assert busy.device == "cpu"
    finally:
        child.kill()
        child.wait()
    with allocate_device("auto", home=tmp_path, gpu_count=1, timeout_s=5, env=NO_ENV) as freed:
        assert freed.device == "cuda:0"


def test_gpu_locks_are_named_by_host(tmp_path):
    """Two hosts sharing a home never both claim "GPU 0": each host has its own lock file."""
    assert gpu_lock_name("0", host="gpu-box-1") == "gpu-box-1-gpu0.lock"
    assert gpu_lock_name("0", host="gpu-box-2") != gpu_lock_name("0", host="gpu-box-1")
    assert gpu_lock_name("1", host="lab/pc 3") == "lab_pc_3-gpu1.lock"
    import socket

    assert gpu_lock_name("0") == gpu_lock_name("0", host=socket.gethostname())
