"""ml.deploy: the deployed model per kind in deep_events.yaml, model identities, model listing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from deep_events_dagster.core.errors import InputError, MetadataError
from deep_events_dagster.ml.deploy import (
    DEPLOY_KEY,
    Deployment,
    deploy_model,
    list_models,
    model_identity,
    models_markdown,
    read_deployments,
    training_model_roots,
)


def fake_model(
    folder: Path,
    *,
    weights: bytes = b"weights-1",
    threshold: float | None = 0.6,
    f1: float = 0.8,
    backend: str = "torch",
    mtime: float | None = None,
    training_set: str = "/sets/abc",
) -> Path:
    """A model folder as training and evaluation leave it (no real network in it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.yaml").write_text(yaml.safe_dump({"backend": backend, "epochs": 1}))
    weights_name = "keras.weights.h5" if backend == "tensorflow" else "model.pt"
    (folder / weights_name).write_bytes(weights)
    if threshold is not None:
        evaluation = {"unit": "event", "threshold": threshold, "f1": f1, "precision": 0.9}
        (folder / "evaluation.yaml").write_text(yaml.safe_dump(evaluation))
    (folder / "training_set.yaml").write_text(yaml.safe_dump({"path": training_set, "id": "ab"}))
    summary = folder / "training_summary.yaml"
    summary.write_text(yaml.safe_dump({"backend": backend, "epochs": 1}))
    if mtime is not None:
        os.utime(summary, (mtime, mtime))
    return folder


# ---------------------------------------------------------------- identity


def test_identity_is_12_hex_and_follows_weights_and_threshold(tmp_path):
    model = fake_model(tmp_path / "m")
    first = model_identity(model)
    assert len(first) == 12 and all(c in "0123456789abcdef" for c in first)
    # unrelated files change nothing; a copy elsewhere has the same identity
    (model / "history.csv").write_text("epoch,loss\n0,1.0\n")
    (model / "evaluation.yaml").write_text(
        yaml.safe_dump({"threshold": 0.6, "f1": 0.1, "precision": 0.2})
    )
    assert model_identity(model) == first
    assert model_identity(fake_model(tmp_path / "copy")) == first
    (model / "model.pt").write_bytes(b"weights-2")
    retrained = model_identity(model)
    assert retrained != first
    (model / "evaluation.yaml").write_text(yaml.safe_dump({"threshold": 0.7, "f1": 0.8}))
    assert model_identity(model) not in (first, retrained)


def test_identity_uses_the_backends_weights_file(tmp_path):
    model = fake_model(tmp_path / "tf", backend="tensorflow")
    before = model_identity(model)
    (model / "model.pt").write_bytes(b"not the tensorflow weights")
    assert model_identity(model) == before
    (model / "keras.weights.h5").write_bytes(b"other")
    assert model_identity(model) != before


def test_identity_without_weights_names_the_folder(tmp_path):
    model = fake_model(tmp_path / "m")
    (model / "model.pt").unlink()
    with pytest.raises(InputError) as error:
        model_identity(model)
    assert str(error.value).startswith(str(model))
    assert "model.pt" in str(error.value)
    with pytest.raises(InputError, match="not a model folder"):
        model_identity(tmp_path)


# ---------------------------------------------------------------- deploy / read


def test_deploy_appends_to_a_file_without_deploy_key_keeping_its_text(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    original = "# my platform\nkinds: [points, fission]  # two kinds\nquiet_seconds: 5"
    (home / "deep_events.yaml").write_text(original)
    model = fake_model(tmp_path / "runs" / "m1")

    deployment = deploy_model(home, model, "fission")

    text = (home / "deep_events.yaml").read_text()
    assert text.startswith(original + "\n")  # comments and layout kept
    assert yaml.safe_load(text) == {
        "kinds": ["points", "fission"],
        "quiet_seconds": 5,
        DEPLOY_KEY: {"fission": str(model.resolve())},
    }
    assert deployment == Deployment("fission", model.resolve(), model_identity(model))
    assert read_deployments(home) == {"fission": deployment}


def test_deploy_rewrites_an_existing_deploy_key_keeping_other_kinds(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    first = fake_model(tmp_path / "m1", weights=b"one")
    second = fake_model(tmp_path / "m2", weights=b"two")
    third = fake_model(tmp_path / "m3", weights=b"three")
    (home / "deep_events.yaml").write_text("kinds: [points, fission]\n")
    deploy_model(home, first, "points")
    deploy_model(home, second, "fission")
    deploy_model(home, third, "points")

    config = yaml.safe_load((home / "deep_events.yaml").read_text())
    assert config == {
        "kinds": ["points", "fission"],
        DEPLOY_KEY: {"points": str(third.resolve()), "fission": str(second.resolve())},
    }
    deployed = read_deployments(home)
    assert {k: d.model_dir for k, d in deployed.items()} == {
        "points": third.resolve(),
        "fission": second.resolve(),
    }
    assert deployed["points"].identity == model_identity(third)
    assert not [p for p in home.iterdir() if p.name.startswith(".tmp-")]


def test_deploy_creates_the_config_file_and_falls_back_for_flow_style(tmp_path):
    model = fake_model(tmp_path / "m")
    home = tmp_path / "new_home"
    deploy_model(home, model)
    assert yaml.safe_load((home / "deep_events.yaml").read_text()) == {
        DEPLOY_KEY: {"points": str(model.resolve())}
    }
    flow = tmp_path / "flow_home"
    flow.mkdir()
    (flow / "deep_events.yaml").write_text("{kinds: [points]}\n")  # a block cannot follow it
    deploy_model(flow, model)
    assert yaml.safe_load((flow / "deep_events.yaml").read_text()) == {
        "kinds": ["points"],
        DEPLOY_KEY: {"points": str(model.resolve())},
    }


def test_deploy_resolves_a_relative_model_folder_against_the_working_folder(tmp_path, monkeypatch):
    fake_model(tmp_path / "work" / "models" / "m")
    monkeypatch.chdir(tmp_path / "work")
    deployment = deploy_model(tmp_path / "home", Path("models/m"))
    assert deployment.model_dir == (tmp_path / "work" / "models" / "m").resolve()
    assert yaml.safe_load((tmp_path / "home" / "deep_events.yaml").read_text())[DEPLOY_KEY] == {
        "points": str(deployment.model_dir)
    }


def test_deploy_refuses_unusable_folders_and_writes_nothing(tmp_path):
    home = tmp_path / "home"
    not_evaluated = fake_model(tmp_path / "raw", threshold=None)
    no_weights = fake_model(tmp_path / "noweights")
    (no_weights / "model.pt").unlink()
    cases = [
        (not_evaluated, "not evaluated"),
        (no_weights, "no weights"),
        (tmp_path / "missing", "no such model folder"),
        (tmp_path, "not a model folder"),
    ]
    for folder, problem in cases:
        with pytest.raises(InputError) as error:
            deploy_model(home, folder)
        assert str(error.value).startswith(str(folder.resolve()))
        assert problem in str(error.value)
    with pytest.raises(ValueError, match="annotation kind"):
        deploy_model(home, fake_model(tmp_path / "ok"), "bad kind")
    assert not (home / "deep_events.yaml").exists()


def test_deploy_refuses_a_deploy_key_that_is_not_a_mapping(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "deep_events.yaml").write_text("deploy: /some/model\n")
    with pytest.raises(MetadataError) as error:
        deploy_model(home, fake_model(tmp_path / "m"))
    assert str(error.value).startswith(str(home / "deep_events.yaml"))
    assert (home / "deep_events.yaml").read_text() == "deploy: /some/model\n"


def test_read_deployments_resolves_relative_folders_against_the_home(tmp_path):
    home = tmp_path / "home"
    model = fake_model(home / "models" / "m")
    (home / "deep_events.yaml").write_text("deploy:\n  points: models/m\n")
    assert read_deployments(home) == {
        "points": Deployment("points", model.resolve(), model_identity(model))
    }


def test_read_deployments_is_empty_without_file_or_key(tmp_path):
    assert read_deployments(tmp_path / "nohome") == {}
    (tmp_path / "deep_events.yaml").write_text("kinds: [points]\ndeploy:\n")
    assert read_deployments(tmp_path) == {}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("deploy: [a, b]\n", "must map annotation kinds"),
        ("deploy:\n  1: /x\n", "the kind 1"),
        ("deploy:\n  points: [x]\n", "'deploy: points' must be a model folder path"),
        ("deploy:\n  points: missing_model\n", "'deploy: points': "),
        ("deploy:\n  points: raw\n", "not evaluated"),
        ("deploy:\n  points: .\n", "not a model folder"),
    ],
)
def test_malformed_deploy_entries_name_the_file_and_kind(tmp_path, content, problem):
    home = tmp_path / "home"
    fake_model(home / "raw", threshold=None)
    (home / "deep_events.yaml").write_text(content)
    with pytest.raises(MetadataError) as error:
        read_deployments(home)
    message = str(error.value)
    assert message.startswith(str(home / "deep_events.yaml") + ": ")
    assert problem in message
    if "points" in content:
        assert "deploy: points" in message


def test_settings_accept_a_deploy_key(tmp_path):
    from deep_events_dagster.settings.platform import load_settings

    fake_model(tmp_path / "m")
    (tmp_path / "deep_events.yaml").write_text("kinds: [points]\ndeploy:\n  points: m\n")
    assert load_settings(tmp_path, environ={}).kinds == ("points",)


# ---------------------------------------------------------------- listing


def test_list_models_newest_first_with_deployed_marked(tmp_path):
    root = tmp_path / "out"
    old = fake_model(root / "runs" / "a" / "model_old", mtime=1_700_000_000, f1=0.5)
    new = fake_model(root / "runs" / "b" / "model_new", mtime=1_700_100_000, threshold=None)
    mid = fake_model(root / "runs" / "a" / "model_mid", mtime=1_700_050_000, backend="tensorflow")
    elsewhere = fake_model(tmp_path / "elsewhere" / "m", mtime=1_690_000_000)
    # not models: no weights; inside a model folder; in skipped trees
    (root / "runs" / "c").mkdir(parents=True)
    (root / "runs" / "c" / "settings.yaml").write_text("backend: torch\n")
    fake_model(old / "bioimageio" / "nested")
    fake_model(old / "sub" / "nested")
    fake_model(root / "training_sets" / "x")
    fake_model(root / ".tmp-abc-model")
    home = tmp_path / "home"
    deploy_model(home, old, "points")
    deploy_model(home, old, "fission")
    deploy_model(home, elsewhere, "lines")

    models = list_models([root, tmp_path / "no_such_root"], home)

    assert [m.path for m in models] == [new, mid, old, elsewhere]
    by_path = {m.path: m for m in models}
    assert by_path[old].deployed_for == ("fission", "points")
    assert by_path[elsewhere].deployed_for == ("lines",)
    assert by_path[new].deployed_for == () and by_path[mid].deployed_for == ()
    assert by_path[old].event_f1 == 0.5 and by_path[old].threshold == 0.6
    assert by_path[new].event_f1 is None and by_path[new].threshold is None
    assert by_path[mid].backend == "tensorflow" and by_path[old].backend == "torch"
    assert by_path[old].training_set == "/sets/abc"
    assert by_path[old].created.timestamp() == 1_700_000_000
    assert by_path[old].as_json()["deployed_for"] == ["fission", "points"]
    # without a home nothing is marked and a model outside the roots is not listed
    assert [m.path for m in list_models([root])] == [new, mid, old]
    assert all(m.deployed_for == () for m in list_models([root]))


def test_list_models_uses_the_folder_time_without_summary_and_the_set_id(tmp_path):
    model = fake_model(tmp_path / "m")
    (model / "training_summary.yaml").unlink()
    (model / "training_set.yaml").write_text(yaml.safe_dump({"id": "0123abcd"}))
    os.utime(model, (1_650_000_000, 1_650_000_000))
    [info] = list_models([tmp_path])
    assert info.created.timestamp() == 1_650_000_000
    assert info.training_set == "0123abcd"


def test_list_models_reports_a_malformed_deploy_key(tmp_path):
    fake_model(tmp_path / "root" / "m")
    (tmp_path / "deep_events.yaml").write_text("deploy: nope\n")
    with pytest.raises(MetadataError) as error:
        list_models([tmp_path / "root"], tmp_path)
    assert str(error.value).startswith(str(tmp_path / "deep_events.yaml"))


def test_training_model_roots_are_the_settings_files_folders(tmp_path):
    home = tmp_path / "home"
    training = home / "training"
    training.mkdir(parents=True)
    prompt = {
        "collection": "event_data_points",
        "db_prompt": [{"cell_line": "cos7"}, {"cell_line": "u2os"}],
        "settings": {"epochs": 1},
    }
    (training / "a.yaml").write_text(yaml.safe_dump({**prompt, "folder": "../out_a"}))
    (training / "b.yaml").write_text(yaml.safe_dump(prompt))
    (training / "c.yaml").write_text(yaml.safe_dump({**prompt, "folder": str(tmp_path / "x")}))
    (training / "broken.yaml").write_text("folder: [\n")
    assert training_model_roots(home) == [
        (home / "out_a").resolve(),
        home / "training_data",
        tmp_path / "x",
    ]


def test_models_markdown_table(tmp_path):
    deployed = fake_model(tmp_path / "a|b", mtime=1_700_000_000, f1=0.8512)
    plain = fake_model(tmp_path / "c", threshold=None, mtime=1_600_000_000)
    home = tmp_path / "home"
    deploy_model(home, deployed)
    lines = models_markdown(list_models([tmp_path], home)).splitlines()
    assert lines[0] == (
        "| model | backend | event F1 | threshold | training set | date | deployed |"
    )
    assert len(lines) == 4
    assert lines[2].startswith(f"| `{str(deployed).replace('|', chr(92) + '|')}` | torch |")
    assert "| 0.851 | 0.600 | `/sets/abc` |" in lines[2]
    assert lines[2].endswith("| points |")
    assert lines[3].startswith(f"| `{plain}` | torch | – | – |") and lines[3].endswith("|  |")
    assert models_markdown([]) == "_No trained models found._"
