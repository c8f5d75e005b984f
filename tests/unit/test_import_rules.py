"""Layering: core, catalog and ml never import dagster; core never imports torch/tensorflow nor
the synthetic-data helpers of deep_events_dagster.testing."""

import subprocess
import sys

import pytest

FORBIDDEN = {
    "deep_events_dagster.core": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.ingest": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.annotation_bounds": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.annotation_csv": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.annotation_lines": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.annotations": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.checks": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.checks_annotations": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.checks_common": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.checks_events": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.checks_ground_truth": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.checks_metadata": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.zarr_metadata": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.zarr_movie": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.zarr_reader": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.zarr_store": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.frame_windows": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.montage": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.normalisation": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.splits": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.training_events": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.training_set": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.training_set_folder": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.training_set_parameters": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.catalog": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.catalog.catalog": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.catalog.protocol": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.catalog.base": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.catalog.embedded": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.catalog.server": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml": ["dagster"],
    # backend-neutral: evaluation, exports and predictions reach a backend only through these
    "deep_events_dagster.ml.backend": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.model_folder": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.training_log": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.arrays": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.epochs": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.evaluate": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.export": ["dagster", "torch", "tensorflow", "onnxruntime"],
    "deep_events_dagster.ml.export_checks": ["dagster", "torch", "tensorflow", "onnxruntime"],
    "deep_events_dagster.ml.export_predictors": ["dagster", "torch", "tensorflow", "onnxruntime"],
    "deep_events_dagster.ml.export_report": ["dagster", "torch", "tensorflow", "onnxruntime"],
    "deep_events_dagster.ml.predict": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.predict_compare": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.predict_maps": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.predict_records": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.deploy": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.tensorflow.board": ["dagster", "torch"],
    "deep_events_dagster.ml.tensorflow.checkpoints": ["dagster", "torch"],
    "deep_events_dagster.ml.tensorflow.devices": ["dagster", "torch"],
    "deep_events_dagster.ml.tensorflow.metrics": ["dagster", "torch"],
    "deep_events_dagster.ml.tensorflow.optim": ["dagster", "torch"],
    "deep_events_dagster.ml.tensorflow.predictor": ["dagster", "torch"],
    "deep_events_dagster.ml.tensorflow.train": ["dagster", "torch"],
    "deep_events_dagster.ml.torch.board": ["dagster", "tensorflow"],
    "deep_events_dagster.ml.torch.checkpoints": ["dagster", "tensorflow"],
    "deep_events_dagster.ml.torch.devices": ["dagster", "tensorflow"],
    "deep_events_dagster.ml.torch.metrics": ["dagster", "tensorflow"],
    "deep_events_dagster.ml.torch.predictor": ["dagster", "tensorflow"],
    "deep_events_dagster.settings": ["dagster", "torch", "tensorflow"],
    # imported by the assets and the CLI: Dagster, Celery and the drivers load when used
    "deep_events_dagster.cluster": ["dagster", "torch", "tensorflow", "celery", "psycopg2"],
    "deep_events_dagster.testing": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.testing.annotations": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.testing.benchmark_movies": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.testing.event_plans": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.testing.learning": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.testing.movies": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.testing.ome_writers": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.testing.trees": ["dagster", "torch", "tensorflow"],
}


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_module_imports_nothing_forbidden(module):
    code = (
        "import importlib, sys, json\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(__import__("json").loads(out.stdout))
    assert not loaded & set(FORBIDDEN[module]), (
        f"{module} pulled in {loaded & set(FORBIDDEN[module])}"
    )


def test_core_modules_all_import_cleanly():
    code = (
        "import pkgutil, importlib, sys\n"
        "import deep_events_dagster.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('deep_events_dagster.core.' + m.name)\n"
        "forbidden = ('dagster', 'torch', 'tensorflow', 'deep_events_dagster.testing')\n"
        "bad = [m for m in forbidden if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
