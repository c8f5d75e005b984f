"""Benchmark 5: one acquisition's catalog write into a big embedded catalog.

Ours: :meth:`EmbeddedCatalog.replace_partition` (sqlite selects the partition's rows and the given
ids; only those are decoded). Reference: the same write where the existing documents are
found through montydb queries — ``find({"acquisition_key": key})`` and one scan for the given
ids — which decode every document of the collection (what the catalog did before).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks.common import Line, Result, Workspace, best_of, fmt_runs, fmt_seconds, say
from deep_events_dagster.catalog import EmbeddedCatalog
from deep_events_dagster.core.event_ids import event_id

GOAL_SPEEDUP = 5.0
COLLECTION = "event_data_points"
PER_PARTITION = 100


def _document(key: str, n: int) -> dict[str, Any]:
    box = [n % 1800, n % 1700, n % 1800 + 256, n % 1700 + 256]
    eid = event_id(key, "points", (n, n + 11), tuple(box))
    return {
        "_id": eid,
        "acquisition_key": key,
        "extraction_type": "automatic",
        "event_path": f"{key}/event_data_points/ev_cos7_isim_fluorescence_{eid}",
        "frames": [n, n + 11],
        "crop_box": box,
        "ome": {"size_x": 2048, "size_y": 2048, "size_t": 100, "physical_size_x": 0.056},
        "fps": 5.0,
        "cell_line": ["cos7"],
        "microscope": ["isim"],
        "contrast": ["fluorescence"],
        "label": "points" if n % 3 else "negative",
        "type": "event",
        "detections": [[n, 120.5, 340.25], [n + 1, 121.0, 341.0]],
    }


class _MontyQueries(EmbeddedCatalog):
    """The catalog with the partition lookup through montydb queries (the reference)."""

    def _collection_file(self, coll: Any) -> Path | None:
        return None


def run(ws: Workspace, n_documents: int, *, repeat: int = 3) -> Result:
    home = ws.scratch / "catalog_home"
    shutil.rmtree(home, ignore_errors=True)
    n_partitions = max(2, n_documents // PER_PARTITION)
    say(f"catalog: filling an embedded catalog with {n_partitions} × {PER_PARTITION} documents …")
    catalog = EmbeddedCatalog.open(None, home=home)
    partitions = {
        f"/data/acq_{p:05d}": [_document(f"/data/acq_{p:05d}", n) for n in range(PER_PARTITION)]
        for p in range(n_partitions)
    }
    everything = [doc for docs in partitions.values() for doc in docs]
    coll = catalog._collection(COLLECTION)
    catalog._run(lambda: coll.insert_many(everything), exclusive=True)
    catalog.close()
    key = next(iter(partitions))
    # a re-ingestion of one acquisition: 90 events again (10 relabelled), 10 new, 10 stale
    rerun = [
        dict(doc, label="relabelled") if i < 10 else doc
        for i, doc in enumerate(partitions[key][10:])
    ] + [_document(key, PER_PARTITION + n) for n in range(10)]

    def write(cls: type[EmbeddedCatalog]) -> Any:
        db = cls.open(None, home=home)
        try:
            result = db.replace_partition(COLLECTION, key, rerun)
            stored = db.find_partition(COLLECTION, key, projection=["label"])
            return result, sorted((d["_id"], d["label"]) for d in stored)
        finally:
            db.close()

    def restore() -> None:
        db = EmbeddedCatalog.open(None, home=home)
        try:
            db.replace_partition(COLLECTION, key, partitions[key])
        finally:
            db.close()

    say(f"catalog: ours, then the reference, best of {repeat} each …")
    ours_s, ours_times, ours_out = best_of(repeat, lambda: write(EmbeddedCatalog), setup=restore)
    ref_s, ref_times, ref_out = best_of(repeat, lambda: write(_MontyQueries), setup=restore)
    shutil.rmtree(home, ignore_errors=True)
    speedup = ref_s / ours_s
    return Result(
        name="catalog",
        title=(
            f"Re-ingesting one acquisition ({len(rerun)} events) into an embedded catalog of "
            f"{n_partitions * PER_PARTITION:,} documents"
        ),
        compares=(
            "ours = EmbeddedCatalog.replace_partition + find_partition (sqlite selects the "
            "partition's rows and the given ids, only those are decoded) vs reference = the same "
            "with the existing documents found through montydb queries, which decode the whole "
            "collection"
        ),
        lines=[
            Line("ours", fmt_seconds(ours_s), fmt_runs(ours_times)),
            Line("reference", fmt_seconds(ref_s), fmt_runs(ref_times)),
        ],
        ratio_label="speed-up (reference ÷ ours)",
        ratio=speedup,
        target=GOAL_SPEEDUP,
        op=">=",
        info=[
            f"write result: {ours_out[0]}; same documents afterwards: "
            f"{'yes' if ours_out == ref_out else 'NO'}",
            "goal set by us (the issue gives none): ingestion time should not grow with the "
            "catalog's size",
        ],
        data={
            "ours_s": ours_s,
            "ours_runs_s": ours_times,
            "reference_s": ref_s,
            "reference_runs_s": ref_times,
            "speedup": speedup,
            "documents": n_partitions * PER_PARTITION,
            "same_result": ours_out == ref_out,
        },
        profile=lambda: write(EmbeddedCatalog),
        profile_setup=restore,
    )
