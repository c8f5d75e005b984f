"""Benchmark 2: event detection on the ground truth — ours vs the original's whole-frame scan."""

from __future__ import annotations

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
from benchmarks.reference import original_event_scan
from deep_events_dagster.core.events import detect_events_in_file

GOAL_SPEEDUP = 100.0


def run(ws: Workspace, sizes: Sizes, *, repeat: int = 3) -> Result:
    acquisition = ws.acquisition(sizes)
    gt_path = ws.ground_truth(sizes)

    def ours():
        return detect_events_in_file(gt_path)

    def ours_without_sidecar():
        return detect_events_in_file(gt_path, use_support=False)

    say(f"detection: ours, best of {repeat} …")
    ours_s, ours_times, events = best_of(repeat, ours)
    say("detection: ours without the support sidecar …")
    scan_s, scan_times, events_scan = best_of(max(1, repeat - 1), ours_without_sidecar)
    say("detection: reference (256-wide maximum filter over every frame) …")
    reference_s, reference_events = timed(lambda: original_event_scan(gt_path))

    speedup = reference_s / ours_s
    return Result(
        name="detection",
        title=f"Event detection on the ground truth of {sizes.describe()}",
        compares=(
            "ours = core.events.detect_events_in_file (reads only the tiles the GT sidecar "
            "marks as non-zero, maxima + linking) vs reference = the original's method: every "
            "frame read whole, scipy.ndimage.maximum_filter(size=256), maxima = (frame == "
            "filtered) & (frame > 0.5), naive linking (256 px, ≤ 2 frames)"
        ),
        lines=[
            Line("ours", fmt_seconds(ours_s), fmt_runs(ours_times)),
            Line("reference", fmt_seconds(reference_s), "1 run"),
            Line(
                "ours, no sidecar",
                fmt_seconds(scan_s),
                f"{fmt_runs(scan_times)}; for information: {reference_s / scan_s:.1f}× faster "
                "than the reference",
            ),
        ],
        ratio_label="speed-up (reference ÷ ours)",
        ratio=speedup,
        target=GOAL_SPEEDUP,
        op=">=",
        info=[
            f"events: ours {len(events)} (same without sidecar: "
            f"{'yes' if events_scan == events else 'NO'}), reference {len(reference_events)}, "
            f"synthetic truth {acquisition.n_events} (the reference merges events within "
            "256 px of each other)",
        ],
        data={
            "ours_s": ours_s,
            "ours_runs_s": ours_times,
            "ours_without_sidecar_s": scan_s,
            "ours_without_sidecar_runs_s": scan_times,
            "reference_s": reference_s,
            "speedup": speedup,
            "speedup_without_sidecar": reference_s / scan_s,
            "events_ours": len(events),
            "events_reference": len(reference_events),
            "events_truth": acquisition.n_events,
            "sizes": sizes.__dict__,
        },
        profile=ours,
    )
