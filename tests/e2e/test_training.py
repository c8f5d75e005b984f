"""Training from the catalog end to end: settings file → training set → model → evaluation."""

import dagster as dg
import pytest
import yaml

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.cli import main
from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.defs.partitions import TRAINING_RUNS
from deep_events_dagster.defs.resources import CatalogResource
from deep_events_dagster.defs.training.resources import TrainingResource
from deep_events_dagster.settings.platform import load_settings
from deep_events_dagster.testing.trees import generate_tree

TINY = {
    "nb_filters": 4,
    "first_conv_size": 3,
    "epochs": 2,
    "batch_size": 4,
    "n_augmentations": 1,
    "train_val_split": 0.3,
}


@pytest.fixture
def ingested(tmp_path, capsys):
    tree = generate_tree(tmp_path / "data", seed=61, n_acquisitions=4, height=160, width=200)
    home = tmp_path / "home"
    home.mkdir()
    (home / "deep_events.yaml").write_text("ingestion:\n  crop_size: 64\n")
    assert main(["ingest", str(tree.root), "--home", str(home)]) == 0
    capsys.readouterr()
    return tree, home


def _settings_file(path, folder, prompts, backend="torch"):
    path.write_text(
        yaml.safe_dump(
            {
                "folder": str(folder),
                "collection": "event_data_points",
                "backend": backend,
                "db_prompt": prompts,
                "settings": TINY,
            }
        )
    )
    return path


@pytest.mark.slow
def test_train_command_builds_trains_and_evaluates(ingested, tmp_path, capsys):
    _tree, home = ingested
    settings_file = _settings_file(tmp_path / "mito.yaml", tmp_path / "models", {"type": "event"})
    code = main(["train", str(settings_file), "--home", str(home)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ok      mito/0" in out
    model_line = next(line for line in out.splitlines() if line.strip().startswith("model:"))
    model_dir = tmp_path.joinpath(model_line.split("model:", 1)[1].strip())
    for name in ("model.pt", "history.csv", "settings.yaml", "db_prompt.yaml", "evaluation.yaml"):
        assert (model_dir / name).is_file(), name
    assert (model_dir / "perf.png").read_bytes().startswith(b"\x89PNG")
    assert any((model_dir / "logs").rglob("events.out.tfevents*"))
    history = (model_dir / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + TINY["epochs"]
    # the exports, checked and listed
    exports = yaml.safe_load((model_dir / "exports.yaml").read_text())
    for name, file in (("keras", "model.h5"), ("onnx", "model.onnx")):
        assert exports[name]["status"] == "ok" and (model_dir / file).is_file()
        assert f"export {name}:" in out and str(model_dir / file) in out
    assert (model_dir / "model.torchscript.pt").is_file()
    evaluation = yaml.safe_load((model_dir / "evaluation.yaml").read_text())
    assert 0.05 <= evaluation["threshold"] <= 1.0
    for key in ("precision", "recall", "f1", "mcc", "kappa", "specificity", "npv", "fbeta"):
        assert key in evaluation
    # the split is kept with every event in the catalog
    with EventCatalog.open(None, home=home) as catalog:
        splits = [d.get("dataset_split") for d in catalog.find("event_data_points")]
    assert splits and set(splits) == {"train", "eval"}
    # the run is a Dagster run of the train job on the home's instance
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = [r for r in instance.get_runs() if r.job_name == "train"]
        assert len(runs) == 1 and runs[0].is_success
        assert instance.get_dynamic_partitions(TRAINING_RUNS) == ["mito/0"]
    # training again on unchanged events reuses the training set
    assert main(["train", str(settings_file), "--home", str(home)]) == 0
    pointer = yaml.safe_load(
        (tmp_path / "models" / "runs" / "mito_0" / "training_set.yaml").read_text()
    )
    assert len(list((tmp_path / "models" / "training_sets").glob("ts_*"))) == 1
    assert pointer["id"] in pointer["path"]


@pytest.mark.slow
def test_the_tensorflow_backend_trains_evaluates_and_exports_through_dagster(
    ingested, tmp_path, capsys
):
    _tree, home = ingested
    settings_file = _settings_file(
        tmp_path / "keras.yaml", tmp_path / "models", {"type": "event"}, backend="tensorflow"
    )
    code = main(["train", str(settings_file), "--home", str(home)])
    out = capsys.readouterr().out
    assert code == 0, out
    model_line = next(line for line in out.splitlines() if line.strip().startswith("model:"))
    model_dir = tmp_path.joinpath(model_line.split("model:", 1)[1].strip())
    for name in ("keras.weights.h5", "history.csv", "evaluation.yaml", "model.h5", "model.onnx"):
        assert (model_dir / name).is_file(), name
    assert not (model_dir / "model.pt").exists()
    summary = yaml.safe_load((model_dir / "training_summary.yaml").read_text())
    assert summary["backend"] == "tensorflow" and summary["epochs"] == TINY["epochs"]
    evaluation = yaml.safe_load((model_dir / "evaluation.yaml").read_text())
    exports = yaml.safe_load((model_dir / "exports.yaml").read_text())
    assert exports["keras"]["source"] == "keras"
    assert exports["keras"]["event_counts"]["tp"] == pytest.approx(evaluation["tp"], abs=1)
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        (run,) = [r for r in instance.get_runs() if r.job_name == "train"]
        assert run.is_success
        latest = instance.get_latest_materialization_events(
            [dg.AssetKey(k) for k in ("trained_model", "model_evaluation", "model_exports")]
        )
        materialized = {key.to_user_string() for key, event in latest.items() if event}
        # the trained model's page lists its exports (an observation by model_exports)
        observations = instance.fetch_observations(dg.AssetKey("trained_model"), limit=5).records
    assert materialized == {"trained_model", "model_evaluation", "model_exports"}
    # the evaluation lists the run's models with their event F1 (none deployed)
    models = latest[dg.AssetKey("model_evaluation")].asset_materialization.metadata["models"]
    assert model_dir.name in models.value and f"{evaluation['f1']:.3f}" in models.value
    (observation,) = [r.asset_observation for r in observations]
    assert observation.partition == "keras/0"
    listed = observation.metadata
    assert listed["keras_path"].value == str(model_dir / "model.h5")
    assert listed["keras_bytes"].value == (model_dir / "model.h5").stat().st_size
    assert listed["onnx_path"].value == str(model_dir / "model.onnx")


def test_training_sensor_registers_each_prompt(tmp_path):
    home = tmp_path / "home"
    (home / "training").mkdir(parents=True)
    _settings_file(
        home / "training" / "two.yaml",
        tmp_path / "models",
        [{"cell_line": "cos7"}, {"cell_line": "hela"}],
    )
    settings = load_settings(home, environ={})
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("training_settings_sensor")
    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "training": TrainingResource(home=str(home)),
        "catalog": CatalogResource(home=str(home)),
    }
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources=resources)
    result = sensor(context)
    assert sorted(r.partition_key for r in result.run_requests) == ["two/0", "two/1"]
    (request,) = result.dynamic_partitions_requests
    assert sorted(request.partition_keys) == ["two/0", "two/1"]
    keys_before = {r.run_key for r in result.run_requests}
    # changing one prompt changes only that run's key
    _settings_file(
        home / "training" / "two.yaml",
        tmp_path / "models",
        [{"cell_line": "cos7"}, {"cell_line": "u2os"}],
    )
    instance.add_dynamic_partitions(TRAINING_RUNS, ["two/0", "two/1"])
    again = sensor(
        dg.build_sensor_context(instance=instance, definitions=defs, resources=resources)
    )
    keys_after = {r.run_key for r in again.run_requests}
    assert len(keys_before & keys_after) == 1
    assert again.dynamic_partitions_requests == []


def _legacy_events():
    import os
    from pathlib import Path

    base = os.environ.get("DEEP_EVENTS_SHARED_DATA")
    if base:
        return Path(base) / "legacy_events"
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "legacy_events"


@pytest.mark.slow
@pytest.mark.skipif(not _legacy_events().is_dir(), reason="legacy event folders not present")
def test_real_legacy_events_import_and_train_one_epoch(tmp_path, capsys):
    home = tmp_path / "home"
    legacy = _legacy_events()
    code = main(["catalog", "import", str(legacy), "--collection", "legacy", "--home", str(home)])
    assert code == 0, capsys.readouterr()
    settings_file = tmp_path / "legacy.yaml"
    settings_file.write_text(
        yaml.safe_dump(
            {
                "folder": str(tmp_path / "legacy_models"),
                "collection": "legacy",
                "db_prompt": {"cell_line": "cos7"},
                "settings": {
                    "nb_filters": 4,
                    "first_conv_size": 12,
                    "epochs": 1,
                    "batch_size": 2,
                    "n_augmentations": 1,
                    "train_val_split": 0.4,
                },
            }
        )
    )
    code = main(["train", str(settings_file), "--home", str(home)])
    out = capsys.readouterr().out
    assert code == 0, out
    model_line = next(line for line in out.splitlines() if line.strip().startswith("model:"))
    model_dir = tmp_path.joinpath(model_line.split("model:", 1)[1].strip())
    history = (model_dir / "history.csv").read_text().strip().splitlines()
    assert len(history) == 2
    manifest = yaml.safe_load((model_dir / "training_set.yaml").read_text())
    assert manifest["path"]
    with EventCatalog.open(None, home=home) as catalog:
        docs = catalog.find("legacy")
    assert len(docs) == 5 and {d["dataset_split"] for d in docs} == {"train", "eval"}


ORIGINAL_README_FILE = """\
folder: {folder}
collection: event_data_points
backend: torch
db_prompt:
  max_n_timepoints: 1
  fps: 1
  train_val_split: 0.1
settings:
  epochs: 150
  batch_size: 8
  loss: 'soft_focal'
  weight:
    alpha: 0.4
    gamma: 2
  model: 'unet'
  poisson: 0.2
  n_timepoints: 1
  log_dir: logs_ld
"""


@pytest.mark.slow
def test_the_original_readme_settings_file_trains_as_written(tmp_path, capsys):
    # small movies and crops keep 150 epochs (or early stopping) short, also on CPUs without
    # AVX-512 (every frame of every event is a sample: few frames, few samples)
    tree = generate_tree(
        tmp_path / "data",
        seed=5,
        n_acquisitions=4,
        height=128,
        width=128,
        n_frames=8,
        events_per_acquisition=(1, 2),
        min_separation=40.0,
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / "deep_events.yaml").write_text("ingestion:\n  crop_size: 32\n")
    assert main(["ingest", str(tree.root), "--home", str(home)]) == 0
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(ORIGINAL_README_FILE.format(folder="event_folder_data"))
    capsys.readouterr()
    code = main(["train", str(settings_file), "--home", str(home)])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err
    model_line = next(line for line in captured.out.splitlines() if "model:" in line)
    model_dir = tmp_path.joinpath(model_line.split("model:", 1)[1].strip())
    assert model_dir.parent.parent.parent == tmp_path / "event_folder_data"  # next to the file
    assert any((model_dir / "logs_ld").rglob("events.out.tfevents*"))
    assert "tensorboard --logdir" in captured.out and "logs_ld" in captured.out
    events_line = next(line for line in captured.out.splitlines() if "events at threshold" in line)
    assert "F1" in events_line
    evaluation = yaml.safe_load((model_dir / "evaluation.yaml").read_text())
    assert evaluation["unit"] == "event"
    # fps 1 (frames per second) keeps the 1 and 2 fps movies, skips 0.2 and 0.5 fps ones
    pointer = yaml.safe_load((model_dir / "training_set.yaml").read_text())
    manifest = yaml.safe_load((tmp_path.joinpath(pointer["path"]) / "manifest.yaml").read_text())
    fps_of = {a.folder.as_posix(): 1.0 / a.time_increment_s for a in tree.acquisitions}
    used = {e["acquisition_key"] for e in manifest["events"]}
    assert used and all(0.5 <= fps_of[key] / 1.0 <= 2 for key in used)
    assert manifest["counts"]["skipped"].get(
        "recorded more than 1.5x slower than the requested fps"
    )
    # max_n_timepoints: 1 is not a cap: every frame of every event is a sample
    assert sum(e["n_samples"] for e in manifest["events"]) == sum(
        e["n_frames"] for e in manifest["events"]
    )
    settings = yaml.safe_load((model_dir / "settings.yaml").read_text())
    assert settings["log_dir"] == "logs_ld" and settings["weight"] == {"alpha": 0.4, "gamma": 2.0}
    assert settings["fps"] == 1 and settings["train_val_split"] == 0.1
