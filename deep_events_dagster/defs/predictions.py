"""Predictions: the deployed model of each annotation kind over whole movies.

``<kind>/predictions`` (acquisition partitions) runs the model deployed for ``<kind>``
(``deploy:`` in ``deep_events.yaml``, written by ``deep-events deploy``) over every frame of the
acquisition's movie, writes ``predictions_<kind>.csv`` and ``predictions_<kind>.ome.tif`` beside
the other derived files, and — where the acquisition is annotated — compares the predicted events
with the annotated ones: the out-of-sample check. The ``predictions_sensor`` requests it for
every ingested acquisition whenever a model is deployed, a new acquisition is ingested, or its
movie changes.
"""

import re
from pathlib import Path

import dagster as dg
import numpy as np
import yaml

from deep_events_dagster.core.acquisitions import movie_in_folder
from deep_events_dagster.core.annotations import find_annotation_files
from deep_events_dagster.core.crops import MovieReader
from deep_events_dagster.core.errors import ConfigurationError, InputError, MovieError
from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.core.metadata import read_db_yaml
from deep_events_dagster.core.thumbnails import (
    downsample_factor,
    draw_boxes,
    encode_png,
    markdown_image,
    to_display,
)
from deep_events_dagster.defs.partitions import ACQUISITIONS, acquisitions_partitions
from deep_events_dagster.defs.resources import IngestionResource

PREDICTIONS_GROUP = "predictions"
PREDICTIONS_JOB = "predict"
OUT_OF_SAMPLE_FOLDER = "out_of_sample"
_PREDICTED_COLOUR = (40, 120, 255)
_ANNOTATED_COLOUR = (255, 60, 60)


class PredictionResource(dg.ConfigurableResource):
    """Which model is deployed per annotation kind (read from the home's ``deep_events.yaml``
    when a run starts, so deploying needs no restart), and where predictions run."""

    home: str
    device: str = "cpu"
    # auto: the backend's fast inference path (bfloat16 where the CPU has it); float32: exact
    precision: str = "auto"
    max_tile: int = 2048

    def deployment(self, kind: str):
        """The :class:`~deep_events_dagster.ml.deploy.Deployment` of ``kind``, or None."""
        from deep_events_dagster.ml.deploy import read_deployments

        return read_deployments(Path(self.home)).get(kind)


def _failure(exc: Exception) -> dg.Failure:
    return dg.Failure(description=str(exc), allow_retries=False)


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_") or "acquisition"


def _thumbnail(movie: Path, frame: int, events, annotated, max_side: int = 512) -> bytes:
    """The movie's highest-scoring frame, predicted events (blue) and annotated ones (red)."""
    with MovieReader(movie) as reader:
        image = reader.read_frame(frame)
    if image.ndim == 3:  # T×C×Y×X movies give C×Y×X
        image = image[0]
    scale = downsample_factor(*image.shape, max_side)
    grey = to_display(image[::scale, ::scale])
    half = 16
    boxes = [
        ((e.x - half, e.y - half, e.x + half, e.y + half), _PREDICTED_COLOUR)
        for e in events
        if e.frames[0] <= frame < e.frames[1]
    ]
    boxes += [
        ((a.x - half - 4, a.y - half - 4, a.x + half + 4, a.y + half + 4), _ANNOTATED_COLOUR)
        for a in annotated
        if a.frames[0] <= frame < a.frames[1]
    ]
    return encode_png(draw_boxes(grey, boxes, scale=scale))


def _events_markdown(prediction, comparison) -> str:
    lines = [
        "| predicted event | frames | y | x | score | annotated match |",
        "|---|---|---|---|---|---|",
    ]
    matched = {id(p): a for p, a in comparison.matches} if comparison else {}
    for i, event in enumerate(prediction.events[:60], start=1):
        match = matched.get(id(event))
        shown = "—" if match is None else f"frames {match.frames[0]}–{match.frames[1] - 1}"
        lines.append(
            f"| {i} | {event.frames[0]}–{event.frames[1] - 1} | {event.y} | {event.x} | "
            f"{event.score:.3f} | {shown} |"
        )
    if len(prediction.events) > 60:
        lines.append(f"| … {len(prediction.events) - 60} more | | | | | |")
    return "\n".join(lines)


def _out_of_sample_record(key: str, kind: str, deployment, prediction, comparison) -> dict:
    record = {
        "acquisition": key,
        "kind": kind,
        "movie": str(prediction.movie),
        "model_identity": deployment.identity,
        "threshold": float(prediction.threshold),
        "frames": len(prediction.frames),
        "predicted_events": len(prediction.events),
    }
    if comparison is not None:
        record.update(
            annotated_events=comparison.tp + comparison.fn,
            tp=comparison.tp,
            fp=comparison.fp,
            fn=comparison.fn,
            precision=round(comparison.precision, 6),
            recall=round(comparison.recall, 6),
            f1=round(comparison.f1, 6),
        )
    return record


def build_prediction_assets(kind: str) -> list[dg.AssetsDefinition]:
    """``<kind>/predictions`` for one annotation kind."""

    @dg.asset(
        key=dg.AssetKey([kind, "predictions"]),
        partitions_def=acquisitions_partitions,
        group_name=PREDICTIONS_GROUP,
        deps=[dg.AssetKey("raw_movie"), dg.AssetKey("acquisition_metadata")],
        code_version="1",
        kinds={"tiff", "csv"},
        description=(
            f"The model deployed for `{kind}` over the whole movie: a score per frame (the "
            f"maximum probability), `predictions_{kind}.ome.tif` (probabilities × 255) and "
            f"`predictions_{kind}.csv`; predicted events are frames above the model's "
            "threshold linked over time. Where the acquisition has annotations of this kind, "
            "predicted and annotated events are compared (the out-of-sample check). Its data "
            "version is the deployed model's identity: deploying another model re-runs it."
        ),
    )
    def predictions(
        context: dg.AssetExecutionContext,
        ingestion: IngestionResource,
        prediction: PredictionResource,
    ) -> dg.MaterializeResult:
        from deep_events_dagster.ml.plots import score_timeline_png
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
                max_link_distance_px=ingestion.max_link_distance_px,
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
                    max_link_distance_px=ingestion.max_link_distance_px,
                    max_gap_frames=ingestion.max_gap_frames,
                )
                comparison = compare_events(
                    result.events, annotated, max_link_distance_px=ingestion.max_link_distance_px
                )
        except (InputError, ConfigurationError, FileNotFoundError) as exc:
            raise _failure(exc) from exc
        for note in result.notes:
            context.log.warning(note)

        record = _out_of_sample_record(context.partition_key, kind, deployment, result, comparison)
        summary_path = out_dir / f"predictions_{kind}.yaml"
        atomic_write_text(summary_path, yaml.safe_dump(record, sort_keys=False))
        kept = deployment.model_dir / OUT_OF_SAMPLE_FOLDER
        kept.mkdir(exist_ok=True)
        atomic_write_text(
            kept / f"{_safe_name(context.partition_key)}__{kind}.yaml",
            yaml.safe_dump(record, sort_keys=False),
        )

        scores = np.array([f.score for f in result.frames], dtype=np.float64)
        best_frame = int(np.argmax(scores)) if len(scores) else 0
        timeline = score_timeline_png(
            scores,
            result.threshold,
            annotated=[a.frames for a in annotated],
            predicted=[e.frames for e in result.events],
            title=f"{movie.name}: {kind} score per frame",
        )
        metadata: dict = {
            "model_dir": dg.MetadataValue.path(str(deployment.model_dir)),
            "model_identity": deployment.identity,
            "threshold": float(result.threshold),
            "threshold_source": result.threshold_source,
            "frames": len(result.frames),
            "frame_step": result.frame_step,
            "predicted_events": len(result.events),
            "frames_above_threshold": int(np.count_nonzero(scores > result.threshold)),
            "max_score": float(scores.max()) if len(scores) else 0.0,
            "seconds": round(result.seconds, 2),
            "scores_csv": dg.MetadataValue.path(str(result.csv_path)),
            "score_over_time": dg.MetadataValue.md(
                markdown_image(timeline, "score per frame, threshold, annotated events")
            ),
            "thumbnail": dg.MetadataValue.md(
                markdown_image(
                    _thumbnail(movie, best_frame, result.events, annotated),
                    f"frame {best_frame}: predicted (blue) and annotated (red) events",
                )
            ),
            "events": dg.MetadataValue.md(_events_markdown(result, comparison)),
        }
        if result.movie_out_path is not None:
            metadata["probability_movie"] = dg.MetadataValue.path(str(result.movie_out_path))
        if comparison is not None:
            metadata.update(
                annotated_events=comparison.tp + comparison.fn,
                tp=comparison.tp,
                fp=comparison.fp,
                fn=comparison.fn,
                precision=comparison.precision,
                recall=comparison.recall,
                f1=comparison.f1,
                comparison=dg.MetadataValue.md(
                    "| | annotated | not annotated |\n|---|---|---|\n"
                    f"| predicted | {comparison.tp} (found) | {comparison.fp} |\n"
                    f"| not predicted | {comparison.fn} (missed) | — |\n\n"
                    f"precision {comparison.precision:.3f}, recall {comparison.recall:.3f}, "
                    f"F1 {comparison.f1:.3f}"
                ),
            )
            context.log.info(
                f"{kind}: {comparison.tp} of {comparison.tp + comparison.fn} annotated events "
                f"found, {comparison.fp} predicted events not annotated (F1 {comparison.f1:.3f})"
            )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(deployment.identity), metadata=metadata
        )

    return [predictions]


predict_job = dg.define_asset_job(
    name=PREDICTIONS_JOB,
    selection=dg.AssetSelection.groups(PREDICTIONS_GROUP),
    partitions_def=acquisitions_partitions,
    description="Run the deployed model of each annotation kind over one acquisition's movie.",
)


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
