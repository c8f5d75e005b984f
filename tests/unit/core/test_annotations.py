from __future__ import annotations

from pathlib import Path

import pytest

from deep_events_dagster.core.annotation_bounds import (
    PointProblem,
    format_problems,
    validate_points,
)
from deep_events_dagster.core.annotation_csv import find_annotation_files, resolve_scale_csv
from deep_events_dagster.core.annotations import AnnotationPoint, read_napari_points
from deep_events_dagster.core.errors import AnnotationError, ConfigurationError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- files


def test_find_annotation_files_prefix_sorted_not_recursive(tmp_path: Path) -> None:
    for name in ["points_b.csv", "points_a.csv", "points.csv", "Points_c.csv", "other.csv"]:
        write(tmp_path / name, "index,axis-0,axis-1,axis-2\n")
    write(tmp_path / "points_notes.txt", "x")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "points_deep.csv", "x")
    found = find_annotation_files(tmp_path, "points")
    assert [p.name for p in found] == ["points.csv", "points_a.csv", "points_b.csv"]
    assert find_annotation_files(tmp_path / "missing", "points") == []


def test_resolve_scale_csv() -> None:
    assert resolve_scale_csv(True, "points") is True
    assert resolve_scale_csv(False, "points") is False
    assert resolve_scale_csv("inverse", "points") == "inverse"
    mapping = {"points": False, "fission": "inverse"}
    assert resolve_scale_csv(mapping, "points") is False
    assert resolve_scale_csv(mapping, "fission") == "inverse"
    assert resolve_scale_csv(mapping, "other") is True
    assert resolve_scale_csv(None, "points") is True
    with pytest.raises(ConfigurationError, match="scale_csv"):
        resolve_scale_csv({"points": "sometimes"}, "points")


# --------------------------------------------------------------------------- parsing


def test_three_axis_pixels(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "points.csv",
        "index,axis-0,axis-1,axis-2\n0,3.0,10.5,20.25\n0,4.0,11,21\n",
    )
    pts = read_napari_points(csv, scale_csv=False, physical_size_x=None)
    assert pts == [
        AnnotationPoint(frame=3, y=10.5, x=20.25, channel=None, file=str(csv), row=0),
        AnnotationPoint(frame=4, y=11.0, x=21.0, channel=None, file=str(csv), row=1),
    ]
    assert isinstance(pts[0].frame, int)


def test_four_axis_and_no_index_column(tmp_path: Path) -> None:
    csv = write(tmp_path / "points.csv", "axis-0,axis-1,axis-2,axis-3\n2.0,1.0,30,40\n")
    (p,) = read_napari_points(csv, scale_csv=False, physical_size_x=None)
    assert (p.frame, p.channel, p.y, p.x) == (2, 1, 30.0, 40.0)


def test_micrometres_divided_and_inverse_multiplied(tmp_path: Path) -> None:
    csv = write(tmp_path / "points.csv", "index,axis-0,axis-1,axis-2\n0,1,5.0,2.5\n")
    (um,) = read_napari_points(csv, scale_csv=True, physical_size_x=0.1)
    assert (um.y, um.x) == pytest.approx((50.0, 25.0))
    (px,) = read_napari_points(csv, scale_csv=False, physical_size_x=0.1)
    assert (px.y, px.x) == (5.0, 2.5)
    (inv,) = read_napari_points(csv, scale_csv="inverse", physical_size_x=0.1)
    assert (inv.y, inv.x) == pytest.approx((0.5, 0.25))
    assert um.frame == px.frame == inv.frame == 1


def test_frame_tolerance(tmp_path: Path) -> None:
    csv = write(tmp_path / "points.csv", "axis-0,axis-1,axis-2\n2.0000000001,1,1\n")
    (p,) = read_napari_points(csv, scale_csv=False, physical_size_x=None)
    assert p.frame == 2


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("", ["empty"]),
        ("index,axis-0,axis-1,axis-2\n", ["only a header"]),
        ("index,axis-0,axis-1\n0,1,2\n", ["missing column", "axis-2"]),
        ("axis-0,axis-1,axis-2,axis-3\n", ["only a header"]),
        ("axis-0,axis-1,axis-3\n1,2,3\n", ["missing column", "axis-2"]),
        ("axis-0,axis-1,axis-2\n1,2,3\n1,abc,3\n", ["non-numeric", "'abc'", "axis-1", "row 1"]),
        ("axis-0,axis-1,axis-2\n1,2,\n", ["NaN", "axis-2", "row 0"]),
        ("axis-0,axis-1,axis-2\n1,2,nan\n", ["NaN", "axis-2"]),
        ("axis-0,axis-1,axis-2\n1,inf,3\n", ["infinite", "axis-1"]),
        ("axis-0,axis-1,axis-2\n1,2,3\n3.5,2,3\n", ["frame", "whole number", "3.5", "row 1"]),
        ("axis-0,axis-1,axis-2,axis-3\n1,0.5,2,3\n", ["channel", "whole number"]),
    ],
)
def test_annotation_errors(tmp_path: Path, text: str, fragments: list[str]) -> None:
    csv = write(tmp_path / "points_bad.csv", text)
    with pytest.raises(AnnotationError) as info:
        read_napari_points(csv, scale_csv=False, physical_size_x=None)
    message = str(info.value)
    assert message.startswith(str(csv))
    assert info.value.path == csv
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("size", [None, 0.0, -0.1, float("nan")])
@pytest.mark.parametrize("mode", [True, "inverse"])
def test_scaling_needs_pixel_size(tmp_path: Path, size: float | None, mode: object) -> None:
    csv = write(tmp_path / "points.csv", "axis-0,axis-1,axis-2\n1,2,3\n")
    with pytest.raises(AnnotationError) as info:
        read_napari_points(csv, scale_csv=mode, physical_size_x=size)
    assert str(info.value).startswith(str(csv))
    assert "physical_size_x" in str(info.value)


# --------------------------------------------------------------------------- validation


def pt(frame: int, y: float, x: float, channel: int | None = None, row: int = 0) -> AnnotationPoint:
    return AnnotationPoint(frame=frame, y=y, x=x, channel=channel, file="points.csv", row=row)


def test_validate_points_edges() -> None:
    inside = [
        pt(0, 0.0, 0.0),
        pt(9, 299.0, 499.0),  # exactly the last pixel centre (height 300, width 500)
        pt(5, 150.0, 250.0, channel=1),
    ]
    assert validate_points(inside, n_frames=10, height=300, width=500, n_channels=2) == []

    outside = [
        pt(0, 299.01, 10.0, row=0),
        pt(0, 10.0, 499.5, row=1),
        pt(0, -0.001, 10.0, row=2),
        pt(0, 10.0, -3.0, row=3),
        pt(10, 10.0, 10.0, row=4),
        pt(-1, 10.0, 10.0, row=5),
        pt(0, 10.0, 10.0, channel=2, row=6),
        pt(12, 812.0, 900.0, row=7),
    ]
    problems = validate_points(outside, n_frames=10, height=300, width=500, n_channels=2)
    assert [p.row for p in problems] == [0, 1, 2, 3, 4, 5, 6, 7]
    reasons = {p.row: p.reason for p in problems}
    assert "y=299.01 > 299 (height 300)" in reasons[0]
    assert "x=499.5 > 499 (width 500)" in reasons[1]
    assert "y=-0.001 < 0" in reasons[2]
    assert "x=-3.0 < 0" in reasons[3]
    assert "frame 10 ≥ 10 frames" in reasons[4]
    assert "frame -1 < 0" in reasons[5]
    assert "channel 2 ≥ 2 channels" in reasons[6]
    assert all(s in reasons[7] for s in ("frame 12", "y=812.0", "x=900.0"))
    assert all(p.file == "points.csv" for p in problems)


def test_format_problems_groups_per_file() -> None:
    points = [pt(0, 1, 1, row=i) for i in range(12)]
    problems = [
        PointProblem("points.csv", 9, "x=812.0 > 799 (width 800)"),
        PointProblem("points.csv", 4, "x=900.0 > 799 (width 800)"),
        PointProblem("points.csv", 7, "frame 100 ≥ 100 frames"),
        PointProblem("points_b.csv", 0, "y=-1.0 < 0"),
    ]
    text = format_problems(problems, points)
    lines = text.splitlines()
    assert lines[0].startswith("points.csv: 3 of 12 points outside the movie (row 4: x=900.0")
    assert lines[0].index("row 4") < lines[0].index("row 7") < lines[0].index("row 9")
    assert lines[1] == "points_b.csv: 1 point outside the movie (row 0: y=-1.0 < 0)"
    many = [PointProblem("p.csv", i, "frame 9 ≥ 9 frames") for i in range(8)]
    assert "… and 3 more" in format_problems(many, max_rows=5)
    assert format_problems([]) == ""
