"""Layering: core, catalog and ml never import dagster; core never imports torch/tensorflow."""

import subprocess
import sys

import pytest

FORBIDDEN = {
    "deep_events_dagster.core": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.ingest": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.core.synthetic": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.catalog": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.catalog.catalog": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml": ["dagster"],
    # backend-neutral: evaluation, exports and predictions reach a backend only through these
    "deep_events_dagster.ml.backend": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.model_folder": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.training_log": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.arrays": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.epochs": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.evaluate": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.export": ["dagster", "torch", "tensorflow", "onnxruntime"],
    "deep_events_dagster.ml.predict": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.deploy": ["dagster", "torch", "tensorflow"],
    "deep_events_dagster.ml.tensorflow.train": ["dagster", "torch"],
    "deep_events_dagster.settings": ["dagster", "torch", "tensorflow"],
    # imported by the assets and the CLI: Dagster, Celery and the drivers load when used
    "deep_events_dagster.cluster": ["dagster", "torch", "tensorflow", "celery", "psycopg2"],
    "deep_events_dagster.testing.learning": ["dagster", "torch", "tensorflow"],
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
        "bad = [m for m in ('dagster', 'torch', 'tensorflow') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
