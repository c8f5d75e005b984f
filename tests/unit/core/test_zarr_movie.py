"""OME-Zarr movies (NGFF 0.4 / zarr v2 and NGFF 0.5 / zarr v3) through the platform's entry
points: metadata, windows, fingerprints, completeness, discovery and a whole ingestion
against the same movie as OME-TIFF."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.core.acquisition_ref import AcquisitionRef
from deep_events_dagster.core.acquisitions import iter_acquisitions, movie_in_folder
from deep_events_dagster.core.errors import MovieError
from deep_events_dagster.core.fingerprint import fingerprint_movie
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import load_vocabulary
from deep_events_dagster.core.movie_reader import MovieReader
from deep_events_dagster.core.ome import read_movie_info
from deep_events_dagster.core.pipeline import ingest_acquisition
from deep_events_dagster.core.watch import (
    REGISTERED,
    WatchState,
    check_complete,
    evaluate_tick,
    scan_roots,
)
from deep_events_dagster.core.zarr_metadata import read_ome_zarr
from deep_events_dagster.core.zarr_reader import ZarrMovieReader
from deep_events_dagster.core.zarr_store import missing_chunks, tree_signature
from deep_events_dagster.testing.ome_zarr import write_ome_zarr
from deep_events_dagster.testing.trees import generate_tree

VERSIONS = ("0.4", "0.5")


def _movie(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """uint16 values above 2048 (where float16 would lose precision)."""
    return np.random.default_rng(seed).integers(2049, 60000, size=shape, dtype=np.uint16)


def _write(path: Path, movie: np.ndarray, version: str, **kwargs) -> Path:
    kwargs.setdefault("axes", "TCYX" if movie.ndim == 4 else "TYX")
    kwargs.setdefault("physical_size_um", 0.065)
    kwargs.setdefault("frame_interval_s", 2.5)
    return write_ome_zarr(path, movie, version=version, **kwargs)


def _chunk_file(store: Path, version: str, *index: int) -> Path:
    parts = [str(i) for i in index]
    return store / "0" / ("/".join(parts) if version == "0.4" else "c/" + "/".join(parts))


# -- metadata -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_metadata_single_channel(tmp_path, version):
    movie = _movie((6, 40, 52))
    path = _write(
        tmp_path / "m.ome.zarr",
        movie,
        version,
        physical_size_um=0.108,
        frame_interval_s=0.25,
        channel_names=["mito"],
        time_unit="ms",
        space_unit="nm",
        chunks=(2, 16, 32),
    )
    if version == "0.4":
        attrs = json.loads((path / ".zattrs").read_text())
        assert attrs["multiscales"][0]["version"] == "0.4"
    else:
        meta = json.loads((path / "zarr.json").read_text())
        assert meta["attributes"]["ome"]["version"] == "0.5"
    info = read_movie_info(path)
    assert info.path == path
    assert (info.axes, info.shape, info.dtype) == ("TYX", (6, 40, 52), "uint16")
    assert (info.n_frames, info.n_channels, info.height, info.width) == (6, 1, 40, 52)
    # written in nm and ms: read back in µm and s
    assert info.physical_size_x == pytest.approx(0.108, rel=1e-12)
    assert info.physical_size_y == pytest.approx(0.108, rel=1e-12)
    assert info.frame_interval_s == pytest.approx(0.25)
    assert info.fps == pytest.approx(4.0)
    ome = info.ome
    assert ome["size_t"] == 6 and ome["size_c"] == 1 and ome["size_z"] == 1
    assert (ome["size_x"], ome["size_y"]) == (52, 40)
    assert ome["physical_size_x_unit"] == "µm" and ome["time_increment_unit"] == "s"
    assert ome["channel"]["name"] == "mito"
    assert ome["ngff_version"] == version
    assert ome["zarr_format"] == (2 if version == "0.4" else 3)
    assert ome["type"] == "uint16" and ome["big_endian"] is False


@pytest.mark.parametrize("version", VERSIONS)
def test_metadata_channels(tmp_path, version):
    movie = _movie((4, 3, 30, 20))
    path = _write(tmp_path / "m.ome.zarr", movie, version, channel_names=["mito", "drp1", "er"])
    info = read_movie_info(path, verify_pages=False)
    assert (info.axes, info.shape) == ("TCYX", (4, 3, 30, 20))
    assert info.n_channels == 3
    assert [c["name"] for c in info.ome["channel"]] == ["mito", "drp1", "er"]
    assert info.physical_size_x == pytest.approx(0.065)
    assert info.frame_interval_s == pytest.approx(2.5)
    image = read_ome_zarr(path)
    assert image.axes == ("t", "c", "y", "x")
    assert image.units == ("second", None, "micrometer", "micrometer")


def _hand_written(tmp_path: Path, attrs: dict, shape, *, name="h.ome.zarr") -> Path:
    """A v2 image whose attributes are written by hand (the array through zarr)."""
    import zarr

    path = tmp_path / name
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = group.create_array(
        "s0", shape=shape, chunks=shape, dtype="uint8", config={"write_empty_chunks": True}
    )
    array[...] = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    (path / ".zattrs").write_text(json.dumps(attrs))
    return path


def test_metadata_axes_without_time_units_and_z(tmp_path):
    attrs = {
        "multiscales": [
            {
                "version": "0.4",
                "axes": [
                    {"name": "c", "type": "channel"},
                    {"name": "z", "type": "space", "unit": "micrometer"},
                    {"name": "y", "type": "space", "unit": "millimeter"},
                    {"name": "x", "type": "space", "unit": "millimeter"},
                ],
                "datasets": [
                    {
                        "path": "s0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [1, 0.5, 0.0001, 0.0001]}
                        ],
                    }
                ],
                "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 2, 2]}],
            }
        ]
    }
    path = _hand_written(tmp_path, attrs, (2, 1, 8, 9))
    info = read_movie_info(path)
    # no t axis: one frame; the multiscale scale multiplies the dataset's; mm → µm
    assert (info.axes, info.shape) == ("TCYX", (1, 2, 8, 9))
    assert info.physical_size_x == pytest.approx(0.2)
    assert info.frame_interval_s is None and "time_increment" not in info.ome
    assert "channel" not in info.ome  # no omero block
    with MovieReader(path) as reader:
        assert reader.shape == (1, 2, 8, 9)
        expected = np.arange(2 * 8 * 9, dtype=np.uint8).reshape(2, 8, 9)
        assert np.array_equal(reader.read_window((0, 1), (0, 0, 9, 8))[0], expected)


def test_bioformats2raw_layout_reads_the_first_series(tmp_path):
    movie = _movie((3, 20, 24))
    outer = tmp_path / "b.ome.zarr"
    _write(outer / "0", movie, "0.4")
    (outer / ".zgroup").write_text('{"zarr_format": 2}')
    (outer / ".zattrs").write_text('{"bioformats2raw.layout": 3}')
    info = read_movie_info(outer)
    assert info.path == outer and info.shape == (3, 20, 24)
    with MovieReader(outer) as reader:
        assert np.array_equal(reader.read_window((0, 3), (0, 0, 24, 20)), movie)


@pytest.mark.parametrize("version", VERSIONS)
def test_malformed_metadata_names_the_file(tmp_path, version):
    path = _write(tmp_path / "m.ome.zarr", _movie((2, 16, 16)), version)
    target = path / (".zattrs" if version == "0.4" else "zarr.json")
    target.write_text('{"multiscales": [')
    for call in (read_movie_info, fingerprint_movie, MovieReader):
        with pytest.raises(MovieError) as raised:
            call(path)
        assert str(raised.value).startswith(f"{target}: ")
        assert "not valid JSON" in str(raised.value)


@pytest.mark.parametrize("version", VERSIONS)
def test_wrong_metadata_is_reported_clearly(tmp_path, version):
    path = _write(tmp_path / "m.ome.zarr", _movie((2, 16, 16)), version)
    if version == "0.4":
        target = path / ".zattrs"
        attrs = json.loads(target.read_text())
        attrs["multiscales"][0]["axes"] = [{"name": n} for n in ("t", "x", "y")]
        target.write_text(json.dumps(attrs))
    else:
        target = path / "zarr.json"
        meta = json.loads(target.read_text())
        del meta["attributes"]["ome"]["multiscales"]
        target.write_text(json.dumps(meta))
    with pytest.raises(MovieError) as raised:
        read_movie_info(path)
    assert str(raised.value).startswith(f"{target}: ")
    assert "axes" in str(raised.value) or "multiscales" in str(raised.value)
    with pytest.raises(MovieError, match="OME-Zarr movie not found"):
        read_movie_info(tmp_path / "absent.ome.zarr")
    (tmp_path / "empty.ome.zarr").mkdir()
    with pytest.raises(MovieError, match="not an OME-Zarr image"):
        read_movie_info(tmp_path / "empty.ome.zarr")


# -- windows ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("cache_bytes", [0, 40_000, 64 * 1024 * 1024])
def test_windows_are_bit_exact(tmp_path, version, cache_bytes):
    rng = np.random.default_rng(3)
    for shape, chunks in (((9, 70, 90), (2, 32, 32)), ((5, 2, 70, 90), (1, 1, 32, 64))):
        movie = _movie(shape, seed=len(shape))
        path = _write(tmp_path / f"m{len(shape)}.ome.zarr", movie, version, chunks=chunks)
        with ZarrMovieReader(path, cache_bytes=cache_bytes) as reader:
            assert reader.shape == shape and reader.dtype == np.uint16
            assert reader.axes == ("TCYX" if len(shape) == 4 else "TYX")
            assert not reader.uses_memmap
            for _ in range(40):
                t0 = int(rng.integers(0, shape[0]))
                t1 = int(rng.integers(t0 + 1, shape[0] + 1))
                y0, x0 = int(rng.integers(0, 69)), int(rng.integers(0, 89))
                y1, x1 = int(rng.integers(y0 + 1, 71)), int(rng.integers(x0 + 1, 91))
                window = reader.read_window((t0, t1), (x0, y0, x1, y1))
                assert window.flags.c_contiguous
                assert np.array_equal(window, movie[t0:t1, ..., y0:y1, x0:x1])
            assert reader.cached_bytes <= cache_bytes
            for t in (0, shape[0] - 1):
                assert np.array_equal(reader.read_frame(t), movie[t])
                assert np.array_equal(reader.read_frame(t, step=4), movie[t, ..., ::4, ::4])
            frames = list(reader.iter_frames())
            assert np.array_equal(np.stack(frames), movie)
            with pytest.raises(ValueError):
                reader.read_window((0, shape[0] + 1), (0, 0, 4, 4))
            with pytest.raises(ValueError):
                reader.read_window((0, 1), (0, 0, 91, 4))


def test_movie_reader_dispatches_on_the_name(tmp_path):
    path = _write(tmp_path / "Movie.OME.ZARR", _movie((2, 16, 16)), "0.5")
    reader = MovieReader(path)
    assert isinstance(reader, ZarrMovieReader)
    assert "ZarrMovieReader" in repr(reader)
    reader.close()
    reader.close()


# -- completeness, signature, fingerprint ----------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_chunk_is_incomplete_until_it_appears(tmp_path, version):
    path = _write(tmp_path / "m.ome.zarr", _movie((4, 40, 40)), version, chunks=(1, 20, 20))
    image = read_ome_zarr(path)
    assert image.array.n_chunks == 16 and missing_chunks(image.array) == (0, [])
    chunk = _chunk_file(path, version, 2, 1, 0)
    data = chunk.read_bytes()
    chunk.unlink()
    missing = "2/1/0" if version == "0.4" else "c/2/1/0"
    assert missing_chunks(image.array) == (1, [missing])
    with pytest.raises(MovieError) as raised:
        read_movie_info(path)
    message = str(raised.value)
    assert message.startswith(str(path / "0"))
    assert "1 of the 16 chunks" in message and missing in message
    read_movie_info(path, verify_pages=False)  # metadata alone are fine
    with MovieReader(path) as reader:  # as in zarr, a missing chunk reads as the fill value
        assert not reader.read_window((2, 3), (0, 20, 20, 40)).any()
    chunk.write_bytes(data)
    assert read_movie_info(path).shape == (4, 40, 40)


def test_corrupt_last_chunk_is_reported(tmp_path):
    path = _write(tmp_path / "m.ome.zarr", _movie((3, 20, 20)), "0.4", chunks=(1, 10, 10))
    _chunk_file(path, "0.4", 2, 1, 1).write_bytes(b"not blosc")
    with pytest.raises(MovieError, match="cannot decode chunk 2/1/1"):
        read_movie_info(path)


@pytest.mark.parametrize("version", VERSIONS)
def test_fingerprint_follows_the_first_and_last_frames(tmp_path, version):
    movie = _movie((5, 32, 32))
    options = dict(chunks=(1, 16, 16), image_name="movie")
    path = _write(tmp_path / "m.ome.zarr", movie, version, **options)
    first = fingerprint_movie(path)
    assert first == fingerprint_movie(path)
    assert first.n_pages == 5 and first.path == path.as_posix()
    assert first.size == sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    # the same pixels and metadata written again elsewhere hash the same
    twin = fingerprint_movie(_write(tmp_path / "twin.ome.zarr", movie, version, **options))
    assert (twin.first_page_hash, twin.last_page_hash) == (
        first.first_page_hash,
        first.last_page_hash,
    )
    changed = movie.copy()
    changed[4, 20, 3] += 1
    _write(path, changed, version, **options)
    second = fingerprint_movie(path)
    assert second.first_page_hash == first.first_page_hash
    assert second.last_page_hash != first.last_page_hash
    assert second.digest != first.digest


def test_tree_signature_sees_a_chunk_anywhere(tmp_path):
    path = _write(tmp_path / "m.ome.zarr", _movie((3, 20, 20)), "0.4", chunks=(1, 10, 10))
    before = tree_signature(path)
    chunk = _chunk_file(path, "0.4", 1, 0, 1)
    size = chunk.stat().st_size
    chunk.unlink()
    assert tree_signature(path)[0] == before[0] - size
    chunk.write_bytes(b"x" * size)
    os.utime(chunk, ns=(before[1] + 10**9, before[1] + 10**9))
    assert tree_signature(path) == (before[0], before[1] + 10**9)


@pytest.mark.parametrize("version", VERSIONS)
def test_sensor_waits_for_every_chunk(tmp_path, version):
    tree = generate_tree(
        tmp_path / "data",
        seed=41,
        n_acquisitions=2,
        height=64,
        width=80,
        n_frames=8,
        events_per_acquisition=1,
        min_separation=10,
        movie_format="ome-zarr",
        zarr_version=version,
    )
    acq = tree.acquisitions[0]
    assert acq.movie_path.name.endswith(".ome.zarr") and acq.movie_path.is_dir()
    chunk = _chunk_file(acq.movie_path, version, 7, 0, 0)
    data = chunk.read_bytes()
    chunk.unlink()

    def tick(state, now):
        observations, problems = scan_roots([tree.root])
        assert problems == []
        # a movie's folder is not an acquisition; the zarr tree is not walked as folders
        assert sorted(o.folder for o in observations) == sorted(a.folder for a in tree.acquisitions)
        return evaluate_tick(state, observations, now=now, quiet_seconds=30, known_partitions=set())

    newest = max(tree_signature(a.movie_path)[1] for a in tree.acquisitions) / 1e9
    first = tick(WatchState(), newest + 31)
    assert [r.key for r in first.runs] == [tree.acquisitions[1].folder.as_posix()]
    assert [k for k, _ in first.unreadable] == [acq.folder.as_posix()]
    assert "chunks" in first.unreadable[0][1] and "missing" in first.unreadable[0][1]
    # the writer adds the chunk: a new signature, a quiet period, then a run
    chunk.write_bytes(data)
    written = tree_signature(acq.movie_path)[1] / 1e9
    waiting = tick(first.state, written + 5)
    assert waiting.runs == () and waiting.waiting == 1
    done = tick(waiting.state, written + 31)
    assert [r.key for r in done.runs] == [acq.folder.as_posix()]
    assert done.state.entries[acq.folder.as_posix()].status == REGISTERED
    observation = next(o for o in scan_roots([tree.root])[0] if o.folder == acq.folder)
    assert observation.movie == acq.movie_path
    assert done.runs[0].fingerprint == check_complete(observation)


# -- discovery -----------------------------------------------------------------------------------


def test_zarr_tree_is_discovered(tmp_path):
    tree = generate_tree(
        tmp_path / "data", seed=2, n_acquisitions=4, awkward_names=True, movie_format="ome-zarr"
    )
    found = list(iter_acquisitions([tree.root]))
    assert sorted(a.folder for a in found) == sorted(a.folder for a in tree.acquisitions)
    for acquisition in found:
        truth = tree.by_folder(acquisition.folder)
        assert acquisition.movie == truth.movie_path
        assert acquisition.movie.name.endswith(".ome.zarr")
        assert movie_in_folder(acquisition.folder) == truth.movie_path
        # a command given the movie itself finds it
        assert movie_in_folder(truth.movie_path) == truth.movie_path
        info = read_movie_info(acquisition.movie)
        assert info.shape == truth.shape
        assert info.frame_interval_s == pytest.approx(truth.time_increment_s)
        assert info.physical_size_x == pytest.approx(truth.physical_size_x)
        names = info.ome["channel"]
        names = [names] if isinstance(names, dict) else names
        assert tuple(c["name"] for c in names) == truth.channel_names


def test_newest_of_tiff_and_zarr_wins(tmp_path):
    movie = _movie((2, 16, 16))
    zarr_path = _write(tmp_path / "b.ome.zarr", movie, "0.4")
    tiff = tmp_path / "a.ome.tif"
    tifffile.imwrite(tiff, movie)
    os.utime(zarr_path, (1_600_000_000, 1_600_000_000))
    assert movie_in_folder(tmp_path) == tiff
    os.utime(tiff, (1_500_000_000, 1_500_000_000))
    assert movie_in_folder(tmp_path) == zarr_path


# -- the same acquisitions as OME-TIFF and as OME-Zarr -----------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_ingestion_matches_the_ome_tiff(tmp_path, version):
    """The same tree (same folders, so the same partition keys and event ids), once with
    OME-TIFF movies and once with OME-Zarr: identical events, crops, thumbnails."""
    vocabulary = load_vocabulary()
    params = dict(
        seed=7,
        n_acquisitions=3,
        height=300,
        width=420,
        n_frames=20,
        channels=(1, 2),
        time_units="mixed",
    )
    reports = {}
    metadata = {}
    for movie_format in ("ome-tiff", "ome-zarr"):
        data = tmp_path / "data"
        shutil.rmtree(data, ignore_errors=True)
        tree = generate_tree(data, movie_format=movie_format, zarr_version=version, **params)
        layout = Layout(output_root=tmp_path / f"out-{movie_format}")
        for acq in tree.acquisitions:
            ref = AcquisitionRef(folder=acq.folder, root=tree.root)
            report = ingest_acquisition(
                ref, kinds=("points",), layout=layout, vocabulary=vocabulary
            )
            reports[movie_format, acq.folder] = report
            metadata[movie_format, acq.folder] = yaml.safe_load(
                report.metadata_path.read_text(encoding="utf-8")
            )
    folders = [folder for fmt, folder in reports if fmt == "ome-zarr"]
    assert len(folders) == 3
    n_events = 0
    for folder in folders:
        tiff, zarr = reports["ome-tiff", folder], reports["ome-zarr", folder]
        events_tiff, events_zarr = tiff.events["points"], zarr.events["points"]

        def summary(step):
            return [(e.event_id, e.frames, e.crop_box, e.positive) for e in step.events]

        assert summary(events_zarr) == summary(events_tiff)
        assert events_zarr.n_positive > 0
        for a, b in zip(events_tiff.events, events_zarr.events):
            images_a = tifffile.imread(a.folder / "images.tif")
            images_b = tifffile.imread(b.folder / "images.tif")
            assert images_a.dtype == images_b.dtype == np.uint16
            assert np.array_equal(images_a, images_b)
            assert (a.folder / "images.tif").read_bytes() == (b.folder / "images.tif").read_bytes()
            gt_a, gt_b = (f / "ground_truth.tif" for f in (a.folder, b.folder))
            assert gt_a.read_bytes() == gt_b.read_bytes()
            n_events += 1
        assert events_zarr.thumbnail_png == events_tiff.thumbnail_png
        # the ground truth files differ only in their random gt_id
        gt_a = tifffile.imread(tiff.ground_truth["points"].path)
        assert np.array_equal(tifffile.imread(zarr.ground_truth["points"].path), gt_a)
        # db.yaml: the same but for the movie's name and the OME block's origin
        meta_tiff, meta_zarr = metadata["ome-tiff", folder], metadata["ome-zarr", folder]
        assert meta_zarr["original_file"].endswith(".ome.zarr")
        assert meta_tiff["original_file"].endswith(".ome.tif")
        assert meta_zarr["fps"] == meta_tiff["fps"]
        assert meta_zarr["frame_interval_s"] == meta_tiff["frame_interval_s"]
        for key in ("size_x", "size_y", "size_t", "size_c", "physical_size_x", "type"):
            assert meta_zarr["ome"][key] == meta_tiff["ome"][key], key
        skip = {"ome", "original_file", "original_path"}
        assert {k: v for k, v in meta_zarr.items() if k not in skip} == {
            k: v for k, v in meta_tiff.items() if k not in skip
        }
    assert n_events > 6
