"""Tests for core.movie_reader: movie windows, bit-exact, memory-mapped or page by page, and
truncated or unreadable movies."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from deep_events_dagster.core import movie_reader
from deep_events_dagster.core.errors import MovieError
from deep_events_dagster.core.movie_reader import MovieReader

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


# -- windows ---------------------------------------------------------------------------------

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

    monkeypatch.setattr(movie_reader, "RELEASE_MAPPED_BYTES", 2 * 1024 * 1024)
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
