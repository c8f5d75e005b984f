import os
import time

from deep_events_dagster.core.acquisitions import iter_acquisitions, movie_in_folder, root_of
from deep_events_dagster.core.layout import Layout


def test_discovery_skips_event_data_and_hidden(tmp_path):
    for folder in ["a/x", "a/y", "event_data_points/ev_1", ".hidden/z", "b"]:
        (tmp_path / folder).mkdir(parents=True)
    for folder in ["a/x", "a/y", "event_data_points/ev_1", ".hidden/z"]:
        (tmp_path / folder / "m.ome.tif").write_bytes(b"")
    (tmp_path / "b" / "notes.tif").write_bytes(b"")
    found = list(iter_acquisitions([tmp_path]))
    assert [a.folder.relative_to(tmp_path).as_posix() for a in found] == ["a/x", "a/y"]
    assert all(a.root == tmp_path for a in found)
    assert found[0].key == (tmp_path / "a" / "x").as_posix()
    excluded = list(iter_acquisitions([tmp_path], exclude=[tmp_path / "a" / "y"]))
    assert [a.folder.name for a in excluded] == ["x"]


def test_newest_movie_wins(tmp_path):
    old, new = tmp_path / "old.ome.tif", tmp_path / "new.ome.tiff"
    old.write_bytes(b"")
    new.write_bytes(b"")
    now = time.time()
    os.utime(old, (now, now))
    os.utime(new, (now - 100, now - 100))
    assert movie_in_folder(tmp_path) == old
    (tmp_path / ".partial.ome.tif").write_bytes(b"")
    assert movie_in_folder(tmp_path) == old
    # the model's predictions written beside the movie never become the acquisition's movie
    (tmp_path / "predictions_points.ome.tif").write_bytes(b"")
    assert movie_in_folder(tmp_path) == old


def test_root_of_prefers_deepest(tmp_path):
    folder = tmp_path / "r" / "s" / "acq"
    assert root_of(folder, [tmp_path / "r", tmp_path / "r" / "s"]) == tmp_path / "r" / "s"
    assert root_of(folder, [tmp_path / "other"]) == folder.parent


def test_layout_original_and_mirror(tmp_path):
    root, folder = tmp_path / "root", tmp_path / "root" / "d" / "acq"
    assert Layout().db_yaml(folder, root) == folder / "db.yaml"
    assert Layout().event_data(root, "points") == root / "event_data_points"
    mirror = Layout(output_root=tmp_path / "out")
    assert mirror.ground_truth(folder, root, "points") == (
        tmp_path / "out" / "root" / "d" / "acq" / "ground_truth_points.tif"
    )
    assert mirror.event_data(root, "fission") == tmp_path / "out" / "root" / "event_data_fission"
