"""Loading a home's settings (settings.platform): the home, its keys, the environment."""

from pathlib import Path

import pytest

from deep_events_dagster.core.errors import MetadataError
from deep_events_dagster.settings.platform import load_settings, resolve_home


def test_home_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEEP_EVENTS_HOME", raising=False)
    assert resolve_home() == tmp_path / ".deep_events"
    monkeypatch.setenv("DEEP_EVENTS_HOME", str(tmp_path / "env"))
    assert resolve_home() == tmp_path / "env"
    assert resolve_home(tmp_path / "cli") == tmp_path / "cli"


def test_config_file_env_and_overrides(tmp_path):
    (tmp_path / "deep_events.yaml").write_text(
        "kinds: [points, fission]\nroots: [/data/a]\ningestion:\n  sigma: 2.5\n  crop_size: 128\n"
    )
    settings = load_settings(tmp_path, environ={})
    assert settings.kinds == ("points", "fission")
    assert settings.roots == (Path("/data/a"),)
    assert settings.params.sigma == 2.5 and settings.params.crop_size == 128
    env = {"DEEP_EVENTS_KINDS": "points", "DEEP_EVENTS_CATALOG_URI": "mongodb://u:secret@h/db"}
    settings = load_settings(tmp_path, environ=env, output_root=tmp_path / "out")
    assert settings.kinds == ("points",)
    assert settings.catalog_uri_from_env is True
    assert "secret" not in repr(settings)
    assert settings.output_root == tmp_path / "out"


def test_bad_kind_rejected(tmp_path):
    with pytest.raises(ValueError, match="annotation kind"):
        load_settings(tmp_path, environ={"DEEP_EVENTS_KINDS": "po ints"})


def test_an_unknown_top_level_key_is_named_with_a_suggestion(tmp_path):
    config = tmp_path / "deep_events.yaml"
    config.write_text("kinds: [points]\ndeplyo:\n  points: /models/m\n")
    with pytest.raises(MetadataError) as error:
        load_settings(tmp_path, environ={})
    message = str(error.value)
    assert message.startswith(str(config))
    assert "unknown setting 'deplyo' (did you mean deploy?)" in message
    assert "legacy_folders" in message  # the known ones are listed


def test_every_key_read_elsewhere_is_accepted(tmp_path):
    (tmp_path / "deep_events.yaml").write_text(
        "kinds: [points]\ndeploy:\n  points: /models/m\nlegacy_folders: [/old]\ndevice: cpu\n"
    )
    assert load_settings(tmp_path, environ={}).device == "cpu"
