"""The acquisition sensor: new or changed microscope data ingests itself (registers
acquisition partitions, requests `ingest` runs, marks removed acquisitions in the catalog)."""

import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from deep_events_dagster.catalog import collection_name
from deep_events_dagster.core import watch
from deep_events_dagster.defs.ingestion.jobs import ingest_job
from deep_events_dagster.defs.partitions import ACQUISITIONS, acquisitions_partitions
from deep_events_dagster.defs.resources import CatalogResource

MAX_LOGGED = 20


def build_acquisition_sensor(
    *,
    roots: Sequence[Path],
    kinds: Sequence[str],
    quiet_seconds: float,
    interval_seconds: int,
    exclude: Sequence[Path] = (),
    time_budget_s: float = 5.0,
    max_runs_per_tick: int = 200,
) -> dg.SensorDefinition:
    """A sensor watching ``roots`` that registers complete acquisitions and requests runs."""
    root_list = [str(r) for r in roots]
    collections = [collection_name(kind) for kind in kinds]

    @dg.sensor(
        name="acquisition_sensor",
        job=ingest_job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches the data roots. An acquisition folder is registered as a partition once "
            f"its movie has not changed for {quiet_seconds:g} s and every page its OME header "
            "promises is readable; a run is requested whenever the movie, its annotation CSVs "
            "or the db_manual.yaml files that apply change. Removed acquisitions are reported "
            "and their catalog documents marked `acquisition_removed`."
        ),
    )
    def acquisition_sensor(context: dg.SensorEvaluationContext, catalog: CatalogResource):
        if not root_list:
            return dg.SkipReason(
                "no data roots configured: set roots in deep_events.yaml, DEEP_EVENTS_ROOTS, "
                "or `deep-events ui --watch ROOT`"
            )
        state = watch.WatchState.from_cursor(context.cursor)
        observations, skipped = watch.scan_roots(root_list, exclude=exclude)
        for path, reason in skipped[:MAX_LOGGED]:
            context.log.warning(f"skipped {path}: {reason}")
        known = set(context.instance.get_dynamic_partitions(ACQUISITIONS))
        tick = watch.evaluate_tick(
            state,
            observations,
            now=time.time(),
            quiet_seconds=quiet_seconds,
            known_partitions=known,
            time_budget_s=time_budget_s,
            max_runs=max_runs_per_tick,
            skipped_folders=skipped,
        )
        for key, reason in tick.unreadable[:MAX_LOGGED]:
            context.log.warning(f"not ingested yet, unreadable: {key}: {reason}")
        asset_events = []
        if tick.removed:
            db = catalog.open()
            try:
                for key in tick.removed:
                    marked = sum(
                        db.mark_partition_removed(collection, key) for collection in collections
                    )
                    context.log.warning(
                        f"acquisition removed from disk: {key} ({marked} catalog documents marked)"
                    )
                    asset_events.append(
                        dg.AssetObservation(
                            asset_key="raw_movie",
                            partition=key,
                            metadata={"removed": True, "catalog_documents_marked": marked},
                        )
                    )
            finally:
                db.close()
        context.log.info(
            f"{tick.scanned} acquisitions scanned in {tick.seconds:.2f} s: {len(tick.runs)} "
            f"to ingest, {tick.waiting} waiting for quiet, {tick.deferred} deferred, "
            f"{len(tick.removed)} removed"
        )
        new = tick.new_partitions
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=decision.run_key,
                    partition_key=decision.key,
                    tags={"deep_events/fingerprint": decision.fingerprint},
                )
                for decision in tick.runs
            ],
            dynamic_partitions_requests=(
                [acquisitions_partitions.build_add_request(new)] if new else []
            ),
            asset_events=asset_events,
            cursor=tick.state.to_cursor(),
        )

    return acquisition_sensor
