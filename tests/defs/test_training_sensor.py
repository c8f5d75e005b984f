"""The training settings sensor: one bad settings file never hides the others' runs."""

import dagster as dg
import pytest
import yaml

from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.defs.resources import CatalogResource
from deep_events_dagster.defs.training.resources import TrainingResource
from deep_events_dagster.settings.platform import load_settings


def _settings(path, prompts):
    path.write_text(
        yaml.safe_dump(
            {
                "collection": "event_data_points",
                "db_prompt": prompts,
                "settings": {"epochs": 1},
            }
        )
    )


def test_bad_and_colliding_files_are_reported_and_the_rest_still_runs(tmp_path):
    home = tmp_path / "home"
    training = home / "training"
    training.mkdir(parents=True)
    _settings(training / "good.yaml", [{"cell_line": "cos7"}, {"cell_line": "hela"}])
    (training / "broken.yaml").write_text("db_prompt: [unclosed\n")
    _settings(training / "good.yml", [{"cell_line": "u2os"}])  # also good/0

    settings = load_settings(home, environ={})
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("training_settings_sensor")
    resources = {
        "training": TrainingResource(home=str(home)),
        "catalog": CatalogResource(home=str(home)),
    }
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), definitions=defs, resources=resources
    )
    result = sensor(context)
    assert sorted(r.partition_key for r in result.run_requests) == ["good/0", "good/1"]

    runs = TrainingResource(home=str(home)).runs()
    assert runs.spec("good/0").db_prompt == {"cell_line": "cos7"}  # good.yaml comes first
    broken, collision = runs.problems
    assert str(training / "broken.yaml") in broken and "malformed YAML" in broken
    assert str(training / "good.yml") in collision and "good.yaml" in collision


def test_a_file_with_a_wrong_key_is_logged_and_the_good_file_still_runs(tmp_path, capfd):
    home = tmp_path / "home"
    training = home / "training"
    training.mkdir(parents=True)
    _settings(training / "good.yaml", [{"cell_line": "cos7"}, {"cell_line": "hela"}])
    (training / "typo.yaml").write_text(
        yaml.safe_dump(
            {
                "collection": "event_data_points",
                "db_prompt": {"cell_line": "u2os"},
                "settings": {"nb_filter": 8},
            }
        )
    )

    settings = load_settings(home, environ={})
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("training_settings_sensor")
    resources = {
        "training": TrainingResource(home=str(home)),
        "catalog": CatalogResource(home=str(home)),
    }
    instance = dg.DagsterInstance.ephemeral()
    capfd.readouterr()
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=resources
    ) as context:
        result = sensor(context)
    err = capfd.readouterr().err
    assert sorted(r.partition_key for r in result.run_requests) == ["good/0", "good/1"]
    (request,) = result.dynamic_partitions_requests
    assert sorted(request.partition_keys) == ["good/0", "good/1"]
    logged = [line for line in err.splitlines() if "typo.yaml" in line]
    assert len(logged) == 1 and " - ERROR - " in logged[0]
    assert str(training / "typo.yaml") in logged[0] and "nb_filter" in logged[0]
    assert "nb_filters" in logged[0]  # the allowed keys

    # a run whose file went bad under it fails cleanly, naming the file's problem
    resource = TrainingResource(home=str(home))
    assert resource.run("good/0").settings.epochs == 1
    _settings(training / "good.yaml", [{"cell_line": "cos7"}])
    text = (training / "good.yaml").read_text().replace("epochs: 1", "epochs: 0")
    (training / "good.yaml").write_text(text)
    with pytest.raises(dg.Failure) as info:
        resource.spec("good/0")
    assert str(training / "good.yaml") in info.value.description
    assert "epochs" in info.value.description


def test_training_set_logs_the_keys_without_effect(tmp_path):
    from deep_events_dagster.defs.training.assets import build_training_set_asset

    home = tmp_path / "home"
    training = home / "training"
    training.mkdir(parents=True)
    (training / "old.yaml").write_text(
        yaml.safe_dump(
            {
                "folder": str(tmp_path / "models"),
                "collection": "event_data_points",
                "db_prompt": {"cell_line": "nowhere"},
                "settings": {"epochs": 1, "data_folder": "Z:/event_data", "logdir": "tb"},
            }
        )
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("training_runs", ["old/0"])
    result = dg.materialize(
        [build_training_set_asset(["points"])],
        partition_key="old/0",
        resources={
            "training": TrainingResource(home=str(home)),
            "catalog": CatalogResource(home=str(home)),
        },
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success  # the prompt matches no document: a clean failure
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert (
        "data_folder: Z:/event_data is without effect — training sets are built from the "
        f"catalog into {tmp_path / 'models' / 'training_sets'}"
    ) in messages
    assert not any("logdir" in m for m in messages)  # logdir has an effect
    assert not (tmp_path / "models" / "training_sets").exists()
