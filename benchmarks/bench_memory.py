"""Benchmark 4: peak memory of a core ingestion does not grow with the movie's length."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

from benchmarks.common import REPO_ROOT, Line, Result, Sizes, Workspace, fmt_seconds, say
from deep_events_dagster.core.movie_reader import RELEASE_MAPPED_BYTES

GOAL_PEAK_GB = 1.5
CHILD_TIMEOUT_S = 3600


def _ingest_in_child(ws: Workspace, sizes: Sizes) -> dict[str, Any]:
    acquisition = ws.acquisition(sizes)
    acquisition.reset_outputs()
    home = ws.scratch / f"memory_home_{sizes.tag}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    say(f"memory: ingesting the {sizes.frames}-frame movie in a subprocess …")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.ingest_child",
            str(acquisition.folder),
            str(acquisition.root),
            str(home),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"ingestion subprocess failed ({completed.returncode}):\n{completed.stderr[-4000:]}"
        )
    measured = json.loads(completed.stdout.strip().splitlines()[-1])
    measured["n_events_truth"] = acquisition.n_events
    shutil.rmtree(home, ignore_errors=True)
    ws.drop(sizes)  # big files go as soon as they are measured
    return measured


def _gb(kib: int) -> float:
    return kib * 1024 / 1e9


def run(ws: Workspace, long: Sizes, short: Sizes) -> Result:
    # the short movie first: it may already exist (shared with the other benchmarks), and the
    # disk then never holds both
    short_run = _ingest_in_child(ws, short)
    long_run = _ingest_in_child(ws, long)
    long_peak, short_peak = _gb(long_run["peak_rss_kib"]), _gb(short_run["peak_rss_kib"])
    lines = []
    for sizes, measured in ((long, long_run), (short, short_run)):
        lines.append(
            Line(
                f"{sizes.frames} frames",
                f"{_gb(measured['peak_rss_kib']):.2f} GB",
                f"peak RSS; sampled peaks: anonymous {_gb(measured['peak_anon_kib']):.2f} GB, "
                f"file-backed {_gb(measured['peak_file_kib']):.2f} GB; "
                f"{_gb(measured['baseline_kib']):.2f} GB after imports; ingestion "
                f"{fmt_seconds(measured['seconds'])}, {measured['events']} events + "
                f"{measured['negatives']} negatives",
            )
        )
    growth = long_peak - short_peak
    anon_growth = _gb(long_run["peak_anon_kib"]) - _gb(short_run["peak_anon_kib"])
    file_growth = _gb(long_run["peak_file_kib"]) - _gb(short_run["peak_file_kib"])
    info_lines = [
        f"{long.frames / short.frames:.0f}× the frames ({long.movie_bytes / 1e9:.1f} GB vs "
        f"{short.movie_bytes / 1e9:.1f} GB of movie): peak RSS {growth * 1000:+.0f} MB "
        f"({long_peak / short_peak:.2f}×); anonymous {anon_growth * 1000:+.0f} MB, "
        f"file-backed {file_growth * 1000:+.0f} MB",
    ]
    if file_growth > max(anon_growth, 0.05):
        info_lines.append(
            "the growth is file-backed: pages of the movie mapped into the process (memory "
            "maps read for the crops and the thumbnail) stay resident until each reader has "
            f"touched {RELEASE_MAPPED_BYTES >> 20} MiB and hands them back — page cache the "
            "kernel can reclaim, but counted in RSS; bounded, whatever the movie's length"
        )
    info_lines.append(
        "steps of the long ingestion: "
        + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in long_run["steps_s"].items())
    )
    return Result(
        name="memory",
        title=(
            f"Peak memory of a core ingestion, {long.width}×{long.height} px, "
            f"{long.frames} vs {short.frames} frames"
        ),
        compares=(
            "peak RSS (VmHWM of the child) of core.pipeline.ingest_acquisition run in a "
            f"subprocess on a {long.describe()} movie, beside the same for {short.describe()}; "
            "anonymous (heap) and file-backed (mapped file pages) peaks sampled every 5 ms"
        ),
        lines=lines,
        ratio_label=f"peak RSS, {long.frames} frames",
        ratio=long_peak,
        target=GOAL_PEAK_GB,
        op="<",
        unit=" GB",
        digits=2,
        info=info_lines,
        data={
            "long": {"sizes": long.__dict__, **long_run},
            "short": {"sizes": short.__dict__, **short_run},
            "long_peak_gb": long_peak,
            "short_peak_gb": short_peak,
        },
    )
