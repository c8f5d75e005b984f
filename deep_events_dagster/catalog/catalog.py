"""The catalog's entry point: :func:`open_catalog` picks the backend a URI names.

``mongodb://…`` and ``mongodb+srv://…`` open a :class:`.ServerCatalog`; ``None``, ``""``,
``"embedded"`` and ``montydb://<folder>`` an :class:`.EmbeddedCatalog`. Callers type against
the :class:`.EventCatalog` protocol; ``EventCatalog.open(uri, home=…)`` is this function. The
names callers import are re-exported here and from the package.
"""

from __future__ import annotations

from pathlib import Path

from deep_events_dagster.catalog.embedded import EmbeddedCatalog, embedded_folder
from deep_events_dagster.catalog.protocol import (
    DEFAULT_DATABASE,
    EventCatalog,
    PartitionWriteResult,
    UpsertResult,
    collection_name,
    is_server_uri,
    mask_uri,
)
from deep_events_dagster.catalog.server import ServerCatalog

__all__ = [
    "DEFAULT_DATABASE",
    "EmbeddedCatalog",
    "EventCatalog",
    "PartitionWriteResult",
    "ServerCatalog",
    "UpsertResult",
    "collection_name",
    "embedded_folder",
    "mask_uri",
    "open_catalog",
]


def open_catalog(uri: str | None, *, home: str | Path) -> EventCatalog:
    """Open the catalog named by ``uri`` (see :meth:`.EventCatalog.open`).

    Raises
    ------
    ConfigurationError
        The URI is none of these forms.
    """
    if is_server_uri(uri):
        return ServerCatalog.open(uri, home=home)
    return EmbeddedCatalog.open(uri, home=home)
