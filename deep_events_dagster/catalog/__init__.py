"""The event catalog over a pymongo-compatible collection (MongoDB server or embedded montydb)."""

from deep_events_dagster.catalog.catalog import (
    DEFAULT_DATABASE,
    EventCatalog,
    PartitionWriteResult,
    UpsertResult,
    collection_name,
    mask_uri,
)

__all__ = [
    "DEFAULT_DATABASE",
    "EventCatalog",
    "PartitionWriteResult",
    "UpsertResult",
    "collection_name",
    "mask_uri",
]
