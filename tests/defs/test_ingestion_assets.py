"""Dagster assets, materialised per acquisition partition."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.defs.partitions import ACQUISITIONS
from deep_events_dagster.settings.platform import load_settings
from deep_events_dagster.testing.trees import generate_tree


@pytest.fixture
def setup(tmp_path):
    tree = generate_tree(tmp_path / "data", seed=21, n_acquisitions=2, kinds=("points", "fission"))
    home = tmp_path / "home"
    settings = load_settings(home, environ={}, roots=(tree.root,), kinds=("points", "fission"))
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    keys = [a.folder.as_posix() for a in tree.acquisitions]
    instance.add_dynamic_partitions(ACQUISITIONS, keys)
    return tree, home, defs, instance


def _materialize(defs, instance, key):
    job = defs.resolve_job_def("ingest")
    return job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)


def test_asset_graph_has_each_kind_side_by_side(setup):
    _, _, defs, _ = setup
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    ingestion = {
        k.to_user_string()
        for k in graph.get_all_asset_keys()
        if graph.get(k).group_name == "ingestion"
    }
    assert keys - ingestion == {
        "training_set",
        "trained_model",
        "model_evaluation",
        "model_exports",
        "points/predictions",
        "fission/predictions",
    }
    assert ingestion == {
        "raw_movie",
        "acquisition_metadata",
        "points/ground_truth",
        "points/event_crops",
        "points/event_catalog",
        "fission/ground_truth",
        "fission/event_crops",
        "fission/event_catalog",
        "legacy_events",
    }


def test_materialize_partition_writes_files_catalog_and_metadata(setup):
    tree, home, defs, instance = setup
    acq = tree.acquisitions[0]
    result = _materialize(defs, instance, acq.folder.as_posix())
    assert result.success
    materialized = {
        m.asset_key.to_user_string(): m
        for m in result.asset_materializations_for_node("points__event_crops")
    }
    crops = materialized["points/event_crops"]
    n_truth = len(acq.events_of("points"))
    assert crops.metadata["events"].value == n_truth
    assert "data:image/png;base64," in crops.metadata["thumbnail"].value
    assert crops.partition == acq.folder.as_posix()
    catalog_mat = result.asset_materializations_for_node("points__event_catalog")[0]
    manifest = yaml.safe_load((acq.folder / "events_points.yaml").read_text())
    assert catalog_mat.metadata["documents"].value == len(manifest["events"])
    with EventCatalog.open(None, home=home) as catalog:
        docs = catalog.find("event_data_points", {"acquisition_key": acq.folder.as_posix()})
        assert sorted(d["_id"] for d in docs) == sorted(e["_id"] for e in manifest["events"])
        assert sum(d["label"] == "points" for d in docs) == n_truth
        fission = catalog.count("event_data_fission", {"acquisition_key": acq.folder.as_posix()})
        assert fission >= len(acq.events_of("fission"))
        # the other acquisition was not touched
        other = tree.acquisitions[1].folder.as_posix()
        assert catalog.count("event_data_points", {"acquisition_key": other}) == 0
    db = yaml.safe_load((acq.folder / "db.yaml").read_text())
    assert db["cell_line"] == acq.expected_metadata["cell_line"]
    # fps is frames per second, frame_interval_s the interval (first acquisition: 5 s)
    assert acq.time_increment_s == 5.0
    assert (db["fps"], db["frame_interval_s"]) == (0.2, 5.0)
    assert all((d["fps"], d["frame_interval_s"]) == (0.2, 5.0) for d in docs)
    event_db = yaml.safe_load((Path(docs[0]["event_path"]) / "event_db.yaml").read_text())
    assert (event_db["fps"], event_db["frame_interval_s"]) == (0.2, 5.0)
    raw = result.asset_materializations_for_node("raw_movie")[0]
    assert raw.metadata["frame_interval_s"].value == 5.0 and raw.metadata["fps"].value == 0.2


def test_raw_movie_data_version_follows_the_movie(setup):
    tree, _, defs, instance = setup
    acq = tree.acquisitions[1]
    key = acq.folder.as_posix()

    def version():
        result = _materialize(defs, instance, key)
        assert result.success
        (materialization,) = result.asset_materializations_for_node("raw_movie")
        return materialization.tags["dagster/data_version"]

    first = version()
    assert first
    assert version() == first  # unchanged movie, same version
    import tifffile

    with tifffile.TiffFile(acq.movie_path) as tif:
        offset = tif.pages[0].dataoffsets[0]
    data = bytearray(acq.movie_path.read_bytes())
    data[offset] ^= 0x01
    acq.movie_path.write_bytes(bytes(data))
    assert version() != first


def test_bad_partition_fails_with_the_file_named(setup):
    tree, _home, defs, instance = setup
    acq = tree.acquisitions[0]
    csv = next(iter(acq.csv_files["points"]))
    csv.write_text("index,axis-0,axis-1\n0,1,2\n")
    result = _materialize(defs, instance, acq.folder.as_posix())
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures[0].step_key == "points__ground_truth"
    description = failures[0].step_failure_data.user_failure_data.description
    assert csv.name in description and "axis-2" in description
