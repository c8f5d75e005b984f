"""Harness for the end-to-end tests: a real ``deep-events ui`` process, data written the way a
microscope writes it, and polling of the Dagster instance and the event catalog.

Everything here is plain functions and one class so that the benchmark can reuse it
(:func:`measure_ui_latency`) without pytest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
CHROMIUM = Path(os.environ.get("DEEP_EVENTS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
KIND = "points"
PARTITION_TAG = "dagster/partition"
QUIET_SECONDS = 3.0
SENSOR_INTERVAL_S = 5.0
SENSOR_TICK_LINE = "acquisitions scanned in"
# ``deep-events`` run with SIGINT at its default: a shell's background job starts with SIGINT
# ignored, and ``dagster dev`` then never stops on SIGTERM.
_UI_MAIN = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "sys.argv[0] = 'deep-events'; from deep_events_dagster.cli import main; sys.exit(main())"
)
# Variables of the caller that must not leak into the UI under test.
_PLATFORM_ENV = (
    "DAGSTER_HOME",
    "DEEP_EVENTS_HOME",
    "DEEP_EVENTS_KINDS",
    "DEEP_EVENTS_ROOTS",
    "DEEP_EVENTS_OUTPUT_ROOT",
    "DEEP_EVENTS_CATALOG_URI",
    "DEEP_EVENTS_QUIET_SECONDS",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:g} s: {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------ the UI process


class DeepEventsUI:
    """``deep-events ui`` (Dagster webserver + daemon) as a subprocess in its own process group.

    Each :meth:`start` writes the process's output to ``<log_dir>/<name>-<n>.log``.
    """

    def __init__(
        self,
        home: Path,
        root: Path,
        *,
        log_dir: Path,
        quiet_seconds: float = QUIET_SECONDS,
        port: int | None = None,
        name: str = "ui",
    ):
        self.home = Path(home)
        self.name = name
        self.root = Path(root)
        self.log_dir = Path(log_dir)
        self.quiet_seconds = quiet_seconds
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0
        self._log_file = None
        self._known_pids: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            _UI_MAIN,
            "ui",
            "--home",
            str(self.home),
            "--watch",
            str(self.root),
            "--quiet-seconds",
            f"{self.quiet_seconds:g}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def start(self, timeout: float = 150.0) -> float:
        """Start the UI and wait until ``/server_info`` answers; returns the seconds it took."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the UI is already running")
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if k not in _PLATFORM_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        env["NO_COLOR"] = "1"
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(self.home.parent),
            start_new_session=True,
        )
        deadline = started + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"deep-events ui exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the UI did not answer within {timeout:g} s")
            time.sleep(0.3)
        self._remember_children()
        return time.monotonic() - started

    def _remember_children(self) -> None:
        import psutil

        if self.process is None:
            return
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(self.process.pid)
            self._known_pids.update(c.pid for c in parent.children(recursive=True))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the whole process group (webserver, daemon, code servers, run workers)."""
        import psutil

        if self.process is None:
            return
        self._remember_children()
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.3)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        # anything that left the group (a run worker with its own session) goes too
        for pid in self._known_pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if _same_home(proc, self.home):
                    proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.process = None
        self._known_pids.clear()

    def restart(self) -> float:
        self.stop()
        return self.start()

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def sensor_ticks(self) -> int:
        """Acquisition-sensor evaluations logged since the last start."""
        return self.log_text().count(SENSOR_TICK_LINE)

    # -- the Dagster instance (SQLite, shared with the UI) -----------------------------------

    @contextlib.contextmanager
    def instance(self) -> Iterator[Any]:
        import dagster as dg

        with dg.DagsterInstance.from_config(str(self.dagster_home)) as instance:
            yield instance

    def runs(self, partition: str | None = None) -> list[Any]:
        import dagster as dg

        tags = {PARTITION_TAG: partition} if partition is not None else {}
        with self.instance() as instance:
            return list(instance.get_runs(dg.RunsFilter(tags=tags)))

    def partitions(self) -> list[str]:
        from deep_events_dagster.defs.partitions import ACQUISITIONS

        with self.instance() as instance:
            return list(instance.get_dynamic_partitions(ACQUISITIONS))

    def wait_runs_finished(self, timeout: float = 120.0) -> list[Any]:
        """Wait until every run is finished; returns all runs."""

        def finished():
            runs = self.runs()
            return runs if all(r.is_finished for r in runs) else None

        return wait_until(finished, timeout=timeout, what="every run finished")

    # -- the event catalog ---------------------------------------------------------------

    def catalog_documents(self, key: str, kind: str = KIND) -> list[dict[str, Any]]:
        from deep_events_dagster.catalog import EventCatalog

        if not (self.home / "catalog").exists():
            return []
        with EventCatalog.open(None, home=self.home) as catalog:
            return catalog.find(f"event_data_{kind}", {"acquisition_key": key})

    def positive_events(self, key: str, kind: str = KIND) -> int:
        return sum(1 for d in self.catalog_documents(key, kind) if d.get("label") == kind)

    def wait_positive_events(self, key: str, expected: int, timeout: float = 90.0) -> float:
        """Wait until the catalog holds ``expected`` positive events of ``key``; returns the
        wall-clock time (``time.time()``) when it was seen."""
        try:
            wait_until(
                lambda: self.positive_events(key) == expected,
                timeout=timeout,
                interval=0.5,
                what=f"{expected} positive events of {key} in the catalog",
            )
        except TimeoutError as exc:
            raise AssertionError(
                f"{exc}; catalog has {self.positive_events(key)}; runs: "
                f"{[(r.run_id[:8], r.status.value) for r in self.runs(key)]}\n"
                f"--- UI log tail ---\n{self.log_tail()}"
            ) from exc
        return time.time()


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` other than a zombie exists."""
    import psutil

    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def _same_home(proc: Any, home: Path) -> bool:
    """Only kill a remembered pid if it still looks like one of ours (pids are reused)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        return proc.environ().get("DEEP_EVENTS_HOME") == str(home) or str(home) in " ".join(
            proc.cmdline()
        )
    return False


# ------------------------------------------------------------------------------ the data


@dataclass(frozen=True)
class StagedAcquisition:
    """A synthetic acquisition generated outside the watched root, and its truth."""

    staging_root: Path
    acquisition: Any  # SyntheticAcquisition

    @property
    def relative(self) -> Path:
        return self.acquisition.folder.relative_to(self.staging_root)

    def destination(self, root: Path) -> Path:
        return Path(root) / self.relative

    @property
    def n_events(self) -> int:
        return len(self.acquisition.events_of(KIND))


def stage_acquisition(staging: Path, *, seed: int) -> StagedAcquisition:
    """One small synthetic acquisition (TYX, 24 frames of 320×400, µm CSV) in ``staging``."""
    from deep_events_dagster.testing.trees import generate_tree

    tree = generate_tree(staging, seed=seed, n_acquisitions=1, kinds=(KIND,))
    return StagedAcquisition(tree.root, tree.acquisitions[0])


def write_like_microscope(
    staged: StagedAcquisition,
    root: Path,
    *,
    chunks: int = 8,
    seconds: float = 7.0,
    on_chunk: Callable[[int], None] | None = None,
) -> float:
    """Write ``staged`` into ``root`` as an acquisition PC does; returns when it was complete.

    The tree's ``db_manual.yaml`` files are put in place first (they belong to the lab's
    folders, not to the acquisition). Then the acquisition folder is created and the movie
    grows in ``chunks`` flushed appends spread over ``seconds``; ``on_chunk(i)`` is called after
    each one (while the movie is incomplete, except after the last). The annotation CSVs land
    right after the movie. Returns ``time.time()`` after the last byte.
    """
    acquisition = staged.acquisition
    dest = staged.destination(root)
    for manual in staged.staging_root.rglob("db_manual.yaml"):
        if manual.parent == acquisition.folder:
            continue
        target = Path(root) / manual.relative_to(staged.staging_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manual, target)
    dest.mkdir(parents=True, exist_ok=True)
    data = acquisition.movie_path.read_bytes()
    pause = seconds / max(chunks - 1, 1)
    with open(dest / acquisition.movie_path.name, "wb") as movie:
        for i in range(chunks):
            movie.write(data[i * len(data) // chunks : (i + 1) * len(data) // chunks])
            movie.flush()
            os.fsync(movie.fileno())
            if on_chunk is not None:
                on_chunk(i)
            if i < chunks - 1:
                time.sleep(pause)
    for path in sorted(acquisition.folder.iterdir()):
        if path.suffix.lower() == ".csv" or path.name == "db_manual.yaml":
            shutil.copyfile(path, dest / path.name)
    return time.time()


def far_away_point(acquisition: Any, *, margin: float = 24.0) -> tuple[float, float, float]:
    """A pixel position ``(y, x, distance)`` inside the image, as far as possible from every
    annotated point of the acquisition (``distance`` is that smallest distance)."""
    import numpy as np

    height, width = acquisition.shape[-2], acquisition.shape[-1]
    points = np.array([(y, x) for ev in acquisition.events for _, y, x in ev.track or ev.points])
    best = (0.0, 0.0, -1.0)
    for y in np.linspace(margin, height - 1 - margin, 25):
        for x in np.linspace(margin, width - 1 - margin, 25):
            distance = float(np.min(np.hypot(points[:, 0] - y, points[:, 1] - x)))
            if distance > best[2]:
                best = (float(y), float(x), distance)
    return best


def append_napari_row(csv_path: Path, acquisition: Any, frame: int, y: float, x: float) -> None:
    """Append one point ``(frame, y, x)`` (pixels) to a napari points CSV, in its units."""
    lines = csv_path.read_bytes().decode("utf-8").splitlines()
    header = lines[0].split(",")
    index = len(lines) - 1
    scale = acquisition.physical_size_x if acquisition.scale_csv else 1.0
    values = [float(index), float(frame)]
    if len(header) == 5:  # index, frame, channel, y, x
        values.append(0.0)
    values += [y * scale, x * scale]
    with open(csv_path, "ab") as handle:  # napari writes with csv's \r\n line endings
        handle.write((",".join(repr(v) for v in values) + "\r\n").encode("utf-8"))


# ------------------------------------------------------------------------------ the benchmark


def measure_ui_latency(
    workdir: Path, *, quiet_seconds: float = QUIET_SECONDS, seed: int = 71
) -> dict[str, float]:
    """Start ``deep-events ui`` on a fresh home, write one acquisition like a microscope, and
    measure the seconds from its last byte to its events in the catalog.

    Returns ``{"latency_s", "quiet_seconds", "goal_s", "startup_s", "events"}``.
    """
    workdir = Path(workdir)
    root = workdir / "root"
    root.mkdir(parents=True, exist_ok=True)
    staged = stage_acquisition(workdir / "staging", seed=seed)
    ui = DeepEventsUI(workdir / "home", root, log_dir=workdir / "logs", quiet_seconds=quiet_seconds)
    startup = ui.start()
    try:
        key = staged.destination(root).as_posix()
        complete = write_like_microscope(staged, root)
        seen = ui.wait_positive_events(key, staged.n_events, timeout=300)
    finally:
        ui.stop()
    return {
        "latency_s": round(seen - complete, 2),
        "quiet_seconds": quiet_seconds,
        "goal_s": quiet_seconds + 30.0,
        "startup_s": round(startup, 2),
        "events": staged.n_events,
    }


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def harness():
    """This module: the UI process class and the data helpers, for the tests."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def e2e_artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


if __name__ == "__main__":  # python tests/e2e/conftest.py [WORKDIR]
    import tempfile

    with tempfile.TemporaryDirectory(prefix="deep-events-latency-") as tmp:
        target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp)
        print(json.dumps(measure_ui_latency(target)))
