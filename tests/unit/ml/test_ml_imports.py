"""Layering inside ml/: torch only under ml/torch, dagster never (dagster_pipes lazily)."""

import json
import subprocess
import sys

import pytest

LIGHT = [
    "deep_events_dagster.ml.config",
    "deep_events_dagster.ml.augmentation",
    "deep_events_dagster.ml.devices",
    "deep_events_dagster.ml.synthetic",
]


def _loaded(module: str) -> set[str]:
    code = (
        "import importlib, sys, json\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", LIGHT)
def test_backend_neutral_modules_import_no_backend(module):
    assert not _loaded(module) & {"torch", "tensorflow", "dagster", "dagster_pipes"}


def test_torch_trainer_imports_no_dagster():
    loaded = _loaded("deep_events_dagster.ml.torch.train")
    assert "torch" in loaded
    assert not loaded & {"dagster", "dagster_pipes", "tensorflow"}
