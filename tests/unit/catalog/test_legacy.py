"""Import of original deep-events event folders (real legacy data when present, else skipped)."""

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.catalog.legacy import (
    LegacyImportReport,
    find_event_folders,
    import_legacy_events,
    import_legacy_folders,
    path_id,
)
from deep_events_dagster.cli import main

SHARED_DATA_ENV = "DEEP_EVENTS_SHARED_DATA"
KNOWN_ID = "643a9c8b4feb4bc13e2d368c"
HEX24 = re.compile(r"[0-9a-f]{24}")


def legacy_data() -> Path:
    """The five real legacy event folders: ``$DEEP_EVENTS_SHARED_DATA/legacy_events``, else
    ``<repo>/../shared/data/legacy_events``."""
    base = os.environ.get(SHARED_DATA_ENV)
    if base:
        return Path(base) / "legacy_events"
    return Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "legacy_events"


LEGACY = legacy_data()
needs_legacy = pytest.mark.skipif(
    not LEGACY.is_dir(), reason=f"legacy event folders not found at {LEGACY}"
)


@pytest.fixture
def catalog(tmp_path):
    with EventCatalog.open(None, home=tmp_path / "home") as cat:
        yield cat


def copy_folder(source: Path, target: Path) -> Path:
    """Copy an event folder with writable permissions (the shared data is read-only)."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        shutil.copyfile(item, target / item.name)
    return target


def copy_legacy(target: Path) -> list[Path]:
    """All real legacy folders copied under ``target`` (same names), sorted."""
    return [copy_folder(f, target / f.name) for f in sorted(LEGACY.iterdir()) if f.is_dir()]


ORIGINAL_EVENT_DB = r"""_id: {id}
augmented: false
cell_line:
- cos7
channel_contrast: null
contrast:
- fluorescence
crop_box:
- 475
- 540
- 731
- 796
date: '220921'
event_content: division
event_path: \\lebnas1.epfl.ch\microsc125\deep_events\original_data\event_data\{name}
frames:
- 3
- 8
label_file: {label_file}
ome:
  physical_size_x: 0.056
  physical_size_x_unit: "\xB5m"
original_path: \\lebnas1.epfl.ch\microsc125\deep_events\original_data\220921_cos7\GFP_5
saving_scheme: {scheme}
type: event
"""


def write_legacy_folder(
    parent: Path,
    name: str,
    event_id: str | None,
    *,
    label_file: str = "ground_truth.tiff",
    gt_name: str = "ground_truth.tif",
    scheme: str = "ws_0.2",
) -> Path:
    """An event folder as the original wrote it (float16 crops, Windows paths, µ escapes)."""
    folder = parent / name
    folder.mkdir(parents=True)
    stack = np.zeros((5, 16, 16), np.float16)
    tifffile.imwrite(folder / "images.tif", stack)
    tifffile.imwrite(folder / gt_name, stack)
    text = ORIGINAL_EVENT_DB.format(
        id=event_id or "", name=name, label_file=label_file, scheme=scheme
    )
    if event_id is None:
        text = text.replace("_id: \n", "")
    (folder / "event_db.yaml").write_text(text, encoding="utf-8")
    return folder


def by_id(documents):
    return {d["_id"]: d for d in documents}


# -------------------------------------------------------------------- real legacy data


@needs_legacy
def test_real_folders_keep_ids_fields_and_get_current_paths(catalog):
    report = import_legacy_events(catalog, LEGACY, "legacy")
    assert isinstance(report, LegacyImportReport)
    assert (report.imported, report.inserted, report.updated, report.problems) == (5, 5, 0, ())
    folder_ids = {f.name.rsplit("_", 1)[1] for f in LEGACY.iterdir() if f.is_dir()}
    assert set(report.ids) == folder_ids and KNOWN_ID in report.ids
    docs = by_id(catalog.find("legacy"))
    assert set(docs) == folder_ids
    for _id, doc in docs.items():
        folder = Path(doc["event_path"])
        assert folder.is_absolute() and "\\" not in doc["event_path"]
        assert folder.is_dir() and (folder / "images.tif").is_file()
        assert folder.name.endswith(_id) and folder.samefile(LEGACY / folder.name)
        assert doc["original_event_path"].startswith("\\\\lebnas1.epfl.ch\\microsc125\\")
        assert doc["original_event_path"].endswith(folder.name)
        assert doc["label_file"] == "ground_truth.tif"
        assert (folder / doc["label_file"]).is_file()
        assert doc["original_label_file"] == "ground_truth.tiff"
        assert doc["imported_from"] == "legacy"
        assert doc["saving_scheme"] == "ws_0.2"
        assert doc["type"] == "event" and doc["event_content"] == "division"
    known = docs[KNOWN_ID]
    assert known["frames"] == [32, 38]
    assert known["cell_line"] == ["cos7"]
    assert known["crop_box"] == [475, 540, 731, 796]
    assert known["ome"]["physical_size_x_unit"] == "µm"
    assert known["ome"]["physical_size_x"] == 0.056
    assert known["date"] == "220921"
    # written before the original's June 2023 fix: fps held the interval (TimeIncrement 5000 ms)
    assert known["ome"]["time_increment"] == 5000 and known["ome"]["time_increment_unit"] == "ms"
    assert known["fps"] == 0.2 and known["frame_interval_s"] == 5.0
    assert known["fps_as_written"] == 5.0
    assert report.fps_corrected == 5
    for doc in docs.values():
        assert (doc["fps"], doc["frame_interval_s"], doc["fps_as_written"]) == (0.2, 5.0, 5.0)
    assert known["original_path"].startswith("\\\\lebnas1.epfl.ch\\")


@needs_legacy
def test_reimport_is_idempotent_and_leaves_other_documents_alone(catalog):
    others = [
        {"_id": "a" * 24, "event_path": "/elsewhere/ev_a", "extraction_type": "manual"},
        {"_id": "b" * 24, "event_path": "/elsewhere/ev_b", "acquisition_key": "/data/acq"},
    ]
    catalog.upsert_documents("legacy", others)
    first = import_legacy_events(catalog, LEGACY, "legacy")
    before = by_id(catalog.find("legacy"))
    second = import_legacy_events(catalog, LEGACY, "legacy")
    after = by_id(catalog.find("legacy"))
    assert (first.inserted, first.updated) == (5, 0)
    assert (second.imported, second.inserted, second.updated) == (5, 0, 5)
    assert first.fps_corrected == second.fps_corrected == 5
    assert all(d["fps"] == 0.2 and d["fps_as_written"] == 5.0 for d in second.documents)
    assert second.ids == first.ids
    assert catalog.count("legacy") == 7
    assert catalog.count("legacy", {"imported_from": "legacy"}) == 5
    assert after == before
    assert after["a" * 24] == others[0] and after["b" * 24] == others[1]


@needs_legacy
def test_broken_copy_is_reported_and_the_others_import(tmp_path, catalog):
    folders = copy_legacy(tmp_path / "events")
    broken = folders[2]
    (broken / "event_db.yaml").write_text("_id: [unclosed\nframes: {\n", encoding="utf-8")
    report = import_legacy_events(catalog, tmp_path / "events", "legacy")
    assert (report.imported, report.inserted) == (4, 4)
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"{broken.resolve()}: malformed event_db.yaml")
    assert catalog.count("legacy") == 4
    assert broken.name.rsplit("_", 1)[1] not in report.ids
    assert all(
        Path(d["event_path"]).parent == (tmp_path / "events").resolve()
        for d in catalog.find("legacy")
    )


@needs_legacy
def test_copies_with_awkward_names_point_to_their_new_folders(tmp_path, catalog):
    names = [
        'it\'s "quoted" [and] {braced}',
        "ev_cos7_isim_['fluorescence'] with spaces",
        "back\\slash & semicolon; $dollar",
        "ünïcode µm #hash",
        "deep/er/ ['x'] ",
    ]
    root = tmp_path / "data [copy] 'legacy'"
    sources = sorted(f for f in LEGACY.iterdir() if f.is_dir())
    targets = [copy_folder(src, root / name) for src, name in zip(sources, names, strict=True)]
    report = import_legacy_events(catalog, root, "legacy")
    assert report.problems == () and report.imported == 5
    docs = by_id(catalog.find("legacy"))
    for src, target in zip(sources, targets, strict=True):
        doc = docs[src.name.rsplit("_", 1)[1]]
        assert doc["event_path"] == target.resolve().as_posix()
        assert Path(doc["event_path"]).samefile(target)
        assert (Path(doc["event_path"]) / "images.tif").is_file()
        assert doc["original_event_path"].endswith(src.name)
        # the path is a usable query key
        assert catalog.find("legacy", {"event_path": doc["event_path"]}) == [doc]


@needs_legacy
def test_top_folder_may_itself_be_an_event_folder(catalog):
    folder = LEGACY / f"ev_cos7_isim_['fluorescence']_{KNOWN_ID}"
    report = import_legacy_events(catalog, folder, "legacy")
    assert report.ids == (KNOWN_ID,) and report.problems == ()
    assert catalog.find("legacy")[0]["event_path"] == folder.resolve().as_posix()


@needs_legacy
def test_cli_imports_and_reports(tmp_path, capsys):
    home = tmp_path / "home"
    args = ["catalog", "import", str(LEGACY), "--collection", "legacy", "--home", str(home)]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "5 event folders imported into legacy (5 new, 0 updated), 0 failed" in out.out
    assert "fps corrected in 5 documents" in out.out
    assert out.err == ""
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "(0 new, 5 updated), 0 failed" in out and "fps corrected in 5 documents" in out
    with EventCatalog.open(None, home=home) as cat:
        assert cat.count("legacy") == 5
        assert cat.count("legacy", {"fps": 0.2, "fps_as_written": 5.0}) == 5


@needs_legacy
def test_cli_fails_with_one_line_per_broken_folder(tmp_path, capsys):
    folders = copy_legacy(tmp_path / "events")
    (folders[0] / "images.tif").unlink()
    home = tmp_path / "home"
    code = main(
        [
            "catalog",
            "import",
            str(tmp_path / "events"),
            "--collection",
            "legacy",
            "--home",
            str(home),
        ]
    )
    out = capsys.readouterr()
    assert code == 1
    assert out.err.splitlines() == [f"FAILED  {folders[0].resolve()}: images.tif not found"]
    assert "4 event folders imported into legacy (4 new, 0 updated), 1 failed" in out.out


# -------------------------------------------------------------------- synthetic folders


def test_original_style_folder_without_shared_data(tmp_path, catalog):
    folder = write_legacy_folder(tmp_path / "ev", "ev_cos7_isim_['fluorescence']_x", "c" * 24)
    report = import_legacy_events(catalog, tmp_path / "ev", "legacy")
    assert report.ids == ("c" * 24,) and report.problems == ()
    (doc,) = catalog.find("legacy")
    assert doc["event_path"] == folder.resolve().as_posix()
    assert doc["original_event_path"] == (
        "\\\\lebnas1.epfl.ch\\microsc125\\deep_events\\original_data\\event_data\\" + folder.name
    )
    assert doc["ome"]["physical_size_x_unit"] == "µm"
    assert doc["label_file"] == "ground_truth.tif"
    assert doc["original_label_file"] == "ground_truth.tiff"
    assert report.documents == (doc,)


def edit_event_db(folder: Path, ome: dict | None = None, **fields) -> None:
    """Change top-level fields (and ``ome`` entries) of a folder's event_db.yaml."""
    path = folder / "event_db.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(fields)
    data["ome"].update(ome or {})
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_fps_without_time_increment_is_kept_as_written(tmp_path, catalog):
    folder = write_legacy_folder(tmp_path / "ev", "ev_a", "c" * 24)
    edit_event_db(folder, fps=5.0)
    report = import_legacy_events(catalog, tmp_path / "ev", "legacy")
    (doc,) = catalog.find("legacy")
    assert doc["fps"] == 5.0  # which meaning it has cannot be told
    assert "frame_interval_s" not in doc and "fps_as_written" not in doc
    assert report.fps_corrected == 0


@pytest.mark.parametrize(
    ("ome", "written", "fps", "interval"),
    [
        ({"time_increment": 20, "time_increment_unit": "ms"}, 0.02, 50.0, 0.02),
        ({"time_increment": 0.5}, 0.5, 2.0, 0.5),  # OME's default unit: seconds
        ({"time_increment": 5000.0, "time_increment_unit": "ms"}, 0.0, 0.2, 5.0),
    ],
)
def test_fps_from_time_increment_replaces_the_interval(
    tmp_path, catalog, ome, written, fps, interval
):
    folder = write_legacy_folder(tmp_path / "ev", "ev_a", "c" * 24)
    edit_event_db(folder, ome=ome, fps=written)
    report = import_legacy_events(catalog, tmp_path / "ev", "legacy")
    (doc,) = catalog.find("legacy")
    assert (doc["fps"], doc["frame_interval_s"], doc["fps_as_written"]) == (fps, interval, written)
    assert report.fps_corrected == 1
    again = import_legacy_events(catalog, tmp_path / "ev", "legacy")
    assert again.fps_corrected == 1 and catalog.find("legacy") == [doc]


def test_fps_already_in_frames_per_second_is_not_corrected(tmp_path, catalog):
    root = tmp_path / "ev"
    right = write_legacy_folder(root, "ev_right", "c" * 24)
    edit_event_db(right, ome={"time_increment": 5000, "time_increment_unit": "ms"}, fps=0.2)
    missing = write_legacy_folder(root, "ev_missing", "d" * 24)
    edit_event_db(missing, ome={"time_increment": 250, "time_increment_unit": "ms"})
    ours = write_legacy_folder(root, "ev_ours", "e" * 24)  # written after the fix
    edit_event_db(ours, ome={"time_increment": 1.0}, fps=49.0, frame_interval_s=0.02)
    report = import_legacy_events(catalog, root, "legacy")
    docs = by_id(catalog.find("legacy"))
    assert report.fps_corrected == 0 and report.imported == 3
    assert (docs["c" * 24]["fps"], docs["c" * 24]["frame_interval_s"]) == (0.2, 5.0)
    assert (docs["d" * 24]["fps"], docs["d" * 24]["frame_interval_s"]) == (4.0, 0.25)
    assert (docs["e" * 24]["fps"], docs["e" * 24]["frame_interval_s"]) == (49.0, 0.02)
    assert not any("fps_as_written" in d for d in docs.values())


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda f: (f / "event_db.yaml").write_text("a: [1,\n"), "malformed event_db.yaml"),
        (lambda f: (f / "event_db.yaml").write_text("- 1\n- 2\n"), "not a mapping (got list)"),
        (lambda f: (f / "event_db.yaml").write_text(""), "event_db.yaml is empty"),
        (lambda f: (f / "images.tif").unlink(), "images.tif not found"),
        (lambda f: (f / "images.tif").write_bytes(b""), "images.tif is empty"),
        (lambda f: (f / "ground_truth.tif").unlink(), "ground truth not found"),
        (lambda f: (f / "event_db.yaml").write_text("_id: {a: 1}\n"), "is not a string"),
    ],
)
def test_each_kind_of_broken_folder_is_one_problem(tmp_path, catalog, damage, problem):
    root = tmp_path / "events"
    good = write_legacy_folder(root, "ev_good", "d" * 24)
    bad = write_legacy_folder(root, "ev_bad", "e" * 24)
    damage(bad)
    report = import_legacy_events(catalog, root, "legacy")
    assert report.ids == ("d" * 24,)
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"{bad.resolve()}: ")
    assert problem in report.problems[0]
    assert catalog.find("legacy")[0]["event_path"] == good.resolve().as_posix()


def test_missing_id_is_derived_from_the_folder_path(tmp_path, catalog):
    folder = write_legacy_folder(tmp_path, "ev_no_id", None)
    first = import_legacy_events(catalog, folder, "legacy")
    second = import_legacy_events(catalog, folder, "legacy")
    (event_id,) = first.ids
    assert HEX24.fullmatch(event_id) and event_id == path_id(folder)
    assert second.ids == first.ids and (second.inserted, second.updated) == (0, 1)
    assert catalog.count("legacy") == 1
    assert path_id(tmp_path / "elsewhere") != event_id


def test_all_digit_id_read_as_int_by_yaml_keeps_its_text(tmp_path, catalog):
    write_legacy_folder(tmp_path, "ev_octal", "012345670123456701234567")
    write_legacy_folder(tmp_path, "ev_decimal", "987654321098765432109876")
    report = import_legacy_events(catalog, tmp_path, "legacy")
    assert set(report.ids) == {"012345670123456701234567", "987654321098765432109876"}


def test_label_file_as_windows_path_and_tiff_on_disk(tmp_path, catalog):
    write_legacy_folder(
        tmp_path, "ev_a", "1" * 23 + "a", label_file=r"'C:\data\ev\ground_truth.tiff'"
    )
    write_legacy_folder(tmp_path, "ev_b", "2" * 23 + "b", gt_name="ground_truth.tiff")
    write_legacy_folder(tmp_path, "ev_c", "3" * 23 + "c", label_file="ground_truth.tif")
    docs = by_id(import_legacy_events(catalog, tmp_path, "legacy").documents)
    assert docs["1" * 23 + "a"]["label_file"] == "ground_truth.tif"
    assert docs["1" * 23 + "a"]["original_label_file"] == r"C:\data\ev\ground_truth.tiff"
    assert docs["2" * 23 + "b"]["label_file"] == "ground_truth.tiff"
    assert "original_label_file" not in docs["2" * 23 + "b"]
    assert "original_label_file" not in docs["3" * 23 + "c"]


def test_any_saving_scheme_is_accepted(tmp_path, catalog):
    write_legacy_folder(tmp_path, "ev_s", "f" * 24, scheme="some_future_scheme")
    (doc,) = import_legacy_events(catalog, tmp_path, "legacy").documents
    assert doc["saving_scheme"] == "some_future_scheme"


def test_same_id_in_two_folders_is_a_problem_for_the_second(tmp_path, catalog):
    first = write_legacy_folder(tmp_path, "ev_1", "9" * 24)
    second = write_legacy_folder(tmp_path, "ev_2", "9" * 24)
    report = import_legacy_events(catalog, tmp_path, "legacy")
    assert report.ids == ("9" * 24,)
    assert report.problems == (
        f"{second.resolve()}: _id {'9' * 24} is also the id of {first.resolve()}",
    )
    assert catalog.find("legacy")[0]["event_path"] == first.resolve().as_posix()


def test_moved_folder_reimport_updates_its_path(tmp_path, catalog):
    folder = write_legacy_folder(tmp_path / "old", "ev_m", "5" * 24)
    import_legacy_events(catalog, tmp_path / "old", "legacy")
    moved = tmp_path / "new" / "ev_m"
    moved.parent.mkdir()
    folder.rename(moved)
    report = import_legacy_events(catalog, tmp_path / "new", "legacy")
    assert (report.inserted, report.updated) == (0, 1)
    (doc,) = catalog.find("legacy")
    assert doc["event_path"] == moved.resolve().as_posix()
    assert doc["original_event_path"].startswith("\\\\lebnas1")


def test_hidden_and_nested_folders(tmp_path, catalog):
    write_legacy_folder(tmp_path / "a" / "b" / "c", "ev_deep", "6" * 24)
    write_legacy_folder(tmp_path / "a" / ".tmp-ev_x-123", "ev_tmp", "7" * 24)
    write_legacy_folder(tmp_path / ".hidden", "ev_h", "8" * 24)
    folders, problems = find_event_folders([tmp_path, tmp_path / "a"])  # overlap: found once
    assert folders == [(tmp_path / "a" / "b" / "c" / "ev_deep").resolve()] and problems == []
    report = import_legacy_folders(catalog, [tmp_path, tmp_path / "a"], "legacy")
    assert report.ids == ("6" * 24,)


def test_no_event_folders_and_missing_folder_are_problems(tmp_path, catalog):
    (tmp_path / "empty").mkdir()
    report = import_legacy_folders(catalog, [tmp_path / "empty", tmp_path / "nope"], "legacy")
    assert report.imported == 0
    assert report.problems == (
        f"{(tmp_path / 'empty').resolve()}: no event folders (no event_db.yaml at or below it)",
        f"{tmp_path / 'nope'}: not a folder",
    )
    assert catalog.count("legacy") == 0


def test_latin1_event_db_is_read(tmp_path, catalog):
    folder = write_legacy_folder(tmp_path, "ev_l", "4" * 24)
    text = (folder / "event_db.yaml").read_text(encoding="utf-8")
    text = text.replace('"\\xB5m"', "µm")
    (folder / "event_db.yaml").write_bytes(text.encode("latin-1"))
    (doc,) = import_legacy_events(catalog, tmp_path, "legacy").documents
    assert doc["ome"]["physical_size_x_unit"] == "µm"


def test_cli_refuses_a_missing_folder(tmp_path, capsys):
    home = tmp_path / "home"
    code = main(
        ["catalog", "import", str(tmp_path / "nope"), "--collection", "legacy", "--home", str(home)]
    )
    assert code == 2
    assert "not a folder" in capsys.readouterr().err
