"""What one annotation kind extracts: which annotations, which movie, which channel, which label.

The original's event extraction is driven by a settings dict (``img_identifier``,
``channel_contrast``, ``label``, ``add_post_frames``, ``auto_negatives``, …). Here a kind's
:class:`KindOptions` carry the same choices, resolved from ``deep_events.yaml`` (``ingestion:``
for every kind, ``kinds: {name: {...}}`` per kind):

* the annotations are ``<annotations>*.csv`` (default: the kind's own name), so two kinds can
  share one set of annotations — e.g. ``points`` cropped from the fluorescence movie and
  ``bf_points`` from the brightfield movie of the same acquisition;
* the movie is the newest movie file of the folder whose name contains ``img_identifier`` and,
  for a ``channel_contrast``, the file-name fragment ``db.yaml`` gives for that contrast
  (``contrast: {brightfield: _BF}``; a plain ``contrast`` naming it means the name itself);
* a ``label`` selects the channel to crop: ``db.yaml``'s ``labels`` list (position = channel) or
  mapping (name → channel index or channel name);
* several contrasts or labels extract the events once per combination (:func:`variants`).

The ground truth always comes from the annotations (drawn at the size of the folder's main
movie); a chosen movie must have the same T, Y, X.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deep_events_dagster.core.acquisitions import is_movie_dir, is_movie_file
from deep_events_dagster.core.errors import ConfigurationError, MetadataError, MovieError
from deep_events_dagster.core.ground_truth_render import DEFAULT_LINE_WIDTH

AnnotationShape = Literal["points", "lines"]
ALL_NEGATIVES = 4  # up, right, down, left
DEFAULT_AUTO_NEGATIVES: bool | int = True  # all four


def negatives_count(value: bool | int) -> int:
    """``auto_negatives`` as a count 0–4 (``True`` = 4, ``False`` = 0), as in the original.

    Raises
    ------
    ConfigurationError
        Not a boolean or an integer in 0–4.
    """
    if isinstance(value, bool):
        return ALL_NEGATIVES if value else 0
    if isinstance(value, int) and 0 <= value <= ALL_NEGATIVES:
        return value
    raise ConfigurationError(
        f"auto_negatives must be true, false or a count 0–4 (up, right, down, left), not {value!r}"
    )


def as_names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """A setting that is a name or a list of names, as a tuple (empty for ``""``/None)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    names = tuple(str(v) for v in value if str(v))
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class KindOptions:
    """The extraction choices of one annotation kind (see the module docstring)."""

    annotations: str
    shape: AnnotationShape = "points"
    line_width: float = DEFAULT_LINE_WIDTH
    img_identifier: str = ""
    contrasts: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    event_content: str = ""

    @property
    def chooses_movie(self) -> bool:
        """True when the crops may come from another movie than the folder's main one."""
        return bool(self.img_identifier or self.contrasts)


@dataclass(frozen=True)
class Variant:
    """One pass of event extraction: a contrast and a label (either may be None)."""

    contrast: str | None = None
    label: str | None = None

    def id_suffix(self) -> str:
        """Mixed into event ids so that each variant's events are distinct ("" for none)."""
        parts = []
        if self.contrast is not None:
            parts.append(f"contrast={self.contrast}")
        if self.label is not None:
            parts.append(f"label={self.label}")
        return "|".join(parts)


def variants(options: KindOptions) -> list[Variant]:
    """Every (contrast, label) combination a kind extracts, in settings order."""
    contrasts: Sequence[str | None] = options.contrasts or (None,)
    labels: Sequence[str | None] = options.labels or (None,)
    return [Variant(c, lab) for c, lab in itertools.product(contrasts, labels)]


def contrast_fragment(metadata: Mapping[str, Any], contrast: str, *, source: Path) -> str:
    """The file-name fragment of ``contrast`` from ``db.yaml``'s ``contrast``.

    Raises
    ------
    MetadataError
        ``db.yaml`` (``source``) does not name that contrast.
    """
    value = metadata.get("contrast")
    if isinstance(value, Mapping):
        if contrast in value:
            fragment = value[contrast]
            return "" if fragment is None else str(fragment)
        known = ", ".join(map(str, value)) or "none"
        raise MetadataError(
            source, f"channel_contrast {contrast!r} is not in contrast: {{{known}}}"
        )
    names = [value] if isinstance(value, str) else list(value or [])
    if contrast in [str(n) for n in names]:
        return contrast
    raise MetadataError(
        source,
        f"channel_contrast {contrast!r} needs contrast: {{{contrast}: <file-name fragment>}} "
        f"(in a db_manual.yaml); db.yaml has contrast: {value!r}",
    )


def choose_movie(
    folder: Path,
    *,
    img_identifier: str = "",
    fragment: str = "",
) -> Path:
    """The newest movie of ``folder`` whose name contains ``img_identifier`` and ``fragment``.

    Raises
    ------
    MovieError
        No movie of the folder matches (the message lists the movies there).
    """
    movies = (
        [
            p
            for p in folder.iterdir()
            if is_movie_file(p.name) or (is_movie_dir(p.name) and p.is_dir())
        ]
        if folder.is_dir()
        else []
    )
    matching = [p for p in movies if img_identifier in p.name and fragment in p.name]
    if not matching:
        wanted = " and ".join(repr(s) for s in (img_identifier, fragment) if s)
        present = ", ".join(sorted(p.name for p in movies)) or "none"
        raise MovieError(folder, f"no movie whose name contains {wanted} (movies: {present})")
    return max(matching, key=lambda p: (p.stat().st_mtime, p.name))


def label_channel(
    metadata: Mapping[str, Any],
    label: str,
    *,
    channel_names: Sequence[str] = (),
    n_channels: int,
    source: Path,
) -> int:
    """The channel index of ``label`` from ``db.yaml``'s ``labels`` (list or mapping).

    Raises
    ------
    MetadataError
        The label is not there, or names a channel the movie does not have.
    """
    labels = metadata.get("labels")
    channel: Any
    if isinstance(labels, Mapping):
        if label not in labels:
            known = ", ".join(map(str, labels)) or "none"
            raise MetadataError(source, f"label {label!r} is not in labels: {{{known}}}")
        channel = labels[label]
        if isinstance(channel, str) and not channel.isdigit():
            if channel not in channel_names:
                raise MetadataError(
                    source,
                    f"labels[{label}] = {channel!r} is not a channel of the movie "
                    f"({', '.join(channel_names) or 'no channel names'})",
                )
            channel = list(channel_names).index(channel)
        channel = int(channel)
    else:
        names = [labels] if isinstance(labels, str) else [str(n) for n in (labels or [])]
        if label not in names:
            raise MetadataError(
                source, f"label {label!r} is not in labels: {names!r} (its position is the channel)"
            )
        channel = names.index(label)
    if not 0 <= channel < max(n_channels, 1):
        raise MetadataError(
            source,
            f"label {label!r} is channel {channel}, but the movie has {n_channels} channel(s)",
        )
    return channel
