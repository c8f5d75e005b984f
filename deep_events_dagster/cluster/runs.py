"""Runs through the cluster's instance: one run per partition, submitted to the run queue when
a daemon is live, else launched by this command, and waited for; why a run failed.

Dagster's private API (creating a run, loading the workspace) is reached only through
:mod:`deep_events_dagster.dagster_internals`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from deep_events_dagster.dagster_internals import create_run, load_workspace


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
    with dg.DagsterInstance.get() as instance, load_workspace(instance) as workspace:
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
                run = create_run(instance, workspace, job_name, tags, run_config or {})
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
