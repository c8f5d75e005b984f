"""`deep-events deploy MODEL_DIR [--kind NAME]` and `deep-events models [--root DIR] [--json]`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from deep_events_dagster.cli import main
from deep_events_dagster.ml.deploy import model_identity


def fake_model(folder: Path, *, f1=0.8512, threshold=0.625, weights=b"w", mtime=None) -> Path:
    """A trained (and, with a threshold, evaluated) torch model folder without a network."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.yaml").write_text(yaml.safe_dump({"backend": "torch"}))
    (folder / "model.pt").write_bytes(weights)
    if threshold is not None:
        (folder / "evaluation.yaml").write_text(
            yaml.safe_dump({"unit": "event", "threshold": threshold, "f1": f1})
        )
    (folder / "training_set.yaml").write_text(yaml.safe_dump({"path": "/sets/s1", "id": "s1"}))
    summary = folder / "training_summary.yaml"
    summary.write_text("backend: torch\n")
    if mtime is not None:
        os.utime(summary, (mtime, mtime))
    return folder


def home_with_kinds(tmp_path: Path, *kinds: str) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "deep_events.yaml").write_text(f"# lab platform\nkinds: [{', '.join(kinds)}]\n")
    return home


def test_deploy_prints_what_is_deployed_and_writes_the_config(tmp_path, capsys):
    home = home_with_kinds(tmp_path, "points")
    model = fake_model(tmp_path / "m1")

    code = main(["deploy", str(model), "--home", str(home)])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == [
        f"deployed for points: {model.resolve()}",
        f"  event F1 0.851, threshold 0.625, identity {model_identity(model)}",
        f"  written to {home / 'deep_events.yaml'}",
    ]
    text = (home / "deep_events.yaml").read_text()
    assert text.startswith("# lab platform\nkinds: [points]\n")
    assert yaml.safe_load(text)["deploy"] == {"points": str(model.resolve())}


def test_deploy_says_which_model_it_replaces(tmp_path, capsys):
    home = home_with_kinds(tmp_path, "points", "fission")
    first = fake_model(tmp_path / "m1", weights=b"1")
    second = fake_model(tmp_path / "m2", weights=b"2")
    assert main(["--home", str(home), "deploy", str(first), "--kind", "fission"]) == 0
    capsys.readouterr()
    assert main(["--home", str(home), "deploy", str(second), "--kind", "fission"]) == 0
    out = capsys.readouterr().out
    assert f"deployed for fission: {second.resolve()}" in out
    assert f"  replaces {first.resolve()} (identity {model_identity(first)})" in out


def test_deploy_unknown_kind_lists_the_kinds(tmp_path, capsys):
    home = home_with_kinds(tmp_path, "points", "fission")
    before = (home / "deep_events.yaml").read_text()
    code = main(["deploy", str(fake_model(tmp_path / "m")), "--kind", "lines", "--home", str(home)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: unknown annotation kind 'lines'; the platform's kinds: points, ")
    assert "fission" in err and len(err.strip().splitlines()) == 1
    # several kinds and no --kind: the CLI asks instead of guessing
    assert main(["deploy", str(tmp_path / "m"), "--home", str(home)]) == 2
    assert "--kind" in capsys.readouterr().err
    assert (home / "deep_events.yaml").read_text() == before


def test_deploy_refuses_a_folder_that_cannot_decide(tmp_path, capsys):
    home = home_with_kinds(tmp_path, "points")
    raw = fake_model(tmp_path / "raw", threshold=None)
    for folder, problem in ((raw, "not evaluated"), (tmp_path / "home", "not a model folder")):
        assert main(["deploy", str(folder), "--home", str(home)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {folder.resolve()}: ")
        assert problem in err and "\n" not in err and "Traceback" not in err
    assert "deploy" not in yaml.safe_load((home / "deep_events.yaml").read_text())


def test_models_table_marks_the_deployed_one_newest_first(tmp_path, capsys):
    home = home_with_kinds(tmp_path, "points")
    output = tmp_path / "out"
    (home / "training").mkdir()
    (home / "training" / "cos7.yaml").write_text(
        yaml.safe_dump(
            {
                "folder": str(output),
                "collection": "event_data_points",
                "db_prompt": {"cell_line": "cos7"},
                "settings": {"epochs": 1},
            }
        )
    )
    old = fake_model(output / "runs" / "cos7_0" / "model_old", weights=b"o", mtime=1_700_000_000)
    new = fake_model(
        output / "runs" / "cos7_0" / "model_new", threshold=None, weights=b"n", mtime=1_700_500_000
    )
    extra = fake_model(tmp_path / "extra" / "model_x", weights=b"x", mtime=1_600_000_000)
    assert main(["deploy", str(old), "--home", str(home)]) == 0
    capsys.readouterr()

    assert main(["models", "--home", str(home), "--root", str(tmp_path / "extra")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "deployed", "date", "event", "F1", "threshold", "backend", "model", "training", "set",
    ]  # fmt: skip
    assert len(lines) == 4
    assert str(new) in lines[1] and not lines[1].startswith("*")
    assert lines[1].split()[2:5] == ["–", "–", "torch"]
    assert lines[2].startswith("* points") and str(old) in lines[2]
    assert lines[2].split()[4:9] == ["0.851", "0.625", "torch", str(old), "/sets/s1"]
    assert str(extra) in lines[3]
    # columns line up: the model path starts at the same column on every line
    column = lines[0].index("model")
    assert [line.index(str(p)) for line, p in zip(lines[1:], (new, old, extra))] == [column] * 3

    assert main(["models", "--home", str(home), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["path"] for m in listed] == [str(new), str(old)]
    assert listed[1] == {
        "path": str(old),
        "backend": "torch",
        "event_f1": 0.8512,
        "threshold": 0.625,
        "training_set": "/sets/s1",
        "created": listed[1]["created"],
        "deployed_for": ["points"],
    }
    assert listed[0]["deployed_for"] == [] and listed[0]["threshold"] is None
    assert listed[1]["created"].startswith("2023-11-1")


def test_models_without_any_says_where_it_looked(tmp_path, capsys):
    home = home_with_kinds(tmp_path, "points")
    assert main(["models", "--home", str(home), "--root", str(tmp_path / "nothing")]) == 0
    assert capsys.readouterr().out.strip() == f"no trained models under {tmp_path / 'nothing'}"
    assert main(["models", "--home", str(home), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_models_with_a_broken_deploy_entry_still_lists_and_exits_1(tmp_path, capsys):
    home = home_with_kinds(tmp_path, "points")
    model = fake_model(tmp_path / "models" / "m")
    with (home / "deep_events.yaml").open("a") as handle:
        handle.write("deploy:\n  points: /no/such/model\n")
    code = main(["models", "--home", str(home), "--root", str(tmp_path / "models")])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith(f"error: {home / 'deep_events.yaml'}: 'deploy: points': ")
    assert str(model) in captured.out and "* points" not in captured.out
