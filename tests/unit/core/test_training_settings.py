"""Tests for core.training_settings: the original's scheduled training settings files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deep_events_dagster.core.errors import InputError
from deep_events_dagster.core.training_run import BACKENDS, backend_name, spec_fingerprint
from deep_events_dagster.core.training_settings import (
    PROMPT_SETTING_KEYS,
    TrainingSettingsError,
    load_training_file,
)

LIST_FILE = """\
folder: ../out
collection: event_data_points
backend: torch
db_prompt:
  - {cell_line: cos7, microscope: isim}
  - {cell_line: u2os}
  - {}
settings:
  model: unet
  n_timepoints: 3
  epochs: 20
  weight: {alpha: 0.25, gamma: 2}
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_list_prompt_gives_one_spec_per_prompt(tmp_path):
    path = _write(tmp_path / "settings" / "fission.yaml", LIST_FILE)
    specs = load_training_file(path)
    assert [s.index for s in specs] == [0, 1, 2]
    assert [s.partition_key for s in specs] == ["fission/0", "fission/1", "fission/2"]
    assert [s.db_prompt for s in specs] == [
        {"cell_line": "cos7", "microscope": "isim"},
        {"cell_line": "u2os"},
        {},
    ]
    assert [s.name for s in specs] == ["cos7_isim", "u2os", "all"]
    first = specs[0]
    assert first.file == path.resolve()
    assert first.folder == (tmp_path / "out").resolve()
    assert first.collection == "event_data_points"
    assert first.backend == "torch"
    assert first.settings == {
        "model": "unet",
        "n_timepoints": 3,
        "epochs": 20,
        "weight": {"alpha": 0.25, "gamma": 2},
    }
    # one fingerprint per distinct prompt, 16 hex digits
    assert len({s.spec_fingerprint for s in specs}) == 3
    assert all(re.fullmatch(r"[0-9a-f]{16}", s.spec_fingerprint) for s in specs)
    # partition keys: characters Dagster accepts and that need no escaping in file names
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+/[0-9]+", s.partition_key) for s in specs)


def test_keys_and_fingerprints_are_stable_and_detect_changes(tmp_path):
    path = _write(tmp_path / "fission.yaml", LIST_FILE)
    before = load_training_file(path)
    # same content, other key order and 20 → 20.0: nothing changes
    reordered = LIST_FILE.replace(
        "  model: unet\n  n_timepoints: 3\n  epochs: 20\n",
        "  epochs: 20.0\n  n_timepoints: 3\n  model: unet\n",
    )
    _write(path, reordered)
    again = load_training_file(path)
    assert [(s.partition_key, s.spec_fingerprint) for s in again] == [
        (s.partition_key, s.spec_fingerprint) for s in before
    ]
    # a changed setting changes every fingerprint, keys stay
    _write(path, LIST_FILE.replace("epochs: 20", "epochs: 30"))
    changed = load_training_file(path)
    assert [s.partition_key for s in changed] == [s.partition_key for s in before]
    assert all(a.spec_fingerprint != b.spec_fingerprint for a, b in zip(changed, before))
    # a changed prompt changes only its own fingerprint
    _write(path, LIST_FILE.replace("{cell_line: u2os}", "{cell_line: hela}"))
    one = load_training_file(path)
    same = [a.spec_fingerprint == b.spec_fingerprint for a, b in zip(one, before)]
    assert same == [True, False, True]
    # the collection and the backend are part of it
    _write(path, LIST_FILE.replace("backend: torch", "backend: tensorflow"))
    assert load_training_file(path)[0].spec_fingerprint != before[0].spec_fingerprint
    _write(path, LIST_FILE.replace("event_data_points", "event_data_other"))
    assert load_training_file(path)[0].spec_fingerprint != before[0].spec_fingerprint


def test_fingerprint_function_is_order_insensitive():
    a = spec_fingerprint(
        db_prompt={"a": 1, "b": [1, 2]},
        settings={"x": 1.0, "y": {"p": 2}},
        collection="c",
        backend="torch",
    )
    b = spec_fingerprint(
        db_prompt={"b": [1, 2], "a": 1},
        settings={"y": {"p": 2}, "x": 1},
        collection="c",
        backend="torch",
    )
    c = spec_fingerprint(
        db_prompt={"b": [2, 1], "a": 1},
        settings={"y": {"p": 2}, "x": 1},
        collection="c",
        backend="torch",
    )
    assert a == b != c


def test_single_prompt_defaults_and_paired_settings(tmp_path):
    path = _write(
        tmp_path / "one run.yaml",
        "collection: event_data_points\ndb_prompt: {cell_line: cos7}\n",
    )
    (spec,) = load_training_file(path)
    assert spec.partition_key == "one_run/0"
    assert spec.backend == "torch"
    assert spec.folder is None
    assert spec.settings == {}
    path = _write(
        tmp_path / "paired.yaml",
        "collection: c\nbackend: TF\ndb_prompt: [{a: 1}, {a: 2}]\n"
        "settings: [{epochs: 1}, default]\n",
    )
    specs = load_training_file(path)
    assert [s.settings for s in specs] == [{"epochs": 1}, {}]
    assert specs[0].backend == "tensorflow"


def test_original_numbered_format_and_prompt_setting_keys(tmp_path):
    text = """\
# Main settings
folder: /data/event_data
collection: pda_events
db_prompt_2:
  microscope: isim
  smooth: 2
settings_2: default
db_prompt_4:
  microscope: isim
  n_timepoints: 3
  subset: 0.5
  fps: 1
settings_4:
  n_augmentations: 50
  brightness_range: [0.4, 1]
"""
    specs = load_training_file(_write(tmp_path / "pearls.yaml", text))
    assert [s.partition_key for s in specs] == ["pearls/2", "pearls/4"]
    assert specs[0].db_prompt == {"microscope": "isim"}
    assert specs[0].settings == {"smooth": 2}
    assert specs[1].db_prompt == {"microscope": "isim"}
    assert specs[1].settings == {
        "n_augmentations": 50,
        "brightness_range": [0.4, 1],
        "n_timepoints": 3,
        "subset_fraction": 0.5,
        "fps": 1,
    }
    assert specs[1].folder == Path("/data/event_data")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("collection: c\ndb_prompt: {a: 1\n", "malformed YAML"),
        ("", "the file is empty"),
        ("- a\n- b\n", "expected a mapping"),
        ("db_prompt: {a: 1}\n", "'collection'"),
        ("collection: 3\ndb_prompt: {a: 1}\n", "'collection'"),
        ("collection: c\n", "'db_prompt' is missing"),
        ("collection: c\ndb_prompt:\n", "'db_prompt' is empty"),
        ("collection: c\ndb_prompt: [{a: 1}, cos7]\n", "'db_prompt[1]' must be a mapping"),
        ("collection: c\ndb_prompt: []\n", "empty list"),
        ("collection: c\ndb_prompt: {a: 1}\nsettings: [1]\n", "'settings' is a list"),
        ("collection: c\ndb_prompt: [{a: 1}]\nsettings: [{}, {}]\n", "2 entries for 1"),
        ("collection: c\ndb_prompt: {a: 1}\nsettings: fast\n", "'settings' must be a mapping"),
        ("collection: c\ndb_prompt: {a: 1}\nbackend: jax\n", "'backend' must be one of"),
        ("collection: c\ndb_prompt: {a: 1}\nfolder: [x]\n", "'folder' must be a path"),
        ("collection: c\ndb_promt: {a: 1}\n", "unknown key(s) db_promt"),
        ("collection: c\ndb_prompt: {a: 1}\ndb_prompt_0: {a: 2}\n", "training run 0"),
        ("collection: c\ndb_prompt_1: {a: 1}\nsettings_2: {}\n", "settings_2 without"),
        (
            "collection: c\ndb_prompt: {a: 1, n_timepoints: 3}\nsettings: {n_timepoints: 1}\n",
            "sets n_timepoints: 3 but its settings say n_timepoints: 1",
        ),
    ],
)
def test_errors_name_the_file(tmp_path, text, needle):
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(TrainingSettingsError) as info:
        load_training_file(path)
    assert isinstance(info.value, InputError)
    assert str(info.value).startswith(str(path.resolve()))
    assert needle in str(info.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_training_file(tmp_path / "nope.yaml")


def test_training_folder_reads_every_file_it_can(tmp_path):
    from deep_events_dagster.core.training_settings import load_training_folder

    assert load_training_folder(tmp_path / "missing").specs == ()
    (tmp_path / "a.yaml").write_text("collection: event_data_points\ndb_prompt: {type: event}\n")
    (tmp_path / "b.yml").write_text("db_prompt: 3\n")  # malformed content
    (tmp_path / "a.yml").write_text(
        "collection: event_data_points\ndb_prompt: [{type: event}, {label: x}]\n"
    )
    (tmp_path / "notes.txt").write_text("not settings")
    folder = load_training_folder(tmp_path)
    assert [s.partition_key for s in folder.specs] == ["a/0", "a/1"]
    assert folder.spec("a/0").file == tmp_path / "a.yaml"
    assert folder.spec("a/1").file == tmp_path / "a.yml"  # no collision for this one
    assert folder.spec("b/0") is None
    assert len(folder.problems) == 2
    assert folder.problems[0].startswith(str(tmp_path / "a.yml")) and "a.yaml" in folder.problems[0]
    assert folder.problems[1].startswith(str(tmp_path / "b.yml"))


def test_malformed_yaml_is_one_line_with_its_position(tmp_path):
    path = _write(tmp_path / "bad.yaml", "collection: c\ndb_prompt: [unclosed\n")
    with pytest.raises(TrainingSettingsError) as info:
        load_training_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path.resolve()}: malformed YAML: line 3, column 1: ")
    assert "expected ',' or ']'" in message


def test_training_folder_check_leaves_a_refused_file_out(tmp_path):
    from deep_events_dagster.core.training_settings import load_training_folder

    (tmp_path / "a.yaml").write_text("collection: c\ndb_prompt: {type: event}\n")
    (tmp_path / "a.yml").write_text("collection: c\ndb_prompt: {label: x}\n")
    (tmp_path / "b.yaml").write_text("collection: c\ndb_prompt: {type: event}\n")
    seen = []

    def check(specs):
        seen.append([s.partition_key for s in specs])
        if specs[0].file.name == "a.yaml":
            raise TrainingSettingsError(specs[0].file, "refused")

    folder = load_training_folder(tmp_path, check=check)
    assert seen == [["a/0"], ["a/0"], ["b/0"]]
    # a.yaml is refused, so it holds no key: a.yml keeps a/0 without a collision
    assert [(s.partition_key, s.file.name) for s in folder.specs] == [
        ("a/0", "a.yml"),
        ("b/0", "b.yaml"),
    ]
    assert folder.problems == (f"{tmp_path / 'a.yaml'}: refused",)


def test_backends_and_prompt_keys_are_declared_once():
    from deep_events_dagster.core.training_set_parameters import TrainingSetParameters

    assert BACKENDS == ("torch", "tensorflow")
    assert [backend_name(n) for n in ("PyTorch", "TF", "keras", "Torch", "jax")] == [
        "torch",
        "tensorflow",
        "tensorflow",
        "torch",
        "jax",
    ]
    # every training-set parameter (and the original's ``subset``) may be given in a prompt
    assert set(PROMPT_SETTING_KEYS) == {*TrainingSetParameters.model_fields, "subset"}
    assert PROMPT_SETTING_KEYS["subset"] == "subset_fraction"


def test_output_folder_is_the_files_folder_or_the_homes_training_data(tmp_path):
    path = tmp_path / "runs.yaml"
    path.write_text("collection: c\ndb_prompt: {}\n")
    (spec,) = load_training_file(path)
    assert spec.folder is None
    assert spec.output_folder(tmp_path / "home") == tmp_path / "home" / "training_data"
    path.write_text("folder: out\ncollection: c\ndb_prompt: {}\n")
    (spec,) = load_training_file(path)
    assert spec.output_folder(tmp_path / "home") == tmp_path / "out"
