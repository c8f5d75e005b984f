"""Whole training settings files validated when read (ml.training_runs): one line naming the
file, the key and what is allowed; invalid files left out of a folder."""

from __future__ import annotations

import pytest

from deep_events_dagster.ml.config import TrainingSettings


def _file(path, settings, **top):
    import yaml

    data = {"collection": "event_data_points", "db_prompt": {"type": "event"}, **top}
    data["settings"] = settings
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_typo_is_one_line_naming_file_key_and_allowed_keys(tmp_path):
    from deep_events_dagster.core.errors import InputError
    from deep_events_dagster.ml.training_runs import load_validated_training_file

    path = _file(tmp_path / "typo.yaml", {"nb_filter": 8, "epochs": 2})
    with pytest.raises(InputError) as info:
        load_validated_training_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: unknown training setting nb_filter")
    assert "did you mean nb_filters?" in message
    allowed = message.split("allowed settings: ", 1)[1].split(", ")
    assert allowed == sorted(TrainingSettings.known_keys())


def test_file_backend_is_merged_and_checked(tmp_path):
    from deep_events_dagster.core.errors import InputError
    from deep_events_dagster.ml.training_runs import load_validated_training_file

    (run,) = load_validated_training_file(
        _file(tmp_path / "tf.yaml", {"epochs": 2}, backend="tensorflow")
    )
    assert run.settings.backend == "tensorflow"
    (run,) = load_validated_training_file(
        _file(tmp_path / "same.yaml", {"backend": "pytorch"}, backend="torch")
    )
    assert run.settings.backend == "torch"
    with pytest.raises(InputError, match="backend 'tensorflow' disagrees with the file's backend"):
        load_validated_training_file(
            _file(tmp_path / "clash.yaml", {"backend": "tensorflow"}, backend="torch")
        )


def test_per_run_settings_name_the_runs_at_fault(tmp_path):
    import yaml

    from deep_events_dagster.core.errors import InputError
    from deep_events_dagster.ml.training_runs import load_validated_training_file

    path = tmp_path / "runs.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "collection": "c",
                "db_prompt": [{"a": 1}, {"a": 2}, {"a": 3}],
                "settings": [{"epochs": 1}, {"loss": "dice"}, {"loss": "dice"}],
            }
        )
    )
    with pytest.raises(InputError) as info:
        load_validated_training_file(path)
    message = str(info.value)
    assert message.count("loss") == 1  # said once for both runs
    assert message.startswith(f"{path}: runs 1, 2: invalid training settings: loss: ")
    # one shared settings mapping: said once, without run numbers
    path.write_text(
        yaml.safe_dump(
            {"collection": "c", "db_prompt": [{"a": 1}, {"a": 2}], "settings": {"epochs": 0}}
        )
    )
    with pytest.raises(InputError) as info:
        load_validated_training_file(path)
    assert str(info.value).startswith(f"{path}: invalid training settings: epochs: ")


def test_folder_leaves_invalid_files_out_and_keeps_the_rest(tmp_path):
    from deep_events_dagster.ml.training_runs import load_validated_training_folder

    _file(tmp_path / "good.yaml", {"epochs": 2, "logdir": "tb"})
    _file(tmp_path / "typo.yaml", {"nb_filter": 8})
    _file(tmp_path / "x.yaml", {"loss": "dice"})  # invalid: does not hold x/0 ...
    _file(tmp_path / "x.yml", {"epochs": 3})  # ... so this file keeps it
    folder = load_validated_training_folder(tmp_path)
    assert [r.partition_key for r in folder.runs] == ["good/0", "x/0"]
    assert [s.partition_key for s in folder.specs] == ["good/0", "x/0"]
    assert folder.run("good/0").settings.log_dir == "tb"
    assert folder.spec("x/0").file == tmp_path / "x.yml"
    assert folder.run("x/0").settings.epochs == 3
    assert folder.run("typo/0") is None and folder.spec("typo/0") is None
    typo, x = folder.problems
    assert typo.startswith(str(tmp_path / "typo.yaml")) and "nb_filter" in typo
    assert x.startswith(str(tmp_path / "x.yaml")) and "loss" in x
    assert load_validated_training_folder(tmp_path / "missing").runs == ()


def test_training_set_parameters_are_validated_when_the_file_is_read(tmp_path):
    from deep_events_dagster.core.errors import InputError
    from deep_events_dagster.core.training_set_parameters import TrainingSetParameters
    from deep_events_dagster.ml.training_runs import load_validated_training_file

    path = _file(tmp_path / "ok.yaml", {"n_timepoints": 2, "subset": 0.5, "fps": 10})
    (run,) = load_validated_training_file(path)
    assert run.training_set == TrainingSetParameters.from_settings(run.spec.settings)
    assert (run.training_set.n_timepoints, run.training_set.subset_fraction) == (2, 0.5)
    # what the training set is built from gives the same parameters (and content address)
    again = TrainingSetParameters.from_settings(run.training_set.model_dump())
    assert again == run.training_set and again.address_dict() == run.training_set.address_dict()

    # accepted by TrainingSettings, refused by the training set's rules: refused when read
    path = _file(tmp_path / "cap.yaml", {"n_timepoints": 3, "max_n_timepoints": 2})
    with pytest.raises(InputError) as info:
        load_validated_training_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: training setting max_n_timepoints (2)")
