from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from deep_events_dagster.core.annotations import AnnotationPoint
from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.fsutil import TEMP_PREFIX
from deep_events_dagster.core.ground_truth import write_ground_truth
from deep_events_dagster.core.ground_truth_reader import (
    GroundTruthReader,
    read_ground_truth_support,
    sidecar_path,
)
from deep_events_dagster.core.ground_truth_render import iter_ground_truth, render_frame
from deep_events_dagster.core.regions import Window


def gauss(dy: float, dx: float, sigma: float = 5.0) -> float:
    return math.exp(-(dy * dy + dx * dx) / (2 * sigma * sigma))


def covered(windows, shape) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for y0, y1, x0, x1 in windows:
        mask[y0:y1, x0:x1] = True
    return mask


# --------------------------------------------------------------------------- rendering


def test_integer_point_peak_is_exactly_one_at_the_point() -> None:
    frame, windows = render_frame([(40, 70)], 100, 120)
    assert frame.dtype == np.float32
    assert frame.shape == (100, 120)
    assert frame[40, 70] == 1.0
    assert np.unravel_index(np.argmax(frame), frame.shape) == (40, 70)
    assert frame.max() == 1.0
    assert len(windows) == 1


def test_sub_pixel_point_is_centred_exactly() -> None:
    frame, _ = render_frame([(50.5, 60.0)], 120, 120)
    # halfway between rows 50 and 51: both equal, both the maximum
    assert frame[50, 60] == frame[51, 60] == frame.max()
    assert frame[50, 60] == pytest.approx(gauss(0.5, 0.0), abs=1e-6)
    # symmetric about the centre
    assert frame[49, 60] == frame[52, 60]
    assert frame[50, 57] == frame[50, 63]
    frame2, _ = render_frame([(30.25, 40.75)], 80, 80)
    assert np.unravel_index(np.argmax(frame2), frame2.shape) == (30, 41)
    assert frame2[30, 41] == pytest.approx(gauss(0.25, 0.25), abs=1e-6)
    assert frame2[29, 41] == pytest.approx(gauss(1.25, 0.25), abs=1e-6)
    assert frame2[31, 41] == pytest.approx(gauss(0.75, 0.25), abs=1e-6)


def test_sigma_is_honest() -> None:
    frame, _ = render_frame([(50, 50)], 101, 101, sigma=5.0)
    assert abs(frame[50, 55] - math.exp(-0.5)) < 1e-5
    assert abs(frame[45, 50] - math.exp(-0.5)) < 1e-5
    assert abs(frame[53, 54] - gauss(3, 4)) < 1e-6
    wide, _ = render_frame([(50, 50)], 101, 101, sigma=8.0)
    assert abs(wide[50, 58] - math.exp(-0.5)) < 1e-5


def test_cutoff_zeroes_values_below_it() -> None:
    frame, _ = render_frame([(60, 60)], 121, 121, sigma=5.0, cutoff=0.1)
    assert frame[60, 70] == pytest.approx(math.exp(-2.0), abs=1e-6)  # 0.135 ≥ 0.1 kept
    assert frame[60, 71] == 0.0  # exp(-121/50) = 0.089 < 0.1
    assert frame[67, 68] == pytest.approx(gauss(7, 8), abs=1e-6)  # √113 px: 0.104 kept
    assert frame[68, 68] == 0.0  # √128 px: 0.077 < 0.1
    nonzero = frame[frame > 0]
    assert nonzero.min() >= 0.1
    yy, xx = np.mgrid[0:121, 0:121]
    exact = np.exp(-((yy - 60) ** 2 + (xx - 60) ** 2) / 50.0)
    expected = np.where(exact >= 0.1, exact, 0.0)
    np.testing.assert_allclose(frame, expected, atol=1e-6)
    no_cut, _ = render_frame([(60, 60)], 121, 121, sigma=5.0, cutoff=0.0)
    assert no_cut[60, 79] == pytest.approx(gauss(0, 19), abs=1e-7)  # inside 4σ
    assert no_cut[60, 81] == 0.0  # beyond 4σ = 20 px


def test_overlapping_gaussians_never_exceed_one_and_never_wrap() -> None:
    points = [(50, 50)] * 100 + [(50, 53), (52, 50)]
    frame, _ = render_frame(points, 100, 100)
    assert frame.max() == 1.0
    assert frame.min() == 0.0
    assert frame[50, 50] == 1.0 and frame[50, 53] == 1.0 and frame[52, 50] == 1.0
    single = [render_frame([p], 100, 100)[0] for p in [(50, 50), (50, 53), (52, 50)]]
    np.testing.assert_array_equal(frame, np.maximum.reduce(single))
    # between the peaks the value is the larger Gaussian, not a wrapped-around sum
    assert frame[50, 51] == pytest.approx(max(gauss(0, 1), gauss(0, 2)), abs=1e-6)


def test_non_square_frame_right_edge_and_bottom_edge() -> None:
    frame, windows = render_frame([(150, 497.0), (298, 10)], 300, 500)
    assert frame.shape == (300, 500)
    assert frame[150, 497] == 1.0
    assert frame[150, 499] == pytest.approx(gauss(0, 2), abs=1e-6)
    assert frame[298, 10] == 1.0
    assert frame[299, 10] == pytest.approx(gauss(1, 0), abs=1e-6)
    # the right-edge Gaussian is not mirrored or transposed anywhere
    assert frame[100:200, :480].max() == 0.0
    assert frame[:280, :].max() == 1.0 and frame[:280, :400].max() == 0.0
    for y0, y1, x0, x1 in windows:
        assert 0 <= y0 < y1 <= 300 and 0 <= x0 < x1 <= 500
    assert not (frame > 0)[~covered(windows, frame.shape)].any()


def test_points_outside_image_are_clipped_or_skipped() -> None:
    frame, windows = render_frame([(-5.0, 50.0), (50.0, 1000.0)], 100, 100)
    assert frame[0, 50] == pytest.approx(gauss(5, 0), abs=1e-6)
    assert len(windows) == 1
    assert windows[0][0] == 0


def test_bad_parameters() -> None:
    with pytest.raises(ConfigurationError):
        render_frame([(1, 1)], 10, 10, sigma=0)
    with pytest.raises(ConfigurationError):
        render_frame([(1, 1)], 10, 10, cutoff=1.0)


# --------------------------------------------------------------------------- volumes on disk


def sample_points() -> list[AnnotationPoint]:
    coords = [(0, 10, 10), (0, 12, 14), (2, 150.5, 497.2), (2, 299, 0), (4, 100, 250.25)]
    pts = [AnnotationPoint(f, y, x, None, "points.csv", i) for i, (f, y, x) in enumerate(coords)]
    pts.append(AnnotationPoint(9, 5, 5, None, "points.csv", 99))  # frame outside: skipped
    return pts


def test_iter_ground_truth_frame_by_frame() -> None:
    items = list(iter_ground_truth(sample_points(), n_frames=6, height=300, width=500))
    assert [t for t, _, _ in items] == list(range(6))
    assert [len(w) for _, _, w in items] == [2, 0, 2, 0, 1, 0]
    assert items[1][1].shape == (300, 500) and not items[1][1].any()
    assert items[4][1][100, 250] == pytest.approx(gauss(0, 0.25), abs=1e-6)
    assert items[0][1] is not items[2][1]  # each frame is its own array


def test_write_ground_truth_round_trip_and_sidecar(tmp_path: Path) -> None:
    target = tmp_path / "acq" / "ground_truth_points.tif"
    pts = sample_points()
    summary = write_ground_truth(target, pts, n_frames=6, height=300, width=500)
    expected = np.stack(
        [f for _, f, _ in iter_ground_truth(pts, n_frames=6, height=300, width=500)]
    )

    data = tifffile.imread(target)
    assert data.dtype == np.float32
    assert data.shape == (6, 300, 500)
    np.testing.assert_array_equal(data, expected)

    assert summary.path == target
    assert summary.sidecar_path == tmp_path / "acq" / "ground_truth_points.json"
    assert summary.shape == (6, 300, 500)
    assert summary.n_points == 5
    assert summary.frames_with_signal == 3
    assert sorted(summary.support) == [0, 2, 4]

    side = json.loads(summary.sidecar_path.read_text())
    assert side["sigma"] == 5.0 and side["cutoff"] == 0.1
    assert side["shape"] == [6, 300, 500]
    assert side["n_points"] == 5
    assert set(side["support"]) == {"0", "2", "4"}

    support = read_ground_truth_support(target)
    assert support == summary.support
    assert all(isinstance(w, Window) for ws in support.values() for w in ws)
    # written as plain [y0, y1, x0, x1] lists
    assert side["support"] == {str(t): [list(w) for w in ws] for t, ws in support.items()}
    for t in range(6):
        mask = covered(support.get(t, []), (300, 500))
        assert not (data[t] > 0)[~mask].any(), t
    assert not [p for p in target.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]

    with tifffile.TiffFile(target) as tif:
        assert len(tif.pages) == 6
        page = tif.pages[0]
        assert page.is_tiled and page.samplesperpixel == 1
        assert page.compression == 8  # deflate: readable everywhere


def test_support_absent_or_stale_sidecar_is_ignored(tmp_path: Path) -> None:
    target = tmp_path / "gt.tif"
    write_ground_truth(target, [(0, 5, 5)], n_frames=2, height=40, width=60)
    assert read_ground_truth_support(target) == {0: [(0, 16, 0, 16)]}
    old_sidecar = sidecar_path(target).read_text()
    write_ground_truth(target, [(1, 20, 30)], n_frames=2, height=40, width=60)
    sidecar_path(target).write_text(old_sidecar)  # sidecar of an older TIFF
    assert read_ground_truth_support(target) is None
    sidecar_path(target).unlink()
    assert read_ground_truth_support(target) is None
    sidecar_path(target).write_text("{not json")
    assert read_ground_truth_support(target) is None


def test_empty_ground_truth(tmp_path: Path) -> None:
    summary = write_ground_truth(tmp_path / "gt.tif", [], n_frames=3, height=20, width=30)
    assert summary.n_points == 0 and summary.frames_with_signal == 0
    assert not tifffile.imread(tmp_path / "gt.tif").any()
    assert read_ground_truth_support(tmp_path / "gt.tif") == {}


@pytest.mark.parametrize("layout", ["ours", "strips", "contiguous", "imagej"])
def test_reader_windows(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    data = rng.random((3, 300, 520)).astype(np.float32)
    path = tmp_path / "gt.tif"
    if layout == "ours":
        pts = [(t, rng.uniform(0, 299), rng.uniform(0, 519)) for t in range(3) for _ in range(20)]
        write_ground_truth(path, pts, n_frames=3, height=300, width=520)
        data = tifffile.imread(path)
    elif layout == "strips":
        tifffile.imwrite(path, data, photometric="minisblack", rowsperstrip=7, compression="zlib")
    elif layout == "contiguous":
        tifffile.imwrite(path, data, photometric="minisblack")
    else:
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TYX"})
    with GroundTruthReader(path) as reader:
        assert reader.shape == (3, 300, 520)
        for t, (y0, y1, x0, x1) in [
            (0, (0, 300, 0, 520)),
            (1, (250, 300, 200, 517)),
            (2, (13, 269, 255, 511)),
            (2, (-5, 10, 515, 600)),
        ]:
            np.testing.assert_array_equal(
                reader.read_window(t, y0, y1, x0, x1),
                data[t, max(0, y0) : y1, max(0, x0) : x1],
            )
        np.testing.assert_array_equal(reader.read_frame(1), data[1])
        assert reader.has_signal((0, 0, 520, 300), (0, 3)) == bool(data.any())


def test_reader_tile_cache_gives_the_same_windows_and_stays_bounded(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    pts = [(t, rng.uniform(0, 599), rng.uniform(0, 799)) for t in range(4) for _ in range(30)]
    path = tmp_path / "gt.tif"
    write_ground_truth(path, pts, n_frames=4, height=600, width=800)
    data = tifffile.imread(path)
    windows = [
        (t, int(y), int(y) + 256, int(x), int(x) + 256)
        for t in range(4)
        for y, x in rng.uniform(0, 500, size=(6, 2))
    ]
    tile_bytes = 256 * 256 * 4
    with GroundTruthReader(path, cache_bytes=3 * tile_bytes) as cached:
        for _ in range(2):  # the second pass is served (partly) from the cache
            for t, y0, y1, x0, x1 in windows:
                window = cached.read_window(t, y0, y1, x0, x1)
                np.testing.assert_array_equal(window, data[t, y0:y1, x0:x1])
                window[...] = -1  # the caller's copy: the cache must not see this
                assert cached._cached_bytes <= 3 * tile_bytes
        assert cached._segments  # something was kept
        t, y0, y1, x0, x1 = windows[-1]
        np.testing.assert_array_equal(cached.read_window(t, y0, y1, x0, x1), data[t, y0:y1, x0:x1])


def test_small_image_tiles(tmp_path: Path) -> None:
    pts = [(0, 3, 3), (1, 30, 60)]
    write_ground_truth(tmp_path / "gt.tif", pts, n_frames=2, height=33, width=70)
    ref = np.stack([f for _, f, _ in iter_ground_truth(pts, n_frames=2, height=33, width=70)])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "gt.tif"), ref)
