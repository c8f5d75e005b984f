"""Lineage in the asset graph: from every raw movie to every model and its predictions."""

import dagster as dg

from deep_events_dagster.defs.build import build_definitions
from deep_events_dagster.settings.platform import load_settings


def _upstream(graph, key: dg.AssetKey) -> set[str]:
    seen, todo = set(), [key]
    while todo:
        for parent in graph.get(todo.pop()).parent_keys:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return {k.to_user_string() for k in seen}


def test_the_training_set_comes_from_every_kinds_catalog(tmp_path):
    (tmp_path / "deep_events.yaml").write_text("kinds: [points, lines]\n")
    graph = build_definitions(load_settings(tmp_path)).resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("training_set")).parent_keys}
    assert parents == {"points/event_catalog", "lines/event_catalog", "legacy_events"}


def test_a_models_exports_and_predictions_trace_back_to_the_raw_movies(tmp_path):
    graph = build_definitions(load_settings(tmp_path)).resolve_asset_graph()
    assert {"raw_movie", "points/ground_truth", "training_set", "trained_model"} <= _upstream(
        graph, dg.AssetKey("model_exports")
    )
    assert {"raw_movie", "points/event_catalog", "model_exports"} <= _upstream(
        graph, dg.AssetKey(["points", "predictions"])
    )
