"""The event catalog: the :class:`EventCatalog` protocol, its embedded (montydb) and server
(MongoDB) implementations, and :func:`open_catalog`, which picks one from a URI."""

from deep_events_dagster.catalog.catalog import (
    DEFAULT_DATABASE,
    EmbeddedCatalog,
    EventCatalog,
    PartitionWriteResult,
    ServerCatalog,
    UpsertResult,
    collection_name,
    mask_uri,
    open_catalog,
)

__all__ = [
    "DEFAULT_DATABASE",
    "EmbeddedCatalog",
    "EventCatalog",
    "PartitionWriteResult",
    "ServerCatalog",
    "UpsertResult",
    "collection_name",
    "mask_uri",
    "open_catalog",
]
