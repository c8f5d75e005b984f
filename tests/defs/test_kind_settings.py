"""Per-kind settings through Dagster: one set of annotations, a fluorescence and a brightfield
event collection side by side, each its own assets in the lineage graph."""

import os

import dagster as dg
import numpy as np
import tifffile
import yaml

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.defs.partitions import ACQUISITIONS
from deep_events_dagster.settings.platform import load_settings
from deep_events_dagster.testing.ome_tiff import write_ome_movie
from deep_events_dagster.testing.trees import generate_tree


def test_fluorescence_and_brightfield_kinds_from_the_same_annotations(tmp_path):
    tree = generate_tree(tmp_path / "data", seed=91, n_acquisitions=1, height=256, width=320,
                         n_frames=16, channels=1)  # fmt: skip
    acq = tree.acquisitions[0]
    movie = tifffile.imread(acq.movie_path)
    brightfield = (movie.max() - movie).astype(movie.dtype)
    bf_path = acq.folder / "acq_BF.ome.tif"
    write_ome_movie(bf_path, brightfield, axes="TYX", physical_size_x=acq.physical_size_x,
                    physical_size_y=acq.physical_size_x, time_increment_s=1.0)  # fmt: skip
    older = acq.movie_path.stat().st_mtime - 60
    os.utime(bf_path, (older, older))
    manual = acq.folder / "db_manual.yaml"
    data = yaml.safe_load(manual.read_text()) if manual.exists() else {}
    data["contrast"] = {"fluorescence": acq.movie_path.name, "brightfield": "_BF"}
    manual.write_text(yaml.safe_dump(data))
    home = tmp_path / "home"
    home.mkdir()
    (home / "deep_events.yaml").write_text(
        "ingestion: {crop_size: 128, auto_negatives: 1}\n"
        "kinds:\n  points: {}\n"
        "  bf_points: {annotations: points, channel_contrast: brightfield, event_content: bf}\n"
    )
    settings = load_settings(home, environ={}, roots=(tree.root,))
    defs = build_definitions(settings)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"points/event_crops", "bf_points/event_crops", "bf_points/event_catalog"} <= keys
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ACQUISITIONS, [acq.folder.as_posix()])
    result = defs.resolve_job_def("ingest").execute_in_process(
        partition_key=acq.folder.as_posix(), instance=instance, raise_on_error=False
    )
    assert result.success
    checks = list(result.get_asset_check_evaluations())
    assert checks and all(c.passed for c in checks), [c.description for c in checks]
    with EventCatalog.open(None, home=home) as catalog:
        fluo = catalog.find("event_data_points")
        bf = catalog.find("event_data_bf_points")
    assert len(fluo) == len(bf) > 0
    assert {d.get("contrast") for d in bf} == {"brightfield"}
    assert {d["event_content"] for d in bf if d["label"] == "bf_points"} == {"bf"}
    for doc in bf:
        (f0, f1), (x0, y0, x1, y1) = doc["frames"], doc["crop_box"]
        crop = tifffile.imread(os.path.join(doc["event_path"], "images.tif"))
        np.testing.assert_array_equal(crop, brightfield[f0:f1, y0:y1, x0:x1])
    positives = sum(d["label"] == "points" for d in fluo)
    assert positives == len(acq.events_of("points"))
    assert len(fluo) - positives <= positives  # auto_negatives: 1


def test_a_lines_kind_draws_detects_and_crops_each_line(tmp_path):
    from deep_events_dagster.testing.annotations import ShapeSpec, write_napari_shapes_csv

    tree = generate_tree(tmp_path / "data", seed=92, n_acquisitions=1, height=256, width=320,
                         n_frames=16, channels=1)  # fmt: skip
    acq = tree.acquisitions[0]
    # a horizontal line in frames 3–6 and a diagonal path in frame 10 (pixels)
    horizontal = [ShapeSpec(t, ((100.0, 40.0), (100.0, 90.0))) for t in range(3, 7)]
    diagonal = ShapeSpec(10, ((180.0, 200.0), (200.0, 220.0), (210.0, 260.0)))
    write_napari_shapes_csv(acq.folder / "pearling.csv", [*horizontal, diagonal])
    manual = acq.folder / "db_manual.yaml"
    data = yaml.safe_load(manual.read_text()) if manual.exists() else {}
    manual.write_text(yaml.safe_dump({**(data or {}), "scale_csv": False}))
    home = tmp_path / "home"
    home.mkdir()
    (home / "deep_events.yaml").write_text(
        "ingestion: {crop_size: 128, auto_negatives: 0, add_post_frames: 0}\n"
        "kinds:\n  pearling: {type: lines, line_width: 5}\n"
    )
    defs = build_definitions(load_settings(home, environ={}, roots=(tree.root,)))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ACQUISITIONS, [acq.folder.as_posix()])
    result = defs.resolve_job_def("ingest").execute_in_process(
        partition_key=acq.folder.as_posix(), instance=instance, raise_on_error=False
    )
    assert result.success
    checks = list(result.get_asset_check_evaluations())
    assert checks and all(c.passed for c in checks), [c.description for c in checks]
    truth = tifffile.imread(acq.folder / "ground_truth_pearling.tif")
    # width 5: rows 98–102 are on the stroke (ramp 2.5 ± 0.5 px), row 103 is off it
    assert truth[4, 98:103, 60].tolist() == [1.0] * 5 and truth[4, 103, 60] == 0.0
    assert truth[4, 97, 60] == 0.0 and truth[2].max() == 0.0
    with EventCatalog.open(None, home=home) as catalog:
        documents = sorted(catalog.find("event_data_pearling"), key=lambda d: d["frames"])
    assert [d["frames"] for d in documents] == [[3, 7], [10, 11]]
    assert all(d["line_width"] == 5.0 and d["label"] == "pearling" for d in documents)
    x0, y0, x1, y1 = documents[0]["crop_box"]
    assert x0 <= 65 < x1 and y0 <= 100 < y1 and x1 - x0 == 128
