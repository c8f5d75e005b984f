"""Line annotations (napari shapes): parsing, rendering, ground truth, detection."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from deep_events_dagster.core.annotation_bounds import format_problems, validate_lines
from deep_events_dagster.core.annotation_lines import (
    LineAnnotation,
    read_kind_lines,
    read_napari_shapes,
)
from deep_events_dagster.core.detections import find_frame_components, find_frame_maxima
from deep_events_dagster.core.errors import AnnotationError, ConfigurationError
from deep_events_dagster.core.events import (
    detect_events,
    detect_line_events,
    detect_line_events_in_file,
    line_detections,
)
from deep_events_dagster.core.ground_truth import write_ground_truth
from deep_events_dagster.core.ground_truth_reader import (
    GroundTruthReader,
    read_ground_truth_support,
    sidecar_path,
)
from deep_events_dagster.core.ground_truth_render import (
    iter_ground_truth,
    render_frame,
    render_lines_frame,
)
from deep_events_dagster.core.negatives import negative_boxes_in_file
from deep_events_dagster.core.regions import crop_box
from deep_events_dagster.testing.annotations import ShapeSpec, write_napari_shapes_csv

HEADER_3 = "index,shape-type,vertex-index,axis-0,axis-1,axis-2\n"
HEADER_4 = "index,shape-type,vertex-index,axis-0,axis-1,axis-2,axis-3\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def close(a, b) -> bool:
    return np.shape(a) == np.shape(b) and np.allclose(np.asarray(a), np.asarray(b))


def covered(windows, shape) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for y0, y1, x0, x1 in windows:
        mask[y0:y1, x0:x1] = True
    return mask


def line(frame: int, *vertices: tuple[float, float], index: int = 0) -> LineAnnotation:
    return LineAnnotation(
        frame=frame,
        vertices=tuple(vertices),
        channel=None,
        file="lines.csv",
        index=index,
        rows=tuple(range(len(vertices))),
    )


# --------------------------------------------------------------------------- parsing


def test_three_axis_line_and_path_in_pixels(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "lines.csv",
        HEADER_3
        # shape 1 listed first and with its vertices out of order: sorted by index / vertex
        + "1,path,2,4.0,30.0,40.0\n"
        + "1,path,0,4.0,10.0,20.0\n"
        + "1,path,1,4.0,20.0,25.5\n"
        + "0,line,0,3.0,10.5,20.25\n"
        + "0,line,1,3.0,10.5,60.0\n",
    )
    shapes = read_napari_shapes(csv, scale_csv=False, physical_size_x=None)
    assert shapes == [
        LineAnnotation(
            frame=3,
            vertices=((10.5, 20.25), (10.5, 60.0)),
            channel=None,
            file=str(csv),
            index=0,
            rows=(3, 4),
        ),
        LineAnnotation(
            frame=4,
            vertices=((10.0, 20.0), (20.0, 25.5), (30.0, 40.0)),
            channel=None,
            file=str(csv),
            index=1,
            rows=(1, 2, 0),
        ),
    ]
    assert isinstance(shapes[0].frame, int)
    assert shapes[1].bounds == (10.0, 30.0, 20.0, 40.0)
    assert shapes[1].center == (20.0, 30.0)


def test_four_axis_channel(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "lines.csv",
        HEADER_4 + "0,line,0,2.0,1.0,30,40\n0,line,1,2.0,1.0,35,48\n",
    )
    (shape,) = read_napari_shapes(csv, scale_csv=False, physical_size_x=None)
    assert (shape.frame, shape.channel, shape.vertices) == (2, 1, ((30.0, 40.0), (35.0, 48.0)))


def test_micrometres_divided_and_inverse_multiplied(tmp_path: Path) -> None:
    csv = write(tmp_path / "lines.csv", HEADER_3 + "0,line,0,1,5.0,2.5\n0,line,1,1,6.0,3.0\n")
    (um,) = read_napari_shapes(csv, scale_csv=True, physical_size_x=0.1)
    assert close(um.vertices, ((50.0, 25.0), (60.0, 30.0)))
    (px,) = read_napari_shapes(csv, scale_csv=False, physical_size_x=0.1)
    assert px.vertices == ((5.0, 2.5), (6.0, 3.0))
    (inv,) = read_napari_shapes(csv, scale_csv="inverse", physical_size_x=0.1)
    assert close(inv.vertices, ((0.5, 0.25), (0.6, 0.3)))
    with pytest.raises(AnnotationError, match="physical_size_x"):
        read_napari_shapes(csv, scale_csv=True, physical_size_x=None)


def test_writer_round_trips_in_micrometres_and_four_axes(tmp_path: Path) -> None:
    shapes = [
        ShapeSpec(frame=3, vertices=((10.0, 10.0), (10.0, 30.0))),
        ShapeSpec(frame=5, vertices=((1.0, 2.0), (3.0, 4.0), (5.0, 6.5)), channel=1),
    ]
    path = write_napari_shapes_csv(
        tmp_path / "lines.csv", shapes, four_axes=True, micrometres_per_pixel=0.5
    )
    text = path.read_text()
    assert text.splitlines()[0] == HEADER_4.strip()
    assert text.splitlines()[1] == "0,line,0,3.0,0.0,5.0,5.0"
    assert text.splitlines()[3].startswith("1,path,0,5.0,1.0,")
    got = read_napari_shapes(path, scale_csv=True, physical_size_x=0.5)
    assert [(s.frame, s.channel, s.index) for s in got] == [(3, 0, 0), (5, 1, 1)]
    assert close(got[0].vertices, shapes[0].vertices)
    assert close(got[1].vertices, shapes[1].vertices)
    # three axes, pixels, from LineAnnotations and tuples
    path3 = write_napari_shapes_csv(
        tmp_path / "lines3.csv", [line(2, (1.0, 1.0), (4.0, 5.0)), (7, [(0, 0), (9, 9)])]
    )
    got3 = read_napari_shapes(path3, scale_csv=False, physical_size_x=None)
    assert [(s.frame, s.channel, s.vertices) for s in got3] == [
        (2, None, ((1.0, 1.0), (4.0, 5.0))),
        (7, None, ((0.0, 0.0), (9.0, 9.0))),
    ]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("", ["empty", "no shapes"]),
        (HEADER_3, ["no shapes", "only a header"]),
        (
            "index,shape-type,axis-0,axis-1,axis-2\n0,line,1,2,3\n",
            ["missing column", "vertex-index"],
        ),
        ("index,vertex-index,axis-0,axis-1,axis-2\n0,0,1,2,3\n", ["missing column", "shape-type"]),
        (
            "index,shape-type,vertex-index,axis-0,axis-1\n0,line,0,1,2\n",
            ["missing column", "axis-2"],
        ),
        (
            HEADER_3 + "0,line,0,1,2,3\n0,line,1,1,abc,3\n",
            ["non-numeric", "'abc'", "axis-1", "row 1 (line 3)"],
        ),
        (HEADER_3 + "0,line,0,1,2,3\n0,line,1,1,2,\n", ["NaN", "axis-2", "row 1 (line 3)"]),
        (HEADER_3 + "0,line,0,1,2,3\nx,line,1,1,2,3\n", ["non-numeric", "index", "row 1"]),
        (
            HEADER_3 + "0,line,0,1.5,2,3\n0,line,1,1.5,2,4\n",
            ["frame", "whole number", "row 0"],
        ),
        (
            HEADER_3 + "0,path,0,1,2,3\n0,path,1,1,2,4\n1,rectangle,0,1,5,5\n",
            ["'rectangle'", "row 2 (line 4)", "shape index 1", "line and path"],
        ),
        (
            HEADER_3 + "0,ellipse,0,1,2,3\n",
            ["'ellipse'", "row 0 (line 2)"],
        ),
        (
            HEADER_3 + "0,line,0,1,2,3\n0,,1,1,2,4\n",
            ["missing shape type", "row 1 (line 3)"],
        ),
        (
            HEADER_3 + "0,line,0,2,2,3\n0,line,1,3,2,4\n",
            [
                "shape index 0",
                "different frames",
                "frame 2 at row 0 (line 2)",
                "frame 3 at row 1 (line 3)",
            ],
        ),
        (
            HEADER_3 + "0,line,0,2,2,3\n0,line,1,2,2,4\n1,path,0,2,9,9\n",
            ["shape index 1", "single vertex", "row 2 (line 4)", "at least 2"],
        ),
        (
            HEADER_3 + "0,path,0,2,2,3\n0,path,0,2,2,4\n",
            ["shape index 0", "vertex-index 0", "row 0 (line 2)", "row 1 (line 3)"],
        ),
        (
            HEADER_3 + "0,line,0,2,2,3\n0,path,1,2,2,4\n",
            ["shape index 0", "mixes shape types", "row 1 (line 3)"],
        ),
        (
            HEADER_4 + "0,line,0,2,0,2,3\n0,line,1,2,1,2,4\n",
            ["different channels", "channel 1 at row 1 (line 3)"],
        ),
    ],
)
def test_bad_shapes_csv(tmp_path: Path, text: str, fragments: list[str]) -> None:
    csv = write(tmp_path / "lines_bad.csv", text)
    with pytest.raises(AnnotationError) as info:
        read_napari_shapes(csv, scale_csv=False, physical_size_x=None)
    message = str(info.value)
    assert message.startswith(str(csv))
    assert info.value.path == csv
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_read_kind_lines_uses_metadata_units(tmp_path: Path) -> None:
    write_napari_shapes_csv(
        tmp_path / "pearls_b.csv", [(1, [(1, 1), (2, 2)])], micrometres_per_pixel=0.1
    )
    write_napari_shapes_csv(
        tmp_path / "pearls_a.csv", [(0, [(3, 3), (4, 4)])], micrometres_per_pixel=0.1
    )
    write(tmp_path / "points.csv", "index,axis-0,axis-1,axis-2\n0,1,2,3\n")
    metadata = {"scale_csv": {"pearls": True}, "ome": {"physical_size_x": 0.1}}
    lines, files = read_kind_lines(tmp_path, "pearls", metadata)
    assert [f.name for f in files] == ["pearls_a.csv", "pearls_b.csv"]
    assert [ln.frame for ln in lines] == [0, 1]
    assert close(lines[0].vertices, ((3.0, 3.0), (4.0, 4.0)))
    pixels, _ = read_kind_lines(tmp_path, "pearls", {"scale_csv": False})
    assert close(pixels[0].vertices, ((0.3, 0.3), (0.4, 0.4)))
    assert read_kind_lines(tmp_path / "missing", "pearls", {}) == ([], ())


def test_validate_lines() -> None:
    inside = [line(0, (0.0, 0.0), (299.0, 499.0)), line(9, (5.0, 5.0), (6.0, 7.0))]
    assert validate_lines(inside, n_frames=10, height=300, width=500) == []
    outside = [
        LineAnnotation(3, ((10.0, 10.0), (10.0, 900.0)), None, "lines.csv", 2, (4, 5)),
        LineAnnotation(10, ((-1.0, 10.0), (10.0, 20.0)), None, "lines.csv", 3, (6, 7)),
        LineAnnotation(1, ((1.0, 1.0), (2.0, 2.0)), 2, "lines.csv", 4, (8, 9)),
    ]
    problems = validate_lines(outside, n_frames=10, height=300, width=500, n_channels=2)
    assert [p.row for p in problems] == [4, 6, 8]
    assert problems[0].reason == "shape index 2: vertex 1 (row 5): x=900.0 > 499 (width 500)"
    assert "frame 10 ≥ 10 frames" in problems[1].reason
    assert "vertex 0 (row 6): y=-1.0 < 0" in problems[1].reason
    assert "channel 2 ≥ 2 channels" in problems[2].reason
    text = format_problems(problems, outside, noun="line")
    assert text.startswith("lines.csv: 3 of 3 lines outside the movie (row 4: shape index 2")


# --------------------------------------------------------------------------- rendering


def test_horizontal_line_hand_computed_pixels() -> None:
    frame, windows = render_lines_frame([[(10, 10), (10, 30)]], 40, 50, line_width=7)
    assert frame.dtype == np.float32
    # along the line and up to distance 3 from it: 1
    for y in range(7, 14):
        for x in (10, 20, 30):
            assert frame[y, x] == 1.0
    # distance 4 from the segment (line_width / 2 + 0.5): 0
    assert frame[6, 20] == 0.0 and frame[14, 20] == 0.0
    assert frame[10, 6] == 0.0 and frame[10, 34] == 0.0
    # round caps: distance to the end vertex (10, 30)
    assert frame[10, 33] == 1.0  # distance 3
    assert frame[12, 33] == pytest.approx(4 - math.sqrt(13), abs=1e-6)  # ≈ 0.394
    assert frame[11, 33] == pytest.approx(4 - math.sqrt(10), abs=1e-6)  # ≈ 0.838
    assert frame[13, 33] == 0.0  # distance √18 ≈ 4.24
    assert windows == [(7, 14, 7, 34)]
    assert frame.sum() == pytest.approx(float(frame[7:14, 7:34].sum()))


def test_half_pixel_edges_are_one_half() -> None:
    # a line on y = 10.5: pixel rows 7 and 14 are at distance 3.5 = line_width / 2 → 0.5
    frame, _ = render_lines_frame([[(10.5, 10), (10.5, 30)]], 40, 50, line_width=7)
    assert frame[7, 20] == pytest.approx(0.5) and frame[14, 20] == pytest.approx(0.5)
    assert frame[8:14, 20].tolist() == [1.0] * 6
    assert frame[6, 20] == 0.0 and frame[15, 20] == 0.0
    assert frame[:, 20].sum() == pytest.approx(7.0)  # the width is preserved


def test_diagonal_line_and_values_in_unit_interval() -> None:
    frame, windows = render_lines_frame([[(10, 10), (40, 40)]], 60, 70, line_width=5)
    # distance from (y, x) to the line y = x is |y − x| / √2
    for y, x in [(20, 20), (22, 20), (25, 20), (20, 26), (30, 24)]:
        d = abs(y - x) / math.sqrt(2)
        assert frame[y, x] == pytest.approx(min(1.0, max(0.0, 3.0 - d)), abs=1e-6), (y, x)
    assert frame.min() >= 0.0 and frame.max() == 1.0
    assert not (frame > 0)[~covered(windows, frame.shape)].any()
    # the stroke keeps its width: the mass per unit length is ≈ line_width
    assert frame[15:35].sum() / (20 * math.sqrt(2)) == pytest.approx(5.0, rel=0.02)


def test_polyline_long_segments_and_clipping() -> None:
    path = [(-20.0, 5.0), (100.0, 5.0), (100.0, 290.0), (250.0, 10.0)]
    frame, windows = render_lines_frame([path], 200, 300, line_width=7)
    assert frame.min() >= 0.0 and frame.max() == 1.0
    assert not (frame > 0)[~covered(windows, frame.shape)].any()
    assert all(0 <= y0 < y1 <= 200 and 0 <= x0 < x1 <= 300 for y0, y1, x0, x1 in windows)
    # long segments are drawn in pieces: no window much larger than a piece
    assert max((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in windows) < 80 * 80
    assert frame[0, 5] == 1.0 and frame[100, 150] == 1.0 and frame[150, 5] == 0.0
    # reference: the same strokes computed over the whole frame
    yy, xx = np.mgrid[0:200, 0:300].astype(np.float64)
    dist = np.full(frame.shape, np.inf)
    for (ay, ax), (by, bx) in itertools.pairwise(path):
        dy, dx = by - ay, bx - ax
        t = np.clip(((yy - ay) * dy + (xx - ax) * dx) / (dy * dy + dx * dx), 0, 1)
        dist = np.minimum(dist, np.hypot(yy - ay - t * dy, xx - ax - t * dx))
    np.testing.assert_allclose(frame, np.clip(4.0 - dist, 0, 1), atol=1e-6)


def test_lines_combine_with_points_by_maximum() -> None:
    base, _ = render_frame([(20, 20)], 50, 60)
    frame, _ = render_lines_frame([[(20, 22), (20, 40)]], 50, 60, out=base.copy())
    assert np.array_equal(
        frame, np.maximum(base, render_lines_frame([[(20, 22), (20, 40)]], 50, 60)[0])
    )
    with pytest.raises(ConfigurationError, match="line_width"):
        render_lines_frame([[(1, 1), (2, 2)]], 10, 10, line_width=0)
    with pytest.raises(ValueError, match="out must be"):
        render_lines_frame([], 10, 10, out=np.zeros((10, 11), np.float32))


def test_iter_ground_truth_with_lines_and_points() -> None:
    lines = [line(1, (5, 5), (5, 25)), line(3, (20, 5), (30, 30)), line(7, (1, 1), (2, 2))]
    frames = list(
        iter_ground_truth([(1, 30, 30)], n_frames=5, height=40, width=50, lines=lines, line_width=3)
    )
    assert [t for t, _, _ in frames] == [0, 1, 2, 3, 4]
    t1 = frames[1][1]
    assert t1[5, 15] == 1.0 and t1[30, 30] == 1.0  # the line and the Gaussian
    assert len(frames[1][2]) == 2  # the point's window, then the line's
    assert frames[3][1][20, 5] == 1.0 and frames[3][1][5, 15] == 0.0
    assert not frames[0][1].any() and not frames[4][1].any()  # frame 7 is outside: skipped
    # (frame, vertices) pairs work too
    (_, f, _), *_ = iter_ground_truth(
        [], n_frames=1, height=10, width=10, lines=[(0, [(5, 1), (5, 8)])]
    )
    assert f[5, 4] == 1.0


# --------------------------------------------------------------------------- ground truth file


def test_write_ground_truth_with_lines_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ground_truth_pearls.tif"
    lines = [line(t, (100, 40), (100, 160)) for t in (3, 4, 5, 6)] + [line(9, (10, 10), (0, 0))]
    summary = write_ground_truth(
        path, [], n_frames=10, height=200, width=300, lines=lines, line_width=5.0
    )
    assert summary.n_lines == 5 and summary.n_points == 0
    assert summary.line_width == 5.0
    assert summary.frames_with_signal == 5
    side = json.loads(sidecar_path(path).read_text())
    assert side["line_width"] == 5.0 and side["n_lines"] == 5 and side["n_points"] == 0
    with tifffile.TiffFile(path) as tif:
        assert tif.shaped_metadata[0]["line_width"] == 5.0
    expected = np.stack(
        [
            f
            for _, f, _ in iter_ground_truth(
                [], n_frames=10, height=200, width=300, lines=lines, line_width=5.0
            )
        ]
    )
    with GroundTruthReader(path) as reader:
        got = np.stack([reader.read_frame(t) for t in range(10)])
        assert np.array_equal(got, expected)
        assert reader.read_window(4, 95, 106, 30, 170).max() == 1.0
    assert np.array_equal(tifffile.imread(path), expected)
    assert 0.0 <= expected.min() and expected.max() == 1.0
    support = read_ground_truth_support(path)
    assert support is not None and sorted(support) == [3, 4, 5, 6, 9]
    for t in range(10):
        assert not (expected[t] > 0)[~covered(support.get(t, []), (200, 300))].any()


def test_write_ground_truth_without_lines_records_no_line_width(tmp_path: Path) -> None:
    path = tmp_path / "ground_truth_points.tif"
    summary = write_ground_truth(path, [(0, 10, 10)], n_frames=2, height=40, width=40)
    assert summary.n_points == 1 and summary.n_lines == 0 and summary.line_width is None
    side = json.loads(sidecar_path(path).read_text())
    assert "line_width" not in side and "n_lines" not in side
    with tifffile.TiffFile(path) as tif:
        assert "line_width" not in tif.shaped_metadata[0]


# --------------------------------------------------------------------------- detection


def write_line_gt(tmp_path: Path, lines, n_frames=12, height=300, width=400) -> Path:
    path = tmp_path / "ground_truth_pearls.tif"
    write_ground_truth(path, [], n_frames=n_frames, height=height, width=width, lines=lines)
    return path


def test_one_event_per_line_over_frames(tmp_path: Path) -> None:
    # a line drawn in frames 3–6 (annotation jitter of a pixel or two) and a second, separate
    # line in frame 5
    first = [
        line(3, (100, 40), (100, 160), index=0),
        line(4, (101, 41), (99, 161), index=1),
        line(5, (100, 42), (101, 159), index=2),
        line(6, (100, 40), (100, 160), index=3),
    ]
    second = [line(5, (220, 250), (260, 330), index=4)]
    lines = first + second
    path = write_line_gt(tmp_path, lines)
    by_gt = detect_line_events_in_file(path, crop_size=128, add_post_frames=2)
    by_lines = detect_line_events_in_file(path, lines, crop_size=128, add_post_frames=2)
    for found in (by_gt, by_lines):
        assert len(found) == 2
        ev = next(e for e in found if e.detections[0].frame == 3)
        assert [d.frame for d in ev.detections] == [3, 4, 5, 6]
        assert ev.frames == (3, 9)
        x0, y0, x1, y1 = ev.crop_box
        assert (x1 - x0, y1 - y0) == (128, 128)
        assert y0 <= 100 < y1 and x0 <= 100 < x1  # the line's centre is in the crop
        assert ev.center == (100, 100)
        other = next(e for e in found if e is not ev)
        assert other.frames == (5, 8) and other.center == (240, 290)
    # the whole-file scan without the sidecar gives the same events
    assert (
        detect_line_events_in_file(path, crop_size=128, add_post_frames=2, use_support=False)
        == by_gt
    )
    # maxima detection would see many detections along the plateau
    with GroundTruthReader(path) as reader:
        assert len(find_frame_maxima(reader.read_frame(3))) > 1


def test_line_longer_than_crop_is_cropped_at_its_centre(tmp_path: Path) -> None:
    lines = [line(t, (150, 20), (150, 380)) for t in (0, 1)]
    (ev,) = detect_line_events(lines, n_frames=4, height=300, width=400, crop_size=128)
    assert ev.center == (150, 200)
    assert ev.crop_box == crop_box(150, 200, crop_size=128, height=300, width=400)
    assert ev.crop_box == (136, 86, 264, 214)
    path = write_line_gt(tmp_path, lines, n_frames=4)
    (from_gt,) = detect_line_events_in_file(path, crop_size=128)
    assert from_gt.crop_box == ev.crop_box and from_gt.frames == ev.frames


def test_crossing_lines_are_two_events_from_annotations_one_from_components() -> None:
    lines = [line(2, (100, 50), (100, 150), index=0), line(2, (50, 100), (150, 110), index=1)]
    events = detect_line_events(lines, n_frames=5, height=300, width=300, crop_size=128)
    assert len(events) == 2
    frame, windows = render_lines_frame(lines, 300, 300)
    assert len(find_frame_components(frame, frame_index=2, windows=windows)) == 1


def test_find_frame_components_windows_equal_whole_frame() -> None:
    lines = [
        [(10, 10), (10, 200)],
        [(14, 210), (40, 290)],  # separate from the first (gap > 1 px)
        [(100, 100), (150, 150), (100, 200)],
        [(250, 30), (250, 30.5)],
    ]
    frame, windows = render_lines_frame(lines, 300, 320, line_width=7)
    whole = find_frame_components(frame, frame_index=4)
    assert find_frame_components(frame, frame_index=4, windows=windows) == whole
    assert len(whole) == 4
    assert all(d.frame == 4 and d.value == 1.0 for d in whole)
    first = next(d for d in whole if d.y == 10.0)
    assert first.x == 105.0  # centre of columns 7 … 203
    events = detect_events(
        [(0, frame)], n_frames=1, height=300, width=320, detector="components", crop_size=64
    )
    assert len(events) == 4
    with pytest.raises(ValueError, match="detector"):
        detect_events([], n_frames=1, height=300, width=320, detector="peaks")


def test_line_detections_clip_and_skip() -> None:
    lines = [
        line(0, (-10, 10), (30, 10)),  # partly above the image: centred on the visible part
        line(5, (1, 1), (2, 2)),  # frame outside
        line(1, (400, 10), (500, 10)),  # wholly below the image
    ]
    (det,) = line_detections(lines, n_frames=3, height=100, width=100)
    assert (det.frame, det.y, det.x) == (0, 15.0, 10.0)


def test_line_negatives_are_signal_free(tmp_path: Path) -> None:
    lines = [line(t, (384, 480), (384, 540)) for t in range(0, 3)]
    path = write_line_gt(tmp_path, lines, n_frames=6, height=768, width=1024)
    (ev,) = detect_line_events_in_file(path)
    negs = negative_boxes_in_file(path, [ev], count=2)
    assert len(negs[0]) == 2
    gt = tifffile.imread(path)
    for bx0, by0, bx1, by1 in negs[0]:
        assert gt[ev.frames[0] : ev.frames[1], by0:by1, bx0:bx1].max() == 0.0
