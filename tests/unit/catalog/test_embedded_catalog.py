"""The embedded catalog alone (montydb with sqlite storage, in a folder under tmp_path): opening,
partition lookups through sqlite, crash repair, the file lock, and several processes writing."""

from __future__ import annotations

import multiprocessing
import os
import re
import time
from pathlib import Path

import pytest

from deep_events_dagster.catalog import PartitionWriteResult, collection_name
from deep_events_dagster.catalog import embedded as embedded_module
from deep_events_dagster.catalog.embedded import EmbeddedCatalog, embedded_folder
from deep_events_dagster.core.errors import ConfigurationError
from tests.unit.catalog.catalog_docs import make_doc as _doc


def _open(home: str | Path) -> EmbeddedCatalog:
    """The catalog in ``<home>/catalog``, where the platform keeps it."""
    return EmbeddedCatalog.open_folder(Path(home) / "catalog")


def _snapshot(catalog: EmbeddedCatalog, collection: str) -> list[dict]:
    return sorted(catalog.find(collection), key=lambda doc: str(doc["_id"]))


# -- opening -----------------------------------------------------------------------------------


def test_open_folder_configures_sqlite_storage(tmp_path):
    repo = tmp_path / "cat"
    with EmbeddedCatalog.open_folder(repo) as catalog:
        assert catalog.is_embedded
        assert catalog.database_name == "deep_events"
        assert catalog.describe() == f"embedded montydb montydb://{repo} (database deep_events)"
        catalog.replace_partition("event_data_points", "a", [_doc("a", 1)])
    assert (repo / ".monty.storage").read_text().strip() == "sqlite"
    assert (repo / "deep_events" / "event_data_points.collection").is_file()
    with EmbeddedCatalog.open_folder(repo) as catalog:  # reopened, not reconfigured
        assert catalog.count("event_data_points") == 1


def test_open_refuses_other_storage_and_server_uris(tmp_path):
    repo = tmp_path / "flat"
    repo.mkdir()
    (repo / ".monty.storage").write_text("flatfile\n")
    with pytest.raises(ConfigurationError, match="flatfile"):
        EmbeddedCatalog.open_folder(repo)
    with pytest.raises(ConfigurationError, match="MongoDB server") as info:
        EmbeddedCatalog.open("mongodb://user:hunter2@host/db", home=tmp_path)
    assert "hunter2" not in str(info.value)
    assert embedded_folder("montydb://sub", home=tmp_path) == (tmp_path / "sub").resolve()


def test_closed_catalog_refuses_work_and_releases_the_lock_file(tmp_path):
    catalog = _open(tmp_path)
    catalog.replace_partition("event_data_points", "a", [_doc("a", 1)])
    assert catalog._lock_fd is not None
    catalog.close()
    catalog.close()  # idempotent
    assert catalog._lock_fd is None
    with pytest.raises(RuntimeError, match="closed"):
        catalog.find("event_data_points")


# -- partition lookups -------------------------------------------------------------------------


def test_embedded_partition_lookup_reads_only_the_partition(tmp_path, monkeypatch):
    catalog = _open(tmp_path)
    coll = collection_name("test_fast")
    odd = {"_id": 12345, "acquisition_key": "acq/x", "type": "event"}  # not a string id
    catalog.upsert_documents(coll, [odd])
    catalog.replace_partition(coll, "acq/a", [_doc("acq/a", n) for n in range(3)])
    monty = catalog._collection(coll)

    def no_full_scans(*args, **kwargs):
        raise AssertionError("montydb scanned the collection")

    monkeypatch.setattr(type(monty), "find", no_full_scans)
    assert {d["_id"] for d in catalog.find_partition(coll, "acq/x")} == {odd["_id"]}
    assert len(catalog.find_partition(coll, "acq/a")) == 3
    # a non-string id given to a partition write is found through montydb's key encoding
    result = catalog.replace_partition(coll, "acq/x", [dict(odd, label="again")])
    assert result == PartitionWriteResult(inserted=0, replaced=1, deleted_stale=0, kept_manual=0)
    catalog.close()


# -- crash repair (embedded) ----------------------------------------------------------------


def test_interrupted_replace_is_repaired_by_the_next(tmp_path, monkeypatch):
    coll = "event_data_points"
    with _open(tmp_path) as catalog:
        catalog.replace_partition(coll, "a", [_doc("a", n) for n in range(4)])
        catalog.replace_partition(coll, "b", [_doc("b", n) for n in range(2)])
        run = [dict(_doc("a", n), label="v2") for n in range(2, 6)]

        real_delete = EmbeddedCatalog._delete_ids

        def delete_then_die(self, *args, **kwargs):
            real_delete(self, *args, **kwargs)
            raise KeyboardInterrupt  # killed between montydb's transactions

        monkeypatch.setattr(EmbeddedCatalog, "_delete_ids", delete_then_die)
        with pytest.raises(KeyboardInterrupt):
            catalog.replace_partition(coll, "a", run)
        monkeypatch.undo()
        broken = catalog.find(coll, {"acquisition_key": "a"})
        assert {d["_id"] for d in broken} < {d["_id"] for d in [*run]} | {
            _doc("a", n)["_id"] for n in range(4)
        }

    with _open(tmp_path) as catalog:  # lock released by the "crash"
        catalog.replace_partition(coll, "a", run)
        docs = _snapshot(catalog, coll)
    assert [d["_id"] for d in docs if d["acquisition_key"] == "a"] == sorted(d["_id"] for d in run)
    assert all(d["label"] == "v2" for d in docs if d["acquisition_key"] == "a")
    assert len([d for d in docs if d["acquisition_key"] == "b"]) == 2


def test_table_less_collection_file_is_repaired(tmp_path):
    with _open(tmp_path):
        pass
    broken = tmp_path / "catalog" / "deep_events" / "event_data_points.collection"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"")  # what a kill between montydb's connect and CREATE TABLE leaves
    with _open(tmp_path) as catalog:
        assert catalog.find("event_data_points") == []
        catalog.replace_partition("event_data_points", "a", [_doc("a", 1)])
        assert catalog.count("event_data_points") == 1


def test_lock_is_reentrant_and_shared_for_reads(tmp_path):
    with _open(tmp_path) as catalog:
        with catalog._locked(exclusive=False), catalog._locked(exclusive=True):
            catalog.replace_partition("event_data_points", "a", [_doc("a", 1)])
            assert catalog._lock_exclusive
        assert not catalog._lock_exclusive and catalog._lock_depth == 0
        # readers in two catalogs at once (once a catalog knows the collection exists)
        with _open(tmp_path) as other:
            assert other.count("event_data_points") == 1
            with catalog._locked(exclusive=False):
                assert other.count("event_data_points") == 1
                assert other.find("event_data_points")[0]["acquisition_key"] == "a"


def test_lock_held_elsewhere_times_out(tmp_path, monkeypatch):
    import fcntl

    with _open(tmp_path) as catalog:
        catalog.replace_partition("event_data_points", "a", [_doc("a", 1)])
        fd = os.open(tmp_path / "catalog" / ".catalog.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            monkeypatch.setattr(embedded_module, "LOCK_TIMEOUT_S", 0.2)
            with pytest.raises(TimeoutError, match=re.escape(".catalog.lock")):
                catalog.replace_partition("event_data_points", "a", [])
            with pytest.raises(TimeoutError):
                catalog.count("event_data_points")
            fcntl.flock(fd, fcntl.LOCK_SH)  # readers may share
            assert catalog.count("event_data_points") == 1
        finally:
            os.close(fd)
        assert catalog.replace_partition("event_data_points", "a", []).deleted_stale == 1


def test_database_locked_is_retried(tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.setattr(embedded_module.time, "sleep", lambda s: None)
    with _open(tmp_path) as catalog:
        calls = []

        def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise sqlite3.OperationalError("database is locked")
            return "ok"

        assert catalog._run(flaky, exclusive=True) == "ok"
        assert len(calls) == 3

        def broken():
            raise sqlite3.OperationalError("no such column: x")

        with pytest.raises(sqlite3.OperationalError, match="no such column"):
            catalog._run(broken, exclusive=True)


# -- concurrency -----------------------------------------------------------------------------


def _concurrent_writer(home: str, key: str, barrier, queue) -> None:
    try:
        docs = [_doc(key, n) for n in range(300)]
        barrier.wait(timeout=60)
        with _open(home) as catalog:
            first = catalog.replace_partition("event_data_points", key, docs)
            again = catalog.replace_partition("event_data_points", key, docs[:250])
            count = catalog.count("event_data_points", {"acquisition_key": key})
            final = catalog.replace_partition("event_data_points", key, docs)
        queue.put((key, first, again, count, final, None))
    except BaseException as exc:  # report everything to the parent
        queue.put((key, None, None, None, None, f"{type(exc).__name__}: {exc}"))


def test_four_processes_write_one_fresh_catalog(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    queue = ctx.Queue()
    keys = [f"cell/acq{i}" for i in range(4)]
    procs = [
        ctx.Process(target=_concurrent_writer, args=(str(tmp_path), key, barrier, queue))
        for key in keys
    ]
    start = time.monotonic()
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    errors = [r[-1] for r in results if r[-1]]
    assert not errors, errors
    for _key, first, again, count, final, _ in results:
        assert first == PartitionWriteResult(300, 0, 0, 0)
        assert again == PartitionWriteResult(0, 250, 50, 0)
        assert count == 250
        assert final == PartitionWriteResult(50, 250, 0, 0)
    with _open(tmp_path) as catalog:
        assert catalog.count("event_data_points") == 1200
        for key in keys:
            assert catalog.count("event_data_points", {"acquisition_key": key}) == 300
    assert time.monotonic() - start < 60


def test_set_field_updates_only_given_documents(tmp_path):
    with _open(tmp_path) as catalog:
        docs = [
            {"_id": f"{i:024x}", "acquisition_key": "/a", "extraction_type": "automatic"}
            for i in range(5)
        ]
        catalog.replace_partition("event_data_points", "/a", docs)
        matched = catalog.set_field(
            "event_data_points", {docs[0]["_id"]: "train", docs[3]["_id"]: "eval"}, "dataset_split"
        )
        assert matched == 2
        found = {d["_id"]: d.get("dataset_split") for d in catalog.find("event_data_points")}
        assert found == {
            docs[0]["_id"]: "train",
            docs[1]["_id"]: None,
            docs[2]["_id"]: None,
            docs[3]["_id"]: "eval",
            docs[4]["_id"]: None,
        }
