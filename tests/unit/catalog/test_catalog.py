"""The event catalog protocol: the factory, naming, and the same operations run against every
implementation available (embedded montydb, the server implementation over a montydb client,
and a MongoDB server when ``DEEP_EVENTS_TEST_MONGO_URI`` is set)."""

from __future__ import annotations

import os
import re
import uuid

import numpy as np
import pytest

from deep_events_dagster.catalog import (
    EmbeddedCatalog,
    EventCatalog,
    PartitionWriteResult,
    ServerCatalog,
    UpsertResult,
    collection_name,
    mask_uri,
    open_catalog,
)
from deep_events_dagster.core.errors import ConfigurationError
from tests.unit.catalog.catalog_docs import MONGO_ENV
from tests.unit.catalog.catalog_docs import make_doc as _doc


def _snapshot(catalog: EventCatalog, collection: str) -> list[dict]:
    return sorted(catalog.find(collection), key=lambda doc: str(doc["_id"]))


@pytest.fixture(params=["embedded", "server-code-path", "mongo"])
def catalog_and_collection(request, tmp_path):
    if request.param == "mongo":
        uri = os.environ.get(MONGO_ENV)
        if not uri:
            pytest.skip(f"set {MONGO_ENV} to test against a MongoDB server")
        catalog = EventCatalog.open(uri, home=tmp_path)
    elif request.param == "server-code-path":
        # the MongoDB-server code path (``$in`` queries, no file lock) over a montydb client
        import montydb

        EmbeddedCatalog.open_folder(tmp_path / "catalog").close()  # configures the folder
        client = montydb.MontyClient(str(tmp_path / "catalog"))
        catalog = ServerCatalog(client, "deep_events", display="test")
        assert not catalog.is_embedded
    else:
        catalog = EventCatalog.open(None, home=tmp_path)
    collection = collection_name(f"test_{uuid.uuid4().hex[:8]}")
    yield catalog, collection
    if request.param == "mongo":
        catalog._db.drop_collection(collection)
    catalog.close()


# -- opening and naming ----------------------------------------------------------------------


@pytest.mark.parametrize("uri", [None, "", "embedded", "  embedded  "])
def test_open_embedded_default_folder(tmp_path, uri):
    with EventCatalog.open(uri, home=tmp_path) as catalog:
        assert catalog.is_embedded
        assert catalog.database_name == "deep_events"
        assert str(tmp_path / "catalog") in catalog.describe()
        catalog.replace_partition("event_data_points", "a", [_doc("a", 1)])
    assert (tmp_path / "catalog" / ".catalog.lock").exists()
    assert (tmp_path / "catalog" / ".monty.storage").read_text().strip() == "sqlite"


def test_open_montydb_uri(tmp_path):
    with EventCatalog.open("montydb://elsewhere/cat", home=tmp_path) as catalog:
        assert catalog.describe().endswith(
            f"{tmp_path / 'elsewhere' / 'cat'} (database deep_events)"
        )
    absolute = tmp_path / "abs"
    with EventCatalog.open(f"montydb://{absolute}", home=tmp_path / "home") as catalog:
        catalog.replace_partition("event_data_points", "a", [_doc("a", 1)])
        assert catalog.count("event_data_points") == 1
    assert (absolute / "deep_events" / "event_data_points.collection").exists()


def test_open_rejects_unknown_scheme(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        EventCatalog.open("postgres://user:hunter2@host/db", home=tmp_path)
    assert "hunter2" not in str(info.value)


def test_embedded_catalog_persists(tmp_path):
    with EventCatalog.open(None, home=tmp_path) as catalog:
        catalog.replace_partition("event_data_points", "a", [_doc("a", 1), _doc("a", 2)])
    with EventCatalog.open(None, home=tmp_path) as catalog:
        assert catalog.count("event_data_points") == 2


def test_mongodb_uri_is_masked_and_names_the_database(tmp_path):
    # MongoClient connects lazily: no server is needed to open and describe
    uri = "mongodb://alice:s3cr%40t@db.example.org:27017/lab_events?authSource=admin"
    with EventCatalog.open(uri, home=tmp_path) as catalog:
        assert not catalog.is_embedded
        assert catalog.database_name == "lab_events"
        text = catalog.describe() + repr(catalog)
        assert "s3cr" not in text
        assert "mongodb://alice:***@db.example.org:27017/lab_events" in text
    with EventCatalog.open("mongodb://localhost:27017", home=tmp_path) as catalog:
        assert catalog.database_name == "deep_events"
        assert "mongodb://localhost:27017" in catalog.describe()


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("mongodb://user:pw@host/db", "mongodb://user:***@host/db"),
        (
            "mongodb+srv://user:pw@cluster.example.net/db",
            "mongodb+srv://user:***@cluster.example.net/db",
        ),
        ("mongodb://user:p@w/x@h1:1,h2:2/db?ssl=true", "mongodb://user:***@h1:1,h2:2/db?ssl=true"),
        ("mongodb://user@host/db", "mongodb://user@host/db"),
        ("mongodb://host1,host2/?replicaSet=rs", "mongodb://host1,host2/?replicaSet=rs"),
        (
            "mongodb://h/db?tls=true&tlsCertificateKeyFilePassword=abc&x=1",
            "mongodb://h/db?tls=true&tlsCertificateKeyFilePassword=***&x=1",
        ),
    ],
)
def test_mask_uri(uri, masked):
    assert mask_uri(uri) == masked


def test_collection_name():
    assert collection_name("points") == "event_data_points"
    assert EventCatalog.collection_name("mito-fission_2") == "event_data_mito-fission_2"
    for bad in ["", "a.b", "a$b", "a b"]:
        with pytest.raises(ValueError):
            collection_name(bad)


# -- replace_partition semantics ----------------------------------------------------------


def test_replace_partition_semantics(catalog_and_collection):
    catalog, coll = catalog_and_collection
    a = [_doc("acq/a", n) for n in range(5)]
    b = [_doc("acq/b", n) for n in range(3)]
    assert catalog.replace_partition(coll, "acq/a", a) == PartitionWriteResult(5, 0, 0, 0)
    assert catalog.replace_partition(coll, "acq/b", b) == PartitionWriteResult(3, 0, 0, 0)
    b_before = _snapshot(catalog, coll)[0:0] + catalog.find(coll, {"acquisition_key": "acq/b"})

    manual = _doc("acq/a", 100, extraction="manual", label="curated")
    # a manual document sitting on the id of an automatic event the next run produces again
    clash = dict(_doc("acq/a", 2), extraction_type="manual", label="fixed by hand")
    catalog.upsert_documents(coll, [manual, clash])

    new_run = [
        dict(_doc("acq/a", 0), label="relabelled"),  # changed
        _doc("acq/a", 1),  # unchanged
        _doc("acq/a", 2),  # id of the manual document: manual wins
        _doc("acq/a", 7),  # new
    ]
    result = catalog.replace_partition(coll, "acq/a", new_run)
    assert result == PartitionWriteResult(inserted=1, replaced=2, deleted_stale=2, kept_manual=2)

    docs_a = {doc["_id"]: doc for doc in catalog.find(coll, {"acquisition_key": "acq/a"})}
    assert set(docs_a) == {d["_id"] for d in [*new_run, manual]}
    assert docs_a[new_run[0]["_id"]]["label"] == "relabelled"
    assert docs_a[clash["_id"]]["label"] == "fixed by hand"
    assert docs_a[clash["_id"]]["extraction_type"] == "manual"
    assert docs_a[manual["_id"]]["label"] == "curated"
    assert a[3]["_id"] not in docs_a and a[4]["_id"] not in docs_a
    assert catalog.find(coll, {"acquisition_key": "acq/b"}) == b_before  # untouched

    # idempotent: the same run again leaves identical contents and gives identical counts
    snapshot = _snapshot(catalog, coll)
    again = catalog.replace_partition(coll, "acq/a", new_run)
    assert again == PartitionWriteResult(inserted=0, replaced=3, deleted_stale=0, kept_manual=2)
    assert _snapshot(catalog, coll) == snapshot
    assert catalog.replace_partition(coll, "acq/a", new_run) == again
    assert _snapshot(catalog, coll) == snapshot

    # an empty run removes every automatic document of the partition, never manual ones
    emptied = catalog.replace_partition(coll, "acq/a", [])
    assert emptied == PartitionWriteResult(inserted=0, replaced=0, deleted_stale=3, kept_manual=2)
    left = catalog.find(coll, {"acquisition_key": "acq/a"})
    assert {doc["_id"] for doc in left} == {manual["_id"], clash["_id"]}
    assert catalog.count(coll) == 2 + 3


def test_find_partition_and_ids_living_elsewhere(catalog_and_collection):
    catalog, coll = catalog_and_collection
    a = [_doc("acq/a", n) for n in range(4)]
    catalog.replace_partition(coll, "acq/a", a)
    catalog.replace_partition(coll, "acq/b", [_doc("acq/b", n) for n in range(3)])
    legacy = {"_id": _doc("acq/c", 9)["_id"], "type": "event", "label": "legacy"}  # no key
    catalog.upsert_documents(coll, [legacy])

    for key in ("acq/a", "acq/b", "acq/none"):
        expected = sorted(catalog.find(coll, {"acquisition_key": key}), key=lambda d: d["_id"])
        assert sorted(catalog.find_partition(coll, key), key=lambda d: d["_id"]) == expected
    projected = catalog.find_partition(coll, "acq/a", projection=["event_path"])
    assert sorted(projected, key=lambda d: d["_id"]) == sorted(
        ({"_id": d["_id"], "event_path": str(d["event_path"])} for d in a),
        key=lambda d: d["_id"],
    )

    # a run of acq/c whose event id is the legacy document's: replaced, not duplicated
    result = catalog.replace_partition(coll, "acq/c", [_doc("acq/c", 9), _doc("acq/c", 10)])
    assert result == PartitionWriteResult(inserted=1, replaced=1, deleted_stale=0, kept_manual=0)
    assert catalog.count(coll) == 4 + 3 + 2
    moved = catalog.find(coll, {"_id": legacy["_id"]})
    assert len(moved) == 1 and moved[0]["acquisition_key"] == "acq/c"
    assert "label" not in moved[0]


def test_documents_round_trip_as_plain_values(catalog_and_collection):
    catalog, coll = catalog_and_collection
    doc = _doc("acq/a", 3, nested={"pos": (np.int32(4), np.float64(1.25))})
    catalog.replace_partition(coll, "acq/a", [doc])
    [stored] = catalog.find(coll, {"_id": doc["_id"]})
    assert stored == {
        "_id": doc["_id"],
        "acquisition_key": "acq/a",
        "extraction_type": "automatic",
        "frames": [3, 13],
        "crop_box": [3, 4, 259, 260],
        "event_path": "/data/event_data_points/ev_3",
        "fps": 2.5,
        "type": "event",
        "nested": {"pos": [4, 1.25]},
    }
    assert type(stored["_id"]) is str and re.fullmatch(r"[0-9a-f]{24}", stored["_id"])
    assert type(stored) is dict and type(stored["nested"]) is dict
    assert catalog.find(coll, {"_id": doc["_id"]}, projection=["frames"]) == [
        {"_id": doc["_id"], "frames": [3, 13]}
    ]
    assert catalog.find(coll, {"_id": doc["_id"]}, projection={"fps": 1, "_id": 0}) == [
        {"fps": 2.5}
    ]


def test_find_count_limit(catalog_and_collection):
    catalog, coll = catalog_and_collection
    catalog.replace_partition(coll, "a", [_doc("a", n) for n in range(6)])
    catalog.replace_partition(coll, "b", [_doc("b", n) for n in range(4)])
    assert catalog.count(coll) == 10
    assert catalog.count(coll, {"acquisition_key": "b"}) == 4
    assert len(catalog.find(coll, limit=3)) == 3
    assert len(catalog.find(coll, {"acquisition_key": "a"})) == 6
    assert catalog.find(collection_name("never_written")) == []
    assert catalog.count(collection_name("never_written")) == 0


def test_delete_and_mark_partition(catalog_and_collection):
    catalog, coll = catalog_and_collection
    catalog.replace_partition(coll, "a", [_doc("a", n) for n in range(3)])
    catalog.replace_partition(coll, "b", [_doc("b", n) for n in range(2)])
    catalog.upsert_documents(coll, [_doc("a", 50, extraction="manual")])
    assert catalog.mark_partition_removed(coll, "a") == 4
    marked = catalog.find(coll, {"acquisition_removed": True})
    assert len(marked) == 4 and {d["acquisition_key"] for d in marked} == {"a"}
    assert catalog.delete_partition(coll, "a") == 3
    assert [d["extraction_type"] for d in catalog.find(coll, {"acquisition_key": "a"})] == [
        "manual"
    ]
    assert catalog.delete_partition(coll, "a", keep_manual=False) == 1
    assert catalog.count(coll) == 2


def test_upsert_documents(catalog_and_collection):
    catalog, coll = catalog_and_collection
    docs = [_doc("legacy", n, extraction="manual") for n in range(4)]
    assert catalog.upsert_documents(coll, docs) == UpsertResult(inserted=4, replaced=0)
    changed = [dict(docs[0], label="new"), _doc("legacy", 9)]
    assert catalog.upsert_documents(coll, changed) == UpsertResult(inserted=1, replaced=1)
    assert catalog.count(coll) == 5
    [first] = catalog.find(coll, {"_id": docs[0]["_id"]})
    assert first["label"] == "new"
    assert catalog.upsert_documents(coll, []) == UpsertResult(0, 0)


def test_invalid_documents_are_refused(catalog_and_collection):
    catalog, coll = catalog_and_collection
    doc = _doc("a", 1)
    with pytest.raises(ValueError, match="duplicate"):
        catalog.replace_partition(coll, "a", [doc, dict(doc)])
    with pytest.raises(ValueError, match="acquisition_key"):
        catalog.replace_partition(coll, "b", [doc])
    with pytest.raises(ValueError, match="_id"):
        catalog.replace_partition(coll, "a", [{"acquisition_key": "a"}])
    assert catalog.count(coll) == 0
    filled = catalog.replace_partition(coll, "a", [{"_id": "0" * 24}])
    assert filled.inserted == 1
    [stored] = catalog.find(coll)
    assert stored["acquisition_key"] == "a" and stored["extraction_type"] == "automatic"


def test_set_field(catalog_and_collection):
    catalog, coll = catalog_and_collection
    docs = [_doc("a", n) for n in range(4)]
    catalog.replace_partition(coll, "a", docs)
    values = {docs[0]["_id"]: "train", docs[2]["_id"]: np.str_("eval"), "0" * 24: "missing"}
    assert catalog.set_field(coll, values, "dataset_split") == 2
    found = {d["_id"]: d.get("dataset_split") for d in catalog.find(coll)}
    assert found == {
        docs[0]["_id"]: "train",
        docs[1]["_id"]: None,
        docs[2]["_id"]: "eval",
        docs[3]["_id"]: None,
    }
    assert catalog.set_field(coll, {}, "dataset_split") == 0


# -- the protocol and the factory ---------------------------------------------------------

PROTOCOL_MEMBERS = [
    "open",
    "embedded_folder",
    "collection_name",
    "is_embedded",
    "database_name",
    "describe",
    "find",
    "count",
    "find_partition",
    "replace_partition",
    "upsert_documents",
    "delete_partition",
    "mark_partition_removed",
    "set_field",
    "close",
]


def test_implementations_follow_the_protocol(catalog_and_collection):
    catalog, _ = catalog_and_collection
    assert isinstance(catalog, EventCatalog)
    inherited = {"embedded_folder", "collection_name"}  # the protocol's own, shared by all
    for member in PROTOCOL_MEMBERS:
        assert member in vars(EventCatalog), member
        owner = next(cls for cls in type(catalog).__mro__ if member in vars(cls))
        assert (owner is EventCatalog) == (member in inherited), (
            f"{type(catalog).__name__}.{member} comes from {owner.__name__}"
        )
    assert catalog.__enter__() is catalog  # closed by the fixture


def test_factory_picks_the_implementation(tmp_path):
    with EventCatalog.open(None, home=tmp_path) as catalog:
        assert type(catalog) is EmbeddedCatalog
    with open_catalog("montydb://elsewhere", home=tmp_path) as catalog:
        assert type(catalog) is EmbeddedCatalog
    with open_catalog("mongodb://localhost:27017", home=tmp_path) as catalog:
        assert type(catalog) is ServerCatalog
    assert EventCatalog.embedded_folder("mongodb://localhost", home=tmp_path) is None
    assert EventCatalog.embedded_folder("", home=tmp_path) == (tmp_path / "catalog").resolve()
