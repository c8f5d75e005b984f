"""Child process of the memory benchmark: ingest one acquisition and report its peak RSS.

Usage: ``python -m benchmarks.ingest_child FOLDER ROOT HOME``; prints one JSON object:

``peak_rss_kib``
    ``VmHWM`` of ``/proc/self/status`` at the end: the kernel's high-water mark of this
    process's resident set since it started. (Not ``getrusage(...).ru_maxrss``: on Linux that
    survives ``exec``, so a child spawned by a big parent would report the parent's peak.)
``baseline_kib``
    ``VmHWM`` after the imports, before the ingestion.
``peak_anon_kib``, ``peak_file_kib``
    The largest ``RssAnon`` (heap, arrays) and ``RssFile`` (file pages mapped into the process,
    e.g. a memory-mapped movie) seen by a thread sampling ``/proc/self/status`` every few
    milliseconds — where the peak comes from.
``seconds``, ``steps_s``, ``events``, ``negatives``
    The ingestion's wall time, its per-step times and what it wrote.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

SAMPLE_INTERVAL_S = 0.005


def read_status() -> dict[str, int]:
    """``VmHWM``, ``VmRSS``, ``RssAnon``, ``RssFile`` of this process, in KiB."""
    values: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0])
    return values


class Sampler(threading.Thread):
    """Keeps the largest ``RssAnon`` and ``RssFile`` seen until :meth:`stop`."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks = {"RssAnon": 0, "RssFile": 0}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            status = read_status()
            for key in self.peaks:
                self.peaks[key] = max(self.peaks[key], status.get(key, 0))
            self._done.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> dict[str, int]:
        self._done.set()
        self.join()
        return self.peaks


def main(argv: list[str] | None = None) -> int:
    folder, root, home = (Path(a) for a in (argv if argv is not None else sys.argv[1:]))
    from deep_events_dagster.catalog import EventCatalog
    from deep_events_dagster.core.acquisition_ref import AcquisitionRef
    from deep_events_dagster.core.layout import Layout
    from deep_events_dagster.core.metadata import load_vocabulary
    from deep_events_dagster.core.pipeline import ingest_acquisition

    baseline = read_status()["VmHWM"]
    sampler = Sampler()
    sampler.start()
    start = time.perf_counter()
    sink = EventCatalog.open(None, home=home)
    try:
        report = ingest_acquisition(
            AcquisitionRef(folder=folder, root=root),
            kinds=("points",),
            layout=Layout(),
            vocabulary=load_vocabulary(),
            sink=sink,
        )
    finally:
        sink.close()
        seconds = time.perf_counter() - start
        peaks = sampler.stop()
    events = report.events["points"]
    print(
        json.dumps(
            {
                "peak_rss_kib": read_status()["VmHWM"],
                "baseline_kib": baseline,
                "peak_anon_kib": peaks["RssAnon"],
                "peak_file_kib": peaks["RssFile"],
                "seconds": seconds,
                "steps_s": report.seconds,
                "events": events.n_positive,
                "negatives": events.n_negative,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
