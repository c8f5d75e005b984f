"""Asset checks beside the ingestion assets, evaluated in real runs of the ingest job."""

import shutil

import dagster as dg
import numpy as np
import pytest
import tifffile
import yaml

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.core import checks, pipeline
from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.defs.partitions import ACQUISITIONS
from deep_events_dagster.settings.ingestion import IngestionParams
from deep_events_dagster.settings.platform import load_settings
from deep_events_dagster.testing.trees import generate_tree

KIND = "points"
EXPECTED_CHECKS = {
    ("acquisition_metadata", "metadata_complete"): False,
    ("points/ground_truth", "annotations_inside_movie"): True,
    ("points/ground_truth", "one_peak_per_point"): True,
    ("points/event_crops", "crops_valid"): True,
    ("points/event_crops", "positive_negative_ratio"): False,
    ("points/event_catalog", "catalog_matches_folders"): True,
}


@pytest.fixture
def setup(tmp_path):
    tree = generate_tree(tmp_path / "data", seed=21, n_acquisitions=2, kinds=(KIND,))
    home = tmp_path / "home"
    settings = load_settings(home, environ={}, roots=(tree.root,), kinds=(KIND,))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ACQUISITIONS, [a.folder.as_posix() for a in tree.acquisitions])
    return tree, home, settings, instance


def _run(settings, instance, key, **kwargs):
    job = build_definitions(settings).resolve_job_def("ingest")
    return job.execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False, **kwargs
    )


def _evaluations(result):
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def _started(result):
    return {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}


def _value(evaluation, name):
    return evaluation.metadata[name].value


def test_check_specs_sit_beside_their_assets_blocking_where_it_matters(setup):
    _, _, settings, _ = setup
    graph = build_definitions(settings).resolve_asset_graph()
    specs = {
        (key.asset_key.to_user_string(), key.name): graph.get_check_spec(key).blocking
        for key in graph.asset_check_keys
    }
    assert {k: v for k, v in specs.items() if k in EXPECTED_CHECKS} == EXPECTED_CHECKS


def test_checks_pass_on_good_data_with_readable_metadata(setup):
    tree, _home, settings, instance = setup
    acq = tree.acquisitions[0]
    result = _run(settings, instance, acq.folder.as_posix())
    assert result.success
    evaluations = _evaluations(result)
    assert set(evaluations) == set(EXPECTED_CHECKS)
    assert all(e.passed for e in evaluations.values()), {
        k: e.description for k, e in evaluations.items() if not e.passed
    }
    n_points = sum(len(e.points) for e in acq.events_of(KIND))
    n_events = len(acq.events_of(KIND))

    bounds = evaluations[("points/ground_truth", "annotations_inside_movie")]
    assert (_value(bounds, "points"), _value(bounds, "outside")) == (n_points, 0)
    assert "| points.csv |" in _value(bounds, "files")
    peaks = evaluations[("points/ground_truth", "one_peak_per_point")]
    assert (_value(peaks, "points"), _value(peaks, "missing")) == (n_points, 0)
    assert _value(peaks, "read") == "support windows (sidecar)"
    crops = evaluations[("points/event_crops", "crops_valid")]
    manifest = yaml.safe_load((acq.folder / "events_points.yaml").read_text())
    assert _value(crops, "event_folders") == len(manifest["events"])
    assert (_value(crops, "events"), _value(crops, "invalid")) == (n_events, 0)
    ratio = evaluations[("points/event_crops", "positive_negative_ratio")]
    assert (_value(ratio, "events"), _value(ratio, "annotated_points")) == (n_events, n_points)
    catalog = evaluations[("points/event_catalog", "catalog_matches_folders")]
    assert _value(catalog, "catalog_documents") == _value(catalog, "manifest_events")
    assert _value(catalog, "missing_from_catalog") == 0
    metadata = evaluations[("acquisition_metadata", "metadata_complete")]
    assert metadata.severity == dg.AssetCheckSeverity.WARN
    assert _value(metadata, "missing") == "none"
    # evaluations are stored on the instance, so the UI shows them per asset check
    key = dg.AssetCheckKey(dg.AssetKey([KIND, "event_crops"]), "crops_valid")
    stored = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    assert stored.run_id == result.run_id


def test_incomplete_metadata_only_warns(setup):
    tree, _, settings, instance = setup
    acq = tree.acquisitions[0]
    manual = acq.folder / "db_manual.yaml"
    data = yaml.safe_load(manual.read_text()) if manual.exists() else {}
    manual.write_text(yaml.safe_dump({**(data or {}), "microscope": None, "type": ""}))
    result = _run(settings, instance, acq.folder.as_posix())
    assert result.success  # not blocking
    check = _evaluations(result)[("acquisition_metadata", "metadata_complete")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert _value(check, "missing") == "microscope, type"
    assert "db_manual.yaml" in check.description


def test_points_outside_the_movie_fail_the_ground_truth_and_its_check(setup):
    tree, _, settings, instance = setup
    acq = tree.acquisitions[0]
    (csv,) = acq.csv_files[KIND]
    lines = csv.read_text().splitlines()
    n_rows = len(lines) - 1
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("axis-0")] = "999"  # far beyond the last frame
    csv.write_text("\n".join([*lines, ",".join(row)]) + "\n")
    result = _run(settings, instance, acq.folder.as_posix())
    assert not result.success
    assert not result.asset_materializations_for_node("points__ground_truth")
    assert not (acq.folder / "ground_truth_points.tif").exists()
    assert "points__event_crops" not in _started(result)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert csv.name in failure.step_failure_data.user_failure_data.description
    check = _evaluations(result)[("points/ground_truth", "annotations_inside_movie")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert (_value(check, "outside"), _value(check, "points")) == (1, n_rows + 1)
    assert check.description.startswith(f"{csv.name}: 1 of {n_rows + 1} points outside the movie")
    assert "frame 999 ≥" in _value(check, "bad_points")


def test_missing_peaks_block_crops_and_catalog_in_the_same_run(setup):
    tree, _, settings, instance = setup
    # σ = 0.2 px: sub-pixel points (µm CSVs) render below the 0.5 threshold or not at all
    tiny = settings.model_copy(update={"params": IngestionParams(sigma=0.2)})
    acq = tree.acquisitions[0]
    assert acq.scale_csv
    result = _run(tiny, instance, acq.folder.as_posix())
    assert not result.success
    assert result.asset_materializations_for_node("points__ground_truth")  # recorded
    started = _started(result)
    assert "points__ground_truth" in started
    assert not started & {"points__event_crops", "points__event_catalog"}
    peaks = _evaluations(result)[("points/ground_truth", "one_peak_per_point")]
    assert not peaks.passed and peaks.severity == dg.AssetCheckSeverity.ERROR
    assert 0 < _value(peaks, "missing") <= _value(peaks, "points")
    assert "| points" in _value(peaks, "points_without_peak")
    assert _evaluations(result)[("points/ground_truth", "annotations_inside_movie")].passed


def test_corrupted_event_folder_blocks_the_catalog(setup, monkeypatch):
    tree, home, settings, instance = setup
    acq = tree.acquisitions[0]
    real = pipeline.extract_events

    def extract_then_corrupt(*args, **kwargs):
        step = real(*args, **kwargs)
        victim = step.events[0].folder
        tifffile.imwrite(victim / "images.tif", np.zeros((1, 8, 8), np.uint16))
        return step

    monkeypatch.setattr(pipeline, "extract_events", extract_then_corrupt)
    result = _run(settings, instance, acq.folder.as_posix())
    assert not result.success
    assert result.asset_materializations_for_node("points__event_crops")
    assert "points__event_catalog" not in _started(result)
    crops = _evaluations(result)[("points/event_crops", "crops_valid")]
    assert not crops.passed
    assert _value(crops, "invalid") == 1
    assert "images.tif has shape (1, 8, 8), expected" in _value(crops, "problems")
    assert "images.tif is empty (every pixel is 0)" in _value(crops, "problems")
    with EventCatalog.open(None, home=home) as catalog:
        assert catalog.count("event_data_points", {"acquisition_key": acq.folder.as_posix()}) == 0


def test_removed_event_folder_fails_crops_and_catalog_checks(setup):
    tree, home, settings, instance = setup
    acq = tree.acquisitions[0]
    key = acq.folder.as_posix()
    assert _run(settings, instance, key).success
    manifest = checks.load_manifest(acq.folder / "events_points.yaml")
    gone = manifest.entries[0]
    shutil.rmtree(manifest.event_root / gone["folder"])
    crops = checks.crops_valid(manifest.path, crop_size=256, dtype=acq.dtype, n_channels=1)
    assert not crops.passed and crops.problems == (f"{gone['folder']}: folder missing",)
    with EventCatalog.open(None, home=home) as catalog:
        documents = catalog.find("event_data_points", {"acquisition_key": key})
    agreement = checks.catalog_matches_folders(documents, manifest)
    assert not agreement.passed and agreement.missing_paths == (gone["_id"],)


def test_manual_document_holding_an_event_id_fails_the_catalog_check(setup):
    tree, home, settings, instance = setup
    acq = tree.acquisitions[0]
    key = acq.folder.as_posix()
    assert _run(settings, instance, key).success
    manifest = yaml.safe_load((acq.folder / "events_points.yaml").read_text())
    taken = manifest["events"][0]["_id"]
    with EventCatalog.open(None, home=home) as catalog:
        (document,) = catalog.find("event_data_points", {"_id": taken})
        catalog.upsert_documents("event_data_points", [{**document, "extraction_type": "manual"}])
    result = _run(settings, instance, key, asset_selection=[dg.AssetKey([KIND, "event_catalog"])])
    assert not result.success  # blocking: the step fails after recording its materialisation
    assert _started(result) == {"points__event_catalog"}
    check = _evaluations(result)[("points/event_catalog", "catalog_matches_folders")]
    assert not check.passed
    assert _value(check, "missing_from_catalog") == 1
    assert _value(check, "missing_ids") == taken
    assert _value(check, "manual_documents") == 1
    assert _value(check, "manifest_events") == len(manifest["events"])
