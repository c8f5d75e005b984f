"""Training sets: catalog event documents → normalised, windowed train/eval stacks on disk.

:func:`build_training_set` takes the documents a ``db_prompt`` selected (the caller queries the
catalog) and the run's training-set parameters, and writes a content-addressed folder
``<out_root>/ts_<16 hex>/`` (its files: :mod:`deep_events_dagster.core.training_set_folder`).

Rules, each with the code it describes:

- the settings that shape a set: :mod:`deep_events_dagster.core.training_set_parameters`;
- **Split** and **Subset**: :mod:`deep_events_dagster.core.splits`;
- **Frame rate** and **Windows**: :mod:`deep_events_dagster.core.frame_windows`;
- **Normalisation**: :mod:`deep_events_dagster.core.normalisation`;
- **Channels** and an event's content hash: :mod:`deep_events_dagster.core.training_events`;
- the folder's files and its ``COMPLETE`` marker:
  :mod:`deep_events_dagster.core.training_set_folder`;
- the UI picture of a set: :mod:`deep_events_dagster.core.montage`;
- **Sizes** and the **Content address**, below (this module).

**Sizes.** Every crop of a training set has the same ``H×W``: the most common size among the
usable events (ties: the larger area); crops of another size are skipped, never resized.

**Content address.** Each event's content hash is BLAKE2b over ``images.tif``,
``ground_truth.tif`` and the document fields that shape its samples
(:func:`~deep_events_dagster.core.training_events.content_hash`). The folder id hashes the
sorted ``(id, content hash, split, frame step)`` of the events used plus the parameters that
shape the data (window length, ``fps``, ``train_val_split``, ``group_by_acquisition``,
``subset_fraction``, ``smooth``; not ``n_timepoints`` itself, so models that need fewer frames
share the set) and the normalisation and layout versions. Skipped documents do not enter it, so
a document without usable data does not invalidate a training set. An existing complete folder
is reused as is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.frame_windows import SKIP_NO_FPS, frame_step, window_ends
from deep_events_dagster.core.fsutil import TEMP_PREFIX

# re-exported: the training assets import montage from here
from deep_events_dagster.core.montage import montage
from deep_events_dagster.core.normalisation import NORMALISATION_VERSION
from deep_events_dagster.core.splits import (
    SPLITS,
    assign_split,
    assign_splits,
    group_key,
    in_subset,
)
from deep_events_dagster.core.training_events import (
    GROUND_TRUTH_CANDIDATES,
    IMAGE_CANDIDATES,
    EventSkipped,
    TrainingEvent,
    content_hash,
    event_channel,
    event_folder,
    first_existing,
    normalise_shapes,
    series_shape,
)
from deep_events_dagster.core.training_set_folder import (
    FOLDER_PREFIX,
    FORMAT_NAME,
    LAYOUT_VERSION,
    is_complete,
    read_training_set_manifest,
    write_folder,
)
from deep_events_dagster.core.training_set_parameters import TrainingSetParameters

__all__ = [
    "SKIP_DUPLICATE",
    "SKIP_NO_ID",
    "SKIP_OTHER_SPLIT",
    "SKIP_SIZE",
    "SKIP_SUBSET",
    "SKIP_TOO_SHORT",
    "TrainingSetResult",
    "build_training_set",
    "montage",
]

# skip reasons of the selection (keys of TrainingSetResult.skipped; the others are those of
# core.frame_windows and core.training_events)
SKIP_NO_ID = "no _id"
SKIP_DUPLICATE = "duplicate _id"
SKIP_OTHER_SPLIT = "dataset_split is neither train nor eval"
SKIP_SUBSET = "outside subset_fraction"
SKIP_TOO_SHORT = "fewer frames than one window needs"
SKIP_SIZE = "crop size differs from the training set's"


@dataclass(frozen=True)
class TrainingSetResult:
    """What :func:`build_training_set` made (or found).

    Attributes
    ----------
    path
        The training set folder ``<out_root>/ts_<id>``.
    id
        16 hex digits: the content address (also a good Dagster data version).
    reused
        True when a complete folder with this id existed and nothing was written.
    n_train, n_eval
        Samples (windows) in the train and eval stacks.
    counts_by_acquisition, counts_by_label
        Events used, per acquisition (``group_key``) and per ``label`` (else
        ``event_content``, else ``unknown``).
    positives, negatives
        Samples whose target mask has any non-zero pixel / is all zero (frames of an event
        without ground-truth signal are negatives).
    train_positives, eval_positives
        Positive samples per split.
    skipped
        Reason → number of documents not used (this call's documents).
    new_splits
        ``_id`` → split to store in the catalog as ``dataset_split``.
    """

    path: Path
    id: str
    reused: bool
    n_train: int
    n_eval: int
    counts_by_acquisition: dict[str, int] = field(hash=False)
    counts_by_label: dict[str, int] = field(hash=False)
    positives: int
    negatives: int
    train_positives: int
    eval_positives: int
    skipped: dict[str, int] = field(hash=False)
    new_splits: dict[Any, str] = field(hash=False)


def _result(
    folder: Path,
    manifest: Mapping[str, Any],
    *,
    reused: bool,
    skipped: Mapping[str, int],
    new_splits: Mapping[Any, str],
) -> TrainingSetResult:
    counts = manifest.get("counts", {})
    return TrainingSetResult(
        path=folder,
        id=str(manifest["id"]),
        reused=reused,
        n_train=int(counts.get("train_samples", 0)),
        n_eval=int(counts.get("eval_samples", 0)),
        counts_by_acquisition={str(k): int(v) for k, v in counts.get("by_acquisition", {}).items()},
        counts_by_label={str(k): int(v) for k, v in counts.get("by_label", {}).items()},
        positives=int(counts.get("positives", 0)),
        negatives=int(counts.get("negatives", 0)),
        train_positives=int(counts.get("train_positives", 0)),
        eval_positives=int(counts.get("eval_positives", 0)),
        skipped=dict(skipped),
        new_splits=dict(new_splits),
    )


def _assign_unused(
    documents: Sequence[Mapping[str, Any]],
    splits: Mapping[str, str],
    new_splits: dict[Any, str],
    params: TrainingSetParameters,
) -> None:
    """Give documents this set cannot use (and that have no split yet) a split too, so that
    every selected event keeps one in the catalog: their acquisition's side when grouping and a
    used event of it has one, else the hash of their key."""
    group_split: dict[str, str] = {}
    if params.group_by_acquisition:
        for document in documents:
            split = splits.get(str(document.get("_id")))
            if split is not None:
                group_split.setdefault(group_key(document), split)
    for document in documents:
        raw_id = document.get("_id")
        if raw_id is None or str(raw_id) in splits or document.get("dataset_split"):
            continue
        if params.group_by_acquisition:
            key = group_key(document)
            split = group_split.get(key) or assign_split(key, params.train_val_split)
        else:
            split = assign_split(str(raw_id), params.train_val_split)
        new_splits.setdefault(raw_id, split)


# -- building --------------------------------------------------------------------------------


def build_training_set(
    documents: Sequence[Mapping[str, Any]],
    *,
    params: TrainingSetParameters,
    out_root: str | Path,
    db_prompt: Mapping[str, Any],
    collection: str,
) -> TrainingSetResult:
    """Build (or reuse) the content-addressed training set of ``documents``.

    Parameters
    ----------
    documents
        Catalog event documents (``_id``, ``event_path`` and optionally ``dataset_split``,
        ``fps``, ``channel_contrast``, ``label_file``, ``acquisition_key``…). Not modified.
    params
        The settings that shape the set (validated; a run's settings are read into them by
        :meth:`TrainingSetParameters.from_settings`).
    out_root
        Folder that holds training sets (``ts_<id>`` folders are created in it).
    db_prompt, collection
        What selected the documents; recorded in ``db_prompt.yaml``.

    Returns
    -------
    TrainingSetResult

    Raises
    ------
    ConfigurationError
        No document gave any sample (the message lists the skip reasons).
    """
    out_root = Path(out_root)
    skipped_events: list[tuple[str, str]] = []
    usable: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
    seen: set[str] = set()
    ordered = sorted(documents, key=lambda d: str(d.get("_id")))
    for document in ordered:
        raw_id = document.get("_id")
        event_id = str(raw_id)
        try:
            if raw_id is None:
                raise EventSkipped(SKIP_NO_ID)
            if event_id in seen:
                raise EventSkipped(SKIP_DUPLICATE)
            seen.add(event_id)
            if document.get("dataset_split") not in (None, "", *SPLITS):
                raise EventSkipped(SKIP_OTHER_SPLIT)
            step, reason = frame_step(document.get("fps"), params.fps)
            if step is None:
                raise EventSkipped(reason or SKIP_NO_FPS)
            folder = event_folder(document)
            label_file = document.get("label_file")
            images_path = first_existing(folder, IMAGE_CANDIDATES)
            gt_names = [str(label_file)] if isinstance(label_file, str) else []
            gt_path = first_existing(folder, [*gt_names, *GROUND_TRUTH_CANDIDATES])
            images_shape, gt_shape = normalise_shapes(
                series_shape(images_path), series_shape(gt_path)
            )
            channel = event_channel(document, images_shape)
            ends = window_ends(gt_shape[0], params.window, step)
            if len(ends) == 0:
                raise EventSkipped(SKIP_TOO_SHORT)
        except EventSkipped as skip:
            skipped_events.append((event_id, skip.reason))
            continue
        usable.append(
            (
                document,
                {
                    "id": event_id,
                    "document": document,
                    "images_path": images_path,
                    "ground_truth_path": gt_path,
                    "n_frames": gt_shape[0],
                    "height": gt_shape[1],
                    "width": gt_shape[2],
                    "channel": channel,
                    "step": step,
                    "ends": tuple(int(t) for t in ends),
                },
            )
        )

    if usable:
        sizes = Counter((f["height"], f["width"]) for _, f in usable)
        height, width = max(sizes, key=lambda hw: (sizes[hw], hw[0] * hw[1], hw))
    else:
        height = width = 0
    same_size = []
    for document, fields in usable:
        if (fields["height"], fields["width"]) == (height, width):
            same_size.append((document, fields))
        else:
            skipped_events.append((fields["id"], SKIP_SIZE))
    # splits among the events this set can use, so that a side is never left empty by events
    # that are skipped anyway (e.g. the only held-out event recorded at another frame rate)
    splits, new_splits = assign_splits(
        [document for document, _ in same_size],
        train_val_split=params.train_val_split,
        group_by_acquisition=params.group_by_acquisition,
    )
    _assign_unused(documents, splits, new_splits, params)
    events = []
    for _, fields in same_size:
        split = splits[fields["id"]]
        if split == "train" and not in_subset(fields["id"], params.subset_fraction):
            skipped_events.append((fields["id"], SKIP_SUBSET))
            continue
        events.append(TrainingEvent(split=split, **fields))
    skipped_events.sort()
    skipped = dict(sorted(Counter(reason for _, reason in skipped_events).items()))
    if not events:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped.items()) or "no documents"
        raise ConfigurationError(
            f"no usable event among {len(documents)} document(s) of {collection} ({reasons})"
        )

    hashes = {event.id: content_hash(event) for event in events}
    address = json.dumps(
        {
            "format": FORMAT_NAME,
            "version": LAYOUT_VERSION,
            "normalisation": NORMALISATION_VERSION,
            "parameters": params.address_dict(),
            "events": sorted([e.id, hashes[e.id], e.split, e.step] for e in events),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    set_id = hashlib.blake2b(address.encode("utf-8"), digest_size=8).hexdigest()
    target = out_root / f"{FOLDER_PREFIX}{set_id}"
    if is_complete(target, set_id):
        return _result(
            target,
            read_training_set_manifest(target),
            reused=True,
            skipped=skipped,
            new_splits=new_splits,
        )

    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}-", dir=out_root))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the folder is shared data
        manifest = write_folder(
            tmp,
            events,
            hashes,
            set_id=set_id,
            params=params,
            height=height,
            width=width,
            skipped_events=skipped_events,
            db_prompt=db_prompt,
            collection=collection,
        )
        reused = False
        if target.exists():
            if is_complete(target, set_id):  # another process finished first
                reused = True
                manifest = read_training_set_manifest(target)
            else:  # a broken folder under our name: swap it out
                old = out_root / f"{TEMP_PREFIX}old-{target.name}-{os.getpid()}"
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, target)
            except OSError:
                if not is_complete(target, set_id):
                    raise
                reused = True
                manifest = read_training_set_manifest(target)
        with contextlib.suppress(OSError):
            fd = os.open(out_root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _result(target, manifest, reused=reused, skipped=skipped, new_splits=new_splits)
