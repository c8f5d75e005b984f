"""Running on several machines: PostgreSQL instance storage, runs through the instance, Celery
workers.

What this module owns:

* the home's Dagster instance file (``<home>/dagster/dagster.yaml``) and its managed ``storage:``
  block, which follows ``cluster.storage`` (the URI is read from ``DEEP_EVENTS_CLUSTER_STORAGE``,
  so no password is written there);
* start-up checks with clear errors: PostgreSQL and the broker reachable, the embedded catalog on
  a local file system of a single host, the shared paths visible;
* submitting runs through the instance (run queue and daemon when one is live, else the run
  launcher from this command) and waiting for them;
* ``deep-events worker``: a Celery worker for this code location on this home.

The embedded catalog (montydb on sqlite, guarded by ``flock``) is a single-host file: with
Celery workers it is accepted only on a local file system and only from the host that first
used it with a cluster (recorded in ``<catalog>/.cluster_host``); workers on several hosts need a
``mongodb://`` catalog.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.fsutil import NETWORK_FILESYSTEMS, atomic_write_text, filesystem_type
from deep_events_dagster.settings import (
    CLUSTER_STORAGE_ENV,
    ClusterSettings,
    PlatformSettings,
    libpq_url,
    redact_uri,
)

MANAGED_BEGIN = "# >>> deep-events cluster storage (managed: follows cluster.storage)"
MANAGED_END = "# <<< deep-events cluster storage"
HOST_MARKER = ".cluster_host"
ROLES = ("default", "gpu")
CONNECT_TIMEOUT_S = 5.0


class ClusterError(ConfigurationError):
    """A cluster service or shared path is not usable; the message says which and why."""


# ---------------------------------------------------------------- the instance file


def instance_yaml(existing: str | None, cluster: ClusterSettings, *, source: Path) -> str:
    """The instance file's text for these cluster settings.

    ``existing`` (the current text, or None for the packaged template) keeps everything the user
    wrote; only the block between the managed markers changes.

    Raises
    ------
    ClusterError
        The user's own part already configures ``storage:`` while ``cluster.storage`` is set.
    """
    import yaml

    if existing is None:
        template = resources.files("deep_events_dagster.resources").joinpath("dagster.yaml")
        existing = template.read_text("utf-8")
    lines = existing.splitlines()
    kept: list[str] = []
    inside = False
    for line in lines:
        if line.strip() == MANAGED_BEGIN:
            inside = True
            continue
        if inside and line.strip() == MANAGED_END:
            inside = False
            continue
        if not inside:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    text = "\n".join(kept) + "\n"
    if not cluster.enabled:
        return text
    own = yaml.safe_load(text) or {}
    if isinstance(own, dict) and "storage" in own:
        raise ClusterError(
            f"{source}: configures its own storage: while deep_events.yaml sets cluster.storage; "
            "remove one of them"
        )
    block = [
        "",
        MANAGED_BEGIN,
        "# Dagster's run, event-log and schedule storage in PostgreSQL; the URI (with its",
        f"# password) is read from {CLUSTER_STORAGE_ENV}, set by the deep-events commands.",
        "storage:",
        "  postgres:",
        "    postgres_url:",
        f"      env: {CLUSTER_STORAGE_ENV}",
        MANAGED_END,
    ]
    return text + "\n".join(block) + "\n"


def write_instance_yaml(settings: PlatformSettings) -> Path:
    """Create or update ``<home>/dagster/dagster.yaml`` for the settings' cluster block."""
    path = settings.dagster_home / "dagster.yaml"
    existing = path.read_text("utf-8") if path.exists() else None
    text = instance_yaml(existing, settings.cluster, source=path)
    if text != existing:
        atomic_write_text(path, text)
    return path


def export_environment(settings: PlatformSettings) -> None:
    """Put the cluster's URIs in this process's environment (inherited by the daemon, the run
    workers and the Celery workers this process starts)."""
    for name, value in settings.cluster.environment().items():
        os.environ[name] = value


# ---------------------------------------------------------------- start-up checks


def check_storage(uri: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to the PostgreSQL storage once.

    Raises
    ------
    ClusterError
        Naming the URI (password hidden) and the server's answer.
    """
    import psycopg2

    try:
        psycopg2.connect(libpq_url(uri), connect_timeout=max(1, int(timeout_s))).close()
    except psycopg2.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Dagster storage at {redact_uri(uri)}: {reason}"
        ) from None


def check_broker(uri: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to the Celery broker once (no endless retries).

    Raises
    ------
    ClusterError
        Naming the URI (password hidden) and why the connection failed.
    """
    from kombu import Connection

    try:
        with Connection(uri, connect_timeout=timeout_s) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout_s)
    except Exception as exc:  # kombu raises transport-specific errors
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Celery broker at {redact_uri(uri)}: {reason}"
        ) from None


def check_embedded_catalog(settings: PlatformSettings, *, host: str | None = None) -> Path | None:
    """With Celery workers, the embedded catalog must be on a local file system of one host
    (:func:`check_single_host_catalog`); the catalog folder, or None for a MongoDB server."""
    from deep_events_dagster.catalog import EventCatalog

    folder = EventCatalog.embedded_folder(settings.catalog_uri, home=settings.home)
    if folder is not None and settings.cluster.distributed:
        check_single_host_catalog(folder, host=host)
    return folder


def check_single_host_catalog(
    folder: Path, *, host: str | None = None, mounts: str | None = None
) -> None:
    """Refuse an embedded catalog folder on a network file system or owned by another host;
    record this host as the owner on first use (``<folder>/.cluster_host``).

    Raises
    ------
    ClusterError
        Naming the folder, the file system or the owning host, and what to do instead.
    """
    host = host or socket.gethostname()
    fs_type = filesystem_type(folder, mounts)
    if fs_type in NETWORK_FILESYSTEMS:
        raise ClusterError(
            f"the embedded catalog {folder} is on a network file system ({fs_type}): its file "
            "lock does not hold across machines; set catalog_uri: mongodb://… in "
            "deep_events.yaml for workers on several hosts"
        )
    marker = folder / HOST_MARKER
    owner = marker.read_text("utf-8").strip() if marker.is_file() else ""
    if owner and owner != host:
        raise ClusterError(
            f"the embedded catalog {folder} belongs to host {owner!r} and this process runs on "
            f"{host!r}: the embedded catalog serves one host; run every worker there, or set "
            "catalog_uri: mongodb://… in deep_events.yaml"
        )
    if not owner:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, host + "\n")


def require_visible(paths: Mapping[str, Path | str]) -> None:
    """Every named path exists on this host (a shared path that a worker cannot see).

    Raises
    ------
    ClusterError
        Naming the first missing path and the host.
    """
    for what, path in paths.items():
        if not Path(path).exists():
            raise ClusterError(
                f"{what} {path} is not visible on host {socket.gethostname()}: every worker must "
                "see the data roots and the home at the same paths as the machine that "
                "registered them (mount the share there)"
            )


def check_cluster(settings: PlatformSettings) -> None:
    """All start-up checks of a cluster home (storage, broker, embedded catalog)."""
    cluster = settings.cluster
    if cluster.storage:
        check_storage(cluster.storage)
    if cluster.broker:
        check_broker(cluster.broker)
    check_embedded_catalog(settings)


# ---------------------------------------------------------------- runs through the instance


@dataclass(frozen=True)
class SubmittedRun:
    """One run submitted for a partition, and how it ended."""

    key: str
    run_id: str
    success: bool
    message: str


def daemon_is_live(instance, tolerance_s: float = 60.0) -> bool:
    """A ``dagster-daemon`` of this instance dequeues runs (a recent heartbeat)."""
    heartbeats = instance.get_daemon_heartbeats()
    beat = heartbeats.get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp <= tolerance_s


def run_failure_message(instance, run_id: str) -> str:
    """The first line of each step failure of a run (innermost cause), or a pointer to the UI."""
    import dagster as dg

    messages = []
    records = instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
    ).records
    step_failures = [
        r
        for r in records
        if r.event_log_entry.dagster_event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    records = step_failures or records  # the run failure repeats its steps' errors
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.is_step_failure:
            data = event.step_failure_data
            user = getattr(data, "user_failure_data", None)
            if user is not None and user.description:
                messages.append(user.description)
                continue
            error = data.error
        else:
            error = getattr(event.event_specific_data, "error", None)
            if error is None:
                if event.message:
                    messages.append(event.message.splitlines()[0])
                continue
        while error.cause is not None:
            error = error.cause
        lines = error.message.strip().splitlines() or [error.cls_name or "error"]
        messages.append(lines[0])
    return "; ".join(dict.fromkeys(messages)) or "run failed (see the Dagster UI for its logs)"


def _workspace(instance):
    from dagster import __version__
    from dagster._cli.workspace.cli_target import get_workspace_from_cli_opts
    from dagster_shared.cli import WorkspaceOpts

    opts = WorkspaceOpts(module_name=("deep_events_dagster.definitions",))
    return get_workspace_from_cli_opts(
        instance, version=__version__, workspace_opts=opts, log_level="WARNING"
    )


def _create_run(instance, workspace, job_name: str, tags: Mapping[str, str], run_config: Mapping):
    from dagster._cli.job import _create_run as create_run
    from dagster._cli.workspace.cli_target import (
        get_code_location_from_workspace,
        get_remote_job_from_remote_repo,
        get_remote_repository_from_code_location,
    )

    location = get_code_location_from_workspace(workspace, None)
    repo = get_remote_repository_from_code_location(location, None)
    remote_job = get_remote_job_from_remote_repo(repo, job_name)
    return create_run(
        instance=instance,
        code_location=location,
        remote_repo=repo,
        remote_job=remote_job,
        run_config=dict(run_config),
        tags=dict(tags),
        op_selection=None,
        run_id=None,
    )


def _max_concurrent_runs(instance) -> int:
    coordinator = instance.run_coordinator
    limit = getattr(coordinator, "get_run_queue_config", None)
    if limit is None:
        return 4
    value = limit().max_concurrent_runs
    return value if value and value > 0 else 4


def submit_runs(
    job_name: str,
    partition_keys: Sequence[str],
    *,
    run_config: Mapping | None = None,
    log: Callable[[str], None] = print,
    poll_s: float = 0.5,
) -> Iterator[SubmittedRun]:
    """Run ``job_name`` once per partition through the instance; yield each run as it ends.

    With a live daemon the runs go through the run queue (``max_concurrent_runs``, pools) and
    the daemon launches them; without one, this command launches them itself with the
    instance's run launcher, as many at a time as the queue would allow. Either way the runs,
    their steps and their events are in the instance's storage and the UI.
    """
    import dagster as dg

    terminal = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
    terminal.add(dg.DagsterRunStatus.CANCELED)
    with dg.DagsterInstance.get() as instance, _workspace(instance) as workspace:
        queued = daemon_is_live(instance)
        if not queued:
            log(
                "no Dagster daemon runs for this instance: this command launches the runs itself "
                "(`deep-events ui` starts the UI with a daemon)"
            )
        limit = _max_concurrent_runs(instance)
        pending = list(partition_keys)
        active: dict[str, str] = {}  # run id -> partition key
        while pending or active:
            while pending and (queued or len(active) < limit):
                key = pending.pop(0)
                tags = {"dagster/partition": key}
                run = _create_run(instance, workspace, job_name, tags, run_config or {})
                if queued:
                    instance.submit_run(run.run_id, workspace)
                else:
                    instance.launch_run(run.run_id, workspace)
                active[run.run_id] = key
            runs = instance.get_runs(dg.RunsFilter(run_ids=list(active)))
            for run in runs:
                if run.status in terminal:
                    key = active.pop(run.run_id)
                    success = run.status == dg.DagsterRunStatus.SUCCESS
                    message = "" if success else run_failure_message(instance, run.run_id)
                    if run.status == dg.DagsterRunStatus.CANCELED:
                        message = "run canceled" + (f": {message}" if message else "")
                    yield SubmittedRun(key, run.run_id, success, message)
            if active:
                time.sleep(poll_s)


# ---------------------------------------------------------------- Celery workers


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
        from dagster._grpc.types import ExecuteStepArgs
        from dagster._serdes import unpack_value

        try:
            args = unpack_value(kwargs["execute_step_args_packed"], as_type=ExecuteStepArgs)
            return args.run_id[:8], ",".join(args.step_keys_to_execute or [])
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
