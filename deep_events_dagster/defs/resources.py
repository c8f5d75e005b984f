"""Dagster resources shared by both packages: ingestion settings and the event catalog."""

from pathlib import Path
from typing import Any

import dagster as dg

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.core.ingest import AcquisitionRef
from deep_events_dagster.core.kinds import negatives_count
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import Vocabulary, load_vocabulary
from deep_events_dagster.settings import CONFIG_FILE, IngestionParams, KindSettings, resolve_kind

_DEFAULTS = IngestionParams()


class IngestionResource(dg.ConfigurableResource):
    """Where the data is, where derived files go, and the science's parameters."""

    home: str
    roots: list[str] = []  # noqa: RUF012 (pydantic copies defaults)
    output_root: str | None = None
    sigma: float = _DEFAULTS.sigma
    gt_cutoff: float = _DEFAULTS.gt_cutoff
    detection_threshold: float = _DEFAULTS.detection_threshold
    crop_size: int = _DEFAULTS.crop_size
    max_link_distance_px: float = _DEFAULTS.max_link_distance_px
    max_gap_frames: int = _DEFAULTS.max_gap_frames
    add_pre_frames: int = _DEFAULTS.add_pre_frames
    add_post_frames: int = _DEFAULTS.add_post_frames
    auto_negatives: int = 4  # a count 0–4 (up, right, down, left); true in deep_events.yaml = 4
    hard_negatives: int = _DEFAULTS.hard_negatives
    img_identifier: str = ""
    channel_contrast: list[str] = []  # noqa: RUF012
    label: list[str] = []  # noqa: RUF012
    event_content: str = ""
    # kinds: {name: {...}} of deep_events.yaml (annotations, type, line_width, overrides)
    kind_config: dict[str, dict[str, Any]] = {}  # noqa: RUF012

    def layout(self) -> Layout:
        """Derived-file layout (original layout, or the ``output_root`` mirror)."""
        return Layout(output_root=Path(self.output_root) if self.output_root else None)

    def vocabulary(self) -> Vocabulary:
        """Packaged folder-name vocabulary, extended by ``<home>/keys.yaml`` when present."""
        return load_vocabulary(Path(self.home) / "keys.yaml")

    def acquisition(self, partition_key: str) -> AcquisitionRef:
        """The acquisition behind a partition key."""
        return AcquisitionRef.from_key(partition_key, self.roots)

    def kind(self, kind: str) -> KindSettings:
        """A kind's extraction choices and parameters (``ingestion:``, then ``kinds.<kind>``)."""
        base = IngestionParams(
            sigma=self.sigma,
            gt_cutoff=self.gt_cutoff,
            detection_threshold=self.detection_threshold,
            crop_size=self.crop_size,
            max_link_distance_px=self.max_link_distance_px,
            max_gap_frames=self.max_gap_frames,
            add_pre_frames=self.add_pre_frames,
            add_post_frames=self.add_post_frames,
            auto_negatives=self.auto_negatives,
            hard_negatives=self.hard_negatives,
            img_identifier=self.img_identifier,
            channel_contrast=tuple(self.channel_contrast),
            label=tuple(self.label),
            event_content=self.event_content,
        )
        source = Path(self.home) / CONFIG_FILE
        return resolve_kind(kind, self.kind_config.get(kind, {}), base, source)

    def event_params(self, kind: str) -> dict:
        """Keyword arguments of :func:`deep_events_dagster.core.ingest.extract_events` for a
        kind (its parameters and its extraction choices)."""
        resolved = self.kind(kind)
        params = resolved.params
        return {
            "crop_size": params.crop_size,
            "detection_threshold": params.detection_threshold,
            "max_link_distance_px": params.max_link_distance_px,
            "max_gap_frames": params.max_gap_frames,
            "add_pre_frames": params.add_pre_frames,
            "add_post_frames": params.add_post_frames,
            "auto_negatives": negatives_count(params.auto_negatives),
            "hard_negatives": params.hard_negatives,
            "options": resolved.options,
        }


class CatalogResource(dg.ConfigurableResource):
    """The event catalog: a ``mongodb://`` URI, or empty for the embedded on-disk catalog.

    Give a URI with a password through ``EnvVar`` (``DEEP_EVENTS_CATALOG_URI``): Dagster then
    shows the variable's name, never its value.
    """

    home: str
    uri: str = ""
    # Steps run on Celery workers: an embedded catalog must stay on one host (cluster.py)
    single_host: bool = False

    def open(self) -> EventCatalog:
        """Open the catalog (close it when done)."""
        if self.single_host:
            from deep_events_dagster.cluster import ClusterError, check_single_host_catalog

            folder = EventCatalog.embedded_folder(self.uri or None, home=Path(self.home))
            if folder is not None:
                try:
                    check_single_host_catalog(folder)
                except ClusterError as exc:
                    raise dg.Failure(description=str(exc), allow_retries=False) from exc
        return EventCatalog.open(self.uri or None, home=Path(self.home))
