"""``deep-events ingest`` and ``deep-events catalog``: acquisitions into the catalog, and the
catalog's documents back out."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from deep_events_dagster.catalog.protocol import collection_name
from deep_events_dagster.cli.runs import (
    cluster_problem,
    prepare_home,
    register_partitions,
    run_on_cluster,
    run_partitions,
)
from deep_events_dagster.settings.platform import PlatformSettings


def ingest(
    settings: PlatformSettings, *, workers: int, executor: str, verbose: bool = False
) -> int:
    """Register and ingest every acquisition under the settings' roots; 1 if any failed."""
    from deep_events_dagster.core.acquisitions import iter_acquisitions

    prepare_home(settings)
    problem = cluster_problem(settings, settings)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    exclude = [settings.output_root] if settings.output_root else []
    missing = [r for r in settings.roots if not Path(r).is_dir()]
    for root in missing:
        print(f"FAILED  {root}: not a folder", file=sys.stderr)
    acquisitions = list(
        iter_acquisitions([r for r in settings.roots if r not in missing], exclude=exclude)
    )
    keys = [a.key for a in acquisitions]
    added = register_partitions(keys)
    print(
        f"{len(keys)} acquisitions found ({added} new partitions) under "
        + ", ".join(str(r) for r in settings.roots),
        flush=True,
    )
    if settings.cluster.enabled:
        if workers > 1:
            print("note: --workers does not apply with a cluster: start more `deep-events worker`")
        outcomes = run_on_cluster("ingest", keys, verbose=verbose)
    else:
        outcomes = run_partitions(
            settings,
            keys,
            workers=workers,
            executor=executor,
            log_level="DEBUG" if verbose else "WARNING",
        )
    failed = [o for o in outcomes if not o.success]
    print_summary(settings, keys)
    if failed:
        print(f"{len(failed)} of {len(outcomes)} acquisitions failed", file=sys.stderr)
    return 1 if failed or missing else 0


def print_summary(settings: PlatformSettings, keys: Sequence[str]) -> None:
    """Print acquisitions, events per kind and where the files and the catalog are."""
    from deep_events_dagster.catalog import EventCatalog
    from deep_events_dagster.core.errors import ConfigurationError
    from deep_events_dagster.core.layout import Layout

    layout = Layout(output_root=settings.output_root)
    try:
        catalog = EventCatalog.open(settings.catalog_uri or None, home=settings.home)
    except (ConfigurationError, OSError) as exc:
        print(f"cannot open the catalog: {exc}", file=sys.stderr)
        return
    try:
        print()
        header = "acquisition".ljust(60) + "".join(f"{k + ' (+/-)':>18}" for k in settings.kinds)
        print(header)
        totals = {kind: [0, 0] for kind in settings.kinds}
        for key in keys:
            cells = []
            for kind in settings.kinds:
                collection = collection_name(kind)
                positives = catalog.count(collection, {"acquisition_key": key, "label": kind})
                negatives = catalog.count(collection, {"acquisition_key": key, "label": "negative"})
                totals[kind][0] += positives
                totals[kind][1] += negatives
                cells.append(f"{positives:>10} / {negatives:<5}")
            shown = key if len(key) <= 58 else "…" + key[-57:]
            print(shown.ljust(60) + "".join(f"{c:>18}" for c in cells))
        print(f"\ncatalog: {catalog.describe()}")
        for kind, (positives, negatives) in totals.items():
            print(f"  {collection_name(kind)}: {positives} events, {negatives} negatives")
    finally:
        catalog.close()
    for root in settings.roots:
        for kind in settings.kinds:
            print(f"event folders ({kind}): {layout.event_data(Path(root).resolve(), kind)}")
    print(f"Dagster home: {settings.dagster_home} (see the runs with `deep-events ui`)")


def catalog_find(settings: PlatformSettings, collection: str, filter_json: str | None) -> int:
    """Print matching catalog documents, one JSON object per line."""
    from deep_events_dagster.catalog import EventCatalog

    try:
        query = json.loads(filter_json) if filter_json else {}
    except json.JSONDecodeError as exc:
        print(f"--filter is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(query, dict):
        print("--filter must be a JSON object", file=sys.stderr)
        return 2
    catalog = EventCatalog.open(settings.catalog_uri or None, home=settings.home)
    try:
        for document in catalog.find(collection, query):
            print(json.dumps(document, default=str, ensure_ascii=False))
    finally:
        catalog.close()
    return 0


def catalog_import(settings: PlatformSettings, folder: Path, collection: str) -> int:
    """Import original deep-events event folders into a catalog collection."""
    from deep_events_dagster.catalog import EventCatalog
    from deep_events_dagster.catalog.legacy import import_legacy_events

    if not folder.is_dir():
        print(f"{folder}: not a folder", file=sys.stderr)
        return 2
    catalog = EventCatalog.open(settings.catalog_uri or None, home=settings.home)
    try:
        report = import_legacy_events(catalog, folder, collection)
    finally:
        catalog.close()
    for problem in report.problems:
        print(f"FAILED  {problem}", file=sys.stderr)
    print(
        f"{report.imported} event folders imported into {collection} "
        f"({report.inserted} new, {report.updated} updated), {len(report.problems)} failed"
    )
    print(
        f"fps corrected in {report.fps_corrected} documents (frame interval in seconds "
        "rewritten as frames per second; old value kept in fps_as_written)"
    )
    return 1 if report.problems else 0
