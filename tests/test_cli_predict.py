"""`deep-events predict PATH… --model DIR`: a line per acquisition; bad paths are reported and
skipped."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from deep_events_dagster.cli import main
from deep_events_dagster.ml import predict
from deep_events_dagster.testing.ome_tiff import write_ome_movie

JSON_KEYS = ["acquisition", "movie", "threshold", "frames", "events"]


class LatestFramePredictor:
    """Probability = 0.8 × the window's latest (normalised) frame."""

    in_channels = 1

    def predict(self, images, batch_size=8):
        return images[:, -1] * np.float32(0.8)


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "settings.yaml").write_text(yaml.safe_dump({"backend": "torch", "n_timepoints": 1}))
    (model / "evaluation.yaml").write_text(yaml.safe_dump({"threshold": 0.5}))
    monkeypatch.setattr(
        predict,
        "load_predictor",
        lambda model_dir, device="cpu", precision="float32": LatestFramePredictor(),
    )
    return model


def acquisition(folder, n_frames=5, spot_frames=(1, 2)):
    """An acquisition folder whose movie has a hot pixel at (4, 6) in ``spot_frames``."""
    movie = np.full((n_frames, 12, 10), 100, dtype=np.uint16)
    for t in spot_frames:
        movie[t, 4, 6] = 1000
    write_ome_movie(
        folder / "movie.ome.tif",
        movie,
        axes="TYX",
        physical_size_x=0.1,
        physical_size_y=0.1,
        time_increment_s=1.0,
    )
    return folder


def test_json_is_one_object_per_acquisition(tmp_path, fake_model, capsys):
    first = acquisition(tmp_path / "data" / "cell_1")
    second = acquisition(tmp_path / "data" / "cell_2", n_frames=7, spot_frames=(4,))
    movie_file = acquisition(tmp_path / "other" / "cell_1", n_frames=3, spot_frames=())
    out = tmp_path / "out"

    code = main(
        [
            "predict",
            str(first),
            str(second),
            str(movie_file / "movie.ome.tif"),
            "--model",
            str(fake_model),
            "--json",
            "--out",
            str(out),
        ]
    )

    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [list(line) for line in lines] == [JSON_KEYS] * 3
    assert [line["acquisition"] for line in lines] == [str(first), str(second), str(movie_file)]
    assert {line["movie"] for line in lines} == {"movie.ome.tif"}
    assert [len(line["frames"]) for line in lines] == [5, 7, 3]
    assert lines[0]["threshold"] == 0.5
    assert lines[0]["frames"][1] == {"frame": 1, "score": pytest.approx(0.8), "y": 4, "x": 6}
    assert lines[0]["events"] == [{"frames": [1, 3], "y": 4, "x": 6, "score": pytest.approx(0.8)}]
    assert [e["frames"] for e in lines[1]["events"]] == [[4, 5]]
    assert lines[2]["events"] == []
    # several PATHs: one folder each, named after the acquisition (the second cell_1 renamed)
    assert sorted(p.name for p in out.iterdir()) == ["cell_1", "cell_1_2", "cell_2"]
    for name in ("cell_1", "cell_1_2", "cell_2"):
        assert sorted(p.name for p in (out / name).iterdir()) == [
            "predictions_points.csv",
            "predictions_points.ome.tif",
        ]


def test_bad_paths_are_reported_and_the_others_still_scored(tmp_path, fake_model, capsys):
    good = acquisition(tmp_path / "good")
    also_good = acquisition(tmp_path / "also_good")
    missing = tmp_path / "missing.ome.tif"
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt.ome.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x01" * 64)

    code = main(
        [
            "predict",
            str(good),
            str(missing),
            str(empty),
            str(corrupt),
            str(also_good),
            "--model",
            str(fake_model),
            "--json",
        ]
    )

    captured = capsys.readouterr()
    assert code == 1
    printed = [json.loads(line)["acquisition"] for line in captured.out.splitlines()]
    assert printed == [str(good), str(also_good)]
    errors = captured.err.strip().splitlines()
    assert len(errors) == 4 and "Traceback" not in captured.err
    assert errors[0].startswith(f"error: {missing}")
    assert (
        errors[1] == f"error: {empty}: no *.ome.tif / *.ome.tiff / *.ome.zarr movie in this folder"
    )
    assert errors[2].startswith(f"error: {corrupt}")
    assert errors[3] == "3 of 5 path(s) could not be scored"


def test_the_summary_says_what_was_found_and_writes_nothing_without_out(
    tmp_path, fake_model, capsys
):
    folder = acquisition(tmp_path / "cell")
    before = sorted(tmp_path.rglob("*"))

    code = main(["predict", str(folder), "--model", str(fake_model)])

    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{folder / 'movie.ome.tif'}: 5 frames, 1 event(s) above ")
    assert "threshold 0.5 (evaluation.yaml)" in lines[0]
    assert lines[1] == "  frames 1–2 at y 4, x 6: score 0.800"
    assert lines[2] == "  files: none (use --out DIR)"
    assert sorted(tmp_path.rglob("*")) == before


def test_one_path_with_out_writes_into_the_folder_itself(tmp_path, fake_model, capsys):
    folder = acquisition(tmp_path / "cell")
    code = main(["predict", str(folder), "--model", str(fake_model), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0
    csv_path = tmp_path / "o" / "predictions_points.csv"
    assert f"  files: {csv_path}, {tmp_path / 'o' / 'predictions_points.ome.tif'}" in out
    assert len(csv_path.read_text().splitlines()) == 1 + 5


def test_a_folder_that_is_not_a_model_is_one_line_and_exit_2(tmp_path):
    """The real command, in a fresh process: no traceback, one line on stderr."""
    folder = acquisition(tmp_path / "cell")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deep_events_dagster.cli",
            "predict",
            str(folder),
            "--model",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}: not a model folder (no settings.yaml; train a model first)"
    ]
    assert result.stdout == ""
