"""The catalog operations written once, over a pymongo-compatible client.

:class:`CatalogBase` implements every operation of the :class:`.EventCatalog` protocol on
``client[database][collection]`` objects (pymongo's, or montydb's which copies its API). What
differs between backends is left to a few hooks that :class:`.EmbeddedCatalog` and
:class:`.ServerCatalog` provide:

* :meth:`CatalogBase._run` runs one operation (the embedded backend under its file lock, with
  retries of sqlite 'database is locked');
* :meth:`CatalogBase._collection` hands out a collection (the embedded backend creates it
  eagerly);
* :meth:`CatalogBase._partition_documents` and :meth:`CatalogBase._find_ids` look documents up
  by partition and by id, :meth:`CatalogBase._delete_ids` deletes by id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self

from deep_events_dagster.catalog.protocol import (
    EventCatalog,
    PartitionWriteResult,
    UpsertResult,
    plain_out,
    plan_partition_write,
    prepare_documents,
    stamp_partition,
)
from deep_events_dagster.core.plain_values import to_plain

__all__ = ["CatalogBase"]


class CatalogBase(EventCatalog):
    """Event documents in per-kind collections of ``client[database_name]``.

    Subclasses set :attr:`BACKEND` (its name for :meth:`describe`) and implement the hooks
    :meth:`_run`, :meth:`_partition_documents` and :meth:`_find_ids`. The operations are
    documented on the protocol (``inspect.getdoc`` finds their docstrings there).
    """

    BACKEND = "catalog"

    def __init__(self, client: Any, database_name: str, *, display: str):
        self._client = client
        self._db = client[database_name]
        self._database_name = database_name
        self._display = display
        self._closed = False

    # -- properties ----------------------------------------------------------------------

    @property
    def database_name(self) -> str:
        return self._database_name

    def describe(self) -> str:
        return f"{self.BACKEND} {self._display} (database {self._database_name})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    # -- hooks ---------------------------------------------------------------------------

    def _run(self, operation: Callable[[], Any], *, exclusive: bool) -> Any:
        """Run ``operation()`` (``exclusive`` when it writes)."""
        raise NotImplementedError

    def _collection(self, name: str) -> Any:
        """The collection ``name``."""
        if self._closed:
            raise RuntimeError("the event catalog is closed")
        if not isinstance(name, str) or not name or "$" in name:
            raise ValueError(f"invalid collection name {name!r}")
        return self._db[name]

    def _partition_documents(
        self, coll: Any, partition_key: str, ids: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        """Documents of the partition, plus those whose ``_id`` is in ``ids``."""
        raise NotImplementedError

    def _find_ids(self, coll: Any, ids: Sequence[Any]) -> list[dict[str, Any]]:
        """Documents whose ``_id`` is in ``ids``."""
        raise NotImplementedError

    def _delete_ids(self, coll: Any, ids: Sequence[Any], *, protect_manual: bool) -> None:
        """Delete documents by ``_id`` (manual ones kept when ``protect_manual``)."""
        if not ids:
            return
        query: dict[str, Any] = {"_id": {"$in": list(ids)}}
        if protect_manual:
            query["extraction_type"] = {"$ne": "manual"}
        coll.delete_many(query)

    # -- reading -------------------------------------------------------------------------

    def find(
        self,
        collection: str,
        filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | Sequence[str] | None = None,
        limit: int = 0,
    ) -> list[dict[str, Any]]:
        query = to_plain(dict(filter or {}))
        if projection is not None and not isinstance(projection, Mapping):
            projection = {str(field): 1 for field in projection}
        coll = self._collection(collection)

        def op() -> list[dict[str, Any]]:
            cursor = coll.find(query, projection) if projection is not None else coll.find(query)
            if limit:
                cursor = cursor.limit(int(limit))
            return [plain_out(doc) for doc in cursor]

        return self._run(op, exclusive=False)

    def count(self, collection: str, filter: Mapping[str, Any] | None = None) -> int:
        query = to_plain(dict(filter or {}))
        coll = self._collection(collection)
        return int(self._run(lambda: coll.count_documents(query), exclusive=False))

    def find_partition(
        self,
        collection: str,
        partition_key: str,
        projection: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Documents with ``acquisition_key == partition_key`` (see
        :meth:`.EventCatalog.find_partition`), looked up by :meth:`_partition_documents`."""
        coll = self._collection(collection)

        def op() -> list[dict[str, Any]]:
            docs = self._partition_documents(coll, partition_key)
            if projection is not None:
                keep = {"_id", *projection}
                docs = [{k: v for k, v in doc.items() if k in keep} for doc in docs]
            return [plain_out(doc) for doc in docs]

        return self._run(op, exclusive=False)

    # -- writing -------------------------------------------------------------------------

    def replace_partition(
        self,
        collection: str,
        partition_key: str,
        documents: Iterable[Mapping[str, Any]],
    ) -> PartitionWriteResult:
        """Make the partition's automatic documents exactly ``documents`` (see
        :meth:`.EventCatalog.replace_partition`), in one exclusive :meth:`_run`."""
        docs = prepare_documents(documents)
        stamp_partition(docs, partition_key)
        coll = self._collection(collection)
        return self._run(lambda: self._replace_partition(coll, partition_key, docs), exclusive=True)

    def _replace_partition(
        self, coll: Any, partition_key: str, docs: list[dict[str, Any]]
    ) -> PartitionWriteResult:
        # the partition's documents, and those with the given ids living elsewhere (another
        # partition, or legacy documents)
        found = self._partition_documents(coll, partition_key, [doc["_id"] for doc in docs])
        plan = plan_partition_write({doc["_id"]: doc for doc in found}, docs, partition_key)
        # 1. brand-new ids first (nothing disappears), 2. stale and changed out, 3. changed in
        if plan.new:
            coll.insert_many(plan.new)
        self._delete_ids(
            coll, plan.stale + [doc["_id"] for doc in plan.changed], protect_manual=True
        )
        if plan.changed:
            coll.insert_many(plan.changed)
        return plan.result

    def upsert_documents(
        self, collection: str, documents: Iterable[Mapping[str, Any]]
    ) -> UpsertResult:
        docs = prepare_documents(documents)
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
        query: dict[str, Any] = {"acquisition_key": partition_key}
        if keep_manual:
            query["extraction_type"] = {"$ne": "manual"}
        coll = self._collection(collection)
        return int(self._run(lambda: coll.delete_many(query).deleted_count, exclusive=True))

    def mark_partition_removed(self, collection: str, partition_key: str) -> int:
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

        The documents are read in one pass and written back in bulk (single updates are slow
        on montydb).
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
        """Close the client (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
