"""The event catalog: one class over a MongoDB server (pymongo) or embedded montydb (sqlite).

Each annotation kind has a collection ``event_data_<kind>``; each acquisition (partition) owns
the documents whose ``acquisition_key`` is its key. :meth:`EventCatalog.replace_partition`
makes a partition's automatic documents exactly the given ones and never touches manual
documents (``extraction_type: manual``) or other partitions.

Embedded backend (montydb, sqlite storage) — what montydb does and what we do about it:

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
* ``insert_many`` writes the documents before a duplicate id and then raises (not atomic), so
  we delete every colliding id first;
* ``find``/``delete_many``/``update_many`` decode the whole collection in Python (no indexes),
  and ``$in`` compares every document with every listed value (2000 documents × 500 ids: 1 s),
  so the embedded backend looks ids up with one scan and a Python set, and deletes by id through
  montydb's storage layer (one sqlite ``executemany``, what its own ``delete_many`` ends in).
  Filters passed to :meth:`EventCatalog.find` run as montydb runs them.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deep_events_dagster.core.crops import to_plain
from deep_events_dagster.core.errors import ConfigurationError

try:  # POSIX only; elsewhere the embedded catalog is safe within one process only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_DATABASE",
    "EventCatalog",
    "PartitionWriteResult",
    "UpsertResult",
    "collection_name",
    "mask_uri",
]

DEFAULT_DATABASE = "deep_events"
EMBEDDED_FOLDER = "catalog"
LOCK_NAME = ".catalog.lock"
MONTY_SCHEME = "montydb://"
_MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")
_SENTINEL_ID = "__deep_events_catalog_sentinel__"
_LOCK_RETRIES = 6
LOCK_TIMEOUT_S = 600.0
SQLITE_TIMEOUT_S = 5.0
_KIND = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class PartitionWriteResult:
    """Counts from :meth:`EventCatalog.replace_partition`.

    Attributes
    ----------
    inserted
        Given documents whose id was not in the collection.
    replaced
        Given documents whose id held an automatic document (rewritten only when different).
    deleted_stale
        Automatic documents of the partition that were not given again, now deleted.
    kept_manual
        Manual documents of the partition (or holding a given id) left untouched; a given
        document with the id of a manual one is dropped in its favour.
    """

    inserted: int
    replaced: int
    deleted_stale: int
    kept_manual: int


@dataclass(frozen=True)
class UpsertResult:
    """Counts from :meth:`EventCatalog.upsert_documents`."""

    inserted: int
    replaced: int


def collection_name(kind: str) -> str:
    """Collection of an annotation kind: ``event_data_<kind>``."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"annotation kind {kind!r} must be letters, digits, '_' or '-'")
    return f"event_data_{kind}"


_SECRET_QUERY = re.compile(r"(?i)([?&][^=&]*(?:password|secret|token)[^=&]*=)[^&]*")


def mask_uri(uri: str) -> str:
    """Return ``uri`` with the password (and password-like query options) replaced by ``***``.

    ``mongodb://user:pw@host/db`` becomes ``mongodb://user:***@host/db``. When the credentials
    cannot be told apart with certainty, more is masked rather than less.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return _SECRET_QUERY.sub(r"\1***", uri)
    # the credentials end at the last '@': a password with an unescaped '@', '/' or '?' must
    # not leak (an '@' in a query option over-masks instead)
    at = rest.rfind("@")
    if at != -1:
        userinfo, hosts = rest[:at], rest[at + 1 :]
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        rest = f"{userinfo}@{hosts}"
    return _SECRET_QUERY.sub(r"\1***", f"{scheme}{sep}{rest}")


def _is_locked_error(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _plain_out(value: Any) -> Any:
    """Documents read back as plain dicts/lists (montydb/pymongo may hand out SON etc.)."""
    if isinstance(value, Mapping):
        return {k: _plain_out(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_out(v) for v in value]
    return value


class EventCatalog:
    """Event documents in per-kind collections, on a MongoDB server or in embedded montydb.

    Use :meth:`open`; the instance is a context manager. Documents go in and come out as
    plain dicts (numpy scalars, tuples, paths and dates are converted before writing).
    """

    def __init__(
        self,
        client: Any,
        database_name: str,
        *,
        display: str,
        embedded_repo: Path | None = None,
    ):
        self._client = client
        self._db = client[database_name]
        self._database_name = database_name
        self._display = display
        self._repo = embedded_repo
        self._thread_lock = threading.RLock()
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._lock_exclusive = False
        self._ready: set[str] = set()
        self._closed = False

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, uri: str | None, *, home: str | Path) -> EventCatalog:
        """Open the catalog named by ``uri``.

        Parameters
        ----------
        uri
            ``mongodb://…`` or ``mongodb+srv://…`` for a MongoDB server (database from the URI
            path, default ``deep_events``); ``None``, ``""`` or ``"embedded"`` for montydb under
            ``<home>/catalog/``; ``montydb://<folder>`` for montydb in an explicit folder
            (relative folders are taken under ``home``).
        home
            The platform's home folder (used by the embedded catalog).

        Raises
        ------
        ConfigurationError
            The URI scheme is not one of the above.
        """
        text = (uri or "").strip()
        if text.startswith(_MONGO_SCHEMES):
            import pymongo

            client = pymongo.MongoClient(text)
            database = client.get_default_database(default=DEFAULT_DATABASE).name
            return cls(client, database, display=mask_uri(text))
        repo = cls.embedded_folder(text, home=home)
        assert repo is not None
        return cls._open_embedded(repo)

    @staticmethod
    def embedded_folder(uri: str | None, *, home: str | Path) -> Path | None:
        """The montydb folder an embedded catalog URI names (None for a MongoDB server).

        Raises
        ------
        ConfigurationError
            The URI scheme is not one :meth:`open` accepts.
        """
        home = Path(home)
        text = (uri or "").strip()
        if text.startswith(_MONGO_SCHEMES):
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

    @classmethod
    def _open_embedded(cls, repo: Path) -> EventCatalog:
        import montydb

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
        return cls(client, DEFAULT_DATABASE, display=f"{MONTY_SCHEME}{repo}", embedded_repo=repo)

    # -- properties ----------------------------------------------------------------------

    @property
    def is_embedded(self) -> bool:
        """True for the embedded montydb backend."""
        return self._repo is not None

    @property
    def database_name(self) -> str:
        return self._database_name

    def describe(self) -> str:
        """Where the catalog lives, for display; passwords are masked."""
        kind = "embedded montydb" if self.is_embedded else "MongoDB"
        return f"{kind} {self._display} (database {self._database_name})"

    def __repr__(self) -> str:
        return f"EventCatalog({self.describe()})"

    collection_name = staticmethod(collection_name)

    # -- locking -------------------------------------------------------------------------

    def _release_lock_file(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        """Hold the catalog lock: no-op on a server; flock on the embedded repository.

        Re-entrant within one instance (an inner request runs under the outer lock; a shared
        outer lock is upgraded when an exclusive one is asked for).
        """
        if self._repo is None:
            yield
            return
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

    def _run(self, operation: Any, *, exclusive: bool) -> Any:
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
        """The collection ``name``; on the embedded backend created eagerly (and repaired)."""
        if self._closed:
            raise RuntimeError("the event catalog is closed")
        if not isinstance(name, str) or not name or "$" in name:
            raise ValueError(f"invalid collection name {name!r}")
        collection = self._db[name]
        if self._repo is None or name in self._ready:
            return collection

        def ensure() -> None:
            assert self._repo is not None
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

    # -- reading -------------------------------------------------------------------------

    def find(
        self,
        collection: str,
        filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | Sequence[str] | None = None,
        limit: int = 0,
    ) -> list[dict[str, Any]]:
        """Documents of ``collection`` matching ``filter`` (all when None), as plain dicts."""
        query = to_plain(dict(filter or {}))
        if projection is not None and not isinstance(projection, Mapping):
            projection = {str(field): 1 for field in projection}
        coll = self._collection(collection)

        def op() -> list[dict[str, Any]]:
            cursor = coll.find(query, projection) if projection is not None else coll.find(query)
            if limit:
                cursor = cursor.limit(int(limit))
            return [_plain_out(doc) for doc in cursor]

        return self._run(op, exclusive=False)

    def count(self, collection: str, filter: Mapping[str, Any] | None = None) -> int:
        """Number of documents in ``collection`` matching ``filter``."""
        query = to_plain(dict(filter or {}))
        coll = self._collection(collection)
        return int(self._run(lambda: coll.count_documents(query), exclusive=False))

    # -- writing -------------------------------------------------------------------------

    @staticmethod
    def _prepare(documents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        prepared = []
        seen: set[Any] = set()
        for document in documents:
            doc = to_plain(dict(document))
            if "_id" not in doc or doc["_id"] in (None, ""):
                raise ValueError(f"document without _id: {_short(doc)}")
            if doc["_id"] in seen:
                raise ValueError(f"duplicate _id {doc['_id']!r} among the given documents")
            seen.add(doc["_id"])
            prepared.append(doc)
        return prepared

    def replace_partition(
        self,
        collection: str,
        partition_key: str,
        documents: Iterable[Mapping[str, Any]],
    ) -> PartitionWriteResult:
        """Make the partition's automatic documents exactly ``documents``.

        Afterwards ``collection`` holds, for ``acquisition_key == partition_key``, the given
        documents plus every pre-existing manual document (never deleted, never overwritten:
        a given document with a manual document's id is dropped). Stale automatic documents of
        the partition are deleted; other partitions are untouched.

        Parameters
        ----------
        collection
            Collection name (see :func:`collection_name`).
        partition_key
            The acquisition key; documents without ``acquisition_key`` get it, documents with
            another one are refused. Missing ``extraction_type`` means ``automatic``.
        documents
            Documents with a unique ``_id`` each (the deterministic 24-hex event id).

        Notes
        -----
        Embedded: the whole call holds the exclusive catalog lock; its steps are separate
        sqlite transactions ordered so that a crash leaves old ∪ new subsets that the next call
        repairs. A call that sees 'database is locked' is retried from scratch.
        """
        docs = self._prepare(documents)
        for doc in docs:
            key = doc.setdefault("acquisition_key", partition_key)
            if key != partition_key:
                raise ValueError(
                    f"document {doc['_id']!r} has acquisition_key {key!r}, "
                    f"not the partition {partition_key!r}"
                )
            doc.setdefault("extraction_type", "automatic")
        coll = self._collection(collection)
        return self._run(lambda: self._replace_partition(coll, partition_key, docs), exclusive=True)

    def find_partition(
        self,
        collection: str,
        partition_key: str,
        projection: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Documents with ``acquisition_key == partition_key``, as plain dicts (only the
        ``projection`` fields and ``_id`` when given).

        Same result as ``find(collection, {"acquisition_key": partition_key})``; on the
        embedded backend it reads only the partition's documents (see
        :meth:`_partition_documents`) instead of decoding the whole collection.
        """
        coll = self._collection(collection)

        def op() -> list[dict[str, Any]]:
            docs = self._partition_documents(coll, partition_key)
            if projection is not None:
                keep = {"_id", *projection}
                docs = [{k: v for k, v in doc.items() if k in keep} for doc in docs]
            return [_plain_out(doc) for doc in docs]

        return self._run(op, exclusive=False)

    def _collection_file(self, coll: Any) -> Path | None:
        """The sqlite file of an embedded collection whose documents are stored as JSON text
        (montydb without BSON), else None."""
        if self._repo is None:
            return None
        from montydb.types import bson as monty_bson

        if monty_bson.bson_used:
            return None
        return self._repo / self._database_name / f"{coll.name}.collection"

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
            if self._repo is None:
                wanted = {"$or": [{"acquisition_key": partition_key}, {"_id": {"$in": list(ids)}}]}
                return list(coll.find(wanted if ids else {"acquisition_key": partition_key}))
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
        500 ids took 1 s), so the embedded backend scans once and filters in Python.
        """
        if not ids:
            return []
        if self._repo is None:
            return list(coll.find({"_id": {"$in": list(ids)}}))
        wanted = set(ids)
        return [doc for doc in coll.find({}) if doc["_id"] in wanted]

    def _delete_ids(self, coll: Any, ids: Sequence[Any], *, protect_manual: bool) -> None:
        """Delete documents by ``_id`` (manual ones kept when ``protect_manual``).

        Embedded: callers hold the exclusive lock and have read the documents' types, so the
        ids go straight to montydb's storage layer (one sqlite transaction, what montydb's own
        ``delete_many`` calls after its filter scan), skipping the quadratic ``$in`` filter.
        """
        if not ids:
            return
        storage = getattr(coll, "_storage", None) if self._repo is not None else None
        if storage is not None and hasattr(storage, "delete_many"):
            storage.delete_many(coll, list(ids))
            return
        query: dict[str, Any] = {"_id": {"$in": list(ids)}}
        if protect_manual:
            query["extraction_type"] = {"$ne": "manual"}
        coll.delete_many(query)

    def _replace_partition(
        self, coll: Any, partition_key: str, docs: list[dict[str, Any]]
    ) -> PartitionWriteResult:
        given = {doc["_id"] for doc in docs}
        # the partition's documents, and those with the given ids living elsewhere (another
        # partition, or legacy documents)
        existing = {
            doc["_id"]: doc for doc in self._partition_documents(coll, partition_key, list(given))
        }
        manual = {_id for _id, doc in existing.items() if doc.get("extraction_type") == "manual"}
        stale = [
            _id
            for _id, doc in existing.items()
            if _id not in manual
            and _id not in given
            and doc.get("acquisition_key") == partition_key
        ]
        writable = [doc for doc in docs if doc["_id"] not in manual]
        new = [doc for doc in writable if doc["_id"] not in existing]
        replaced = [doc for doc in writable if doc["_id"] in existing]
        changed = [doc for doc in replaced if _plain_out(existing[doc["_id"]]) != doc]

        # 1. brand-new ids first (nothing disappears), 2. stale and changed out, 3. changed in
        if new:
            coll.insert_many(new)
        self._delete_ids(coll, stale + [doc["_id"] for doc in changed], protect_manual=True)
        if changed:
            coll.insert_many(changed)
        return PartitionWriteResult(
            inserted=len(new),
            replaced=len(replaced),
            deleted_stale=len(stale),
            kept_manual=len(manual),
        )

    def upsert_documents(
        self, collection: str, documents: Iterable[Mapping[str, Any]]
    ) -> UpsertResult:
        """Insert or replace documents by ``_id`` (any extraction type; for legacy imports)."""
        docs = self._prepare(documents)
        if not docs:
            return UpsertResult(0, 0)
        coll = self._collection(collection)

        def op() -> UpsertResult:
            existing = [doc["_id"] for doc in self._find_ids(coll, [d["_id"] for d in docs])]
            self._delete_ids(coll, existing, protect_manual=False)
            coll.insert_many(docs)
            return UpsertResult(inserted=len(docs) - len(existing), replaced=len(existing))

        return self._run(op, exclusive=True)

    def delete_partition(
        self, collection: str, partition_key: str, *, keep_manual: bool = True
    ) -> int:
        """Delete the partition's documents (manual ones only when ``keep_manual`` is False).

        Returns the number of documents deleted.
        """
        query: dict[str, Any] = {"acquisition_key": partition_key}
        if keep_manual:
            query["extraction_type"] = {"$ne": "manual"}
        coll = self._collection(collection)
        return int(self._run(lambda: coll.delete_many(query).deleted_count, exclusive=True))

    def mark_partition_removed(self, collection: str, partition_key: str) -> int:
        """Set ``acquisition_removed: true`` on the partition's documents; return how many."""
        coll = self._collection(collection)
        update = {"$set": {"acquisition_removed": True}}
        return int(
            self._run(
                lambda: coll.update_many({"acquisition_key": partition_key}, update).matched_count,
                exclusive=True,
            )
        )

    def set_field(self, collection: str, values: Mapping[str, Any], field: str) -> int:
        """Set ``field`` per document: ``values`` maps ``_id`` → value; returns how many matched.

        Used to keep each event's ``dataset_split`` with it in the catalog. The documents are
        read in one pass and written back in bulk (single updates are slow on montydb).
        """
        if not values:
            return 0
        coll = self._collection(collection)

        def op() -> int:
            docs = self._find_ids(coll, list(values))
            for doc in docs:
                doc[field] = to_plain(values[doc["_id"]])
            if docs:
                self._delete_ids(coll, [d["_id"] for d in docs], protect_manual=False)
                coll.insert_many(docs)
            return len(docs)

        return int(self._run(op, exclusive=True))

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client and the lock file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._client.close()
        with self._thread_lock:
            self._release_lock_file()

    def __enter__(self) -> EventCatalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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


def _short(doc: Mapping[str, Any], limit: int = 120) -> str:
    text = repr(dict(doc))
    return text if len(text) <= limit else text[: limit - 1] + "…"
