"""Bad input through ``deep-events ingest``: a clear error naming the file, nothing else harmed.

Each case breaks one file of one acquisition in a two-acquisition synthetic tree and runs the
real command (in this process, on a home in ``tmp_path``) three times:

1. broken from the start: exit 1, exactly one ``FAILED`` line naming the acquisition, the bad
   file and the problem; the other acquisition fully in the catalog; nothing derived for the
   broken one past the step that failed; no ``.tmp-*`` leftovers;
2. repaired: exit 0 (the tree itself was fine), every acquisition in the catalog;
3. broken again: the same failure, and the broken acquisition's catalog documents, manifest,
   ground truth and event folders are exactly those of step 2.

The positive case runs folder and file names with spaces, ``µ``, ``é``, brackets and quotes.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.cli import main
from deep_events_dagster.defs.partitions import ACQUISITIONS
from deep_events_dagster.testing.trees import SyntheticAcquisition, SyntheticTree, generate_tree

KIND = "points"
COLLECTION = f"event_data_{KIND}"
N_FRAMES, HEIGHT, WIDTH = 16, 264, 300
EVENT_FILES = {"images.tif", "ground_truth.tif", "event_db.yaml"}


# ---------------------------------------------------------------- running and looking


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def failed(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith("FAILED")]

    @property
    def ok(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith("ok ")]


def ingest(root: Path, home: Path, capsys) -> Outcome:
    capsys.readouterr()
    code = main(["ingest", str(root), "--home", str(home)])
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def manifest(acq: SyntheticAcquisition) -> list[dict]:
    data = yaml.safe_load((acq.folder / f"events_{KIND}.yaml").read_text(encoding="utf-8"))
    assert data["acquisition_key"] == acq.folder.as_posix()
    return data["events"]


def catalog_documents(home: Path, acq: SyntheticAcquisition) -> list[dict]:
    with EventCatalog.open(None, home=home) as catalog:
        docs = catalog.find(COLLECTION, {"acquisition_key": acq.folder.as_posix()})
    return sorted(docs, key=lambda d: d["_id"])


def event_folders(root: Path) -> set[str]:
    folder = root / COLLECTION
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def assert_fully_ingested(home: Path, root: Path, acq: SyntheticAcquisition) -> None:
    """The acquisition's manifest, folders and catalog documents agree with the truth."""
    entries = manifest(acq)
    ids = [e["_id"] for e in entries]
    docs = catalog_documents(home, acq)
    assert sorted(d["_id"] for d in docs) == sorted(ids)
    assert len(set(ids)) == len(ids) > 0
    with EventCatalog.open(None, home=home) as catalog:
        assert catalog.count(COLLECTION, {"acquisition_key": acq.folder.as_posix()}) == len(ids)
    assert sum(e["positive"] for e in entries) == len(acq.events_of(KIND))
    assert {e["folder"] for e in entries} <= event_folders(root)
    for entry in entries:
        folder = root / COLLECTION / entry["folder"]
        assert {p.name for p in folder.iterdir()} == EVENT_FILES


# ---------------------------------------------------------------- ways to break an acquisition


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def truncate_movie(keep: float) -> Callable[[SyntheticAcquisition], Path]:
    def breaker(acq: SyntheticAcquisition) -> Path:
        data = acq.movie_path.read_bytes()
        acq.movie_path.write_bytes(data[: int(len(data) * keep)])
        return acq.movie_path

    return breaker


def garbage_movie(acq: SyntheticAcquisition) -> Path:
    size = acq.movie_path.stat().st_size
    acq.movie_path.write_bytes(np.random.default_rng(1).bytes(size))
    return acq.movie_path


def movie_without_ome(acq: SyntheticAcquisition) -> Path:
    pixels = tifffile.imread(acq.movie_path)
    tifffile.imwrite(acq.movie_path, pixels, ome=False)  # else tifffile writes OME for .ome.tif
    with tifffile.TiffFile(acq.movie_path) as tif:
        assert len(tif.pages) == N_FRAMES * (2 if acq.axes == "TCYX" else 1)
        assert "<OME" not in (tif.pages.first.description or "")
    return acq.movie_path


def size_t_disagrees(acq: SyntheticAcquisition) -> Path:
    data = acq.movie_path.read_bytes()
    assert data.count(f'SizeT="{N_FRAMES}"'.encode()) == 1
    acq.movie_path.write_bytes(
        data.replace(f'SizeT="{N_FRAMES}"'.encode(), f'SizeT="{N_FRAMES + 1}"'.encode())
    )
    return acq.movie_path


def empty_csv(acq: SyntheticAcquisition) -> Path:
    path = acq.csv_files[KIND][0]
    path.write_bytes(b"")
    return path


def header_only_csv(acq: SyntheticAcquisition) -> Path:
    path = acq.csv_files[KIND][0]
    _write_rows(path, _rows(path)[:1])
    return path


def drop_column(column: str) -> Callable[[SyntheticAcquisition], Path]:
    def breaker(acq: SyntheticAcquisition) -> Path:
        path = acq.csv_files[KIND][0]
        rows = _rows(path)
        c = rows[0].index(column)
        _write_rows(path, [row[:c] + row[c + 1 :] for row in rows])
        return path

    return breaker


def set_value(column: str, value: str, row: int = 0) -> Callable[[SyntheticAcquisition], Path]:
    def breaker(acq: SyntheticAcquisition) -> Path:
        path = acq.csv_files[KIND][0]
        rows = _rows(path)
        rows[1 + row][rows[0].index(column)] = value
        _write_rows(path, rows)
        return path

    return breaker


def write_manual(text: str) -> Callable[[SyntheticAcquisition], Path]:
    def breaker(acq: SyntheticAcquisition) -> Path:
        path = acq.folder / "db_manual.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return breaker


@dataclass(frozen=True)
class Case:
    """One way to break acquisition ``target`` (0: TYX, CSV in µm; 1: TCYX, CSVs in px)."""

    name: str
    target: int
    breaker: Callable[[SyntheticAcquisition], Path]
    step: str  # the first step that fails: "movie", "metadata" or "annotations"
    problem: str  # regular expression the reason must match (after the file's path)


PLANES = f"{N_FRAMES} planes"
CASES = [
    Case(
        "truncated-movie",
        0,
        truncate_movie(0.6),
        "movie",
        rf"promises .* = {PLANES} but the file holds \d+ pages; the file is truncated",
    ),
    Case(
        "movie-missing-its-last-bytes",
        1,
        truncate_movie(0.9999),
        "movie",
        rf"= {2 * N_FRAMES} planes but the file holds \d+ pages; the file is truncated",
    ),
    Case("garbage-movie", 1, garbage_movie, "movie", r"cannot read TIFF .*not a TIFF file"),
    Case("tiff-without-ome", 0, movie_without_ome, "movie", r"not an OME-TIFF"),
    Case(
        "ome-size-t-disagrees",
        1,
        size_t_disagrees,
        "movie",
        rf"SizeT={N_FRAMES + 1} × SizeC=2 .* = {2 * (N_FRAMES + 1)} planes "
        rf"but the file holds {2 * N_FRAMES} pages$",  # and no claim of truncation
    ),
    Case("csv-empty", 0, empty_csv, "annotations", r"file is empty"),
    Case("csv-header-only", 1, header_only_csv, "annotations", r"only a header"),
    Case(
        "csv-missing-x-column",
        0,
        drop_column("axis-2"),
        "annotations",
        r"missing column\(s\) axis-2",
    ),
    Case(
        "csv-missing-channel-column",
        1,
        drop_column("axis-1"),
        "annotations",
        r"missing column\(s\) axis-1",
    ),
    Case(
        "csv-non-numeric",
        0,
        set_value("axis-1", "twelve", row=1),
        "annotations",
        r"non-numeric value 'twelve' in column axis-1, row 1 \(line 3\)",
    ),
    Case(
        "csv-nan",
        1,
        set_value("axis-2", "NaN", row=2),
        "annotations",
        r"missing value \(NaN\) in column axis-2, row 2 \(line 4\)",
    ),
    Case(
        "csv-negative-coordinate",
        0,
        set_value("axis-2", "-1.5"),  # µm: x = -1.5 / 0.056 px
        "annotations",
        r"1 of \d+ points outside the movie \(row 0: x=-26\.786 < 0\)",
    ),
    Case(
        "csv-outside-the-image",
        1,
        set_value("axis-2", str(float(HEIGHT))),  # px: y = 264 in a 264-row image
        "annotations",
        rf"1 of \d+ points outside the movie \(row 0: y=264\.0 > 263 \(height {HEIGHT}\)\)",
    ),
    Case(
        "csv-frame-beyond-the-movie",
        0,
        set_value("axis-0", f"{N_FRAMES}.0", row=3),
        "annotations",
        rf"outside the movie \(row 3: frame {N_FRAMES} ≥ {N_FRAMES} frames\)",
    ),
    Case(
        "csv-channel-beyond-the-movie",
        1,
        set_value("axis-1", "2.0"),
        "annotations",
        r"outside the movie \(row 0: channel 2 ≥ 2 channels\)",
    ),
    Case(
        "db-manual-malformed-yaml",
        0,
        write_manual("scale_csv: [true\nlabels: mitochondria\n"),
        "metadata",
        r"malformed YAML",
    ),
    Case(
        "db-manual-not-a-mapping",
        1,
        write_manual("- scale_csv\n- false\n"),
        "metadata",
        r"must be a mapping of field: value, not list",
    ),
]


def make_tree(root: Path) -> SyntheticTree:
    tree = generate_tree(
        root, seed=11, n_acquisitions=2, height=HEIGHT, width=WIDTH, n_frames=N_FRAMES
    )
    first, second = tree.acquisitions
    # what the cases rely on
    assert (first.axes, first.scale_csv, len(first.csv_files[KIND])) == ("TYX", True, 1)
    assert (second.axes, second.scale_csv) == ("TCYX", False)
    assert not (first.folder / "db_manual.yaml").exists()
    assert (second.folder / "db_manual.yaml").is_file()
    assert first.physical_size_x == pytest.approx(0.056)
    return tree


def assert_failure_names_the_file(outcome: Outcome, case: Case, bad: Path, key: str) -> None:
    assert outcome.code == 1, outcome.out
    assert len(outcome.failed) == 1, outcome.out
    line = outcome.failed[0]
    prefix = f"FAILED  {key}: {bad}: "
    assert line.startswith(prefix), line
    assert line.count(str(bad)) == 1, line  # named once, not "file: file: …"
    assert re.search(case.problem, line[len(prefix) :]), line
    assert "1 of 2 acquisitions failed" in outcome.err


DERIVED = (
    "db.yaml",
    f"ground_truth_{KIND}.tif",
    f"ground_truth_{KIND}.json",
    f"events_{KIND}.yaml",
)


def derived_files(acq: SyntheticAcquisition) -> dict[str, bytes]:
    """What ingestion wrote next to the movie, by name."""
    return {n: (acq.folder / n).read_bytes() for n in DERIVED if (acq.folder / n).exists()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_cleanly_and_harms_nothing(case, tmp_path, capsys):
    tree = make_tree(tmp_path / "data")
    home = tmp_path / "home"
    bad_acq = tree.acquisitions[case.target]
    good_acq = tree.acquisitions[1 - case.target]
    key = bad_acq.folder.as_posix()

    # 1. broken from the start
    originals = {p: p.read_bytes() for p in bad_acq.folder.iterdir()}
    bad = case.breaker(bad_acq)
    outcome = ingest(tree.root, home, capsys)
    assert_failure_names_the_file(outcome, case, bad, key)
    assert outcome.ok == [f"ok      {good_acq.folder.as_posix()}"]
    assert_fully_ingested(home, tree.root, good_acq)
    assert catalog_documents(home, bad_acq) == []
    expected_derived = {"db.yaml"} if case.step == "annotations" else set()
    assert set(derived_files(bad_acq)) == expected_derived
    assert event_folders(tree.root) == {e["folder"] for e in manifest(good_acq)}
    assert temporaries(tree.root) == []

    # 2. repaired: everything goes through
    if bad in originals:
        bad.write_bytes(originals[bad])
    else:
        bad.unlink()
    outcome = ingest(tree.root, home, capsys)
    assert outcome.code == 0, outcome.out + outcome.err
    assert outcome.failed == []
    for acq in tree.acquisitions:
        assert_fully_ingested(home, tree.root, acq)
    documents = catalog_documents(home, bad_acq)
    derived = derived_files(bad_acq)
    assert set(derived) == set(DERIVED)
    folders = event_folders(tree.root)

    # 3. broken again: same failure, the acquisition's previous results untouched
    assert case.breaker(bad_acq) == bad
    outcome = ingest(tree.root, home, capsys)
    assert_failure_names_the_file(outcome, case, bad, key)
    assert outcome.ok == [f"ok      {good_acq.folder.as_posix()}"]
    assert catalog_documents(home, bad_acq) == documents
    assert derived_files(bad_acq) == derived  # db.yaml, ground truth, manifest
    assert event_folders(tree.root) == folders
    assert temporaries(tree.root) == []
    assert_fully_ingested(home, tree.root, good_acq)


def test_awkward_folder_names_are_ingested(tmp_path, capsys):
    # spaces, µ, é, brackets, an apostrophe and double quotes, in folders and movie names
    tree = generate_tree(
        tmp_path / "data",
        seed=12,
        n_acquisitions=5,
        height=HEIGHT,
        width=WIDTH,
        n_frames=N_FRAMES,
        channels=(1, 2, 2),
        awkward_names=True,
    )
    names = "".join(
        a.folder.relative_to(tree.root).as_posix() + a.movie_path.name for a in tree.acquisitions
    )
    for awkward in (" ", "µ", "é", "[", "]", "(", "'", '"'):
        assert awkward in names
    home = tmp_path / "home"
    outcome = ingest(tree.root, home, capsys)
    assert outcome.code == 0, outcome.out + outcome.err
    assert outcome.failed == []
    assert sorted(outcome.ok) == sorted(f"ok      {a.folder.as_posix()}" for a in tree.acquisitions)
    all_folders: set[str] = set()
    for acq in tree.acquisitions:
        assert_fully_ingested(home, tree.root, acq)
        entries = manifest(acq)
        all_folders |= {e["folder"] for e in entries}
        for doc in catalog_documents(home, acq):
            assert doc["acquisition_key"] == acq.folder.as_posix()
            name = Path(doc["event_path"]).name
            assert doc["event_path"] == (tree.root / COLLECTION / name).as_posix()
            assert re.fullmatch(r"ev_[a-z0-9._-]+_[0-9a-f]{24}", name)
        db = yaml.safe_load((acq.folder / "db.yaml").read_text(encoding="utf-8"))
        for field in ("date", "cell_line", "microscope", "contrast", "stain"):
            assert db[field] == acq.expected_metadata[field], (acq.folder, field)
    assert event_folders(tree.root) == all_folders
    assert temporaries(tree.root) == []
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert set(instance.get_dynamic_partitions(ACQUISITIONS)) == {
            a.folder.as_posix() for a in tree.acquisitions
        }


def test_each_ingest_in_one_process_uses_its_own_settings(tmp_path, capsys):
    # This file runs many ``ingest`` commands in one process. Dagster keeps the last
    # reconstructed job per process: the second command must not run with the first one's
    # roots and kinds (it did: its event folders went next to the acquisitions' parents).
    first = generate_tree(tmp_path / "a", seed=13, n_acquisitions=1, height=HEIGHT, width=WIDTH)
    second = generate_tree(
        tmp_path / "b", seed=14, n_acquisitions=1, height=HEIGHT, width=WIDTH, kinds=("fission",)
    )
    assert ingest(first.root, tmp_path / "home_a", capsys).code == 0
    capsys.readouterr()
    code = main(
        ["ingest", str(second.root), "--home", str(tmp_path / "home_b"), "--kind", "fission"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    (acq,) = second.acquisitions
    listed = yaml.safe_load((acq.folder / "events_fission.yaml").read_text(encoding="utf-8"))
    assert listed["event_data"] == (second.root / "event_data_fission").as_posix()
    assert event_folders(second.root) == set()  # no points folder
    assert {p.name for p in (second.root / "event_data_fission").iterdir()} == {
        e["folder"] for e in listed["events"]
    }
    assert sum(e["positive"] for e in listed["events"]) == len(acq.events_of("fission")) > 0
    assert not (acq.folder / f"ground_truth_{KIND}.tif").exists()
