"""Tests of the synthetic acquisition generator (deep_events_dagster.testing)."""

from __future__ import annotations

import math
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from deep_events_dagster import core
from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.testing.benchmark_movies import write_large_movie
from deep_events_dagster.testing.movies import synthesize_movie
from deep_events_dagster.testing.ome_tiff import OME_NAMESPACE, write_ome_movie
from deep_events_dagster.testing.trees import SyntheticTree, generate_tree, synth_main

KEYS_YAML = Path(core.__file__).with_name("keys.yaml")
NS = {"ome": OME_NAMESPACE}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> SyntheticTree:
    root = tmp_path_factory.mktemp("tree") / "data"
    return generate_tree(root, seed=7, n_acquisitions=4, kinds=("points", "fission"))


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_csv_points(paths) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def _parse_ome(path: Path) -> ET.Element:
    with tifffile.TiffFile(path) as tif:
        return ET.fromstring(tif.ome_metadata)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kwargs = {"n_acquisitions": 2, "height": 200, "width": 240, "n_frames": 14}
    a = generate_tree(tmp_path / "a", seed=3, **kwargs)
    b = generate_tree(tmp_path / "b", seed=3, **kwargs)
    c = generate_tree(tmp_path / "c", seed=4, **kwargs)
    files_a, files_b = _files(a.root), _files(b.root)
    assert files_a == files_b
    assert a.acquisitions[0].events == b.acquisitions[0].events
    assert any(name.endswith(".ome.tif") for name in files_a)
    for acq_a, acq_c in zip(a.acquisitions, c.acquisitions):
        assert acq_a.movie_path.read_bytes() != acq_c.movie_path.read_bytes()
        assert (
            acq_a.csv_files["points"][0].read_bytes() != acq_c.csv_files["points"][0].read_bytes()
        )


def test_tree_shapes_channels_and_units(tree):
    axes = [a.axes for a in tree.acquisitions]
    assert axes == ["TYX", "TCYX", "TYX", "TCYX"]
    assert [a.scale_csv for a in tree.acquisitions] == [True, False, True, False]
    for acq in tree.acquisitions:
        assert acq.shape[-2:] == (320, 400)  # non-square by default
        assert acq.shape[0] == 24
        assert acq.dtype == "uint16"
        assert acq.movie_path.parent == acq.folder
        assert acq.movie_path.name.endswith(".ome.tif")
        for kind in ("points", "fission"):
            assert 2 <= len(acq.events_of(kind)) <= 3
            for ev in acq.events_of(kind):
                assert 3 <= len(ev.track) <= 6
                assert ev.points == ev.track
                frames = [p[0] for p in ev.track]
                assert frames == list(range(frames[0], frames[0] + len(frames)))
                steps = np.diff(np.array([p[1:] for p in ev.track]), axis=0)
                assert np.all(np.hypot(steps[:, 0], steps[:, 1]) <= 2.0)
                assert (ev.channel is None) == (acq.axes == "TYX")


def test_ome_xml_is_read_by_tifffile(tree):
    for acq in tree.acquisitions:
        with tifffile.TiffFile(acq.movie_path) as tif:
            assert tif.is_ome
            series = tif.series[0]
            assert series.axes == acq.axes
            assert series.shape == acq.shape
            assert series.dtype == np.uint16
            assert len(tif.pages) == int(np.prod(acq.shape[:-2]))
            data = series.asarray()
        assert data.shape == acq.shape
        ome = _parse_ome(acq.movie_path)
        pixels = ome.find("ome:Image/ome:Pixels", NS)
        t, c = acq.shape[0], (acq.shape[1] if acq.axes == "TCYX" else 1)
        assert pixels.get("DimensionOrder") == "XYCZT"
        assert float(pixels.get("PhysicalSizeX")) == acq.physical_size_x
        assert float(pixels.get("PhysicalSizeY")) == acq.physical_size_y
        assert pixels.get("PhysicalSizeXUnit") == "µm"
        assert (int(pixels.get("SizeT")), int(pixels.get("SizeC"))) == (t, c)
        assert (int(pixels.get("SizeY")), int(pixels.get("SizeX"))) == acq.shape[-2:]
        channels = pixels.findall("ome:Channel", NS)
        assert [ch.get("Name") for ch in channels] == list(acq.channel_names)
        assert ome.find("ome:Instrument/ome:Detector", NS) is not None
        unit = pixels.get("TimeIncrementUnit")
        assert unit == acq.time_unit
        to_s = {"s": 1.0, "ms": 1e-3}[unit]
        assert float(pixels.get("TimeIncrement")) * to_s == pytest.approx(acq.time_increment_s)
        planes = pixels.findall("ome:Plane", NS)
        assert len(planes) == t * c
        assert [(int(p.get("TheT")), int(p.get("TheC"))) for p in planes] == [
            (ti, ci) for ti in range(t) for ci in range(c)
        ]
        assert {p.get("DeltaTUnit") for p in planes} == {unit}
        delta = np.array([float(p.get("DeltaT")) * to_s for p in planes if p.get("TheC") == "0"])
        interval = np.diff(delta).mean()
        assert abs(interval - acq.expected_metadata["frame_interval_s"]) < 1e-6
        assert acq.expected_metadata["frame_interval_s"] == acq.time_increment_s
        # fps is frames per second: the reciprocal of the interval
        assert acq.expected_metadata["fps"] == pytest.approx(1.0 / interval, rel=1e-6)
        assert acq.expected_metadata["fps"] * acq.time_increment_s == pytest.approx(1.0)
        ome_expected = acq.expected_metadata["ome"]
        assert ome_expected == {
            "size_x": acq.shape[-1],
            "size_y": acq.shape[-2],
            "size_t": t,
            "size_c": c,
            "physical_size_x": acq.physical_size_x,
            "physical_size_y": acq.physical_size_y,
        }
    assert {a.time_unit for a in tree.acquisitions} == {"s", "ms"}


def test_csv_columns_and_units_give_back_the_truth(tree):
    for acq in tree.acquisitions:
        four = acq.axes == "TCYX"
        columns = ["index", "axis-0", "axis-1", "axis-2"] + (["axis-3"] if four else [])
        manual = acq.folder / "db_manual.yaml"
        if acq.scale_csv:
            assert not manual.exists() or "scale_csv" not in yaml.safe_load(manual.read_text())
        else:
            assert yaml.safe_load(manual.read_text())["scale_csv"] is False
        for kind, paths in acq.csv_files.items():
            assert all(re.fullmatch(rf"{kind}(_\d+)?\.csv", p.name) for p in paths)
            first_line = paths[0].read_text().splitlines()[:2]
            assert first_line[0] == ",".join(columns)
            assert first_line[1].startswith("0.0,")
            df = _read_csv_points(paths)
            assert list(df.columns) == columns
            events = acq.events_of(kind)
            truth = np.array([p for ev in events for p in ev.points])
            scale = acq.physical_size_x if acq.scale_csv else 1.0
            yx = df[["axis-2", "axis-3"] if four else ["axis-1", "axis-2"]].to_numpy() / scale
            np.testing.assert_array_equal(df["axis-0"].to_numpy(), truth[:, 0])
            np.testing.assert_allclose(yx, truth[:, 1:], atol=1e-9)
            if four:
                channels = [ev.channel for ev in events for _ in ev.points]
                np.testing.assert_array_equal(df["axis-1"].to_numpy(), channels)
    # every 2nd acquisition splits its points over two files
    assert [p.name for p in tree.acquisitions[1].csv_files["points"]] == [
        "points.csv",
        "points_2.csv",
    ]


def test_events_are_brighter_than_their_surroundings(tree):
    yy, xx = np.mgrid[-20:21, -20:21]
    ring = (np.hypot(yy, xx) >= 12) & (np.hypot(yy, xx) <= 20)
    for acq in tree.acquisitions:
        movie = tifffile.imread(acq.movie_path)
        if acq.axes == "TYX":
            movie = movie[:, None]
        assert movie.min() >= 100  # camera offset
        assert 120 < np.median(movie) < 600
        assert 1000 < movie.max() < 6000
        for ev in acq.events:
            c = ev.channel or 0
            start = ev.frames[0]
            centre, surround, before = [], [], []
            for t, y, x in ev.track:
                iy, ix = round(y), round(x)
                patch = movie[t, c, iy - 20 : iy + 21, ix - 20 : ix + 21].astype(float)
                centre.append(patch[19:22, 19:22].mean())
                surround.append(patch[ring].mean())
                if start >= 3:
                    before.append(movie[0 : start - 2, c, iy - 1 : iy + 2, ix - 1 : ix + 2].mean())
            assert np.mean(centre) > 2 * np.mean(surround)
            if before:
                assert np.mean(centre) > np.mean(before) + 200


def test_folder_names_and_expected_metadata(tree):
    _check_inference(tree)
    acqs = tree.acquisitions
    for acq in acqs:
        rel = acq.folder.relative_to(tree.root).parts
        assert re.fullmatch(r"\d{6}_[A-Za-z0-9-]+_[A-Za-z0-9]+_[A-Za-z]+", rel[0])
        assert rel[0][:6] == acq.expected_metadata["date"]
    assert re.fullmatch(r"[A-Za-z]+(_[A-Za-z0-9]+)?_1", acqs[0].folder.name)
    assert acqs[2].folder.name == "cell_3"  # no stain token: the stain is in db_manual.yaml
    assert acqs[3].folder.parent.name == "series_b"
    assert acqs[0].folder.parent == acqs[1].folder.parent != acqs[2].folder.parent
    assert acqs[2].expected_metadata["event_content"] == "fission"  # parent db_manual wins
    assert acqs[0].expected_metadata["event_content"] == "division"
    assert acqs[1].expected_metadata["labels"] == ["mitochondria", "er"]
    assert acqs[0].expected_metadata["labels"] == ["mitochondria"]
    assert acqs[1].expected_metadata["stain"] == ["mitotracker", "drp1"]


def test_awkward_names(tmp_path):
    tree = generate_tree(
        tmp_path / "awk",
        seed=1,
        n_acquisitions=3,
        height=200,
        width=240,
        n_frames=12,
        events_per_acquisition=1,
        awkward_names=True,
        csv_units="um",
        time_units="s",
        stale_movie=True,
    )
    names = "".join(str(a.folder.relative_to(tree.root)) for a in tree.acquisitions)
    for char in (" ", "µ", "é", "[", '"', "'"):
        assert char in names
    _check_inference(tree)
    for acq in tree.acquisitions:
        assert acq.scale_csv is True
        assert acq.time_unit == "s"
        with tifffile.TiffFile(acq.movie_path) as tif:
            assert tif.is_ome
            assert tif.series[0].shape == acq.shape
    stale = [
        p
        for p in tree.acquisitions[0].folder.glob("*.ome.tif")
        if p != tree.acquisitions[0].movie_path
    ]
    assert len(stale) == 1
    assert stale[0].stat().st_mtime < tree.acquisitions[0].movie_path.stat().st_mtime


def _check_inference(tree: SyntheticTree) -> None:
    """A minimal reference for folder-name inference and db_manual merging."""
    keys = yaml.safe_load(KEYS_YAML.read_text())
    alias = {
        cat: {a.lower(): entry[0] for entry in entries for a in entry}
        for cat, entries in keys.items()
    }
    for acq in tree.acquisitions:
        rel = acq.folder.relative_to(tree.root).parts
        tokens = [t for part in rel for t in re.split(r"[_\-. ]+", part) if t]
        inferred = {cat: [] for cat in keys}
        dates = [t for t in tokens if re.fullmatch(r"\d{6}", t)]
        for token in tokens:
            for cat in keys:
                name = alias[cat].get(token.lower())
                if name and name not in inferred[cat]:
                    inferred[cat].append(name)
        merged = {}
        folder = tree.root
        for part in ("", *rel):
            folder = folder / part if part else folder
            if (folder / "db_manual.yaml").exists():
                merged.update(yaml.safe_load((folder / "db_manual.yaml").read_text()))
        expected = dict(acq.expected_metadata)
        assert expected["date"] == dates[0]
        for cat in ("cell_line", "microscope", "contrast"):
            assert expected[cat] == inferred[cat], (cat, rel)
            assert len(expected[cat]) == 1
        assert expected["stain"] == merged.get("stain", inferred["stain"])
        assert expected["labels"] == merged.get("labels", inferred["labels"])
        for key, value in merged.items():
            assert expected[key] == value


def test_four_axis_csv_for_tcyx(tmp_path):
    tree = generate_tree(
        tmp_path / "t",
        seed=2,
        n_acquisitions=1,
        channels=2,
        height=200,
        width=240,
        n_frames=12,
        events_per_acquisition=1,
        csv_units="um",
    )
    acq = tree.acquisitions[0]
    assert acq.axes == "TCYX" and acq.shape[1] == 2
    raw = acq.csv_files["points"][0].read_bytes()
    assert raw.startswith(b"index,axis-0,axis-1,axis-2,axis-3\r\n0.0,")  # as napari writes
    df = pd.read_csv(acq.csv_files["points"][0])
    ev = acq.events[0]
    assert set(df["axis-1"]) == {float(ev.channel)}
    np.testing.assert_allclose(df["axis-3"] / acq.physical_size_x, [p[2] for p in ev.points])


def test_two_close_events(tmp_path):
    tree = generate_tree(
        tmp_path / "close",
        seed=5,
        n_acquisitions=1,
        height=320,
        width=400,
        two_close_events=True,
    )
    events = tree.acquisitions[0].events
    pairs = [
        (a, b)
        for i, a in enumerate(events)
        for b in events[i + 1 :]
        if a.frames == b.frames and abs(math.dist(a.center, b.center) - 150) <= 1
    ]
    assert len(pairs) == 1
    a, b = pairs[0]
    for (ta, ya, xa), (tb, yb, xb) in zip(a.track, b.track):
        assert ta == tb
        assert abs(math.dist((ya, xa), (yb, xb)) - 150) <= 1
    with pytest.raises(ConfigurationError):
        synthesize_movie(height=150, width=180, two_close_events=True)


def test_edge_event_and_one_point_mode(tmp_path):
    tree = generate_tree(
        tmp_path / "edge",
        seed=6,
        n_acquisitions=1,
        channels=1,
        edge_event=True,
        one_point_per_event=True,
    )
    acq = tree.acquisitions[0]
    h, w = acq.shape[-2:]

    def border(p):
        return min(p[1], p[2], h - 1 - p[1], w - 1 - p[2])

    edge = [ev for ev in acq.events if all(border(p) <= 10 for p in ev.track)]
    assert len(edge) == 1
    assert all(border(p) >= 0 for p in edge[0].track)
    for ev in acq.events:
        assert len(ev.points) == 1 and ev.points[0] == ev.track[0]
        assert len(ev.track) >= 3
    df = _read_csv_points(acq.csv_files["points"])
    assert len(df) == len(acq.events)


def test_frame_by_frame_equals_in_memory(tmp_path):
    model = synthesize_movie(n_frames=50, height=512, width=512, seed=11)
    kwargs = {
        "axes": model.axes,
        "physical_size_x": 0.1,
        "physical_size_y": 0.1,
        "time_increment_s": 2.0,
    }
    in_memory = write_ome_movie(tmp_path / "a" / "m.ome.tif", model.render(), **kwargs)
    streamed = write_ome_movie(
        tmp_path / "b" / "m.ome.tif", model.frame, shape=model.shape, dtype="uint16", **kwargs
    )
    assert in_memory.read_bytes() == streamed.read_bytes()
    with tifffile.TiffFile(streamed) as tif:
        assert tif.is_ome and tif.series[0].shape == (50, 512, 512)
        page = tif.pages[17].asarray()
    np.testing.assert_array_equal(page, model.frame(17))


def test_write_large_movie_returns_points(tmp_path):
    result = write_large_movie(
        tmp_path / "big.ome.tif",
        n_frames=12,
        height=256,
        width=320,
        n_points=10,
        seed=2,
        csv_path=tmp_path / "points.csv",
    )
    assert result.points.shape == (10, 3)
    assert result.shape == (12, 256, 320)
    df = pd.read_csv(result.csv_path)
    np.testing.assert_allclose(df["axis-0"], result.points[:, 0])
    np.testing.assert_allclose(df[["axis-1", "axis-2"]] / 0.056, result.points[:, 1:])
    with tifffile.TiffFile(result.path) as tif:
        assert tif.is_ome and tif.series[0].axes == "TYX"


def test_write_ome_movie_validates_input(tmp_path):
    with pytest.raises(ConfigurationError):
        write_ome_movie(
            tmp_path / "x.ome.tif",
            lambda t: np.zeros((4, 4), np.uint16),
            axes="TYX",
            physical_size_x=0.1,
            physical_size_y=0.1,
            time_increment_s=1.0,
        )
    with pytest.raises(ConfigurationError):
        write_ome_movie(
            tmp_path / "x.ome.tif",
            np.zeros((2, 4, 4), np.uint16),
            axes="TZYX",
            physical_size_x=0.1,
            physical_size_y=0.1,
            time_increment_s=1.0,
        )


def test_small_movie_is_fast():
    start = time.perf_counter()
    model = synthesize_movie(n_frames=20, height=256, width=256, seed=0)
    movie = model.render()
    elapsed = time.perf_counter() - start
    assert movie.shape == (20, 256, 256) and movie.dtype == np.uint16
    assert elapsed < 1.5


def test_synth_main_demo_tree(tmp_path):
    tree = synth_main(tmp_path / "demo", seed=0)
    assert len(tree.acquisitions) == 4
    assert {a.axes for a in tree.acquisitions} == {"TYX", "TCYX"}
    assert {a.scale_csv for a in tree.acquisitions} == {True, False}
    assert all(a.shape[0] == 40 and a.shape[-2:] == (512, 640) for a in tree.acquisitions)
    first = tree.acquisitions[0].events
    assert any(
        a.frames == b.frames and abs(math.dist(a.center, b.center) - 150) <= 1
        for i, a in enumerate(first)
        for b in first[i + 1 :]
    )
    assert (tree.root / "db_manual.yaml").exists()
