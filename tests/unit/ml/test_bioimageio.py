"""The bioimage.io package: valid for bioimageio.spec (offline), and its tensors reproduce."""

import socket

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from deep_events_dagster.core.normalisation import normalize_image_frames  # noqa: E402
from deep_events_dagster.ml.bioimageio import (  # noqa: E402
    _scale_range,
    format_version,
    write_bioimageio_package,
)
from deep_events_dagster.ml.bioimageio_check import check_bioimageio_package  # noqa: E402
from deep_events_dagster.ml.export import export_model  # noqa: E402
from deep_events_dagster.ml.model_folder import ModelFolder  # noqa: E402
from tests.unit.ml import export_fixtures  # noqa: E402
from tests.unit.ml.export_fixtures import N_TIMEPOINTS, copy_model_dir  # noqa: E402

one_thread = export_fixtures.one_thread
export_root = export_fixtures.export_root
learning_training_set = export_fixtures.learning_training_set
unet_model_dir = export_fixtures.unet_model_dir

PACKAGE_FILES = {
    "rdf.yaml",
    "model.torchscript.pt",
    "model.onnx",
    "test_input.npy",
    "test_output.npy",
    "sample_input.tif",
    "sample_output.tif",
    "cover.png",
    "README.md",
}


@pytest.fixture
def offline(monkeypatch):
    """No network: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the bioimage.io validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def package(unet_model_dir):
    return write_bioimageio_package(unet_model_dir)


def test_package_has_its_files_and_describes_the_model(unet_model_dir, package):
    assert package == unet_model_dir / "bioimageio"
    assert {p.name for p in package.iterdir()} == PACKAGE_FILES
    rdf = yaml.safe_load((package / "rdf.yaml").read_text())
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5.")
    assert rdf["license"] == "MIT"
    assert rdf["cite"][0]["url"] == "https://github.com/LEB-EPFL/deep-events"
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [a.get("id", a["type"]) for a in inp["axes"]] == ["batch", "channel", "y", "x"]
    assert inp["axes"][1]["channel_names"] == [f"frame{i + 1}" for i in range(N_TIMEPOINTS)]
    assert inp["axes"][2]["size"] == {"min": 16, "step": 4}
    scale = [step for step in inp["preprocessing"] if step["id"] == "scale_range"]
    assert scale[0]["kwargs"]["axes"] == ["y", "x"]
    assert (scale[0]["kwargs"]["min_percentile"], scale[0]["kwargs"]["max_percentile"]) == (0, 100)
    assert "postprocessing" not in out
    assert set(rdf["weights"]) == {"torchscript", "onnx"}
    assert rdf["config"]["deep_events"]["threshold"] == ModelFolder(unet_model_dir).threshold()
    test_input = np.load(package / "test_input.npy")
    test_output = np.load(package / "test_output.npy")
    assert test_input.shape[:2] == (1, N_TIMEPOINTS) and test_input.dtype == np.float32
    assert test_output.shape == (1, 1, *test_input.shape[-2:])
    from PIL import Image

    with Image.open(package / "cover.png") as cover:
        assert cover.width == 2 * cover.height


def test_package_validates_with_bioimageio_spec_offline(package, offline):
    spec = pytest.importorskip("bioimageio.spec")
    from bioimageio.spec.model.v0_5 import ModelDescr

    assert format_version() == ModelDescr.implemented_format_version
    description = spec.load_description(package / "rdf.yaml", perform_io_checks=True)
    summary = description.validation_summary
    errors = [e.msg for d in summary.details for e in d.errors]
    assert summary.status in ("valid-format", "passed"), errors
    assert isinstance(description, ModelDescr)


def test_weights_reproduce_the_test_output_after_the_preprocessing(package):
    check = check_bioimageio_package(package)  # the ONNX weights
    assert check.ok and check.max_abs_difference < 1e-4
    # the TorchScript weights
    test_input = np.load(package / "test_input.npy")
    test_output = np.load(package / "test_output.npy")
    module = torch.jit.load(str(package / "model.torchscript.pt"))
    with torch.no_grad():
        got = module(torch.from_numpy(_scale_range(test_input))).numpy()
    assert np.abs(got - test_output).max() < 1e-4
    assert test_output.max() > 0.01  # the sample the model scores highest


def test_preprocessing_is_the_training_sets_normalisation():
    frames = np.random.default_rng(0).integers(90, 4000, size=(2, 3, 24, 28)).astype(np.uint16)
    assert np.abs(_scale_range(frames) - normalize_image_frames(frames)).max() < 1e-5


def test_export_model_records_the_package(unet_model_dir, tmp_path):
    model_dir = copy_model_dir(unet_model_dir, tmp_path / "model")
    report = export_model(model_dir, ["bioimageio"])
    assert [r.format for r in report.results] == ["torchscript", "onnx", "bioimageio"]
    result = report.result("bioimageio")
    assert result.ok, result.reason
    assert "validated with bioimageio.spec" in result.reason
    entry = ModelFolder(model_dir).exports()["bioimageio"]
    assert entry["status"] == "ok" and entry["file"] == "bioimageio"
    files = (model_dir / "bioimageio").rglob("*")
    assert entry["bytes"] == sum(p.stat().st_size for p in files if p.is_file())


def test_a_package_needs_an_evaluated_model(unet_model_dir, tmp_path):
    model_dir = copy_model_dir(unet_model_dir, tmp_path / "model")
    (model_dir / "evaluation.yaml").unlink()
    with pytest.raises(ValueError, match=r"no evaluation\.yaml"):
        write_bioimageio_package(model_dir, tmp_path / "package")
    assert not (tmp_path / "package").exists()
