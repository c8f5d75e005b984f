"""``deep-events ingest`` as a user runs it: several acquisitions at once, killed, run again.

Every test starts the real command in a subprocess on a synthetic tree and a fresh home in
``tmp_path`` (embedded catalog, SQLite Dagster instance), then checks the files, the catalog
and the Dagster instance against the manifests and the generator's truth.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.defs.partitions import ACQUISITIONS
from deep_events_dagster.testing.trees import SyntheticAcquisition, generate_tree

pytestmark = pytest.mark.slow

PLATFORM_ENV = (
    "DAGSTER_HOME",
    "DEEP_EVENTS_HOME",
    "DEEP_EVENTS_KINDS",
    "DEEP_EVENTS_ROOTS",
    "DEEP_EVENTS_OUTPUT_ROOT",
    "DEEP_EVENTS_CATALOG_URI",
    "DEEP_EVENTS_QUIET_SECONDS",
)
EVENT_FILES = {"images.tif", "ground_truth.tif", "event_db.yaml"}
CROP = 256
STEPS = ("ground_truth", "event_crops", "event_catalog")
COMMAND_TIMEOUT_S = 420


# ---------------------------------------------------------------- running the command


def _command() -> list[str]:
    script = Path(sys.executable).with_name("deep-events")
    return [str(script)] if script.exists() else [sys.executable, "-m", "deep_events_dagster.cli"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in PLATFORM_ENV}


def deep_events(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_command(), *map(str, args)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


def start_deep_events(log: Path, *args: str | Path) -> subprocess.Popen:
    """Start the command in its own process group (so that a kill takes its workers too)."""
    with open(log, "w") as handle:
        return subprocess.Popen(
            [*_command(), *map(str, args)],
            env=_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def wait_for(predicate, proc: subprocess.Popen, log: Path, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(
                f"ingest ended ({proc.returncode}) before {what}:\n{log.read_text()}"
            )
        time.sleep(0.002)
    kill_group(proc)
    raise AssertionError(f"not within {timeout} s: {what}\n{log.read_text()}")


# ---------------------------------------------------------------- looking at the results


def manifest(acq: SyntheticAcquisition, kind: str) -> list[dict]:
    path = acq.folder / f"events_{kind}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data["acquisition_key"] == acq.folder.as_posix() and data["kind"] == kind
    return data["events"]


def documents(home: Path, kind: str, acq: SyntheticAcquisition | None = None) -> list[dict]:
    query = {} if acq is None else {"acquisition_key": acq.folder.as_posix()}
    with EventCatalog.open(None, home=home) as catalog:
        return sorted(catalog.find(f"event_data_{kind}", query), key=lambda d: d["_id"])


def count(home: Path, kind: str, query: dict) -> int:
    with EventCatalog.open(None, home=home) as catalog:
        return catalog.count(f"event_data_{kind}", query)


def temporaries(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.name.startswith(".tmp-")]


def entries(folder: Path) -> set[str]:
    return set(os.listdir(folder)) if folder.is_dir() else set()


def assert_catalog_is_the_manifest(home: Path, acq: SyntheticAcquisition, kind: str) -> list[str]:
    """The acquisition's documents are exactly the manifest's events, once each."""
    listed = manifest(acq, kind)
    ids = [e["_id"] for e in listed]
    docs = documents(home, kind, acq)
    by_id = Counter(d["_id"] for d in docs)
    assert all(n == 1 for n in by_id.values()), by_id.most_common(3)
    assert sorted(by_id) == sorted(ids) and len(set(ids)) == len(ids) > 0
    assert count(home, kind, {"acquisition_key": acq.folder.as_posix()}) == len(ids)
    # the truth: one positive event per synthetic event of that kind
    assert sum(e["positive"] for e in listed) == len(acq.events_of(kind))
    assert count(home, kind, {"acquisition_key": acq.folder.as_posix(), "label": kind}) == len(
        acq.events_of(kind)
    )
    return ids


def assert_event_folders_complete(root: Path, acq: SyntheticAcquisition, kind: str) -> None:
    """Every folder of the manifest holds its three files, loadable and right."""
    movie = tifffile.imread(acq.movie_path)
    for entry in manifest(acq, kind):
        folder = root / f"event_data_{kind}" / entry["folder"]
        assert {p.name for p in folder.iterdir()} == EVENT_FILES, folder
        (f0, f1), (x0, y0, x1, y1) = entry["frames"], entry["crop_box"]
        images = tifffile.imread(folder / "images.tif")
        truth = tifffile.imread(folder / "ground_truth.tif")
        np.testing.assert_array_equal(images, movie[f0:f1, ..., y0:y1, x0:x1])
        assert truth.shape == (f1 - f0, CROP, CROP) and truth.dtype == np.float32
        assert (truth.max() >= 0.5) == entry["positive"]
        event_db = yaml.safe_load((folder / "event_db.yaml").read_text(encoding="utf-8"))
        assert event_db["_id"] == entry["_id"]
        assert (event_db["frames"], event_db["crop_box"]) == (entry["frames"], entry["crop_box"])


def _lock_held_elsewhere(lock: Path) -> bool:
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the probe's lock
    return False


# ---------------------------------------------------------------- a. four at once


def test_four_acquisitions_at_once_with_the_multiprocess_executor(tmp_path):
    """Four runs at once, each step in its own process, into a catalog that does not exist yet.

    Four processes race to create the same collection (montydb creates its SQLite file and
    table lazily, in two steps) and to write their partitions into it.
    """
    kind = "points"
    tree = generate_tree(
        tmp_path / "data", seed=41, n_acquisitions=4, height=512, width=640, n_frames=16,
        noise="gaussian",
    )  # fmt: skip
    home = tmp_path / "home"
    assert not (home / "catalog").exists()
    result = deep_events(
        "ingest", tree.root, "--home", home, "--workers", "4", "--executor", "multiprocess"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    keys = sorted(a.folder.as_posix() for a in tree.acquisitions)
    assert sorted(line for line in result.stdout.splitlines() if line.startswith("ok")) == [
        f"ok      {key}" for key in keys
    ]
    assert "FAILED" not in output
    for trouble in ("no such table", "database is locked", "already exists", "Traceback"):
        assert trouble not in output

    per_acquisition = [assert_catalog_is_the_manifest(home, a, kind) for a in tree.acquisitions]
    everything = documents(home, kind)
    assert sorted(d["_id"] for d in everything) == sorted(i for ids in per_acquisition for i in ids)
    positives = sum(len(a.events_of(kind)) for a in tree.acquisitions)
    negatives = len(everything) - positives
    assert negatives > 0
    assert f"event_data_{kind}: {positives} events, {negatives} negatives" in result.stdout
    folders = {e["folder"] for a in tree.acquisitions for e in manifest(a, kind)}
    assert entries(tree.root / f"event_data_{kind}") == folders
    assert temporaries(tree.root) == []

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs()
        assert len(runs) == 4
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        assert sorted(run.tags["dagster/partition"] for run in runs) == keys
        assert all(
            run.run_config["execution"] == {"config": {"mode": "multiprocess"}} for run in runs
        )
        assert sorted(instance.get_dynamic_partitions(ACQUISITIONS)) == keys
        for asset in ("raw_movie", "acquisition_metadata", *(f"{kind}/{step}" for step in STEPS)):
            key = dg.AssetKey.from_user_string(asset)
            assert sorted(instance.get_materialized_partitions(key)) == keys, asset


# ---------------------------------------------------------------- b. killed, then run again


def test_sigkill_while_writing_event_folders_then_rerun(tmp_path):
    tree = generate_tree(
        tmp_path / "data",
        seed=42,
        n_acquisitions=1,
        height=512,
        width=640,
        n_frames=60,
        events_per_acquisition=80,  # ~3 s of event folders to write
        channels=1,
        min_separation=40.0,
        noise="gaussian",
    )
    (acq,) = tree.acquisitions
    home, log = tmp_path / "home", tmp_path / "killed.log"
    event_root = tree.root / "event_data_points"
    proc = start_deep_events(log, "ingest", tree.root, "--home", home)
    started = wait_for(
        lambda: {n for n in entries(event_root) if n.startswith(("ev_", ".tmp-"))},
        proc,
        log,
        timeout=180,
        what="the first event folder",
    )
    kill_group(proc)
    after_kill = entries(event_root)
    complete_after_kill = {n for n in after_kill if n.startswith("ev_")}
    assert started and after_kill  # something was being written …
    assert not (acq.folder / "events_points.yaml").exists()  # … and not finished
    assert count(home, "points", {"acquisition_key": acq.folder.as_posix()}) == 0

    result = deep_events("ingest", tree.root, "--home", home)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = manifest(acq, "points")
    assert len(complete_after_kill) < len(listed)  # the kill did interrupt the writing
    assert temporaries(tree.root) == []
    assert entries(event_root) == {e["folder"] for e in listed}
    assert complete_after_kill <= entries(event_root)
    assert_event_folders_complete(tree.root, acq, "points")
    assert_catalog_is_the_manifest(home, acq, "points")


def test_sigkill_inside_the_catalog_write_then_rerun(tmp_path):
    """The kill lands in ``replace_partition``'s first write, made to wait on a lock.

    The test holds the collection's SQLite write lock, so the run's first insert waits (up to
    montydb's 5 s busy timeout) while holding the catalog's file lock; the kill comes once that
    file lock has been held for half a second. New parameters make every id change, so the
    write that was killed had both new documents to add and stale ones to remove.
    """
    tree = generate_tree(
        tmp_path / "data",
        seed=43,
        n_acquisitions=1,
        height=512,
        width=640,
        n_frames=24,
        channels=1,
        noise="gaussian",
    )
    (acq,) = tree.acquisitions
    home, log = tmp_path / "home", tmp_path / "killed.log"
    first = deep_events("ingest", tree.root, "--home", home)
    assert first.returncode == 0, first.stdout + first.stderr
    old_ids = assert_catalog_is_the_manifest(home, acq, "points")
    old_documents = documents(home, "points", acq)
    old_folders = entries(tree.root / "event_data_points")

    (home / "deep_events.yaml").write_text("ingestion:\n  add_post_frames: 3\n", encoding="utf-8")
    collection = home / "catalog" / "deep_events" / "event_data_points.collection"
    lock = home / "catalog" / ".catalog.lock"
    blocker = sqlite3.connect(collection, timeout=1, isolation_level=None)
    try:
        assert blocker.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        blocker.execute("BEGIN IMMEDIATE")  # the write lock: readers go on, writers wait
        proc = start_deep_events(log, "ingest", tree.root, "--home", home)
        held_since: list[float] = []

        def held_for_half_a_second() -> bool:
            if not _lock_held_elsewhere(lock):
                held_since.clear()
                return False
            held_since[:] = held_since or [time.monotonic()]
            return time.monotonic() - held_since[0] >= 0.5

        wait_for(held_for_half_a_second, proc, log, timeout=180, what="the catalog write")
        kill_group(proc)
    finally:
        blocker.rollback()
        blocker.close()

    # killed in the catalog step: the new events are on disk, the catalog still the old one
    new_ids = [e["_id"] for e in manifest(acq, "points")]
    assert set(new_ids).isdisjoint(old_ids)
    assert documents(home, "points", acq) == old_documents
    assert not _lock_held_elsewhere(lock)  # the dead process's lock went with it

    result = deep_events("ingest", tree.root, "--home", home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert assert_catalog_is_the_manifest(home, acq, "points") == new_ids
    assert not {d["_id"] for d in documents(home, "points")} & set(old_ids)
    assert entries(tree.root / "event_data_points") == {
        e["folder"] for e in manifest(acq, "points")
    }
    assert entries(tree.root / "event_data_points").isdisjoint(old_folders)
    assert temporaries(tree.root) == []
    assert_event_folders_complete(tree.root, acq, "points")


# ---------------------------------------------------------------- c. idempotent


def test_ingesting_twice_changes_nothing(tmp_path):
    kinds = ("points", "fission")
    tree = generate_tree(
        tmp_path / "data",
        seed=44,
        n_acquisitions=2,
        height=512,
        width=640,
        n_frames=16,
        kinds=kinds,
        noise="gaussian",
    )
    home = tmp_path / "home"
    args = ("ingest", tree.root, "--home", home, "--kind", kinds[0], "--kind", kinds[1])

    def snapshot() -> tuple:
        catalog = {kind: documents(home, kind) for kind in kinds}
        folders = {kind: entries(tree.root / f"event_data_{kind}") for kind in kinds}
        event_dbs = {
            p.relative_to(tree.root).as_posix(): p.read_bytes()
            for p in sorted(tree.root.rglob("event_db.yaml"))
        }
        manifests = {
            p.relative_to(tree.root).as_posix(): p.read_bytes()
            for p in sorted(tree.root.rglob("events_*.yaml"))
        }
        return catalog, folders, event_dbs, manifests

    first = deep_events(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    before = snapshot()
    assert all(before[0][kind] for kind in kinds)
    assert sum(d["label"] == "negative" for kind in kinds for d in before[0][kind]) > 0  # negatives
    for kind in kinds:
        for acq in tree.acquisitions:
            assert_catalog_is_the_manifest(home, acq, kind)

    second = deep_events(*args)
    assert second.returncode == 0, second.stdout + second.stderr
    after = snapshot()
    assert after[0] == before[0]  # full documents, sorted by _id
    assert after[1] == before[1]
    assert after[2] == before[2] and after[3] == before[3]
    assert temporaries(tree.root) == []
    summary = [line for line in first.stdout.splitlines() if line.startswith("  event_data_")]
    assert summary and summary == [
        line for line in second.stdout.splitlines() if line.startswith("  event_data_")
    ]
