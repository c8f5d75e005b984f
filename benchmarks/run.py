"""``make bench``: speed and memory benchmarks, each measured side by side in one run.

Usage::

    python -m benchmarks.run [--quick] [--only NAME ...] [--workdir DIR] [--keep]
                             [--seed N] [--no-profile] [--json PATH]

Synthetic data come from
:func:`deep_events_dagster.testing.benchmark_movies.write_large_movie` in a temporary folder
(under ``--workdir``, default ``/tmp``; removed at the end unless ``--keep``).
Each section prints what is compared, both timings, the ratio, the goal and PASS or MISS; the
whole report is also written as JSON to ``bench-results/latest.json``. The exit code is 0 even
when a goal is missed (this is a report, not a test); it is 1 only when a benchmark crashes.
When a speed goal is missed, our side is run once more under cProfile and the top functions
are printed (the ``.prof`` file is kept in ``bench-results/``).

The benchmarks (full sizes; ``--quick`` shrinks them for a ~1 minute smoke run):

``ground_truth``
    A 2048×2048×100 uint16 movie with 200 annotated points. Ours:
    :func:`~deep_events_dagster.core.ground_truth.write_ground_truth` (±4σ windows rendered
    frame by frame, tiled deflate TIFF with all-zero tiles pre-encoded, support sidecar), best
    of 3. Reference (:func:`benchmarks.reference.full_frame_ground_truth`): for each point a
    Gaussian over a meshgrid of the whole frame, cut off at 0.1, accumulated by maximum into the
    whole T×Y×X float32 volume in memory, then written uncompressed with tifffile; 1 run. Both
    outputs are compared pixel by pixel (outside the timings). Goal: ours ≥ 50× faster.

``detection``
    Event detection on that ground truth. Ours:
    :func:`~deep_events_dagster.core.events.detect_events_in_file` (reads only the tiles the
    sidecar marks as non-zero), best of 3; also reported without the sidecar
    (``use_support=False``). Reference (:func:`benchmarks.reference.original_event_scan`): the
    original's method — every frame read whole, ``scipy.ndimage.maximum_filter(size=256)``,
    maxima where ``frame == filtered`` and ``frame > 0.5``, naive linking. Goal: ≥ 100× faster.

``ingestion``
    :func:`~deep_events_dagster.core.pipeline.ingest_acquisition` of that acquisition (movie check
    and fingerprint, ``db.yaml``, ground truth, detection, positive and negative event folders,
    catalog writes to an embedded montydb), starting each time from an acquisition without
    outputs, best of 3, against ``tifffile.imread`` of the movie, best of 3; the page cache is
    warmed by one untimed read first, and the kernel's dirty pages are flushed (untimed)
    before each run so that one run's writeback does not land in the next. Goal: ingestion
    ≤ 3× one read. Also printed: the same pair with the movie evicted from the page cache
    before each run (``posix_fadvise(DONTNEED)``); the *floor* — the same event folders' bytes
    written with bare ``mkdir``/``open``/``write``/``rename`` calls on as many threads, no
    computation — which is what any implementation must spend on this file system; the
    core's per-step times (``IngestionReport.seconds``) beside the Dagster step durations; and
    Dagster's per-run overhead — the same partition materialised in-process with job ``ingest``
    (``execute_in_process`` on an ephemeral instance), minus the core time.

``memory``
    Peak RSS of a core ingestion run in a subprocess (:mod:`benchmarks.ingest_child`; the child
    reports its own ``VmHWM`` — ``ru_maxrss`` would inherit the parent's peak across ``exec``)
    on a 2048×2048×1000 movie (8.4 GB, BigTIFF, 200 points), beside the same for 100 frames,
    with the anonymous and file-backed parts of the peak sampled. Goal: < 1.5 GB, i.e. memory
    independent of the movie's length. Each movie is deleted as soon as it is measured.

``catalog``
    One acquisition re-ingested (100 events: 10 changed, 10 new, 10 stale) into an embedded
    catalog of 20,000 documents in 200 partitions: ``replace_partition`` + ``find_partition``
    (sqlite selects the partition's rows, only they are decoded) against the same write with
    the existing documents found through montydb queries (which decode every document).
    Goal (ours): ≥ 5× faster — a catalog step that does not grow with the catalog.

``sensor``, ``ui_latency``, ``training``
    See their modules (:mod:`benchmarks.sensor_scan`, :mod:`benchmarks.bench_ui_latency`,
    :mod:`benchmarks.bench_training`).

``learning``
    A model trained on CPU with the original's README settings, scored per event on synthetic
    acquisitions it never saw (goal: F1 ≥ 0.95 within 10 minutes on 2 cores), the recipe's
    choices side by side, and the real legacy events (:mod:`benchmarks.bench_learning`).

``exports``
    Seconds per 2048×2048 frame through torch (float32 eager), TorchScript, ONNX Runtime and the
    Keras ``model.h5``, 2 threads, ratios vs torch side by side (:mod:`benchmarks.bench_exports`).

``predictions``
    Whole-movie prediction of a 2048×2048×100 movie by ``predict_movie`` against 256² tiles
    predicted one by one, frames/s and peak memory beside a shorter movie's (goal: ≥ 3×;
    :mod:`benchmarks.bench_predictions`).

``cluster``
    Eight acquisitions (320×400×24) ingested by ``deep-events ingest`` with 1 and with 2 Celery
    workers on this machine (PostgreSQL storage and RabbitMQ, a fresh database and queues each,
    removed afterwards), and in-process without a cluster beside them: both wall times, their
    ratio, and Dagster's per-step overhead under Celery against in-process (from the runs' and
    steps' event times). No numeric goal: 2 workers should be faster on 2 cores (ratio > 1).
    SKIP when PostgreSQL or RabbitMQ is unreachable (:mod:`benchmarks.bench_cluster`).

``zarr``
    The main acquisition's movie copied into an OME-Zarr image (NGFF 0.4, chunks 1×512×512,
    Blosc-zstd): core ingestion of both, alternately, best of N; ratio OME-Zarr ÷ OME-TIFF, no
    goal (:mod:`benchmarks.bench_zarr`).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, Result, Sizes, Workspace, say

BENCHMARKS = (
    "ground_truth",
    "detection",
    "ingestion",
    "memory",
    "catalog",
    "sensor",
    "ui_latency",
    "training",
    "learning",
    "exports",
    "predictions",
    "cluster",
    "zarr",
)
RESULTS_DIR = REPO_ROOT / "bench-results"
PROFILE_TOP = 15


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run."""

    main: Sizes
    memory_long: Sizes
    memory_short: Sizes
    repeat: int
    dagster_repeat: int
    sensor_folders: int = 10_000
    catalog_documents: int = 20_000


FULL = Plan(
    main=Sizes(frames=100, height=2048, width=2048, points=200),
    memory_long=Sizes(frames=1000, height=2048, width=2048, points=200),
    memory_short=Sizes(frames=100, height=2048, width=2048, points=200),
    repeat=3,
    dagster_repeat=3,
)
QUICK = Plan(
    main=Sizes(frames=40, height=1024, width=1024, points=80),
    memory_long=Sizes(frames=300, height=2048, width=2048, points=200),
    memory_short=Sizes(frames=100, height=2048, width=2048, points=200),
    repeat=2,
    dagster_repeat=2,
    sensor_folders=2_000,
    catalog_documents=2_000,
)


def _runner(name: str, plan: Plan) -> Callable[[Workspace], Result]:
    if name == "ground_truth":
        from benchmarks import bench_ground_truth

        return lambda ws: bench_ground_truth.run(ws, plan.main, repeat=plan.repeat)
    if name == "detection":
        from benchmarks import bench_detection

        return lambda ws: bench_detection.run(ws, plan.main, repeat=plan.repeat)
    if name == "ingestion":
        from benchmarks import bench_ingestion

        return lambda ws: bench_ingestion.run(
            ws, plan.main, repeat=plan.repeat, dagster_repeat=plan.dagster_repeat
        )
    if name == "memory":
        from benchmarks import bench_memory

        return lambda ws: bench_memory.run(ws, plan.memory_long, plan.memory_short)
    if name == "catalog":
        from benchmarks import bench_catalog

        return lambda ws: bench_catalog.run(ws, plan.catalog_documents, repeat=plan.repeat)
    if name == "sensor":
        from benchmarks import sensor_scan

        return lambda ws: sensor_scan.run_result(ws, plan.sensor_folders)
    if name == "ui_latency":
        from benchmarks import bench_ui_latency

        return lambda ws: bench_ui_latency.run(ws)
    if name == "training":
        from benchmarks import bench_training

        return lambda ws: bench_training.result(quick=plan is QUICK)
    if name == "learning":
        from benchmarks import bench_learning

        # the --workdir base, not this run's random folder: event ids hash absolute paths and
        # order the samples, so the learning set must sit in the same folder every run
        return lambda ws: bench_learning.result(ws.root.parent, quick=plan is QUICK)
    if name == "exports":
        from benchmarks import bench_exports

        return lambda ws: bench_exports.result(ws.root, quick=plan is QUICK)
    if name == "predictions":
        from benchmarks import bench_predictions

        return lambda ws: bench_predictions.result(ws.root, quick=plan is QUICK)
    if name == "cluster":
        from benchmarks import bench_cluster

        return lambda ws: bench_cluster.result(ws.root, quick=plan is QUICK, seed=ws.seed)
    if name == "zarr":
        from benchmarks import bench_zarr

        return lambda ws: bench_zarr.run(ws, plan.main, repeat=plan.repeat)
    raise ValueError(name)


def _selected(only: Sequence[str] | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names: list[str] = []
    for item in only:
        for part in item.split(","):
            part = part.strip()
            if part.isdigit() and 1 <= int(part) <= len(BENCHMARKS):
                part = BENCHMARKS[int(part) - 1]
            if part not in BENCHMARKS:
                raise SystemExit(f"unknown benchmark {part!r}; choose from {', '.join(BENCHMARKS)}")
            if part not in names:
                names.append(part)
    return [n for n in BENCHMARKS if n in names]


def _machine() -> dict[str, Any]:
    import numpy
    import psutil
    import scipy
    import tifffile

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "tifffile": tifffile.__version__,
    }


def _section(index: int, result: Result) -> str:
    out = [f"[{index}] {result.name} — {result.title}", f"    compares: {result.compares}"]
    width = max(len(line.label) for line in result.lines)
    for line in result.lines:
        note = f"   ({line.note})" if line.note else ""
        out.append(f"    {line.label:<{width}}  {line.value:>10}{note}")
    out.append(
        f"    {result.ratio_label}: {result.headline}   goal {result.goal}   → {result.status}"
    )
    out.extend(f"    {text}" for text in result.info)
    return "\n".join(out)


def _stats_lines(profiler: cProfile.Profile, sort: str, *restrictions: Any) -> list[str]:
    """pstats rows (header included), paths shortened: package files relative to the
    repository, other files by name only."""
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats(sort).print_stats(*restrictions)
    body = [ln for ln in text.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(body) if ln.lstrip().startswith("ncalls")), len(body))
    package = str(REPO_ROOT / "deep_events_dagster") + os.sep
    rows = []
    for line in body[start:]:
        line = line.replace(package, "deep_events_dagster/")
        line = re.sub(r"(?<!\S)/\S*/([^/\s]+:\d+\()", r"\1", line)
        rows.append(f"      {line}")
    return rows


def _profile(result: Result, results_dir: Path) -> str:
    if result.profile is None:
        return ""
    if result.profile_setup is not None:
        result.profile_setup()
    profiler = cProfile.Profile()
    profiler.runcall(result.profile)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result.name}.prof"
    profiler.dump_stats(str(path))
    lines = [f"    profile of ours, one more run (full stats: {path})"]
    lines.append(f"    top {PROFILE_TOP} by own time:")
    lines += _stats_lines(profiler, "tottime", PROFILE_TOP)
    lines.append(f"    top {PROFILE_TOP} deep_events_dagster functions by cumulative time:")
    lines += _stats_lines(profiler, "cumulative", "deep_events_dagster", PROFILE_TOP)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (~1 minute smoke run)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)}, or 1-7); repeat or comma-separate",
    )
    parser.add_argument("--workdir", type=Path, help="where the temporary folder goes (/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument(
        "--no-profile", action="store_true", help="do not profile ours when a speed goal is missed"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / "latest.json",
        help="JSON report path (bench-results/latest.json)",
    )
    args = parser.parse_args(argv)
    names = _selected(args.only)
    plan = QUICK if args.quick else FULL

    base = args.workdir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="deep-events-bench-", dir=base))
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    load_before = os.getloadavg()
    print(
        f"deep-events-dagster benchmarks ({'quick' if args.quick else 'full'}) — "
        f"{', '.join(names)}\n"
        f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.2f}; workdir {workdir}\n",
        flush=True,
    )
    if args.quick:
        print(
            "quick mode: smaller sizes for a smoke run; the goals are set for the full sizes "
            "(fixed costs weigh more here), so PASS/MISS is indicative only\n",
            flush=True,
        )
    if load_before[0] > (os.cpu_count() or 1):
        print("WARNING: the machine is busy (load > CPUs); timings will be noisy\n", flush=True)

    results: list[Result] = []
    errors: dict[str, str] = {}
    ws = Workspace(workdir, seed=args.seed)
    try:
        for index, name in enumerate(names, 1):
            say(f"benchmark {name} …")
            (args.json.parent / f"{name}.prof").unlink(missing_ok=True)  # no stale profile
            try:
                result = _runner(name, plan)(ws)
            except Exception:
                errors[name] = traceback.format_exc()
                print(f"[{index}] {name} — ERROR\n{errors[name]}", flush=True)
                continue
            results.append(result)
            print(_section(index, result), flush=True)
            if not result.passed and not args.no_profile and result.profile is not None:
                say(f"{name}: goal missed, profiling ours …")
                print(_profile(result, args.json.parent), flush=True)
            print(flush=True)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.perf_counter() - clock
    summary = " | ".join(f"{r.name} {r.headline} ({r.goal}) {r.status}" for r in results)
    missed = [r.name for r in results if not r.passed]
    print(f"summary: {summary}")
    if missed:
        print(f"MISS: {', '.join(missed)}")
    for name in errors:
        print(f"ERROR: {name}")
    print(f"total {elapsed:.0f} s; JSON report: {args.json}")

    report = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(elapsed, 1),
        "mode": "quick" if args.quick else "full",
        "benchmarks": names,
        "seed": args.seed,
        "machine": _machine(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "results": [r.to_json() for r in results],
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
