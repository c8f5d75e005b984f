"""The training assets, one training-run partition each: ``training_set`` → ``trained_model``
→ ``model_evaluation`` → ``model_exports``; and per annotation kind ``<kind>/predictions``
(acquisition partitions), the model deployed for the kind over a whole movie.

This module declares them — keys, dependencies, pools and op tags, code versions,
descriptions — and each step's work lives in a sibling module: ``model`` (training set,
training), ``evaluation`` (evaluation, exports), ``predictions`` and ``prediction_report``.
"""

from collections.abc import Sequence

import dagster as dg

from deep_events_dagster.defs.executors import GPU_QUEUE_TAGS
from deep_events_dagster.defs.partitions import acquisitions_partitions, training_runs_partitions
from deep_events_dagster.defs.resources import CatalogResource, IngestionResource
from deep_events_dagster.defs.training.evaluation import evaluate_model, export_model_files
from deep_events_dagster.defs.training.model import make_training_set, train_model
from deep_events_dagster.defs.training.predictions import predict_acquisition
from deep_events_dagster.defs.training.resources import PredictionResource, TrainingResource

TRAINING_GROUP = "training"
PREDICTIONS_GROUP = "predictions"
GPU_POOL = "gpu"
# With a cluster the training step goes to the Celery queue of the GPU workers (GPU_QUEUE_TAGS);
# under a Kubernetes run launcher (dagster-k8s, not tested here) the step's pod requests a GPU.
GPU_OP_TAGS = {
    **GPU_QUEUE_TAGS,
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
    },
}


def build_training_set_asset(kinds: Sequence[str]) -> dg.AssetsDefinition:
    """``training_set``, downstream of the catalog it queries: every kind's
    ``<kind>/event_catalog`` (all acquisitions) and ``legacy_events``, so the UI's lineage runs
    from each raw movie to each model."""

    @dg.asset(
        name="training_set",
        partitions_def=training_runs_partitions,
        group_name=TRAINING_GROUP,
        deps=[
            *(
                dg.AssetDep(
                    dg.AssetKey([kind, "event_catalog"]),
                    partition_mapping=dg.AllPartitionMapping(),
                )
                for kind in kinds
            ),
            dg.AssetKey("legacy_events"),
        ],
        code_version="1",
        kinds={"numpy"},
    )
    def training_set(
        context: dg.AssetExecutionContext, training: TrainingResource, catalog: CatalogResource
    ) -> dg.MaterializeResult:
        """Events selected by the run's `db_prompt` from its catalog collection, split
        deterministically per event (kept in the catalog as `dataset_split`), cut into windows
        of `n_timepoints` frames (no wrap-around), normalised per frame, stored as train/eval
        stacks. Content-addressed: the same events and parameters reuse the same folder."""
        return make_training_set(context, training, catalog)

    return training_set


@dg.asset(
    partitions_def=training_runs_partitions,
    group_name=TRAINING_GROUP,
    deps=[dg.AssetKey("training_set")],
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
    return train_model(context, training, pipes_subprocess_client)


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
    return evaluate_model(context, training)


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
    return export_model_files(context, training, trained_model.key)


def build_prediction_assets(kind: str) -> list[dg.AssetsDefinition]:
    """``<kind>/predictions`` for one annotation kind."""

    @dg.asset(
        key=dg.AssetKey([kind, "predictions"]),
        partitions_def=acquisitions_partitions,
        group_name=PREDICTIONS_GROUP,
        deps=[
            dg.AssetKey("raw_movie"),
            dg.AssetKey("acquisition_metadata"),
            # the deployed model comes from one of the training runs: lineage in the UI
            dg.AssetDep(model_exports, partition_mapping=dg.AllPartitionMapping()),
        ],
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
        return predict_acquisition(context, ingestion, prediction, kind)

    return [predictions]
