"""The ``legacy_events`` step: event folders written by the original deep-events imported into
a catalog collection — its run config, the configured folders, the import and its report
(the asset itself is declared in ``ingestion.assets``, its job in ``ingestion.jobs``)."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from deep_events_dagster.catalog.legacy import LegacyImportReport, import_legacy_folders
from deep_events_dagster.defs.resources import CatalogResource
from deep_events_dagster.settings.platform import CONFIG_FILE, load_settings

LEGACY_GROUP = "ingestion"
LEGACY_ASSET = "legacy_events"
LEGACY_JOB = "legacy_import"
LEGACY_CHECK = "all_folders_imported"
LEGACY_FOLDERS_KEY = "legacy_folders"
DEFAULT_LEGACY_COLLECTION = "event_data_legacy"
MAX_TABLE_ROWS = 200
MAX_PROBLEM_LINES = 200


class LegacyImportConfig(dg.Config):
    """Run config of ``legacy_events``: which folders, into which collection."""

    folders: list[str] = Field(
        default=[],
        description=(
            "Folders holding original event folders (ev_*/event_db.yaml), searched "
            f"recursively. Empty: '{LEGACY_FOLDERS_KEY}' of <home>/{CONFIG_FILE}."
        ),
    )
    collection: str = Field(
        default=DEFAULT_LEGACY_COLLECTION,
        description="Catalog collection the documents are upserted into.",
    )


def configured_legacy_folders(home: str | Path) -> list[str]:
    """``legacy_folders`` of the home's settings (``settings.platform.load_settings``).

    Raises
    ------
    dagster.Failure
        ``deep_events.yaml`` is unusable (the message names the file and the key).
    """
    try:
        settings = load_settings(home)
    except ValueError as exc:  # MetadataError, or a bad kind name
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    return [str(folder) for folder in settings.legacy_folders]


def _cell(value: Any) -> str:
    """A markdown table cell: one line, pipes escaped."""
    if isinstance(value, list | tuple):
        value = "[" + ", ".join(str(v) for v in value) + "]"
    text = "—" if value is None or value == "" else str(value)
    return " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|")


def events_table(report: LegacyImportReport, limit: int = MAX_TABLE_ROWS) -> str:
    """Markdown table of the imported events: id, event_content, frames, folder."""
    if not report.documents:
        return "_no events imported_"
    lines = ["| id | event_content | frames | folder |", "|---|---|---|---|"]
    for doc in report.documents[:limit]:
        folder = Path(str(doc.get("event_path", ""))).name
        lines.append(
            f"| {_cell(doc['_id'])} | {_cell(doc.get('event_content'))} "
            f"| {_cell(doc.get('frames'))} | {_cell(folder)} |"
        )
    if len(report.documents) > limit:
        lines.append(f"\n… and {len(report.documents) - limit} more")
    return "\n".join(lines)


def problems_markdown(problems: Sequence[str], limit: int = MAX_PROBLEM_LINES) -> str:
    """Problem lines as a markdown list (``none`` when empty)."""
    if not problems:
        return "none"
    lines = ["- `" + p.replace("`", "'") + "`" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"- … and {len(problems) - limit} more")
    return "\n".join(lines)


def import_legacy_events(
    context: dg.AssetExecutionContext, config: LegacyImportConfig, catalog: CatalogResource
) -> dg.MaterializeResult:
    """Import the configured folders; the result carries ``all_folders_imported``."""
    folders = list(config.folders) or configured_legacy_folders(catalog.home)
    if not folders:
        raise dg.Failure(
            description=(
                "no legacy folders to import: give 'folders' in the run config or "
                f"'{LEGACY_FOLDERS_KEY}' in {Path(catalog.home) / CONFIG_FILE}"
            ),
            allow_retries=False,
        )
    event_catalog = catalog.open()
    try:
        report = import_legacy_folders(event_catalog, folders, config.collection)
        where = event_catalog.describe()
    finally:
        event_catalog.close()
    for problem in report.problems:
        context.log.warning(f"not imported: {problem}")
    context.log.info(
        f"{report.imported} event folders imported into {config.collection} "
        f"({report.inserted} new, {report.updated} updated), {len(report.problems)} failed; "
        f"fps corrected to frames per second in {report.fps_corrected}"
    )
    return dg.MaterializeResult(
        metadata={
            "collection": config.collection,
            "catalog": where,
            "folders": dg.MetadataValue.md("\n".join(f"- `{f}`" for f in folders)),
            "imported": dg.MetadataValue.int(report.imported),
            "inserted": dg.MetadataValue.int(report.inserted),
            "updated": dg.MetadataValue.int(report.updated),
            "fps_corrected": dg.MetadataValue.int(report.fps_corrected),
            "failed": dg.MetadataValue.int(len(report.problems)),
            "problems": dg.MetadataValue.md(problems_markdown(report.problems)),
            "events": dg.MetadataValue.md(events_table(report)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=LEGACY_CHECK,
                passed=not report.problems,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "failed": dg.MetadataValue.int(len(report.problems)),
                    "problems": dg.MetadataValue.md(problems_markdown(report.problems)),
                },
            )
        ],
    )
