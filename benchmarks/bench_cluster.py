"""Ingestion on Celery workers: one worker against two, and Dagster's per-step overhead.

``run(workdir, quick)`` generates a synthetic tree of eight acquisitions
(:func:`deep_events_dagster.testing.trees.generate_tree`, 320×400×24 movies) and ingests a
fresh copy of it three times with ``deep-events ingest`` (a subprocess, wall clock):

``in-process``
    A home without ``cluster:``: embedded SQLite instance, every step in the run's process, one
    acquisition after another — the reference for Dagster's own cost per step.
``Celery, 1 worker`` and ``Celery, 2 workers``
    A home whose ``cluster:`` names a fresh PostgreSQL database (Dagster's storage) and
    RabbitMQ (the broker) with queue names of its own, and 1 or 2 ``deep-events worker``
    processes of concurrency 1 on the ``default`` queue (started, and ready, before the
    timing). The command submits one run per acquisition through the instance (no daemon: it
    launches them itself, ``max_concurrent_runs`` at a time); every step is a Celery task.

From each instance: the run durations (``RUN_START`` → ``RUN_SUCCESS``), the time from a run's
creation to its start (the run process's launch), and every step's compute time
(``STEP_START`` → ``STEP_SUCCESS``). The per-step overhead is (run time − the sum of its steps'
compute times) / steps, in-process and under Celery; under Celery it includes the executor's
1-second polling between steps and, with fewer workers than concurrent runs, the wait for a
free worker. The workers' own log lines (a start and an end per task) give the time a worker
spends on a task around the step's compute (loading the job, the instance, the resources).

No numeric goal is stated; on 2 cores, 2 workers should ingest faster than 1 (ratio > 1). When
PostgreSQL or RabbitMQ is unreachable the section reports SKIP, naming the service. Every
database, queue and worker made here is removed at the end. ``--quick``: 4 acquisitions of
160×200×12.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import REPO_ROOT, Line, Result, say

__all__ = ["result", "run"]

STORAGE_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
CROP_SIZE = 128
READY_TIMEOUT_S = 120.0
INGEST_TIMEOUT_S = 900.0
STOP_GRACE_S = 30.0
# "[2026-12-02 15:08:44,336: INFO/ForkPoolWorker-1] d1@host pid 7 queue q (default): start run
# dc01e8a3 step raw_movie" — and "end   run dc01e8a3 step raw_movie SUCCESS in 0.9 s"
TASK_LINE = re.compile(
    r"^\[(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}):[^\]]*\].*?: "
    r"(?P<what>start|end)\s+run (?P<run>\S+) step (?P<step>\S+)"
)


class Skipped(Exception):
    """A service the section needs is unreachable (the message names it)."""


@dataclass(frozen=True)
class Sizes:
    acquisitions: int
    height: int
    width: int
    frames: int


FULL_SIZES = Sizes(acquisitions=8, height=320, width=400, frames=24)
QUICK_SIZES = Sizes(acquisitions=4, height=160, width=200, frames=12)


# ---------------------------------------------------------------- services


def _check_services() -> None:
    from deep_events_dagster.cluster.checks import ClusterError, check_broker, check_storage

    for service, check, uri in (
        ("PostgreSQL", check_storage, STORAGE_ADMIN),
        ("RabbitMQ", check_broker, BROKER),
    ):
        try:
            check(uri, timeout_s=3.0)
        except ClusterError as exc:
            raise Skipped(f"{service} unreachable: {exc}") from None


def _admin(statement: str) -> None:
    import psycopg2

    connection = psycopg2.connect(STORAGE_ADMIN, connect_timeout=5)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


@contextlib.contextmanager
def _database(name: str) -> Iterator[str]:
    """A fresh PostgreSQL database (dropped at the end); its URI."""
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield STORAGE_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with contextlib.suppress(Exception):
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _delete_queues(names: list[str]) -> None:
    """Delete the queues (and their exchanges, same names) from the broker; errors ignored."""
    from kombu import Connection

    with contextlib.suppress(Exception), Connection(BROKER, connect_timeout=5) as connection:
        for name in names:
            for delete in ("queue_delete", "exchange_delete"):
                channel = connection.channel()  # a failed call closes its channel
                try:
                    getattr(channel, delete)(name)
                except Exception:
                    pass
                finally:
                    with contextlib.suppress(Exception):
                        channel.close()


# ---------------------------------------------------------------- workers


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group (Celery's warm shutdown), SIGKILL after the grace time."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # forked pool children of a worker that died first
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _text(path: Path) -> str:
    return path.read_text("utf-8", errors="replace") if path.exists() else ""


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(_text(path).splitlines()[-lines:])


@contextlib.contextmanager
def _workers(home: Path, count: int, tag: str) -> Iterator[list[Path]]:
    """``count`` default-queue workers of concurrency 1 for this home, ready; their log files."""
    from deep_events_dagster.cluster.worker import start_worker_process

    started: list[subprocess.Popen] = []
    logs = [home / f"worker-{i + 1}.log" for i in range(count)]
    try:
        for i, log in enumerate(logs):
            name = f"bench-{tag}-{i + 1}"
            started.append(
                start_worker_process(home, "default", name=name, concurrency=1, log_path=log)
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        for process, log in zip(started, logs, strict=True):
            while " ready." not in _text(log):
                if process.poll() is not None:
                    raise RuntimeError(f"worker exited ({process.returncode}):\n{_tail(log)}")
                if time.monotonic() > deadline:
                    late = f"worker not ready in {READY_TIMEOUT_S:.0f} s"
                    raise RuntimeError(f"{late}:\n{_tail(log)}")
                time.sleep(0.2)
        yield logs
    finally:
        for process in started:
            _stop(process)


def _task_seconds(logs: list[Path]) -> tuple[dict[tuple[str, str], float], float]:
    """Each task's seconds from the workers' start/end lines, keyed by (run id prefix, step),
    and the span from the first start to the last end."""
    opened: dict[tuple[str, str], float] = {}
    seconds: dict[tuple[str, str], float] = {}
    first, last = float("inf"), float("-inf")
    for log in logs:
        for line in _text(log).splitlines():
            match = TASK_LINE.match(line)
            if not match:
                continue
            when = dt.datetime.strptime(match["when"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            key = (match["run"], match["step"])
            if match["what"] == "start":
                opened[key] = when
                first = min(first, when)
            elif key in opened:
                seconds[key] = when - opened.pop(key)
                last = max(last, when)
    return seconds, max(0.0, last - first)


# ---------------------------------------------------------------- one measurement


def _write_home(home: Path, data: Path, cluster: dict[str, Any] | None) -> None:
    home.mkdir(parents=True)
    config: dict[str, Any] = {"roots": [str(data)], "ingestion": {"crop_size": CROP_SIZE}}
    if cluster:
        config["cluster"] = cluster
    (home / "deep_events.yaml").write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")


def _ingest(home: Path, data: Path, expected: int) -> float:
    """Wall seconds of ``deep-events ingest`` (its own process group, killed on a timeout)."""
    command = [sys.executable, "-m", "deep_events_dagster.cli", "ingest", str(data)]
    command += ["--home", str(home)]
    log = home / "ingest.log"
    with open(log, "wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True
        )
        try:
            code = process.wait(timeout=INGEST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(f"ingest ran past {INGEST_TIMEOUT_S:.0f} s:\n{_tail(log)}") from None
        seconds = time.perf_counter() - started
    ok = sum(1 for line in _text(log).splitlines() if line.startswith("ok "))
    if code != 0 or ok != expected:
        raise RuntimeError(f"ingest exited {code} with {ok}/{expected} ok:\n{_tail(log, 30)}")
    return seconds


def _instance_env(home: Path) -> dict[str, str]:
    from deep_events_dagster.settings.platform import load_settings

    env = dict(os.environ)
    env.update(load_settings(home).cluster.environment())
    env["DAGSTER_HOME"] = str(home / "dagster")
    return env


def _runs(home: Path) -> list[dict[str, Any]]:
    """The runs of this home's instance (read in a child process with the home's variables)."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_cluster", "--runs"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=_instance_env(home),
        timeout=120,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _child_runs() -> None:
    """Print, as JSON, every run of ``$DAGSTER_HOME``'s instance: status, created, started,
    ended, and each step's compute seconds."""
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    runs = []
    with dg.DagsterInstance.get() as instance:
        for record in instance.get_run_records():
            run_id = record.dagster_run.run_id
            starts: dict[str, float] = {}
            steps: dict[str, float] = {}
            for event in instance.get_records_for_run(run_id, of_type=kinds).records:
                entry = event.event_log_entry
                if entry.dagster_event_type == dg.DagsterEventType.STEP_START:
                    starts[entry.step_key] = entry.timestamp
                elif entry.step_key in starts:
                    steps[entry.step_key] = entry.timestamp - starts[entry.step_key]
            runs.append(
                {
                    "run_id": run_id,
                    "status": record.dagster_run.status.value,
                    "created": record.create_timestamp.timestamp(),
                    "started": record.start_time,
                    "ended": record.end_time,
                    "steps": steps,
                }
            )
    print(json.dumps(runs))


def _summary(
    seconds: float, runs: list[dict[str, Any]], logs: list[Path] | None = None
) -> dict[str, Any]:
    """Wall time and the per-run, per-step figures of one measurement."""
    done = [r for r in runs if r["started"] and r["ended"] and r["steps"]]
    run_s = [r["ended"] - r["started"] for r in done]
    compute_s = [sum(r["steps"].values()) for r in done]
    n_steps = sum(len(r["steps"]) for r in done)
    summary: dict[str, Any] = {
        "seconds": seconds,
        "runs": len(done),
        "steps": n_steps,
        "run_s_mean": statistics.fmean(run_s),
        "compute_s_mean": statistics.fmean(compute_s),
        "launch_s_mean": statistics.fmean(r["started"] - r["created"] for r in done),
        "overhead_per_step_s": (sum(run_s) - sum(compute_s)) / n_steps,
    }
    if logs:
        tasks, span = _task_seconds(logs)
        pairs = [
            (tasks[(r["run_id"][:8], step)], compute)
            for r in done
            for step, compute in r["steps"].items()
            if (r["run_id"][:8], step) in tasks
        ]
        if pairs:
            summary["tasks"] = len(pairs)
            summary["task_s_mean"] = statistics.fmean(t for t, _ in pairs)
            summary["worker_overhead_per_step_s"] = statistics.fmean(t - c for t, c in pairs)
            # idle workers between the first task and the last: dispatch latency not hidden
            summary["worker_idle_s"] = max(0.0, span * len(logs) - sum(t for t, _ in pairs))
    return summary


def _max_concurrent_runs(home: Path) -> int:
    """The instance's ``concurrency.runs.max_concurrent_runs`` (what ``ingest`` launches at
    once without a daemon; 4 when unset, as
    :func:`deep_events_dagster.cluster.runs.submit_runs`)."""
    config = yaml.safe_load(_text(home / "dagster" / "dagster.yaml")) or {}
    runs = (config.get("concurrency") or {}).get("runs") or {}
    return int(runs.get("max_concurrent_runs") or 4)


def _measure_in_process(folder: Path, source: Path, expected: int) -> dict[str, Any]:
    data = folder / "data"
    shutil.copytree(source, data)
    home = folder / "home"
    _write_home(home, data, None)
    say("cluster: in-process reference …")
    seconds = _ingest(home, data, expected)
    return _summary(seconds, _runs(home))


def _measure_celery(folder: Path, source: Path, expected: int, workers: int) -> dict[str, Any]:
    tag = f"{workers}w{uuid.uuid4().hex[:8]}"
    name = f"bench_cluster_{tag}"
    queues = {"default": f"{name}_default", "gpu": f"{name}_gpu"}
    data = folder / "data"
    shutil.copytree(source, data)
    home = folder / "home"
    try:
        with _database(name) as storage:
            cluster = {"storage": storage, "broker": BROKER, "queues": queues}
            _write_home(home, data, cluster)
            say(f"cluster: starting {workers} worker(s) …")
            with _workers(home, workers, tag) as logs:
                say(f"cluster: ingesting with {workers} worker(s) …")
                seconds = _ingest(home, data, expected)
            summary = _summary(seconds, _runs(home), logs)
            summary["max_concurrent_runs"] = _max_concurrent_runs(home)
            return summary
    finally:
        _delete_queues(list(queues.values()))


def run(workdir: str | Path | None = None, quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Ingest the same acquisitions in-process and with 1 and 2 Celery workers (module
    docstring); raises :class:`Skipped` when PostgreSQL or RabbitMQ is unreachable."""
    from deep_events_dagster.testing.trees import generate_tree

    _check_services()
    sizes = QUICK_SIZES if quick else FULL_SIZES
    load_before = os.getloadavg()[0]
    base = Path(workdir or "/tmp").resolve() / f"cluster-{uuid.uuid4().hex[:8]}"
    try:
        source = base / "source"
        generate_tree(
            source,
            seed=seed,
            n_acquisitions=sizes.acquisitions,
            height=sizes.height,
            width=sizes.width,
            n_frames=sizes.frames,
        )
        expected = sizes.acquisitions
        reference = _measure_in_process(base / "in_process", source, expected)
        one = _measure_celery(base / "celery_1", source, expected, 1)
        two = _measure_celery(base / "celery_2", source, expected, 2)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {
        "acquisitions": sizes.acquisitions,
        "movie": f"{sizes.width}×{sizes.height}×{sizes.frames}",
        "cpus": os.cpu_count(),
        "host": socket.gethostname(),
        "in_process": reference,
        "celery_1": one,
        "celery_2": two,
        "ratio_1_over_2": one["seconds"] / two["seconds"],
        "load_average": [load_before, os.getloadavg()[0]],
    }


class _ClusterResult(Result):
    """No numeric goal is stated: 2 workers faster than 1 (ratio > 1) is reported as PASS;
    a skipped section (a service unreachable) as SKIP."""

    skipped: bool = False

    @property
    def passed(self) -> bool:
        return self.skipped or self.ratio > 1.0

    @property
    def status(self) -> str:
        return "SKIP" if self.skipped else super().status

    @property
    def goal(self) -> str:
        return "none stated (2 workers should be faster on 2 cores: > 1×)"

    @property
    def headline(self) -> str:
        return "skipped" if self.skipped else super().headline


def _skipped(reason: str) -> Result:
    result = _ClusterResult(
        name="cluster",
        title="Ingestion on Celery workers, 1 against 2",
        compares="8 acquisitions ingested with 1 and with 2 Celery workers",
        lines=[Line("SKIP", "skipped", reason)],
        ratio_label="1 worker / 2 workers",
        ratio=0.0,
        target=1.0,
        op=">=",
        data={"skipped": reason},
    )
    result.skipped = True
    return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def result(workdir: Path | None = None, quick: bool = False, seed: int = 0) -> Result:
    """The benchmark as a report section of ``benchmarks.run``."""
    try:
        data = run(workdir, quick=quick, seed=seed)
    except Skipped as exc:
        return _skipped(str(exc))
    n = data["acquisitions"]
    ref, one, two = data["in_process"], data["celery_1"], data["celery_2"]

    def runs_note(m: dict[str, Any]) -> str:
        return (
            f"steps' compute {m['compute_s_mean']:.2f} s, launch {m['launch_s_mean']:.1f} s "
            f"(created → started), {m['runs']} runs, {m['steps']} steps"
        )

    lines = [
        Line(
            "Celery, 1 worker",
            f"{one['seconds']:.1f} s",
            f"{n} acquisitions, PostgreSQL storage, RabbitMQ, runs launched "
            f"{one['max_concurrent_runs']} at a time",
        ),
        Line("Celery, 2 workers", f"{two['seconds']:.1f} s", "same, 2 workers of concurrency 1"),
        Line(
            "in-process (reference)",
            f"{ref['seconds']:.1f} s",
            "no cluster: SQLite, each run's steps in its process, one run after another",
        ),
        Line("run time, in-process", f"{ref['run_s_mean']:.2f} s", runs_note(ref)),
        Line("run time, Celery 1 worker", f"{one['run_s_mean']:.2f} s", runs_note(one)),
        Line("run time, Celery 2 workers", f"{two['run_s_mean']:.2f} s", runs_note(two)),
        Line(
            "per-step overhead, in-process",
            _ms(ref["overhead_per_step_s"]),
            "(run time − steps' compute) / steps",
        ),
        Line(
            "per-step overhead, Celery 1 w",
            _ms(one["overhead_per_step_s"]),
            f"{one['overhead_per_step_s'] / ref['overhead_per_step_s']:.0f}× in-process; "
            "includes the wait for the worker (runs share it)",
        ),
        Line(
            "per-step overhead, Celery 2 w",
            _ms(two["overhead_per_step_s"]),
            f"{two['overhead_per_step_s'] / ref['overhead_per_step_s']:.0f}× in-process",
        ),
    ]
    for label, m in (("1 w", one), ("2 w", two)):
        if "worker_overhead_per_step_s" in m:
            lines.append(
                Line(
                    f"per-task overhead in worker, {label}",
                    _ms(m["worker_overhead_per_step_s"]),
                    f"task {m['task_s_mean']:.2f} s − step compute, mean of {m['tasks']} "
                    f"tasks; workers idle {m['worker_idle_s']:.1f} s in all",
                )
            )
    ratio = data["ratio_1_over_2"]
    load = data["load_average"]
    info = [
        f"load average {load[0]:.2f} before, {load[1]:.2f} after"
        + ("" if max(load) <= data["cpus"] else ": other processes shared the cores, noisy"),
        "steps' compute is timed inside each step (STEP_START → STEP_SUCCESS); under Celery "
        f"the workers share the {data['cpus']} CPUs with the runs' own processes (one per "
        f"acquisition, {one['max_concurrent_runs']} at a time), whose launch is the 'launch' "
        "above",
        "per-step overhead under Celery: the executor polls every 1 s between steps; the "
        "workers' task time covers loading the job, the instance and the resources per step",
    ]
    return _ClusterResult(
        name="cluster",
        title="Ingestion on Celery workers, 1 against 2",
        compares=f"{n} acquisitions ({data['movie']} movies) ingested by `deep-events ingest` "
        "with 1 and with 2 Celery workers on this machine; in-process beside them",
        lines=lines,
        ratio_label="1 worker / 2 workers",
        ratio=float(ratio),
        target=1.0,
        op=">=",
        unit="×",
        digits=2,
        info=info,
        data=data,
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--runs"]:
        _child_runs()
    else:
        import argparse

        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--quick", action="store_true")
        args = parser.parse_args()
        print(yaml.safe_dump(run(quick=args.quick), sort_keys=False, allow_unicode=True))
