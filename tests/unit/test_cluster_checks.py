"""The cluster's instance file, start-up checks and single-host guard (no services needed)."""

import socket

import pytest
import yaml

from deep_events_dagster.cluster.checks import (
    HOST_MARKER,
    ClusterError,
    check_broker,
    check_embedded_catalog,
    check_single_host_catalog,
    check_storage,
    require_visible,
)
from deep_events_dagster.cluster.instance import MANAGED_BEGIN, instance_yaml
from deep_events_dagster.settings.cluster import CLUSTER_STORAGE_ENV, ClusterSettings
from deep_events_dagster.settings.platform import load_settings

CLUSTER = ClusterSettings(storage="postgresql://postgres:pw@db:5432/deep_events")


def test_the_instance_file_gains_and_loses_a_managed_postgres_block(tmp_path):
    source = tmp_path / "dagster.yaml"
    local = instance_yaml(None, ClusterSettings(), source=source)
    assert "storage" not in (yaml.safe_load(local) or {})
    clustered = instance_yaml(None, CLUSTER, source=source)
    parsed = yaml.safe_load(clustered)
    # the URI (and its password) stays in the environment: the file names the variable
    assert parsed["storage"] == {"postgres": {"postgres_url": {"env": CLUSTER_STORAGE_ENV}}}
    assert "pw" not in clustered and "postgresql://" not in clustered
    assert parsed["concurrency"] == yaml.safe_load(local)["concurrency"]  # the template is kept
    # the user's own edits survive; applying twice changes nothing; dropping cluster: removes it
    edited = clustered.replace("max_concurrent_runs: 4", "max_concurrent_runs: 9")
    again = instance_yaml(edited, CLUSTER, source=source)
    assert again == edited and again.count(MANAGED_BEGIN) == 1
    back = instance_yaml(edited, ClusterSettings(), source=source)
    assert "storage" not in yaml.safe_load(back)
    assert yaml.safe_load(back)["concurrency"]["runs"]["max_concurrent_runs"] == 9


def test_an_instance_file_with_its_own_storage_is_not_overwritten(tmp_path):
    source = tmp_path / "dagster.yaml"
    own = "storage:\n  sqlite:\n    base_dir: /x\n"
    with pytest.raises(ClusterError, match="configures its own storage") as caught:
        instance_yaml(own, CLUSTER, source=source)
    assert str(source) in str(caught.value)
    assert instance_yaml(own, ClusterSettings(), source=source) == own


def test_the_embedded_catalog_stays_on_one_host(tmp_path):
    folder = tmp_path / "catalog"
    check_single_host_catalog(folder, host="scope-pc")
    assert (folder / HOST_MARKER).read_text().strip() == "scope-pc"
    check_single_host_catalog(folder, host="scope-pc")  # the same host again: fine
    with pytest.raises(ClusterError, match=r"belongs to host 'scope-pc'.*'gpu-box'") as caught:
        check_single_host_catalog(folder, host="gpu-box")
    assert str(folder) in str(caught.value) and "mongodb://" in str(caught.value)


def test_the_embedded_catalog_is_refused_on_a_network_file_system(tmp_path):
    mounts = f"server:/share {tmp_path} nfs4 rw 0 0\n/dev/sda1 / ext4 rw 0 0\n"
    with pytest.raises(ClusterError, match=r"network file system \(nfs4\)"):
        check_single_host_catalog(tmp_path / "catalog", host="a", mounts=mounts)
    assert not (tmp_path / "catalog" / HOST_MARKER).exists()


def test_only_a_home_with_celery_workers_checks_its_catalog(tmp_path):
    (tmp_path / "deep_events.yaml").write_text(
        "cluster:\n  storage: postgresql://h/d\n  broker: redis://127.0.0.1:6379/0\n"
    )
    folder = check_embedded_catalog(load_settings(tmp_path, environ={}))
    assert folder == tmp_path / "catalog"
    assert (folder / HOST_MARKER).read_text().strip() == socket.gethostname()
    (tmp_path / "deep_events.yaml").write_text("cluster:\n  storage: postgresql://h/d\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "deep_events.yaml").write_text("cluster:\n  storage: postgresql://h/d\n")
    assert check_embedded_catalog(load_settings(other, environ={})) == other / "catalog"
    assert not (other / "catalog").exists()  # no broker: one host by construction


def test_a_path_a_worker_cannot_see_is_named_with_the_host(tmp_path):
    require_visible({"home": tmp_path})
    missing = tmp_path / "share" / "acq_1"
    with pytest.raises(ClusterError, match=r"acquisition folder .*acq_1 is not visible on host"):
        require_visible({"home": tmp_path, "acquisition folder": missing})


def test_unreachable_services_fail_fast_with_the_uri_redacted():
    with pytest.raises(ClusterError, match=r"Celery broker at pyamqp://guest:\*\*\*@127.0.0.1:9/"):
        check_broker("pyamqp://guest:secret@127.0.0.1:9//", timeout_s=2)
    with pytest.raises(ClusterError, match=r"storage at postgresql://u:\*\*\*@127.0.0.1:9/x"):
        check_storage("postgresql://u:secret@127.0.0.1:9/x", timeout_s=2)
