"""Tests for core.crops: movie windows, event folders, names and ids."""

from __future__ import annotations

import datetime
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.core import crops
from deep_events_dagster.core.crops import (
    MovieReader,
    event_folder_name,
    event_id,
    read_event_folder,
    to_plain,
    write_event_folder,
)
from deep_events_dagster.core.errors import InputError, MovieError
from deep_events_dagster.core.fsutil import TEMP_PREFIX, remove_stale_temporaries

# -- helpers ---------------------------------------------------------------------------------


def _movie(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """uint16 values well above 2048, where float16 can no longer represent every integer."""
    rng = np.random.default_rng(seed)
    return rng.integers(2049, 60000, size=shape, dtype=np.uint16)


def _write(path: Path, movie: np.ndarray, axes: str, **kwargs) -> Path:
    tifffile.imwrite(path, movie, photometric="minisblack", metadata={"axes": axes}, **kwargs)
    return path


def _write_ifds_first(path: Path, movie: np.ndarray) -> Path:
    """A hand-made TIFF whose IFDs all precede one contiguous block of uint16 image data.

    (tifffile puts most IFDs after the data, so cutting its files breaks the IFD chain first;
    this layout lets a test cut only image data.)
    """
    t, h, w = movie.shape
    ntags = 9
    ifd_size = 2 + ntags * 12 + 4
    data_start = 8 + t * ifd_size
    plane = h * w * 2
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for i in range(t):
        nxt = 8 + (i + 1) * ifd_size if i + 1 < t else 0
        tags = [
            (256, 3, w),  # ImageWidth
            (257, 3, h),  # ImageLength
            (258, 3, 16),  # BitsPerSample
            (259, 3, 1),  # Compression: none
            (262, 3, 1),  # Photometric: minisblack
            (273, 4, data_start + i * plane),  # StripOffsets
            (277, 3, 1),  # SamplesPerPixel
            (278, 3, h),  # RowsPerStrip
            (279, 4, plane),  # StripByteCounts
        ]
        out += struct.pack("<H", ntags)
        for code, typ, value in tags:
            packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", code, typ, 1) + packed
        out += struct.pack("<I", nxt)
    out += np.ascontiguousarray(movie, dtype="<u2").tobytes()
    path.write_bytes(bytes(out))
    return path


# -- MovieReader -----------------------------------------------------------------------------

CASES = [
    pytest.param("TYX", (6, 40, 56), {}, True, id="TYX-memmap"),
    pytest.param("TYX", (6, 40, 56), {"compression": "zlib"}, False, id="TYX-zlib"),
    pytest.param("TCYX", (5, 3, 40, 56), {}, True, id="TCYX-memmap"),
    pytest.param("TCYX", (5, 3, 40, 56), {"compression": "zlib"}, False, id="TCYX-zlib"),
    pytest.param("TYX", (4, 40, 56), {"tile": (16, 16)}, False, id="TYX-tiled"),
]


@pytest.mark.parametrize(("axes", "shape", "kwargs", "memmap"), CASES)
@pytest.mark.parametrize("suffix", [".tif", ".ome.tif"])
def test_window_is_bit_exact(tmp_path, axes, shape, kwargs, memmap, suffix):
    movie = _movie(shape)
    path = _write(tmp_path / f"movie{suffix}", movie, axes, **kwargs)
    reference = tifffile.imread(path)
    assert np.array_equal(reference, movie)
    with MovieReader(path) as reader:
        assert reader.axes == axes
        assert reader.shape == shape
        assert reader.dtype == np.uint16
        assert reader.n_frames == shape[0]
        assert (reader.height, reader.width) == shape[-2:]
        assert reader.n_channels == (shape[1] if axes == "TCYX" else 1)
        assert reader.uses_memmap is memmap
        for frames, box in [((1, 4), (3, 5, 30, 20)), ((0, shape[0]), (0, 0, 56, 40))]:
            window = reader.read_window(frames, box)
            (t0, t1), (x0, y0, x1, y1) = frames, box
            expected = reference[t0:t1, ..., y0:y1, x0:x1]
            assert window.dtype == np.uint16
            assert window.shape == expected.shape
            assert np.array_equal(window, expected)
            # float16 would not have survived these values
            assert not np.array_equal(window.astype(np.float16).astype(np.uint16), expected)
            assert window.flags.writeable and window.flags.c_contiguous
        assert np.array_equal(reader.read_frame(2), reference[2])
        for step in (2, 3, 7):
            sampled = reader.read_frame(2, step=step)
            assert sampled.flags.c_contiguous
            assert np.array_equal(sampled, reference[2][..., ::step, ::step])
        frames = list(reader.iter_frames())
        assert len(frames) == shape[0]
        assert np.array_equal(np.stack(frames), reference)


def test_reader_hands_back_mapped_pages(tmp_path, monkeypatch):
    def resident_file_kib() -> int:
        with open("/proc/self/status", encoding="ascii") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("RssFile:"))

    monkeypatch.setattr(crops, "RELEASE_MAPPED_BYTES", 2 * 1024 * 1024)
    movie = np.ones((40, 512, 1024), np.uint16)  # 40 MiB
    path = _write(tmp_path / "big.tif", movie, "TYX")
    with MovieReader(path) as reader:
        assert reader.uses_memmap
        before = resident_file_kib()
        peak = before
        for t in range(reader.n_frames):
            assert reader.read_frame(t).sum() == 512 * 1024
            peak = max(peak, resident_file_kib())
    assert peak - before < 8 * 1024  # without handing pages back it grows by ~40 MiB


def test_window_from_big_endian_file(tmp_path):
    movie = _movie((3, 16, 20))
    path = _write(tmp_path / "be.tif", movie, "TYX", byteorder=">")
    with MovieReader(path) as reader:
        assert reader.uses_memmap
        window = reader.read_window((0, 3), (2, 3, 18, 15))
    assert window.dtype == np.dtype("=u2")
    assert np.array_equal(window, movie[:, 3:15, 2:18])


def test_plain_stack_and_single_plane(tmp_path):
    stack = _movie((4, 12, 10))
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack", metadata=None)
    with MovieReader(tmp_path / "stack.tif") as reader:
        assert reader.axes == "TYX" and reader.shape == (4, 12, 10)
        assert np.array_equal(reader.read_window((1, 3), (0, 0, 10, 12)), stack[1:3])
    plane = _movie((12, 10))
    tifffile.imwrite(tmp_path / "plane.tif", plane, photometric="minisblack")
    with MovieReader(tmp_path / "plane.tif") as reader:
        assert reader.shape == (1, 12, 10)
        assert np.array_equal(reader.read_frame(0), plane)


def test_window_outside_movie_is_rejected(tmp_path):
    path = _write(tmp_path / "m.tif", _movie((3, 10, 12)), "TYX")
    with MovieReader(path) as reader:
        for frames, box in [
            ((0, 4), (0, 0, 5, 5)),
            ((2, 2), (0, 0, 5, 5)),
            ((-1, 2), (0, 0, 5, 5)),
            ((0, 1), (0, 0, 13, 5)),  # x against the width
            ((0, 1), (0, 0, 5, 11)),  # y against the height
            ((0, 1), (5, 0, 5, 5)),
        ]:
            with pytest.raises(ValueError):
                reader.read_window(frames, box)


def test_truncated_contiguous_file_raises(tmp_path):
    movie = _movie((5, 32, 40))
    path = _write_ifds_first(tmp_path / "cut.tif", movie)
    with MovieReader(path) as reader:  # intact: memmap path, bit-exact
        assert reader.uses_memmap
        assert np.array_equal(reader.read_window((0, 5), (0, 0, 40, 32)), movie)
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(MovieError, match=re.escape(str(path))) as info:
        reader = MovieReader(path)
        reader.read_window((4, 5), (0, 0, 40, 32))
    assert "truncated" in str(info.value)
    assert info.value.path == path


@pytest.mark.parametrize("kwargs", [{}, {"compression": "zlib"}], ids=["raw", "zlib"])
@pytest.mark.parametrize("keep", [0.6, -100])
def test_truncated_tifffile_movie_raises(tmp_path, kwargs, keep):
    path = _write(tmp_path / "movie.ome.tif", _movie((5, 32, 40)), "TYX", **kwargs)
    data = path.read_bytes()
    cut = int(len(data) * keep) if keep > 0 else len(data) + keep
    path.write_bytes(data[:cut])
    with pytest.raises(MovieError, match=re.escape(str(path))), MovieReader(path) as reader:
        reader.read_window((0, 5), (0, 0, 40, 32))


def test_truncated_compressed_pages_detected_when_read(tmp_path):
    path = _write(tmp_path / "movie.tif", _movie((5, 32, 40)), "TYX", compression="zlib")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MovieError, match=re.escape(str(path))), MovieReader(path) as reader:
        reader.read_window((0, 5), (0, 0, 40, 32))


def test_unreadable_files_raise_movie_error(tmp_path):
    missing = tmp_path / "missing.ome.tif"
    with pytest.raises(MovieError, match=re.escape(str(missing))):
        MovieReader(missing)
    garbage = tmp_path / "garbage.ome.tif"
    garbage.write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(MovieError, match=re.escape(str(garbage))) as info:
        MovieReader(garbage)
    assert "TIFF" in str(info.value) or "tiff" in str(info.value).lower()


def test_rgb_is_rejected(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((4, 8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(MovieError, match="axes"):
        MovieReader(path)


# -- event folders ---------------------------------------------------------------------------


def _event_payload(value: int = 3000):
    images = np.full((4, 2, 16, 16), value, dtype=np.uint16)
    images[0, 0, 0, 0] = 65535
    gt = np.zeros((4, 16, 16), dtype=np.float64)
    gt[1, 8, 8] = 1.0
    event_db = {
        "_id": "0123456789abcdef01234567",
        "frames": (np.int64(3), np.int64(7)),
        "crop_box": [np.int32(0), 0, 16, 16],
        "original_file": Path("/data/acq/movie.ome.tif"),
        "fps": np.float64(2.5),
        "typically_use": np.bool_(True),
        "date": datetime.date(2023, 1, 5),
        "cell_line": ["cos7", "u2os"],
        "label": "Mitochondrial fission — Δ",
    }
    return images, gt, event_db


def test_write_and_read_event_folder(tmp_path):
    images, gt, event_db = _event_payload()
    target = tmp_path / "event_data_points" / "ev_cos7_zeiss_sim_0123"
    assert write_event_folder(target, images=images, ground_truth=gt, event_db=event_db) == target
    assert sorted(p.name for p in target.iterdir()) == [
        "event_db.yaml",
        "ground_truth.tif",
        "images.tif",
    ]
    with tifffile.TiffFile(target / "images.tif") as tif:
        assert tif.series[0].axes == "TCYX"
        stored = tif.asarray()
    assert stored.dtype == np.uint16 and np.array_equal(stored, images)
    with tifffile.TiffFile(target / "ground_truth.tif") as tif:
        assert tif.series[0].axes == "TYX"
        stored_gt = tif.asarray()
    assert stored_gt.dtype == np.float32 and np.array_equal(stored_gt, gt.astype(np.float32))
    loaded = read_event_folder(target)
    assert list(loaded) == list(event_db)  # key order kept
    assert loaded["frames"] == [3, 7] and loaded["crop_box"] == [0, 0, 16, 16]
    assert loaded["original_file"] == "/data/acq/movie.ome.tif"
    assert loaded["fps"] == 2.5 and loaded["typically_use"] is True
    assert loaded["date"] == "2023-01-05"
    assert loaded["label"] == "Mitochondrial fission — Δ"
    assert "Δ" in (target / "event_db.yaml").read_text(encoding="utf-8")  # allow_unicode


def test_event_folder_replaces_existing(tmp_path):
    target = tmp_path / "ev_a"
    images, gt, event_db = _event_payload(3000)
    write_event_folder(target, images=images, ground_truth=gt, event_db=event_db)
    (target / "stray.txt").write_text("old")
    images2, gt2, _ = _event_payload(4000)
    write_event_folder(target, images=images2[:, 0], ground_truth=gt2, event_db={"_id": "x"})
    assert sorted(p.name for p in target.iterdir()) == [
        "event_db.yaml",
        "ground_truth.tif",
        "images.tif",
    ]
    assert np.array_equal(tifffile.imread(target / "images.tif"), images2[:, 0])
    assert read_event_folder(target) == {"_id": "x"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.parametrize("existing", [False, True])
def test_event_folder_write_failure_leaves_target_unchanged(tmp_path, monkeypatch, existing):
    target = tmp_path / "ev_b"
    images, gt, event_db = _event_payload(3000)
    if existing:
        write_event_folder(target, images=images, ground_truth=gt, event_db=event_db)
        before = {p.name: p.read_bytes() for p in target.iterdir()}

    real_write_file = crops._write_file
    calls = []

    def failing_write_file(path, *parts):
        calls.append(path)
        if len(calls) == 2:  # images.tif is written, ground_truth.tif fails half way
            Path(path).write_bytes(b"partial")
            raise OSError("disk full")
        return real_write_file(path, *parts)

    monkeypatch.setattr(crops, "_write_file", failing_write_file)
    with pytest.raises(OSError, match="disk full"):
        write_event_folder(target, images=images + 1, ground_truth=gt, event_db={"_id": "new"})
    if existing:
        assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    else:
        assert not target.exists()
    remove_stale_temporaries(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert [p.name for p in tmp_path.iterdir()] == (["ev_b"] if existing else [])


CRASHING_WRITER = """
import os, sys
from pathlib import Path
import numpy as np
from deep_events_dagster.core import crops

real_write_file = crops._write_file
calls = []

def write_file(path, *parts):
    calls.append(path)
    if len(calls) == 2:
        Path(path).write_bytes(b"partial")
        os._exit(3)  # a kill: no cleanup code runs
    return real_write_file(path, *parts)

crops._write_file = write_file
crops.write_event_folder(
    Path(sys.argv[1]),
    images=np.full((2, 8, 8), 5000, np.uint16),
    ground_truth=np.zeros((2, 8, 8), np.float32),
    event_db={"_id": "new"},
)
"""


@pytest.mark.parametrize("existing", [False, True])
def test_event_folder_killed_writer_leaves_only_temporaries(tmp_path, existing):
    target = tmp_path / "ev_c"
    if existing:
        images, gt, event_db = _event_payload()
        write_event_folder(target, images=images, ground_truth=gt, event_db=event_db)
        before = {p.name: p.read_bytes() for p in target.iterdir()}
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(target)],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    if existing:
        assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    else:
        assert not target.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(leftovers) == 1 and (leftovers[0] / "images.tif").exists()
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == (["ev_c"] if existing else [])


def test_write_event_folder_validates_shapes(tmp_path):
    images, gt, _ = _event_payload()
    with pytest.raises(ValueError):
        write_event_folder(tmp_path / "e", images=images[0, 0], ground_truth=gt, event_db={})
    with pytest.raises(ValueError):
        write_event_folder(tmp_path / "e", images=images, ground_truth=gt[:2], event_db={})
    with pytest.raises(ValueError):
        write_event_folder(tmp_path / "e", images=images, ground_truth=gt[..., :8], event_db={})
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    ("shape", "dtype", "axes"),
    [
        ((11, 256, 256), "<u2", "TYX"),
        ((1, 64, 48), "<u2", "TYX"),
        ((3, 2, 40, 30), "<u2", "TCYX"),
        ((5, 33, 17), "|u1", "TYX"),
        ((4, 20, 20), "<f4", "TYX"),
        ((4, 20, 20), ">u2", "TYX"),
        ((2, 20, 20), "<i4", "TYX"),
    ],
)
def test_stack_writer_gives_tifffiles_bytes(tmp_path, shape, dtype, axes):
    rng = np.random.default_rng(7)
    array = (rng.random(shape) * 200).astype(np.dtype(dtype))
    ours, theirs = tmp_path / "ours.tif", tmp_path / "theirs.tif"
    crops._write_stack(ours, array, axes)
    native = array.astype(array.dtype.newbyteorder("="))
    tifffile.imwrite(theirs, native, photometric="minisblack", metadata={"axes": axes})
    assert ours.read_bytes() == theirs.read_bytes()
    with tifffile.TiffFile(ours) as tif:
        assert tif.series[0].axes == axes and tif.series[0].dataoffset is not None
        assert np.array_equal(tif.asarray(), array)


def test_stack_writer_falls_back_to_tifffile_for_odd_layouts(tmp_path, monkeypatch):
    crops._stack_layout.cache_clear()
    monkeypatch.setattr(crops, "_stack_layout", lambda *args: None)
    array = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    crops._write_stack(tmp_path / "a.tif", array, "TYX")
    assert np.array_equal(tifffile.imread(tmp_path / "a.tif"), array)


def test_negative_event_folder_has_an_all_zero_ground_truth(tmp_path):
    images, _, event_db = _event_payload()
    write_event_folder(tmp_path / "ev_n", images=images, ground_truth=None, event_db=event_db)
    with tifffile.TiffFile(tmp_path / "ev_n" / "ground_truth.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ZSTD
        gt = tif.asarray()
    assert gt.dtype == np.float32 and gt.shape == (images.shape[0], *images.shape[-2:])
    assert not gt.any()


def test_event_folders_written_from_threads_are_all_right(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    stacks = [rng.integers(0, 65535, (4, 32, 32), dtype=np.uint16) for _ in range(24)]

    def write(index):
        gt = np.zeros((4, 32, 32), np.float32)
        gt[index % 4, index, index] = 1.0
        return write_event_folder(
            tmp_path / f"ev_{index}",
            images=stacks[index],
            ground_truth=gt,
            event_db={"_id": str(index)},
            durable=False,
        )

    with ThreadPoolExecutor(4) as pool:
        folders = list(pool.map(write, range(24)))
    for index, folder in enumerate(folders):
        assert np.array_equal(tifffile.imread(folder / "images.tif"), stacks[index])
        gt = tifffile.imread(folder / "ground_truth.tif")
        assert gt[index % 4, index, index] == 1.0 and gt.sum() == 1.0
        assert read_event_folder(folder) == {"_id": str(index)}


@pytest.mark.parametrize(
    ("text", "problem"),
    [("a: [1, 2\n", "malformed YAML"), ("- 1\n- 2\n", "mapping"), ("", "mapping")],
)
def test_read_event_folder_malformed(tmp_path, text, problem):
    (tmp_path / "event_db.yaml").write_text(text)
    with pytest.raises(InputError, match=problem) as info:
        read_event_folder(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "event_db.yaml"))


def test_read_event_folder_missing(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_event_folder(tmp_path / "nothing")


# -- names and ids ---------------------------------------------------------------------------


def test_event_folder_name_fields():
    eid = "0123456789abcdef01234567"
    assert (
        event_folder_name({"cell_line": "COS7", "microscope": "zeiss", "contrast": "sim"}, eid)
        == f"ev_cos7_zeiss_sim_{eid}"
    )
    assert (
        event_folder_name({"cell_line": ["cos7", "U2OS"], "microscope": ["isim"]}, eid)
        == f"ev_cos7-u2os_isim_unknown_{eid}"
    )
    assert event_folder_name({}, eid) == f"ev_unknown_unknown_unknown_{eid}"
    assert event_folder_name({"cell_line": None, "microscope": [], "contrast": ""}, eid) == (
        f"ev_unknown_unknown_unknown_{eid}"
    )
    name = event_folder_name(
        {"cell_line": "HeLa wt/ko", "microscope": "Nikon:Ti2 (60x)", "contrast": "..Ph é"},
        eid,
    )
    assert name == f"ev_hela-wt-ko_nikon-ti2-60x_..ph_{eid}"
    assert re.fullmatch(r"[a-z0-9._-]+", name)


def test_event_id_deterministic_and_distinct():
    base = event_id("cos7/acq1", "points", (3, 13), (10, 20, 266, 276))
    assert re.fullmatch(r"[0-9a-f]{24}", base)
    assert base == event_id("cos7/acq1", "points", (3, 13), (10, 20, 266, 276))
    assert base == event_id(
        "cos7/acq1", "points", (np.int64(3), np.int64(13)), tuple(np.array([10, 20, 266, 276]))
    )
    assert base == event_id("cos7/acq1", "points", (3, 13), (10, 20, 266, 276), "automatic")
    others = {
        event_id("cos7/acq2", "points", (3, 13), (10, 20, 266, 276)),
        event_id("cos7/acq1", "spots", (3, 13), (10, 20, 266, 276)),
        event_id("cos7/acq1", "points", (3, 14), (10, 20, 266, 276)),
        event_id("cos7/acq1", "points", (4, 13), (10, 20, 266, 276)),
        event_id("cos7/acq1", "points", (3, 13), (11, 20, 267, 276)),
        event_id("cos7/acq1", "points", (3, 13), (10, 21, 266, 277)),
        event_id("cos7/acq1", "points", (3, 13), (10, 20, 266, 276), "manual"),
    }
    assert base not in others and len(others) == 7
    bson = pytest.importorskip("bson")
    assert str(bson.ObjectId(base)) == base


def test_to_plain_converts_numpy_and_paths():
    value = {
        1: np.uint16(5),
        "a": (np.float32(0.5), [np.int64(2), Path("x/y")]),
        "arr": np.arange(3),
        "flag": np.bool_(False),
        "when": datetime.date(2024, 2, 29),
        "stamp": datetime.datetime(2024, 2, 29, 12, 0),
    }
    plain = to_plain(value)
    assert plain == {
        "1": 5,
        "a": [0.5, [2, "x/y"]],
        "arr": [0, 1, 2],
        "flag": False,
        "when": "2024-02-29",
        "stamp": datetime.datetime(2024, 2, 29, 12, 0),
    }
    assert type(plain["1"]) is int and type(plain["a"][0]) is float
    assert type(plain["flag"]) is bool
    yaml.safe_dump(plain)  # no numpy or Path left


def test_truncation_detected_when_tifffile_logger_is_silenced(tmp_path):
    import logging

    path = _write(tmp_path / "movie.ome.tif", _movie((5, 32, 40)), "TYX")
    path.write_bytes(path.read_bytes()[:-100])
    tiff_logger = logging.getLogger("tifffile")
    saved = tiff_logger.level
    tiff_logger.setLevel(logging.CRITICAL)
    try:
        with pytest.raises(MovieError, match="truncated"):
            MovieReader(path)
        assert tiff_logger.level == logging.CRITICAL
    finally:
        tiff_logger.setLevel(saved)
