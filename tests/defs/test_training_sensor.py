"""The training settings sensor: one bad settings file never hides the others' runs."""

import dagster as dg
import yaml

from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.defs.resources import CatalogResource
from deep_events_dagster.defs.training import TrainingResource
from deep_events_dagster.settings import load_settings


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
