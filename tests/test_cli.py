"""The deep-events command on synthetic trees (same instance as the UI)."""

import json
from pathlib import Path

import dagster as dg
import pytest

from deep_events_dagster.cli import main
from deep_events_dagster.testing.trees import generate_tree


def test_synth_prints_acquisitions(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--seed", "2"]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 4 and all((tmp_path / "s").as_posix() in line for line in lines)


def test_ingest_then_find_with_output_root(tmp_path, capsys):
    tree = generate_tree(tmp_path / "data", seed=31, n_acquisitions=3)
    home, out = tmp_path / "home", tmp_path / "derived"
    code = main(["ingest", str(tree.root), "--home", str(home), "--output-root", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.count("ok      ") == 3
    n_truth = sum(len(a.events_of("points")) for a in tree.acquisitions)
    assert f"event_data_points: {n_truth} events" in printed
    assert not list(tree.root.rglob("db.yaml"))  # raw tree untouched
    assert len(list(out.rglob("db.yaml"))) == 3
    # runs are on the home's instance, one per acquisition, tagged with its partition
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3 and all(r.is_success for r in runs)
        assert {r.tags["dagster/partition"] for r in runs} == {
            a.folder.as_posix() for a in tree.acquisitions
        }
    cell_line = tree.acquisitions[0].expected_metadata["cell_line"][0]
    query = json.dumps({"cell_line": cell_line, "label": "points"})
    assert (
        main(["catalog", "find", "event_data_points", "--filter", query, "--home", str(home)]) == 0
    )
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = sum(
        len(a.events_of("points"))
        for a in tree.acquisitions
        if cell_line in a.expected_metadata["cell_line"]
    )
    assert len(documents) == expected > 0
    assert all(
        len(d["_id"]) == 24 and d["event_path"].startswith(out.as_posix()) for d in documents
    )


def test_find_rejects_bad_filter(tmp_path, capsys):
    code = main(["--home", str(tmp_path), "catalog", "find", "event_data_points", "--filter", "{x"])
    assert code == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_the_whole_workflow_and_reports_what_the_run_measured(tmp_path, capfd):
    import re

    import yaml

    from deep_events_dagster.catalog import EventCatalog
    from deep_events_dagster.demo import DEMO_HARD_NEGATIVES, DEMO_TREE

    home = tmp_path / "home"
    assert main(["demo", "--home", str(home), "--workers", "1"]) == 0
    printed = capfd.readouterr().out  # the trainer's epoch lines come from its own process
    # ingestion of every acquisition, with hard negatives beside the events' own negatives
    assert printed.count("ok      /") == DEMO_TREE["n_acquisitions"]
    assert "event_data_points:" in printed
    # training: one line per epoch, then the run's summary
    assert re.search(r"^epoch 1/\d+: ", printed, re.M) and "ok      demo/0" in printed
    model_dir = Path(re.search(r"^  model:\s+(\S+)$", printed, re.M).group(1))
    evaluation = yaml.safe_load((model_dir / "evaluation.yaml").read_text())
    held_out = re.search(r"held-out events .*: F1 ([\d.]+) at threshold ([\d.]+)", printed)
    assert held_out, printed
    assert float(held_out.group(1)) == pytest.approx(evaluation["f1"], abs=5e-4)
    assert float(held_out.group(2)) == pytest.approx(evaluation["threshold"], abs=5e-4)
    h5 = re.search(r"model for the microscope: (\S+)", printed).group(1)
    assert h5 == str(model_dir / "model.h5") and Path(h5).is_file()
    # deployed, and predictions written for the movie that was never ingested
    config = yaml.safe_load((home / "deep_events.yaml").read_text())
    assert Path(config["deploy"]["points"]).resolve() == model_dir.resolve()
    heldout = next((home / "demo_heldout").rglob("*.ome.tif")).parent
    assert (heldout / "predictions_points.csv").is_file()
    record = yaml.safe_load((heldout / "predictions_points.yaml").read_text())
    never = re.search(r"movie never ingested: F1 ([\d.]+) \((\d+) found, (\d+) missed", printed)
    assert never, printed
    true_frames = re.search(r"true events in frames:\s+(.+)$", printed, re.M).group(1)
    assert int(never.group(2)) + int(never.group(3)) == len(true_frames.split(", "))
    assert (int(never.group(2)), int(never.group(3))) == (record["tp"], record["fn"])
    assert float(never.group(1)) == pytest.approx(record["f1"], abs=5e-4)
    # every step is a run on the home's instance, the predictions too
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs()
    succeeded = {r.job_name for r in runs if r.status == dg.DagsterRunStatus.SUCCESS}
    assert {"ingest", "train", "predict"} <= succeeded
    # a model that finds events: most of the never-ingested movie's events, few false alarms
    # (runs on 2 cores, bfloat16 and float32, found 5 of 6 with at most 1 false alarm)
    assert float(never.group(1)) >= 0.6 and evaluation["f1"] >= 0.6, printed
    with EventCatalog.open(None, home=home) as catalog:
        documents = catalog.find("event_data_points")
    keys = {d["acquisition_key"] for d in documents}
    assert heldout.as_posix() not in keys and len(keys) == DEMO_TREE["n_acquisitions"]
    config_text = (home / "deep_events.yaml").read_text()
    assert f"hard_negatives: {DEMO_HARD_NEGATIVES}" in config_text
    negatives = [d for d in documents if d["label"] == "negative"]
    assert len(negatives) >= DEMO_TREE["n_acquisitions"] * DEMO_HARD_NEGATIVES
    assert "make ui" in printed


def test_a_bad_home_setting_is_one_line_naming_the_file(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "deep_events.yaml").write_text("cluster:\n  storage: mysql://db/x\n")
    assert main(["ingest", str(tmp_path), "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {home / 'deep_events.yaml'}") and "postgresql://" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
