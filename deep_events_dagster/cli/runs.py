"""The run engine behind the commands: the home's instance, jobs rebuilt in run processes,
one run per partition (in this process, in worker processes, or through a cluster's instance).

Settings reach a run explicitly: the job-building functions below are reconstructable and
take the home and the command line's choices (kinds, roots, output root) as arguments, so a
run process never depends on what a command wrote into ``os.environ``. Only ``DAGSTER_HOME``,
``DEEP_EVENTS_HOME`` and the cluster's service URIs (secrets) travel through the environment.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from deep_events_dagster.settings.platform import (
    HOME_ENV,
    KINDS_ENV,
    OUTPUT_ROOT_ENV,
    QUIET_ENV,
    ROOTS_ENV,
    PlatformSettings,
    load_settings,
)

PARTITION_TAG = "dagster/partition"


# ---------------------------------------------------------------- the home


def prepare_home(settings: PlatformSettings) -> None:
    """Create the home and its Dagster instance folder; point this process (and its children)
    at the instance, the home and the cluster's services."""
    from deep_events_dagster.cluster.instance import export_environment, write_instance_yaml

    settings.home.mkdir(parents=True, exist_ok=True)
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    write_instance_yaml(settings)
    export_environment(settings)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    os.environ[HOME_ENV] = str(settings.home)


def run_arguments(settings: PlatformSettings) -> dict[str, Any]:
    """What a run process needs to rebuild these settings: the home and the choices a command
    line may override (kinds, roots, output root, quiet period), as plain JSON values.

    The rest (``deep_events.yaml``, secrets from the environment) the run reads itself; a
    digest of the whole settings keeps the reconstructed job of each settings distinct.
    """
    # a digest: the arguments are stored with the run, and the catalog URI may hold a password
    digest = hashlib.sha256(repr((settings, settings.catalog_uri)).encode()).hexdigest()
    return {
        "home": str(settings.home),
        "kinds": list(settings.kinds),
        "roots": [str(Path(r).resolve()) for r in settings.roots],
        "output_root": None
        if settings.output_root is None
        else str(Path(settings.output_root).resolve()),
        "quiet_seconds": float(settings.quiet_seconds),
        "settings_key": digest,
    }


def settings_from_run_arguments(arguments: dict[str, Any]) -> PlatformSettings:
    """The settings :func:`run_arguments` describes (read again from the home's files)."""
    overrides: dict[str, Any] = {
        "kinds": tuple(arguments["kinds"]),
        "roots": tuple(Path(r) for r in arguments["roots"]),
        "quiet_seconds": arguments["quiet_seconds"],
    }
    if arguments.get("output_root") is not None:
        overrides["output_root"] = Path(arguments["output_root"])
    return load_settings(Path(arguments["home"]), **overrides)


def ui_environment(settings: PlatformSettings) -> dict[str, str]:
    """The environment of ``dagster dev``: the only place where the command line's kinds, roots,
    output root and quiet period travel as variables, because Dagster loads the code location
    (``definitions.py``) itself and gives it no arguments."""
    environment = os.environ.copy()
    environment[KINDS_ENV] = ",".join(settings.kinds)
    if settings.roots:
        environment[ROOTS_ENV] = os.pathsep.join(str(Path(r).resolve()) for r in settings.roots)
    if settings.output_root is not None:
        environment[OUTPUT_ROOT_ENV] = str(Path(settings.output_root).resolve())
    environment[QUIET_ENV] = str(settings.quiet_seconds)
    return environment


# ---------------------------------------------------------------- jobs rebuilt in run processes


def _job(job_name: str, arguments: dict[str, Any]):
    from deep_events_dagster.defs.build import build_definitions

    settings = settings_from_run_arguments(arguments)
    return build_definitions(settings).resolve_job_def(job_name)


def ingest_job_definition(**arguments: Any):
    """The ingest job with its resources, for the settings of :func:`run_arguments`.

    Dagster keeps the last reconstructed definition per process (an ``lru_cache`` keyed by the
    code pointer and these arguments), so the settings digest among them keeps a second
    ``ingest`` in one process (tests, library use) from running with the first one's settings.
    """
    from deep_events_dagster.defs.ingestion.jobs import INGEST_JOB

    return _job(INGEST_JOB, arguments)


def predict_job_definition(**arguments: Any):
    """The predict job (the deployed model of each kind over one acquisition)."""
    from deep_events_dagster.defs.training.jobs import PREDICTIONS_JOB

    return _job(PREDICTIONS_JOB, arguments)


def train_job_definition(**arguments: Any):
    """The train job (one training run partition: training set, model, evaluation, exports)."""
    return _job("train", arguments)


def reconstructable_job(function_name: str, settings: PlatformSettings):
    """A job-building function of this module as a reconstructable job for ``settings``."""
    import dagster as dg

    return dg.build_reconstructable_job(
        __name__, function_name, reconstructable_kwargs=run_arguments(settings)
    )


# ---------------------------------------------------------------- running partitions


@dataclass(frozen=True)
class PartitionOutcome:
    """How one partition's run ended."""

    key: str
    success: bool
    message: str
    run_id: str


def failure_message(result) -> str:
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            user = getattr(data, "user_failure_data", None)
            if user is not None and user.description:
                messages.append(user.description)
            elif data.error is not None:
                error = data.error
                while error.cause is not None:  # the innermost error says what went wrong
                    error = error.cause
                lines = error.message.strip().splitlines() or [error.cls_name or "error"]
                messages.append(lines[0])
    import dagster as dg

    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            messages.append(
                f"{evaluation.asset_key.to_user_string()} check {evaluation.check_name} failed: "
                f"{evaluation.description}"
            )
    return "; ".join(dict.fromkeys(messages)) or "run failed (see the Dagster UI for its logs)"


def run_partition(
    settings: PlatformSettings,
    key: str,
    executor: str = "in_process",
    log_level: str = "WARNING",
    job_definition: str = "ingest_job_definition",
) -> PartitionOutcome:
    """Execute a job (by default ingest; ``job_definition`` names this module's function that
    builds it) for one partition on the home's instance, with ``settings``."""
    import dagster as dg

    run_config = {
        "execution": {"config": {"mode": executor}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            reconstructable_job(job_definition, settings),
            instance=instance,
            tags={PARTITION_TAG: key},
            run_config=run_config,
            raise_on_error=False,
        )
        message = "" if result.success else failure_message(result)
        return PartitionOutcome(key, result.success, message, result.run_id)


def _run_partition_safely(
    settings: PlatformSettings, key: str, executor: str, log_level: str
) -> PartitionOutcome:
    try:
        return run_partition(settings, key, executor, log_level)
    except Exception as exc:  # one bad acquisition never stops the others
        return PartitionOutcome(key, False, f"{type(exc).__name__}: {exc}", "")


def run_partitions(
    settings: PlatformSettings,
    keys: Sequence[str],
    *,
    workers: int = 1,
    executor: str = "in_process",
    log_level: str = "WARNING",
) -> list[PartitionOutcome]:
    """Run the ingest job for each key, ``workers`` runs at a time (separate processes)."""
    if workers <= 1 or len(keys) <= 1:
        outcomes = []
        for key in keys:
            outcome = _run_partition_safely(settings, key, executor, log_level)
            print_outcome(outcome)
            outcomes.append(outcome)
        return outcomes
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(_run_partition_safely, settings, key, executor, log_level) for key in keys
        ]
        outcomes = []
        for future in futures:
            outcome = future.result()
            print_outcome(outcome)
            outcomes.append(outcome)
        return outcomes


def print_outcome(outcome: PartitionOutcome) -> None:
    if outcome.success:
        print(f"ok      {outcome.key}", flush=True)
    else:
        print(f"FAILED  {outcome.key}: {outcome.message}", flush=True)


def run_on_cluster(job_name: str, keys: Sequence[str], *, verbose: bool = False):
    """Run a job per partition through the cluster's instance, printing each as it ends."""
    from deep_events_dagster.cluster.runs import submit_runs

    level = "DEBUG" if verbose else "CRITICAL"  # failures are summarised per acquisition
    run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    outcomes = []
    for run in submit_runs(job_name, keys, run_config=run_config):
        outcome = PartitionOutcome(run.key, run.success, run.message, run.run_id)
        print_outcome(outcome)
        outcomes.append(outcome)
    return outcomes


def cluster_problem(settings: PlatformSettings, requested: PlatformSettings | None = None) -> str:
    """Why this cluster home cannot run a command ("" when it can): an unreachable service, or
    command-line settings that the workers (which read deep_events.yaml) would not see."""
    from deep_events_dagster.cluster.checks import ClusterError, check_cluster

    if not settings.cluster.enabled:
        return ""
    if requested is not None:
        configured = load_settings(settings.home)
        known = [Path(os.path.abspath(r)) for r in configured.roots]

        def covered(root: Path) -> bool:
            root = Path(os.path.abspath(root))
            return any(root == k or k in root.parents for k in known)

        outside = [str(root) for root in requested.roots if not covered(root)]
        if outside:
            return (
                f"{settings.config_file}: with a cluster the workers read roots: from this file; "
                f"add {', '.join(outside)} to roots: there"
            )
        if requested.kinds != configured.kinds or requested.output_root != configured.output_root:
            return (
                f"{settings.config_file}: with a cluster the workers read kinds: and output_root: "
                "from this file; set them there instead of on the command line"
            )
    try:
        check_cluster(settings)
    except ClusterError as exc:
        return str(exc)
    return ""


def register_partitions(keys: Sequence[str]) -> int:
    """Add acquisition partitions that the instance does not know yet; returns how many."""
    import dagster as dg

    from deep_events_dagster.defs.partitions import ACQUISITIONS

    with dg.DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(ACQUISITIONS))
        new = [k for k in keys if k not in known]
        if new:
            instance.add_dynamic_partitions(ACQUISITIONS, new)
        return len(new)
