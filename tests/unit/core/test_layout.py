"""One name for a kind's event data: the folder tree and the catalog collection."""

from pathlib import Path

from deep_events_dagster.catalog.protocol import collection_name
from deep_events_dagster.core.layout import Layout, event_data_name


def test_the_folder_tree_and_the_collection_share_one_name(tmp_path):
    root = tmp_path / "data"
    assert event_data_name("mito_fission") == "event_data_mito_fission"
    assert collection_name("mito_fission") == "event_data_mito_fission"
    assert Layout().event_data(root, "mito_fission") == Path(root) / "event_data_mito_fission"
    mirrored = Layout(output_root=tmp_path / "out").event_data(root, "mito_fission")
    assert mirrored.name == "event_data_mito_fission" and tmp_path / "out" in mirrored.parents
