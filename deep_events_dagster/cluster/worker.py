"""``deep-events worker``: a Celery worker for this code location on this home, the Celery app
and queues it shares with the executor, its log lines, and the worker as a child process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from deep_events_dagster.cluster.checks import ClusterError, check_cluster
from deep_events_dagster.dagster_internals import unpacked_step_args
from deep_events_dagster.settings.cluster import ClusterSettings
from deep_events_dagster.settings.platform import PlatformSettings

ROLES = ("default", "gpu")


def celery_queues(cluster: ClusterSettings):
    """The two queues (topic exchanges, priorities) declared alike by senders and workers."""
    from kombu import Exchange, Queue

    return [
        Queue(
            name,
            Exchange(name, type="topic"),
            routing_key=f"{name}.#",
            queue_arguments={"x-max-priority": 10},
        )
        for name in (cluster.queues.default, cluster.queues.gpu)
    ]


def celery_app(
    cluster: ClusterSettings, broker: str, backend: str | None = None, *, worker: bool = False
):
    """The Celery app of the executor and (``worker=True``, with dagster-celery's step task
    registered) of the workers."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    from deep_events_dagster.defs.executors import celery_app_settings

    app = make_app(
        CeleryExecutor.for_cli(
            broker=broker, backend=backend or "rpc://", config_source=celery_app_settings(cluster)
        ).app_args()
    )
    app.conf.task_queues = celery_queues(cluster)
    if worker:
        create_task(app)
    return app


def _log_tasks(role: str, queue: str) -> None:
    """One line per step a worker starts and ends (host, pid, run, step, seconds)."""
    from celery import signals

    started: dict[str, float] = {}

    def describe(kwargs: Mapping) -> tuple[str, str]:
        try:
            run_id, step_keys = unpacked_step_args(kwargs["execute_step_args_packed"])
            return run_id[:8], ",".join(step_keys)
        except Exception:
            return "?", "?"

    logger = logging.getLogger("deep_events.worker")

    @signals.after_setup_logger.connect(weak=False)
    def _quiet_results(**_):
        # Celery logs every step's serialized Dagster events on success; our lines say enough
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)

    def line(task, text: str) -> None:
        node = getattr(getattr(task, "request", None), "hostname", None) or socket.gethostname()
        logger.info(f"{node} pid {os.getpid()} queue {queue} ({role}): {text}")

    @signals.task_prerun.connect(weak=False)
    def _start(task_id=None, task=None, kwargs=None, **_):
        run, steps = describe(kwargs or {})
        started[task_id] = time.monotonic()
        line(task, f"start run {run} step {steps}")

    @signals.task_postrun.connect(weak=False)
    def _end(task_id=None, task=None, kwargs=None, state=None, **_):
        run, steps = describe(kwargs or {})
        seconds = time.monotonic() - started.pop(task_id, time.monotonic())
        line(task, f"end   run {run} step {steps} {state} in {seconds:.1f} s")


def run_worker(
    settings: PlatformSettings,
    *,
    role: str = "default",
    concurrency: int = 1,
    name: str | None = None,
    loglevel: str = "INFO",
) -> int:
    """Start a Celery worker on the queue of ``role`` for this home (blocks until stopped).

    Returns 2 (with one line on stderr) when the home has no ``cluster.broker`` or a service is
    unreachable; otherwise Celery's exit status.
    """
    cluster = settings.cluster
    if role not in ROLES:
        print(f"--queue must be one of {', '.join(ROLES)}, not {role!r}", file=sys.stderr)
        return 2
    if not cluster.distributed:
        print(
            f"{settings.config_file}: no cluster.broker: a worker needs a Celery broker "
            "(and cluster.storage); see README 'Running on several machines'",
            file=sys.stderr,
        )
        return 2
    try:
        check_cluster(settings)
    except ClusterError as exc:
        print(f"worker not started: {exc}", file=sys.stderr)
        return 2
    queue = cluster.queues.default if role == "default" else cluster.queues.gpu
    app = celery_app(cluster, cluster.broker, cluster.backend or None, worker=True)
    _log_tasks(role, queue)
    node = f"{name or f'{role}-{os.getpid()}'}@{socket.gethostname()}"
    print(
        f"worker {node}: queue {queue} ({role}), concurrency {concurrency}, home {settings.home}; "
        f"{cluster.describe()}",
        flush=True,
    )
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        "-Q",
        queue,
        "-n",
        node,
        f"--concurrency={max(1, concurrency)}",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
    ]
    # a SIGTERM from a service manager: Celery's warm shutdown (running steps finish first)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def start_worker_process(
    home: Path, role: str, *, name: str, concurrency: int = 1, log_path: Path | None = None
) -> subprocess.Popen:
    """``deep-events worker`` as a child process (tests and the benchmark), in its own session."""
    command = [
        sys.executable,
        "-m",
        "deep_events_dagster.cli",
        "worker",
        "--home",
        str(home),
        "--queue",
        role,
        "--name",
        name,
        "--concurrency",
        str(concurrency),
    ]
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
    )
