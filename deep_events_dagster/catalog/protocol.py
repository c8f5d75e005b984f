"""What an event catalog is: the :class:`EventCatalog` protocol, and the backend-neutral pieces.

This module owns the contract every backend keeps (:class:`EventCatalog`: the operations
callers use), the counts the writes return (:class:`PartitionWriteResult`,
:class:`UpsertResult`), collection naming (:func:`collection_name`), URI masking
(:func:`mask_uri`), and the pure steps of a write: preparing documents
(:func:`prepare_documents`, :func:`stamp_partition`) and deciding what a partition write
inserts and deletes (:func:`plan_partition_write`). It touches no database.

The backends: :mod:`.embedded` (montydb on disk, the default) and :mod:`.server` (a MongoDB
server through pymongo), both built on :mod:`.base`; :mod:`.catalog` picks one from a URI.

Each annotation kind has a collection ``event_data_<kind>``; each acquisition (partition) owns
the documents whose ``acquisition_key`` is its key. :meth:`EventCatalog.replace_partition`
makes a partition's automatic documents exactly the given ones and never touches manual
documents (``extraction_type: manual``) or other partitions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

from deep_events_dagster.core.layout import event_data_name
from deep_events_dagster.core.plain_values import to_plain

__all__ = [
    "DEFAULT_DATABASE",
    "SERVER_SCHEMES",
    "EventCatalog",
    "PartitionPlan",
    "PartitionWriteResult",
    "UpsertResult",
    "collection_name",
    "is_server_uri",
    "mask_uri",
    "plain_out",
    "plan_partition_write",
    "prepare_documents",
    "stamp_partition",
]

DEFAULT_DATABASE = "deep_events"
SERVER_SCHEMES = ("mongodb://", "mongodb+srv://")
_KIND = re.compile(r"[A-Za-z0-9_-]+")
_SECRET_QUERY = re.compile(r"(?i)([?&][^=&]*(?:password|secret|token)[^=&]*=)[^&]*")


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
    return event_data_name(kind)


def is_server_uri(uri: str | None) -> bool:
    """Whether ``uri`` names a MongoDB server (``mongodb://`` or ``mongodb+srv://``)."""
    return (uri or "").strip().startswith(SERVER_SCHEMES)


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


def plain_out(value: Any) -> Any:
    """Documents read back as plain dicts/lists (montydb/pymongo may hand out SON etc.)."""
    if isinstance(value, Mapping):
        return {k: plain_out(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_out(v) for v in value]
    return value


def prepare_documents(documents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Documents as plain values, each with a unique, non-empty ``_id``.

    Raises
    ------
    ValueError
        A document has no ``_id``, or two have the same.
    """
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


def stamp_partition(docs: list[dict[str, Any]], partition_key: str) -> None:
    """Give prepared documents the partition's ``acquisition_key`` and, when missing,
    ``extraction_type: automatic`` (in place).

    Raises
    ------
    ValueError
        A document names another partition.
    """
    for doc in docs:
        key = doc.setdefault("acquisition_key", partition_key)
        if key != partition_key:
            raise ValueError(
                f"document {doc['_id']!r} has acquisition_key {key!r}, "
                f"not the partition {partition_key!r}"
            )
        doc.setdefault("extraction_type", "automatic")


@dataclass(frozen=True)
class PartitionPlan:
    """What a partition write does, in this order: insert ``new``, delete ``stale`` and the
    ids of ``changed``, insert ``changed``."""

    new: list[dict[str, Any]]
    changed: list[dict[str, Any]]
    stale: list[Any]
    result: PartitionWriteResult


def plan_partition_write(
    existing: Mapping[Any, Mapping[str, Any]], docs: list[dict[str, Any]], partition_key: str
) -> PartitionPlan:
    """Plan :meth:`EventCatalog.replace_partition` from the stored documents.

    ``existing`` maps ``_id`` → document for the partition's documents and those holding a
    given id elsewhere (another partition, or a legacy document); ``docs`` are the prepared,
    stamped documents of the write.
    """
    given = {doc["_id"] for doc in docs}
    manual = {_id for _id, doc in existing.items() if doc.get("extraction_type") == "manual"}
    stale = [
        _id
        for _id, doc in existing.items()
        if _id not in manual and _id not in given and doc.get("acquisition_key") == partition_key
    ]
    writable = [doc for doc in docs if doc["_id"] not in manual]
    new = [doc for doc in writable if doc["_id"] not in existing]
    replaced = [doc for doc in writable if doc["_id"] in existing]
    changed = [doc for doc in replaced if plain_out(existing[doc["_id"]]) != doc]
    result = PartitionWriteResult(
        inserted=len(new),
        replaced=len(replaced),
        deleted_stale=len(stale),
        kept_manual=len(manual),
    )
    return PartitionPlan(new=new, changed=changed, stale=stale, result=result)


def _short(doc: Mapping[str, Any], limit: int = 120) -> str:
    text = repr(dict(doc))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@runtime_checkable
class EventCatalog(Protocol):
    """Event documents in per-kind collections: what every catalog backend offers.

    Open one with :meth:`open` (the backend follows from the URI); the instance is a context
    manager. Documents go in and come out as plain dicts (numpy scalars, tuples, paths and
    dates are converted before writing). The implementations (:class:`.EmbeddedCatalog`,
    :class:`.ServerCatalog`) subclass this protocol and inherit :meth:`embedded_folder` and
    :meth:`collection_name`.
    """

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
            (relative folders are taken under ``home``). An implementation opens only its own
            forms.
        home
            The platform's home folder (used by the embedded catalog).

        Raises
        ------
        ConfigurationError
            The URI scheme is not one of the above.
        """
        from deep_events_dagster.catalog.catalog import open_catalog

        return open_catalog(uri, home=home)

    @staticmethod
    def embedded_folder(uri: str | None, *, home: str | Path) -> Path | None:
        """The montydb folder an embedded catalog URI names (None for a MongoDB server).

        Raises
        ------
        ConfigurationError
            The URI scheme is not one :meth:`open` accepts.
        """
        from deep_events_dagster.catalog.embedded import embedded_folder

        return embedded_folder(uri, home=home)

    collection_name = staticmethod(collection_name)

    # -- properties ----------------------------------------------------------------------

    @property
    def is_embedded(self) -> bool:
        """True for the embedded montydb backend."""
        ...

    @property
    def database_name(self) -> str:
        """The database holding the collections."""
        ...

    def describe(self) -> str:
        """Where the catalog lives, for display; passwords are masked."""
        ...

    # -- reading -------------------------------------------------------------------------

    def find(
        self,
        collection: str,
        filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | Sequence[str] | None = None,
        limit: int = 0,
    ) -> list[dict[str, Any]]:
        """Documents of ``collection`` matching ``filter`` (all when None), as plain dicts."""
        ...

    def count(self, collection: str, filter: Mapping[str, Any] | None = None) -> int:
        """Number of documents in ``collection`` matching ``filter``."""
        ...

    def find_partition(
        self,
        collection: str,
        partition_key: str,
        projection: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Documents with ``acquisition_key == partition_key``, as plain dicts (only the
        ``projection`` fields and ``_id`` when given).

        Same result as ``find(collection, {"acquisition_key": partition_key})``; a backend may
        read only the partition's documents instead of the whole collection.
        """
        ...

    # -- writing -------------------------------------------------------------------------

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
        """
        ...

    def upsert_documents(
        self, collection: str, documents: Iterable[Mapping[str, Any]]
    ) -> UpsertResult:
        """Insert or replace documents by ``_id`` (any extraction type; for legacy imports)."""
        ...

    def delete_partition(
        self, collection: str, partition_key: str, *, keep_manual: bool = True
    ) -> int:
        """Delete the partition's documents (manual ones only when ``keep_manual`` is False).

        Returns the number of documents deleted.
        """
        ...

    def mark_partition_removed(self, collection: str, partition_key: str) -> int:
        """Set ``acquisition_removed: true`` on the partition's documents; return how many."""
        ...

    def set_field(self, collection: str, values: Mapping[str, Any], field: str) -> int:
        """Set ``field`` per document: ``values`` maps ``_id`` → value; returns how many matched.

        Used to keep each event's ``dataset_split`` with it in the catalog.
        """
        ...

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the catalog (idempotent)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...
