"""The ``<kind>/event_catalog`` step: upsert the manifest's events into the kind's catalog
collection and check the catalog matches the event folders."""

from typing import Any

import dagster as dg

from deep_events_dagster.core import checks
from deep_events_dagster.defs.ingestion.checks import (
    CATALOG_MATCHES_FOLDERS,
    ERROR,
    check_result,
)
from deep_events_dagster.defs.ingestion.inputs import user_errors_as_failures
from deep_events_dagster.defs.resources import CatalogResource, IngestionResource


def store_events(
    context: dg.AssetExecutionContext,
    ingestion: IngestionResource,
    catalog: CatalogResource,
    kind: str,
    collection: str,
) -> dg.MaterializeResult:
    """Replace the partition's automatic documents in ``collection`` by the manifest's."""
    ref = ingestion.acquisition(context.partition_key)
    layout = ingestion.layout()
    manifest_path = layout.events_manifest(ref.folder, ref.root, kind)
    documents = user_errors_as_failures(lambda: ingestion.pipeline().catalog_documents(ref, kind))
    db = catalog.open()
    try:
        result = db.replace_partition(collection, ref.key, documents)
        stored = db.find_partition(
            collection, ref.key, projection=["event_path", "extraction_type"]
        )
        where = db.describe()
    finally:
        db.close()
    agreement = user_errors_as_failures(
        lambda: checks.catalog_matches_folders(stored, manifest_path)
    )
    context.log.info(f"{len(documents)} documents → {where} / {collection}")
    return dg.MaterializeResult(
        metadata={
            "collection": collection,
            "catalog": where,
            "documents": len(stored),
            "inserted": result.inserted,
            "replaced": result.replaced,
            "deleted_stale": result.deleted_stale,
            "kept_manual": result.kept_manual,
        },
        check_results=[
            check_result(
                CATALOG_MATCHES_FOLDERS,
                agreement,
                severity=ERROR,
                metadata=_agreement_metadata(agreement),
            )
        ],
    )


def _agreement_metadata(agreement: Any) -> dict[str, Any]:
    """``catalog_matches_folders``' metadata: counts, and the ids that disagree."""
    metadata: dict[str, Any] = {
        "manifest_events": agreement.n_manifest,
        "catalog_documents": agreement.n_documents,
        "manual_documents": agreement.n_manual,
        "missing_from_catalog": len(agreement.missing_ids),
        "not_in_manifest": len(agreement.unexpected_ids),
        "missing_event_paths": len(agreement.missing_paths),
    }
    for label, ids in (
        ("missing_ids", agreement.missing_ids),
        ("unexpected_ids", agreement.unexpected_ids),
        ("ids_without_folder", agreement.missing_paths),
    ):
        if ids:
            metadata[label] = ", ".join(ids)
    return metadata
