"""Checking a bioimage.io model package written by :mod:`deep_events_dagster.ml.bioimageio`.

:func:`check_bioimageio_package` validates the package with ``bioimageio.spec`` when it is
installed (offline: local files only, no download; its warnings become notes) and runs the ONNX
weights on the pre-processed test input: the result must match the test output within
:data:`~deep_events_dagster.ml.bioimageio.TEST_TOLERANCE`. What it found comes back as a
:class:`BioimageioCheck`.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from deep_events_dagster.ml.bioimageio import RDF_FILE, TEST_TOLERANCE, _scale_range

__all__ = ["BioimageioCheck", "check_bioimageio_package"]


@dataclass(frozen=True)
class BioimageioCheck:
    """What :func:`check_bioimageio_package` found.

    Attributes
    ----------
    format_version
        The description's ``format_version``.
    validated_with
        ``bioimageio.spec <version>``, or None when it is not installed.
    problems
        Validation errors and test-tensor mismatches (empty: the package is valid).
    notes
        Warnings of the validation, and what was not checked.
    max_abs_difference
        The ONNX weights on the pre-processed test input vs the test output.
    """

    format_version: str
    validated_with: str | None
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    max_abs_difference: float

    @property
    def ok(self) -> bool:
        return not self.problems


def _spec_validation(rdf_path: Path) -> tuple[str | None, list[str], list[str]]:
    """(``bioimageio.spec <version>`` or None, errors, warnings)."""
    try:
        import bioimageio.spec as spec
    except ImportError:
        return None, [], ["not validated: bioimageio.spec is not installed"]
    # perform_io_checks: every file is local; they are opened and their sha256 compared. No
    # step of the validation downloads anything for a package of local files.
    description = spec.load_description(rdf_path, perform_io_checks=True, format_version="discover")
    summary = description.validation_summary
    errors, warnings = [], []
    for detail in summary.details:
        for entry in detail.errors:
            errors.append(f"{'.'.join(map(str, entry.loc))}: {entry.msg}")
        for entry in detail.warnings:
            warnings.append(f"{'.'.join(map(str, entry.loc))}: {entry.msg}")
    if summary.status == "failed" and not errors:
        errors.append(f"bioimageio.spec validation failed: {summary.name}")
    version = getattr(spec, "__version__", None) or importlib.metadata.version("bioimageio.spec")
    return f"bioimageio.spec {version}", errors, warnings


def check_bioimageio_package(package: str | Path) -> BioimageioCheck:
    """Validate a package written by :func:`write_bioimageio_package`.

    The description is validated with ``bioimageio.spec`` when it is installed (offline; its
    warnings become notes), and the ONNX weights are run on the test input after the
    description's pre-processing: the result must match the test output within 1e-4.
    """
    from deep_events_dagster.ml.export_predictors import OnnxPredictor

    package = Path(package)
    rdf_path = package / RDF_FILE
    rdf = yaml.safe_load(rdf_path.read_text(encoding="utf-8"))
    validated_with, problems, warnings = _spec_validation(rdf_path)
    notes = [f"validated with {validated_with}"] if validated_with else []
    notes += [f"warning: {w}" for w in warnings]
    test_input = np.load(package / rdf["inputs"][0]["test_tensor"]["source"])
    test_output = np.load(package / rdf["outputs"][0]["test_tensor"]["source"])
    got = OnnxPredictor(package / rdf["weights"]["onnx"]["source"]).predict(
        _scale_range(test_input)
    )[:, None]
    difference = float(np.max(np.abs(got - test_output))) if got.shape == test_output.shape else 1.0
    if not difference <= TEST_TOLERANCE:
        problems.append(
            f"the ONNX weights on the pre-processed test input differ from the test output by "
            f"{difference:.3g} (> {TEST_TOLERANCE:g})"
        )
    return BioimageioCheck(
        format_version=str(rdf.get("format_version")),
        validated_with=validated_with,
        problems=tuple(problems),
        notes=tuple(notes),
        max_abs_difference=difference,
    )
