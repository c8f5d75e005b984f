"""The fast YAML emitter: everything it writes reads back identically with PyYAML."""

from __future__ import annotations

import datetime as dt
import random

import pytest
import yaml

from deep_events_dagster.core.yaml_text import dump_yaml

TRICKY_STRINGS = [
    "",
    " ",
    "plain",
    "two words",
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "N",
    "null",
    "Null",
    "~",
    "true",
    "False",
    "123",
    "0x1f",
    "0o17",
    "1_000",
    "1e5",
    "1.5",
    ".inf",
    "-.inf",
    ".nan",
    "NaN",
    "2024-01-02",
    "2024-01-02 10:11:12",
    "250312",
    "12:30:00",
    "a: b",
    "a #b",
    "#comment",
    "- item",
    "-",
    "?",
    "key:",
    "<<",
    "=",
    "!tag",
    "&anchor",
    "*alias",
    "@at",
    "`tick",
    "%percent",
    "|",
    ">",
    "'single'",
    '"double"',
    "back\\slash",
    "tab\there",
    "new\nline",
    "trailing ",
    " leading",
    "carriage\rreturn",
    "bell\x07",
    "del\x7f",
    "nel\x85",
    "nbsp\xa0",
    "line sep\u2028",
    "para sep\u2029",
    "bom\ufeff",
    "µm",
    "Zellkern Ö",
    "日本語",
    "emoji 🦠",
    "/data/2024 run [1]/cell (a)",
    "C:\\data\\movie.ome.tif",
    "ev_cos7_isim_fluorescence_00be3ff286626fde781804f4",
    "Pixels:0",
    "{flow}",
    "[list]",
    "a, b",
]


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_strings_round_trip_as_values_and_keys(text):
    document = {"value": text, text: 1, "nested": {"list": [text, {"k": text}]}}
    assert yaml.safe_load(dump_yaml(document)) == document


@pytest.mark.parametrize(
    "value",
    [
        0,
        -7,
        10**20,
        0.0,
        -0.0,
        5.0,
        0.056,
        1e-05,
        -2.5e300,
        1e16,
        float("inf"),
        float("-inf"),
        True,
        False,
        None,
    ],
)
def test_scalars_keep_type_and_value(value):
    loaded = yaml.safe_load(dump_yaml({"x": value}))["x"]
    assert type(loaded) is type(value)
    assert loaded == value


def test_nan_reads_back_as_nan():
    loaded = yaml.safe_load(dump_yaml({"x": float("nan")}))["x"]
    assert loaded != loaded


def test_dates_and_datetimes_are_yaml_timestamps():
    document = {"day": dt.date(2025, 3, 12), "when": dt.datetime(2025, 3, 12, 10, 11, 12, 5000)}
    assert yaml.safe_load(dump_yaml(document)) == document


def test_collections_and_layout():
    document = {
        "frames": [1, 12],
        "crop_box": (127, 1393, 383, 1649),
        "detections": [[3, 120.5, 340.25], [4, 121.0, 341.0]],
        "empty_list": [],
        "empty_map": {},
        "ome": {"channel": {"id": "Channel:0:0", "name": "mito"}, "size_t": 100},
        "cell_line": ["cos7"],
        "records": [{"a": 1, "b": [1, 2]}, {}, [], "x", {"c": {"d": None}}],
    }
    text = dump_yaml(document)
    loaded = yaml.safe_load(text)
    assert loaded == {**document, "crop_box": [127, 1393, 383, 1649]}
    lines = text.splitlines()
    assert "frames: [1, 12]" in lines
    assert "detections: [[3, 120.5, 340.25], [4, 121.0, 341.0]]" in lines
    assert "  channel:" in lines and "    id: Channel:0:0" in lines
    assert "- a: 1" in lines and "  b: [1, 2]" in lines
    assert list(loaded) == list(document)  # key order kept


def test_random_documents_round_trip():
    rng = random.Random(1234)
    alphabet = "aZ09 _-./:#'\"\\\t\n\r{}[],&*!|>%@`?~\x00\x1f\x7f\x85\xa0µ日🦠\u2028\ufeff"

    def string() -> str:
        if rng.random() < 0.3:
            return rng.choice(TRICKY_STRINGS)
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))

    def value(depth: int):
        roll = rng.random()
        if depth < 3 and roll < 0.15:
            return {string(): value(depth + 1) for _ in range(rng.randint(0, 4))}
        if depth < 3 and roll < 0.3:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return rng.choice(
            [
                None,
                rng.random() < 0.5,
                rng.randint(-(10**12), 10**12),
                rng.uniform(-1e6, 1e6),
                rng.choice([1e-300, 3.5e-7, 1e22]),
                string(),
            ]
        )

    for _ in range(2000):
        document = {string(): value(0) for _ in range(rng.randint(1, 6))}
        assert yaml.safe_load(dump_yaml(document)) == document, dump_yaml(document)


def test_refuses_what_it_cannot_write():
    with pytest.raises(TypeError, match="set"):
        dump_yaml({"x": {1, 2}})
    with pytest.raises(TypeError, match="keys must be strings"):
        dump_yaml({"x": {1: "a"}})
