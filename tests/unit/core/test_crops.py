"""Tests for core.crops: event folders written atomically, bit-exact, and read back."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from deep_events_dagster.core import crops
from deep_events_dagster.core.crops import read_event_folder, write_event_folder
from deep_events_dagster.core.errors import InputError
from deep_events_dagster.core.fsutil import TEMP_PREFIX, remove_stale_temporaries

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
        ((2, 10, 11), "<u2", "TYX"),  # odd width of a two-byte type
        ((3, 9, 7), "<f4", "TYX"),
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


@pytest.mark.parametrize("dtype", ["<u2", "<f4", "|u1"])
def test_stack_writer_takes_the_fast_path_for_common_types(dtype):
    crops._stack_layout.cache_clear()
    assert crops._stack_layout((2, 10, 11), dtype, "TYX") is not None


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
