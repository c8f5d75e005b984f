"""The science's settings of deep_events.yaml: ``ingestion:`` (:class:`IngestionParams`) and
``kinds:`` (:func:`kinds_from` reads the section, :func:`resolve_kind` gives one kind's
:class:`KindSettings`), with :data:`DEFAULT_KINDS` and :func:`validation_problems` (a pydantic
error as the messages name the keys).

Each parameter's default is the core function's own; nothing here reads a file or the
environment (``settings.platform`` does, and hands the sections over).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from deep_events_dagster.core.detections import DEFAULT_THRESHOLD
from deep_events_dagster.core.errors import ConfigurationError, MetadataError
from deep_events_dagster.core.ground_truth_render import DEFAULT_CUTOFF, DEFAULT_SIGMA
from deep_events_dagster.core.kinds import (
    DEFAULT_AUTO_NEGATIVES,
    DEFAULT_LINE_WIDTH,
    AnnotationShape,
    KindOptions,
    as_names,
    negatives_count,
)
from deep_events_dagster.core.negatives import DEFAULT_HARD_NEGATIVES
from deep_events_dagster.core.regions import DEFAULT_CROP_SIZE
from deep_events_dagster.core.tracks import (
    DEFAULT_ADD_POST_FRAMES,
    DEFAULT_ADD_PRE_FRAMES,
    DEFAULT_MAX_GAP_FRAMES,
    DEFAULT_MAX_LINK_DISTANCE_PX,
)

# the kinds when deep_events.yaml names none
DEFAULT_KINDS = ("points",)
# Per kind (``kinds: {name: {...}}``) besides the IngestionParams fields
KIND_KEYS = ("annotations", "type", "line_width")
# a kind's ``type:``: the annotation shapes there are, and KindOptions's own default
SHAPES: tuple[str, ...] = get_args(AnnotationShape)
DEFAULT_SHAPE: AnnotationShape = next(
    f.default for f in dataclasses.fields(KindOptions) if f.name == "shape"
)


class IngestionParams(BaseModel):
    """``ingestion:`` of deep_events.yaml (and each ``kinds.<kind>`` override): the science's
    parameters. Each default is the core function's own (``core.events``,
    ``core.ground_truth``, ``core.kinds``); documented in the README and docs/architecture.md.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sigma: float = Field(default=DEFAULT_SIGMA, gt=0)
    gt_cutoff: float = Field(default=DEFAULT_CUTOFF, gt=0, lt=1)
    detection_threshold: float = DEFAULT_THRESHOLD
    crop_size: int = Field(default=DEFAULT_CROP_SIZE, gt=0)
    max_link_distance_px: float = Field(default=DEFAULT_MAX_LINK_DISTANCE_PX, ge=0)
    max_gap_frames: int = Field(default=DEFAULT_MAX_GAP_FRAMES, ge=0)
    add_pre_frames: int = Field(default=DEFAULT_ADD_PRE_FRAMES, ge=0)
    add_post_frames: int = Field(default=DEFAULT_ADD_POST_FRAMES, ge=0)
    auto_negatives: bool | int = DEFAULT_AUTO_NEGATIVES  # or a count 0–4 (up, right, down, left)
    # more negatives per acquisition, at the brightest signal-free places (not in the original)
    hard_negatives: int = DEFAULT_HARD_NEGATIVES
    # the original's settings dict: which movie, channel and label the crops come from
    img_identifier: str = ""
    channel_contrast: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    event_content: str = ""

    @field_validator("channel_contrast", "label", mode="before")
    @classmethod
    def _names(cls, value: Any, info: ValidationInfo) -> tuple[str, ...]:
        if not isinstance(value, str | list | tuple | type(None)):
            raise ValueError(f"{info.field_name} must be a name or a list of names")
        return as_names(value)

    @field_validator("img_identifier", "event_content", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return "" if value is None else str(value)

    @field_validator("hard_negatives", mode="before")
    @classmethod
    def _whole_count(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"hard_negatives must be a whole number ≥ 0, not {value!r}")
        return value

    @field_validator("auto_negatives", mode="before")
    @classmethod
    def _negatives(cls, value: Any) -> bool | int:
        try:
            negatives_count(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return value

    @classmethod
    def read(
        cls,
        values: Mapping[str, Any],
        source: Path,
        where: str,
        base: IngestionParams | None = None,
    ) -> IngestionParams:
        """``base`` (the defaults when None) overridden by ``values``, validated.

        Raises
        ------
        MetadataError
            An unknown key or a bad value, naming ``source`` and ``<where>.<key>``.
        """
        known = cls.model_fields
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise MetadataError(
                source, f"unknown {where} settings {unknown}; known: {sorted(known)}"
            )
        merged = {**(base.model_dump() if base is not None else {}), **values}
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise MetadataError(source, validation_problems(exc, where)) from None


def validation_problems(exc: ValidationError, where: str = "") -> str:
    """A pydantic error as ``<where>.<key>: <problem>`` (a validator's own message, which
    starts with the key, as ``<where>.<message>``), ``;``-separated."""
    prefix = f"{where}." if where else ""
    problems = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
        message = str(error["msg"])
        if error["type"] == "value_error":
            problems.append(f"{prefix}{message.removeprefix('Value error, ')}")
        else:
            problems.append(f"{prefix}{key}: {message}")
    return "; ".join(dict.fromkeys(problems))


def params_from(config: Mapping[str, Any], source: Path) -> IngestionParams:
    """``ingestion:`` of the mapping ``config`` (read from ``source``), validated.

    Raises
    ------
    MetadataError
        Not a mapping, an unknown key or a bad value (naming ``source`` and the key).
    """
    section = config.get("ingestion", {}) or {}
    if not isinstance(section, dict):
        raise MetadataError(source, "'ingestion' must be a mapping")
    return IngestionParams.read(section, source, "ingestion")


class KindSettings(BaseModel):
    """One annotation kind: its extraction choices and its ingestion parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    options: KindOptions
    params: IngestionParams


def resolve_kind(
    kind: str, section: Mapping[str, Any], base: IngestionParams, source: Path
) -> KindSettings:
    """A kind's settings: ``base`` (``ingestion:``) overridden by its ``kinds.<kind>`` section.

    Raises
    ------
    MetadataError
        An unknown key or a bad value (naming ``source`` and the key).
    """
    own = {k: v for k, v in section.items() if k not in KIND_KEYS}
    params = IngestionParams.read(own, source, f"kinds.{kind}", base)
    options = KindOptions(
        annotations=str(section.get("annotations") or kind),
        shape=section.get("type", DEFAULT_SHAPE),
        line_width=float(section.get("line_width", DEFAULT_LINE_WIDTH)),
        img_identifier=params.img_identifier,
        contrasts=params.channel_contrast,
        labels=params.label,
        event_content=params.event_content,
    )
    return KindSettings(name=kind, options=options, params=params)


def kinds_from(
    config: Mapping[str, Any], source: Path, params: IngestionParams
) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """``kinds:`` as names (a list) or a mapping name → per-kind settings, each validated over
    ``params`` (``ingestion:``): the kinds' names and the per-kind sections.

    Raises
    ------
    MetadataError
        A bad section, an unknown key or a bad value (naming ``source`` and the key).
    """
    value = config.get("kinds")
    if not value:
        return DEFAULT_KINDS, {}
    if isinstance(value, list | tuple):
        return tuple(str(k) for k in value), {}
    if not isinstance(value, dict):
        raise MetadataError(source, "'kinds' must be a list of names or a mapping name → settings")
    per_kind: dict[str, dict[str, Any]] = {}
    for name, section in value.items():
        section = section or {}
        if not isinstance(section, dict):
            raise MetadataError(source, f"kinds.{name} must be a mapping of settings")
        unknown = sorted(set(section) - set(KIND_KEYS) - set(IngestionParams.model_fields))
        if unknown:
            raise MetadataError(
                source,
                f"unknown settings {unknown} for kind {name!r}; known: "
                f"{sorted({*KIND_KEYS, *IngestionParams.model_fields})}",
            )
        if section.get("type", DEFAULT_SHAPE) not in SHAPES:
            raise MetadataError(source, f"kinds.{name}.type must be {' or '.join(SHAPES)}")
        own = {k: v for k, v in section.items() if k not in KIND_KEYS}
        IngestionParams.read(own, source, f"kinds.{name}", params)  # validated now
        per_kind[str(name)] = dict(section)
    return tuple(per_kind), per_kind
