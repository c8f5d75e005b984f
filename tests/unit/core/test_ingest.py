"""The core ingestion pipeline against the synthetic truth."""

import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.core.acquisition_ref import AcquisitionRef
from deep_events_dagster.core.errors import AnnotationError, ConfigurationError
from deep_events_dagster.core.events_manifest import event_documents, read_events_manifest
from deep_events_dagster.core.ingest import extract_events, make_ground_truth, make_metadata
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import load_vocabulary, read_db_yaml
from deep_events_dagster.core.pipeline import ingest_acquisition
from deep_events_dagster.testing.trees import generate_tree

POST = 5


@pytest.fixture(scope="module")
def vocabulary():
    return load_vocabulary()


def _ingest(tree, vocabulary, layout=None, kinds=("points",), **kwargs):
    reports = {}
    for acq in tree.acquisitions:
        ref = AcquisitionRef(folder=acq.folder, root=tree.root)
        reports[acq.folder] = ingest_acquisition(
            ref, kinds=kinds, layout=layout or Layout(), vocabulary=vocabulary, **kwargs
        )
    return reports


def test_events_match_truth_on_non_square_movies(tmp_path, vocabulary):
    tree = generate_tree(tmp_path / "data", seed=11, n_acquisitions=3, height=300, width=460)
    reports = _ingest(tree, vocabulary)
    for acq in tree.acquisitions:
        step = reports[acq.folder].events["points"]
        positives = sorted((e for e in step.events if e.positive), key=lambda e: e.frames)
        truth = sorted(acq.events_of("points"), key=lambda e: e.frames)
        assert len(positives) == len(truth)
        for found, event in zip(positives, truth):
            start, stop = event.frames
            assert found.frames == (start, min(acq.shape[0], stop - 1 + POST + 1))
            x0, y0, x1, y1 = found.crop_box
            assert (x1 - x0, y1 - y0) == (256, 256)
            assert 0 <= x0 and x1 <= acq.shape[-1] and 0 <= y0 and y1 <= acq.shape[-2]
            cy, cx = event.center
            assert x0 <= cx < x1 and y0 <= cy < y1
            assert abs((x0 + x1) / 2 - cx) <= 1 or x0 == 0 or x1 == acq.shape[-1]


def test_metadata_matches_expected(tmp_path, vocabulary):
    tree = generate_tree(tmp_path / "data", seed=3, n_acquisitions=4)
    for acq in tree.acquisitions:
        ref = AcquisitionRef(folder=acq.folder, root=tree.root)
        meta, path = make_metadata(ref, Layout(), vocabulary)
        assert read_db_yaml(path) == meta
        for key, value in acq.expected_metadata.items():
            if key == "ome":
                for ome_key, ome_value in value.items():
                    assert meta["ome"][ome_key] == pytest.approx(ome_value), ome_key
            elif key in ("fps", "frame_interval_s"):
                assert meta[key] == pytest.approx(value, rel=1e-6), key
            else:
                assert meta[key] == value, key


def test_crops_are_bit_exact_and_gt_matches(tmp_path, vocabulary):
    tree = generate_tree(tmp_path / "data", seed=4, n_acquisitions=2, height=320, width=400)
    reports = _ingest(tree, vocabulary)
    for acq in tree.acquisitions:
        movie = tifffile.imread(acq.movie_path)
        gt = tifffile.imread(acq.folder / "ground_truth_points.tif")
        step = reports[acq.folder].events["points"]
        documents = {d["_id"]: d for d in event_documents(step.manifest)}
        for record in step.events:
            x0, y0, x1, y1 = record.crop_box
            t0, t1 = record.frames
            images = tifffile.imread(record.folder / "images.tif")
            assert images.dtype == movie.dtype
            assert np.array_equal(images, movie[t0:t1, ..., y0:y1, x0:x1])
            gt_crop = tifffile.imread(record.folder / "ground_truth.tif")
            assert np.array_equal(gt_crop, gt[t0:t1, y0:y1, x0:x1])
            assert gt_crop.any() == record.positive  # negatives are signal-free
            doc = yaml.safe_load((record.folder / "event_db.yaml").read_text())
            assert doc == documents[record.event_id]  # the catalog gets what the folder says
            assert doc["_id"] == record.event_id and len(doc["_id"]) == 24
            assert doc["frames"] == [t0, t1] and doc["crop_box"] == [x0, y0, x1, y1]
            assert doc["extraction_type"] == "automatic" and doc["type"] == "event"
            assert doc["cell_line"] == acq.expected_metadata["cell_line"]


def _event_files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.glob("event_data_points/ev_*/*"))
    }


def test_event_folders_do_not_depend_on_the_number_of_writers(tmp_path, vocabulary):
    tree = generate_tree(tmp_path / "data", seed=6, n_acquisitions=1, height=700, width=740)
    acq = tree.acquisitions[0]
    ref = AcquisitionRef(folder=acq.folder, root=tree.root)
    make_metadata(ref, Layout(), vocabulary)
    make_ground_truth(ref, "points", Layout())
    outputs = []
    for workers in (1, 3):
        step = extract_events(ref, "points", Layout(), write_workers=workers)
        outputs.append(_event_files(tree.root))
    assert {r.positive for r in step.events} == {True, False}
    assert outputs[0] and outputs[0] == outputs[1]


def test_a_failed_folder_write_stops_extraction_and_keeps_the_manifest(
    tmp_path, vocabulary, monkeypatch
):
    from deep_events_dagster.core import crops

    tree = generate_tree(tmp_path / "data", seed=6, n_acquisitions=1, height=700, width=740)
    acq = tree.acquisitions[0]
    ref = AcquisitionRef(folder=acq.folder, root=tree.root)
    make_metadata(ref, Layout(), vocabulary)
    make_ground_truth(ref, "points", Layout())
    first = extract_events(ref, "points", Layout())
    manifest_before = first.manifest.read_bytes()
    files_before = _event_files(tree.root)
    assert len(first.events) > 3

    real_write = crops.write_event_folder
    calls = []

    def failing_write(folder, **kwargs):
        calls.append(folder)
        if len(calls) == 3:
            raise OSError(f"{folder}: disk full")
        return real_write(folder, **kwargs)

    monkeypatch.setattr(crops, "write_event_folder", failing_write)
    with pytest.raises(OSError, match="disk full"):
        extract_events(ref, "points", Layout(), write_workers=2)
    assert first.manifest.read_bytes() == manifest_before
    assert _event_files(tree.root) == files_before  # rewritten folders hold the same bytes
    assert not list((tree.root / "event_data_points").glob(".tmp-*"))


def test_two_close_events_stay_two_and_edge_event_box_inside(tmp_path, vocabulary):
    tree = generate_tree(
        tmp_path / "data",
        seed=8,
        n_acquisitions=1,
        height=360,
        width=520,
        two_close_events=True,
        edge_event=True,
    )
    acq = tree.acquisitions[0]
    step = _ingest(tree, vocabulary)[acq.folder].events["points"]
    positives = [e for e in step.events if e.positive]
    assert len(positives) == len(acq.events_of("points"))
    for record in positives:
        x0, y0, x1, y1 = record.crop_box
        assert 0 <= x0 < x1 <= 520 and 0 <= y0 < y1 <= 360


def test_reingestion_is_idempotent_and_follows_csv_changes(tmp_path, vocabulary):
    tree = generate_tree(tmp_path / "data", seed=12, n_acquisitions=1, split_csv=False)
    acq = tree.acquisitions[0]
    ref = AcquisitionRef(folder=acq.folder, root=tree.root)
    first = _ingest(tree, vocabulary)[acq.folder].events["points"]
    second = _ingest(tree, vocabulary)[acq.folder].events["points"]
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]
    event_root = tree.root / "event_data_points"
    assert sorted(p.name for p in event_root.iterdir()) == sorted(
        e.folder.name for e in first.events
    )
    # drop the rows of one event from the CSV: its folder disappears, the others stay
    csv = acq.csv_files["points"][0]
    lines = csv.read_text().splitlines(keepends=True)
    dropped = acq.events_of("points")[0]
    drop_rows = len(dropped.points)
    kept = [lines[0], *lines[1 + drop_rows :]]
    csv.write_text("".join(kept))
    make_ground_truth(ref, "points", Layout())
    third = extract_events(ref, "points", Layout())
    assert third.removed_stale >= 1
    assert len([e for e in third.events if e.positive]) == len(acq.events_of("points")) - 1
    assert sorted(p.name for p in event_root.iterdir()) == sorted(
        e.folder.name for e in third.events
    )
    assert [d["_id"] for d in event_documents(third.manifest)] == [e.event_id for e in third.events]
    assert len(read_events_manifest(third.manifest)) == len(third.events)


def test_output_root_leaves_data_untouched(tmp_path, vocabulary):
    tree = generate_tree(tmp_path / "data", seed=13, n_acquisitions=2)
    before = sorted(p.relative_to(tree.root) for p in tree.root.rglob("*"))
    layout = Layout(output_root=tmp_path / "out")
    reports = _ingest(tree, vocabulary, layout=layout)
    assert sorted(p.relative_to(tree.root) for p in tree.root.rglob("*")) == before
    for acq in tree.acquisitions:
        mirror = tmp_path / "out" / tree.root.name / acq.folder.relative_to(tree.root)
        assert (mirror / "db.yaml").is_file() and (mirror / "ground_truth_points.tif").is_file()
        for record in reports[acq.folder].events["points"].events:
            assert record.folder.parent == tmp_path / "out" / tree.root.name / "event_data_points"


def test_movie_smaller_than_crop_is_clear(tmp_path, vocabulary):
    tree = generate_tree(
        tmp_path / "data",
        seed=14,
        n_acquisitions=1,
        height=200,
        width=240,
        events_per_acquisition=(1, 1),
        min_separation=20.0,
    )
    acq = tree.acquisitions[0]
    ref = AcquisitionRef(folder=acq.folder, root=tree.root)
    make_metadata(ref, Layout(), vocabulary)
    make_ground_truth(ref, "points", Layout())
    with pytest.raises(ConfigurationError, match="smaller than the 256 px crop"):
        extract_events(ref, "points", Layout())
    assert not (tree.root / "event_data_points").exists()


def test_points_outside_the_movie_are_reported_with_file(tmp_path, vocabulary):
    tree = generate_tree(tmp_path / "data", seed=15, n_acquisitions=1, split_csv=False)
    acq = tree.acquisitions[0]
    ref = AcquisitionRef(folder=acq.folder, root=tree.root)
    make_metadata(ref, Layout(), vocabulary)
    csv = acq.csv_files["points"][0]
    header = csv.read_text().splitlines()[0]
    n_axes = header.count("axis-")
    bad_row = "99.0,0.0," + ("0.0," if n_axes == 4 else "") + "5.0,99999.0\n"
    csv.write_text(csv.read_text() + bad_row)
    with pytest.raises(AnnotationError) as err:
        make_ground_truth(ref, "points", Layout())
    assert csv.name in str(err.value)
    assert not (acq.folder / "ground_truth_points.tif").exists()


def test_hard_negatives_add_signal_free_crops_at_bright_places(tmp_path, vocabulary):
    tree = generate_tree(tmp_path / "data", seed=4, n_acquisitions=1, height=320, width=400)
    acq = tree.acquisitions[0]
    ref = AcquisitionRef(folder=acq.folder, root=tree.root)
    make_metadata(ref, Layout(), vocabulary)
    make_ground_truth(ref, "points", Layout())
    plain = extract_events(ref, "points", Layout(), crop_size=128)
    step = extract_events(ref, "points", Layout(), crop_size=128, hard_negatives=3)

    before = {(e.frames, tuple(e.crop_box)) for e in plain.events}
    added = [e for e in step.events if (e.frames, tuple(e.crop_box)) not in before]
    assert len(added) == 3 and not any(e.positive for e in added)
    assert step.n_positive == plain.n_positive
    lengths = sorted(e.frames[1] - e.frames[0] for e in plain.events if e.positive)
    gt = tifffile.imread(acq.folder / "ground_truth_points.tif")
    movie = tifffile.imread(acq.movie_path)
    movie = movie[:, 0] if movie.ndim == 4 else movie
    for e in added:
        assert e.frames[1] - e.frames[0] == int(np.median(lengths))
        x0, y0, x1, y1 = e.crop_box
        assert (x1 - x0, y1 - y0) == (128, 128)
        assert not gt[e.frames[0] : e.frames[1], y0:y1, x0:x1].any()
        # centred on a place brighter than the movie's typical pixel by far
        crop = movie[e.frames[0] : e.frames[1], y0:y1, x0:x1]
        assert crop.max() > np.percentile(movie, 99)
    entries = {entry["_id"]: entry for entry in read_events_manifest(step.manifest)}
    assert {entries[e.event_id]["document"]["label"] for e in added} == {"negative"}
