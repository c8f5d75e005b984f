"""The server catalog alone: opening from a URI (pymongo connects lazily, so no server is
needed), and its operations over an in-memory montydb client or, when
``DEEP_EVENTS_TEST_MONGO_URI`` is set, a real MongoDB server."""

from __future__ import annotations

import os
import uuid

import pytest

from deep_events_dagster.catalog import PartitionWriteResult, UpsertResult, collection_name
from deep_events_dagster.catalog.server import ServerCatalog
from deep_events_dagster.core.errors import ConfigurationError
from tests.unit.catalog.catalog_docs import MONGO_ENV, make_doc


@pytest.fixture(params=["memory", "mongo"])
def server(request):
    if request.param == "mongo":
        uri = os.environ.get(MONGO_ENV)
        if not uri:
            pytest.skip(f"set {MONGO_ENV} to test against a MongoDB server")
        catalog = ServerCatalog.open(uri)
    else:
        import montydb

        catalog = ServerCatalog(montydb.MontyClient(":memory:"), "deep_events", display="memory")
    collection = collection_name(f"test_{uuid.uuid4().hex[:8]}")
    yield catalog, collection
    if request.param == "mongo":
        catalog._db.drop_collection(collection)
    catalog.close()


def test_open_names_the_database_and_masks_the_password():
    # (mongodb+srv:// would look the hosts up in DNS when opened)
    with ServerCatalog.open(" mongodb://bob:hunter2@db.example.net:27017/lab ") as catalog:
        assert not catalog.is_embedded
        assert catalog.database_name == "lab"
        assert (
            catalog.describe()
            == "MongoDB mongodb://bob:***@db.example.net:27017/lab (database lab)"
        )
        assert "hunter2" not in repr(catalog)
    with ServerCatalog.open("mongodb://localhost:27017", home="/ignored") as catalog:
        assert catalog.database_name == "deep_events"


@pytest.mark.parametrize("uri", [None, "", "embedded", "montydb://x", "postgres://u:pw@h/db"])
def test_open_needs_a_mongodb_uri(uri):
    with pytest.raises(ConfigurationError, match="mongodb://") as info:
        ServerCatalog.open(uri)
    assert "pw@" not in str(info.value)


def test_partition_write_round_trip(server):
    catalog, coll = server
    docs = [make_doc("acq/a", n) for n in range(3)]
    assert catalog.replace_partition(coll, "acq/a", docs) == PartitionWriteResult(3, 0, 0, 0)
    legacy = {"_id": make_doc("acq/b", 1)["_id"], "type": "event"}  # found by id, not by key
    assert catalog.upsert_documents(coll, [legacy]) == UpsertResult(inserted=1, replaced=0)
    result = catalog.replace_partition(coll, "acq/b", [make_doc("acq/b", 1)])
    assert result == PartitionWriteResult(inserted=0, replaced=1, deleted_stale=0, kept_manual=0)
    assert catalog.replace_partition(coll, "acq/a", docs[:1]).deleted_stale == 2
    assert [d["_id"] for d in catalog.find_partition(coll, "acq/a")] == [docs[0]["_id"]]
    assert catalog.find_partition(coll, "acq/b", projection=["frames"]) == [
        {"_id": legacy["_id"], "frames": [1, 11]}
    ]
    assert catalog.mark_partition_removed(coll, "acq/b") == 1
    assert catalog.delete_partition(coll, "acq/b") == 1
    assert catalog.count(coll) == 1
