"""Quality checks of ingestion outputs, as pure functions (no Dagster).

Each check returns a small frozen dataclass with ``passed``, the counts a biologist wants to
see and a one-line ``message``; :mod:`deep_events_dagster.defs.ingestion.checks` turns them
into Dagster asset-check results beside the assets that produced the checked files.

==========================  ====================================  =========================
check                       what it looks at                      a failure means
==========================  ====================================  =========================
annotations_inside_movie    napari points vs. the movie's size    a point off the image or
                                                                  outside the movie's frames
metadata_complete           ``db.yaml``                           cell line, microscope,
                                                                  contrast, stain/labels or
                                                                  a default missing
one_peak_per_point          ground-truth TIFF vs. the points      an annotated point has no
                                                                  heatmap maximum ≥ threshold
                                                                  nearby in its frame
crops_valid                 ``ev_*`` folders of a manifest        missing, wrongly shaped,
                                                                  empty or mislabelled crops
catalog_matches_folders     catalog documents vs. the manifest    catalog and folders disagree
positive_negative_ratio     event / negative counts               annotations but no event
==========================  ====================================  =========================

One module per checked output: :mod:`~deep_events_dagster.core.checks_annotations`,
:mod:`~deep_events_dagster.core.checks_metadata`,
:mod:`~deep_events_dagster.core.checks_ground_truth` (points and lines) and
:mod:`~deep_events_dagster.core.checks_events` (crops, catalog, balance); what they share is in
:mod:`~deep_events_dagster.core.checks_common`. This module gathers them: the assets import the
checks from here.
"""

from __future__ import annotations

from deep_events_dagster.core.checks_annotations import (
    AnnotationBounds,
    FilePoints,
    annotations_inside_movie,
    line_vertices,
    read_points,
)
from deep_events_dagster.core.checks_common import MAX_LISTED
from deep_events_dagster.core.checks_events import (
    CatalogAgreement,
    CropsValidity,
    EventBalance,
    Manifest,
    catalog_matches_folders,
    crops_valid,
    load_manifest,
    positive_negative_ratio,
)
from deep_events_dagster.core.checks_ground_truth import (
    MissingPeak,
    PeakCoverage,
    lines_drawn,
    one_peak_per_point,
)
from deep_events_dagster.core.checks_metadata import (
    BRIGHTFIELD_NAMES,
    DEFAULT_KEYS,
    REQUIRED_KEYS,
    STAIN_KEYS,
    STAIN_OR_LABELS,
    MetadataCompleteness,
    metadata_complete,
)

__all__ = [
    "BRIGHTFIELD_NAMES",
    "DEFAULT_KEYS",
    "MAX_LISTED",
    "REQUIRED_KEYS",
    "STAIN_KEYS",
    "STAIN_OR_LABELS",
    "AnnotationBounds",
    "CatalogAgreement",
    "CropsValidity",
    "EventBalance",
    "FilePoints",
    "Manifest",
    "MetadataCompleteness",
    "MissingPeak",
    "PeakCoverage",
    "annotations_inside_movie",
    "catalog_matches_folders",
    "crops_valid",
    "line_vertices",
    "lines_drawn",
    "load_manifest",
    "metadata_complete",
    "one_peak_per_point",
    "positive_negative_ratio",
    "read_points",
]
