"""Training settings: the original's keys and defaults, unknown keys rejected."""

from __future__ import annotations

import pytest

from deep_events_dagster.ml.config import (
    TrainingSettings,
    TrainingSettingsInvalid,
    load_settings_file,
)


def test_defaults_are_the_originals():
    s = TrainingSettings()
    assert (s.backend, s.model, s.loss) == ("torch", "unet", "binary_crossentropy")
    assert (s.weight.alpha, s.weight.gamma) == (0.25, 2.0)
    assert (s.nb_filters, s.first_conv_size, s.epochs, s.batch_size) == (16, 12, 20, 8)
    assert s.n_augmentations == 4
    assert s.brightness_range == (0.6, 1.0)
    assert s.poisson == 0.0
    # not the original's: 1e-3 learns in a tenth of the epochs (make bench, section learning)
    assert s.initial_learning_rate == 1e-3
    assert (s.n_timepoints, s.subset_fraction, s.dropout_rate, s.seed) == (1, 1.0, 0.0, 42)
    assert s.train_val_split == 0.2  # fraction held out, as core.training_set reads it


def test_training_set_defaults_are_the_training_set_parameters():
    from deep_events_dagster.core.training_set_parameters import TrainingSetParameters

    s = TrainingSettings()
    for name, value in TrainingSetParameters().model_dump().items():
        assert getattr(s, name) == value, name


def test_frozen():
    s = TrainingSettings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        s.epochs = 3


def test_unknown_key_lists_known_keys():
    with pytest.raises(TrainingSettingsInvalid) as info:
        TrainingSettings.from_mapping({"nb_filter": 8, "epochs": 2}, source="run.yaml")
    message = str(info.value)
    assert message.startswith("run.yaml: ")
    assert "nb_filter" in message
    for known in ("nb_filters", "first_conv_size", "n_augmentations", "weight", "poisson"):
        assert known in message


def test_bad_values_name_the_key():
    with pytest.raises(TrainingSettingsInvalid, match="loss"):
        TrainingSettings.from_mapping({"loss": "dice"})
    with pytest.raises(TrainingSettingsInvalid, match="brightness_range"):
        TrainingSettings.from_mapping({"brightness_range": [1.0, 0.5]})
    with pytest.raises(TrainingSettingsInvalid, match="alpha"):
        TrainingSettings.from_mapping({"weight": {"alpha": 2}})
    with pytest.raises(TrainingSettingsInvalid, match="n_timepoints"):
        TrainingSettings.from_mapping({"model": "bottleneck_lstm"})


def test_original_spellings():
    s = TrainingSettings.from_mapping(
        {"subset": 0.5, "backend": "pytorch", "brightness_range": [0.4, 1], "smooth": 2}
    )
    assert s.subset_fraction == 0.5 and s.backend == "torch" and s.smooth == 2
    assert TrainingSettings.from_mapping("default") == TrainingSettings()
    assert TrainingSettings.from_mapping(None) == TrainingSettings()
    with pytest.raises(TrainingSettingsInvalid, match="disagree"):
        TrainingSettings.from_mapping({"subset": 0.5, "subset_fraction": 0.7})


def test_round_trip_through_yaml(tmp_path):
    import yaml

    s = TrainingSettings.from_mapping(
        {"loss": "soft_focal", "weight": {"alpha": 0.5, "gamma": 1}, "n_timepoints": 3}
    )
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(s.as_dict()))
    assert load_settings_file(path) == s


# -- every key of the original's files; whole files validated when read ----------------------

# The settings file of the original's README, as written there.
ORIGINAL_README_FILE = """\
folder: event_folder_data
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


def test_the_original_readme_file_is_accepted_as_written(tmp_path):
    from deep_events_dagster.ml.training_runs import load_validated_training_file

    path = tmp_path / "original.yaml"
    path.write_text(ORIGINAL_README_FILE)
    (run,) = load_validated_training_file(path)
    assert run.partition_key == "original/0"
    assert run.spec.db_prompt == {}  # fps, train_val_split, max_n_timepoints moved out
    assert run.spec.folder == tmp_path / "event_folder_data"
    s = run.settings
    assert (s.backend, s.model, s.loss) == ("torch", "unet", "soft_focal")
    assert (s.epochs, s.batch_size, s.n_timepoints) == (150, 8, 1)
    assert (s.weight.alpha, s.weight.gamma) == (0.4, 2.0)
    assert s.poisson == 0.2
    assert s.log_dir == "logs_ld"
    assert (s.fps, s.train_val_split, s.max_n_timepoints) == (1.0, 0.1, 1)
    assert s.tensorboard_dir(tmp_path / "model") == tmp_path / "model" / "logs_ld"
    assert s.effect_notes() == []


def test_new_fields_and_their_defaults():
    s = TrainingSettings()
    assert (s.patience, s.val_frequency, s.save_frequency, s.log_batch_frequency) == (15, 1, 1, 0)
    assert s.log_dir == "logs"
    assert (s.lr_schedule, s.gradient_clip_norm, s.output_bias_prior) == ("plateau", 1.0, True)
    assert s.positive_fraction is None
    assert (s.smooth, s.data_folder, s.data_dir) == (0.0, None, None)
    every = TrainingSettings.from_mapping(
        {
            "patience": None,
            "val_frequency": 2,
            "save_frequency": 5,
            "log_batch_frequency": 10,
            "lr_schedule": "onecycle",
            "gradient_clip_norm": 0,
            "output_bias_prior": False,
            "positive_fraction": 0.25,
            "dropout_rate": 0.1,
            "nb_input_channels": 1,
        }
    )
    assert every.patience is None and every.lr_schedule == "onecycle"
    assert (every.val_frequency, every.save_frequency, every.log_batch_frequency) == (2, 5, 10)
    assert (every.gradient_clip_norm, every.output_bias_prior) == (0.0, False)
    assert every.positive_fraction == 0.25
    # the YAML form round-trips with the new fields
    assert TrainingSettings.from_mapping(every.as_dict()) == every


@pytest.mark.parametrize(
    ("values", "needles"),
    [
        ({"patience": 0}, ["patience", "greater than or equal to 1"]),
        ({"val_frequency": 0}, ["val_frequency"]),
        ({"save_frequency": -1}, ["save_frequency"]),
        ({"log_batch_frequency": -1}, ["log_batch_frequency"]),
        ({"lr_schedule": "cosine"}, ["lr_schedule", "'plateau', 'onecycle' or 'constant'"]),
        ({"gradient_clip_norm": -0.1}, ["gradient_clip_norm"]),
        ({"positive_fraction": 1.5}, ["positive_fraction"]),
        ({"log_dir": "/tmp/logs"}, ["log_dir", "relative"]),
        ({"log_dir": "C:\\logs"}, ["log_dir", "relative"]),
        ({"log_dir": "../logs"}, ["log_dir", "'..'"]),
        ({"logdir": "a/../../b"}, ["log_dir", "'..'"]),
        ({"log_dir": " "}, ["log_dir"]),
        ({"smooth": -1}, ["smooth"]),
        ({"smooth": True}, ["smooth", "false, null or 0: off"]),
        ({"weight": {"alpha": 0.5, "beta": 1}}, ["weight.beta", "alpha, gamma"]),
        ({"weight": 0.5}, ["weight", "alpha and gamma"]),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(values, needles):
    with pytest.raises(TrainingSettingsInvalid) as info:
        TrainingSettings.from_mapping(values, source="run.yaml")
    message = str(info.value)
    assert message.startswith("run.yaml: ") and "\n" not in message
    for needle in needles:
        assert needle in message


def test_log_dir_is_normalised_relative_path():
    assert TrainingSettings.from_mapping({"log_dir": "./runs//tb/"}).log_dir == "runs/tb"
    assert TrainingSettings.from_mapping({"log_dir": "runs\\tb"}).log_dir == "runs/tb"
    assert TrainingSettings.from_mapping({"log_dir": 2024}).log_dir == "2024"


def test_smooth_is_a_sigma_and_false_or_null_mean_off():
    for off in (False, None, 0):
        assert TrainingSettings.from_mapping({"smooth": off}).smooth == 0.0
    assert TrainingSettings.from_mapping({"smooth": 1.5}).smooth == 1.5


def test_aliases_and_their_conflicts():
    s = TrainingSettings.from_mapping({"logdir": "tb", "dataloader_workers": 3, "subset": 0.5})
    assert (s.log_dir, s.num_workers, s.subset_fraction) == ("tb", 3, 0.5)
    assert s.model_fields_set == {"log_dir", "num_workers", "subset_fraction"}
    # the alias and its field with the same value: fine
    same = TrainingSettings.from_mapping(
        {"logdir": "tb", "log_dir": "tb", "num_workers": 2, "dataloader_workers": 2}
    )
    assert (same.log_dir, same.num_workers) == ("tb", 2)
    assert TrainingSettings.from_mapping({"subset": False}).subset_fraction == 1.0
    assert TrainingSettings.from_mapping({"subset_fraction": None}).subset_fraction == 1.0
    for values, pair in (
        ({"logdir": "a", "log_dir": "b"}, "logdir ('a') and log_dir ('b') disagree"),
        ({"dataloader_workers": 2, "num_workers": 4}, "dataloader_workers (2) and num_workers (4)"),
        ({"subset": 0.5, "subset_fraction": 0.7}, "subset (0.5) and subset_fraction (0.7)"),
    ):
        with pytest.raises(TrainingSettingsInvalid) as info:
            TrainingSettings.from_mapping(values, source="run.yaml")
        assert pair in str(info.value)
    for alias in ("logdir", "dataloader_workers", "subset"):
        assert alias in TrainingSettings.known_keys()


def test_every_key_of_the_originals_files_is_accepted():
    original = {
        "epochs": 3,
        "batch_size": 4,
        "loss": "binary_crossentropy",
        "weight": {"alpha": 0.3, "gamma": 1},
        "model": "unet",
        "nb_filters": 8,
        "first_conv_size": 5,
        "nb_input_channels": 1,
        "dropout_rate": 0.2,
        "n_augmentations": 10,
        "brightness_range": [0.5, 1],
        "poisson": 0.1,
        "initial_learning_rate": 3e-4,
        "n_timepoints": 1,
        "subset": 0.8,
        "smooth": 2,
        "patience": 10,
        "logdir": "logs",
        "data_folder": "Z:/event_data",
        "data_dir": "Z:/training_data",
        "dataloader_workers": 0,
        "val_frequency": 1,
        "save_frequency": 2,
        "log_batch_frequency": 50,
        "fps": 1,
        "train_val_split": 0.2,
        "max_n_timepoints": 1,
    }
    s = TrainingSettings.from_mapping(original)
    assert (s.nb_filters, s.first_conv_size, s.dropout_rate, s.smooth) == (8, 5, 0.2, 2.0)
    assert (s.patience, s.save_frequency, s.log_batch_frequency) == (10, 2, 50)
    assert (s.data_folder, s.data_dir) == ("Z:/event_data", "Z:/training_data")


def test_effect_notes_name_the_keys_without_effect():
    s = TrainingSettings.from_mapping(
        {"data_folder": "Z:/event_data", "data_dir": "Z:/training", "epochs": 3}
    )
    notes = s.effect_notes(training_sets="/models/training_sets")
    assert notes == [
        "data_folder: Z:/event_data is without effect — training sets are built from the "
        "catalog into /models/training_sets",
        "data_dir: Z:/training is without effect — training sets are built from the "
        "catalog into /models/training_sets",
    ]
    assert "<folder>/training_sets" in s.effect_notes()[0]
    # only keys that were given: the same values by default give no note
    assert TrainingSettings(epochs=3).effect_notes() == []
    assert TrainingSettings.from_mapping({"data_folder": None}).effect_notes() == []


# -- one set of rules for the training-set keys; one backend reading --------------------------


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"n_timepoints": 0}, "training setting n_timepoints must be a whole number ≥ 1"),
        ({"n_timepoints": 1.5}, "training setting n_timepoints must be a whole number ≥ 1"),
        ({"fps": 0}, "training setting fps must be > 0"),
        ({"train_val_split": 1}, "training setting train_val_split"),
        ({"subset": 0}, "training setting subset_fraction must be in (0, 1]"),
        ({"group_by_acquisition": "yes"}, "group_by_acquisition must be true or false"),
        ({"n_timepoints": 3, "max_n_timepoints": 2}, "training setting max_n_timepoints (2)"),
        ({"smooth": -1}, "training setting smooth"),
    ],
)
def test_training_set_keys_follow_the_training_sets_rules(values, needle):
    from deep_events_dagster.core.errors import ConfigurationError
    from deep_events_dagster.core.training_set_parameters import TrainingSetParameters

    with pytest.raises(ConfigurationError) as rule:
        TrainingSetParameters.from_settings(values)
    with pytest.raises(TrainingSettingsInvalid) as info:
        TrainingSettings.from_mapping(values, source="run.yaml")
    assert str(info.value) == f"run.yaml: {rule.value}"
    assert needle in str(info.value)


def test_training_set_of_the_settings_is_what_the_training_set_reads():
    from deep_events_dagster.core.training_set_parameters import TrainingSetParameters

    values = {"n_timepoints": 3.0, "subset": False, "smooth": None, "fps": 2, "epochs": 3}
    s = TrainingSettings.from_mapping(values)
    assert s.training_set == TrainingSetParameters.from_settings(values)
    assert (s.n_timepoints, s.subset_fraction, s.smooth, s.fps) == (3, 1.0, 0.0, 2.0)
    assert s.model_fields_set == {"n_timepoints", "subset_fraction", "smooth", "fps", "epochs"}
    assert TrainingSettings().training_set == TrainingSetParameters()
    # subset: false and subset_fraction: 1 mean the same, by the training set's rules
    assert (
        TrainingSettings.from_mapping({"subset": False, "subset_fraction": 1}).subset_fraction == 1
    )


def test_aliases_are_declared_once():
    from deep_events_dagster.core.training_set_parameters import TRAINING_SET_ALIASES
    from deep_events_dagster.ml.config import SETTING_ALIASES

    assert TRAINING_SET_ALIASES.items() <= SETTING_ALIASES.items()


@pytest.mark.parametrize("name", ["Torch", "PyTorch", "TORCH", "pytorch"])
def test_backend_is_read_as_a_settings_file_reads_it(name):
    from deep_events_dagster.core.training_run import backend_name

    assert backend_name(name) == "torch"
    assert TrainingSettings.from_mapping({"backend": name}).backend == "torch"
    assert TrainingSettings(backend=name).backend == "torch"
    assert TrainingSettings.from_mapping({"backend": "Keras"}).backend == "tensorflow"
    with pytest.raises(TrainingSettingsInvalid, match=r"backend.*'Jax'"):
        TrainingSettings.from_mapping({"backend": "Jax"})
