"""``deep-events ui`` (the Dagster webserver and daemon) and ``deep-events worker`` (a Celery
worker of a cluster home): the long-running processes."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from deep_events_dagster.cli.runs import cluster_problem, prepare_home, ui_environment
from deep_events_dagster.settings.platform import PlatformSettings


def ui(settings: PlatformSettings, *, host: str, port: int) -> int:
    """Run ``dagster dev`` (webserver + daemon) on the home's instance."""
    prepare_home(settings)
    problem = cluster_problem(settings)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if settings.cluster.enabled:
        print(f"cluster: {settings.cluster.describe()}", flush=True)
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or shutil.which(
        "dagster"
    )
    if dagster is None:
        print("the `dagster` command is not installed beside deep-events", file=sys.stderr)
        return 2
    command = [dagster, "dev", "-m", "deep_events_dagster.definitions", "-h", host, "-p", str(port)]
    print(f"Dagster UI on http://{host}:{port} (home {settings.home})", flush=True)
    if settings.roots:
        print(
            "watching "
            + ", ".join(str(r) for r in settings.roots)
            + f" (quiet period {settings.quiet_seconds:g} s)",
            flush=True,
        )
    else:
        print("no data roots to watch (use --watch ROOT or roots: in deep_events.yaml)")
    # replace this process: signals (Ctrl-C, SIGTERM from a service manager) reach dagster dev
    os.execve(command[0], command, ui_environment(settings))


def worker(
    settings: PlatformSettings, *, queue: str, concurrency: int, name: str | None, loglevel: str
) -> int:
    """Start a Celery worker for this home (``cluster.worker.run_worker``); 2 when it cannot
    start."""
    from deep_events_dagster.cluster.worker import run_worker
    from deep_events_dagster.core.errors import ConfigurationError

    try:
        prepare_home(settings)
    except ConfigurationError as exc:
        print(f"worker not started: {exc}", file=sys.stderr)
        return 2
    return run_worker(settings, role=queue, concurrency=concurrency, name=name, loglevel=loglevel)
