"""The run engine passes settings to run processes explicitly, not through os.environ."""

import json

import pytest

from deep_events_dagster.cli.runs import (
    prepare_home,
    run_arguments,
    settings_from_run_arguments,
    ui_environment,
)
from deep_events_dagster.settings.platform import (
    HOME_ENV,
    KINDS_ENV,
    OUTPUT_ROOT_ENV,
    QUIET_ENV,
    ROOTS_ENV,
    load_settings,
)

COMMAND_LINE_VARIABLES = (KINDS_ENV, ROOTS_ENV, OUTPUT_ROOT_ENV, QUIET_ENV)


@pytest.fixture
def command_line_settings(tmp_path, monkeypatch):
    for name in COMMAND_LINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # set here so that monkeypatch restores what prepare_home overwrites
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "elsewhere"))
    home = tmp_path / "home"
    home.mkdir()
    (home / "deep_events.yaml").write_text("kinds: [points]\nquiet_seconds: 3\n")
    (tmp_path / "data").mkdir()
    return load_settings(
        home,
        kinds=("points", "lines"),
        roots=(tmp_path / "data",),
        output_root=tmp_path / "derived",
        quiet_seconds=7.5,
    )


def test_run_arguments_rebuild_the_command_line_settings(command_line_settings, tmp_path):
    arguments = run_arguments(command_line_settings)
    json.dumps(arguments)  # stored with the run by Dagster: plain values only
    rebuilt = settings_from_run_arguments(arguments)
    assert rebuilt.home == command_line_settings.home
    assert rebuilt.kinds == ("points", "lines")
    assert [str(r) for r in rebuilt.roots] == [str((tmp_path / "data").resolve())]
    assert str(rebuilt.output_root) == str((tmp_path / "derived").resolve())
    assert rebuilt.quiet_seconds == 7.5


def test_the_settings_digest_tells_different_settings_apart(command_line_settings):
    other = command_line_settings.model_copy(update={"kinds": ("points",)})
    assert (
        run_arguments(other)["settings_key"] != run_arguments(command_line_settings)["settings_key"]
    )
    assert run_arguments(command_line_settings) == run_arguments(command_line_settings)


def test_prepare_home_exports_only_the_home(command_line_settings, monkeypatch):
    import os

    prepare_home(command_line_settings)
    assert os.environ["DAGSTER_HOME"] == str(command_line_settings.dagster_home)
    assert all(name not in os.environ for name in COMMAND_LINE_VARIABLES)


def test_the_ui_gets_the_command_line_settings_in_its_environment(command_line_settings):
    environment = ui_environment(command_line_settings)
    assert environment[KINDS_ENV] == "points,lines"
    assert environment[QUIET_ENV] == "7.5"
    assert environment[OUTPUT_ROOT_ENV].endswith("derived")
    assert load_settings(command_line_settings.home, environ=environment).kinds == (
        "points",
        "lines",
    )
