"""The private Dagster names behind ``dagster_internals`` exist in the installed release (an
upgrade that moves one fails here, not in the middle of a cluster run)."""

import ast
import importlib
import inspect

import pytest

from deep_events_dagster import dagster_internals


def _private_imports() -> list[tuple[str, str]]:
    tree = ast.parse(inspect.getsource(dagster_internals))
    return sorted(
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        if node.module.startswith(("dagster.", "dagster_shared"))
        for alias in node.names
    )


def test_the_adapter_reaches_dagster_only_lazily_and_names_what_it_uses():
    assert len(_private_imports()) >= 8


@pytest.mark.parametrize(("module", "name"), _private_imports())
def test_each_private_name_exists(module, name):
    assert hasattr(importlib.import_module(module), name)


def test_create_run_keeps_the_keywords_the_adapter_passes():
    from dagster._cli.job import _create_run

    expected = {"instance", "code_location", "remote_repo", "remote_job", "run_config", "tags"}
    assert expected | {"op_selection", "run_id"} <= set(inspect.signature(_create_run).parameters)
