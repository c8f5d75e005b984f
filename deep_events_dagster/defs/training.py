"""Training assets: a partition per (settings file, prompt) → training set → model → evaluation."""

import sys
import time
from pathlib import Path

import dagster as dg
import yaml

from deep_events_dagster.cluster import require_visible
from deep_events_dagster.core.errors import ConfigurationError, InputError
from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.core.thumbnails import encode_png, markdown_image
from deep_events_dagster.defs.executors import GPU_QUEUE_TAGS
from deep_events_dagster.defs.resources import CatalogResource

TRAINING_GROUP = "training"
TRAINING_RUNS = "training_runs"
GPU_POOL = "gpu"
# With a cluster the training step goes to the Celery queue of the GPU workers (GPU_QUEUE_TAGS);
# under a Kubernetes run launcher (dagster-k8s, not tested here) the step's pod requests a GPU.
GPU_OP_TAGS = {
    **GPU_QUEUE_TAGS,
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
    },
}

training_runs_partitions = dg.DynamicPartitionsDefinition(name=TRAINING_RUNS)


class TrainingResource(dg.ConfigurableResource):
    """Where training settings files live and which device training uses."""

    home: str
    settings_dir: str = ""
    device: str = "auto"

    def settings_folder(self) -> Path:
        """Folder of training settings files (default ``<home>/training``)."""
        return Path(self.settings_dir) if self.settings_dir else Path(self.home) / "training"

    def runs(self):
        """Every (file, prompt) training run of the settings folder's valid files, with its
        validated settings, and one line per file left out (unreadable, malformed or invalid
        settings; see ``ml.config.load_validated_training_folder``)."""
        from deep_events_dagster.ml.config import load_validated_training_folder

        return load_validated_training_folder(self.settings_folder())

    def spec(self, partition_key: str):
        """The training run behind a partition key (``core.training_settings.TrainingRunSpec``)."""
        return self.run(partition_key).spec

    def run(self, partition_key: str):
        """The training run behind a partition key with its validated settings
        (``ml.config.ValidatedRun``); a ``dg.Failure`` naming the file's problem when its
        file is gone or no longer valid."""
        runs = self.runs()
        run = runs.run(partition_key)
        if run is not None:
            return run
        stem = partition_key.split("/", 1)[0]
        related = [p for p in runs.problems if Path(p.split(": ", 1)[0]).stem == stem]
        related = related or [p for p in runs.problems if stem in p]
        raise dg.Failure(
            description=(
                f"training run {partition_key!r} is not defined by any settings file in "
                f"{self.settings_folder()}"
                + (f": {related[0]}" if related else " (was its file or prompt removed?)")
            ),
            allow_retries=False,
        )

    def run_folder(self, spec) -> Path:
        """Folder holding this run's pointers and models."""
        base = Path(spec.folder) if spec.folder else Path(self.home) / "training_data"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.partition_key)
        return base / "runs" / safe

    def training_root(self, spec) -> Path:
        """Folder holding content-addressed training sets."""
        base = Path(spec.folder) if spec.folder else Path(self.home) / "training_data"
        return base / "training_sets"


def _read_pointer(path: Path, what: str) -> dict:
    if not path.is_file():
        raise dg.Failure(description=f"{path}: no {what} yet; materialise it first")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _write_pointer(path: Path, data: dict) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


@dg.asset(
    partitions_def=training_runs_partitions,
    group_name=TRAINING_GROUP,
    code_version="1",
    kinds={"numpy"},
)
def training_set(
    context: dg.AssetExecutionContext, training: TrainingResource, catalog: CatalogResource
) -> dg.MaterializeResult:
    """Events selected by the run's `db_prompt` from its catalog collection, split
    deterministically per event (kept in the catalog as `dataset_split`), cut into windows of
    `n_timepoints` frames (no wrap-around), normalised per frame, stored as train/eval stacks.
    Content-addressed: the same events and parameters reuse the same folder."""
    from deep_events_dagster.core.training_set import build_training_set, montage

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
                settings=spec.settings,
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
    _write_pointer(
        run_folder / "training_set.yaml",
        {"path": str(result.path), "id": result.id, "partition": context.partition_key},
    )
    by_acquisition = "\n".join(
        f"| {key} | {n} |" for key, n in sorted(result.counts_by_acquisition.items())
    )
    ratio = result.positives / result.negatives if result.negatives else float("inf")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(result.id),
        metadata={
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
        },
    )


@dg.asset(
    partitions_def=training_runs_partitions,
    group_name=TRAINING_GROUP,
    deps=[training_set],
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    code_version="2",
    kinds={"pytorch", "tensorflow"},
)
def trained_model(
    context: dg.AssetExecutionContext,
    training: TrainingResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """The U-Net (or bottleneck ConvLSTM) trained on the training set by the settings'
    backend (PyTorch or TensorFlow/Keras) in its own process (Dagster Pipes), on a free GPU
    when there is one (one model per GPU), else the CPU. The model folder
    (``ml.model_folder``) holds the settings, the weights, history.csv, logs/ (TensorBoard)
    and the training set reference."""
    from deep_events_dagster.ml.backend import get_backend
    from deep_events_dagster.ml.model_folder import REQUESTED_SETTINGS_FILE

    spec = training.spec(context.partition_key)
    backend = get_backend(spec.backend)
    run_folder = training.run_folder(spec)
    pointer = _read_pointer(run_folder / "training_set.yaml", "training set")
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
    _write_pointer(
        run_folder / "model.yaml",
        {"path": str(model_dir), "training_set": pointer["path"], "training_set_id": pointer["id"]},
    )
    return result


@dg.asset(
    partitions_def=training_runs_partitions,
    group_name=TRAINING_GROUP,
    deps=[trained_model],
    op_tags=GPU_QUEUE_TAGS,  # predicts on the GPU the model was trained on (with a cluster)
    code_version="2",
    kinds={"pytorch", "tensorflow"},
)
def model_evaluation(
    context: dg.AssetExecutionContext, training: TrainingResource
) -> dg.MaterializeResult:
    """Predictions on the held-out events, evaluated as the microscope decides: an event is
    predicted positive when the maximum of its probability maps is > the threshold. Threshold
    sweep (0.05–1.0, 96 steps) of precision, recall, F1, MCC, weighted MCC, kappa, specificity,
    NPV and F-beta (β = 0.1) per event, per frame and per pixel; the threshold maximising
    event-level F-beta is kept. Writes evaluation.yaml and perf.png; lists the models trained
    under the settings file's folder with their F1, threshold and which one is deployed."""
    from deep_events_dagster.ml.deploy import list_models, models_markdown
    from deep_events_dagster.ml.evaluate import evaluate_model_folder, units_markdown

    spec = training.spec(context.partition_key)
    pointer = _read_pointer(training.run_folder(spec) / "model.yaml", "trained model")
    summary = evaluate_model_folder(Path(pointer["path"]), device=training.device)
    values = summary.values
    try:
        runs = training.run_folder(spec).parent  # every run of the settings file's folder
        models = models_markdown(list_models([runs], home=training.home))
    except (InputError, ConfigurationError, ValueError) as exc:  # a broken deploy: entry
        models = f"models not listed: {exc}"
    return dg.MaterializeResult(
        metadata={
            "evaluation": dg.MetadataValue.path(str(summary.evaluation_path)),
            "unit": values["unit"],
            "grouping": values["grouping"],
            "threshold": values["threshold"],
            "precision": values["precision"],
            "recall": values["recall"],
            "f1": values["f1"],
            "fbeta": values["fbeta"],
            "mcc": values["mcc"],
            "tp": values["tp"],
            "fp": values["fp"],
            "fn": values["fn"],
            "tn": values["tn"],
            "n_events": values["n_events"],
            "n_positive_events": values["n_positive_events"],
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
    )


@dg.asset(
    partitions_def=training_runs_partitions,
    group_name=TRAINING_GROUP,
    deps=[model_evaluation],
    code_version="1",
    kinds={"keras", "onnx"},
)
def model_exports(
    context: dg.AssetExecutionContext, training: TrainingResource
) -> dg.MaterializeResult:
    """The model in the formats a microscope loads: Keras ``model.h5`` (N×H×W×T in,
    probabilities out), ``model.onnx`` and, for torch models, ``model.torchscript.pt``. Each
    file is loaded back and checked against the trained model, and its event decisions on the
    held-out samples at the evaluation's threshold must equal those of ``evaluation.yaml``.
    The list of exports is also recorded on ``trained_model`` (an observation of the same
    partition), so the model's page shows the files a microscope can load."""
    from deep_events_dagster.ml.export import export_model

    spec = training.spec(context.partition_key)
    pointer = _read_pointer(training.run_folder(spec) / "model.yaml", "trained model")
    report = export_model(Path(pointer["path"]), log=context.log.info)
    listing: dict = {"exports": dg.MetadataValue.md(report.markdown())}
    for entry in report.results:
        if entry.status == "ok":
            listing[f"{entry.format}_path"] = dg.MetadataValue.path(str(entry.path))
            listing[f"{entry.format}_bytes"] = entry.bytes
    context.log_event(
        dg.AssetObservation(
            asset_key=trained_model.key,
            partition=context.partition_key,
            metadata={**listing, "model_dir": dg.MetadataValue.path(pointer["path"])},
        )
    )
    return dg.MaterializeResult(metadata=listing)


train_job = dg.define_asset_job(
    name="train",
    selection=dg.AssetSelection.groups(TRAINING_GROUP),
    partitions_def=training_runs_partitions,
    description="Build the training set, train the model, evaluate it, export it.",
)


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
