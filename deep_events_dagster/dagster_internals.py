"""Every use of Dagster's private API (``dagster._…``, ``dagster_shared``), in one place.

Written for dagster 1.13.27 (dagster-celery and dagster-postgres 0.29.27), the versions pinned
in ``pyproject.toml``. Nothing here is imported at module import time: each function imports
what it needs, so the CLI and the assets load without Dagster's internals.

What this module owns:

* loading the code location ``deep_events_dagster.definitions`` as a workspace, the way
  ``dagster job launch -m`` does (:func:`load_workspace`);
* creating a run of a job of that workspace in the instance, as ``dagster job launch`` does
  before it submits or launches it (:func:`create_run`);
* reading the packed step arguments of dagster-celery's step task (:func:`unpacked_step_args`,
  used by the workers' log lines), and building and packing them and the executor's retry mode
  (:func:`execute_step_args`, :func:`pack`, :func:`retry_mode`, which the Celery executor of
  ``defs/executors.py`` needs).

When upgrading Dagster, check that these names still exist with these signatures:
``dagster._cli.workspace.cli_target.get_workspace_from_cli_opts`` (instance, version,
workspace_opts, log_level), ``get_code_location_from_workspace``,
``get_remote_repository_from_code_location``, ``get_remote_job_from_remote_repo``,
``dagster._cli.job._create_run`` (keyword arguments as below), ``dagster_shared.cli.WorkspaceOpts``
(``module_name``), ``dagster._grpc.types.ExecuteStepArgs`` (its fields ``run_id``,
``step_keys_to_execute``), ``dagster._serdes.pack_value``/``unpack_value`` and
``dagster._core.execution.retries.RetryMode.from_config``. Then run ``tests/e2e/test_cluster.py``
(slow; PostgreSQL and RabbitMQ): it submits runs through the instance and runs Celery workers.
The public instance methods that ``cluster/runs.py`` calls (``get_daemon_heartbeats`` and its
``QUEUED_RUN_COORDINATOR`` key, ``run_coordinator.get_run_queue_config``,
``get_records_for_run``, ``submit_run``, ``launch_run``) are covered by the same test.
"""

from __future__ import annotations

from collections.abc import Mapping


def load_workspace(instance, module: str = "deep_events_dagster.definitions"):
    """The workspace of the code location ``module`` (a context manager), quiet below WARNING."""
    from dagster import __version__
    from dagster._cli.workspace.cli_target import get_workspace_from_cli_opts
    from dagster_shared.cli import WorkspaceOpts

    opts = WorkspaceOpts(module_name=(module,))
    return get_workspace_from_cli_opts(
        instance, version=__version__, workspace_opts=opts, log_level="WARNING"
    )


def create_run(instance, workspace, job_name: str, tags: Mapping[str, str], run_config: Mapping):
    """A new run of ``job_name`` (of the workspace's only code location and repository) in the
    instance, not yet submitted or launched."""
    from dagster._cli.job import _create_run
    from dagster._cli.workspace.cli_target import (
        get_code_location_from_workspace,
        get_remote_job_from_remote_repo,
        get_remote_repository_from_code_location,
    )

    location = get_code_location_from_workspace(workspace, None)
    repo = get_remote_repository_from_code_location(location, None)
    remote_job = get_remote_job_from_remote_repo(repo, job_name)
    return _create_run(
        instance=instance,
        code_location=location,
        remote_repo=repo,
        remote_job=remote_job,
        run_config=dict(run_config),
        tags=dict(tags),
        op_selection=None,
        run_id=None,
    )


def unpacked_step_args(packed: str) -> tuple[str, list[str]]:
    """The run id and step keys of dagster-celery's packed ``execute_step_args_packed``."""
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import unpack_value

    args = unpack_value(packed, as_type=ExecuteStepArgs)
    return args.run_id, list(args.step_keys_to_execute or [])


def execute_step_args(**fields):
    """dagster's ``ExecuteStepArgs`` (what a Celery step task receives, packed)."""
    from dagster._grpc.types import ExecuteStepArgs

    return ExecuteStepArgs(**fields)


def pack(value):
    """dagster's serialisation of a serdes value (``pack_value``)."""
    from dagster._serdes import pack_value

    return pack_value(value)


def retry_mode(config):
    """dagster's ``RetryMode`` from an executor's ``retries`` config."""
    from dagster._core.execution.retries import RetryMode

    return RetryMode.from_config(config)
