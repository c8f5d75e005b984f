"""The ingestion pipeline of one acquisition, defined once for the Dagster assets and for
:func:`ingest_acquisition` (tests, benchmarks, the learning problem).

:class:`KindPlan` holds one annotation kind's settings as the steps read them: its extraction
choices (``core.kinds.KindOptions``) and its ingestion parameters, named as the fields of
``settings.ingestion.IngestionParams`` (:data:`STEP_PARAMETERS`). :class:`IngestionPipeline` has one
method per step (movie, metadata, a kind's ground truth, its event crops, its catalog
documents); each derives the step's arguments from the plan, here and nowhere else. Each
Dagster asset calls one method; :meth:`IngestionPipeline.run` calls them all in order and hands
each step what the previous ones read (movie header, ``db.yaml``, annotations).

``core`` does not import ``settings``: :meth:`KindPlan.from_settings` reads the parameters of a
``settings.ingestion.KindSettings`` by name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deep_events_dagster.core.acquisition_ref import AcquisitionRef
from deep_events_dagster.core.events_manifest import event_documents
from deep_events_dagster.core.ingest import (
    EventsStep,
    GroundTruthStep,
    MovieStep,
    extract_events,
    inspect_movie,
    make_ground_truth,
    make_metadata,
)
from deep_events_dagster.core.kinds import KindOptions
from deep_events_dagster.core.layout import Layout, event_data_name
from deep_events_dagster.core.metadata import Vocabulary, read_db_yaml
from deep_events_dagster.core.ome import MovieInfo

# The ingestion parameters (``settings.ingestion.IngestionParams`` fields) each step takes,
# under the same names; the settings' other fields are a kind's extraction choices
# (``KindOptions``).
GROUND_TRUTH_PARAMETERS = ("sigma", "gt_cutoff")
EVENT_PARAMETERS = (
    "crop_size",
    "detection_threshold",
    "max_link_distance_px",
    "max_gap_frames",
    "add_pre_frames",
    "add_post_frames",
    "auto_negatives",
    "hard_negatives",
)
STEP_PARAMETERS = GROUND_TRUTH_PARAMETERS + EVENT_PARAMETERS


class PartitionSink(Protocol):
    """Where event documents go (the catalog); kept abstract so ``core`` needs no database."""

    def replace_partition(self, collection: str, partition_key: str, documents: list[dict]): ...


@dataclass(frozen=True)
class KindPlan:
    """One annotation kind as the ingestion steps read it.

    ``params`` maps :data:`STEP_PARAMETERS` names to values; a name left out gets the step's
    own default, which is also the settings' default (``settings.ingestion.IngestionParams``
    declares its defaults as the core functions' constants).

    Raises
    ------
    TypeError
        ``params`` names something that is not one of :data:`STEP_PARAMETERS`.
    """

    name: str
    options: KindOptions
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.params) - set(STEP_PARAMETERS))
        if unknown:
            raise TypeError(
                f"unknown ingestion parameters {unknown} for kind {self.name!r}; "
                f"known: {list(STEP_PARAMETERS)}"
            )

    @classmethod
    def from_settings(cls, settings: Any) -> KindPlan:
        """The plan of a ``settings.ingestion.KindSettings`` (its ``name``, ``options`` and the
        :data:`STEP_PARAMETERS` attributes of its ``params``).

        Parameters
        ----------
        settings
            A kind's validated settings (``settings.ingestion.resolve_kind``).

        Returns
        -------
        KindPlan
        """
        params = {name: getattr(settings.params, name) for name in STEP_PARAMETERS}
        return cls(name=settings.name, options=settings.options, params=params)

    def ground_truth_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~deep_events_dagster.core.ingest.make_ground_truth`."""
        own = {k: self.params[k] for k in GROUND_TRUTH_PARAMETERS if k in self.params}
        return {**own, "options": self.options}

    def event_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~deep_events_dagster.core.ingest.extract_events`."""
        own = {k: self.params[k] for k in EVENT_PARAMETERS if k in self.params}
        return {**own, "options": self.options}


@dataclass(frozen=True)
class IngestionReport:
    """What :func:`ingest_acquisition` made, and how long each step took."""

    key: str
    metadata_path: Path
    ground_truth: dict[str, GroundTruthStep]
    events: dict[str, EventsStep]
    seconds: dict[str, float]


@dataclass(frozen=True)
class IngestionPipeline:
    """The ingestion steps with their arguments from the settings.

    ``layout`` says where derived files go; ``vocabulary`` (folder names → metadata) is needed
    by the metadata step only; ``kinds`` are the plans of the kinds whose steps are run.
    """

    layout: Layout
    kinds: tuple[KindPlan, ...] = ()
    vocabulary: Vocabulary | None = None

    def kind(self, name: str) -> KindPlan:
        """The plan of kind ``name``.

        Raises
        ------
        KeyError
            The pipeline has no such kind.
        """
        for plan in self.kinds:
            if plan.name == name:
                return plan
        raise KeyError(f"no kind {name!r} in this pipeline ({[p.name for p in self.kinds]})")

    def movie(self, ref: AcquisitionRef) -> MovieStep:
        """Check the acquisition's movie is complete and fingerprint it (``raw_movie``)."""
        return inspect_movie(ref)

    def metadata(
        self, ref: AcquisitionRef, *, info: MovieInfo | None = None
    ) -> tuple[dict[str, Any], Path]:
        """Write ``db.yaml`` (``acquisition_metadata``); ``info``: the movie's header if read.

        Raises
        ------
        ValueError
            The pipeline was built without a vocabulary.
        """
        if self.vocabulary is None:
            raise ValueError("the metadata step needs the pipeline's vocabulary")
        return make_metadata(ref, self.layout, self.vocabulary, info=info)

    def ground_truth(
        self,
        ref: AcquisitionRef,
        kind: str,
        *,
        metadata: dict[str, Any] | None = None,
        info: MovieInfo | None = None,
    ) -> GroundTruthStep:
        """Write the kind's ground truth (``<kind>/ground_truth``); ``metadata`` and ``info``:
        ``db.yaml`` and the movie's header if read."""
        arguments = self.kind(kind).ground_truth_arguments()
        return make_ground_truth(ref, kind, self.layout, metadata=metadata, info=info, **arguments)

    def event_crops(
        self,
        ref: AcquisitionRef,
        kind: str,
        *,
        progress: Callable[[str], None] | None = None,
        write_workers: int | None = None,
        metadata: dict[str, Any] | None = None,
        info: MovieInfo | None = None,
        annotations: Sequence[Any] | None = None,
    ) -> EventsStep:
        """Detect and crop the kind's events (``<kind>/event_crops``); ``metadata``, ``info``
        and ``annotations``: ``db.yaml``, the movie's header and the kind's annotations if
        read."""
        arguments = self.kind(kind).event_arguments()
        return extract_events(
            ref,
            kind,
            self.layout,
            progress=progress,
            write_workers=write_workers,
            metadata=metadata,
            info=info,
            annotations=annotations,
            **arguments,
        )

    def catalog_documents(self, ref: AcquisitionRef, kind: str) -> list[dict[str, Any]]:
        """The catalog documents of the kind's events (``<kind>/event_catalog``).

        Raises
        ------
        FileNotFoundError
            The kind's events manifest is missing (event crops were never made).
        """
        return event_documents(self.layout.events_manifest(ref.folder, ref.root, kind))

    def run(
        self,
        ref: AcquisitionRef,
        *,
        sink: PartitionSink | None = None,
        collection_for: Callable[[str], str] = event_data_name,
    ) -> IngestionReport:
        """Every step for one acquisition, in the assets' order, each kind's documents
        replacing the acquisition's in ``sink`` (when given) under ``collection_for(kind)``.

        Each step gets what an earlier one read: the movie's header, ``db.yaml`` (read once,
        after it is written) and the kind's annotations (from its ground truth).
        """
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        info = self.movie(ref).info
        _, metadata_path = self.metadata(ref, info=info)
        metadata = read_db_yaml(metadata_path)
        seconds["metadata"] = time.perf_counter() - start
        gts: dict[str, GroundTruthStep] = {}
        evs: dict[str, EventsStep] = {}
        for plan in self.kinds:
            kind = plan.name
            t0 = time.perf_counter()
            gts[kind] = self.ground_truth(ref, kind, metadata=metadata, info=info)
            t1 = time.perf_counter()
            evs[kind] = self.event_crops(
                ref, kind, metadata=metadata, info=info, annotations=gts[kind].annotations
            )
            t2 = time.perf_counter()
            if sink is not None:
                documents = self.catalog_documents(ref, kind)
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


def ingest_acquisition(
    ref: AcquisitionRef,
    *,
    kinds: Sequence[str],
    layout: Layout,
    vocabulary: Vocabulary,
    sink: PartitionSink | None = None,
    collection_for: Callable[[str], str] = event_data_name,
    kind_options: Mapping[str, KindOptions] | None = None,
    **params: Any,
) -> IngestionReport:
    """Run every ingestion step for one acquisition (what the Dagster assets do, in order,
    through the same :class:`IngestionPipeline`).

    Parameters
    ----------
    ref
        The acquisition.
    kinds
        The annotation kinds to ingest, in order.
    layout, vocabulary
        Where derived files go; folder names → metadata.
    sink, collection_for
        Where each kind's documents go (none: the catalog step is skipped), and the
        collection of a kind.
    kind_options
        A kind's annotations, movie and channel choices (``core.kinds``); default: its own
        annotations, points.
    **params
        Ingestion parameters for every kind, named as ``settings.ingestion.IngestionParams`` fields
        (:data:`STEP_PARAMETERS`); the others get the settings' defaults.

    Returns
    -------
    IngestionReport

    Raises
    ------
    TypeError
        A parameter that is not one of :data:`STEP_PARAMETERS`.
    """
    kind_options = kind_options or {}
    plans = tuple(
        KindPlan(kind, kind_options.get(kind) or KindOptions(annotations=kind), params)
        for kind in kinds
    )
    pipeline = IngestionPipeline(layout=layout, kinds=plans, vocabulary=vocabulary)
    return pipeline.run(ref, sink=sink, collection_for=collection_for)
