from pathlib import Path

import numpy as np
import pytest
import tifffile

from deep_events_dagster.core.errors import MovieError
from deep_events_dagster.core.fingerprint import fingerprint_movie
from deep_events_dagster.core.ome import (
    MovieInfo,
    frame_interval_seconds,
    frames_per_second,
    read_movie_info,
    snake_case,
)
from deep_events_dagster.testing.ome_tiff import write_ome_movie
from deep_events_dagster.testing.trees import generate_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return generate_tree(tmp_path_factory.mktemp("ome") / "data", seed=5, n_acquisitions=3)


def test_snake_case():
    assert snake_case("PhysicalSizeX") == "physical_size_x"
    assert snake_case("SizeT") == "size_t"
    assert snake_case("DeltaTUnit") == "delta_t_unit"
    assert snake_case("ID") == "id"
    assert snake_case("TheT") == "the_t"


def test_movie_info_matches_synthetic_truth(tree):
    for acq in tree.acquisitions:
        info = read_movie_info(acq.movie_path)
        assert info.shape == tuple(acq.shape)
        assert info.axes == acq.axes
        assert info.dtype == "uint16"
        assert info.physical_size_x == pytest.approx(acq.physical_size_x)
        assert info.frame_interval_s == pytest.approx(acq.time_increment_s, rel=1e-9)
        assert info.fps == pytest.approx(1.0 / acq.time_increment_s, rel=1e-9)
        assert info.fps == pytest.approx(acq.expected_metadata["fps"], rel=1e-6)
        for key in ("size_x", "size_y", "size_t", "size_c"):
            assert info.ome[key] == acq.expected_metadata["ome"][key]
        assert "instrument" in info.ome and "channel" in info.ome


def test_frame_interval_from_milliseconds_and_time_increment():
    ome = {"planes": [{"the_t": t, "delta_t": 250.0 * t, "delta_t_unit": "ms"} for t in range(4)]}
    assert frame_interval_seconds(ome) == pytest.approx(0.25)
    assert frame_interval_seconds({"time_increment": 5000, "time_increment_unit": "ms"}) == 5.0
    assert frame_interval_seconds({"time_increment": 2.5}) == 2.5  # OME's default unit: s
    assert frame_interval_seconds({}) is None


def test_fps_is_frames_per_second_from_time_increment_in_ms(tmp_path):
    path = tmp_path / "slow.ome.tif"
    write_ome_movie(
        path,
        np.zeros((3, 16, 16), np.uint16),
        axes="TYX",
        physical_size_x=0.1,
        physical_size_y=0.1,
        time_increment_s=5.0,
        time_unit="ms",
    )
    info = read_movie_info(path)
    assert info.ome["time_increment"] == 5000 and info.ome["time_increment_unit"] == "ms"
    assert info.frame_interval_s == 5.0
    assert info.fps == 0.2


def test_fps_from_delta_t_at_50_frames_per_second(tmp_path):
    # 20 ms steps: the original rounded the interval to 0.0 and divided by zero
    planes = [{"the_t": t, "the_c": 0, "delta_t": 0.02 * t, "delta_t_unit": "s"} for t in range(10)]
    assert frame_interval_seconds({"planes": planes, "time_increment": 1.0}) == 0.02
    path = tmp_path / "fast.ome.tif"
    write_ome_movie(
        path,
        np.zeros((5, 16, 16), np.uint16),
        axes="TYX",
        physical_size_x=0.1,
        physical_size_y=0.1,
        time_increment_s=1.0,  # TimeIncrement disagrees: the planes' DeltaT wins
        delta_t=[0.02 * t for t in range(5)],
    )
    info = read_movie_info(path)
    assert info.frame_interval_s == 0.02
    assert info.fps == 50.0


def test_frames_per_second_is_exact_and_never_zero():
    assert frames_per_second(5.0) == 0.2
    assert frames_per_second(0.02) == 50.0
    assert frames_per_second(1e-4) == 10000.0
    assert frames_per_second(3.0) == pytest.approx(1 / 3, rel=1e-9)
    assert frames_per_second(None) is None
    assert frames_per_second(0.0) is None
    assert frames_per_second(-1.0) is None
    # sub-microsecond intervals are not rounded to zero either
    assert frame_interval_seconds({"time_increment": 50, "time_increment_unit": "ns"}) == 5e-8
    assert frames_per_second(5e-8) == 2e7


def test_unknown_time_unit_gives_no_time_information():
    assert frame_interval_seconds({"time_increment": 5, "time_increment_unit": "fortnight"}) is None
    assert frame_interval_seconds({"time_increment": "n/a"}) is None


def test_movie_info_without_time_information_has_neither():
    info = MovieInfo(
        path=Path("m.ome.tif"),
        axes="TYX",
        shape=(2, 8, 8),
        dtype="uint16",
        n_frames=2,
        n_channels=1,
        height=8,
        width=8,
        physical_size_x=None,
        physical_size_y=None,
        frame_interval_s=None,
    )
    assert info.fps is None and info.frame_interval_s is None


def test_tiff_without_ome_is_named(tmp_path):
    path = tmp_path / "plain.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), photometric="minisblack", ome=False)
    with pytest.raises(MovieError, match="no OME-XML") as err:
        read_movie_info(path)
    assert str(path) in str(err.value)


def test_size_t_disagreeing_with_pages(tmp_path):
    path = tmp_path / "m.ome.tif"
    write_ome_movie(
        path,
        np.zeros((4, 16, 16), np.uint16),
        axes="TYX",
        physical_size_x=0.1,
        physical_size_y=0.1,
        time_increment_s=1.0,
    )
    data = path.read_bytes().replace(b'SizeT="4"', b'SizeT="9"')
    path.write_bytes(data)
    with pytest.raises(MovieError, match="SizeT=9") as err:
        read_movie_info(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_movie(tmp_path, tree, keep):
    movie = tree.acquisitions[0].movie_path
    data = movie.read_bytes()
    broken = tmp_path / "broken.ome.tif"
    broken.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MovieError) as err:
        read_movie_info(broken)
    assert str(broken) in str(err.value)


def test_garbage_file(tmp_path):
    path = tmp_path / "x.ome.tif"
    path.write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(MovieError, match="cannot read TIFF"):
        read_movie_info(path)


def test_fingerprint_follows_content(tmp_path, tree):
    src = tree.acquisitions[0].movie_path
    copy = tmp_path / "copy.ome.tif"
    copy.write_bytes(src.read_bytes())
    first = fingerprint_movie(copy)
    assert fingerprint_movie(copy) == first
    with tifffile.TiffFile(copy) as tif:
        offset = tif.pages[len(tif.pages) - 1].dataoffsets[0]
    data = bytearray(copy.read_bytes())
    data[offset + 10] ^= 0xFF  # flip a pixel of the last plane
    copy.write_bytes(bytes(data))
    changed = fingerprint_movie(copy)
    assert changed.last_page_hash != first.last_page_hash
    assert changed.digest != first.digest
