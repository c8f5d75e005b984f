"""Tests for core.training_set: splits, fps rule, windows, normalisation, content addressing."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.frame_windows import (
    SKIP_NO_FPS,
    SKIP_NOT_MULTIPLE,
    SKIP_SLOWER,
    frame_step,
    window_ends,
)
from deep_events_dagster.core.fsutil import TEMP_PREFIX
from deep_events_dagster.core.montage import montage
from deep_events_dagster.core.normalisation import (
    normalize_image_frames,
    normalize_mask_frames,
    smooth_mask_frames,
)
from deep_events_dagster.core.splits import _unit_hash, assign_split, assign_splits, in_subset
from deep_events_dagster.core.training_events import SKIP_NO_FOLDER
from deep_events_dagster.core.training_set import (
    SKIP_OTHER_SPLIT,
    SKIP_SIZE,
    SKIP_SUBSET,
    SKIP_TOO_SHORT,
    build_training_set,
)
from deep_events_dagster.core.training_set_folder import (
    COMPLETE_NAME,
    is_complete,
    read_training_set_manifest,
)
from deep_events_dagster.core.training_set_parameters import TrainingSetParameters

SIZE = 32
MARK = (20, 20)  # where the ground truth of frame t holds (t + 1) / 10


# -- helpers ---------------------------------------------------------------------------------


def _frames(n_frames: int, code: int, size: int = SIZE) -> np.ndarray:
    """uint16 frames: background 100, one bright pixel at flat index ``code * 16 + t``."""
    images = np.full((n_frames, size, size), 100, dtype=np.uint16)
    for t in range(n_frames):
        images[t].flat[code * 16 + t] = 100 + 50 * (t + 1)
    return images


def _ground_truth(n_frames: int, size: int = SIZE, positive: bool = True) -> np.ndarray:
    gt = np.zeros((n_frames, size, size), dtype=np.float32)
    if positive:
        for t in range(n_frames):
            gt[t, MARK[0], MARK[1]] = (t + 1) / 10
    return gt


def _event(
    root: Path,
    code: int,
    n_frames: int,
    *,
    size: int = SIZE,
    positive: bool = True,
    images: np.ndarray | None = None,
    ground_truth: np.ndarray | None = None,
    gt_name: str = "ground_truth.tif",
    **fields,
) -> dict:
    """Write an event folder and return its catalog document."""
    event_id = f"{code:024x}"
    folder = root / f"ev_test_{event_id}"
    folder.mkdir(parents=True)
    images = _frames(n_frames, code, size) if images is None else images
    gt = _ground_truth(n_frames, size, positive) if ground_truth is None else ground_truth
    tifffile.imwrite(folder / "images.tif", images, photometric="minisblack")
    tifffile.imwrite(folder / gt_name, gt, photometric="minisblack")
    document = {
        "_id": event_id,
        "event_path": folder.as_posix(),
        "frames": [0, n_frames],
        "crop_box": [0, 0, size, size],
        "label_file": "ground_truth.tif",
        "type": "event",
        "label": "points" if positive else "negative",
        "acquisition_key": f"acq{code % 3}",
        "fps": 1.0,
    }
    document.update(fields)
    return document


def _decode(window_frame: np.ndarray) -> tuple[int, int]:
    """(event code, frame index) encoded by :func:`_frames` in a normalised frame."""
    flat = int(np.argmax(window_frame))
    assert window_frame.flat[flat] == pytest.approx(1.0)
    return divmod(flat, 16)


def _stacks(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        split: (np.load(path / f"{split}_images.npy"), np.load(path / f"{split}_masks.npy"))
        for split in ("train", "eval")
    }


def _build(documents, out_root, **settings):
    return build_training_set(
        documents,
        params=TrainingSetParameters.from_settings(settings),
        out_root=out_root,
        db_prompt={"kind": "points"},
        collection="event_data_points",
    )


# -- splits ----------------------------------------------------------------------------------


def test_split_is_deterministic_order_free_and_close_to_the_ratio():
    ids = [f"{i:024x}" for i in range(1000)]
    first = {i: assign_split(i, 0.2) for i in ids}
    again = {i: assign_split(i, 0.2) for i in reversed(ids)}
    assert first == again
    share = sum(split == "eval" for split in first.values()) / len(ids)
    assert 0.17 <= share <= 0.23
    # raising the fraction only moves events from train to eval
    more = {i: assign_split(i, 0.4) for i in ids}
    assert all(more[i] == "eval" for i in ids if first[i] == "eval")
    assert 0.36 <= sum(s == "eval" for s in more.values()) / len(ids) <= 0.44
    assert {assign_split(i, 0.0) for i in ids} == {"train"}


def test_assign_splits_keeps_stored_splits_and_returns_new_ones():
    docs = [{"_id": f"id{i}"} for i in range(50)]
    docs[0]["dataset_split"] = "eval"
    docs[1]["dataset_split"] = "train"
    docs[2]["dataset_split"] = "test"  # someone's held-out set: never touched
    snapshot = copy.deepcopy(docs)
    splits, new = assign_splits(docs, train_val_split=0.5)
    assert docs == snapshot
    assert splits["id0"] == "eval" and splits["id1"] == "train"
    assert "id2" not in splits and "id2" not in new
    assert set(new) == {f"id{i}" for i in range(3, 50)}
    assert all(new[k] == splits[k] == assign_split(k, 0.5) for k in new)
    # shuffled input, same answer
    splits_again, new_again = assign_splits(list(reversed(docs)), train_val_split=0.5)
    assert splits_again == splits and new_again == new


def test_grouping_never_puts_one_acquisition_on_both_sides():
    docs = [{"_id": f"e{i}", "acquisition_key": f"acq{i % 40}"} for i in range(400)] + [
        {"_id": f"p{i}", "original_path": f"C:\\data\\movie{i % 5}"} for i in range(50)
    ]
    splits, new = assign_splits(docs, train_val_split=0.3, group_by_acquisition=True)
    sides: dict[str, set[str]] = {}
    for doc in docs:
        key = doc.get("acquisition_key") or doc["original_path"]
        sides.setdefault(key, set()).add(splits[doc["_id"]])
    assert all(len(s) == 1 for s in sides.values())
    assert {s for v in sides.values() for s in v} == {"train", "eval"}
    assert len(new) == len(docs)


def test_grouping_follows_the_majority_of_stored_splits():
    docs = [
        {"_id": "a", "acquisition_key": "k", "dataset_split": "eval"},
        {"_id": "b", "acquisition_key": "k", "dataset_split": "eval"},
        {"_id": "c", "acquisition_key": "k", "dataset_split": "train"},
        {"_id": "d", "acquisition_key": "k"},
    ]
    splits, new = assign_splits(docs, train_val_split=0.0, group_by_acquisition=True)
    assert splits == dict.fromkeys("abcd", "eval")
    assert new == {"c": "eval", "d": "eval"}


def test_an_empty_side_gets_the_nearest_unit():
    ids = [f"{i:024x}" for i in range(200) if assign_split(f"{i:024x}", 0.01) == "train"][:3]
    docs = [{"_id": i} for i in ids]
    splits, new = assign_splits(docs, train_val_split=0.01)
    lowest = min(ids, key=lambda i: _unit_hash("deep-events-split-v1", i))
    assert splits == {i: ("eval" if i == lowest else "train") for i in ids}
    assert new == splits
    assert assign_splits(list(reversed(docs)), train_val_split=0.01)[0] == splits
    # stored splits are never moved for it, and one unit or a zero fraction moves nothing
    stored = [{"_id": i, "dataset_split": "train"} for i in ids]
    assert set(assign_splits(stored, train_val_split=0.01)[0].values()) == {"train"}
    assert assign_splits(docs[:1], train_val_split=0.01)[0] == {ids[0]: "train"}
    assert set(assign_splits(docs, train_val_split=0.0)[0].values()) == {"train"}
    # all on the eval side: the highest hash goes to train
    splits, _ = assign_splits(docs, train_val_split=0.999999)
    assert sorted(splits.values()) == ["eval", "eval", "train"]


def test_subset_is_deterministic_and_nested():
    ids = [str(i) for i in range(2000)]
    half = {i for i in ids if in_subset(i, 0.5)}
    most = {i for i in ids if in_subset(i, 0.8)}
    assert half <= most
    assert 0.45 <= len(half) / len(ids) <= 0.55
    assert all(in_subset(i, 1.0) for i in ids)


# -- fps rule and windows --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "requested", "expected"),
    [
        (5.0, None, (1, None)),  # no request: every event at its own rate
        (None, None, (1, None)),
        (1.0, 1.0, (1, None)),
        (2.0, 1.0, (1, None)),  # r = 2: still every frame
        (0.7, 1.0, (1, None)),  # r = 0.7 ≥ 0.5 and 1/0.7 ≤ 1.5
        (3.0, 1.0, (3, None)),  # every 3rd frame
        (4.2, 1.0, (4, None)),  # frac 0.2: round
        (4.8, 1.0, (5, None)),  # frac 0.8: round
        (2.5, 1.0, (None, SKIP_NOT_MULTIPLE)),  # frac 0.5
        (3.3, 1.0, (None, SKIP_NOT_MULTIPLE)),  # frac 0.3
        (20.0, 1.0, (20, None)),  # no cap on the step
        (0.6, 1.0, (None, SKIP_SLOWER)),  # prompt / event = 1.67 > 1.5
        (0.2, 1.0, (None, SKIP_SLOWER)),  # the legacy events at 5 s per frame
        (1.0, 1.5, (1, None)),  # exactly 1.5: kept
        (None, 1.0, (None, SKIP_NO_FPS)),
        ("5", 1.0, (None, SKIP_NO_FPS)),
        (0.0, 1.0, (None, SKIP_NO_FPS)),
        (float("nan"), 1.0, (None, SKIP_NO_FPS)),
    ],
)
def test_frame_step_follows_the_originals_rule(event, requested, expected):
    assert frame_step(event, requested) == expected


def test_window_ends_take_every_frame_that_has_its_history():
    assert window_ends(5, 1).tolist() == [0, 1, 2, 3, 4]
    assert window_ends(5, 3).tolist() == [2, 3, 4]
    assert window_ends(7, 3, step=2).tolist() == [4, 5, 6]
    assert window_ends(2, 3).tolist() == []


def test_smoothing_keeps_peaks_and_empty_frames():
    masks = np.zeros((2, 21, 21), dtype=np.float32)
    masks[0, 10, 10] = 1.0
    snapshot = masks.copy()
    out = smooth_mask_frames(masks, 2.0)
    np.testing.assert_array_equal(masks, snapshot)  # input untouched
    assert out[0].max() == pytest.approx(1.0) and out[0, 10, 10] == pytest.approx(1.0)
    assert out[0, 10, 12] == pytest.approx(np.exp(-4 / 8), rel=1e-3)  # a Gaussian of σ 2
    assert not out[1].any()
    np.testing.assert_array_equal(smooth_mask_frames(masks, 0), masks)


# -- normalisation ---------------------------------------------------------------------------


def test_image_normalisation_per_frame_without_touching_the_input():
    frames = np.array(
        [
            [[2, 4], [6, 10]],  # min → 0, then ÷ 8
            [[7, 7], [7, 7]],  # constant → 0
        ],
        dtype=np.uint16,
    )
    snapshot = frames.copy()
    out = normalize_image_frames(frames)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], np.array([[0, 0.25], [0.5, 1.0]], np.float32))
    np.testing.assert_array_equal(out[1], np.zeros((2, 2), np.float32))
    np.testing.assert_array_equal(frames, snapshot)
    # a small range (max after the shift ≤ 0.2) is not stretched
    small = np.array([[[1.0, 1.1], [1.05, 1.0]]], dtype=np.float32)
    np.testing.assert_allclose(normalize_image_frames(small)[0], [[0, 0.1], [0.05, 0]], atol=1e-6)
    # float16 overflow (inf) is clipped to the frame's finite maximum
    legacy = np.array([[[100, 300], [np.inf, 500]]], dtype=np.float16)
    legacy_copy = legacy.copy()
    np.testing.assert_array_equal(normalize_image_frames(legacy)[0], [[0, 0.5], [1, 1]])
    np.testing.assert_array_equal(legacy, legacy_copy)


def test_mask_normalisation_handles_the_original_0_254_scale():
    masks = np.array(
        [
            [[0, 127], [254, 25.4]],  # legacy scale: ÷ 255
            [[0, 0.5], [0.8, 0]],  # already in [0, 1]: unchanged
            [[-0.2, 0], [0, 1.0]],  # clipped
        ],
        dtype=np.float16,
    )
    snapshot = masks.copy()
    out = normalize_mask_frames(masks)
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        out[0], np.array([[0, 127], [254, 25.4]], np.float16).astype(np.float32) / 255
    )
    np.testing.assert_array_equal(out[1], masks[1].astype(np.float32))
    np.testing.assert_array_equal(out[2], [[0, 0], [0, 1]])
    np.testing.assert_array_equal(masks, snapshot)


def test_parameters_are_validated():
    params = TrainingSetParameters.from_settings({"n_timepoints": 3.0, "subset": False})
    assert params.n_timepoints == 3 and params.subset_fraction == 1.0
    for bad in (
        {"n_timepoints": 0},
        {"n_timepoints": 1.5},
        {"train_val_split": 1.0},
        {"fps": -1},
        {"subset_fraction": 0},
        {"group_by_acquisition": "yes"},
        {"max_n_timepoints": True},
        {"n_timepoints": 3, "max_n_timepoints": 2},
        {"smooth": -1},
        {"smooth": "yes"},
    ):
        with pytest.raises(ConfigurationError):
            TrainingSetParameters.from_settings(bad)


# -- building --------------------------------------------------------------------------------


def _check_samples(path: Path, n_timepoints: int) -> dict[str, int]:
    """Every sample's frames and target, decoded; returns samples per event id."""
    manifest = read_training_set_manifest(path)
    stacks = _stacks(path)
    per_event = {}
    for record in manifest["events"]:
        images, masks = stacks[record["split"]]
        step = record["frame_step"]
        code = int(record["_id"], 16)
        start, n = record["first_sample"], record["n_samples"]
        first_end = (n_timepoints - 1) * step
        assert n == record["n_frames"] - first_end
        for j in range(n):
            t = first_end + j
            decoded = [_decode(images[start + j, i]) for i in range(n_timepoints)]
            expected = [(code, t - (n_timepoints - 1 - i) * step) for i in range(n_timepoints)]
            assert decoded == expected  # oldest first, no wrap-around
            mask = masks[start + j]
            if record["label"] == "negative":
                assert not mask.any()
            else:
                assert mask[MARK] == pytest.approx((t + 1) / 10)
                assert np.count_nonzero(mask) == 1
        per_event[record["_id"]] = n
    return per_event


def test_windows_n1_exact(tmp_path):
    docs = [_event(tmp_path / "events", code, n) for code, n in ((1, 4), (2, 5), (3, 6))]
    result = _build(docs, tmp_path / "sets", n_timepoints=1, train_val_split=0.34)
    assert not result.reused
    assert result.n_train + result.n_eval == 15
    stacks = _stacks(result.path)
    assert stacks["train"][0].shape == (result.n_train, 1, SIZE, SIZE)
    assert stacks["train"][1].shape == (result.n_train, SIZE, SIZE)
    assert stacks["train"][0].dtype == np.float32
    assert _check_samples(result.path, 1) == {d["_id"]: n for d, n in zip(docs, (4, 5, 6))}
    assert result.positives == 15 and result.negatives == 0
    assert result.counts_by_label == {"points": 3}
    assert result.counts_by_acquisition == {"acq0": 1, "acq1": 1, "acq2": 1}
    assert result.skipped == {}
    assert set(result.new_splits) == {d["_id"] for d in docs}
    manifest = read_training_set_manifest(result.path)
    assert manifest["id"] == result.id and result.path.name == f"ts_{result.id}"
    assert {r["_id"]: r["split"] for r in manifest["events"]} == result.new_splits
    prompt = yaml.safe_load((result.path / "db_prompt.yaml").read_text())
    assert prompt["db_prompt"] == {"kind": "points"}
    assert prompt["collection"] == "event_data_points"
    assert (result.path / COMPLETE_NAME).read_text().strip() == result.id
    assert not [p for p in (tmp_path / "sets").iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_windows_n3_exact_and_short_events_skipped(tmp_path):
    docs = [_event(tmp_path / "events", code, n) for code, n in ((1, 4), (2, 6), (3, 2))]
    docs.append(_event(tmp_path / "events", 4, 5, positive=False))
    result = _build(docs, tmp_path / "sets", n_timepoints=3)
    assert _check_samples(result.path, 3) == {
        docs[0]["_id"]: 2,
        docs[1]["_id"]: 4,
        docs[3]["_id"]: 3,
    }
    assert result.skipped == {SKIP_TOO_SHORT: 1}
    assert result.n_train + result.n_eval == 9
    assert (result.positives, result.negatives) == (6, 3)
    assert result.counts_by_label == {"negative": 1, "points": 2}
    assert _stacks(result.path)["train"][0].shape[1:] == (3, SIZE, SIZE)


def test_fps_subsampling_and_fps_skips(tmp_path):
    root = tmp_path / "events"
    docs = [
        _event(root, 1, 9, fps=3.0),  # r = 3: every 3rd frame
        _event(root, 2, 6, fps=1.0),  # matches
        _event(root, 3, 6, fps=0.25),  # too slow
        _event(root, 4, 6, fps=2.5),  # r = 2.5: no whole step
        _event(root, 5, 6, fps=None),
    ]
    result = _build(docs, tmp_path / "sets", n_timepoints=2, fps=1.0)
    assert result.skipped == {SKIP_SLOWER: 1, SKIP_NOT_MULTIPLE: 1, SKIP_NO_FPS: 1}
    manifest = read_training_set_manifest(result.path)
    steps = {r["_id"]: r["frame_step"] for r in manifest["events"]}
    assert steps == {docs[0]["_id"]: 3, docs[1]["_id"]: 1}
    stacks = _stacks(result.path)
    for record in manifest["events"]:
        images, _ = stacks[record["split"]]
        step = record["frame_step"]
        start = record["first_sample"]
        # first window of the 3 fps event: frames 0 and 3 → target frame 3
        assert [_decode(images[start, i])[1] for i in range(2)] == [0, step]
    assert _check_samples(result.path, 2) == {docs[0]["_id"]: 6, docs[1]["_id"]: 5}
    n_samples = {r["_id"]: r["n_samples"] for r in manifest["events"]}
    assert n_samples == {docs[0]["_id"]: 9 - 3, docs[1]["_id"]: 6 - 1}
    assert manifest["counts"]["skipped"] == result.skipped


def test_max_n_timepoints_one_keeps_every_frame(tmp_path):
    """The original's settings say max_n_timepoints: 1 — every frame is still a sample."""
    docs = [_event(tmp_path / "events", 1, 10), _event(tmp_path / "events", 2, 7)]
    result = _build(docs, tmp_path / "sets", n_timepoints=1, max_n_timepoints=1)
    assert result.n_train + result.n_eval == 17
    assert _check_samples(result.path, 1) == {docs[0]["_id"]: 10, docs[1]["_id"]: 7}


def test_max_n_timepoints_is_the_stored_window_and_shared(tmp_path):
    docs = [_event(tmp_path / "events", 1, 10), _event(tmp_path / "events", 2, 6)]
    wide = _build(docs, tmp_path / "sets", n_timepoints=1, max_n_timepoints=3)
    # every window of 3 frames that fits: 8 + 4 samples, 3 frames each, oldest first
    assert wide.n_train + wide.n_eval == 12
    assert _check_samples(wide.path, 3) == {docs[0]["_id"]: 8, docs[1]["_id"]: 4}
    # a model of 3 frames with the same maximum uses the same set
    same = _build(docs, tmp_path / "sets", n_timepoints=3, max_n_timepoints=3)
    assert same.id == wide.id and same.reused
    assert _build(docs, tmp_path / "sets", n_timepoints=3).id == wide.id
    assert _build(docs, tmp_path / "sets", n_timepoints=1).id != wide.id


def test_frames_without_signal_are_negative_samples(tmp_path):
    gt = _ground_truth(6)
    gt[[0, 4, 5]] = 0.0  # signal only in frames 1–3, as an event with pre and post frames
    docs = [_event(tmp_path / "events", 1, 6, ground_truth=gt)]
    docs.append(_event(tmp_path / "events", 2, 4, positive=False))
    result = _build(docs, tmp_path / "sets", n_timepoints=1)
    assert (result.positives, result.negatives) == (3, 7)
    manifest = read_training_set_manifest(result.path)
    counts = manifest["counts"]
    assert counts["train_positives"] + counts["eval_positives"] == 3
    by_id = {r["_id"]: r["positive_samples"] for r in manifest["events"]}
    assert by_id == {docs[0]["_id"]: 3, docs[1]["_id"]: 0}


def test_smooth_blurs_the_stored_ground_truth(tmp_path):
    gt = np.zeros((3, SIZE, SIZE), dtype=np.float32)
    gt[:, 16, 16] = 1.0
    docs = [_event(tmp_path / "events", 1, 3, ground_truth=gt)]
    plain = _build(docs, tmp_path / "sets", n_timepoints=1)
    smooth = _build(docs, tmp_path / "sets", n_timepoints=1, smooth=1.5)
    assert smooth.id != plain.id
    split = smooth.new_splits[docs[0]["_id"]]
    masks = _stacks(smooth.path)[split][1]
    assert masks[:, 16, 16] == pytest.approx([1.0, 1.0, 1.0])
    assert np.count_nonzero(masks[0]) > 20  # blurred
    assert np.count_nonzero(_stacks(plain.path)[split][1][0]) == 1


def test_size_mismatch_missing_folder_and_other_splits_are_skipped(tmp_path):
    root = tmp_path / "events"
    docs = [_event(root, code, 3) for code in (1, 2, 3)]
    docs.append(_event(root, 4, 3, size=48))
    docs.append({"_id": "f" * 24, "event_path": "\\\\server\\share\\ev_gone", "fps": 1.0})
    docs.append(_event(root, 5, 3, dataset_split="test"))
    result = _build(docs, tmp_path / "sets")
    assert result.skipped == {SKIP_SIZE: 1, SKIP_NO_FOLDER: 1, SKIP_OTHER_SPLIT: 1}
    assert result.n_train + result.n_eval == 9
    assert "f" * 24 in result.new_splits  # its split is still assigned
    assert docs[5]["_id"] not in result.new_splits
    skipped = {
        r["_id"]: r["reason"] for r in read_training_set_manifest(result.path)["skipped_events"]
    }
    assert skipped[docs[3]["_id"]] == SKIP_SIZE


def test_stored_splits_are_used_and_legacy_label_file_tolerated(tmp_path):
    root = tmp_path / "events"
    docs = [
        _event(root, 1, 3, dataset_split="eval", label_file="ground_truth.tiff"),
        _event(
            root,
            2,
            3,
            dataset_split="train",
            gt_name="ground_truth.tiff",
            label_file="ground_truth.tiff",
        ),
        _event(root, 3, 3),
    ]
    result = _build(docs, tmp_path / "sets", train_val_split=0.0)
    assert (result.n_train, result.n_eval) == (6, 3)
    assert result.new_splits == {docs[2]["_id"]: "train"}
    eval_images, _ = _stacks(result.path)["eval"]
    assert {_decode(eval_images[i, 0])[0] for i in range(3)} == {1}


def test_grouped_build_and_subset(tmp_path):
    root = tmp_path / "events"
    docs = [_event(root, code, 2) for code in range(1, 31)]
    result = _build(docs, tmp_path / "sets", train_val_split=0.4, group_by_acquisition=True)
    sides = {}
    for record in read_training_set_manifest(result.path)["events"]:
        sides.setdefault(record["acquisition_key"], set()).add(record["split"])
    assert all(len(s) == 1 for s in sides.values())
    # subset: fewer training events, every eval event kept
    subset = _build(docs, tmp_path / "sets", subset_fraction=0.5, train_val_split=0.3)
    full = _build(docs, tmp_path / "sets", train_val_split=0.3)
    assert subset.id != full.id
    assert subset.n_eval == full.n_eval
    assert 0 < subset.n_train < full.n_train
    kept_train = subset.n_train // 2
    assert subset.skipped == {SKIP_SUBSET: full.n_train // 2 - kept_train}


def test_multichannel_uses_channel_contrast(tmp_path):
    root = tmp_path / "events"
    images = np.stack([_frames(3, 1), _frames(3, 2)], axis=1)  # T×C×H×W
    doc_c1 = _event(root, 1, 3, images=images, channel_contrast=1)
    result = _build([doc_c1], tmp_path / "sets")
    stack, _ = _stacks(result.path)[result.new_splits[doc_c1["_id"]]]
    assert [_decode(stack[i, 0]) for i in range(3)] == [(2, 0), (2, 1), (2, 2)]
    doc_c0 = _event(root, 2, 3, images=images)  # no channel_contrast: channel 0
    result = _build([doc_c0], tmp_path / "sets")
    stack, _ = _stacks(result.path)[result.new_splits[doc_c0["_id"]]]
    assert _decode(stack[0, 0]) == (1, 0)


def test_legacy_scaled_ground_truth_is_normalised(tmp_path):
    gt = (_ground_truth(3) * 10 / 3 * 254).astype(np.float16)  # 0–254, float16
    doc = _event(
        tmp_path / "events", 1, 3, images=_frames(3, 1).astype(np.float16), ground_truth=gt
    )
    result = _build([doc], tmp_path / "sets")
    _, masks = _stacks(result.path)[result.new_splits[doc["_id"]]]
    expected = gt[:, MARK[0], MARK[1]].astype(np.float32) / 255
    np.testing.assert_allclose(masks[:, MARK[0], MARK[1]], expected)
    assert masks.max() <= 1.0


def test_inputs_are_not_modified(tmp_path):
    docs = [_event(tmp_path / "events", code, 4) for code in (1, 2)]
    snapshot = copy.deepcopy(docs)
    files = {p: p.read_bytes() for p in (tmp_path / "events").rglob("*.tif")}
    _build(docs, tmp_path / "sets", n_timepoints=2)
    assert docs == snapshot
    assert {p: p.read_bytes() for p in files} == files


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_reuse_and_rebuild_on_changed_content(tmp_path):
    root = tmp_path / "events"
    docs = [_event(root, code, 4) for code in (1, 2, 3)]
    first = _build(docs, tmp_path / "sets", n_timepoints=2)
    before = _mtimes(first.path)
    second = _build(list(reversed(docs)), tmp_path / "sets", n_timepoints=2)
    assert second.reused and not first.reused
    assert second.path == first.path and second.id == first.id
    assert (second.n_train, second.n_eval, second.positives) == (
        first.n_train,
        first.n_eval,
        first.positives,
    )
    assert _mtimes(first.path) == before
    # other parameters → another set
    other = _build(docs, tmp_path / "sets", n_timepoints=1)
    assert other.id != first.id and not other.reused
    # one event's pixels change → new id, old set untouched
    changed = _frames(4, 2)
    changed[0, 31, 31] = 99
    tifffile.imwrite(Path(docs[1]["event_path"]) / "images.tif", changed, photometric="minisblack")
    third = _build(docs, tmp_path / "sets", n_timepoints=2)
    assert third.id != first.id and not third.reused
    assert is_complete(first.path, first.id) and _mtimes(first.path) == before
    # a stored split coming back from the catalog gives the same set again
    stored = [
        {**d, "dataset_split": third.new_splits.get(d["_id"], d.get("dataset_split"))} for d in docs
    ]
    assert _build(stored, tmp_path / "sets", n_timepoints=2).id == third.id


def test_incomplete_folder_under_the_id_is_replaced(tmp_path):
    docs = [_event(tmp_path / "events", 1, 3)]
    first = _build(docs, tmp_path / "sets")
    (first.path / COMPLETE_NAME).unlink()
    (first.path / "train_images.npy").write_bytes(b"junk")
    again = _build(docs, tmp_path / "sets")
    assert not again.reused and again.path == first.path
    assert is_complete(again.path, again.id)
    assert np.load(again.path / f"{again.new_splits[docs[0]['_id']]}_images.npy").shape[0] == 3
    assert not [p for p in (tmp_path / "sets").iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_nothing_usable_is_a_configuration_error(tmp_path):
    docs = [_event(tmp_path / "events", 1, 2)]
    with pytest.raises(ConfigurationError, match="fewer frames than one window needs: 1"):
        _build(docs, tmp_path / "sets", n_timepoints=3)
    assert not (tmp_path / "sets").exists() or not list((tmp_path / "sets").iterdir())


def test_montage_shows_samples_with_mask_overlay(tmp_path):
    root = tmp_path / "events"
    gt = np.zeros((3, 64, 64), np.float32)
    gt[:, 20:40, 20:40] = 1.0
    docs = [
        _event(root, 1, 3, size=64, ground_truth=gt),
        _event(root, 2, 3, size=64, positive=False),
    ]
    result = _build(docs, tmp_path / "sets")
    picture = montage(result.path, n=4)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    # 6 samples → 4 tiles in a 2×2 grid of 64 px tiles with a 2 px gap
    assert picture.shape == (64 * 2 + 2, 64 * 2 + 2, 3)
    red = (picture[..., 0] == 255) & (picture[..., 1] == 64) & (picture[..., 2] == 64)
    assert red.any()
    big = montage(result.path, n=16, tile_size=32)
    assert big.shape == (32 * 2 + 2, 32 * 3 + 2 * 2, 3)  # 6 tiles: 3 columns, 2 rows


# -- real events from the original project ---------------------------------------------------


def _legacy_folder() -> Path:
    base = os.environ.get("DEEP_EVENTS_SHARED_DATA")
    if base:
        return Path(base) / "legacy_events"
    return Path(__file__).resolve().parents[4] / "shared" / "data" / "legacy_events"


@pytest.mark.parametrize(("n_timepoints", "expected"), [(1, 5 + 7 + 4 + 10 + 7), (3, 23)])
def test_legacy_events_build(tmp_path, n_timepoints, expected):
    folder = _legacy_folder()
    if not folder.is_dir():
        pytest.skip(f"no legacy events at {folder}")
    docs = []
    for event_dir in sorted(p for p in folder.iterdir() if (p / "event_db.yaml").is_file()):
        doc = yaml.safe_load((event_dir / "event_db.yaml").read_text(encoding="utf-8"))
        doc["event_path"] = str(event_dir)
        docs.append(doc)
    if len(docs) != 5:
        pytest.skip(f"expected the 5 legacy events in {folder}, found {len(docs)}")
    result = _build(docs, tmp_path / "sets", n_timepoints=n_timepoints, group_by_acquisition=True)
    assert result.skipped == {}
    assert result.n_train + result.n_eval == expected
    assert result.counts_by_label == {"division": 5}
    stacks = _stacks(result.path)
    for images, masks in stacks.values():
        assert images.shape[1:] == (n_timepoints, 256, 256)
        if len(images):
            assert images.min() == 0.0 and images.max() == 1.0
            assert 0.0 <= masks.min() and masks.max() <= 1.0
    all_masks = np.concatenate([stacks["train"][1], stacks["eval"][1]])
    assert all_masks.max() == pytest.approx(254 / 255)
    assert result.positives + result.negatives == expected
    assert result.positives > 0
    # events of one movie (original_path) stay on one side
    sides = {}
    for record in read_training_set_manifest(result.path)["events"]:
        sides.setdefault(record["acquisition_key"], set()).add(record["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert montage(result.path).shape[2] == 3


def test_a_skipped_event_never_takes_the_only_held_out_place(tmp_path):
    """Splits are assigned among the usable events: when the event the hash would hold out is
    skipped (here: recorded at another frame rate), another one is held out instead."""
    root = tmp_path / "events"
    docs = [_event(root, code, 4) for code in (1, 2, 3, 4)]
    nearest = min(docs, key=lambda d: _unit_hash("deep-events-split-v1", d["_id"]))
    nearest["fps"] = 0.1  # 10× slower than requested: skipped
    result = _build(docs, tmp_path / "sets", fps=1.0, train_val_split=0.01)
    assert result.skipped == {SKIP_SLOWER: 1}
    assert result.n_eval == 4 and result.n_train == 8
    assert result.new_splits[nearest["_id"]] == "train"  # it keeps a split in the catalog
    assert sorted(result.new_splits.values()).count("eval") == 1
