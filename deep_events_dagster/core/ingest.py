"""The ingestion steps of one acquisition, without Dagster: the movie checked and fingerprinted
(:func:`inspect_movie`), ``db.yaml`` (:func:`make_metadata`), a kind's annotations and ground
truth (:func:`load_annotations`, :func:`make_ground_truth`) and its events detected and cropped
into ``ev_*`` folders with their manifest (:func:`extract_events`), and what each step returns.

Each step reads what the previous one wrote to disk, or takes it from its caller (``metadata``,
``info``, ``annotations``) when the caller has just read it. Which arguments each step gets from
the settings is decided once, in :mod:`deep_events_dagster.core.pipeline`, which the Dagster
assets and :func:`~deep_events_dagster.core.pipeline.ingest_acquisition` both use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deep_events_dagster.core import annotations as ann
from deep_events_dagster.core import (
    detections,
    event_ids,
    events,
    ground_truth,
    ground_truth_reader,
    ground_truth_render,
    movie_reader,
    plain_values,
    regions,
    tracks,
)
from deep_events_dagster.core.acquisition_ref import (
    AcquisitionRef,
    acquisition_movie,
    movie_header,
)
from deep_events_dagster.core.errors import AnnotationError, ConfigurationError
from deep_events_dagster.core.event_folders import (
    EventRecord,
    default_write_workers,
    remove_old_temporaries,
    write_event_folders,
)
from deep_events_dagster.core.events_manifest import event_document, replace_events_manifest
from deep_events_dagster.core.fingerprint import MovieFingerprint, fingerprint_movie
from deep_events_dagster.core.kinds import DEFAULT_AUTO_NEGATIVES, KindOptions, negatives_count
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import (
    Vocabulary,
    build_metadata,
    read_db_yaml,
    write_db_yaml,
)
from deep_events_dagster.core.movie_sources import movie_sources
from deep_events_dagster.core.negatives import (
    DEFAULT_HARD_NEGATIVES,
    hard_negative_boxes,
    negative_boxes_in_file,
    signal_checker,
)
from deep_events_dagster.core.ome import MovieInfo, read_movie_info
from deep_events_dagster.core.previews import movie_thumbnail

# decoded ground-truth tiles kept while one kind's events are extracted
GT_TILE_CACHE_BYTES = 192 * 1024 * 1024


@dataclass(frozen=True)
class MovieStep:
    """Result of looking at an acquisition's movie."""

    info: MovieInfo
    fingerprint: MovieFingerprint


@dataclass(frozen=True)
class GroundTruthStep:
    """Result of rendering one kind's ground truth: the file, the annotations drawn (points, or
    lines for a lines kind, as :func:`load_annotations` returns them) and the movie's header."""

    path: Path
    csv_files: tuple[Path, ...]
    n_points: int
    frames_with_signal: int
    shape: tuple[int, int, int]
    annotations: Sequence[Any] = field(default=(), repr=False)
    info: MovieInfo | None = field(default=None, repr=False)


@dataclass(frozen=True)
class EventsStep:
    """Result of detecting events and writing their folders (``movie``: the header of the
    acquisition's movie)."""

    events: tuple[EventRecord, ...]
    manifest: Path
    removed_stale: int
    thumbnail_png: bytes = field(repr=False, default=b"")
    movie: MovieInfo | None = field(default=None, repr=False)

    @property
    def n_positive(self) -> int:
        """Number of event (positive) crops."""
        return sum(e.positive for e in self.events)

    @property
    def n_negative(self) -> int:
        """Number of automatic negative crops."""
        return sum(not e.positive for e in self.events)


# ---------------------------------------------------------------- movie and metadata


def inspect_movie(ref: AcquisitionRef) -> MovieStep:
    """Find the acquisition's movie, check it is complete and fingerprint it.

    Raises
    ------
    MovieError
        No movie in the folder, or an unreadable / inconsistent one.
    """
    movie = acquisition_movie(ref)
    info = read_movie_info(movie)
    return MovieStep(info=info, fingerprint=fingerprint_movie(movie))


def make_metadata(
    ref: AcquisitionRef, layout: Layout, vocabulary: Vocabulary, *, info: MovieInfo | None = None
) -> tuple[dict[str, Any], Path]:
    """Build and write the acquisition's ``db.yaml``; returns its contents and path.

    ``info`` is the movie's header when the caller has read it (else it is read here).
    """
    info = movie_header(ref) if info is None else info
    metadata = build_metadata(info, folder=ref.folder, root=ref.root, vocabulary=vocabulary)
    path = write_db_yaml(layout.derived_folder(ref.folder, ref.root), metadata)
    return metadata, path


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
    sigma: float = ground_truth_render.DEFAULT_SIGMA,
    gt_cutoff: float = ground_truth_render.DEFAULT_CUTOFF,
    options: KindOptions | None = None,
    metadata: dict[str, Any] | None = None,
    info: MovieInfo | None = None,
) -> GroundTruthStep:
    """Render and write ``ground_truth_<kind>.tif`` for an acquisition (atomically).

    ``sigma`` and ``gt_cutoff`` are the settings' (``IngestionParams``) Gaussian σ in pixels
    and relative cutoff. ``metadata`` (``db.yaml``) and ``info`` (the movie's header) are
    read here unless the caller passes what it has read.
    """
    metadata = read_db_yaml(layout.db_yaml(ref.folder, ref.root)) if metadata is None else metadata
    info = movie_header(ref) if info is None else info
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
        annotations=points,
        info=info,
    )


# ---------------------------------------------------------------- events


def extract_events(
    ref: AcquisitionRef,
    kind: str,
    layout: Layout,
    *,
    crop_size: int = regions.DEFAULT_CROP_SIZE,
    detection_threshold: float = detections.DEFAULT_THRESHOLD,
    max_link_distance_px: float = tracks.DEFAULT_MAX_LINK_DISTANCE_PX,
    max_gap_frames: int = tracks.DEFAULT_MAX_GAP_FRAMES,
    add_pre_frames: int = tracks.DEFAULT_ADD_PRE_FRAMES,
    add_post_frames: int = tracks.DEFAULT_ADD_POST_FRAMES,
    auto_negatives: bool | int = DEFAULT_AUTO_NEGATIVES,
    options: KindOptions | None = None,
    write_workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    hard_negatives: int = DEFAULT_HARD_NEGATIVES,
    metadata: dict[str, Any] | None = None,
    info: MovieInfo | None = None,
    annotations: Sequence[Any] | None = None,
) -> EventsStep:
    """Detect events in the ground truth and write one ``ev_*`` folder per event.

    Positives and signal-free negatives (``auto_negatives``: true = up to four per event,
    up/right/down/left, or a count 0–4) are cropped from the movie in its own dtype and from
    the ground truth. With ``options`` choosing a movie (``img_identifier``, contrasts) or
    channels (labels), the events are cropped once per variant (``core.kinds``).
    ``hard_negatives`` more negatives are centred on the brightest signal-free places of the
    movie (:func:`~deep_events_dagster.core.negatives.hard_negative_boxes`, on
    :data:`HARD_NEGATIVE_SAMPLE_FRAMES` frames spread over the movie, as long as the median
    event).

    The detection parameters have the settings' (``IngestionParams``) names:
    ``detection_threshold`` and ``max_link_distance_px`` are passed on to
    :func:`~deep_events_dagster.core.events.detect_events` under the same names.

    Folders are written atomically; the manifest listing them is replaced after all are
    written, and folders of the previous manifest that are no longer produced are removed
    last. ``write_workers`` threads write the folders (default :func:`default_write_workers`);
    a failure cancels the folders not yet started and is raised once the running ones are done.

    ``metadata`` (``db.yaml``), ``info`` (the movie's header) and ``annotations`` (the kind's,
    as :func:`load_annotations` returns them) are read here unless the caller passes what it
    has read.

    Raises
    ------
    ConfigurationError
        The movie is smaller than ``crop_size``.
    """
    say = progress or (lambda _msg: None)
    options = options or KindOptions(annotations=kind)
    n_negatives = negatives_count(auto_negatives)
    db_yaml = layout.db_yaml(ref.folder, ref.root)
    metadata = read_db_yaml(db_yaml) if metadata is None else metadata
    info = movie_header(ref) if info is None else info
    sources = movie_sources(ref, metadata, info, options, db_yaml=db_yaml)
    if info.height < crop_size or info.width < crop_size:
        raise ConfigurationError(
            f"{info.path}: movie is {info.width}×{info.height} px, smaller than the "
            f"{crop_size} px crop; lower crop_size"
        )
    gt_path = layout.ground_truth(ref.folder, ref.root, kind)
    # detection, the negatives' signal checks and the crops read the same tiles
    support = ground_truth_reader.read_ground_truth_support(gt_path)
    detect: Callable[..., list[tracks.Event]] = events.detect_events_in_file
    if options.shape == "lines":
        if annotations is None:
            annotations, _ = load_annotations(ref, kind, metadata, info, options)
        lines = annotations
        detect = functools.partial(events.detect_line_events_in_file, lines=lines)
    with ground_truth_reader.GroundTruthReader(gt_path, cache_bytes=GT_TILE_CACHE_BYTES) as gt:
        found = detect(
            gt_path,
            detection_threshold=detection_threshold,
            max_link_distance_px=max_link_distance_px,
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
            negative_boxes_in_file(
                gt_path, found, crop_size=crop_size, reader=gt, count=n_negatives
            )
            if n_negatives and found
            else [[] for _ in found]
        )
        annotated_channel = _single_channel(ref, kind, metadata, info, options, annotations)
        hard = (
            _hard_negatives(
                info.path,
                found,
                check=signal_checker(gt, support),
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
            planned: dict[str, tuple[tuple[int, int], regions.Box, bool, Any]] = {}
            for event in found:
                eid = event_ids.event_id(ref.key, id_kind, event.frames, event.crop_box)
                planned.setdefault(eid, (event.frames, event.crop_box, True, event))
            for event, boxes in zip(found, negatives, strict=True):
                for box in boxes:
                    eid = event_ids.event_id(ref.key, id_kind, event.frames, box)
                    planned.setdefault(eid, (event.frames, box, False, None))
            for frames, box in hard:
                eid = event_ids.event_id(ref.key, id_kind, frames, box)
                planned.setdefault(eid, (frames, box, False, None))

            names = {eid: event_ids.event_folder_name(metadata, eid) for eid in planned}
            remove_old_temporaries(event_root, set(names.values()))
            channel = source.channel if source.channel is not None else annotated_channel
            for eid, (frames, box, positive, event) in planned.items():
                documents[eid] = plain_values.to_plain(
                    event_document(
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
                    crop_box=regions.Box(*(int(v) for v in box)),
                    positive=positive,
                    n_detections=len(event.detections) if event is not None else 0,
                )
                for eid, (frames, box, positive, event) in planned.items()
            ]
            if len(sources) > 1:
                say(f"{source.variant.id_suffix()}: {len(variant_records)} event folders")
            write_event_folders(
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
    removed = replace_events_manifest(
        manifest_path,
        ref=ref,
        kind=kind,
        event_root=event_root,
        records=records,
        documents=documents,
        entry_extras=entry_extras,
    )
    return EventsStep(
        events=tuple(records),
        manifest=manifest_path,
        removed_stale=removed,
        thumbnail_png=movie_thumbnail(info.path, records),
        movie=info,
    )


HARD_NEGATIVE_SAMPLE_FRAMES = 16
"""Frames of the movie looked at for the brightest places (spread evenly over it)."""


def _hard_negatives(
    movie_path: Path,
    found: Sequence[tracks.Event],
    *,
    check: Callable[[regions.Box, tuple[int, int]], bool],
    count: int,
    crop_size: int,
    channel: int,
    length: int,
) -> list[tuple[tuple[int, int], regions.Box]]:
    """``count`` crops at the brightest signal-free places (see :func:`extract_events`)."""
    if found:
        length = int(np.median([ev.frames[1] - ev.frames[0] for ev in found]))
    with movie_reader.MovieReader(movie_path) as movie:
        n_frames = movie.n_frames
        picks = sorted(set(np.linspace(0, n_frames - 1, HARD_NEGATIVE_SAMPLE_FRAMES).astype(int)))
        sample = []
        for t in picks:
            frame = movie.read_frame(int(t))
            sample.append((int(t), frame[channel] if frame.ndim == 3 else frame))
    return hard_negative_boxes(
        sample,
        count=count,
        crop_size=crop_size,
        n_frames=n_frames,
        length=length,
        gt_has_signal=check,
    )


def _single_channel(
    ref: AcquisitionRef,
    kind: str,
    metadata: dict[str, Any],
    info: MovieInfo,
    options: KindOptions | None = None,
    annotations: Sequence[Any] | None = None,
) -> int | None:
    if info.n_channels <= 1:
        return None
    if annotations is not None:
        points = annotations
    else:
        try:
            points, _ = load_annotations(ref, kind, metadata, info, options)
        except AnnotationError:
            return None
    channels = {p.channel for p in points if p.channel is not None}
    return int(next(iter(channels))) if len(channels) == 1 else None
