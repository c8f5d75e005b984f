"""``cluster:`` of deep_events.yaml (settings.cluster)."""

import pytest

from deep_events_dagster.core.errors import MetadataError
from deep_events_dagster.settings.platform import load_settings


def test_cluster_block_is_read_validated_and_overridden_by_the_environment(tmp_path):
    from deep_events_dagster.settings.cluster import (
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
    from deep_events_dagster.settings.cluster import redact_uri

    assert redact_uri("postgresql://u:p%40ss@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_uri("redis://:secret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_uri("pyamqp://guest@mq//") == "pyamqp://guest@mq//"
    assert redact_uri("rpc://") == "rpc://"
