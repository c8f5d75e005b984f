"""Latency from a completed acquisition to its catalog documents under ``deep-events ui``.

Starts the real webserver + daemon on a fresh home watching a fresh root, writes one synthetic
acquisition the way a microscope does (the movie grows in chunks), and times from its last
byte to its events in the catalog. Goal: the quiet period + 30 s.
"""

from __future__ import annotations

from benchmarks.common import Line, Result


def run(workspace, quiet_seconds: float = 3.0) -> Result:
    """Measure once and return the report section."""
    from tests.e2e.conftest import measure_ui_latency

    data = measure_ui_latency(workspace.scratch / "ui_latency", quiet_seconds=quiet_seconds)
    return Result(
        name="ui_latency",
        title="Completed acquisition → catalog documents under `deep-events ui`",
        compares="seconds from the movie's last byte to its events in the catalog vs the goal",
        lines=[
            Line("UI start-up", f"{data['startup_s']:.1f} s", "webserver + daemon ready"),
            Line("latency", f"{data['latency_s']:.1f} s", f"{data['events']} events"),
        ],
        ratio_label="latency",
        ratio=data["latency_s"],
        target=data["goal_s"],
        op="<=",
        unit=" s",
        digits=1,
        data=data,
    )
