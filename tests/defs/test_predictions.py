"""``<kind>/predictions``: the deployed model over whole movies, and the sensor that runs it."""

from __future__ import annotations

import csv

import dagster as dg
import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.defs.partitions import ACQUISITIONS
from deep_events_dagster.defs.training.resources import PredictionResource
from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.deploy import deploy_model, model_identity
from deep_events_dagster.ml.evaluate import evaluate_model_folder
from deep_events_dagster.ml.synthetic import write_synthetic_training_set
from deep_events_dagster.settings.ingestion import IngestionParams
from deep_events_dagster.settings.platform import load_settings
from deep_events_dagster.testing.trees import generate_tree

N_FRAMES = 24
TINY = {"nb_filters": 2, "first_conv_size": 3, "epochs": 1, "batch_size": 4, "n_augmentations": 1}


def _model(folder, seed):
    """A tiny trained and evaluated torch model folder (quality is not what is tested here)."""
    from deep_events_dagster.ml.torch.train import train

    training_set = write_synthetic_training_set(
        folder / "ts", n_train=8, n_eval=4, size=(32, 32), seed=seed
    )
    model_dir = folder / "model"
    train(training_set, model_dir, TrainingSettings(**TINY, seed=seed), device="cpu")
    evaluate_model_folder(model_dir, device="cpu")
    return model_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return _model(base / "a", seed=1), _model(base / "b", seed=2)


@pytest.fixture
def setup(tmp_path):
    tree = generate_tree(
        tmp_path / "data",
        seed=4,
        n_acquisitions=2,
        height=128,
        width=128,
        n_frames=N_FRAMES,
        events_per_acquisition=2,
        channels=1,
        non_square=False,
        min_separation=48,
    )
    home = tmp_path / "home"
    home.mkdir()
    settings = load_settings(
        home, environ={}, roots=(tree.root,), params=IngestionParams(crop_size=64)
    )
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    keys = [a.folder.as_posix() for a in tree.acquisitions]
    instance.add_dynamic_partitions(ACQUISITIONS, keys)
    return tree, home, defs, instance


def _ingest(defs, instance, key):
    result = defs.resolve_job_def("ingest").execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False
    )
    assert result.success
    return result


def _predict(defs, instance, key):
    return defs.resolve_job_def("predict").execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False
    )


def test_predictions_score_every_frame_and_compare_with_the_annotations(setup, models):
    tree, home, defs, instance = setup
    acquisition = tree.acquisitions[0]
    key = acquisition.folder.as_posix()
    _ingest(defs, instance, key)
    deployed = deploy_model(home, models[0], kind="points")

    result = _predict(defs, instance, key)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("points__predictions")
    metadata = materialization.metadata
    n_frames = N_FRAMES
    # every frame scored: the table and the probability movie
    rows = list(csv.DictReader((acquisition.folder / "predictions_points.csv").open()))
    assert [int(r["frame"]) for r in rows] == list(range(n_frames))
    movie = tifffile.imread(acquisition.folder / "predictions_points.ome.tif")
    assert movie.shape == (n_frames, 128, 128) and movie.dtype == np.uint8
    scores = np.array([float(r["score"]) for r in rows])
    assert metadata["frames"].value == n_frames
    assert metadata["max_score"].value == pytest.approx(scores.max(), abs=1e-6)
    threshold = yaml.safe_load((models[0] / "evaluation.yaml").read_text())["threshold"]
    assert metadata["threshold"].value == pytest.approx(threshold)
    assert metadata["frames_above_threshold"].value == int((scores > threshold).sum())
    # the model's identity is the data version
    assert materialization.tags["dagster/data_version"] == deployed.identity
    assert metadata["model_identity"].value == model_identity(models[0])
    # the comparison with the annotated events (the synthetic tree knows them)
    n_annotated = len(acquisition.events_of("points"))
    assert metadata["annotated_events"].value == n_annotated > 0
    assert metadata["tp"].value + metadata["fn"].value == n_annotated
    assert metadata["tp"].value + metadata["fp"].value == metadata["predicted_events"].value
    for picture in ("score_over_time", "thumbnail"):
        assert "data:image/png;base64," in metadata[picture].value
    # kept beside the movie and per model
    record = yaml.safe_load((acquisition.folder / "predictions_points.yaml").read_text())
    assert record["model_identity"] == deployed.identity and record["frames"] == n_frames
    assert len(record["events"]) == metadata["predicted_events"].value
    assert all(e["frames"][0] < e["frames"][1] for e in record["events"])
    truth = sorted(e.frames for e in acquisition.events_of("points"))
    assert sorted(tuple(a["frames"]) for a in record["annotated"]) == truth
    kept = list((models[0] / "out_of_sample").glob("*__points.yaml"))
    assert [yaml.safe_load(p.read_text())["acquisition"] for p in kept] == [key]


def test_without_a_deployed_model_the_run_fails_with_a_clear_message(setup):
    tree, _home, defs, instance = setup
    key = tree.acquisitions[0].folder.as_posix()
    _ingest(defs, instance, key)
    result = _predict(defs, instance, key)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "no model deployed for 'points'" in message and "deep-events deploy" in message


def test_the_sensor_runs_new_acquisitions_and_reruns_when_another_model_is_deployed(setup, models):
    tree, home, defs, instance = setup
    sensor = defs.resolve_sensor_def("predictions_sensor")
    resources = {"prediction": PredictionResource(home=str(home))}

    def tick():
        context = dg.build_sensor_context(instance=instance, resources=resources)
        return sensor(context)

    assert isinstance(tick(), dg.SkipReason)  # nothing deployed yet
    first, second = (a.folder.as_posix() for a in tree.acquisitions)
    _ingest(defs, instance, first)
    deploy_model(home, models[0], kind="points")
    requests = tick().run_requests
    assert [r.partition_key for r in requests] == [first]  # only ingested acquisitions
    assert requests[0].asset_selection == [dg.AssetKey(["points", "predictions"])]
    keys_a = {r.run_key for r in requests}
    # a newly ingested acquisition gets its own request; the first keeps its run key
    _ingest(defs, instance, second)
    requests = tick().run_requests
    assert sorted(r.partition_key for r in requests) == sorted([first, second])
    assert keys_a <= {r.run_key for r in requests}
    # deploying another model changes every run key (Dagster runs each key once)
    keys_before = {r.run_key for r in requests}
    deploy_model(home, models[1], kind="points")
    requests = tick().run_requests
    assert len(requests) == 2 and not keys_before & {r.run_key for r in requests}
    assert {r.tags["deep_events/model"] for r in requests} == {model_identity(models[1])}
