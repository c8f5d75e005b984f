"""A kind's movie, channel and label choices (the original's settings dict) against the truth."""

import os

import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.core.acquisition_ref import AcquisitionRef
from deep_events_dagster.core.errors import ConfigurationError, MetadataError, MovieError
from deep_events_dagster.core.events_manifest import read_events_manifest
from deep_events_dagster.core.kinds import (
    KindOptions,
    Variant,
    as_names,
    choose_movie,
    contrast_fragment,
    label_channel,
    negatives_count,
    variants,
)
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import load_vocabulary
from deep_events_dagster.core.pipeline import ingest_acquisition
from deep_events_dagster.testing.ome_tiff import write_ome_movie
from deep_events_dagster.testing.trees import generate_tree

KIND = "points"


def test_negatives_count_follows_the_original():
    assert [negatives_count(v) for v in (True, False, 0, 2, 4)] == [4, 0, 0, 2, 4]
    for bad in (5, -1, "2", 1.5):
        with pytest.raises(ConfigurationError, match="auto_negatives"):
            negatives_count(bad)


def test_variants_are_every_contrast_and_label_combination():
    assert variants(KindOptions("points")) == [Variant()]
    options = KindOptions("points", contrasts=("fluo", "bf"), labels=("mito",))
    assert variants(options) == [Variant("fluo", "mito"), Variant("bf", "mito")]
    assert Variant("bf", "mito").id_suffix() == "contrast=bf|label=mito"
    assert as_names("bf") == ("bf",) and as_names(["a", "b", "a"]) == ("a", "b")
    assert as_names("") == () and as_names(None) == ()


def test_contrast_fragments_and_label_channels_come_from_db_yaml(tmp_path):
    db = tmp_path / "db.yaml"
    metadata = {
        "contrast": {"fluorescence": "_FL", "brightfield": "_BF"},
        "labels": ["mito", "drp1"],
    }
    assert contrast_fragment(metadata, "brightfield", source=db) == "_BF"
    assert contrast_fragment({"contrast": "brightfield"}, "brightfield", source=db) == "brightfield"
    with pytest.raises(MetadataError, match="'phase' is not in contrast") as caught:
        contrast_fragment(metadata, "phase", source=db)
    assert str(db) in str(caught.value)
    assert label_channel(metadata, "drp1", n_channels=2, source=db) == 1
    mapped = {"labels": {"mito": "Mito-Red", "drp1": 0}}
    assert label_channel(mapped, "mito", channel_names=["Drp1-GFP", "Mito-Red"], n_channels=2,
                         source=db) == 1  # fmt: skip
    assert label_channel(mapped, "drp1", n_channels=2, source=db) == 0
    with pytest.raises(MetadataError, match="'er' is not in labels"):
        label_channel(metadata, "er", n_channels=2, source=db)
    with pytest.raises(MetadataError, match="movie has 1 channel"):
        label_channel(metadata, "drp1", n_channels=1, source=db)


def test_the_newest_matching_movie_is_chosen(tmp_path):
    for name, age in (("a_FL.ome.tif", 30), ("a_BF.ome.tif", 20), ("b_BF.ome.tif", 10)):
        (tmp_path / name).write_bytes(b"")
        stamp = 1_700_000_000 - age
        os.utime(tmp_path / name, (stamp, stamp))
    assert choose_movie(tmp_path, fragment="_BF").name == "b_BF.ome.tif"
    assert choose_movie(tmp_path, img_identifier="a_", fragment="_BF").name == "a_BF.ome.tif"
    with pytest.raises(MovieError, match=r"no movie whose name contains '_PH'.*a_BF.ome.tif"):
        choose_movie(tmp_path, fragment="_PH")


# ---------------------------------------------------------------- through the ingestion


def _acquisition(tmp_path, *, channels=1, seed=81):
    tree = generate_tree(tmp_path / "data", seed=seed, n_acquisitions=1, height=256, width=320,
                         n_frames=16, channels=channels)  # fmt: skip
    return tree, tree.acquisitions[0]


def _second_movie(acq, name: str, transform) -> np.ndarray:
    """Write a movie of the same T, Y, X beside the annotated one (older than it)."""
    movie = tifffile.imread(acq.movie_path)
    other = transform(movie)
    path = acq.folder / name
    axes = "TCYX" if other.ndim == 4 else "TYX"
    write_ome_movie(path, other, axes=axes, physical_size_x=acq.physical_size_x,
                    physical_size_y=acq.physical_size_x, time_increment_s=1.0)  # fmt: skip
    older = acq.movie_path.stat().st_mtime - 60
    os.utime(path, (older, older))
    return other


def _manual(acq, data: dict) -> None:
    path = acq.folder / "db_manual.yaml"
    current = yaml.safe_load(path.read_text()) if path.exists() else {}
    path.write_text(yaml.safe_dump({**(current or {}), **data}))


def _run(tree, acq, options: KindOptions, **params):
    report = ingest_acquisition(
        AcquisitionRef(folder=acq.folder, root=tree.root),
        kinds=(KIND,),
        layout=Layout(),
        vocabulary=load_vocabulary(),
        kind_options={KIND: options},
        crop_size=128,
        **params,
    )
    return report, read_events_manifest(report.events[KIND].manifest)


def test_crops_come_from_the_brightfield_movie_of_the_same_acquisition(tmp_path):
    tree, acq = _acquisition(tmp_path)
    fluorescence = tifffile.imread(acq.movie_path)
    brightfield = _second_movie(acq, "acq_BF.ome.tif", lambda m: (m.max() - m).astype(m.dtype))
    _manual(acq, {"contrast": {"fluorescence": acq.movie_path.name, "brightfield": "_BF"}})
    options = KindOptions(KIND, contrasts=("brightfield",), event_content="division")
    _report, entries = _run(tree, acq, options)
    positives = [e for e in entries if e["positive"]]
    assert len(positives) == len(acq.events_of(KIND)) > 0
    for entry in entries:
        (f0, f1), (x0, y0, x1, y1) = entry["frames"], entry["crop_box"]
        folder = tree.root / f"event_data_{KIND}" / entry["folder"]
        crop = tifffile.imread(folder / "images.tif")
        np.testing.assert_array_equal(crop, brightfield[f0:f1, y0:y1, x0:x1])
        assert not np.array_equal(crop, fluorescence[f0:f1, y0:y1, x0:x1])
        document = entry["document"]
        assert document["channel_contrast"] == document["contrast"] == "brightfield"
        assert document["original_file"] == "acq_BF.ome.tif"
        assert document["event_content"] == ("division" if entry["positive"] else "none")


def test_a_list_of_contrasts_gives_two_event_sets(tmp_path):
    tree, acq = _acquisition(tmp_path, seed=82)
    _second_movie(acq, "acq_BF.ome.tif", lambda m: (m // 2).astype(m.dtype))
    fragment = acq.movie_path.name
    _manual(acq, {"contrast": {"fluorescence": fragment, "brightfield": "_BF"}})
    _report, single = _run(tree, acq, KindOptions(KIND, contrasts=("fluorescence",)))
    _report, both = _run(tree, acq, KindOptions(KIND, contrasts=("fluorescence", "brightfield")))
    by_contrast = {c: [e for e in both if e["document"]["contrast"] == c]
                   for c in ("fluorescence", "brightfield")}  # fmt: skip
    assert len(both) == 2 * len(single)
    assert [len(v) for v in by_contrast.values()] == [len(single)] * 2
    # same events (frames and boxes), distinct ids and folders per contrast
    boxes = {c: sorted((tuple(e["frames"]), tuple(e["crop_box"])) for e in v)
             for c, v in by_contrast.items()}  # fmt: skip
    assert boxes["fluorescence"] == boxes["brightfield"]
    assert len({e["_id"] for e in both}) == len(both)
    assert len({e["folder"] for e in both}) == len(both)


def test_a_label_crops_its_channel_of_a_two_channel_movie(tmp_path):
    tree, acq = _acquisition(tmp_path, channels=2, seed=83)
    movie = tifffile.imread(acq.movie_path)
    assert movie.ndim == 4 and movie.shape[1] == 2
    _manual(acq, {"labels": ["mitochondria", "drp1"]})
    _report, entries = _run(tree, acq, KindOptions(KIND, labels=("drp1",)), auto_negatives=1)
    assert entries
    for entry in entries:
        (f0, f1), (x0, y0, x1, y1) = entry["frames"], entry["crop_box"]
        crop = tifffile.imread(tree.root / f"event_data_{KIND}" / entry["folder"] / "images.tif")
        np.testing.assert_array_equal(crop, movie[f0:f1, 1, y0:y1, x0:x1])
        assert entry["channels"] == 1
        assert entry["document"]["channel"] == 1
        assert entry["document"]["channel_label"] == "drp1"
    positives = sum(e["positive"] for e in entries)
    assert len(entries) - positives <= positives  # auto_negatives: 1 → at most one per event


def test_a_chosen_movie_of_another_size_is_refused(tmp_path):
    tree, acq = _acquisition(tmp_path, seed=84)
    _second_movie(acq, "acq_BF.ome.tif", lambda m: m[:, :200, :300])
    _manual(acq, {"contrast": {"brightfield": "_BF"}})
    with pytest.raises(MovieError, match=r"acq_BF.ome.tif: is 16×200×300 .* same frames and size"):
        _run(tree, acq, KindOptions(KIND, contrasts=("brightfield",)))


def test_annotations_of_another_kind_feed_this_kind(tmp_path):
    tree, acq = _acquisition(tmp_path, seed=85)
    report = ingest_acquisition(
        AcquisitionRef(folder=acq.folder, root=tree.root),
        kinds=("bf_points",),
        layout=Layout(),
        vocabulary=load_vocabulary(),
        kind_options={"bf_points": KindOptions(annotations=KIND)},
        crop_size=128,
    )
    entries = read_events_manifest(report.events["bf_points"].manifest)
    assert sum(e["positive"] for e in entries) == len(acq.events_of(KIND))
    assert all(e["document"]["kind"] == "bf_points" for e in entries)
    assert (tree.root / "event_data_bf_points").is_dir()
