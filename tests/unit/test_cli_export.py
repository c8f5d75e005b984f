"""`deep-events export MODEL_DIR`: one line per export; a wrong folder: one line, exit 2."""

import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from deep_events_dagster.cli import main
from tests.unit.ml import export_fixtures
from tests.unit.ml.export_fixtures import copy_model_dir

one_thread = export_fixtures.one_thread
export_root = export_fixtures.export_root
learning_training_set = export_fixtures.learning_training_set
unet_model_dir = export_fixtures.unet_model_dir


def test_export_prints_the_exports_and_exits_0(unet_model_dir, tmp_path, capfd):
    model_dir = copy_model_dir(unet_model_dir, tmp_path / "model")
    code = main(["export", str(model_dir), "--format", "onnx", "--format", "torchscript"])
    out = capfd.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert [line.split()[:2] for line in lines] == [["onnx", "ok"], ["torchscript", "ok"]]
    assert str(model_dir / "model.onnx") in out and str(model_dir / "model.torchscript.pt") in out
    assert (model_dir / "exports.yaml").is_file()


def test_a_folder_that_is_not_a_model_folder_is_one_line_and_exit_2(tmp_path):
    """The real command, in a fresh process: no traceback, one line on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "deep_events_dagster.cli", "export", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}: not a model folder (no settings.yaml; train a model first)"
    ]
    assert "Traceback" not in result.stdout


def test_an_unevaluated_model_is_one_line_and_exit_2(unet_model_dir, tmp_path, capfd):
    model_dir = copy_model_dir(unet_model_dir, tmp_path / "model")
    (model_dir / "evaluation.yaml").unlink()
    code = main(["export", str(model_dir)])
    err = capfd.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "no evaluation.yaml" in err
    assert not (model_dir / "model.onnx").exists()
