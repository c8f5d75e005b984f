"""One ingestion pipeline: the Dagster assets and ``core.pipeline.ingest_acquisition`` call each
step with the same arguments, derived from the settings in one place."""

import inspect
import io
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.core.acquisition_ref import AcquisitionRef
from deep_events_dagster.core.ingest import extract_events, make_ground_truth
from deep_events_dagster.core.kinds import KindOptions
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import load_vocabulary
from deep_events_dagster.core.pipeline import (
    EVENT_PARAMETERS,
    GROUND_TRUTH_PARAMETERS,
    STEP_PARAMETERS,
    KindPlan,
    ingest_acquisition,
)
from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.defs.partitions import ACQUISITIONS
from deep_events_dagster.settings.ingestion import IngestionParams
from deep_events_dagster.settings.platform import load_settings
from deep_events_dagster.testing.annotations import ShapeSpec, write_napari_shapes_csv
from deep_events_dagster.testing.trees import generate_tree

# every step parameter away from its default
PARAMS = {
    "sigma": 4.0,
    "gt_cutoff": 0.3,
    "detection_threshold": 0.4,
    "crop_size": 96,
    "max_link_distance_px": 6.0,
    "max_gap_frames": 1,
    "add_pre_frames": 1,
    "add_post_frames": 3,
    "auto_negatives": 2,
    "hard_negatives": 2,
}
# IngestionParams fields that are a kind's extraction choices
# (settings.ingestion.resolve_kind → KindOptions)
CHOICE_FIELDS = {"img_identifier", "channel_contrast", "label", "event_content"}


def _outputs(folder: Path, root: Path, kinds) -> dict[str, bytes]:
    """Every file the ingestion wrote for the acquisition: db.yaml, ground truths (and their
    sidecars), manifests and event folders."""
    files = {p: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    for kind in kinds:
        for p in (root / f"event_data_{kind}").rglob("*"):
            if p.is_file():
                files[p] = p.read_bytes()
    derived = ("db.yaml", "ground_truth_", "events_")
    return {str(p): b for p, b in files.items() if p.parent != folder or p.name.startswith(derived)}


def _ground_truth(name: str, data: bytes) -> tuple[np.ndarray | None, dict]:
    """A ground truth's pixels and header, or its sidecar, without the rendering's random
    ``gt_id``."""
    if name.endswith(".json"):
        pixels, header = None, json.loads(data)
    else:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            header = json.loads(tif.pages[0].description)
            pixels = tif.asarray()
    header.pop("gt_id")
    return pixels, header


def test_assets_and_ingest_acquisition_write_the_same_files(tmp_path):
    tree = generate_tree(tmp_path / "data", seed=93, n_acquisitions=1, height=256, width=320,
                         n_frames=16, channels=2)  # fmt: skip
    acq = tree.acquisitions[0]
    horizontal = [ShapeSpec(t, ((100.0, 40.0), (100.0, 90.0))) for t in range(3, 7)]
    write_napari_shapes_csv(acq.folder / "pearling.csv", horizontal)
    manual = acq.folder / "db_manual.yaml"
    data = yaml.safe_load(manual.read_text()) if manual.exists() else {}
    manual.write_text(yaml.safe_dump({**(data or {}), "scale_csv": False}))
    home = tmp_path / "home"
    home.mkdir()
    (home / "deep_events.yaml").write_text(
        yaml.safe_dump(
            {
                "ingestion": {**PARAMS, "detection_threshold": 0.9},
                "kinds": {
                    "points": {"detection_threshold": PARAMS["detection_threshold"]},
                    "pearling": {
                        "type": "lines",
                        "line_width": 5,
                        "detection_threshold": PARAMS["detection_threshold"],
                    },
                },
            },
            sort_keys=False,
        )
    )
    settings = load_settings(home, environ={}, roots=(tree.root,))
    kinds = settings.kinds
    assert kinds == ("points", "pearling")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ACQUISITIONS, [acq.folder.as_posix()])
    result = (
        build_definitions(settings)
        .resolve_job_def("ingest")
        .execute_in_process(
            partition_key=acq.folder.as_posix(), instance=instance, raise_on_error=False
        )
    )
    assert result.success
    by_assets = _outputs(acq.folder, tree.root, kinds)
    manifests = [f"events_{kind}.yaml" for kind in kinds]
    assert all(any(p.endswith(m) for p in by_assets) for m in manifests)
    assert any("/ev_" in p for p in by_assets)

    report = ingest_acquisition(
        AcquisitionRef(folder=acq.folder, root=tree.root),
        kinds=kinds,
        layout=Layout(),
        vocabulary=load_vocabulary(),
        kind_options={
            "points": KindOptions(annotations="points"),
            "pearling": KindOptions(annotations="pearling", shape="lines", line_width=5.0),
        },
        **PARAMS,
    )
    assert report.events["points"].n_negative > 0
    by_core = _outputs(acq.folder, tree.root, kinds)
    assert sorted(by_core) == sorted(by_assets)
    different = [p for p in by_assets if by_core[p] != by_assets[p]]
    # a ground truth's header holds a random id of the rendering: compare pixels and the rest
    truths = [p for p in different if Path(p).name.startswith("ground_truth_")]
    assert different == truths and truths
    for p in truths:
        pixels, header = _ground_truth(p, by_assets[p])
        core_pixels, core_header = _ground_truth(p, by_core[p])
        if pixels is not None:
            np.testing.assert_array_equal(pixels, core_pixels)
        assert header == core_header
        assert (header["sigma"], header["cutoff"]) == (PARAMS["sigma"], PARAMS["gt_cutoff"])


def test_every_ingestion_parameter_reaches_its_step_with_the_settings_default():
    assert set(IngestionParams.model_fields) == set(STEP_PARAMETERS) | CHOICE_FIELDS
    defaults = IngestionParams()
    for names, step in (
        (GROUND_TRUTH_PARAMETERS, make_ground_truth),
        (EVENT_PARAMETERS, extract_events),
    ):
        parameters = inspect.signature(step).parameters
        for name in names:
            assert parameters[name].default == getattr(defaults, name), (step.__name__, name)


def test_a_kind_plan_takes_every_step_parameter_from_the_settings(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "deep_events.yaml").write_text(
        yaml.safe_dump({"ingestion": PARAMS, "kinds": {"points": {"gt_cutoff": 0.2}}})
    )
    plan = KindPlan.from_settings(load_settings(home, environ={}).kind_settings("points"))
    assert plan.ground_truth_arguments() == {
        "sigma": PARAMS["sigma"],
        "gt_cutoff": 0.2,
        "options": KindOptions(annotations="points"),
    }
    assert plan.event_arguments() == {
        **{name: PARAMS[name] for name in EVENT_PARAMETERS},
        "options": KindOptions(annotations="points"),
    }


def test_an_unknown_parameter_is_refused():
    with pytest.raises(TypeError, match=r"unknown ingestion parameters \['gt_cutof'\]"):
        KindPlan("points", KindOptions(annotations="points"), {"gt_cutof": 0.2})
