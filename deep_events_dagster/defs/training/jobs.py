"""The training package's jobs: ``train`` (a training run through every training asset) and
``predict`` (the deployed models over one acquisition)."""

import dagster as dg

from deep_events_dagster.defs.partitions import acquisitions_partitions, training_runs_partitions
from deep_events_dagster.defs.training.assets import PREDICTIONS_GROUP, TRAINING_GROUP

TRAIN_JOB = "train"
PREDICTIONS_JOB = "predict"

train_job = dg.define_asset_job(
    name=TRAIN_JOB,
    selection=dg.AssetSelection.groups(TRAINING_GROUP),
    partitions_def=training_runs_partitions,
    description="Build the training set, train the model, evaluate it, export it.",
)

predict_job = dg.define_asset_job(
    name=PREDICTIONS_JOB,
    selection=dg.AssetSelection.groups(PREDICTIONS_GROUP),
    partitions_def=acquisitions_partitions,
    description="Run the deployed model of each annotation kind over one acquisition's movie.",
)
