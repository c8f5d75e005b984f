"""Tests for core.checks: each check with passing and failing inputs, by value."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from deep_events_dagster.core import checks
from deep_events_dagster.core.annotations import AnnotationPoint
from deep_events_dagster.core.crops import write_event_folder
from deep_events_dagster.core.errors import AnnotationError
from deep_events_dagster.core.ground_truth import write_ground_truth
from deep_events_dagster.core.ground_truth_reader import sidecar_path

CROP = 32


def pt(frame: int, y: float, x: float, file: str = "/a/points.csv", row: int = 0, channel=None):
    return AnnotationPoint(frame=frame, y=y, x=x, channel=channel, file=file, row=row)


# ---------------------------------------------------------------- annotations_inside_movie


def test_annotations_inside_movie_passes_and_counts_per_file() -> None:
    points = [pt(0, 0, 0, row=0), pt(9, 99, 199, row=1), pt(3, 50.5, 20.25, "/a/points_2.csv")]
    result = checks.annotations_inside_movie(
        points, n_frames=10, height=100, width=200, files=["/a/points.csv", "/a/points_2.csv"]
    )
    assert result.passed
    assert (result.n_points, result.n_outside) == (3, 0)
    assert result.files == (
        checks.FilePoints("points.csv", 2, 0),
        checks.FilePoints("points_2.csv", 1, 0),
    )
    assert result.problems == ()
    assert result.message == "3 points in 2 files, all inside the movie (10 frames, 200×100 px)"


def test_annotations_inside_movie_names_the_file_and_counts_bad_points() -> None:
    points = [
        pt(0, 10, 10, row=0),
        pt(0, 100, 10, row=1),  # y = height: outside (pixel centres go to height − 1)
        pt(10, 10, 10, row=2),  # frame = n_frames
        pt(-1, 10, 10, row=3),
        pt(1, 5, 5, "/a/points_2.csv", row=0),
    ]
    result = checks.annotations_inside_movie(
        points, n_frames=10, height=100, width=200, files=["/a/points.csv", "/a/points_2.csv"]
    )
    assert not result.passed
    assert (result.n_points, result.n_outside) == (5, 3)
    assert result.files == (
        checks.FilePoints("points.csv", 4, 3),
        checks.FilePoints("points_2.csv", 1, 0),
    )
    assert result.problems[0] == "points.csv row 1 (line 3): y=100.0 > 99 (height 100)"
    assert result.problems[1] == "points.csv row 2 (line 4): frame 10 ≥ 10 frames"
    assert result.message.startswith("points.csv: 3 of 4 points outside the movie (row 1:")
    assert "points_2.csv" not in result.message


def test_annotations_inside_movie_checks_channels_of_four_axis_files() -> None:
    points = [pt(0, 1, 1, channel=0), pt(0, 1, 1, channel=2, row=1)]
    result = checks.annotations_inside_movie(points, n_frames=1, height=4, width=4, n_channels=2)
    assert (result.passed, result.n_outside) == (False, 1)
    assert "channel 2 ≥ 2 channels" in result.problems[0]


def test_annotations_inside_movie_without_points_passes() -> None:
    result = checks.annotations_inside_movie([], n_frames=1, height=4, width=4)
    assert result.passed and result.n_points == 0 and result.message == "no annotated points"


def test_read_points_returns_outside_points_in_pixels(tmp_path: Path) -> None:
    (tmp_path / "points.csv").write_text("index,axis-0,axis-1,axis-2\n0,1,2.0,4.0\n1,3,-1,900\n")
    (tmp_path / "other.csv").write_text("index,axis-0,axis-1,axis-2\n0,1,2,4\n")
    meta = {"scale_csv": True, "ome": {"physical_size_x": 0.5}}
    points, files = checks.read_points(tmp_path, "points", meta)
    assert [p.name for p in files] == ["points.csv"]
    assert [(p.frame, p.y, p.x) for p in points] == [(1, 4.0, 8.0), (3, -2.0, 1800.0)]
    # pixels when scale_csv is false; the movie's pixel size is the fallback
    points, _ = checks.read_points(tmp_path, "points", {"scale_csv": {"points": False}})
    assert [(p.y, p.x) for p in points] == [(2.0, 4.0), (-1.0, 900.0)]
    (tmp_path / "points_bad.csv").write_text("index,axis-0,axis-1\n0,1,2\n")
    with pytest.raises(AnnotationError, match=r"points_bad\.csv"):
        checks.read_points(tmp_path, "points", meta, physical_size_x=0.5)


# ---------------------------------------------------------------- metadata_complete

COMPLETE = {
    "cell_line": ["cos7"],
    "microscope": ["isim"],
    "contrast": ["fluorescence"],
    "stain": ["mitotracker"],
    "typically_use": True,
    "augmented": False,
    "scale_csv": True,
    "type": "original",
}


def test_metadata_complete_passes_with_false_defaults_as_values() -> None:
    result = checks.metadata_complete(COMPLETE)
    assert result.passed and result.missing == () and not result.brightfield
    assert result.checked == (
        "cell_line",
        "microscope",
        "contrast",
        "stain or labels",
        "typically_use",
        "augmented",
        "scale_csv",
        "type",
    )


def test_metadata_complete_lists_missing_and_empty_keys_in_order() -> None:
    meta = dict(COMPLETE, cell_line=[], microscope=None, stain=" ", labels=[], type="")
    meta.pop("typically_use")
    result = checks.metadata_complete(meta)
    assert not result.passed
    assert result.missing == ("cell_line", "microscope", "stain or labels", "typically_use", "type")
    assert result.message.startswith("db.yaml lacks cell_line, microscope, stain or labels,")


def test_metadata_complete_labels_replace_stain_and_brightfield_needs_neither() -> None:
    no_stain = {k: v for k, v in COMPLETE.items() if k != "stain"}
    assert checks.metadata_complete(dict(no_stain, labels=["mitochondria"])).passed
    assert checks.metadata_complete(no_stain).missing == ("stain or labels",)
    bf = checks.metadata_complete(dict(no_stain, contrast=["BF"]))
    assert bf.passed and bf.brightfield
    assert checks.metadata_complete(dict(no_stain, contrast="brightfield")).passed
    # a per-kind scale_csv mapping with false values is a value
    assert checks.metadata_complete(dict(COMPLETE, scale_csv={"points": False})).passed
    assert checks.metadata_complete(dict(COMPLETE, contrast=[None])).missing == ("contrast",)


# ---------------------------------------------------------------- one_peak_per_point


def _gt(tmp_path: Path, points, *, sigma: float = 2.0, name: str = "gt.tif") -> Path:
    path = tmp_path / name
    frame_yx = np.array([(p.frame, p.y, p.x) for p in points], dtype=float).reshape(-1, 3)
    write_ground_truth(path, frame_yx, n_frames=6, height=60, width=80, sigma=sigma)
    return path


def test_one_peak_per_point_passes_when_every_point_has_its_maximum(tmp_path: Path) -> None:
    points = [pt(0, 10, 10, row=0), pt(0, 40, 60, row=1), pt(3, 30.4, 30.6, row=2)]
    result = checks.one_peak_per_point(_gt(tmp_path, points), points)
    assert result.passed and result.used_support
    assert (result.n_points, result.n_peaks, result.n_missing) == (3, 3, 0)
    assert result.frames_checked == 2
    assert result.missing == ()
    assert result.message.startswith("every one of 3 annotated points has a ground-truth maximum")


def test_one_peak_per_point_close_points_share_one_maximum(tmp_path: Path) -> None:
    points = [pt(1, 20, 20, row=0), pt(1, 20, 24, row=1)]  # 4 px apart: one event
    result = checks.one_peak_per_point(_gt(tmp_path, points), points)
    assert result.passed and (result.n_points, result.n_peaks) == (2, 1)


def test_one_peak_per_point_reports_points_without_a_maximum(tmp_path: Path) -> None:
    rendered = [pt(0, 10, 10), pt(2, 30, 30)]
    gt = _gt(tmp_path, rendered)
    annotated = [
        pt(0, 10, 18, row=0),  # 8 px from the peak: within 10 px
        pt(0, 10, 21, row=1),  # 11 px away: missed
        pt(2, 30, 30, row=2),
        pt(4, 30, 30, row=3),  # a frame without any signal
    ]
    result = checks.one_peak_per_point(gt, annotated)
    assert not result.passed
    assert (result.n_points, result.n_missing, result.frames_checked) == (4, 2, 3)
    assert result.missing == (
        checks.MissingPeak("points.csv", 1, 0, 10.0, 21.0),
        checks.MissingPeak("points.csv", 3, 4, 30.0, 30.0),
    )
    assert result.message.startswith("2 of 4 annotated points have no ground-truth maximum ≥ 0.5")
    # without the sidecar whole frames are read: same answer
    sidecar_path(gt).unlink()
    again = checks.one_peak_per_point(gt, annotated)
    assert not again.used_support
    assert (again.n_missing, again.missing) == (2, result.missing)
    # a tighter tolerance loses the 8 px point too
    assert checks.one_peak_per_point(gt, annotated, merge_distance_px=5).n_missing == 3


def test_one_peak_per_point_fails_when_sigma_is_too_small_for_sub_pixel_points(
    tmp_path: Path,
) -> None:
    points = [pt(0, 10.5, 10.5, row=0), pt(1, 20.5, 30.5, row=1)]
    result = checks.one_peak_per_point(_gt(tmp_path, points, sigma=0.3), points)
    assert (result.passed, result.n_peaks, result.n_missing) == (False, 0, 2)


# ---------------------------------------------------------------- crops_valid


def _event(root: Path, name: str, *, frames=(2, 5), positive=True, images=None, gt=None):
    n_t = frames[1] - frames[0]
    rng = np.random.default_rng(len(name))
    if images is None:
        images = rng.integers(100, 4000, size=(n_t, CROP, CROP), dtype=np.uint16)
    if gt is None:
        gt = np.zeros((n_t, CROP, CROP), np.float32)
        if positive:
            gt[0, 10, 10] = 1.0
    write_event_folder(root / name, images=images, ground_truth=gt, event_db={"_id": name})
    return {"_id": name, "folder": name, "positive": positive, "frames": list(frames)}


def _manifest(tmp_path: Path, root: Path, entries) -> Path:
    path = tmp_path / "events_points.yaml"
    data = {"acquisition_key": "/acq", "kind": "points", "event_data": root.as_posix()}
    path.write_text(yaml.safe_dump({**data, "events": list(entries)}))
    return path


def _crops(manifest: Path, **kw):
    return checks.crops_valid(manifest, crop_size=CROP, dtype="uint16", **kw)


def test_crops_valid_passes_on_good_folders(tmp_path: Path) -> None:
    root = tmp_path / "event_data_points"
    entries = [_event(root, "ev_a"), _event(root, "ev_b", frames=(0, 1), positive=False)]
    result = _crops(_manifest(tmp_path, root, entries))
    assert result.passed
    assert (result.n_events, result.n_positive, result.n_negative, result.n_bad) == (2, 1, 1, 0)
    assert result.message == "2 event folders valid (1 events, 1 negatives; 32×32 px, uint16)"


def test_crops_valid_multichannel_shape(tmp_path: Path) -> None:
    root = tmp_path / "event_data_points"
    images = np.random.default_rng(0).integers(0, 9, size=(3, 2, CROP, CROP), dtype=np.uint16)
    manifest = _manifest(tmp_path, root, [_event(root, "ev_a", images=images)])
    assert _crops(manifest, n_channels=2).passed
    single = _crops(manifest, n_channels=1)
    assert not single.passed
    assert single.problems == (
        "ev_a: images.tif has shape (3, 2, 32, 32), expected (3, 32, 32) (frames 2–5)",
    )


def test_crops_valid_reports_each_broken_folder(tmp_path: Path) -> None:
    root = tmp_path / "event_data_points"
    n_t = 3
    entries = [
        _event(root, "ev_ok"),
        _event(root, "ev_gone"),
        _event(root, "ev_short"),  # 3 frames written, 4 listed below
        _event(root, "ev_float", images=np.random.default_rng(1).random((n_t, CROP, CROP))),
        _event(root, "ev_flat", images=np.full((n_t, CROP, CROP), 7, np.uint16)),
        _event(root, "ev_weak", gt=np.full((n_t, CROP, CROP), 0.3, np.float32)),
        _event(root, "ev_neg", positive=False, gt=np.full((n_t, CROP, CROP), 0.2, np.float32)),
    ]
    entries[2]["frames"] = [2, 6]
    shutil.rmtree(root / "ev_gone")
    result = _crops(_manifest(tmp_path, root, entries))
    assert not result.passed
    assert (result.n_events, result.n_bad) == (7, 6)
    assert result.problems[0] == "ev_gone: folder missing"
    assert result.problems[1].startswith("ev_short: images.tif has shape (3, 32, 32), expected (4,")
    assert result.problems[2].startswith("ev_short: ground_truth.tif has shape (3, 32, 32)")
    assert result.problems[3] == "ev_float: images.tif is float64, the movie is uint16"
    assert result.problems[4] == "ev_flat: images.tif is empty (every pixel is 7)"
    assert result.problems[5] == "ev_weak: event crop whose ground truth peaks at 0.3 < 0.5"
    assert result.problems[6] == "ev_neg: negative crop with ground-truth signal (max 0.2)"
    assert result.message.startswith("6 of 7 event folders invalid (first: ev_gone: folder missing")


def test_crops_valid_a_constant_first_frame_alone_is_not_empty(tmp_path: Path) -> None:
    root = tmp_path / "event_data_points"
    images = np.random.default_rng(2).integers(100, 4000, size=(3, CROP, CROP), dtype=np.uint16)
    images[0] = 0  # e.g. a dark first frame
    manifest = _manifest(tmp_path, root, [_event(root, "ev_dark_start", images=images)])
    result = _crops(manifest)
    assert result.passed, result.problems


def test_crops_valid_unreadable_file_and_missing_manifest(tmp_path: Path) -> None:
    root = tmp_path / "event_data_points"
    manifest = _manifest(tmp_path, root, [_event(root, "ev_a")])
    (root / "ev_a" / "images.tif").write_bytes(b"not a tiff")
    result = _crops(manifest)
    assert result.n_bad == 1 and result.problems[0].startswith("ev_a: images.tif unreadable")
    missing = _crops(tmp_path / "nope.yaml")
    assert not missing.passed and "no events manifest" in missing.message


# ---------------------------------------------------------------- catalog_matches_folders


def _docs(root: Path, names, **extra):
    return [{"_id": n, "event_path": (root / n).as_posix(), **extra} for n in names]


def test_catalog_matches_folders_passes_and_ignores_manual_documents(tmp_path: Path) -> None:
    root = tmp_path / "event_data_points"
    manifest = _manifest(tmp_path, root, [_event(root, "ev_a"), _event(root, "ev_b")])
    docs = _docs(root, ["ev_a", "ev_b"], extraction_type="automatic")
    docs += [{"_id": "m1", "event_path": "/nowhere", "extraction_type": "manual"}]
    result = checks.catalog_matches_folders(docs, manifest)
    assert result.passed
    assert (result.n_manifest, result.n_documents, result.n_manual) == (2, 2, 1)
    assert result.message == (
        "catalog holds exactly the 2 event folders of the manifest, every event_path exists"
    )


def test_catalog_matches_folders_reports_missing_extra_and_pathless(tmp_path: Path) -> None:
    root = tmp_path / "event_data_points"
    manifest = _manifest(tmp_path, root, [_event(root, "ev_a"), _event(root, "ev_b")])
    docs = _docs(root, ["ev_a", "ev_stale"])  # no extraction_type: automatic
    result = checks.catalog_matches_folders(docs, checks.load_manifest(manifest))
    assert not result.passed
    assert result.missing_ids == ("ev_b",)
    assert result.unexpected_ids == ("ev_stale",)
    assert result.missing_paths == ("ev_stale",)
    assert result.message == (
        "1 manifest event(s) missing from the catalog; 1 catalog document(s) not in the "
        "manifest; 1 document(s) whose event_path does not exist"
    )
    # a manual document holding an automatic event's id does not stand in for it
    manual = _docs(root, ["ev_a"]) + _docs(root, ["ev_b"], extraction_type="manual")
    assert checks.catalog_matches_folders(manual, manifest).missing_ids == ("ev_b",)


# ---------------------------------------------------------------- positive_negative_ratio


def test_positive_negative_ratio_values() -> None:
    ok = checks.positive_negative_ratio(4, 6, n_annotated_points=20)
    assert ok.passed and ok.negatives_per_event == 1.5
    assert ok.message == "4 events, 6 negatives (1.50 negatives per event)"
    lost = checks.positive_negative_ratio(0, 0, n_annotated_points=5)
    assert not lost.passed and lost.negatives_per_event is None
    assert lost.message == "5 annotated points but no event detected (0 negatives)"
    nothing = checks.positive_negative_ratio(0, 0, n_annotated_points=0)
    assert nothing.passed and nothing.negatives_per_event is None
