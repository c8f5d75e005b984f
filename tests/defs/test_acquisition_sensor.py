"""The acquisition sensor through Dagster's sensor context."""

import shutil

import dagster as dg

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.defs.partitions import ACQUISITIONS
from deep_events_dagster.defs.resources import CatalogResource
from deep_events_dagster.settings.platform import load_settings
from deep_events_dagster.testing.trees import generate_tree


def _evaluate(defs, instance, cursor, home):
    sensor = defs.resolve_sensor_def("acquisition_sensor")
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={"catalog": CatalogResource(home=str(home))},
    )
    return sensor(context)


def test_sensor_registers_partitions_and_requests_runs(tmp_path):
    tree = generate_tree(tmp_path / "data", seed=51, n_acquisitions=2)
    home = tmp_path / "home"
    settings = load_settings(home, environ={}, roots=(tree.root,), quiet_seconds=0.0)
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    result = _evaluate(defs, instance, None, home)
    keys = sorted(a.folder.as_posix() for a in tree.acquisitions)
    assert sorted(r.partition_key for r in result.run_requests) == keys
    assert all("@" in r.run_key for r in result.run_requests)
    # no executor-specific run config: the same requests are valid for every executor
    assert all(not r.run_config for r in result.run_requests)
    (request,) = result.dynamic_partitions_requests
    assert sorted(request.partition_keys) == keys
    assert request.partitions_def_name == ACQUISITIONS
    # run the requested partition, then nothing more is requested for unchanged data
    instance.add_dynamic_partitions(ACQUISITIONS, keys)
    again = _evaluate(defs, instance, result.cursor, home)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []


def test_sensor_marks_removed_acquisition_documents(tmp_path):
    tree = generate_tree(tmp_path / "data", seed=52, n_acquisitions=2)
    home = tmp_path / "home"
    settings = load_settings(home, environ={}, roots=(tree.root,), quiet_seconds=0.0)
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    first = _evaluate(defs, instance, None, home)
    gone = tree.acquisitions[0]
    instance.add_dynamic_partitions(ACQUISITIONS, [gone.folder.as_posix()])
    job = defs.resolve_job_def("ingest")
    assert job.execute_in_process(partition_key=gone.folder.as_posix(), instance=instance).success
    shutil.rmtree(gone.folder)
    tick = _evaluate(defs, instance, first.cursor, home)
    assert tick.run_requests == []
    (observation,) = tick.asset_events
    assert observation.partition == gone.folder.as_posix()
    assert observation.metadata["removed"].value is True
    with EventCatalog.open(None, home=home) as catalog:
        docs = catalog.find("event_data_points", {"acquisition_key": gone.folder.as_posix()})
        assert docs and all(d["acquisition_removed"] is True for d in docs)
        assert observation.metadata["catalog_documents_marked"].value == len(docs)


def test_sensor_skips_without_roots(tmp_path):
    defs = build_definitions(load_settings(tmp_path, environ={}))
    result = _evaluate(defs, dg.DagsterInstance.ephemeral(), None, tmp_path)
    assert "no data roots configured" in result.skip_message
