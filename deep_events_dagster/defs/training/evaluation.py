"""The steps behind ``model_evaluation`` (held-out predictions, threshold sweep, the models of
the settings file's folder and which one is deployed) and ``model_exports`` (the checked files a
microscope loads, also listed on ``trained_model``)."""

from pathlib import Path
from typing import Any

import dagster as dg

from deep_events_dagster.core.errors import ConfigurationError, InputError
from deep_events_dagster.core.thumbnails import markdown_image
from deep_events_dagster.defs.training.resources import TrainingResource, read_pointer

# evaluation.yaml values recorded as they are
EVALUATION_FIELDS = (
    "unit",
    "grouping",
    "threshold",
    "precision",
    "recall",
    "f1",
    "fbeta",
    "mcc",
    "tp",
    "fp",
    "fn",
    "tn",
    "n_events",
    "n_positive_events",
)


def evaluate_model(
    context: dg.AssetExecutionContext, training: TrainingResource
) -> dg.MaterializeResult:
    """Evaluate the run's latest model on its held-out samples (``evaluation.yaml``,
    ``perf.png``)."""
    from deep_events_dagster.ml.evaluate import evaluate_model_folder

    spec = training.spec(context.partition_key)
    pointer = read_pointer(training.run_folder(spec) / "model.yaml", "trained model")
    summary = evaluate_model_folder(Path(pointer["path"]), device=training.device)
    runs = training.run_folder(spec).parent  # every run of the settings file's folder
    return dg.MaterializeResult(metadata=_evaluation_metadata(summary, _models(runs, training)))


def _models(runs: Path, training: TrainingResource) -> str:
    """Markdown list of the models trained under ``runs`` (F1, threshold, deployed)."""
    from deep_events_dagster.ml.deploy import list_models, models_markdown

    try:
        return models_markdown(list_models([runs], home=training.home))
    except (InputError, ConfigurationError, ValueError) as exc:  # a broken deploy: entry
        return f"models not listed: {exc}"


def _evaluation_metadata(summary: Any, models: str) -> dict[str, Any]:
    from deep_events_dagster.ml.evaluate import units_markdown

    values = summary.values
    return {
        "evaluation": dg.MetadataValue.path(str(summary.evaluation_path)),
        **{field: values[field] for field in EVALUATION_FIELDS},
        "frame_f1": values["frame"]["f1"],
        "pixel_f1": values["pixel"]["f1"],
        "units": dg.MetadataValue.md(units_markdown(values)),
        "models": dg.MetadataValue.md(models),
        "performance": dg.MetadataValue.md(
            markdown_image(
                summary.plot_png or summary.plot_path.read_bytes(),
                "event-level metrics vs threshold, event max-score histogram",
            )
        ),
    }


def export_model_files(
    context: dg.AssetExecutionContext, training: TrainingResource, trained_model: dg.AssetKey
) -> dg.MaterializeResult:
    """Export the run's latest model and check each file; the list of exports is also
    observed on ``trained_model`` (same partition)."""
    from deep_events_dagster.ml.export import export_model

    spec = training.spec(context.partition_key)
    pointer = read_pointer(training.run_folder(spec) / "model.yaml", "trained model")
    report = export_model(Path(pointer["path"]), log=context.log.info)
    listing: dict = {"exports": dg.MetadataValue.md(report.markdown())}
    for entry in report.results:
        if entry.status == "ok":
            listing[f"{entry.format}_path"] = dg.MetadataValue.path(str(entry.path))
            listing[f"{entry.format}_bytes"] = entry.bytes
    context.log_event(
        dg.AssetObservation(
            asset_key=trained_model,
            partition=context.partition_key,
            metadata={**listing, "model_dir": dg.MetadataValue.path(pointer["path"])},
        )
    )
    return dg.MaterializeResult(metadata=listing)
