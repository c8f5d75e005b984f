"""Watching data roots for complete acquisitions (the logic behind the acquisition sensor).

The sensor is a thin Dagster shell around :func:`evaluate_tick`: scan the roots cheaply
(directory listings and ``stat`` only), keep per-acquisition state between ticks, and decide
which acquisitions are complete (movie unchanged for a quiet period, then readable with every
page its OME header promises), which changed (a new content fingerprint of the movie, its
annotation CSVs and the ``db_manual.yaml`` files that apply) and which disappeared.

An OME-Zarr movie (a ``*.ome.zarr`` folder) is complete when its whole tree has been quiet
(newest mtime of its files and folders, total size unchanged) for the quiet period and every
chunk of the full-resolution array's declared shape is present.

Expensive work (opening TIFFs, hashing) is bounded per tick by a time budget and a maximum
number of run requests; what is left is picked up by the next tick, so huge trees are paged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deep_events_dagster.core.acquisitions import (
    SKIPPED_FOLDER_PREFIXES,
    acquisition_key,
    is_movie_dir,
    is_movie_file,
    is_side_csv,
)
from deep_events_dagster.core.errors import InputError
from deep_events_dagster.core.fingerprint import fingerprint_files, fingerprint_movie
from deep_events_dagster.core.metadata import MANUAL_FILE
from deep_events_dagster.core.ome import read_movie_info
from deep_events_dagster.core.zarr_movie import tree_signature

PENDING = "pending"
REGISTERED = "registered"
UNREADABLE = "unreadable"
REMOVED = "removed"


@dataclass(frozen=True)
class Observation:
    """What a cheap scan sees of one acquisition folder."""

    key: str
    folder: Path
    root: Path
    movie: Path
    movie_signature: tuple[int, int]
    side_files: tuple[Path, ...]
    side_signature: str
    # the folder's other movies (a brightfield beside a fluorescence movie: kinds may crop
    # from them), in the side signature and the fingerprint
    other_movies: tuple[Path, ...] = ()


@dataclass
class EntryState:
    """What the sensor remembers about one acquisition between ticks."""

    movie_signature: tuple[int, int]
    side_signature: str
    first_seen: float
    status: str = PENDING
    fingerprint: str | None = None
    message: str = ""

    def to_list(self) -> list[Any]:
        return [
            list(self.movie_signature),
            self.side_signature,
            round(self.first_seen, 3),
            self.status,
            self.fingerprint,
            self.message,
        ]

    @classmethod
    def from_list(cls, values: Sequence[Any]) -> EntryState:
        signature, side, first_seen, status, fingerprint, message = values
        return cls(
            (int(signature[0]), int(signature[1])), side, first_seen, status, fingerprint, message
        )


@dataclass
class WatchState:
    """Per-acquisition state, serialised into the sensor's cursor."""

    entries: dict[str, EntryState] = field(default_factory=dict)

    def to_cursor(self) -> str:
        """Compact cursor string (zlib-compressed JSON)."""
        blob = json.dumps({k: v.to_list() for k, v in self.entries.items()}, separators=(",", ":"))
        return "z1:" + base64.b64encode(zlib.compress(blob.encode(), 6)).decode("ascii")

    @classmethod
    def from_cursor(cls, cursor: str | None) -> WatchState:
        """Inverse of :meth:`to_cursor`; an empty or unknown cursor gives an empty state."""
        if not cursor or not cursor.startswith("z1:"):
            return cls()
        data = json.loads(zlib.decompress(base64.b64decode(cursor[3:])).decode())
        return cls({k: EntryState.from_list(v) for k, v in data.items()})


@dataclass(frozen=True)
class RunDecision:
    """An acquisition to (re-)ingest, with the fingerprint that goes into the run key."""

    key: str
    fingerprint: str
    new_partition: bool

    @property
    def run_key(self) -> str:
        """Dagster run key: the same content never runs twice."""
        return f"{self.key}@{self.fingerprint}"


@dataclass(frozen=True)
class TickResult:
    """Everything one sensor tick decided."""

    runs: tuple[RunDecision, ...]
    removed: tuple[str, ...]
    unreadable: tuple[tuple[str, str], ...]
    waiting: int
    deferred: int
    scanned: int
    skipped_folders: tuple[tuple[str, str], ...]
    state: WatchState
    seconds: float

    @property
    def new_partitions(self) -> list[str]:
        """Keys to register as new dynamic partitions."""
        return [r.key for r in self.runs if r.new_partition]


def _stat_signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _movie_signature(entry: os.DirEntry) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a movie file; of an OME-Zarr folder, ``(total size, newest
    mtime)`` over its whole tree (a chunk written anywhere in it changes both)."""
    if entry.is_dir(follow_symlinks=False):
        return tree_signature(entry.path)
    stat = entry.stat()
    return stat.st_size, stat.st_mtime_ns


def scan_roots(
    roots: Iterable[str | Path], *, exclude: Iterable[str | Path] = ()
) -> tuple[list[Observation], list[tuple[str, str]]]:
    """List every acquisition folder under the roots with cheap signatures.

    Returns the observations and the folders that could not be read (path, reason).
    Only directory listings and ``stat`` calls are made; no file is opened. An OME-Zarr
    movie (``*.ome.zarr`` folder) is not entered as a folder; when it is an acquisition's
    movie, its signature is the total size and the newest mtime of everything in it.
    """
    excluded = {os.path.abspath(p) for p in exclude}
    observations: list[Observation] = []
    problems: list[tuple[str, str]] = []
    for root in roots:
        root_path = Path(os.path.abspath(root))
        if not root_path.is_dir():
            problems.append((root_path.as_posix(), "root is not a folder"))
            continue
        manual_cache: dict[str, tuple[tuple[Path, tuple[int, int]], ...]] = {}

        def manual_chain(folder: str, root_str: str = str(root_path), cache=manual_cache):
            if folder in cache:
                return cache[folder]
            own = Path(folder) / MANUAL_FILE
            signature = _stat_signature(own)
            parent_chain: tuple = ()
            if folder != root_str and len(folder) > len(root_str):
                parent_chain = manual_chain(os.path.dirname(folder))
            chain = parent_chain + (((own, signature),) if signature else ())
            cache[folder] = chain
            return chain

        stack = [str(root_path)]
        while stack:
            current = stack.pop()
            try:
                with os.scandir(current) as iterator:
                    entries = list(iterator)
            except OSError as exc:
                problems.append((current, f"cannot list folder ({exc.strerror or exc})"))
                continue
            movies: list[tuple[int, str, os.DirEntry]] = []
            csvs: list[os.DirEntry] = []
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if is_movie_dir(entry.name):
                            stat = entry.stat(follow_symlinks=False)
                            movies.append((stat.st_mtime_ns, entry.name, entry))
                            continue
                        if entry.name.startswith(SKIPPED_FOLDER_PREFIXES):
                            continue
                        if os.path.abspath(entry.path) in excluded:
                            continue
                        stack.append(entry.path)
                    elif is_movie_file(entry.name):
                        stat = entry.stat()
                        movies.append((stat.st_mtime_ns, entry.name, entry))
                    elif is_side_csv(entry.name):
                        csvs.append(entry)
                except OSError as exc:
                    problems.append((entry.path, f"cannot stat ({exc.strerror or exc})"))
            if not movies:
                continue
            _, _, movie_entry = max(movies, key=lambda m: (m[0], m[1]))
            try:
                movie_signature = _movie_signature(movie_entry)
            except OSError as exc:
                problems.append((movie_entry.path, f"cannot stat ({exc.strerror or exc})"))
                continue
            side: list[tuple[Path, tuple[int, int]]] = []
            for csv in sorted(csvs, key=lambda e: e.name):
                stat = csv.stat()
                side.append((Path(csv.path), (stat.st_size, stat.st_mtime_ns)))
            side.extend(manual_chain(current))
            others = sorted((m[2] for m in movies if m[2] is not movie_entry), key=lambda e: e.name)
            digest = hashlib.blake2b(digest_size=8)
            for path, signature in side:
                digest.update(f"{path.as_posix()}|{signature[0]}|{signature[1]}\n".encode())
            for other in others:
                try:
                    size, mtime = _movie_signature(other)
                except OSError:
                    size, mtime = -1, -1
                digest.update(f"{other.path}|{size}|{mtime}\n".encode())
            observations.append(
                Observation(
                    key=acquisition_key(current),
                    folder=Path(current),
                    root=root_path,
                    movie=Path(movie_entry.path),
                    movie_signature=movie_signature,
                    side_files=tuple(p for p, _ in side),
                    side_signature=digest.hexdigest(),
                    other_movies=tuple(Path(o.path) for o in others),
                )
            )
    observations.sort(key=lambda o: o.key)
    return observations, problems


def check_complete(observation: Observation) -> str:
    """Content fingerprint of a complete acquisition.

    Raises
    ------
    InputError
        The movie cannot be read, or holds fewer pages than its OME header promises (an
        OME-Zarr movie: a chunk of its declared shape is missing, or its metadata are
        malformed).
    """
    read_movie_info(observation.movie, verify_pages=True)
    movie = fingerprint_movie(observation.movie)
    side = fingerprint_files(list(observation.side_files))
    others = []
    for other in observation.other_movies:
        read_movie_info(other, verify_pages=True)
        others.append(fingerprint_movie(other).digest)
    text = f"{movie.digest}:{side}" + "".join(f":{d}" for d in others)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def evaluate_tick(
    state: WatchState,
    observations: Sequence[Observation],
    *,
    now: float,
    quiet_seconds: float,
    known_partitions: set[str],
    time_budget_s: float = 5.0,
    max_runs: int = 200,
    fingerprint: Callable[[Observation], str] = check_complete,
    skipped_folders: Sequence[tuple[str, str]] = (),
    clock: Callable[[], float] = time.monotonic,
) -> TickResult:
    """Decide what one sensor tick does; returns the new state with the decisions.

    Parameters
    ----------
    state
        The state from the previous tick (from the cursor).
    observations
        This tick's scan (:func:`scan_roots`).
    now
        Wall-clock time of the tick (seconds since the epoch).
    quiet_seconds
        How long a movie's size and mtime must stay unchanged before it is looked at.
    known_partitions
        Acquisition partitions that already exist in the Dagster instance.
    time_budget_s, max_runs
        Bounds on the expensive part of the tick; the rest waits for the next tick.
    fingerprint
        Completeness check and content fingerprint (injectable for tests).
    """
    started = clock()
    entries = {key: replace(entry) for key, entry in state.entries.items()}
    runs: list[RunDecision] = []
    unreadable: list[tuple[str, str]] = []
    waiting = deferred = 0
    seen: set[str] = set()
    for observation in observations:
        seen.add(observation.key)
        entry = entries.get(observation.key)
        # quiet time counts from the movie's last write (its mtime), not from when a tick saw it
        last_write = min(now, observation.movie_signature[1] / 1e9)
        if entry is None or entry.status == REMOVED:
            previous = entry
            entry = EntryState(observation.movie_signature, "", last_write)
            if previous is not None:  # came back: keep its fingerprint so unchanged = no re-run
                entry.fingerprint = previous.fingerprint
            entries[observation.key] = entry
        elif entry.movie_signature != observation.movie_signature:
            entry.movie_signature = observation.movie_signature
            entry.first_seen = last_write
            entry.side_signature = ""  # the movie changed: look again once it is quiet
        if entry.side_signature == observation.side_signature and entry.status != PENDING:
            continue  # nothing changed since it was last looked at (registered or unreadable)
        if now - entry.first_seen < quiet_seconds:
            waiting += 1
            continue
        if len(runs) >= max_runs or clock() - started > time_budget_s:
            deferred += 1
            continue
        try:
            digest = fingerprint(observation)
        except (InputError, OSError) as exc:
            entry.status = UNREADABLE
            entry.side_signature = observation.side_signature
            entry.message = str(exc)
            unreadable.append((observation.key, str(exc)))
            continue
        entry.side_signature = observation.side_signature
        entry.message = ""
        entry.status = REGISTERED
        if digest != entry.fingerprint:
            entry.fingerprint = digest
            runs.append(
                RunDecision(
                    key=observation.key,
                    fingerprint=digest,
                    new_partition=observation.key not in known_partitions,
                )
            )
    removed = []
    for key, entry in entries.items():
        if key not in seen and entry.status != REMOVED:
            if entry.status == REGISTERED:
                removed.append(key)
            entry.status = REMOVED
    # forget removed entries that were never registered, to keep the cursor small
    entries = {
        k: v for k, v in entries.items() if not (v.status == REMOVED and v.fingerprint is None)
    }
    return TickResult(
        runs=tuple(runs),
        removed=tuple(removed),
        unreadable=tuple(unreadable),
        waiting=waiting,
        deferred=deferred,
        scanned=len(observations),
        skipped_folders=tuple(skipped_folders),
        state=WatchState(entries),
        seconds=clock() - started,
    )
