"""What an export run reports: its errors, event counts, one result per format, and the report.

:func:`~deep_events_dagster.ml.export.export_model` returns an :class:`ExportReport`;
``exports.yaml`` maps each format to its entry (:meth:`ExportResult.as_dict`), the command line
prints :meth:`ExportReport.lines` and the Dagster asset shows :meth:`ExportReport.markdown`.

A format's ``status`` is ``ok``; ``skipped`` (the format cannot hold the model: no file, the
reason recorded); or ``failed`` (a check failed: the file was removed, and
:class:`ExportCheckFailed` names it and the difference). The tolerances the checks
(:mod:`deep_events_dagster.ml.export_checks`) apply are stated here, as the report states them:
probabilities within :data:`OUTPUT_TOLERANCE` of the source model's, at most
:data:`EVENT_TOLERANCE` event decided differently from ``evaluation.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EVENT_TOLERANCE",
    "OUTPUT_TOLERANCE",
    "EventCounts",
    "ExportCheckFailed",
    "ExportError",
    "ExportReport",
    "ExportResult",
    "ExportUnsupported",
    "ModelNotEvaluated",
]

OUTPUT_TOLERANCE = 1e-4
EVENT_TOLERANCE = 1


class ExportError(ValueError):
    """An export cannot be made (not evaluated, ``evaluation.yaml`` does not match the model,
    unknown format…)."""


class ModelNotEvaluated(ExportError):
    """The model folder has no ``evaluation.yaml``: there is nothing to check the exports
    against."""


class ExportUnsupported(Exception):
    """A format cannot hold this model; the message says why (recorded as ``skipped``)."""


class ExportCheckFailed(ExportError):
    """An export was written but did not pass its checks; it has been removed.

    Attributes
    ----------
    report
        The whole :class:`ExportReport` (``exports.yaml`` was written).
    """

    def __init__(self, message: str, report: ExportReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class EventCounts:
    """Event-level confusion counts at one threshold."""

    tp: int
    fp: int
    fn: int
    tn: int

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}

    def differing(self, other: EventCounts) -> int:
        """Events decided differently: with the same events, one flip moves one count between
        ``tp`` and ``fn`` or between ``fp`` and ``tn``."""
        return max(abs(self.tp - other.tp), abs(self.fn - other.fn)) + max(
            abs(self.fp - other.fp), abs(self.tn - other.tn)
        )

    def describe(self) -> str:
        return f"tp {self.tp} fp {self.fp} fn {self.fn} tn {self.tn}"


@dataclass(frozen=True)
class ExportResult:
    """How one format was exported and checked.

    Attributes
    ----------
    format
        ``keras``, ``onnx``, ``torchscript`` or ``bioimageio``.
    status
        ``ok``, ``skipped`` (the format cannot hold the model: no file) or ``failed`` (a check
        failed: the file was removed).
    path
        The file (folder for ``bioimageio``); None unless ``ok``.
    bytes
        Its size (the folder's files together); 0 unless ``ok``.
    max_abs_difference
        Largest difference from the source model's probabilities on the checked inputs.
    checked_sizes
        ``(H, W)`` of the inputs compared with the source model.
    event_counts
        The export's event counts on the eval samples at the threshold.
    events_differing
        Events decided differently from ``evaluation.yaml``.
    reason
        Why it was skipped or failed; notes for ``ok`` (e.g. the bioimage.io validation).
    seconds
        Time to write and check it.
    details
        Format-specific facts (ONNX opset, TensorFlow version…).
    """

    format: str
    status: str
    path: Path | None = None
    bytes: int = 0
    max_abs_difference: float | None = None
    checked_sizes: tuple[tuple[int, int], ...] = ()
    event_counts: EventCounts | None = None
    events_differing: int | None = None
    reason: str = ""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self, model_dir: Path | None = None) -> dict[str, Any]:
        """The plain entry of ``exports.yaml`` (paths relative to ``model_dir`` when inside)."""
        path = None
        if self.path is not None:
            path = str(self.path)
            if model_dir is not None and self.path.parent == model_dir:
                path = self.path.name
        entry: dict[str, Any] = {
            "status": self.status,
            "file": path,
            "bytes": int(self.bytes),
            "max_abs_difference": None
            if self.max_abs_difference is None
            else float(f"{self.max_abs_difference:.3g}"),
            "checked_sizes": [list(size) for size in self.checked_sizes],
            "event_counts": None if self.event_counts is None else self.event_counts.as_dict(),
            "events_differing": self.events_differing,
            "seconds": round(float(self.seconds), 2),
        }
        if self.reason:
            entry["reason"] = self.reason
        entry.update(self.details)
        return entry


def _size_text(n_bytes: int) -> str:
    if n_bytes <= 0:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and how each export was checked.

    Attributes
    ----------
    model_dir
        The model folder.
    source
        ``torch`` or ``keras``: the model the exports were made from and compared with.
    threshold
        ``evaluation.yaml``'s threshold.
    expected
        ``evaluation.yaml``'s event counts.
    results
        One per format, in the order exported.
    exports_file
        ``exports.yaml``.
    """

    model_dir: Path
    source: str
    threshold: float
    expected: EventCounts
    results: tuple[ExportResult, ...]
    exports_file: Path

    def result(self, export_format: str) -> ExportResult:
        """The result of one format (KeyError when it was not exported in this call)."""
        for result in self.results:
            if result.format == export_format:
                return result
        raise KeyError(export_format)

    @property
    def failed(self) -> tuple[ExportResult, ...]:
        return tuple(r for r in self.results if r.status == "failed")

    def lines(self) -> list[str]:
        """One line per format, for the command line."""
        out = [
            f"exports of {self.model_dir} (source: {self.source} model; evaluation.yaml: "
            f"threshold {self.threshold:g}, {self.expected.describe()})"
        ]
        width = max((len(r.format) for r in self.results), default=0)
        for r in self.results:
            if r.ok:
                diff = (
                    "" if r.max_abs_difference is None else f", max |Δ| {r.max_abs_difference:.1e}"
                )
                events = (
                    ""
                    if r.event_counts is None
                    else f", events {r.event_counts.describe()} ({r.events_differing} differ)"
                )
                out.append(
                    f"  {r.format:<{width}}  ok       {r.path}  {_size_text(r.bytes)}"
                    f"{diff}{events}" + (f"  [{r.reason}]" if r.reason else "")
                )
            else:
                out.append(f"  {r.format:<{width}}  {r.status:<7}  {r.reason}")
        return out

    def markdown(self) -> str:
        """A markdown table of the exports (Dagster metadata)."""
        rows = [
            "| format | status | file | size | max abs diff | tp | fp | fn | tn | note |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            counts = r.event_counts.as_dict() if r.event_counts else {}
            diff = "" if r.max_abs_difference is None else f"{r.max_abs_difference:.1e}"
            name = "" if r.path is None else f"`{r.path.name}`"
            note = r.reason.replace("|", "/").replace("\n", " ")
            cells = [r.format, r.status, name, _size_text(r.bytes) if r.ok else "", diff]
            cells += [str(counts.get(k, "")) for k in ("tp", "fp", "fn", "tn")]
            rows.append("| " + " | ".join([*cells, note]) + " |")
        rows.append("")
        rows.append(
            f"Source: the {self.source} model. Checked: probabilities within "
            f"{OUTPUT_TOLERANCE:g} of the source's; event decisions (max probability > "
            f"{self.threshold:g}) on every eval sample vs `evaluation.yaml` "
            f"({self.expected.describe()}), {EVENT_TOLERANCE} allowed to differ."
        )
        return "\n".join(rows)

    def as_dict(self) -> dict[str, Any]:
        """This call's entries of ``exports.yaml`` (format → entry)."""
        return {r.format: r.as_dict(self.model_dir) for r in self.results}
