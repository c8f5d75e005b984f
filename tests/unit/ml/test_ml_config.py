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
    assert s.initial_learning_rate == 1e-4
    assert (s.n_timepoints, s.subset_fraction, s.dropout_rate, s.seed) == (1, 1.0, 0.0, 42)
    assert s.train_val_split == 0.2  # fraction held out, as core.training_set reads it


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
