"""Exports: TorchScript, ONNX and Keras files give the model's probabilities and its decisions."""

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from deep_events_dagster.core.metric_units import event_groups, sample_max  # noqa: E402
from deep_events_dagster.core.metrics import event_counts  # noqa: E402
from deep_events_dagster.ml import export as export_module  # noqa: E402
from deep_events_dagster.ml import export_checks  # noqa: E402
from deep_events_dagster.ml.evaluate import _manifest_events  # noqa: E402
from deep_events_dagster.ml.export import export_model  # noqa: E402
from deep_events_dagster.ml.export_checks import check_input  # noqa: E402
from deep_events_dagster.ml.export_predictors import load_export  # noqa: E402
from deep_events_dagster.ml.export_report import (  # noqa: E402
    ExportCheckFailed,
    ExportError,
    ExportUnsupported,
    ModelNotEvaluated,
)
from deep_events_dagster.ml.model_folder import ModelFolder  # noqa: E402
from deep_events_dagster.ml.torch.checkpoints import load_model  # noqa: E402
from deep_events_dagster.ml.torch.export import (  # noqa: E402
    export_onnx,
    export_torchscript,
    load_onnx,
    load_torchscript,
    onnx_opset,
    torchscript_in_channels,
)
from deep_events_dagster.ml.torch.models import BottleneckConvLSTM, UNet  # noqa: E402
from deep_events_dagster.ml.torch.predictor import predict  # noqa: E402
from tests.unit.ml import export_fixtures  # noqa: E402
from tests.unit.ml.export_fixtures import copy_model_dir  # noqa: E402

# The shared model-folder fixtures (built once per session, see export_fixtures).
one_thread = export_fixtures.one_thread
export_root = export_fixtures.export_root
learning_training_set = export_fixtures.learning_training_set
unet_model_dir = export_fixtures.unet_model_dir
lstm_model_dir = export_fixtures.lstm_model_dir
keras_model_dir = export_fixtures.keras_model_dir

TOLERANCE = 1e-4
SIZES = ((32, 32), (48, 64))


def _networks():
    torch.manual_seed(3)
    unet = UNet(3, nb_filters=4, first_conv_size=12).eval()  # even kernel: asymmetric padding
    lstm = BottleneckConvLSTM(3, nb_filters=4, first_conv_size=3).eval()
    for network in (unet, lstm):  # non-trivial batch-norm statistics
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return {"unet": unet, "bottleneck_lstm": lstm}


@pytest.mark.parametrize("kind", ["unet", "bottleneck_lstm"])
def test_torchscript_and_onnx_match_torch_at_two_sizes(tmp_path, kind):
    network = _networks()[kind]
    torchscript_path = export_torchscript(network, tmp_path / "m.pt")
    assert torchscript_in_channels(torchscript_path) == 3
    torchscript = load_torchscript(torchscript_path)
    onnx_path = export_onnx(network, tmp_path / "m.onnx")
    session = load_onnx(onnx_path)
    assert onnx_opset(onnx_path) >= 17
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("input", "probabilities")
    assert inp.shape == ["batch", 3, "height", "width"]
    assert out.shape == ["batch", 1, "height", "width"]
    generator = torch.Generator().manual_seed(0)
    for batch, (height, width) in zip((2, 1), SIZES):
        x = torch.rand(batch, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = torch.sigmoid(network(x)).numpy()
            got_ts = torchscript(x).numpy()
        got_onnx = session.run(None, {"input": x.numpy()})[0]
        assert got_ts.shape == got_onnx.shape == (batch, 1, height, width)
        assert np.abs(got_ts - expected).max() < TOLERANCE
        assert np.abs(got_onnx - expected).max() < TOLERANCE
        assert expected.std() > 1e-3  # the comparison is not between constant maps


def test_check_input_differs_in_size_and_keeps_multiples_of_4():
    sample = np.random.default_rng(0).random((3, 32, 36), dtype=np.float32)
    grown = check_input(sample)
    assert grown.shape[:2] == (1, 3)
    height, width = grown.shape[-2:]
    assert height % 4 == 0 and width % 4 == 0
    assert height != 32 and width != 36 and height != width
    assert np.array_equal(grown[0, :, 4:36, 10:46], sample)


@pytest.fixture(scope="module")
def unet_report(unet_model_dir):
    return export_model(unet_model_dir)


def test_export_model_writes_and_checks_every_default_format(unet_model_dir, unet_report):
    assert unet_report.source == "torch"
    assert [r.format for r in unet_report.results] == ["keras", "onnx", "torchscript"]
    recorded = ModelFolder(unet_model_dir).exports()
    for result in unet_report.results:
        assert result.status == "ok", result.reason
        assert result.path.is_file() and result.bytes == result.path.stat().st_size > 0
        assert result.max_abs_difference <= TOLERANCE
        assert len(result.checked_sizes) == 2 and result.checked_sizes[0] != result.checked_sizes[1]
        assert result.events_differing <= 1
        entry = recorded[result.format]
        assert entry["status"] == "ok" and entry["bytes"] == result.bytes
        assert entry["file"] == result.path.name
        assert entry["event_counts"] == result.event_counts.as_dict()
    assert recorded["onnx"]["opset"] >= 17
    table = unet_report.markdown()
    assert table.splitlines()[0].startswith("| format | status | file | size |")
    assert "`model.h5`" in table and "`model.onnx`" in table and "`model.torchscript.pt`" in table
    lines = unet_report.lines()
    assert len(lines) == 4 and all(" ok " in line for line in lines[1:])


def test_every_export_decides_the_eval_events_as_evaluation_yaml(unet_model_dir, unet_report):
    """Each file, loaded on its own, scores every eval sample; its event counts at the chosen
    threshold are those of evaluation.yaml (one event may differ)."""
    folder = ModelFolder(unet_model_dir)
    evaluation = folder.evaluation()
    training_set = folder.training_set()
    images = np.load(training_set / "eval_images.npy")
    masks = np.load(training_set / "eval_masks.npy")
    groups = event_groups(_manifest_events(training_set), len(images))
    expected = np.array([evaluation[k] for k in ("tp", "fp", "fn", "tn")])
    predicted = expected[0] + expected[1]
    assert 0 < predicted < expected.sum(), "the fixture model should decide both ways"
    for export_format in ("keras", "onnx", "torchscript"):
        probabilities = load_export(unet_model_dir, export_format).predict(images)
        counts = event_counts(
            sample_max(probabilities), sample_max(masks), groups, evaluation["threshold"]
        )
        flipped = abs(counts.tp - expected[0]) + abs(counts.fp - expected[1])
        assert flipped <= 1, (export_format, counts, expected)


def test_keras_h5_matches_the_torch_model_at_two_sizes(unet_model_dir, unet_report):
    model = load_model(unet_model_dir / "model.pt")
    keras_predictor = load_export(unet_model_dir, "keras")
    generator = np.random.default_rng(1)
    for height, width in SIZES:
        x = generator.random((2, 3, height, width), dtype=np.float32)
        assert np.abs(keras_predictor.predict(x) - predict(model, x)).max() < TOLERANCE


def test_a_doctored_evaluation_fails_clearly_and_writes_nothing(unet_model_dir, tmp_path):
    model_dir = copy_model_dir(unet_model_dir, tmp_path / "model")
    evaluation = yaml.safe_load((model_dir / "evaluation.yaml").read_text())
    evaluation["tp"] += 3
    evaluation["fn"] -= 3
    (model_dir / "evaluation.yaml").write_text(yaml.safe_dump(evaluation))
    with pytest.raises(ExportError, match=r"evaluation\.yaml does not match the model") as error:
        export_model(model_dir, ["onnx"])
    assert f"tp {evaluation['tp']}" in str(error.value)
    assert not (model_dir / "model.onnx").exists()


def test_a_failed_check_removes_the_file_and_names_it(unet_model_dir, tmp_path, monkeypatch):
    model_dir = copy_model_dir(unet_model_dir, tmp_path / "model")
    monkeypatch.setattr(export_checks, "OUTPUT_TOLERANCE", -1.0)
    with pytest.raises(ExportCheckFailed, match=r"model\.onnx: max \|difference\|") as error:
        export_model(model_dir, ["onnx"])
    assert not (model_dir / "model.onnx").exists()
    assert error.value.report.result("onnx").status == "failed"
    assert ModelFolder(model_dir).exports()["onnx"]["status"] == "failed"


def test_a_format_that_cannot_hold_the_model_is_skipped(unet_model_dir, tmp_path, monkeypatch):
    """Also: exports.yaml keeps the entries of an earlier call."""
    model_dir = copy_model_dir(unet_model_dir, tmp_path / "model")
    export_model(model_dir, ["torchscript"])
    real_write = export_module._write

    def write(export_format, source, path):
        if export_format == "keras":
            path.write_bytes(b"half a file")
            raise ExportUnsupported("Keras cannot hold this model: a test says so")
        return real_write(export_format, source, path)

    monkeypatch.setattr(export_module, "_write", write)
    report = export_model(model_dir, ["keras", "onnx"])
    keras = report.result("keras")
    assert keras.status == "skipped" and "a test says so" in keras.reason
    assert not (model_dir / "model.h5").exists()
    assert report.result("onnx").ok
    assert "skipped" in "\n".join(report.lines())
    recorded = ModelFolder(model_dir).exports()
    assert list(recorded) == ["keras", "onnx", "torchscript"]
    assert [entry["status"] for entry in recorded.values()] == ["skipped", "ok", "ok"]


def test_bottleneck_lstm_exports_or_says_why_not(lstm_model_dir):
    report = export_model(lstm_model_dir, raise_on_failure=False)
    assert report.results
    for result in report.results:
        assert result.status in ("ok", "skipped"), result.reason
        path = ModelFolder(lstm_model_dir).export_path(result.format)
        if result.ok:
            assert path.is_file() and result.max_abs_difference <= TOLERANCE
            assert result.events_differing <= 1
        else:
            assert result.reason and not path.exists()
    assert report.result("onnx").ok and report.result("torchscript").ok


def test_a_keras_trained_model_is_the_source_of_its_exports(keras_model_dir):
    """backend: tensorflow: model.h5 from the Keras model itself, ONNX and TorchScript through
    its torch twin; all compared with the Keras model."""
    report = export_model(keras_model_dir)
    assert report.source == "keras"
    for result in report.results:
        assert result.ok, result.reason
        assert result.max_abs_difference <= TOLERANCE and result.events_differing <= 1


def test_exports_need_an_evaluated_model_folder(unet_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        export_model(tmp_path)
    model_dir = copy_model_dir(unet_model_dir, tmp_path / "model")
    (model_dir / "evaluation.yaml").unlink()
    with pytest.raises(ModelNotEvaluated, match=r"no evaluation\.yaml"):
        export_model(model_dir, ["onnx"])
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_model(unet_model_dir, ["tflite"])


def test_export_modules_import_no_backend():
    """ml.export and ml.bioimageio load torch, TensorFlow and ONNX Runtime only when used."""
    import json
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "import deep_events_dagster.ml.export, deep_events_dagster.ml.bioimageio\n"
        "import deep_events_dagster.ml.bioimageio_check\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not loaded & {"torch", "tensorflow", "tf_keras", "onnxruntime", "dagster"}
