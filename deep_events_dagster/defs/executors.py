"""How a run's steps are executed: in this process, or as Celery tasks on cluster workers.

Without a broker (``cluster:`` absent, or PostgreSQL storage only) every job runs its steps in
the run's own process (one process per run: a subprocess per step costs seconds on small
machines); ``execution: config: {mode: multiprocess}`` asks for a process per step.

With ``cluster.broker`` every step is a Celery task (dagster-celery). A step's op tag
``dagster-celery/queue`` names a queue *role* (``default`` or ``gpu``); the executor sends it to
the queue that ``cluster.queues`` names for that role, so several homes (or tests) can share one
broker. Broker and backend URIs are read from ``DEEP_EVENTS_CLUSTER_*`` variables at run time:
their passwords never appear in run config, the UI or the logs.
"""

from collections.abc import Mapping

import dagster as dg

from deep_events_dagster.settings.cluster import (
    CLUSTER_BACKEND_ENV,
    CLUSTER_BROKER_ENV,
    ClusterSettings,
)

QUEUE_TAG = "dagster-celery/queue"
DEFAULT_ROLE = "default"
GPU_ROLE = "gpu"
# Steps that must run beside the GPU: their ops carry this tag.
GPU_QUEUE_TAGS = {QUEUE_TAG: GPU_ROLE}

# Celery settings shared by the executor (which sends tasks) and `deep-events worker`.
# acks_late + reject_on_worker_lost: a step whose worker dies (killed, machine lost) goes back to
# the queue and runs again on another worker instead of leaving its run waiting forever.
CELERY_SETTINGS = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": False,
    "broker_connection_max_retries": 3,
    "result_expires": 24 * 3600,
}


@dg.configured(
    dg.multi_or_in_process_executor,
    config_schema={
        "mode": dg.Field(
            dg.Enum("ExecutionMode", [dg.EnumValue("in_process"), dg.EnumValue("multiprocess")]),
            default_value="in_process",
            description="in_process: every step in the run's process; multiprocess: one each.",
        )
    },
)
def local_executor(config: Mapping) -> dict:
    """Dagster's in-process/multiprocess executor, in-process unless the run config asks."""
    return {config["mode"]: {}}


def queue_name(cluster: ClusterSettings, role: str) -> str:
    """The Celery queue of a role (``default``/``gpu``) under these cluster settings."""
    names = {DEFAULT_ROLE: cluster.queues.default, GPU_ROLE: cluster.queues.gpu}
    return names.get(role, role)


def celery_app_settings(cluster: ClusterSettings) -> dict:
    """Celery configuration (``config_source``) for the executor and the workers."""
    return {**CELERY_SETTINGS, "task_default_queue": cluster.queues.default}


def cluster_executor(cluster: ClusterSettings) -> dg.ExecutorDefinition:
    """The Celery executor of a cluster: steps as tasks, routed by role to its queues."""
    from dagster_celery.core_execution_loop import core_celery_execution_loop
    from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor
    from dagster_celery.tasks import create_task

    from deep_events_dagster.cluster.worker import celery_app
    from deep_events_dagster.dagster_internals import execute_step_args, pack, retry_mode

    class RoutedCeleryExecutor(CeleryExecutor):
        """dagster-celery's executor, sending each step to the queue of its role through an
        app that declares the cluster's queues (the same declaration as the workers')."""

        def execute(self, plan_context, execution_plan):
            app = celery_app(cluster, self.broker, self.backend)
            task = create_task(app)  # once: dagster-celery registers it again for every step

            def submit(_app, plan_context, step, role, priority, known_state):
                queue = queue_name(cluster, role)
                args = execute_step_args(
                    job_origin=plan_context.reconstructable_job.get_python_origin(),
                    run_id=plan_context.dagster_run.run_id,
                    step_keys_to_execute=[step.key],
                    instance_ref=plan_context.instance.get_ref(),
                    retry_mode=plan_context.executor.retries.for_inner_plan(),
                    known_state=known_state,
                    print_serialized_events=True,
                )
                signature = task.si(
                    execute_step_args_packed=pack(args),
                    executable_dict=plan_context.reconstructable_job.to_dict(),
                )
                return signature.apply_async(
                    priority=priority, queue=queue, routing_key=f"{queue}.execute_plan"
                )

            return core_celery_execution_loop(
                plan_context, execution_plan, step_execution_fn=submit
            )

    @dg.executor(
        name="celery",
        config_schema={"retries": CELERY_CONFIG["retries"]},
        requirements=dg.multiple_process_executor_requirements(),
    )
    def routed_celery_executor(init_context):
        import os

        backend = os.environ.get(CLUSTER_BACKEND_ENV) or "rpc://"
        broker = os.environ.get(CLUSTER_BROKER_ENV)
        if not broker:
            raise dg.Failure(
                f"{CLUSTER_BROKER_ENV} is not set in the run's process: start the UI and the "
                "daemon with `deep-events ui`, or export the cluster's variables first"
            )
        return RoutedCeleryExecutor(
            broker=broker,
            backend=backend,
            config_source=celery_app_settings(cluster),
            include=[],
            retries=retry_mode(init_context.executor_config["retries"]),
        )

    return routed_celery_executor


def executor_for(cluster: ClusterSettings) -> dg.ExecutorDefinition:
    """Celery with a broker, else the local (in-process by default) executor."""
    return cluster_executor(cluster) if cluster.distributed else local_executor
