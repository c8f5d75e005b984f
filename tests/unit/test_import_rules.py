"""Layering (docs/architecture.md, section 1): which packages each layer may load at import time.

The modules of each rule come from the package contents (``pkgutil.walk_packages``), so a new
module is checked without being listed here. Each rule imports all its modules, one after the
other, in one fresh interpreter and names the first module after whose import a forbidden package
was loaded (the union of clean imports is clean, so one process per rule is enough).
"""

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "deep_events_dagster"
SCIENCE = {"dagster", "torch", "tensorflow"}
# a bridge between the backends: the Keras twin of a torch network takes its weights
TORCH_IN_TENSORFLOW = {"deep_events_dagster.ml.tensorflow.convert"}
# the layers above settings (which reads deep_events.yaml with core alone)
ABOVE_SETTINGS = ("catalog", "ml", "testing", "cluster", "defs", "cli")
NOT_BELOW_SETTINGS = {f"{PACKAGE}.{layer}" for layer in ABOVE_SETTINGS}


def modules(name: str) -> list[str]:
    """``name`` and, for a package, every module below it."""
    module = importlib.import_module(name)
    found = [name]
    if hasattr(module, "__path__"):
        found += [m.name for m in pkgutil.walk_packages(module.__path__, name + ".")]
    return found


def _ml_backend_neutral() -> list[str]:
    backends = (f"{PACKAGE}.ml.torch", f"{PACKAGE}.ml.tensorflow")
    return [m for m in modules(f"{PACKAGE}.ml") if not m.startswith(backends)]


# rule id -> (modules, packages none of them may load when imported)
RULES = {
    "core": (lambda: modules(f"{PACKAGE}.core"), SCIENCE | {f"{PACKAGE}.testing"}),
    "catalog": (lambda: modules(f"{PACKAGE}.catalog"), SCIENCE),
    "ml": (lambda: modules(f"{PACKAGE}.ml"), {"dagster", "dagster_pipes"}),
    # backend-neutral: evaluation, exports and predictions reach a backend only through these
    "ml-neutral": (_ml_backend_neutral, {"torch", "tensorflow", "onnxruntime"}),
    "ml.torch": (lambda: modules(f"{PACKAGE}.ml.torch"), {"tensorflow"}),
    "ml.tensorflow": (
        lambda: [m for m in modules(f"{PACKAGE}.ml.tensorflow") if m not in TORCH_IN_TENSORFLOW],
        {"torch"},
    ),
    "testing": (lambda: modules(f"{PACKAGE}.testing"), SCIENCE),
    # every module of the package (platform, ingestion, cluster): core, pydantic and yaml only
    "settings": (lambda: modules(f"{PACKAGE}.settings"), SCIENCE | NOT_BELOW_SETTINGS),
    # imported by the assets and the CLI: Dagster, Celery and the drivers load when used
    "cluster": (
        lambda: modules(f"{PACKAGE}.cluster") + modules(f"{PACKAGE}.dagster_internals"),
        SCIENCE | {"dagster_celery", "celery", "kombu", "psycopg2"},
    ),
}

_CHECK = """
import importlib, json, sys
forbidden, names = json.loads(sys.argv[1])
culprits = {}
for name in names:
    importlib.import_module(name)
    for package in forbidden:
        if package in sys.modules and package not in culprits:
            culprits[package] = name
print(json.dumps(culprits))
"""


@pytest.mark.parametrize("rule", sorted(RULES))
def test_layer_imports_nothing_forbidden(rule):
    select, forbidden = RULES[rule]
    names = select()
    assert names, rule
    argument = json.dumps([sorted(forbidden), names])
    out = subprocess.run(
        [sys.executable, "-c", _CHECK, argument], capture_output=True, text=True, check=True
    )
    culprits = json.loads(out.stdout.strip().splitlines()[-1])
    assert not culprits, f"{rule}: importing these modules loaded forbidden packages: {culprits}"


def test_the_settings_rule_checks_each_settings_module():
    # a package: the rule walks it (a module added to settings/ is checked without a list)
    names = set(RULES["settings"][0]())
    assert {f"{PACKAGE}.settings.{m}" for m in ("platform", "ingestion", "cluster")} <= names


def test_the_modules_exempt_from_the_tensorflow_rule_exist():
    # the exemption must name real modules (a renamed bridge would silently stop being checked)
    assert TORCH_IN_TENSORFLOW <= set(modules(f"{PACKAGE}.ml.tensorflow"))


def test_the_torch_trainer_loads_torch():
    # the ml and ml.torch rules check the module the training subprocess runs
    # (python -m deep_events_dagster.ml.torch.train) without dagster, dagster_pipes or
    # tensorflow; it must still be the torch trainer
    code = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); print('torch' in sys.modules)"
    )
    trainer = f"{PACKAGE}.ml.torch.train"
    out = subprocess.run(
        [sys.executable, "-c", code, trainer], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_no_defs_module_postpones_annotations():
    # Dagster reads the ``context`` annotation of assets, checks and sensors at definition time
    defs = Path(importlib.import_module(f"{PACKAGE}.defs").__file__).parent
    offenders = []
    for path in sorted(defs.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
            if future and any(alias.name == "annotations" for alias in node.names):
                offenders.append(str(path.relative_to(defs.parent)))
    assert not offenders, f"from __future__ import annotations under defs/: {offenders}"


def test_only_the_adapter_uses_dagsters_private_api():
    # one module to check when the pinned dagster release moves (see its docstring)
    package = Path(importlib.import_module(PACKAGE).__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "dagster_internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(n.startswith(("dagster._", "dagster_shared")) for n in names):
                offenders.append(f"{path.relative_to(package.parent)}:{node.lineno}")
    assert not offenders, f"dagster's private API outside dagster_internals.py: {offenders}"
