"""The training steps behind ``training_set`` (catalog events → content-addressed train/eval
stacks) and ``trained_model`` (the backend's trainer in its own process, through Dagster Pipes),
each leaving a pointer file in the run folder for the next step."""

import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from deep_events_dagster.cluster.checks import require_visible
from deep_events_dagster.core.errors import ConfigurationError, InputError
from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.core.thumbnails import encode_png, markdown_image
from deep_events_dagster.defs.resources import CatalogResource
from deep_events_dagster.defs.training.resources import (
    TrainingResource,
    read_pointer,
    write_pointer,
)


def make_training_set(
    context: dg.AssetExecutionContext, training: TrainingResource, catalog: CatalogResource
) -> dg.MaterializeResult:
    """Build (or reuse) the run's training set, record new splits in the catalog and point the
    run folder's ``training_set.yaml`` at it."""
    from deep_events_dagster.core.training_set import build_training_set

    run = training.run(context.partition_key)
    spec = run.spec
    for note in run.settings.effect_notes(training_sets=training.training_root(spec)):
        context.log.info(note)
    db = catalog.open()
    try:
        documents = db.find(spec.collection, spec.db_prompt)
        context.log.info(f"{len(documents)} documents match {spec.db_prompt} in {spec.collection}")
        if not documents:
            raise dg.Failure(
                description=f"{spec.file}: db_prompt {spec.db_prompt} matches no document in "
                f"collection {spec.collection} ({db.describe()})",
                allow_retries=False,
            )
        try:
            result = build_training_set(
                documents,
                params=run.training_set,  # validated when the file was read
                out_root=training.training_root(spec),
                db_prompt=spec.db_prompt,
                collection=spec.collection,
            )
        except (InputError, ConfigurationError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        if result.new_splits:
            db.set_field(spec.collection, result.new_splits, "dataset_split")
    finally:
        db.close()
    run_folder = training.run_folder(spec)
    write_pointer(
        run_folder / "training_set.yaml",
        {"path": str(result.path), "id": result.id, "partition": context.partition_key},
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(result.id), metadata=_training_set_metadata(result)
    )


def _training_set_metadata(result: Any) -> dict[str, Any]:
    """What the UI shows of a training set: sizes, balance, skipped events, a montage."""
    from deep_events_dagster.core.training_set import montage

    by_acquisition = "\n".join(
        f"| {key} | {n} |" for key, n in sorted(result.counts_by_acquisition.items())
    )
    ratio = result.positives / result.negatives if result.negatives else float("inf")
    return {
        "path": dg.MetadataValue.path(str(result.path)),
        "id": result.id,
        "reused": result.reused,
        "train_samples": result.n_train,
        "eval_samples": result.n_eval,
        "positives": result.positives,
        "negatives": result.negatives,
        "positive_negative_ratio": round(ratio, 3) if ratio != float("inf") else -1.0,
        "skipped": str(dict(result.skipped)) if result.skipped else "none",
        "skipped_by_reason": dg.MetadataValue.md(
            "| reason | events |\n|---|---|\n"
            + "\n".join(f"| {reason} | {n} |" for reason, n in result.skipped.items())
            if result.skipped
            else "no event skipped"
        ),
        "train_positives": result.train_positives,
        "eval_positives": result.eval_positives,
        "by_acquisition": dg.MetadataValue.md(
            f"| acquisition | events |\n|---|---|\n{by_acquisition}"
        ),
        "by_label": str(dict(result.counts_by_label)),
        "montage": dg.MetadataValue.md(
            markdown_image(encode_png(montage(result.path)), "training samples")
        ),
    }


def train_model(
    context: dg.AssetExecutionContext,
    training: TrainingResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """Train a new model folder on the run's training set in a subprocess (its trainer reports
    the materialization through Pipes) and point the run folder's ``model.yaml`` at it."""
    from deep_events_dagster.ml.backend import get_backend
    from deep_events_dagster.ml.model_folder import REQUESTED_SETTINGS_FILE

    spec = training.spec(context.partition_key)
    backend = get_backend(spec.backend)
    run_folder = training.run_folder(spec)
    pointer = read_pointer(run_folder / "training_set.yaml", "training set")
    try:  # on a cluster this step runs on the GPU machine: it must see the shared folders
        require_visible({"training set": Path(pointer["path"])})
    except ConfigurationError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    stamp = time.strftime("%Y%m%d-%H%M%S")
    model_dir = run_folder / f"model_{stamp}_{pointer['id'][:8]}"
    model_dir.mkdir(parents=True, exist_ok=True)
    settings_path = model_dir / REQUESTED_SETTINGS_FILE
    atomic_write_text(
        settings_path,
        yaml.safe_dump(training.run(context.partition_key).settings.as_dict(), sort_keys=False),
    )
    command = [
        sys.executable,
        "-m",
        backend.train_module,
        "--training-set",
        pointer["path"],
        "--model-dir",
        str(model_dir),
        "--settings",
        str(settings_path),
        "--device",
        training.device,
        "--home",
        training.home,
    ]
    context.log.info("training: " + " ".join(command))
    result = pipes_subprocess_client.run(command=command, context=context).get_materialize_result()
    write_pointer(
        run_folder / "model.yaml",
        {"path": str(model_dir), "training_set": pointer["path"], "training_set_id": pointer["id"]},
    )
    return result
