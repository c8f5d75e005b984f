"""Shared pieces of the benchmarks: sizes, synthetic acquisitions on disk, timing, results."""

from __future__ import annotations

import gc
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deep_events_dagster.core.ground_truth import write_ground_truth
from deep_events_dagster.testing.benchmark_movies import write_large_movie

REPO_ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3

# Folder names the packaged keys.yaml understands, so db.yaml and the event folder names carry
# real metadata (date, cell line, microscope, contrast, stain) as in a lab's tree.
PARENT_FOLDER = "250312_cos7_isim_fluorescence"
ACQUISITION_FOLDER = "mitotracker_1"


def say(message: str) -> None:
    """Progress line on stderr (the report itself goes to stdout)."""
    print(f"  · {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    """A synthetic movie: ``frames × height × width`` uint16 with ``points`` annotated points."""

    frames: int
    height: int
    width: int
    points: int

    @property
    def tag(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"

    @property
    def movie_bytes(self) -> int:
        return self.frames * self.height * self.width * 2

    def describe(self) -> str:
        return (
            f"{self.width}×{self.height}×{self.frames} uint16 "
            f"({self.movie_bytes / GIB:.2f} GiB), {self.points} points"
        )


@dataclass(frozen=True)
class Acquisition:
    """A synthetic acquisition folder: one OME-TIFF movie, ``points.csv`` (pixels) and a
    ``db_manual.yaml`` saying ``scale_csv: false``."""

    sizes: Sizes
    root: Path
    folder: Path
    movie: Path
    points: np.ndarray = field(repr=False)
    n_events: int
    write_seconds: float

    def reset_outputs(self) -> None:
        """Delete everything ingestion wrote (db.yaml, ground truth, manifest, event folders),
        so that the next ingestion is a first one."""
        keep = {self.movie.name, "points.csv", "db_manual.yaml"}
        for entry in self.folder.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for entry in self.root.iterdir():
            if entry.name.startswith("event_data"):
                shutil.rmtree(entry)


class Workspace:
    """The benchmark's temporary folder and the synthetic data in it (made once, shared)."""

    def __init__(self, root: Path, seed: int = 0):
        self.root = root
        self.seed = seed
        self.scratch = root / "scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._acquisitions: dict[Sizes, Acquisition] = {}
        self._ground_truths: dict[Sizes, Path] = {}

    def acquisition(self, sizes: Sizes) -> Acquisition:
        """The acquisition of these sizes, written on first use."""
        if sizes in self._acquisitions:
            return self._acquisitions[sizes]
        root = self.root / f"data_{sizes.tag}"
        folder = root / PARENT_FOLDER / ACQUISITION_FOLDER
        folder.mkdir(parents=True)
        (folder / "db_manual.yaml").write_text("scale_csv: false\n", encoding="utf-8")
        say(f"writing a {sizes.describe()} movie …")
        start = time.perf_counter()
        made = write_large_movie(
            folder / f"250312_mitotracker_{sizes.tag}.ome.tif",
            n_frames=sizes.frames,
            height=sizes.height,
            width=sizes.width,
            n_points=sizes.points,
            seed=self.seed,
            csv_path=folder / "points.csv",
            scale_csv=False,
        )
        seconds = time.perf_counter() - start
        say(f"  done in {seconds:.1f} s ({len(made.events)} events)")
        acquisition = Acquisition(
            sizes=sizes,
            root=root,
            folder=folder,
            movie=made.path,
            points=made.points,
            n_events=len(made.events),
            write_seconds=seconds,
        )
        self._acquisitions[sizes] = acquisition
        return acquisition

    def ground_truth(self, sizes: Sizes) -> Path:
        """A ground-truth TIFF (with its support sidecar) of the acquisition of these sizes."""
        if sizes not in self._ground_truths:
            acquisition = self.acquisition(sizes)
            path = self.scratch / f"ground_truth_{sizes.tag}.tif"
            write_ground_truth(
                path,
                acquisition.points,
                n_frames=sizes.frames,
                height=sizes.height,
                width=sizes.width,
            )
            self._ground_truths[sizes] = path
        return self._ground_truths[sizes]

    def drop(self, sizes: Sizes) -> None:
        """Delete an acquisition's files now (big movies should not outlive their use)."""
        acquisition = self._acquisitions.pop(sizes, None)
        if acquisition is not None:
            shutil.rmtree(acquisition.root, ignore_errors=True)
        gt = self._ground_truths.pop(sizes, None)
        if gt is not None:
            gt.unlink(missing_ok=True)
            gt.with_suffix(".json").unlink(missing_ok=True)


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``function`` once; return ``(seconds, result)`` (garbage collected beforehand)."""
    gc.collect()
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def best_of(
    repeat: int, function: Callable[[], Any], setup: Callable[[], Any] | None = None
) -> tuple[float, list[float], Any]:
    """Run ``function`` ``repeat`` times (``setup`` untimed before each).

    Returns ``(best seconds, every run's seconds, result of the best run)``.
    """
    times: list[float] = []
    best: tuple[float, Any] | None = None
    for _ in range(repeat):
        if setup is not None:
            setup()
        seconds, result = timed(function)
        times.append(seconds)
        if best is None or seconds < best[0]:
            best = (seconds, result)
    assert best is not None
    return best[0], times, best[1]


def fmt_seconds(seconds: float) -> str:
    """``0.097 s``, ``12.4 s``, ``3.2 ms``."""
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds:.3f} s"
    return f"{seconds:.2f} s"


def fmt_runs(times: list[float]) -> str:
    """``best of 3 (0.10, 0.11, 0.10 s)`` or ``1 run``."""
    if len(times) == 1:
        return "1 run"
    return f"best of {len(times)}: " + ", ".join(f"{t:.3g}" for t in times) + " s"


@dataclass
class Line:
    """One measured line of a report section."""

    label: str
    value: str
    note: str = ""


_OPS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    ">=": ("≥", lambda value, target: value >= target),
    "<=": ("≤", lambda value, target: value <= target),
    "<": ("<", lambda value, target: value < target),
}


@dataclass
class Result:
    """One benchmark's outcome.

    The headline ``ratio`` (a speed-up, a cost ratio or an amount) is compared with ``target``
    through ``op`` (``">="``, ``"<="`` or ``"<"``); ``unit`` is printed after both (``"×"``,
    ``" GiB"``). ``profile`` (with ``profile_setup`` run before it, unprofiled) is our side
    once more, for the profiler when the goal is missed.
    """

    name: str
    title: str
    compares: str
    lines: list[Line]
    ratio_label: str
    ratio: float
    target: float
    op: str
    unit: str = "×"
    digits: int = 1
    info: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    profile: Callable[[], Any] | None = field(default=None, repr=False)
    profile_setup: Callable[[], Any] | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return _OPS[self.op][1](self.ratio, self.target)

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "MISS"

    @property
    def goal(self) -> str:
        return f"{_OPS[self.op][0]} {self.target:g}{self.unit}"

    @property
    def headline(self) -> str:
        return f"{self.ratio:.{self.digits}f}{self.unit}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "compares": self.compares,
            "measured": [{"label": x.label, "value": x.value, "note": x.note} for x in self.lines],
            "ratio_label": self.ratio_label,
            "ratio": self.ratio,
            "goal": self.goal,
            "status": self.status,
            "info": self.info,
            "data": self.data,
        }
