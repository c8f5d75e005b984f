"""Dagster resources shared by both packages: ingestion settings and the event catalog."""

from pathlib import Path
from typing import Any

import dagster as dg

from deep_events_dagster.catalog import EventCatalog
from deep_events_dagster.core.acquisition_ref import AcquisitionRef
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.core.metadata import Vocabulary, load_vocabulary
from deep_events_dagster.core.pipeline import IngestionPipeline, KindPlan
from deep_events_dagster.settings.ingestion import IngestionParams, KindSettings, resolve_kind
from deep_events_dagster.settings.platform import CONFIG_FILE, PlatformSettings


class IngestionResource(dg.ConfigurableResource):
    """Where the data is, where derived files go, and the science's parameters.

    ``params`` and ``kind_config`` are the ``ingestion:`` and ``kinds:`` sections of
    ``deep_events.yaml`` as plain config (the UI shows them with the run); they are validated
    by ``settings.ingestion.IngestionParams`` / ``settings.ingestion.resolve_kind`` when read,
    the only place their keys and defaults are declared.
    """

    home: str
    roots: list[str] = []  # noqa: RUF012 (pydantic copies defaults)
    output_root: str | None = None
    # ingestion: of deep_events.yaml (settings.ingestion.IngestionParams fields; missing: defaults)
    params: dict[str, Any] = {}  # noqa: RUF012
    # kinds: {name: {...}} of deep_events.yaml (annotations, type, line_width, overrides)
    kind_config: dict[str, dict[str, Any]] = {}  # noqa: RUF012

    @classmethod
    def from_settings(
        cls, settings: PlatformSettings, home: str | dg.EnvVar | None = None
    ) -> "IngestionResource":
        """The resource of the given settings (``home`` instead of their home when given)."""
        return cls(
            home=str(settings.home) if home is None else home,
            roots=[str(r) for r in settings.roots],
            output_root=str(settings.output_root) if settings.output_root else None,
            params=settings.params.model_dump(mode="json"),
            kind_config={k: dict(v) for k, v in settings.kind_config.items()},
        )

    @property
    def config_file(self) -> Path:
        """The home's ``deep_events.yaml`` (named by messages about a bad parameter)."""
        return Path(self.home) / CONFIG_FILE

    def layout(self) -> Layout:
        """Derived-file layout (original layout, or the ``output_root`` mirror)."""
        return Layout(output_root=Path(self.output_root) if self.output_root else None)

    def vocabulary(self) -> Vocabulary:
        """Packaged folder-name vocabulary, extended by ``<home>/keys.yaml`` when present."""
        return load_vocabulary(Path(self.home) / "keys.yaml")

    def acquisition(self, partition_key: str) -> AcquisitionRef:
        """The acquisition behind a partition key."""
        return AcquisitionRef.from_key(partition_key, self.roots)

    def ingestion_params(self) -> IngestionParams:
        """``params`` validated (``ingestion:`` of deep_events.yaml)."""
        return IngestionParams.read(self.params, self.config_file, "ingestion")

    def kind(self, kind: str) -> KindSettings:
        """A kind's extraction choices and parameters (``ingestion:``, then ``kinds.<kind>``)."""
        section = self.kind_config.get(kind, {})
        return resolve_kind(kind, section, self.ingestion_params(), self.config_file)

    def pipeline(
        self, kind: KindSettings | None = None, *, with_vocabulary: bool = False
    ) -> IngestionPipeline:
        """The ingestion pipeline (``core.pipeline``) a step runs: with a kind's settings (from
        :meth:`kind`), that kind's steps; ``with_vocabulary`` for the metadata step (the
        vocabulary is loaded now)."""
        return IngestionPipeline(
            layout=self.layout(),
            kinds=(KindPlan.from_settings(kind),) if kind is not None else (),
            vocabulary=self.vocabulary() if with_vocabulary else None,
        )


class CatalogResource(dg.ConfigurableResource):
    """The event catalog: a ``mongodb://`` URI, or empty for the embedded on-disk catalog.

    Give a URI with a password through ``EnvVar`` (``DEEP_EVENTS_CATALOG_URI``): Dagster then
    shows the variable's name, never its value.
    """

    home: str
    uri: str = ""
    # Steps run on Celery workers: an embedded catalog must stay on one host (cluster/checks.py)
    single_host: bool = False

    def open(self) -> EventCatalog:
        """Open the catalog (close it when done)."""
        if self.single_host:
            from deep_events_dagster.cluster.checks import ClusterError, check_single_host_catalog

            folder = EventCatalog.embedded_folder(self.uri or None, home=Path(self.home))
            if folder is not None:
                try:
                    check_single_host_catalog(folder)
                except ClusterError as exc:
                    raise dg.Failure(description=str(exc), allow_retries=False) from exc
        return EventCatalog.open(self.uri or None, home=Path(self.home))
