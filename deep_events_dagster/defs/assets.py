"""Ingestion assets: one acquisition partition → db.yaml → ground truth → event crops → catalog."""

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dagster as dg

from deep_events_dagster.cluster import require_visible
from deep_events_dagster.core import checks, ingest
from deep_events_dagster.core.acquisitions import movie_in_folder
from deep_events_dagster.core.annotations import AnnotationPoint, read_kind_lines
from deep_events_dagster.core.errors import (
    AnnotationError,
    ConfigurationError,
    InputError,
    MovieError,
)
from deep_events_dagster.core.events import DEFAULT_MERGE_DISTANCE_PX
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import read_db_yaml
from deep_events_dagster.core.ome import MovieInfo, read_movie_info
from deep_events_dagster.core.thumbnails import markdown_image
from deep_events_dagster.defs.partitions import acquisitions_partitions
from deep_events_dagster.defs.resources import CatalogResource, IngestionResource

INGESTION_GROUP = "ingestion"
MAX_TABLE_ROWS = 60

# Asset checks (computed in core.checks). A blocking check that fails with ERROR severity
# fails its step after the materialisation is recorded, so nothing downstream of it runs in
# that run; non-blocking ones only warn.
METADATA_COMPLETE = "metadata_complete"
ANNOTATIONS_INSIDE_MOVIE = "annotations_inside_movie"
ONE_PEAK_PER_POINT = "one_peak_per_point"
CROPS_VALID = "crops_valid"
POSITIVE_NEGATIVE_RATIO = "positive_negative_ratio"
CATALOG_MATCHES_FOLDERS = "catalog_matches_folders"
ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


def _user_errors_as_failures(step: Callable[[], Any]) -> Any:
    """Run a core step; bad input becomes a clean Dagster failure naming the file."""
    try:
        return step()
    except (InputError, ConfigurationError, FileNotFoundError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def _movie_info(ref: ingest.AcquisitionRef) -> MovieInfo:
    movie = movie_in_folder(ref.folder)
    if movie is None:
        raise MovieError(ref.folder, "no *.ome.tif / *.ome.tiff / *.ome.zarr movie in this folder")
    return read_movie_info(movie, verify_pages=False)


def _read_annotations(
    ref: ingest.AcquisitionRef, kind: str, layout: Layout, shape: str = "points"
) -> tuple[list[AnnotationPoint], tuple, MovieInfo]:
    """The acquisition's points of one kind (in pixels, outside ones included; for a lines
    kind its lines' vertices), the CSV files and the movie's header."""
    if shape == "lines":
        lines, files, info = _read_lines(ref, kind, layout)
        return checks.line_vertices(lines), files, info
    info = _movie_info(ref)
    metadata = read_db_yaml(layout.db_yaml(ref.folder, ref.root))
    points, files = checks.read_points(ref.folder, kind, metadata, info.physical_size_x)
    return points, files, info


def _read_lines(
    ref: ingest.AcquisitionRef, kind: str, layout: Layout
) -> tuple[list, tuple, MovieInfo]:
    """A lines kind's annotations (in pixels, outside ones included), its CSVs, the movie's
    header."""
    info = _movie_info(ref)
    metadata = read_db_yaml(layout.db_yaml(ref.folder, ref.root))
    lines, files = read_kind_lines(ref.folder, kind, metadata, info.physical_size_x)
    return lines, files, info


def _annotation_bounds(
    points: list[AnnotationPoint], files: tuple, info: MovieInfo
) -> dg.AssetCheckResult:
    bounds = checks.annotations_inside_movie(
        points,
        n_frames=info.n_frames,
        height=info.height,
        width=info.width,
        n_channels=info.n_channels,
        files=files,
    )
    table = ["| file | points | outside the movie |", "|---|---|---|"]
    table += [f"| {f.file} | {f.points} | {f.outside} |" for f in bounds.files]
    channels = f", {info.n_channels} channels" if info.n_channels > 1 else ""
    metadata: dict[str, Any] = {
        "points": bounds.n_points,
        "outside": bounds.n_outside,
        "movie_size": f"{info.n_frames} frames, {info.width}×{info.height} px "
        f"(width×height){channels}",
        "files": dg.MetadataValue.md("\n".join(table)),
    }
    if bounds.problems:
        metadata["bad_points"] = _bullets(bounds.problems, bounds.n_outside - len(bounds.problems))
    return _check(ANNOTATIONS_INSIDE_MOVIE, bounds, severity=ERROR, metadata=metadata)


def _bullets(lines: Sequence[str], more: int = 0) -> dg.MetadataValue:
    text = "\n".join(f"- {line}" for line in lines) or "none"
    if more > 0:
        text += f"\n- … and {more} more"
    return dg.MetadataValue.md(text)


def _check(
    name: str,
    outcome: Any,
    *,
    severity: dg.AssetCheckSeverity,
    metadata: dict[str, Any],
) -> dg.AssetCheckResult:
    """A check result from a ``core.checks`` outcome (``passed`` and ``message``)."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=bool(outcome.passed),
        severity=severity,
        metadata=metadata,
        description=outcome.message,
    )


@dg.asset(
    partitions_def=acquisitions_partitions,
    group_name=INGESTION_GROUP,
    code_version="1",
    kinds={"tiff"},
)
def raw_movie(
    context: dg.AssetExecutionContext, ingestion: IngestionResource
) -> dg.MaterializeResult:
    """The acquisition's OME-TIFF movie: checked complete, fingerprinted (path, size, mtime,
    hashes of its first and last planes). Its data version follows the fingerprint, so a
    changed movie marks everything downstream stale."""
    ref = ingestion.acquisition(context.partition_key)
    # the run's first step: on a cluster it may run on a machine that does not see the share
    paths = {"acquisition folder": ref.folder}
    _user_errors_as_failures(lambda: require_visible(paths))
    step = _user_errors_as_failures(lambda: ingest.inspect_movie(ref))
    info = step.info
    context.log.info(f"{info.path.name}: {info.axes} {info.shape} {info.dtype}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(step.fingerprint.digest),
        metadata={
            "movie": dg.MetadataValue.path(str(info.path)),
            "axes": info.axes,
            "shape": str(list(info.shape)),
            "dtype": info.dtype,
            "frames": info.n_frames,
            "channels": info.n_channels,
            "size_mb": round(step.fingerprint.size / 1e6, 2),
            "pixel_size_um": info.physical_size_x or 0.0,
            "frame_interval_s": info.frame_interval_s or 0.0,
            "fps": info.fps or 0.0,
            "fingerprint": step.fingerprint.digest,
        },
    )


@dg.asset(
    partitions_def=acquisitions_partitions,
    group_name=INGESTION_GROUP,
    deps=[raw_movie],
    # 2: fps in frames per second (was the interval in s), plus frame_interval_s
    code_version="2",
    kinds={"yaml"},
    check_specs=[
        dg.AssetCheckSpec(
            METADATA_COMPLETE,
            asset="acquisition_metadata",
            blocking=False,
            description=(
                "db.yaml names the cell line, microscope, contrast and stain or labels (no "
                "stain needed for brightfield) and has the defaults typically_use, augmented, "
                "scale_csv and type. Missing keys make the acquisition's events invisible to "
                "training-set queries on them; fix the folder names or a db_manual.yaml."
            ),
        )
    ],
)
def acquisition_metadata(
    context: dg.AssetExecutionContext, ingestion: IngestionResource
) -> dg.MaterializeResult:
    """``db.yaml`` of the acquisition: OME fields, ``fps`` (frames per second) and
    ``frame_interval_s`` (seconds), date / cell line / microscope / contrast / stain / labels
    inferred from folder names (keys.yaml), every ``db_manual.yaml`` from the root down
    (nearer wins), then defaults."""
    ref = ingestion.acquisition(context.partition_key)
    metadata, path = _user_errors_as_failures(
        lambda: ingest.make_metadata(ref, ingestion.layout(), ingestion.vocabulary())
    )
    shown = [
        "date",
        "cell_line",
        "microscope",
        "contrast",
        "stain",
        "labels",
        "fps",
        "frame_interval_s",
    ]
    rows = "\n".join(f"| {key} | {metadata.get(key, '—')} |" for key in shown)
    completeness = checks.metadata_complete(metadata)
    complete = _check(
        METADATA_COMPLETE,
        completeness,
        severity=WARN,
        metadata={
            "missing": ", ".join(completeness.missing) or "none",
            "checked": ", ".join(completeness.checked),
            "brightfield": completeness.brightfield,
            "db_yaml": dg.MetadataValue.path(str(path)),
        },
    )
    return dg.MaterializeResult(
        check_results=[complete],
        metadata={
            "db_yaml": dg.MetadataValue.path(str(path)),
            "summary": dg.MetadataValue.md(f"| field | value |\n|---|---|\n{rows}"),
            "cell_line": str(metadata.get("cell_line", "")),
            "microscope": str(metadata.get("microscope", "")),
            "contrast": str(metadata.get("contrast", "")),
        },
    )


def _events_table(step: ingest.EventsStep) -> str:
    lines = ["| id | kind | frames | box (x0, y0, x1, y1) | detections |", "|---|---|---|---|---|"]
    for record in step.events[:MAX_TABLE_ROWS]:
        lines.append(
            f"| `{record.event_id}` | {'event' if record.positive else 'negative'} | "
            f"{list(record.frames)} | {list(record.crop_box)} | {record.n_detections} |"
        )
    if len(step.events) > MAX_TABLE_ROWS:
        lines.append(f"| … {len(step.events) - MAX_TABLE_ROWS} more | | | | |")
    return "\n".join(lines)


def build_kind_assets(kind: str) -> list[dg.AssetsDefinition]:
    """The ground truth, event crops and catalog assets of one annotation kind, with checks."""
    gt_key = dg.AssetKey([kind, "ground_truth"])
    crops_key = dg.AssetKey([kind, "event_crops"])
    catalog_key = dg.AssetKey([kind, "event_catalog"])

    @dg.asset(
        key=gt_key,
        partitions_def=acquisitions_partitions,
        group_name=INGESTION_GROUP,
        deps=[acquisition_metadata],
        code_version="1",
        kinds={"tiff"},
        description=(
            f"Gaussian ground truth of the `{kind}*.csv` annotations: one Gaussian (σ in px, "
            "peak 1, values under 10% of the peak set to 0) per napari point in its frame; "
            f"written as `ground_truth_{kind}.tif` next to the movie."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                ANNOTATIONS_INSIDE_MOVIE,
                asset=gt_key,
                blocking=True,
                description=(
                    f"Every point of the `{kind}*.csv` files lies inside the movie (image, "
                    "frames, channels). Points outside fail the ground truth itself (nothing is "
                    "written) and this check then lists them per file; when it passes it "
                    "reports the points checked per file."
                ),
            ),
            dg.AssetCheckSpec(
                ONE_PEAK_PER_POINT,
                asset=gt_key,
                blocking=True,
                description=(
                    "Every annotated point has a ground-truth maximum ≥ the detection "
                    f"threshold within the merge distance ({DEFAULT_MERGE_DISTANCE_PX:g} px) in "
                    "its frame, so event "
                    "detection sees it. Fails e.g. when σ is too small for sub-pixel points; "
                    "blocks event crops."
                ),
            ),
        ],
    )
    def ground_truth(
        context: dg.AssetExecutionContext, ingestion: IngestionResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        ref = ingestion.acquisition(context.partition_key)
        layout = ingestion.layout()
        settings = _user_errors_as_failures(lambda: ingestion.kind(kind))
        params, prefix = settings.params, settings.options.annotations
        shape = settings.options.shape
        try:
            step = ingest.make_ground_truth(
                ref,
                kind,
                layout,
                sigma=params.sigma,
                cutoff=params.gt_cutoff,
                options=settings.options,
            )
        except AnnotationError as exc:
            # nothing was written; record which points lie outside, then fail naming the file
            # (when the CSVs cannot even be parsed there is nothing to count)
            try:
                outside = _annotation_bounds(*_read_annotations(ref, prefix, layout, shape))
            except (InputError, ConfigurationError, OSError):
                outside = None
            if outside is not None and not outside.passed:
                yield outside
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        except (InputError, ConfigurationError, FileNotFoundError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        context.log.info(f"{step.n_points} points from {len(step.csv_files)} CSV file(s)")

        if shape == "lines":  # one read: the vertices for the bounds, the lines for the check
            lines, files, info = _user_errors_as_failures(lambda: _read_lines(ref, prefix, layout))
            points = checks.line_vertices(lines)
            peaks = checks.lines_drawn(step.path, lines, threshold=params.detection_threshold)
        else:
            points, files, info = _user_errors_as_failures(
                lambda: _read_annotations(ref, prefix, layout, shape)
            )
            peaks = checks.one_peak_per_point(
                step.path, points, threshold=params.detection_threshold
            )
        missing = ["| file | row | frame | y (px) | x (px) |", "|---|---|---|---|---|"]
        missing += [f"| {m.file} | {m.row} | {m.frame} | {m.y} | {m.x} |" for m in peaks.missing]
        peak_metadata: dict[str, Any] = {
            "points": peaks.n_points,
            "peaks_found": peaks.n_peaks,
            "missing": peaks.n_missing,
            "frames_checked": peaks.frames_checked,
            "threshold": params.detection_threshold,
            "tolerance_px": DEFAULT_MERGE_DISTANCE_PX,
            "sigma_px": params.sigma,
            "read": "support windows (sidecar)" if peaks.used_support else "whole frames",
        }
        if peaks.missing:
            peak_metadata["points_without_peak"] = dg.MetadataValue.md("\n".join(missing))
        yield dg.MaterializeResult(
            metadata={
                "ground_truth": dg.MetadataValue.path(str(step.path)),
                "annotation_files": ", ".join(p.name for p in step.csv_files) or "none",
                "points": step.n_points,
                "frames_with_signal": step.frames_with_signal,
                "sigma_px": params.sigma,
                "preview": dg.MetadataValue.md(
                    markdown_image(ingest.ground_truth_thumbnail(step.path), "ground truth")
                ),
            },
            check_results=[
                _annotation_bounds(points, files, info),
                _check(ONE_PEAK_PER_POINT, peaks, severity=ERROR, metadata=peak_metadata),
            ],
        )

    @dg.asset(
        key=crops_key,
        partitions_def=acquisitions_partitions,
        group_name=INGESTION_GROUP,
        deps=[ground_truth],
        # 2: event_db.yaml copies db.yaml's new fps (frames per second) and frame_interval_s
        code_version="2",
        kinds={"tiff"},
        description=(
            "Events detected in the ground truth (local maxima linked over frames), cropped "
            "from the movie bit-exactly plus signal-free negatives, one `ev_*` folder each "
            f"under `event_data_{kind}/`."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                CROPS_VALID,
                asset=crops_key,
                blocking=True,
                description=(
                    "Every event folder of the manifest exists; images.tif is T×[C×]crop×crop "
                    "with T the event's frames, in the movie's dtype and not empty; "
                    "ground_truth.tif matches; events' ground truth reaches the threshold and "
                    "negatives' is zero. Blocks the catalog."
                ),
            ),
            dg.AssetCheckSpec(
                POSITIVE_NEGATIVE_RATIO,
                asset=crops_key,
                blocking=False,
                description=(
                    "How many event and negative crops the acquisition gave; warns when points "
                    "were annotated but no event was detected."
                ),
            ),
        ],
    )
    def event_crops(
        context: dg.AssetExecutionContext, ingestion: IngestionResource
    ) -> dg.MaterializeResult:
        ref = ingestion.acquisition(context.partition_key)
        layout = ingestion.layout()
        settings = _user_errors_as_failures(lambda: ingestion.kind(kind))
        params = settings.params
        step = _user_errors_as_failures(
            lambda: ingest.extract_events(
                ref, kind, layout, progress=context.log.info, **ingestion.event_params(kind)
            )
        )
        points, _files, info = _user_errors_as_failures(
            lambda: _read_annotations(
                ref, settings.options.annotations, layout, settings.options.shape
            )
        )
        validity = checks.crops_valid(
            step.manifest,
            crop_size=params.crop_size,
            dtype=info.dtype,
            n_channels=info.n_channels,
            threshold=params.detection_threshold,
        )
        balance = checks.positive_negative_ratio(
            step.n_positive, step.n_negative, n_annotated_points=len(points)
        )
        crops_metadata: dict[str, Any] = {
            "event_folders": validity.n_events,
            "events": validity.n_positive,
            "negatives": validity.n_negative,
            "invalid": validity.n_bad,
            "crop_size_px": params.crop_size,
            "dtype": info.dtype,
        }
        if validity.problems:
            crops_metadata["problems"] = _bullets(validity.problems)
        balance_metadata: dict[str, Any] = {
            "events": balance.n_positive,
            "negatives": balance.n_negative,
            "annotated_points": balance.n_annotated_points,
        }
        if balance.negatives_per_event is not None:
            balance_metadata["negatives_per_event"] = round(balance.negatives_per_event, 3)
        return dg.MaterializeResult(
            metadata={
                "events": step.n_positive,
                "negatives": step.n_negative,
                "removed_stale": step.removed_stale,
                "manifest": dg.MetadataValue.path(str(step.manifest)),
                "event_table": dg.MetadataValue.md(_events_table(step)),
                "thumbnail": dg.MetadataValue.md(
                    markdown_image(step.thumbnail_png, "max projection with event boxes")
                ),
            },
            check_results=[
                _check(CROPS_VALID, validity, severity=ERROR, metadata=crops_metadata),
                _check(POSITIVE_NEGATIVE_RATIO, balance, severity=WARN, metadata=balance_metadata),
            ],
        )

    @dg.asset(
        key=catalog_key,
        partitions_def=acquisitions_partitions,
        group_name=INGESTION_GROUP,
        deps=[event_crops],
        # 2: documents carry fps in frames per second and frame_interval_s
        code_version="2",
        kinds={"mongodb"},
        description=(
            f"The acquisition's events in the catalog collection `event_data_{kind}`: upserted "
            "with deterministic ids; stale automatic events of this acquisition removed; "
            "manual events never touched."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                CATALOG_MATCHES_FOLDERS,
                asset=catalog_key,
                blocking=True,
                description=(
                    "The catalog's automatic documents of this acquisition are exactly the "
                    "event folders of the manifest and every event_path exists (manual "
                    "documents are not compared). A manual document holding an automatic "
                    "event's id, or a concurrent writer, makes it fail."
                ),
            )
        ],
    )
    def event_catalog(
        context: dg.AssetExecutionContext, ingestion: IngestionResource, catalog: CatalogResource
    ) -> dg.MaterializeResult:
        ref = ingestion.acquisition(context.partition_key)
        layout = ingestion.layout()
        manifest_path = layout.events_manifest(ref.folder, ref.root, kind)
        documents = _user_errors_as_failures(lambda: ingest.event_documents(manifest_path))
        collection = f"event_data_{kind}"
        db = catalog.open()
        try:
            result = db.replace_partition(collection, ref.key, documents)
            stored = db.find_partition(
                collection, ref.key, projection=["event_path", "extraction_type"]
            )
            where = db.describe()
        finally:
            db.close()
        agreement = _user_errors_as_failures(
            lambda: checks.catalog_matches_folders(stored, manifest_path)
        )
        context.log.info(f"{len(documents)} documents → {where} / {collection}")
        catalog_metadata: dict[str, Any] = {
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
                catalog_metadata[label] = ", ".join(ids)
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
                _check(
                    CATALOG_MATCHES_FOLDERS, agreement, severity=ERROR, metadata=catalog_metadata
                )
            ],
        )

    return [ground_truth, event_crops, event_catalog]
