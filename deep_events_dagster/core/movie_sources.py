"""Where a kind's events are cropped from: the movie and channel of each variant of a kind
(:class:`MovieSource`, :func:`movie_sources`; the choices are ``core.kinds``') and the movie's
channel names (:func:`channel_names`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deep_events_dagster.core.acquisition_ref import AcquisitionRef
from deep_events_dagster.core.errors import MovieError
from deep_events_dagster.core.kinds import (
    KindOptions,
    Variant,
    choose_movie,
    contrast_fragment,
    label_channel,
    variants,
)
from deep_events_dagster.core.ome import MovieInfo, read_movie_info


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
    """The movie's channel names from its OME metadata.

    Parameters
    ----------
    info
        The movie's header.

    Returns
    -------
    list of str
        ``Channel/@Name`` of each channel (``""`` for a channel without one; empty if none).
    """

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

    Parameters
    ----------
    ref
        The acquisition.
    metadata
        Its ``db.yaml`` (contrasts and labels name movies and channels).
    main
        The header of the acquisition's movie (the annotations' movie).
    options
        The kind's choices (``core.kinds``).
    db_yaml
        The ``db.yaml`` path, named by errors.

    Returns
    -------
    list of MovieSource
        One per variant (``core.kinds.variants``), in order.

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
