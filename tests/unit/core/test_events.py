from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from deep_events_dagster.core.detections import Detection, find_frame_maxima
from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.events import detect_events, detect_events_in_file
from deep_events_dagster.core.ground_truth import write_ground_truth
from deep_events_dagster.core.ground_truth_reader import (
    GroundTruthReader,
    read_ground_truth_support,
)
from deep_events_dagster.core.ground_truth_render import iter_ground_truth, render_frame
from deep_events_dagster.core.negatives import (
    hard_negative_boxes,
    negative_boxes,
    negative_boxes_in_file,
    signal_checker,
)
from deep_events_dagster.core.regions import Box, Window, crop_box, merge_windows
from deep_events_dagster.core.tracks import link_detections


def det(frame: int, y: float, x: float) -> Detection:
    return Detection(frame, y, x, 1.0)


# --------------------------------------------------------------------------- boxes


def test_crop_box_centred_and_shifted_inside_non_square() -> None:
    # height 300, width 600
    assert crop_box(150, 300, crop_size=256, height=300, width=600) == (172, 22, 428, 278)
    assert crop_box(290, 590, crop_size=256, height=300, width=600) == (344, 44, 600, 300)
    assert crop_box(3, 5, crop_size=256, height=300, width=600) == (0, 0, 256, 256)
    # x is clipped against the width (600), not the height (300)
    assert crop_box(10, 400, crop_size=256, height=300, width=600) == (272, 0, 528, 256)
    # y is clipped against the height on a tall movie
    assert crop_box(590, 10, crop_size=256, height=600, width=300) == (0, 344, 256, 600)


def test_crop_larger_than_movie_raises() -> None:
    with pytest.raises(ConfigurationError, match=r"movie is 200×180 px.*256 px crop"):
        crop_box(50, 50, crop_size=256, height=180, width=200)
    with pytest.raises(ConfigurationError, match="lower crop_size"):
        crop_box(50, 50, crop_size=256, height=300, width=255)
    with pytest.raises(ConfigurationError):
        detect_events([], n_frames=3, height=180, width=400, crop_size=256)


def test_merge_windows() -> None:
    assert merge_windows([(0, 10, 0, 10), (5, 15, 5, 15), (20, 30, 20, 30)]) == [
        (0, 15, 0, 15),
        (20, 30, 20, 30),
    ]
    # touching but not overlapping windows stay apart; chains merge transitively
    assert merge_windows([(0, 10, 0, 10), (10, 20, 0, 10)]) == [(0, 10, 0, 10), (10, 20, 0, 10)]
    assert merge_windows([(0, 10, 0, 10), (9, 20, 9, 20), (19, 30, 0, 30)]) == [(0, 30, 0, 30)]


def test_boxes_and_windows_name_their_order() -> None:
    # a crop box is (x0, y0, x1, y1), a ground-truth window (y0, y1, x0, x1)
    box = crop_box(290, 590, crop_size=256, height=300, width=600)
    assert isinstance(box, Box) and (box.x0, box.y0, box.x1, box.y1) == (344, 44, 600, 300)
    assert list(box) == [344, 44, 600, 300]
    (window,) = merge_windows([(5, 15, 20, 40)])
    assert isinstance(window, Window)
    assert (window.y0, window.y1, window.x0, window.x1) == (5, 15, 20, 40)
    negatives = negative_boxes(
        Box(100, 100, 164, 164),
        crop_size=64,
        height=400,
        width=400,
        gt_has_signal=lambda box, frames: False,
        frames=(0, 3),
        count=1,
    )
    assert negatives == [Box(x0=100, y0=36, x1=164, y1=100)]  # one crop size up: y shifts


# --------------------------------------------------------------------------- maxima


def test_two_gaussians_150_px_apart_are_two_detections() -> None:
    frame, windows = render_frame([(100, 100), (100, 250)], 300, 400)
    found = find_frame_maxima(frame, frame_index=7)
    assert found == [Detection(7, 100.0, 100.0, 1.0), Detection(7, 100.0, 250.0, 1.0)]
    assert find_frame_maxima(frame, frame_index=7, windows=windows) == found


def test_close_points_merge_into_one_detection() -> None:
    frame, _ = render_frame([(100, 100), (100, 104)], 200, 200)
    found = find_frame_maxima(frame)
    assert len(found) == 1
    assert (found[0].y, found[0].x) == (100.0, 100.0)  # tie → smaller (y, x)
    frame, _ = render_frame([(100, 100), (100, 115)], 200, 200)
    assert [(d.y, d.x) for d in find_frame_maxima(frame)] == [(100.0, 100.0), (100.0, 115.0)]


def test_threshold_and_stronger_peak_wins() -> None:
    frame = np.zeros((50, 50), np.float32)
    frame[10, 10] = 0.4
    frame[30, 30] = 0.9
    frame[30, 35] = 0.7  # within 10 px of the stronger one
    assert find_frame_maxima(frame) == [Detection(0, 30.0, 30.0, pytest.approx(0.9))]


def test_windowed_equals_whole_frame_on_random_frames() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        pts = np.column_stack([rng.uniform(-5, 204, 25), rng.uniform(-5, 304, 25)])
        frame, windows = render_frame(pts, 200, 300)
        whole = find_frame_maxima(frame)
        assert find_frame_maxima(frame, windows=windows) == whole
        assert find_frame_maxima(frame, windows=merge_windows(windows)) == whole


# --------------------------------------------------------------------------- linking


def test_gap_of_two_frames_links_three_splits() -> None:
    tracks = link_detections([det(10, 50, 50), det(12, 52, 51)], max_gap_frames=2)
    assert len(tracks) == 1
    assert [d.frame for d in tracks[0].detections] == [10, 12]
    tracks = link_detections([det(10, 50, 50), det(13, 52, 51)], max_gap_frames=2)
    assert [[d.frame for d in t.detections] for t in tracks] == [[10], [13]]


def test_linking_distance_and_one_detection_per_frame() -> None:
    tracks = link_detections([det(0, 50, 50), det(1, 50, 80)], max_link_distance_px=24)
    assert len(tracks) == 2
    # two detections in one frame never join one track; each goes to its nearest track
    dets = [det(0, 50, 50), det(0, 50, 70), det(1, 50, 68), det(1, 50, 52)]
    tracks = link_detections(dets, max_link_distance_px=24)
    assert [[(d.frame, d.x) for d in t.detections] for t in tracks] == [
        [(0, 50.0), (1, 52.0)],
        [(0, 70.0), (1, 68.0)],
    ]
    # linking compares with the LAST position: a slow drift stays one track
    drift = [det(t, 100, 100 + 10 * t) for t in range(10)]
    assert len(link_detections(drift, max_link_distance_px=24)) == 1


# --------------------------------------------------------------------------- detection


def write_gt(tmp_path: Path, points, n_frames: int, height: int, width: int) -> Path:
    path = tmp_path / "ground_truth_points.tif"
    write_ground_truth(path, points, n_frames=n_frames, height=height, width=width)
    return path


def track_points(frames, y, x, dy=0.0, dx=0.0):
    return [(t, y + dy * i, x + dx * i) for i, t in enumerate(frames)]


def test_one_event_per_track_with_exact_frames(tmp_path: Path) -> None:
    pts = track_points(range(3, 9), 100, 120, dy=1.0, dx=-1.5) + track_points(
        range(20, 23), 250, 400
    )
    path = write_gt(tmp_path, pts, n_frames=26, height=300, width=600)
    events = detect_events_in_file(path)
    assert len(events) == 2
    a, b = events
    assert a.frames == (3, 8 + 5 + 1)
    assert [d.frame for d in a.detections] == list(range(3, 9))
    assert b.frames == (20, 26)  # 22 + 5 + 1 = 28, clipped to the 26 frames
    assert a.center == (103, 116)  # mean (102.5, 116.25); halves round up
    assert b.center == (250, 400)
    assert b.crop_box == (272, 44, 528, 300)
    pre = detect_events_in_file(path, add_pre_frames=2, add_post_frames=0)
    assert [e.frames for e in pre] == [(1, 9), (18, 23)]


def test_simultaneous_events_150_px_apart_stay_two(tmp_path: Path) -> None:
    pts = track_points(range(0, 5), 200, 200) + track_points(range(0, 5), 200, 350)
    path = write_gt(tmp_path, pts, n_frames=10, height=400, width=600)
    events = detect_events_in_file(path)
    assert [e.center for e in events] == [(200, 200), (200, 350)]
    assert all(e.frames == (0, 10) for e in events)


def test_edge_event_box_inside_non_square_movie(tmp_path: Path) -> None:
    pts = track_points(range(2, 4), 295, 598) + track_points(range(2, 4), 3, 2)
    path = write_gt(tmp_path, pts, n_frames=6, height=300, width=600)
    boxes = sorted(e.crop_box for e in detect_events_in_file(path))
    assert boxes == [(0, 0, 256, 256), (344, 44, 600, 300)]


def test_gap_end_to_end(tmp_path: Path) -> None:
    linked = write_gt(tmp_path, [(1, 50, 50), (3, 50, 50)], 10, 300, 300)
    assert [e.frames for e in detect_events_in_file(linked)] == [(1, 9)]
    split = write_gt(tmp_path, [(1, 50, 50), (4, 50, 50)], 10, 300, 300)
    assert [e.frames for e in detect_events_in_file(split)] == [(1, 7), (4, 10)]


def test_windowed_detection_equals_whole_frame_detection(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    pts = []
    for _ in range(12):
        start = int(rng.integers(0, 25))
        pts += track_points(
            range(start, start + int(rng.integers(1, 6))),
            rng.uniform(0, 399),
            rng.uniform(0, 699),
            dy=rng.uniform(-2, 2),
            dx=rng.uniform(-2, 2),
        )
    path = write_gt(tmp_path, pts, n_frames=30, height=400, width=700)
    windowed = detect_events_in_file(path)
    whole = detect_events_in_file(path, use_support=False)
    assert windowed == whole
    assert len(windowed) >= 8
    # the same through an iterable of whole frames, with and without support
    frames = [(t, f) for t, f, _ in iter_ground_truth(pts, n_frames=30, height=400, width=700)]
    kw = {"n_frames": 30, "height": 400, "width": 700}
    assert detect_events(frames, **kw) == whole
    assert detect_events(frames, support=read_ground_truth_support(path), **kw) == whole
    starts = [(e.frames[0], e.crop_box[0], e.crop_box[1]) for e in whole]
    assert starts == sorted(starts)


def test_support_skips_frames_without_signal(tmp_path: Path) -> None:
    path = write_gt(tmp_path, [(5, 100, 100)], n_frames=50, height=300, width=300)
    support = read_ground_truth_support(path)
    calls = []

    def read(t, windows):
        calls.append((t, windows))
        frame = np.zeros((300, 300), np.float32)
        with GroundTruthReader(path) as reader:
            frame[:] = reader.read_frame(t)
        return frame

    events = detect_events(read, n_frames=50, height=300, width=300, support=support)
    assert [t for t, _ in calls] == [5]
    assert calls[0][1] == [(90, 111, 90, 111)]  # ±10 px: exp(−121/50) < 0.1 at 11 px
    assert [e.frames for e in events] == [(5, 11)]


# --------------------------------------------------------------------------- negatives


def test_negatives_inside_image_and_signal_free(tmp_path: Path) -> None:
    height, width = 768, 1024
    pts = track_points(range(0, 3), 384, 512)  # central event
    pts += [(1, 384, 512 + 256 + 30)]  # signal in the "right" neighbour during the event
    pts += [(9, 384 - 256, 512)]  # signal in the "up" neighbour, but after the event
    pts += track_points(range(0, 2), 40, 40)  # corner event: only right/down fit
    path = write_gt(tmp_path, pts, n_frames=12, height=height, width=width)
    events = detect_events_in_file(path, add_post_frames=2)
    central = next(e for e in events if e.center == (384, 512))
    corner = next(e for e in events if e.center == (40, 40))
    assert central.frames == (0, 5)
    negs = negative_boxes_in_file(path, [central, corner])
    x0, y0, x1, y1 = central.crop_box
    assert negs[0] == [
        (x0, y0 - 256, x1, y1 - 256),
        (x0, y0 + 256, x1, y1 + 256),
        (x0 - 256, y0, x1 - 256, y1),
    ]  # up, down, left; right has signal
    assert negs[1] == [(256, 0, 512, 256), (0, 256, 256, 512)]  # right, down
    gt = tifffile.imread(path)
    for ev, boxes in zip([central, corner], negs):
        for bx0, by0, bx1, by1 in boxes:
            assert 0 <= bx0 < bx1 <= width and 0 <= by0 < by1 <= height
            assert gt[ev.frames[0] : ev.frames[1], by0:by1, bx0:bx1].max() == 0.0
    # without the sidecar the answer is the same
    assert negative_boxes_in_file(path, [central, corner], use_support=False) == negs


def test_negative_boxes_order_and_callable() -> None:
    seen = []

    def never(box, frames):
        seen.append((box, frames))
        return False

    boxes = negative_boxes(
        (256, 256, 512, 512),
        crop_size=256,
        height=768,
        width=768,
        gt_has_signal=never,
        frames=(3, 9),
    )
    assert boxes == [
        (256, 0, 512, 256),
        (512, 256, 768, 512),
        (256, 512, 512, 768),
        (0, 256, 256, 512),
    ]
    assert all(f == (3, 9) for _, f in seen)
    assert (
        negative_boxes(
            (0, 0, 256, 256),
            crop_size=256,
            height=256,
            width=300,
            gt_has_signal=never,
            frames=(0, 1),
        )
        == []
    )


def test_signal_checker_with_and_without_support(tmp_path: Path) -> None:
    path = write_gt(tmp_path, [(2, 100, 100)], n_frames=4, height=300, width=300)
    support = read_ground_truth_support(path)
    with GroundTruthReader(path) as reader:
        for check in (signal_checker(reader, support), signal_checker(reader)):
            assert check((0, 0, 128, 128), (0, 4))
            assert not check((0, 0, 128, 128), (0, 2))
            assert not check((112, 0, 300, 300), (0, 4))  # x ≥ 112 is beyond the cutoff
            # the window's corner is in the support box but below the cutoff: not signal
            assert not check((109, 109, 300, 300), (2, 3))


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, []),
        (1, [(256, 0, 512, 256)]),
        (2, [(256, 0, 512, 256), (512, 256, 768, 512)]),
        (4, [(256, 0, 512, 256), (512, 256, 768, 512), (256, 512, 512, 768), (0, 256, 256, 512)]),
    ],
)
def test_negative_boxes_count_takes_candidates_in_order(count: int, expected: list) -> None:
    checked = []

    def never(box, frames):
        checked.append(box)
        return False

    boxes = negative_boxes(
        (256, 256, 512, 512),
        crop_size=256,
        height=768,
        width=768,
        gt_has_signal=never,
        frames=(0, 1),
        count=count,
    )
    assert boxes == expected
    assert checked == expected  # candidates beyond the count are not even checked


def test_negative_boxes_count_skips_rejected_candidates() -> None:
    up = (256, 0, 512, 256)

    def only_up_has_signal(box, frames):
        return box == up

    boxes = negative_boxes(
        (256, 256, 512, 512),
        crop_size=256,
        height=768,
        width=768,
        gt_has_signal=only_up_has_signal,
        frames=(0, 1),
        count=2,
    )
    assert boxes == [(512, 256, 768, 512), (256, 512, 512, 768)]  # right, down


@pytest.mark.parametrize("count", [-1, 5, 2.0, True])
def test_negative_boxes_count_validated(count: object) -> None:
    with pytest.raises(ValueError, match="0 to 4"):
        negative_boxes(
            (0, 0, 256, 256),
            crop_size=256,
            height=512,
            width=512,
            gt_has_signal=lambda box, frames: False,
            frames=(0, 1),
            count=count,  # type: ignore[arg-type]
        )


def test_negative_boxes_in_file_count(tmp_path: Path) -> None:
    path = write_gt(
        tmp_path, track_points(range(0, 3), 384, 512), n_frames=6, height=768, width=1024
    )
    (event,) = detect_events_in_file(path)
    full = negative_boxes_in_file(path, [event])
    assert len(full[0]) == 4
    for count in (0, 2, 4):
        assert negative_boxes_in_file(path, [event], count=count) == [full[0][:count]]


def _blob(image: np.ndarray, y: int, x: int, value: float) -> None:
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    image += value * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 3.0**2))


def test_hard_negatives_are_the_brightest_signal_free_places_far_apart() -> None:
    frame = np.zeros((200, 300), dtype=np.float32)
    _blob(frame, 50, 60, 900)  # brightest, but the ground truth has signal there
    _blob(frame, 150, 220, 700)
    _blob(frame, 150, 235, 650)  # next to the previous one: the same place
    _blob(frame, 40, 200, 500)
    _blob(frame, 160, 40, 300)
    frame[100, 150] = 5000  # a hot pixel: bright, but not over a place

    def has_signal(box, frames):
        return box.x0 <= 60 < box.x1 and box.y0 <= 50 < box.y1

    kept = hard_negative_boxes(
        [(10, frame)], count=2, crop_size=64, n_frames=30, length=6, gt_has_signal=has_signal
    )

    assert kept == [((7, 13), (188, 118, 252, 182)), ((7, 13), (168, 8, 232, 72))]
    assert all(isinstance(box, Box) for _frames, box in kept)
    more = hard_negative_boxes(
        [(10, frame)], count=5, crop_size=64, n_frames=30, length=6, gt_has_signal=has_signal
    )
    # the twin 15 px away is the same place; the hot pixel, blurred, is the dimmest
    assert [box for _f, box in more] == [
        (188, 118, 252, 182),
        (168, 8, 232, 72),
        (8, 128, 72, 192),
        (118, 68, 182, 132),
    ]


def test_hard_negative_frames_stay_inside_the_movie_and_count_is_checked() -> None:
    frame = np.zeros((100, 100), dtype=np.float32)
    _blob(frame, 50, 50, 800)
    never = lambda box, frames: False  # noqa: E731
    assert hard_negative_boxes(
        [(0, frame)], count=1, crop_size=32, n_frames=20, length=6, gt_has_signal=never
    ) == [((0, 6), (34, 34, 66, 66))]
    assert hard_negative_boxes(
        [(19, frame)], count=1, crop_size=32, n_frames=20, length=6, gt_has_signal=never
    )[0][0] == (14, 20)
    assert (
        hard_negative_boxes(
            [(0, frame)], count=0, crop_size=32, n_frames=20, length=6, gt_has_signal=never
        )
        == []
    )
    with pytest.raises(ValueError, match="hard negatives"):
        hard_negative_boxes(
            [(0, frame)], count=-1, crop_size=32, n_frames=20, length=6, gt_has_signal=never
        )
