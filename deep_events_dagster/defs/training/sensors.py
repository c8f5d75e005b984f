"""The training package's sensors: ``training_settings_sensor`` (each settings file's prompts
become training runs, run when new or changed) and ``predictions_sensor`` (the deployed model
of each kind over every ingested acquisition)."""

from pathlib import Path

import dagster as dg

from deep_events_dagster.core.errors import ConfigurationError, InputError
from deep_events_dagster.defs.partitions import (
    ACQUISITIONS,
    TRAINING_RUNS,
    training_runs_partitions,
)
from deep_events_dagster.defs.training.jobs import predict_job, train_job
from deep_events_dagster.defs.training.resources import PredictionResource, TrainingResource


def build_training_sensor(interval_seconds: int = 15) -> dg.SensorDefinition:
    """Registers each (settings file, prompt) as a training run; runs it when new or changed."""

    @dg.sensor(
        name="training_settings_sensor",
        job=train_job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches the training settings folder (<home>/training by default). Each db_prompt "
            "of each settings file is a partition of `training_runs`; a run is requested when "
            "one is new or its prompt/settings changed. Each file is validated when read: a "
            "file with a wrong key or value is logged (one line) and left out; the other "
            "files' runs go ahead."
        ),
    )
    def training_settings_sensor(context: dg.SensorEvaluationContext, training: TrainingResource):
        folder = training.settings_folder()
        if not folder.is_dir():
            return dg.SkipReason(f"no training settings folder {folder}")
        runs = training.runs()
        for problem in runs.problems:  # the other files' runs go ahead
            context.log.error(problem)
        specs = runs.specs
        if not specs and runs.problems:
            return dg.SkipReason("; ".join(runs.problems))
        known = set(context.instance.get_dynamic_partitions(TRAINING_RUNS))
        new = [s.partition_key for s in specs if s.partition_key not in known]
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{s.partition_key}@{s.spec_fingerprint}",
                    partition_key=s.partition_key,
                )
                for s in specs
            ],
            dynamic_partitions_requests=(
                [training_runs_partitions.build_add_request(new)] if new else []
            ),
        )

    return training_settings_sensor


def build_predictions_sensor(
    kinds: list[str] | tuple[str, ...], interval_seconds: int = 15
) -> dg.SensorDefinition:
    """Requests ``<kind>/predictions`` of every ingested acquisition when a model is deployed
    for ``<kind>``, when another model is deployed, and when an acquisition's movie is
    (re-)ingested: the run key holds the model's identity and the movie's latest
    ``raw_movie`` materialization."""
    kind_list = list(kinds)

    @dg.sensor(
        name="predictions_sensor",
        job=predict_job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Runs the deployed model over every ingested acquisition: new acquisitions get "
            "predictions, and deploying another model (deep-events deploy) re-runs them all."
        ),
    )
    def predictions_sensor(context: dg.SensorEvaluationContext, prediction: PredictionResource):
        from deep_events_dagster.ml.deploy import read_deployments

        try:
            deployments = read_deployments(Path(prediction.home))
        except (InputError, ConfigurationError, ValueError) as exc:
            return dg.SkipReason(f"deploy: in deep_events.yaml is not usable: {exc}")
        deployed = {k: d for k, d in deployments.items() if k in kind_list}
        if not deployed:
            return dg.SkipReason("no model deployed (deep-events deploy MODEL_DIR --kind KIND)")
        known = set(context.instance.get_dynamic_partitions(ACQUISITIONS))
        ingested = context.instance.event_log_storage.get_latest_storage_id_by_partition(
            dg.AssetKey("raw_movie"), dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        requests = [
            dg.RunRequest(
                run_key=f"{kind}|{deployment.identity}|{partition}|{storage_id}",
                partition_key=partition,
                asset_selection=[dg.AssetKey([kind, "predictions"])],
                tags={"deep_events/model": deployment.identity},
            )
            for kind, deployment in sorted(deployed.items())
            for partition, storage_id in sorted(ingested.items())
            if partition in known
        ]
        return dg.SensorResult(run_requests=requests)

    return predictions_sensor
