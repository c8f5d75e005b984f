"""The embedded catalog: montydb with sqlite storage in a folder, safe across processes.

This module owns :class:`EmbeddedCatalog` (the default backend, under ``<home>/catalog/``),
the embedded URI forms (:func:`embedded_folder`) and the file lock. What montydb does and what
we do about it:

* every collection is its own sqlite file ``<repo>/<db>/<collection>.collection``, created
  lazily by the first write (``connect`` creates the file, ``CREATE TABLE`` follows in a second
  step), so a concurrent process can meet a file without its table ("no such table"), two
  creators collide ("table already exists"), and a crash in between leaves a file that stays
  broken. Every write (and the creation, done eagerly under the lock, with a repair of a
  table-less file) holds an exclusive ``fcntl.flock`` on ``<repo>/.catalog.lock``; reads hold a
  shared lock, so readers never see a partition half-replaced by another process;
* ``MontyClient(repo)`` on a folder without ``.monty.storage`` silently configures the
  *flatfile* engine, and ``set_storage`` rewrites its config files non-atomically: both happen
  under the exclusive lock, and ``set_storage`` only when the folder is not configured yet;
* every operation opens a new sqlite connection and commits on its own: ``delete_many`` and
  ``insert_many`` are each one transaction, but never together. ``replace_partition`` therefore
  orders its steps (insert new ids, delete stale and changed documents, insert changed ones) so
  that a kill at any point leaves a subset of old ∪ new documents, which the next
  ``replace_partition`` of the partition repairs because it recomputes everything from scratch;
  the whole call holds the exclusive lock, and a call that sees 'database is locked' is retried
  from scratch;
* ``insert_many`` writes the documents before a duplicate id and then raises (not atomic), so
  we delete every colliding id first;
* ``find``/``delete_many``/``update_many`` decode the whole collection in Python (no indexes),
  and ``$in`` compares every document with every listed value (2000 documents × 500 ids: 1 s),
  so ids are looked up with one scan and a Python set, and deleted through montydb's storage
  layer (one sqlite ``executemany``, what its own ``delete_many`` ends in). Filters passed to
  :meth:`EmbeddedCatalog.find` run as montydb runs them.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from deep_events_dagster.catalog.base import CatalogBase
from deep_events_dagster.catalog.protocol import DEFAULT_DATABASE, is_server_uri, mask_uri
from deep_events_dagster.core.errors import ConfigurationError

try:  # POSIX only; elsewhere the embedded catalog is safe within one process only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["EMBEDDED_FOLDER", "LOCK_NAME", "MONTY_SCHEME", "EmbeddedCatalog", "embedded_folder"]

EMBEDDED_FOLDER = "catalog"
LOCK_NAME = ".catalog.lock"
MONTY_SCHEME = "montydb://"
_SENTINEL_ID = "__deep_events_catalog_sentinel__"
_LOCK_RETRIES = 6
LOCK_TIMEOUT_S = 600.0
SQLITE_TIMEOUT_S = 5.0


def embedded_folder(uri: str | None, *, home: str | Path) -> Path | None:
    """The montydb folder an embedded catalog URI names (None for a MongoDB server).

    ``None``, ``""`` or ``"embedded"``: ``<home>/catalog``; ``montydb://<folder>``: that folder
    (a relative one under ``home``).

    Raises
    ------
    ConfigurationError
        The URI is neither an embedded nor a MongoDB server URI.
    """
    home = Path(home)
    text = (uri or "").strip()
    if is_server_uri(text):
        return None
    if text in ("", "embedded"):
        repo = home / EMBEDDED_FOLDER
    elif text.startswith(MONTY_SCHEME):
        folder = Path(text[len(MONTY_SCHEME) :]).expanduser()
        if not str(folder):
            raise ConfigurationError(f"catalog URI {mask_uri(text)!r} names no folder")
        repo = folder if folder.is_absolute() else home / folder
    else:
        raise ConfigurationError(
            f"catalog URI {mask_uri(text)!r}: expected mongodb://, mongodb+srv://, "
            f"montydb://<folder> or 'embedded'"
        )
    return repo.resolve()


class EmbeddedCatalog(CatalogBase):
    """The catalog in a montydb folder (sqlite storage), locked with ``<repo>/.catalog.lock``.

    Open it with :meth:`open` (a URI) or :meth:`open_folder` (a folder).
    """

    BACKEND = "embedded montydb"

    def __init__(self, client: Any, database_name: str, *, display: str, repo: Path):
        super().__init__(client, database_name, display=display)
        self._repo = repo
        self._thread_lock = threading.RLock()
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._lock_exclusive = False
        self._ready: set[str] = set()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, uri: str | None, *, home: str | Path) -> Self:
        """Open the embedded catalog ``uri`` names (``None``, ``""``, ``"embedded"`` or
        ``montydb://<folder>``; see :func:`embedded_folder`).

        Raises
        ------
        ConfigurationError
            ``uri`` names a MongoDB server, or no catalog at all.
        """
        repo = embedded_folder(uri, home=home)
        if repo is None:
            raise ConfigurationError(
                f"catalog URI {mask_uri((uri or '').strip())!r} names a MongoDB server, "
                "not an embedded catalog"
            )
        return cls.open_folder(repo)

    @classmethod
    def open_folder(cls, repo: str | Path) -> Self:
        """Open (creating and configuring it when new) the montydb folder ``repo``.

        Raises
        ------
        ConfigurationError
            The folder is a montydb repository with another storage engine than sqlite.
        """
        import montydb

        repo = Path(repo).resolve()
        repo.mkdir(parents=True, exist_ok=True)
        # MontyClient configures an unconfigured folder as *flatfile* and set_storage rewrites
        # the config files in place: both only under the exclusive lock.
        with _flock(repo, exclusive=True):
            ident = repo / ".monty.storage"
            storage = ident.read_text().strip() if ident.is_file() else ""
            if storage and storage != "sqlite":
                raise ConfigurationError(
                    f"{repo}: montydb folder uses storage {storage!r}, expected 'sqlite'"
                )
            if not storage:
                montydb.set_storage(str(repo), storage="sqlite")
            client = montydb.MontyClient(str(repo))
        return cls(client, DEFAULT_DATABASE, display=f"{MONTY_SCHEME}{repo}", repo=repo)

    @property
    def is_embedded(self) -> bool:
        return True

    # -- locking -------------------------------------------------------------------------

    def _release_lock_file(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        """Hold the flock on the repository's lock file.

        Re-entrant within one instance (an inner request runs under the outer lock; a shared
        outer lock is upgraded when an exclusive one is asked for).
        """
        with self._thread_lock:
            if self._lock_fd is None:
                self._lock_fd = os.open(self._repo / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            outer = self._lock_depth == 0
            upgrade = not outer and exclusive and not self._lock_exclusive
            previous = self._lock_exclusive
            if outer or upgrade:
                _acquire_flock(self._lock_fd, exclusive=exclusive, repo=self._repo)
                self._lock_exclusive = exclusive
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    if fcntl is not None:
                        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    self._lock_exclusive = False
                elif upgrade:
                    _acquire_flock(self._lock_fd, exclusive=False, repo=self._repo)
                    self._lock_exclusive = previous

    def _run(self, operation: Callable[[], Any], *, exclusive: bool) -> Any:
        """Run ``operation()`` under the lock; retry sqlite 'database is locked'."""
        delay = 0.05
        for attempt in range(_LOCK_RETRIES):
            try:
                with self._locked(exclusive=exclusive):
                    return operation()
            except sqlite3.OperationalError as exc:
                if not _is_locked_error(exc) or attempt == _LOCK_RETRIES - 1:
                    raise
            time.sleep(delay * (1 + random.random()))
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    # -- collections ---------------------------------------------------------------------

    def _collection(self, name: str) -> Any:
        """The collection ``name``, created eagerly (and repaired) under the exclusive lock."""
        collection = super()._collection(name)
        if name in self._ready:
            return collection

        def ensure() -> None:
            path = self._repo / self._database_name / f"{name}.collection"
            if path.exists() and not _has_documents_table(path):
                # a crash between montydb's file creation and its CREATE TABLE: no data inside
                for suffix in ("", "-wal", "-shm", "-journal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(f"{path}{suffix}")
            if not path.exists():
                collection.insert_one({"_id": _SENTINEL_ID})
                collection.delete_one({"_id": _SENTINEL_ID})

        self._run(ensure, exclusive=True)
        self._ready.add(name)
        return collection

    def _collection_file(self, coll: Any) -> Path | None:
        """The sqlite file of a collection whose documents are stored as JSON text (montydb
        without BSON), else None."""
        from montydb.types import bson as monty_bson

        if monty_bson.bson_used:
            return None
        return self._repo / self._database_name / f"{coll.name}.collection"

    # -- lookups -------------------------------------------------------------------------

    def _partition_documents(
        self, coll: Any, partition_key: str, ids: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        """Documents of the partition, plus those whose ``_id`` is in ``ids``.

        montydb decodes every document of a collection for every query (no indexes): at
        10,000 documents one partition lookup took 0.2 s, and ingestion did two. Embedded
        collections are sqlite tables of ``(k = encoded _id, v = JSON document)``, so here
        sqlite selects the rows (``json_extract`` on ``acquisition_key``, the primary key for
        the ids) and only those are decoded, with montydb's own decoder.
        """
        path = self._collection_file(coll)
        if path is None:
            found = {d["_id"]: d for d in coll.find({"acquisition_key": partition_key})}
            for doc in self._find_ids(coll, [i for i in ids if i not in found]):
                found[doc["_id"]] = doc
            return list(found.values())
        if not path.is_file():
            return []
        from montydb.types import bson as monty_bson

        rows: dict[Any, Any] = {}
        connection = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)
        try:
            with contextlib.suppress(sqlite3.OperationalError):  # no table: no documents yet
                rows.update(
                    connection.execute(
                        "SELECT k, v FROM documents "
                        "WHERE json_extract(CAST(v AS TEXT), '$.acquisition_key') = ?",
                        (partition_key,),
                    )
                )
                keys = [monty_bson.id_encode(i) for i in ids]
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows.update(
                        connection.execute(
                            f"SELECT k, v FROM documents WHERE k IN ({marks})", chunk
                        )
                    )
        finally:
            connection.close()
        options = coll.codec_options
        return [monty_bson.document_decode(v, codec_options=options) for v in rows.values()]

    def _find_ids(self, coll: Any, ids: Sequence[Any]) -> list[dict[str, Any]]:
        """Documents whose ``_id`` is in ``ids``.

        montydb evaluates ``$in`` document by document against the whole list (2000 documents ×
        500 ids took 1 s), so this scans once and filters in Python.
        """
        if not ids:
            return []
        wanted = set(ids)
        return [doc for doc in coll.find({}) if doc["_id"] in wanted]

    def _delete_ids(self, coll: Any, ids: Sequence[Any], *, protect_manual: bool) -> None:
        """Delete documents by ``_id`` (manual ones kept when ``protect_manual``).

        Callers hold the exclusive lock and have read the documents' types, so the ids go
        straight to montydb's storage layer (one sqlite transaction, what montydb's own
        ``delete_many`` calls after its filter scan), skipping the quadratic ``$in`` filter.
        """
        if not ids:
            return
        storage = getattr(coll, "_storage", None)
        if storage is not None and hasattr(storage, "delete_many"):
            storage.delete_many(coll, list(ids))
            return
        super()._delete_ids(coll, ids, protect_manual=protect_manual)

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client and the lock file (idempotent)."""
        super().close()
        with self._thread_lock:
            self._release_lock_file()


def _is_locked_error(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _has_documents_table(path: Path) -> bool:
    """Whether a montydb sqlite collection file has its table (an empty file has none).

    A file sqlite cannot read raises: it is not ours to delete.
    """
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)) as conn:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'documents'"
        ).fetchone()
    return row is not None


def _acquire_flock(fd: int, *, exclusive: bool, repo: Path) -> None:
    """flock ``fd``, polling so that a hung holder gives an error instead of a hang."""
    if fcntl is None:  # pragma: no cover - Windows
        return
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{repo / LOCK_NAME}: the catalog stayed locked by another process for "
                    f"{LOCK_TIMEOUT_S:.0f} s"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


@contextlib.contextmanager
def _flock(repo: Path, *, exclusive: bool) -> Iterator[None]:
    """A flock on ``<repo>/.catalog.lock`` through its own file descriptor."""
    fd = os.open(repo / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire_flock(fd, exclusive=exclusive, repo=repo)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
