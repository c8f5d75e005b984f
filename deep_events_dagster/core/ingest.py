"""Ingestion of one acquisition, step by step, without Dagster.

Each step reads what the previous one wrote to disk, so the Dagster assets (one per step)
and the command line share exactly this code. :func:`ingest_acquisition` chains them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from deep_events_dagster.core import annotations as ann
from deep_events_dagster.core import crops, events, ground_truth, thumbnails
from deep_events_dagster.core.acquisitions import acquisition_key, movie_in_folder, root_of
from deep_events_dagster.core.errors import (
    AnnotationError,
    ConfigurationError,
    InputError,
    MovieError,
)
from deep_events_dagster.core.fingerprint import MovieFingerprint, fingerprint_movie
from deep_events_dagster.core.fsutil import TEMP_PREFIX, atomic_write_text
from deep_events_dagster.core.kinds import (
    DEFAULT_AUTO_NEGATIVES,
    KindOptions,
    Variant,
    choose_movie,
    contrast_fragment,
    label_channel,
    negatives_count,
    variants,
)
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import (
    Vocabulary,
    build_metadata,
    read_db_yaml,
    write_db_yaml,
)
from deep_events_dagster.core.ome import MovieInfo, read_movie_info

STALE_TEMPORARY_AGE_S = 600.0
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
NEGATIVE_CONTENT = "none"
# decoded ground-truth tiles kept while one kind's events are extracted
GT_TILE_CACHE_BYTES = 192 * 1024 * 1024


@dataclass(frozen=True)
class AcquisitionRef:
    """An acquisition folder, the data root it belongs to and its partition key."""

    folder: Path
    root: Path

    @property
    def key(self) -> str:
        """Partition key (absolute POSIX path of the folder)."""
        return acquisition_key(self.folder)

    @classmethod
    def from_key(cls, key: str, roots: Sequence[str | Path] = ()) -> AcquisitionRef:
        """Rebuild from a partition key, finding its data root among ``roots``."""
        folder = Path(key)
        return cls(folder=folder, root=root_of(folder, roots))


@dataclass(frozen=True)
class MovieStep:
    """Result of looking at an acquisition's movie."""

    info: MovieInfo
    fingerprint: MovieFingerprint


@dataclass(frozen=True)
class GroundTruthStep:
    """Result of rendering one kind's ground truth."""

    path: Path
    csv_files: tuple[Path, ...]
    n_points: int
    frames_with_signal: int
    shape: tuple[int, int, int]


@dataclass(frozen=True)
class EventRecord:
    """One event folder written for an acquisition."""

    event_id: str
    folder: Path
    frames: tuple[int, int]
    crop_box: events.Box
    positive: bool
    n_detections: int


@dataclass(frozen=True)
class EventsStep:
    """Result of detecting events and writing their folders."""

    events: tuple[EventRecord, ...]
    manifest: Path
    removed_stale: int
    thumbnail_png: bytes = field(repr=False, default=b"")

    @property
    def n_positive(self) -> int:
        """Number of event (positive) crops."""
        return sum(e.positive for e in self.events)

    @property
    def n_negative(self) -> int:
        """Number of automatic negative crops."""
        return sum(not e.positive for e in self.events)


class PartitionSink(Protocol):
    """Where event documents go (the catalog); kept abstract so ``core`` needs no database."""

    def replace_partition(self, collection: str, partition_key: str, documents: list[dict]): ...


# ---------------------------------------------------------------- movie and metadata


def inspect_movie(ref: AcquisitionRef) -> MovieStep:
    """Find the acquisition's movie, check it is complete and fingerprint it.

    Raises
    ------
    MovieError
        No movie in the folder, or an unreadable / inconsistent one.
    """
    movie = movie_in_folder(ref.folder)
    if movie is None:
        raise MovieError(ref.folder, "no *.ome.tif / *.ome.tiff / *.ome.zarr movie in this folder")
    info = read_movie_info(movie)
    return MovieStep(info=info, fingerprint=fingerprint_movie(movie))


def make_metadata(
    ref: AcquisitionRef, layout: Layout, vocabulary: Vocabulary
) -> tuple[dict[str, Any], Path]:
    """Build and write the acquisition's ``db.yaml``; returns its contents and path."""
    movie = movie_in_folder(ref.folder)
    if movie is None:
        raise MovieError(ref.folder, "no *.ome.tif / *.ome.tiff / *.ome.zarr movie in this folder")
    info = read_movie_info(movie, verify_pages=False)
    metadata = build_metadata(info, folder=ref.folder, root=ref.root, vocabulary=vocabulary)
    path = write_db_yaml(layout.derived_folder(ref.folder, ref.root), metadata)
    return metadata, path


def _movie_for(ref: AcquisitionRef) -> MovieInfo:
    movie = movie_in_folder(ref.folder)
    if movie is None:
        raise MovieError(ref.folder, "no *.ome.tif / *.ome.tiff / *.ome.zarr movie in this folder")
    return read_movie_info(movie, verify_pages=False)


# ---------------------------------------------------------------- ground truth


def load_annotations(
    ref: AcquisitionRef,
    kind: str,
    metadata: dict[str, Any],
    info: MovieInfo,
    options: KindOptions | None = None,
) -> tuple[list[ann.AnnotationPoint], tuple[Path, ...]]:
    """Read and validate every ``<annotations>*.csv`` of the acquisition (``annotations``: the
    kind's own name unless its options name another kind's annotations).

    Raises
    ------
    AnnotationError
        A malformed CSV, or points outside the image or the movie's frames (all listed).
    """
    prefix = options.annotations if options is not None else kind
    bounds = {
        "n_frames": info.n_frames,
        "height": info.height,
        "width": info.width,
        "n_channels": info.n_channels,
    }
    noun = "point"
    if options is not None and options.shape == "lines":
        points, files = ann.read_kind_lines(ref.folder, prefix, metadata, info.physical_size_x)
        problems = ann.validate_lines(points, **bounds)
        noun = "line"
    else:
        points, files = ann.read_kind_points(ref.folder, prefix, metadata, info.physical_size_x)
        problems = ann.validate_points(points, **bounds)
    if problems:
        # format_problems gives one line per file (sorted), each starting with the file's
        # path: the error names the first file itself, and is reported on one line
        first = min(p.file for p in problems)
        culprit = ref.folder / first if first else ref.folder
        text = ann.format_problems(problems, points, noun=noun)
        text = text.removeprefix(f"{first}: ").replace("\n", "; ")
        raise AnnotationError(culprit, text)
    return points, files


def make_ground_truth(
    ref: AcquisitionRef,
    kind: str,
    layout: Layout,
    *,
    sigma: float = ground_truth.DEFAULT_SIGMA,
    gt_cutoff: float = ground_truth.DEFAULT_CUTOFF,
    options: KindOptions | None = None,
) -> GroundTruthStep:
    """Render and write ``ground_truth_<kind>.tif`` for an acquisition (atomically).

    ``sigma`` and ``gt_cutoff`` are the settings' (``IngestionParams``) Gaussian σ in pixels
    and relative cutoff.
    """
    metadata = read_db_yaml(layout.db_yaml(ref.folder, ref.root))
    info = _movie_for(ref)
    points, files = load_annotations(ref, kind, metadata, info, options)
    drawn: dict[str, Any] = {"points": points}
    if options is not None and options.shape == "lines":
        drawn = {"points": (), "lines": points, "line_width": options.line_width}
    summary = ground_truth.write_ground_truth(
        layout.ground_truth(ref.folder, ref.root, kind),
        n_frames=info.n_frames,
        height=info.height,
        width=info.width,
        sigma=sigma,
        cutoff=gt_cutoff,
        **drawn,
    )
    return GroundTruthStep(
        path=Path(summary.path),
        csv_files=files,
        n_points=len(points),
        frames_with_signal=int(summary.frames_with_signal),
        shape=(info.n_frames, info.height, info.width),
    )


# ---------------------------------------------------------------- events


def _remove_old_temporaries(folder: Path, own_names: set[str]) -> None:
    """Remove interrupted writes: ours now, anybody's once older than a few minutes."""
    if not folder.is_dir():
        return
    now = time.time()
    for entry in folder.iterdir():
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        mine = any(name in entry.name for name in own_names)
        try:
            old = now - entry.stat().st_mtime > STALE_TEMPORARY_AGE_S
        except OSError:
            continue
        if mine or old:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(
                missing_ok=True
            )


def load_events_manifest_data(path: Path) -> dict[str, Any]:
    """Parse an events manifest (JSON text, which is also valid YAML; older ones are YAML)."""
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        data = yaml.load(text, Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, f"events manifest is corrupt ({exc}); delete it to rebuild") from exc
    if not isinstance(data, dict):
        raise InputError(path, "events manifest is not a mapping; delete it to rebuild")
    return data


def read_events_manifest(path: Path) -> list[dict[str, Any]]:
    """The entries of an acquisition's events manifest (``events_<kind>.yaml``): the events
    last written for that kind (empty when none or unreadable: the caller is about to replace
    it, and stale folders are then left for a later run). A training set's ``manifest.yaml``
    is read by :func:`~deep_events_dagster.core.training_set_folder.read_training_set_manifest`."""
    if not path.is_file():
        return []
    try:
        return list(load_events_manifest_data(path).get("events", []))
    except InputError:
        return []


def _event_document(
    metadata: dict[str, Any],
    *,
    ref: AcquisitionRef,
    kind: str,
    event_id: str,
    folder: Path,
    frames: tuple[int, int],
    box: events.Box,
    positive: bool,
    detections: Sequence[events.Detection],
    channel: int | None,
    source: MovieSource | None = None,
) -> dict[str, Any]:
    document = {k: v for k, v in metadata.items() if k not in ("_id", "type")}
    document.update(
        {
            "_id": event_id,
            "event_path": folder.as_posix(),
            "frames": [int(frames[0]), int(frames[1])],
            "crop_box": [int(v) for v in box],
            "original_file": metadata.get("original_file"),
            "label_file": "ground_truth.tif",
            "type": "event",
            "extraction_type": "automatic",
            "event_content": metadata.get("event_content", kind) if positive else NEGATIVE_CONTENT,
            "label": kind if positive else "negative",
            "channel_contrast": channel,
            "dataset_split": metadata.get("dataset_split"),
            "kind": kind,
            "acquisition_key": ref.key,
            "detections": [[int(d.frame), float(d.y), float(d.x)] for d in detections],
        }
    )
    if source is not None:
        source.annotate(document, positive=positive)
    return document


@dataclass(frozen=True)
class MovieSource:
    """Where one variant of a kind's events is cropped from (see ``core.kinds``)."""

    variant: Variant
    info: MovieInfo
    channel: int | None
    event_content: str = ""
    chosen: bool = False
    line_width: float | None = None  # a lines kind: the stroke width drawn into the ground truth

    @property
    def id_kind(self) -> str:
        """What event ids are built from: the kind, plus the variant when there is one."""
        return self.variant.id_suffix()

    @property
    def crop_channels(self) -> int:
        """Channels in each crop: one when a label selects it, else the movie's."""
        return 1 if self.variant.label is not None else max(1, self.info.n_channels)

    def annotate(self, document: dict[str, Any], *, positive: bool) -> None:
        """Record the variant in an event document."""
        if self.variant.contrast is not None:
            document["contrast"] = self.variant.contrast
            document["channel_contrast"] = self.variant.contrast
        if self.variant.label is not None:
            document["channel_label"] = self.variant.label
            document["channel"] = self.channel
        if self.chosen:
            document["original_file"] = self.info.path.name
        if self.event_content and positive:
            document["event_content"] = self.event_content
        if self.line_width is not None:
            document["line_width"] = self.line_width


def channel_names(info: MovieInfo) -> list[str]:
    """The movie's channel names from its OME metadata (``Channel/@Name``; empty if none)."""

    def find(node: Any) -> Any:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "channel":
                    return value
                found = find(value)
                if found is not None:
                    return found
        return None

    channels = find(info.ome)
    if isinstance(channels, dict):
        channels = [channels]
    if not isinstance(channels, list):
        return []
    return [str(c.get("name", "")) if isinstance(c, dict) else "" for c in channels]


def movie_sources(
    ref: AcquisitionRef,
    metadata: dict[str, Any],
    main: MovieInfo,
    options: KindOptions,
    *,
    db_yaml: Path,
) -> list[MovieSource]:
    """The movie and channel of each variant of a kind (one source when it has no choices).

    Raises
    ------
    MetadataError
        ``db.yaml`` does not name a requested contrast or label.
    MovieError
        No movie matches, or the chosen movie's T, Y, X differ from the ground truth's.
    """
    sources = []
    for variant in variants(options):
        info = main
        if options.chooses_movie:
            fragment = (
                contrast_fragment(metadata, variant.contrast, source=db_yaml)
                if variant.contrast is not None
                else ""
            )
            path = choose_movie(
                ref.folder, img_identifier=options.img_identifier, fragment=fragment
            )
            info = main if path == main.path else read_movie_info(path, verify_pages=False)
            if (info.n_frames, info.height, info.width) != (main.n_frames, main.height, main.width):
                raise MovieError(
                    path,
                    f"is {info.n_frames}×{info.height}×{info.width} (T×Y×X) but the annotations' "
                    f"movie {main.path.name} is {main.n_frames}×{main.height}×{main.width}: "
                    "the movies of one acquisition must have the same frames and size",
                )
        channel = None
        if variant.label is not None:
            channel = label_channel(
                metadata,
                variant.label,
                channel_names=channel_names(info),
                n_channels=info.n_channels,
                source=db_yaml,
            )
        sources.append(
            MovieSource(
                variant=variant,
                info=info,
                channel=channel,
                event_content=options.event_content,
                chosen=options.chooses_movie,
                line_width=options.line_width if options.shape == "lines" else None,
            )
        )
    return sources


def extract_events(
    ref: AcquisitionRef,
    kind: str,
    layout: Layout,
    *,
    crop_size: int = events.DEFAULT_CROP_SIZE,
    detection_threshold: float = events.DEFAULT_THRESHOLD,
    max_link_distance_px: float = events.DEFAULT_MAX_DISTANCE_PX,
    max_gap_frames: int = events.DEFAULT_MAX_GAP_FRAMES,
    add_pre_frames: int = events.DEFAULT_ADD_PRE_FRAMES,
    add_post_frames: int = events.DEFAULT_ADD_POST_FRAMES,
    auto_negatives: bool | int = DEFAULT_AUTO_NEGATIVES,
    options: KindOptions | None = None,
    write_workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    hard_negatives: int = events.DEFAULT_HARD_NEGATIVES,
) -> EventsStep:
    """Detect events in the ground truth and write one ``ev_*`` folder per event.

    Positives and signal-free negatives (``auto_negatives``: true = up to four per event,
    up/right/down/left, or a count 0–4) are cropped from the movie in its own dtype and from
    the ground truth. With ``options`` choosing a movie (``img_identifier``, contrasts) or
    channels (labels), the events are cropped once per variant (``core.kinds``).
    ``hard_negatives`` more negatives are centred on the brightest signal-free places of the
    movie (:func:`~deep_events_dagster.core.events.hard_negative_boxes`, on
    :data:`HARD_NEGATIVE_SAMPLE_FRAMES` frames spread over the movie, as long as the median
    event).

    The detection parameters have the settings' (``IngestionParams``) names:
    ``detection_threshold`` and ``max_link_distance_px`` are the ``threshold`` and
    ``max_distance_px`` of :func:`~deep_events_dagster.core.events.detect_events`.

    Folders are written atomically; the manifest listing them is replaced after all are
    written, and folders of the previous manifest that are no longer produced are removed
    last. ``write_workers`` threads write the folders (default :func:`default_write_workers`);
    a failure cancels the folders not yet started and is raised once the running ones are done.

    Raises
    ------
    ConfigurationError
        The movie is smaller than ``crop_size``.
    """
    say = progress or (lambda _msg: None)
    options = options or KindOptions(annotations=kind)
    n_negatives = negatives_count(auto_negatives)
    db_yaml = layout.db_yaml(ref.folder, ref.root)
    metadata = read_db_yaml(db_yaml)
    info = _movie_for(ref)
    sources = movie_sources(ref, metadata, info, options, db_yaml=db_yaml)
    if info.height < crop_size or info.width < crop_size:
        raise ConfigurationError(
            f"{info.path}: movie is {info.width}×{info.height} px, smaller than the "
            f"{crop_size} px crop; lower crop_size"
        )
    gt_path = layout.ground_truth(ref.folder, ref.root, kind)
    # detection, the negatives' signal checks and the crops read the same tiles
    support = ground_truth.read_ground_truth_support(gt_path)
    detect: Callable[..., list[events.Event]] = events.detect_events_in_file
    if options.shape == "lines":
        lines, _ = load_annotations(ref, kind, metadata, info, options)
        detect = functools.partial(events.detect_line_events_in_file, lines=lines)
    with ground_truth.GroundTruthReader(gt_path, cache_bytes=GT_TILE_CACHE_BYTES) as gt:
        found = detect(
            gt_path,
            threshold=detection_threshold,
            max_distance_px=max_link_distance_px,
            max_gap_frames=max_gap_frames,
            add_pre_frames=add_pre_frames,
            add_post_frames=add_post_frames,
            crop_size=crop_size,
            reader=gt,
        )
        say(f"{len(found)} events detected in {gt_path.name}")
        event_root = layout.event_data(ref.root, kind)
        event_root.mkdir(parents=True, exist_ok=True)
        negatives = (
            events.negative_boxes_in_file(
                gt_path, found, crop_size=crop_size, reader=gt, count=n_negatives
            )
            if n_negatives and found
            else [[] for _ in found]
        )
        annotated_channel = _single_channel(ref, kind, metadata, info, options)
        hard = (
            _hard_negatives(
                info.path,
                found,
                check=events.signal_checker(gt, support),
                count=hard_negatives,
                crop_size=crop_size,
                channel=annotated_channel or 0,
                length=add_pre_frames + add_post_frames + 1,
            )
            if hard_negatives
            else []
        )
        if hard:
            say(f"{len(hard)} hard negatives at the brightest signal-free places")

        records: list[EventRecord] = []
        documents: dict[str, dict[str, Any]] = {}
        entry_extras: dict[str, dict[str, Any]] = {}
        for source in sources:
            suffix = source.id_kind
            id_kind = f"{kind}|{suffix}" if suffix else kind
            planned: dict[str, tuple[tuple[int, int], events.Box, bool, Any]] = {}
            for event in found:
                eid = crops.event_id(ref.key, id_kind, event.frames, event.crop_box)
                planned.setdefault(eid, (event.frames, event.crop_box, True, event))
            for event, boxes in zip(found, negatives, strict=True):
                for box in boxes:
                    eid = crops.event_id(ref.key, id_kind, event.frames, box)
                    planned.setdefault(eid, (event.frames, box, False, None))
            for frames, box in hard:
                eid = crops.event_id(ref.key, id_kind, frames, box)
                planned.setdefault(eid, (frames, box, False, None))

            names = {eid: crops.event_folder_name(metadata, eid) for eid in planned}
            _remove_old_temporaries(event_root, set(names.values()))
            channel = source.channel if source.channel is not None else annotated_channel
            for eid, (frames, box, positive, event) in planned.items():
                documents[eid] = crops.to_plain(
                    _event_document(
                        metadata,
                        ref=ref,
                        kind=kind,
                        event_id=eid,
                        folder=event_root / names[eid],
                        frames=frames,
                        box=box,
                        positive=positive,
                        detections=event.detections if event is not None else (),
                        channel=channel,
                        source=source,
                    )
                )
                entry_extras[eid] = {
                    "dtype": source.info.dtype,
                    "channels": source.crop_channels,
                }
            variant_records = [
                EventRecord(
                    event_id=eid,
                    folder=event_root / names[eid],
                    frames=(int(frames[0]), int(frames[1])),
                    crop_box=events.Box(*(int(v) for v in box)),
                    positive=positive,
                    n_detections=len(event.detections) if event is not None else 0,
                )
                for eid, (frames, box, positive, event) in planned.items()
            ]
            if len(sources) > 1:
                say(f"{source.variant.id_suffix()}: {len(variant_records)} event folders")
            _write_event_folders(
                variant_records,
                documents,
                movie_path=source.info.path,
                channel=source.channel,
                gt=gt,
                support=support,
                workers=write_workers or default_write_workers(),
                say=say,
            )
            records.extend(variant_records)

    manifest_path = layout.events_manifest(ref.folder, ref.root, kind)
    previous = read_events_manifest(manifest_path)
    manifest = {
        "acquisition_key": ref.key,
        "kind": kind,
        "event_data": event_root.as_posix(),
        "events": [
            {
                "_id": r.event_id,
                "folder": r.folder.name,
                "positive": r.positive,
                "frames": list(r.frames),
                "crop_box": list(r.crop_box),
                **entry_extras[r.event_id],
                "document": documents[r.event_id],
            }
            for r in records
        ],
    }
    # JSON (a subset of YAML, so YAML readers still work): 20× faster than PyYAML here
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    kept = {r.folder.name for r in records}
    removed = 0
    for entry in previous:
        name = entry.get("folder")
        if name and name not in kept and (event_root / name).is_dir():
            shutil.rmtree(event_root / name, ignore_errors=True)
            removed += 1
    return EventsStep(
        events=tuple(records),
        manifest=manifest_path,
        removed_stale=removed,
        thumbnail_png=movie_thumbnail(info.path, records),
    )


HARD_NEGATIVE_SAMPLE_FRAMES = 16
"""Frames of the movie looked at for the brightest places (spread evenly over it)."""


def _hard_negatives(
    movie_path: Path,
    found: Sequence[events.Event],
    *,
    check: Callable[[events.Box, tuple[int, int]], bool],
    count: int,
    crop_size: int,
    channel: int,
    length: int,
) -> list[tuple[tuple[int, int], events.Box]]:
    """``count`` crops at the brightest signal-free places (see :func:`extract_events`)."""
    if found:
        length = int(np.median([ev.frames[1] - ev.frames[0] for ev in found]))
    with crops.MovieReader(movie_path) as movie:
        n_frames = movie.n_frames
        picks = sorted(set(np.linspace(0, n_frames - 1, HARD_NEGATIVE_SAMPLE_FRAMES).astype(int)))
        sample = []
        for t in picks:
            frame = movie.read_frame(int(t))
            sample.append((int(t), frame[channel] if frame.ndim == 3 else frame))
    return events.hard_negative_boxes(
        sample,
        count=count,
        crop_size=crop_size,
        n_frames=n_frames,
        length=length,
        gt_has_signal=check,
    )


def default_write_workers() -> int:
    """Threads writing event folders: most of that time is system calls and copies, which
    run in parallel; more than four gains nothing measurable."""
    return max(1, min(4, os.cpu_count() or 1))


def _write_event_folders(
    records: Sequence[EventRecord],
    documents: dict[str, dict[str, Any]],
    *,
    movie_path: Path,
    gt: ground_truth.GroundTruthReader,
    support: dict[int, list[ground_truth.Window]] | None,
    workers: int,
    say: Callable[[str], None],
    channel: int | None = None,
) -> None:
    """Write every record's folder on ``workers`` threads; the first failure is raised once
    the running writes are done, and folders not started by then are not written. With
    ``channel``, only that channel of a multi-channel movie is cropped."""

    def crop(record: EventRecord) -> np.ndarray:
        images = movie.read_window(record.frames, record.crop_box)
        if channel is not None and images.ndim == 4:
            images = np.ascontiguousarray(images[:, channel])
        return images

    def write(record: EventRecord, images: np.ndarray | None, gt_crop: np.ndarray | None) -> Path:
        return crops.write_event_folder(
            record.folder,
            images=crop(record) if images is None else images,
            ground_truth=gt_crop,
            event_db=documents[record.event_id],
            durable=False,
        )

    in_flight: deque[Future[Path]] = deque()
    with (
        crops.MovieReader(movie_path) as movie,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="event-folders") as pool,
    ):
        try:
            for index, record in enumerate(records, 1):
                # negatives were checked signal-free: their ground truth is all zeros, unread
                gt_crop = (
                    _gt_window(gt, support, record.frames, record.crop_box)
                    if record.positive
                    else None
                )
                # a memory-mapped movie is read on the writer threads; page by page it is not
                images = None if movie.uses_memmap else crop(record)
                in_flight.append(pool.submit(write, record, images, gt_crop))
                while len(in_flight) > 2 * workers or (in_flight and in_flight[0].done()):
                    in_flight.popleft().result()  # bounds memory; a failure stops the loop
                if index % 25 == 0:
                    say(f"wrote {index}/{len(records)} event folders")
            for future in in_flight:
                future.result()
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise


def _gt_window(
    gt: ground_truth.GroundTruthReader,
    support: dict[int, list[ground_truth.Window]] | None,
    frames: tuple[int, int],
    box: events.Box,
) -> np.ndarray:
    """The ground truth of ``frames`` in ``box``; with the writer's ``support`` only the
    parts that can hold signal are read."""
    x0, y0, x1, y1 = box
    if support is None:
        return np.stack([gt.read_window(t, y0, y1, x0, x1) for t in range(*frames)])
    out = np.zeros((frames[1] - frames[0], y1 - y0, x1 - x0), dtype=gt.dtype)
    for t in range(*frames):
        for wy0, wy1, wx0, wx1 in support.get(t, ()):
            iy0, iy1, ix0, ix1 = max(y0, wy0), min(y1, wy1), max(x0, wx0), min(x1, wx1)
            if iy0 < iy1 and ix0 < ix1:
                out[t - frames[0], iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = gt.read_window(
                    t, iy0, iy1, ix0, ix1
                )
    return out


def _single_channel(
    ref: AcquisitionRef,
    kind: str,
    metadata: dict[str, Any],
    info: MovieInfo,
    options: KindOptions | None = None,
) -> int | None:
    if info.n_channels <= 1:
        return None
    try:
        points, _ = load_annotations(ref, kind, metadata, info, options)
    except AnnotationError:
        return None
    channels = {p.channel for p in points if p.channel is not None}
    return int(next(iter(channels))) if len(channels) == 1 else None


def event_documents(manifest_path: Path) -> list[dict[str, Any]]:
    """The catalog documents of the events a manifest lists (as written to their event_db.yaml).

    Raises
    ------
    FileNotFoundError
        The manifest is missing (event crops were never materialised).
    """
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: no events manifest; materialise event_crops")
    data = load_events_manifest_data(manifest_path)
    event_root = Path(data["event_data"])
    return [
        e["document"] if "document" in e else crops.read_event_folder(event_root / e["folder"])
        for e in data.get("events", [])
    ]


# ---------------------------------------------------------------- pictures


def _projection(path: Path, max_side: int, n_samples: int = 16) -> tuple[np.ndarray, int]:
    with crops.MovieReader(path) as reader:
        stride = thumbnails.downsample_factor(reader.height, reader.width, max_side)
        indices = np.unique(np.linspace(0, reader.n_frames - 1, min(n_samples, reader.n_frames)))
        projection = None
        for t in indices.astype(int):
            frame = reader.read_frame(int(t), step=stride)
            if frame.ndim == 3:
                frame = frame[0]
            small = np.asarray(frame, dtype=np.float32)
            projection = small if projection is None else np.maximum(projection, small)
    return projection, stride


def movie_thumbnail(
    movie: Path, records: Sequence[EventRecord] = (), *, max_side: int = 384
) -> bytes:
    """PNG of the movie's max projection with event boxes (red) and negatives (blue)."""
    projection, stride = _projection(movie, max_side)
    boxes = [
        (r.crop_box, thumbnails.POSITIVE_COLOUR if r.positive else thumbnails.NEGATIVE_COLOUR)
        for r in records
    ]
    rgb = thumbnails.draw_boxes(thumbnails.to_display(projection), boxes, scale=stride)
    return thumbnails.encode_png(rgb)


def ground_truth_thumbnail(gt_path: Path, *, max_side: int = 384) -> bytes:
    """PNG of the ground truth's max projection over time (read where it is non-zero)."""
    support = ground_truth.read_ground_truth_support(gt_path)
    with ground_truth.GroundTruthReader(gt_path) as gt:
        n_frames, height, width = gt.shape[0], gt.shape[-2], gt.shape[-1]
        canvas = np.zeros((height, width), np.float32)
        if support is None:
            for t in range(n_frames):
                np.maximum(canvas, gt.read_frame(t), out=canvas)
        else:
            for t, windows in support.items():
                for y0, y1, x0, x1 in windows:
                    view = canvas[y0:y1, x0:x1]
                    np.maximum(view, gt.read_window(int(t), y0, y1, x0, x1), out=view)
    stride = thumbnails.downsample_factor(height, width, max_side)
    if stride > 1:  # max-pool so that small Gaussians stay visible
        h, w = height // stride * stride, width // stride * stride
        canvas = canvas[:h, :w].reshape(h // stride, stride, w // stride, stride).max(axis=(1, 3))
    return thumbnails.encode_png((np.clip(canvas, 0, 1) * 255).astype(np.uint8))


# ---------------------------------------------------------------- everything


@dataclass(frozen=True)
class IngestionReport:
    """What :func:`ingest_acquisition` made, and how long each step took."""

    key: str
    metadata_path: Path
    ground_truth: dict[str, GroundTruthStep]
    events: dict[str, EventsStep]
    seconds: dict[str, float]


def ingest_acquisition(
    ref: AcquisitionRef,
    *,
    kinds: Sequence[str],
    layout: Layout,
    vocabulary: Vocabulary,
    sink: PartitionSink | None = None,
    collection_for: Callable[[str], str] = lambda kind: f"event_data_{kind}",
    sigma: float = 5.0,
    kind_options: Mapping[str, KindOptions] | None = None,
    **event_params: Any,
) -> IngestionReport:
    """Run every ingestion step for one acquisition (what the Dagster assets do, in order);
    ``kind_options`` gives a kind's annotations, movie and channel choices (``core.kinds``)."""
    kind_options = kind_options or {}
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    inspect_movie(ref)
    _, metadata_path = make_metadata(ref, layout, vocabulary)
    seconds["metadata"] = time.perf_counter() - start
    gts: dict[str, GroundTruthStep] = {}
    evs: dict[str, EventsStep] = {}
    for kind in kinds:
        t0 = time.perf_counter()
        options = kind_options.get(kind)
        gts[kind] = make_ground_truth(ref, kind, layout, sigma=sigma, options=options)
        t1 = time.perf_counter()
        evs[kind] = extract_events(ref, kind, layout, options=options, **event_params)
        t2 = time.perf_counter()
        if sink is not None:
            documents = event_documents(evs[kind].manifest)
            sink.replace_partition(collection_for(kind), ref.key, documents)
        t3 = time.perf_counter()
        seconds[f"{kind}/ground_truth"] = t1 - t0
        seconds[f"{kind}/event_crops"] = t2 - t1
        seconds[f"{kind}/event_catalog"] = t3 - t2
    return IngestionReport(
        key=ref.key,
        metadata_path=metadata_path,
        ground_truth=gts,
        events=evs,
        seconds=seconds,
    )


def describe_folder(path: Path) -> str:
    """Human path for messages (relative to the working directory when shorter)."""
    try:
        rel = os.path.relpath(path)
        return rel if len(rel) < len(str(path)) else str(path)
    except ValueError:
        return str(path)
