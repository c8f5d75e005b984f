from pathlib import Path

import pytest

from deep_events_dagster.core.errors import MetadataError
from deep_events_dagster.settings import load_settings, resolve_home


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


def test_bad_config_is_named(tmp_path):
    (tmp_path / "deep_events.yaml").write_text("ingestion:\n  sigmaa: 3\n")
    with pytest.raises(MetadataError, match="unknown ingestion settings"):
        load_settings(tmp_path, environ={})


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


def test_cluster_block_is_read_validated_and_overridden_by_the_environment(tmp_path):
    from deep_events_dagster.settings import (
        CLUSTER_BROKER_ENV,
        CLUSTER_STORAGE_ENV,
        ClusterSettings,
    )

    assert load_settings(tmp_path, environ={}).cluster == ClusterSettings()
    assert not ClusterSettings().enabled and not ClusterSettings().distributed
    (tmp_path / "deep_events.yaml").write_text(
        "cluster:\n"
        "  storage: postgresql://postgres:pw@db:5432/deep_events\n"
        "  broker: pyamqp://guest:secret@mq:5672//\n"
        "  queues: {default: lab_a, gpu: lab_a_gpu}\n"
    )
    cluster = load_settings(tmp_path, environ={}).cluster
    assert cluster.enabled and cluster.distributed
    assert (cluster.queues.default, cluster.queues.gpu) == ("lab_a", "lab_a_gpu")
    assert cluster.backend == ""
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3: the driver is named for Dagster
    assert cluster.environment() == {
        CLUSTER_STORAGE_ENV: "postgresql+psycopg2://postgres:pw@db:5432/deep_events",
        CLUSTER_BROKER_ENV: "pyamqp://guest:secret@mq:5672//",
    }
    described = cluster.describe()
    assert "secret" not in described and "pw" not in described
    assert "pyamqp://guest:***@mq:5672//" in described
    assert "secret" not in repr(load_settings(tmp_path, environ={}))
    env = {CLUSTER_BROKER_ENV: "redis://127.0.0.1:6379/1"}
    assert load_settings(tmp_path, environ=env).cluster.broker == "redis://127.0.0.1:6379/1"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("  storage: mysql://x/y\n", r"cluster\.storage: storage must be a postgresql://"),
        ("  storage: postgresql://h/d\n  broker: http://mq\n", r"cluster\.broker: broker must"),
        ("  broker: pyamqp://mq//\n", r"cluster\.broker needs cluster\.storage"),
        ("  storge: postgresql://h/d\n", r"cluster\.storge: Extra inputs are not permitted"),
        ("  storage: postgresql://h/d\n  queues: {gpu: 'a b'}\n", r"cluster\.queues\.gpu"),
    ],
)
def test_a_bad_cluster_block_names_the_file_and_the_key(tmp_path, block, message):
    (tmp_path / "deep_events.yaml").write_text("cluster:\n" + block)
    with pytest.raises(MetadataError, match=message) as caught:
        load_settings(tmp_path, environ={})
    assert str(tmp_path / "deep_events.yaml") in str(caught.value)


def test_redact_uri_hides_passwords_only():
    from deep_events_dagster.settings import redact_uri

    assert redact_uri("postgresql://u:p%40ss@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_uri("redis://:secret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_uri("pyamqp://guest@mq//") == "pyamqp://guest@mq//"
    assert redact_uri("rpc://") == "rpc://"


def test_kinds_mapping_with_per_kind_choices(tmp_path):
    from deep_events_dagster.core.kinds import KindOptions

    (tmp_path / "deep_events.yaml").write_text(
        "ingestion:\n  auto_negatives: 2\n  event_content: fission\n  add_post_frames: 3\n"
        "  hard_negatives: 5\n"
        "kinds:\n"
        "  points:\n"
        "  bf_points: {annotations: points, channel_contrast: brightfield, add_post_frames: 0}\n"
        "  pearling: {type: lines, line_width: 5, label: [mito, drp1], auto_negatives: false}\n"
    )
    settings = load_settings(tmp_path, environ={})
    assert settings.kinds == ("points", "bf_points", "pearling")
    points = settings.kind_settings("points")
    assert points.options == KindOptions("points", event_content="fission")
    assert (points.params.auto_negatives, points.params.add_post_frames) == (2, 3)
    assert points.params.hard_negatives == 5
    bf = settings.kind_settings("bf_points")
    assert bf.options.annotations == "points" and bf.options.contrasts == ("brightfield",)
    assert bf.params.add_post_frames == 0 and bf.params.auto_negatives == 2
    pearling = settings.kind_settings("pearling")
    assert (pearling.options.shape, pearling.options.line_width) == ("lines", 5.0)
    assert pearling.options.labels == ("mito", "drp1") and pearling.params.auto_negatives is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kinds:\n  a: {colour: red}\n", r"unknown settings \['colour'\] for kind 'a'"),
        ("kinds:\n  a: {type: circles}\n", r"kinds\.a\.type must be points or lines"),
        ("ingestion:\n  auto_negatives: 7\n", r"ingestion\.auto_negatives must be"),
        ("kinds:\n  a: {auto_negatives: -1}\n", r"kinds\.a\.auto_negatives must be"),
        ("ingestion:\n  label: {a: 1}\n", r"ingestion\.label must be a name or a list"),
        ("ingestion:\n  hard_negatives: -2\n", r"ingestion\.hard_negatives must be a whole"),
        ("kinds:\n  a: {hard_negatives: yes}\n", r"kinds\.a\.hard_negatives must be a whole"),
    ],
)
def test_bad_kind_settings_name_the_file_and_key(tmp_path, text, message):
    (tmp_path / "deep_events.yaml").write_text(text)
    with pytest.raises(MetadataError, match=message) as caught:
        load_settings(tmp_path, environ={})
    assert str(tmp_path / "deep_events.yaml") in str(caught.value)
