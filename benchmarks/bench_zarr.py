"""Benchmark: core ingestion of the same movie as OME-Zarr against as OME-TIFF.

The benchmark's OME-TIFF acquisition (:meth:`benchmarks.common.Workspace.acquisition`, written
by ``write_large_movie``: uncompressed, one page per frame) is copied frame by frame into an
OME-Zarr image of the same pixels and metadata (NGFF 0.4 by default, chunks of one frame ×
512 × 512 px, Blosc-zstd level 5 with byte shuffle — ome-zarr-py's default compression) in a
twin acquisition folder with the same annotations. Both are ingested with
:func:`~deep_events_dagster.core.pipeline.ingest_acquisition` (movie check + fingerprint,
``db.yaml``, ground truth, detection, event folders, catalog writes), alternately, each run
from an acquisition without outputs, page cache warm; best of N each. Also printed: one whole
read of each movie (``tifffile.imread`` / ``zarr`` ``[:]``), the per-step times, the sizes on
disk, and whether both ingestions gave the same events and byte-identical crops.

No goal is stated: the ratio (OME-Zarr ÷ OME-TIFF) is what decoding compressed chunks costs
against slicing a memory-mapped uncompressed TIFF.

Run alone with ``python -m benchmarks.bench_zarr [--quick]``; in ``make bench`` it is the
``zarr`` section of :mod:`benchmarks.run`.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import tifffile

from benchmarks.common import (
    Acquisition,
    Line,
    Result,
    Sizes,
    Workspace,
    best_of,
    fmt_runs,
    fmt_seconds,
    say,
    timed,
)
from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.core.acquisition_ref import AcquisitionRef
from deep_events_dagster.core.crops import IMAGES_NAME
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import load_vocabulary
from deep_events_dagster.core.movie_reader import MovieReader
from deep_events_dagster.core.ome import read_movie_info
from deep_events_dagster.core.pipeline import IngestionReport, ingest_acquisition
from deep_events_dagster.testing.ome_zarr import write_ome_zarr

KIND = "points"
CHUNK_SIDE = 512
COMPRESSION = "blosc-zstd"
NGFF_VERSION = "0.4"
FULL_SIZES = Sizes(frames=100, height=2048, width=2048, points=200)
QUICK_SIZES = Sizes(frames=40, height=1024, width=1024, points=80)


class _NoGoalResult(Result):
    """A measured comparison without a stated goal (reported, never MISS)."""

    @property
    def passed(self) -> bool:
        return True

    @property
    def status(self) -> str:
        return "no goal"

    @property
    def goal(self) -> str:
        return "none stated"


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _zarr_twin(
    ws: Workspace,
    tiff: Acquisition,
    *,
    chunks: tuple[int, int, int],
    compression: str | None,
    version: str,
) -> Acquisition:
    """The same acquisition with the movie copied into an OME-Zarr image."""
    sizes = tiff.sizes
    root = ws.root / f"data_{sizes.tag}_zarr"
    shutil.rmtree(root, ignore_errors=True)
    folder = root / tiff.folder.relative_to(tiff.root)
    folder.mkdir(parents=True)
    for name in ("points.csv", "db_manual.yaml"):
        shutil.copy2(tiff.folder / name, folder / name)
    info = read_movie_info(tiff.movie, verify_pages=False)
    target = folder / tiff.movie.name.replace(".ome.tif", ".ome.zarr")
    say(f"zarr: copying the movie into an OME-Zarr {version} image, chunks {chunks} …")
    start = time.perf_counter()
    with MovieReader(tiff.movie) as reader:
        write_ome_zarr(
            target,
            reader.read_frame,
            axes=info.axes,
            shape=info.shape,
            dtype=info.dtype,
            physical_size_um=float(info.physical_size_x or 1.0),
            frame_interval_s=float(info.frame_interval_s or 1.0),
            channel_names=["mito"],
            version=version,
            chunks=chunks,
            compression=compression,
        )
    seconds = time.perf_counter() - start
    say(f"  done in {seconds:.1f} s")
    return Acquisition(
        sizes=sizes,
        root=root,
        folder=folder,
        movie=target,
        points=tiff.points,
        n_events=tiff.n_events,
        write_seconds=seconds,
    )


def _ingest(acquisition: Acquisition, home: Path) -> IngestionReport:
    ref = AcquisitionRef(folder=acquisition.folder, root=acquisition.root)
    sink = EventCatalog.open(None, home=home)
    try:
        return ingest_acquisition(
            ref, kinds=(KIND,), layout=Layout(), vocabulary=load_vocabulary(), sink=sink
        )
    finally:
        sink.close()


def _reset(acquisitions: Sequence[Acquisition], home: Path) -> Callable[[], None]:
    def reset() -> None:
        for acquisition in acquisitions:
            acquisition.reset_outputs()
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        gc.collect()
        os.sync()  # earlier runs' writeback must not land in the next run

    return reset


def _read_tiff(path: Path) -> None:
    data = tifffile.imread(path)
    del data


def _read_zarr(path: Path) -> None:
    import zarr

    data = zarr.open_array(str(path / "0"), mode="r")[:]
    del data


def _same_events(a: IngestionReport, b: IngestionReport) -> tuple[bool, int]:
    """Same frames, boxes and signs in the same order, and byte-identical ``images.tif``."""
    ea, eb = a.events[KIND].events, b.events[KIND].events
    same = [(e.frames, e.crop_box, e.positive) for e in ea] == [
        (e.frames, e.crop_box, e.positive) for e in eb
    ]
    identical = 0
    if same:
        for x, y in zip(ea, eb):
            if (x.folder / IMAGES_NAME).read_bytes() == (y.folder / IMAGES_NAME).read_bytes():
                identical += 1
    return same and identical == len(ea), identical


def run(
    ws: Workspace,
    sizes: Sizes,
    *,
    repeat: int = 3,
    chunk_side: int = CHUNK_SIDE,
    compression: str | None = COMPRESSION,
    version: str = NGFF_VERSION,
) -> Result:
    tiff = ws.acquisition(sizes)
    chunks = (1, min(chunk_side, sizes.height), min(chunk_side, sizes.width))
    twin = _zarr_twin(ws, tiff, chunks=chunks, compression=compression, version=version)
    home = ws.scratch / "zarr_home"
    try:
        say("zarr: warming the page cache (one untimed read of each movie) …")
        _read_tiff(tiff.movie)
        _read_zarr(twin.movie)
        say(f"zarr: whole-movie reads, best of {repeat} each …")
        tiff_read_s, tiff_read_runs, _ = best_of(repeat, lambda: _read_tiff(tiff.movie))
        zarr_read_s, zarr_read_runs, _ = best_of(repeat, lambda: _read_zarr(twin.movie))
        say(
            f"zarr: core ingestion of the OME-TIFF and of the OME-Zarr acquisition, "
            f"alternately, best of {repeat} each …"
        )
        reset = _reset((tiff, twin), home)
        runs: dict[str, list[float]] = {"tiff": [], "zarr": []}
        best: dict[str, tuple[float, IngestionReport]] = {}
        last: dict[str, IngestionReport] = {}
        for _ in range(repeat):
            for name, acquisition in (("tiff", tiff), ("zarr", twin)):
                reset()
                # the other one's outputs are gone: the last runs' outputs are compared below
                seconds, report = timed(lambda a=acquisition: _ingest(a, home))
                runs[name].append(seconds)
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, report)
        say("zarr: one more ingestion of each, for comparing their outputs …")
        reset()
        last["tiff"] = _ingest(tiff, home)
        last["zarr"] = _ingest(twin, home)
        identical, n_identical = _same_events(last["tiff"], last["zarr"])
        n_events = len(last["zarr"].events[KIND].events)
    finally:
        tiff.reset_outputs()
        shutil.rmtree(home, ignore_errors=True)
        tiff_bytes, zarr_bytes = _tree_bytes(tiff.movie), _tree_bytes(twin.movie)
        shutil.rmtree(twin.root, ignore_errors=True)

    tiff_s, tiff_report = best["tiff"]
    zarr_s, zarr_report = best["zarr"]
    ratio = zarr_s / tiff_s
    n_chunks = sizes.frames * -(-sizes.height // chunks[1]) * -(-sizes.width // chunks[2])
    breakdown = ["per step (OME-TIFF best run | OME-Zarr best run):"]
    for step, seconds in tiff_report.seconds.items():
        breakdown.append(
            f"  {step:<22} {fmt_seconds(seconds):>10} | "
            f"{fmt_seconds(zarr_report.seconds.get(step, float('nan'))):>10}"
        )
    step = zarr_report.events[KIND]
    return _NoGoalResult(
        name="zarr",
        title=f"Ingestion of an OME-Zarr movie against the same as OME-TIFF, {sizes.describe()}",
        compares=(
            "core.pipeline.ingest_acquisition of the acquisition with its movie as OME-Zarr "
            f"(NGFF {version}, chunks {chunks}, {compression or 'uncompressed'}; windows read "
            "chunk-wise through zarr) vs the same acquisition with the OME-TIFF (uncompressed, "
            "memory-mapped); runs alternate, page cache warm, outputs removed before each"
        ),
        lines=[
            Line("OME-Zarr ingestion", fmt_seconds(zarr_s), fmt_runs(runs["zarr"])),
            Line("OME-TIFF ingestion", fmt_seconds(tiff_s), fmt_runs(runs["tiff"])),
            Line(
                "OME-Zarr whole read",
                fmt_seconds(zarr_read_s),
                f"{fmt_runs(zarr_read_runs)}; zarr [:] of the full-resolution array",
            ),
            Line(
                "OME-TIFF whole read",
                fmt_seconds(tiff_read_s),
                f"{fmt_runs(tiff_read_runs)}; tifffile.imread",
            ),
        ],
        ratio_label="cost (OME-Zarr ÷ OME-TIFF ingestion)",
        ratio=ratio,
        target=0.0,
        op=">=",
        digits=2,
        info=[
            f"{step.n_positive} events + {step.n_negative} negatives; same events and "
            f"byte-identical images.tif: {'yes' if identical else 'NO'} "
            f"({n_identical}/{n_events} crops identical)",
            f"on disk: OME-TIFF {tiff_bytes / 1e6:.0f} MB, OME-Zarr {zarr_bytes / 1e6:.0f} MB in "
            f"{n_chunks} chunks (written in {twin.write_seconds:.1f} s); whole read ratio "
            f"{zarr_read_s / tiff_read_s:.1f}×",
            *breakdown,
        ],
        data={
            "zarr_s": zarr_s,
            "zarr_runs_s": runs["zarr"],
            "tiff_s": tiff_s,
            "tiff_runs_s": runs["tiff"],
            "ratio": ratio,
            "zarr_read_s": zarr_read_s,
            "tiff_read_s": tiff_read_s,
            "zarr_steps_s": dict(zarr_report.seconds),
            "tiff_steps_s": dict(tiff_report.seconds),
            "identical": identical,
            "events": step.n_positive,
            "negatives": step.n_negative,
            "chunks": list(chunks),
            "compression": compression,
            "ngff_version": version,
            "zarr_bytes": zarr_bytes,
            "tiff_bytes": tiff_bytes,
            "zarr_write_s": twin.write_seconds,
            "sizes": sizes.__dict__,
        },
    )


def _print(result: Result) -> None:
    print(f"{result.name} — {result.title}\n    compares: {result.compares}")
    width = max(len(line.label) for line in result.lines)
    for line in result.lines:
        note = f"   ({line.note})" if line.note else ""
        print(f"    {line.label:<{width}}  {line.value:>10}{note}")
    print(f"    {result.ratio_label}: {result.headline}   goal {result.goal}   → {result.status}")
    for text in result.info:
        print(f"    {text}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_zarr", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a 1024×1024×40 movie")
    parser.add_argument("--repeat", type=int, default=None, help="runs of each (3; quick: 2)")
    parser.add_argument("--chunk-side", type=int, default=CHUNK_SIDE, help="chunk y/x (512)")
    parser.add_argument(
        "--compression",
        default=COMPRESSION,
        help=f"blosc-zstd, blosc-lz4, zstd, gzip or none ({COMPRESSION})",
    )
    parser.add_argument("--ngff", default=NGFF_VERSION, choices=("0.4", "0.5"))
    parser.add_argument("--workdir", type=Path, help="where the temporary folder goes (/tmp)")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    repeat = args.repeat or (2 if args.quick else 3)
    workdir = Path(tempfile.mkdtemp(prefix="deep-events-bench-zarr-", dir=args.workdir))
    try:
        result = run(
            Workspace(workdir),
            sizes,
            repeat=repeat,
            chunk_side=args.chunk_side,
            compression=None if args.compression == "none" else args.compression,
            version=args.ngff,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
