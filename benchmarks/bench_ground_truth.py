"""Benchmark 1: Gaussian ground truth — ours vs naive full-frame rendering."""

from __future__ import annotations

import gc

import numpy as np
import tifffile

from benchmarks.common import (
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
from benchmarks.reference import full_frame_ground_truth
from deep_events_dagster.core.ground_truth import write_ground_truth

GOAL_SPEEDUP = 50.0


def run(ws: Workspace, sizes: Sizes, *, repeat: int = 3) -> Result:
    acquisition = ws.acquisition(sizes)
    points = acquisition.points
    ours_path = ws.scratch / "bench_gt_ours.tif"
    reference_path = ws.scratch / "bench_gt_reference.tif"

    def ours():
        return write_ground_truth(
            ours_path, points, n_frames=sizes.frames, height=sizes.height, width=sizes.width
        )

    say(f"ground truth: ours, best of {repeat} …")
    ours_s, ours_times, summary = best_of(repeat, ours)
    say("ground truth: reference (full-frame numpy, a meshgrid per point) …")
    reference_s, volume = timed(
        lambda: full_frame_ground_truth(
            reference_path,
            points,
            n_frames=sizes.frames,
            height=sizes.height,
            width=sizes.width,
        )
    )

    # Same output? (outside the timed regions)
    ours_volume = tifffile.imread(ours_path)
    max_diff = float(np.max(np.abs(ours_volume - volume)))
    nonzero_ours = int(np.count_nonzero(ours_volume))
    nonzero_reference = int(np.count_nonzero(volume))
    differ = int(np.count_nonzero(np.abs(ours_volume - volume) > 1e-5))
    del ours_volume, volume
    gc.collect()
    ours_mb = ours_path.stat().st_size / 1e6
    reference_mb = reference_path.stat().st_size / 1e6
    reference_path.unlink()
    say("ground truth: reference variant with the meshgrid built once …")
    variant_s, _ = timed(
        lambda: full_frame_ground_truth(
            reference_path,
            points,
            n_frames=sizes.frames,
            height=sizes.height,
            width=sizes.width,
            meshgrid_per_point=False,
        )
    )
    reference_path.unlink()
    gc.collect()

    speedup = reference_s / ours_s
    volume_gib = sizes.frames * sizes.height * sizes.width * 4 / 1024**3
    return Result(
        name="ground_truth",
        title=f"Gaussian ground truth, {sizes.describe()}",
        compares=(
            "ours = core.ground_truth.write_ground_truth (±4σ windows frame by frame, tiled "
            "deflate TIFF + support sidecar) vs reference = per point, as the original's "
            "poi/get_gaussian, a meshgrid of the whole frame and a full-frame Gaussian on it "
            f"(float32), accumulated by maximum into a {volume_gib:.2f} GiB T×Y×X float32 "
            "volume in memory, then an uncompressed tifffile write"
        ),
        lines=[
            Line("ours", fmt_seconds(ours_s), fmt_runs(ours_times)),
            Line(
                "reference",
                fmt_seconds(reference_s),
                "1 run; a meshgrid per point, as the original",
            ),
            Line(
                "reference, one meshgrid",
                fmt_seconds(variant_s),
                f"1 run; for information: ours is {variant_s / ours_s:.1f}× faster than this "
                "variant",
            ),
        ],
        ratio_label="speed-up (reference ÷ ours)",
        ratio=speedup,
        target=GOAL_SPEEDUP,
        op=">=",
        info=[
            f"files: ours {ours_mb:.1f} MB (+ sidecar), reference {reference_mb:.0f} MB",
            f"same heatmap: max |ours − reference| = {max_diff:.2g}; non-zero pixels "
            f"{nonzero_ours} vs {nonzero_reference}; {differ} pixel(s) differ by > 1e-5 "
            "(float32 rounding at the 0.1 cutoff)",
            f"{summary.n_points} points drawn, {summary.frames_with_signal} frames with signal",
        ],
        data={
            "ours_s": ours_s,
            "ours_runs_s": ours_times,
            "reference_s": reference_s,
            "speedup": speedup,
            "reference_one_meshgrid_s": variant_s,
            "speedup_vs_one_meshgrid": variant_s / ours_s,
            "ours_file_mb": ours_mb,
            "reference_file_mb": reference_mb,
            "max_abs_diff": max_diff,
            "pixels_differing": differ,
            "sizes": sizes.__dict__,
        },
        profile=ours,
    )
