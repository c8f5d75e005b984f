"""The ``<kind>/predictions`` step: the model deployed for a kind (``deploy:`` in
``deep_events.yaml``, written by ``deep-events deploy``) over every frame of an acquisition's
movie — ``predictions_<kind>.csv`` and ``predictions_<kind>.ome.tif`` beside the other derived
files — and, where the acquisition is annotated, the predicted events compared with the
annotated ones: the out-of-sample check, kept beside the movie and in the model folder."""

import dagster as dg
import yaml

from deep_events_dagster.core.acquisitions import movie_in_folder
from deep_events_dagster.core.annotations import find_annotation_files
from deep_events_dagster.core.errors import ConfigurationError, InputError, MovieError
from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.core.metadata import read_db_yaml
from deep_events_dagster.defs.resources import IngestionResource
from deep_events_dagster.defs.training.prediction_report import (
    out_of_sample_record,
    predictions_metadata,
    safe_name,
)
from deep_events_dagster.defs.training.resources import PredictionResource

OUT_OF_SAMPLE_FOLDER = "out_of_sample"


def _failure(exc: Exception) -> dg.Failure:
    return dg.Failure(description=str(exc), allow_retries=False)


def predict_acquisition(
    context: dg.AssetExecutionContext,
    ingestion: IngestionResource,
    prediction: PredictionResource,
    kind: str,
) -> dg.MaterializeResult:
    """Predict the partition's movie with the kind's deployed model; the data version is the
    model's identity."""
    from deep_events_dagster.ml.predict import (
        annotated_events,
        compare_events,
        predict_movie,
    )

    try:
        deployment = prediction.deployment(kind)
    except (InputError, ConfigurationError, ValueError) as exc:
        raise _failure(exc) from exc
    if deployment is None:
        raise dg.Failure(
            description=(
                f"no model deployed for {kind!r}: run `deep-events deploy MODEL_DIR --kind "
                f"{kind}` or add `deploy: {{{kind}: MODEL_DIR}}` to deep_events.yaml"
            ),
            allow_retries=False,
        )
    ref = ingestion.acquisition(context.partition_key)
    layout = ingestion.layout()
    try:
        params = ingestion.ingestion_params()
        movie = movie_in_folder(ref.folder)
        if movie is None:
            raise MovieError(
                ref.folder, "no *.ome.tif / *.ome.tiff / *.ome.zarr movie in this folder"
            )
        out_dir = layout.derived_folder(ref.folder, ref.root)
        out_dir.mkdir(parents=True, exist_ok=True)
        context.log.info(
            f"predicting {movie.name} with {deployment.model_dir} ({deployment.identity})"
        )
        result = predict_movie(
            movie,
            deployment.model_dir,
            out_dir=out_dir,
            kind=kind,
            device=prediction.device,
            precision=prediction.precision,
            max_tile=prediction.max_tile,
            max_link_distance_px=params.max_link_distance_px,
            progress=lambda done, total: (
                context.log.info(f"{done}/{total} frames")
                if done == total or done % 50 == 0
                else None
            ),
        )
        annotated = ()
        comparison = None
        if find_annotation_files(ref.folder, kind):
            db_yaml = layout.db_yaml(ref.folder, ref.root)
            metadata = read_db_yaml(db_yaml) if db_yaml.is_file() else None
            annotated = annotated_events(
                ref.folder,
                kind,
                metadata=metadata,
                root=ref.root,
                max_link_distance_px=params.max_link_distance_px,
                max_gap_frames=params.max_gap_frames,
            )
            comparison = compare_events(
                result.events, annotated, max_link_distance_px=params.max_link_distance_px
            )
    except (InputError, ConfigurationError, FileNotFoundError) as exc:
        raise _failure(exc) from exc
    for note in result.notes:
        context.log.warning(note)

    record = out_of_sample_record(
        context.partition_key, kind, deployment, result, comparison, annotated
    )
    summary_path = out_dir / f"predictions_{kind}.yaml"
    atomic_write_text(summary_path, yaml.safe_dump(record, sort_keys=False))
    kept = deployment.model_dir / OUT_OF_SAMPLE_FOLDER
    kept.mkdir(exist_ok=True)
    atomic_write_text(
        kept / f"{safe_name(context.partition_key)}__{kind}.yaml",
        yaml.safe_dump(record, sort_keys=False),
    )

    metadata = predictions_metadata(movie, kind, deployment, result, annotated, comparison)
    if comparison is not None:
        context.log.info(
            f"{kind}: {comparison.tp} of {comparison.tp + comparison.fn} annotated events "
            f"found, {comparison.fp} predicted events not annotated (F1 {comparison.f1:.3f})"
        )
    return dg.MaterializeResult(data_version=dg.DataVersion(deployment.identity), metadata=metadata)
