"""The deep-events command on synthetic trees (same instance as the UI)."""

import json

import dagster as dg
import pytest

from deep_events_dagster.cli import main
from deep_events_dagster.core.synthetic import generate_tree


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
def test_demo_ingests_synthetic_data(tmp_path, capsys):
    assert main(["demo", "--home", str(tmp_path / "home"), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("ok      ") == 4
    assert "event_data_points:" in printed and "catalog: embedded montydb" in printed
    assert "event_data_fission:" in printed
