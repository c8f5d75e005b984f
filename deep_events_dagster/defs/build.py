"""Assemble the Definitions from platform settings: the ingestion and training packages' assets,
jobs and sensors, the resources configured from ``deep_events.yaml``, and the executor."""

import dagster as dg

from deep_events_dagster.defs.executors import executor_for
from deep_events_dagster.defs.ingestion.assets import (
    acquisition_metadata,
    build_kind_assets,
    legacy_events,
    raw_movie,
)
from deep_events_dagster.defs.ingestion.jobs import ingest_job, legacy_import_job
from deep_events_dagster.defs.ingestion.sensors import build_acquisition_sensor
from deep_events_dagster.defs.resources import CatalogResource, IngestionResource
from deep_events_dagster.defs.training.assets import (
    build_prediction_assets,
    build_training_set_asset,
    model_evaluation,
    model_exports,
    trained_model,
)
from deep_events_dagster.defs.training.jobs import predict_job, train_job
from deep_events_dagster.defs.training.resources import PredictionResource, TrainingResource
from deep_events_dagster.defs.training.sensors import (
    build_predictions_sensor,
    build_training_sensor,
)
from deep_events_dagster.settings.platform import CATALOG_URI_ENV, HOME_ENV, PlatformSettings


def build_definitions(settings: PlatformSettings, *, home_from_env: bool = False) -> dg.Definitions:
    """All assets, jobs and resources for the given settings.

    ``home_from_env`` makes resources read the home through ``EnvVar`` (what the UI's
    code location uses), so the Dagster UI shows the variable rather than a path baked in.
    """
    assets = [raw_movie, acquisition_metadata, legacy_events, trained_model]
    assets.append(build_training_set_asset(settings.kinds))
    assets.append(model_evaluation)
    assets.append(model_exports)
    for kind in settings.kinds:
        assets.extend(build_kind_assets(kind))
        assets.extend(build_prediction_assets(kind))
    home: str | dg.EnvVar = dg.EnvVar(HOME_ENV) if home_from_env else str(settings.home)
    ingestion = IngestionResource.from_settings(settings, home=home)
    uri: str | dg.EnvVar = dg.EnvVar(CATALOG_URI_ENV) if settings.catalog_uri_from_env else ""
    if not settings.catalog_uri_from_env and settings.catalog_uri:
        uri = settings.catalog_uri
    catalog = CatalogResource(home=home, uri=uri, single_host=settings.cluster.distributed)
    sensor = build_acquisition_sensor(
        roots=settings.roots,
        kinds=settings.kinds,
        quiet_seconds=settings.quiet_seconds,
        exclude=[settings.output_root] if settings.output_root else [],
        interval_seconds=settings.sensor_interval_seconds,
    )
    return dg.Definitions(
        assets=assets,
        executor=executor_for(settings.cluster),
        jobs=[ingest_job, legacy_import_job, train_job, predict_job],
        sensors=[sensor, build_training_sensor(), build_predictions_sensor(settings.kinds)],
        resources={
            "ingestion": ingestion,
            "catalog": catalog,
            "training": TrainingResource(
                home=home,
                settings_dir=str(settings.training_settings_dir),
                device=settings.device,
            ),
            "prediction": PredictionResource(home=home),
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
        },
    )
