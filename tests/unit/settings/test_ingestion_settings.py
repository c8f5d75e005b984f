"""``ingestion:`` and ``kinds:`` of deep_events.yaml (settings.ingestion)."""

import pytest

from deep_events_dagster.core.errors import MetadataError
from deep_events_dagster.settings.platform import load_settings


def test_bad_config_is_named(tmp_path):
    (tmp_path / "deep_events.yaml").write_text("ingestion:\n  sigmaa: 3\n")
    with pytest.raises(MetadataError, match="unknown ingestion settings"):
        load_settings(tmp_path, environ={})


def test_kinds_mapping_with_per_kind_choices(tmp_path):
    from deep_events_dagster.core.kinds import KindOptions

    (tmp_path / "deep_events.yaml").write_text(
        "ingestion:\n  auto_negatives: 2\n  event_content: fission\n  add_post_frames: 3\n"
        "  hard_negatives: 5\n"
        "kinds:\n"
        "  points:\n"
        "  bf_points: {annotations: points, channel_contrast: brightfield, add_post_frames: 0}\n"
        "  pearling: {type: lines, line_width: 5, label: [mito, drp1], auto_negatives: false}\n"
    )
    settings = load_settings(tmp_path, environ={})
    assert settings.kinds == ("points", "bf_points", "pearling")
    points = settings.kind_settings("points")
    assert points.options == KindOptions("points", event_content="fission")
    assert (points.params.auto_negatives, points.params.add_post_frames) == (2, 3)
    assert points.params.hard_negatives == 5
    bf = settings.kind_settings("bf_points")
    assert bf.options.annotations == "points" and bf.options.contrasts == ("brightfield",)
    assert bf.params.add_post_frames == 0 and bf.params.auto_negatives == 2
    pearling = settings.kind_settings("pearling")
    assert (pearling.options.shape, pearling.options.line_width) == ("lines", 5.0)
    assert pearling.options.labels == ("mito", "drp1") and pearling.params.auto_negatives is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kinds:\n  a: {colour: red}\n", r"unknown settings \['colour'\] for kind 'a'"),
        ("kinds:\n  a: {type: circles}\n", r"kinds\.a\.type must be points or lines"),
        ("ingestion:\n  auto_negatives: 7\n", r"ingestion\.auto_negatives must be"),
        ("kinds:\n  a: {auto_negatives: -1}\n", r"kinds\.a\.auto_negatives must be"),
        ("ingestion:\n  label: {a: 1}\n", r"ingestion\.label must be a name or a list"),
        ("ingestion:\n  hard_negatives: -2\n", r"ingestion\.hard_negatives must be a whole"),
        ("kinds:\n  a: {hard_negatives: yes}\n", r"kinds\.a\.hard_negatives must be a whole"),
    ],
)
def test_bad_kind_settings_name_the_file_and_key(tmp_path, text, message):
    (tmp_path / "deep_events.yaml").write_text(text)
    with pytest.raises(MetadataError, match=message) as caught:
        load_settings(tmp_path, environ={})
    assert str(tmp_path / "deep_events.yaml") in str(caught.value)
