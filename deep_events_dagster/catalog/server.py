"""The server catalog: the collections of a MongoDB server, through pymongo.

This module owns :class:`ServerCatalog`, opened from a ``mongodb://`` or ``mongodb+srv://``
URI. The server keeps writes consistent across processes itself, so there is no file lock and
no retry; documents are looked up by partition and by id with server-side queries (``$or``,
``$in``).

The class runs over any pymongo-compatible client: constructed directly with a montydb
client (``ServerCatalog(MontyClient(":memory:"), "deep_events", display=…)``) it is tested
without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from deep_events_dagster.catalog.base import CatalogBase
from deep_events_dagster.catalog.protocol import DEFAULT_DATABASE, is_server_uri, mask_uri
from deep_events_dagster.core.errors import ConfigurationError

__all__ = ["ServerCatalog"]


class ServerCatalog(CatalogBase):
    """The catalog in a database of a MongoDB server (or any pymongo-compatible client)."""

    BACKEND = "MongoDB"

    @classmethod
    def open(cls, uri: str | None, *, home: str | Path | None = None) -> Self:
        """Open the MongoDB server ``uri`` names (database from the URI path, default
        ``deep_events``). pymongo connects lazily: opening needs no reachable server.

        ``home`` is accepted for the :class:`.EventCatalog` signature and not used.

        Raises
        ------
        ConfigurationError
            ``uri`` is not a ``mongodb://`` or ``mongodb+srv://`` URI.
        """
        text = (uri or "").strip()
        if not is_server_uri(text):
            raise ConfigurationError(
                f"catalog URI {mask_uri(text)!r}: expected mongodb:// or mongodb+srv://"
            )
        import pymongo

        client = pymongo.MongoClient(text)
        database = client.get_default_database(default=DEFAULT_DATABASE).name
        return cls(client, database, display=mask_uri(text))

    @property
    def is_embedded(self) -> bool:
        return False

    def _run(self, operation: Callable[[], Any], *, exclusive: bool) -> Any:
        """Run ``operation()``: the server needs no lock."""
        return operation()

    def _partition_documents(
        self, coll: Any, partition_key: str, ids: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        """Documents of the partition, plus those whose ``_id`` is in ``ids`` (one query)."""
        if not ids:
            return list(coll.find({"acquisition_key": partition_key}))
        wanted = {"$or": [{"acquisition_key": partition_key}, {"_id": {"$in": list(ids)}}]}
        return list(coll.find(wanted))

    def _find_ids(self, coll: Any, ids: Sequence[Any]) -> list[dict[str, Any]]:
        """Documents whose ``_id`` is in ``ids``."""
        if not ids:
            return []
        return list(coll.find({"_id": {"$in": list(ids)}}))
