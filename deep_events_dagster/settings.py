"""Platform settings: the home folder, its ``deep_events.yaml`` and environment overrides.

Nothing here reads the environment at import time; :func:`load_settings` does, when called.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from deep_events_dagster.core.detections import DEFAULT_THRESHOLD
from deep_events_dagster.core.errors import ConfigurationError, MetadataError
from deep_events_dagster.core.ground_truth_render import DEFAULT_CUTOFF, DEFAULT_SIGMA
from deep_events_dagster.core.kinds import (
    DEFAULT_AUTO_NEGATIVES,
    DEFAULT_LINE_WIDTH,
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

HOME_ENV = "DEEP_EVENTS_HOME"
ROOTS_ENV = "DEEP_EVENTS_ROOTS"
KINDS_ENV = "DEEP_EVENTS_KINDS"
OUTPUT_ROOT_ENV = "DEEP_EVENTS_OUTPUT_ROOT"
CATALOG_URI_ENV = "DEEP_EVENTS_CATALOG_URI"
QUIET_ENV = "DEEP_EVENTS_QUIET_SECONDS"
CLUSTER_STORAGE_ENV = "DEEP_EVENTS_CLUSTER_STORAGE"
CLUSTER_BROKER_ENV = "DEEP_EVENTS_CLUSTER_BROKER"
CLUSTER_BACKEND_ENV = "DEEP_EVENTS_CLUSTER_BACKEND"
CONFIG_FILE = "deep_events.yaml"
DEFAULT_HOME = ".deep_events"
DEFAULT_KINDS = ("points",)


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
            raise MetadataError(source, _problems(exc, where)) from None


def _problems(exc: ValidationError, where: str = "") -> str:
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


# Per kind (``kinds: {name: {...}}``) besides the IngestionParams fields
KIND_KEYS = ("annotations", "type", "line_width")


def redact_uri(uri: str) -> str:
    """``uri`` with its password replaced by ``***`` (for logs, messages and the UI)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return "<unparseable URI>"
    if not password:
        return uri
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


STORAGE_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")


def storage_driver_url(uri: str) -> str:
    """``uri`` naming the psycopg2 driver: SQLAlchemy 2.1 reads a bare ``postgresql://`` as
    psycopg 3, which dagster-postgres does not install."""
    scheme, sep, rest = uri.partition("://")
    return f"postgresql+psycopg2://{rest}" if sep and scheme in STORAGE_SCHEMES else uri


def libpq_url(uri: str) -> str:
    """``uri`` as libpq (psycopg2.connect) reads it: without a SQLAlchemy driver name."""
    scheme, sep, rest = uri.partition("://")
    return f"postgresql://{rest}" if sep and scheme in STORAGE_SCHEMES else uri


BROKER_SCHEMES = ("pyamqp", "amqp", "redis", "rediss")


class QueueNames(BaseModel):
    """Celery queue names of the two kinds of work (change them to share one broker between
    several homes, or per test)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: str = "default"
    gpu: str = "gpu"

    @field_validator("default", "gpu")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in value):
            raise ValueError(f"queue name {value!r} must be ASCII letters, digits, '-', '_' or '.'")
        return value


class ClusterSettings(BaseModel):
    """``cluster:`` of deep_events.yaml: Dagster on PostgreSQL, steps on Celery workers.

    Empty (the default): embedded SQLite storage and in-process runs on this machine.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    storage: str = ""
    broker: str = ""
    backend: str = ""
    queues: QueueNames = QueueNames()

    @field_validator("storage")
    @classmethod
    def _storage_is_postgres(cls, value: str) -> str:
        if value and value.split("://", 1)[0] not in STORAGE_SCHEMES:
            raise ValueError(
                f"storage must be a postgresql:// URI (Dagster's run and event storage), "
                f"not {redact_uri(value)!r}"
            )
        return value

    @field_validator("broker")
    @classmethod
    def _broker_is_known(cls, value: str) -> str:
        if value and value.split("://", 1)[0] not in BROKER_SCHEMES:
            raise ValueError(
                f"broker must be a RabbitMQ (pyamqp://, amqp://) or Redis (redis://) URI, "
                f"not {redact_uri(value)!r}"
            )
        return value

    @field_validator("backend")
    @classmethod
    def _backend_is_uri(cls, value: str) -> str:
        if value and "://" not in value:
            raise ValueError(f"backend must be a URI such as redis://host:6379/0, not {value!r}")
        return value

    @property
    def enabled(self) -> bool:
        """PostgreSQL storage is configured: runs go through the instance's run queue."""
        return bool(self.storage)

    @property
    def distributed(self) -> bool:
        """A Celery broker is configured: steps run on ``deep-events worker`` processes."""
        return bool(self.broker)

    def environment(self) -> dict[str, str]:
        """The ``DEEP_EVENTS_CLUSTER_*`` variables through which Dagster reads the URIs (so
        that their passwords are never written into run config or instance files)."""
        values = {
            CLUSTER_STORAGE_ENV: storage_driver_url(self.storage),
            CLUSTER_BROKER_ENV: self.broker,
            CLUSTER_BACKEND_ENV: self.backend,
        }
        return {name: value for name, value in values.items() if value}

    def describe(self) -> str:
        """One line naming storage, broker and backend with passwords hidden."""
        if not self.enabled:
            return "embedded SQLite storage, in-process runs"
        parts = [f"storage {redact_uri(self.storage)}"]
        if self.broker:
            parts.append(f"broker {redact_uri(self.broker)}")
            parts.append(f"queues {self.queues.default}, {self.queues.gpu}")
        if self.backend:
            parts.append(f"backend {redact_uri(self.backend)}")
        return "; ".join(parts)


def _cluster_from(
    config: Mapping[str, Any], env: Mapping[str, str], source: Path
) -> ClusterSettings:
    section = config.get("cluster") or {}
    if not isinstance(section, dict):
        raise MetadataError(
            source, "'cluster' must be a mapping (storage, broker, backend, queues)"
        )
    values = dict(section)
    for key, name in (
        ("storage", CLUSTER_STORAGE_ENV),
        ("broker", CLUSTER_BROKER_ENV),
        ("backend", CLUSTER_BACKEND_ENV),
    ):
        if env.get(name):
            values[key] = env[name]
    try:
        cluster = ClusterSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"cluster.{'.'.join(str(p) for p in error['loc'])}: "
            + str(error["msg"]).removeprefix("Value error, ")
            for error in exc.errors()
        )
        raise MetadataError(source, problems) from None
    if cluster.broker and not cluster.storage:
        raise MetadataError(
            source,
            "cluster.broker needs cluster.storage: Celery workers read and write the runs in "
            "PostgreSQL (add storage: postgresql://user@host:5432/deep_events)",
        )
    return cluster


class PlatformSettings(BaseModel):
    """Everything a deep-events process needs to know about where things are: the home's
    ``deep_events.yaml`` (:data:`CONFIG_KEYS`), the environment and the command line, validated
    once by :func:`load_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path
    kinds: tuple[str, ...] = DEFAULT_KINDS
    roots: tuple[Path, ...] = ()
    output_root: Path | None = None
    catalog_uri_from_env: bool = False
    catalog_uri: str = Field(default="", repr=False)
    quiet_seconds: float = Field(default=30.0, ge=0)
    sensor_interval_seconds: int = Field(default=5, gt=0)
    training_dir: Path | None = None
    device: str = "auto"
    params: IngestionParams = IngestionParams()
    cluster: ClusterSettings = Field(default=ClusterSettings(), repr=False)
    # per-kind settings from a ``kinds:`` mapping (see kind_settings)
    kind_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # folders of original event folders, imported by the legacy_events asset (under the home)
    legacy_folders: tuple[Path, ...] = ()

    def kind_settings(self, kind: str) -> KindSettings:
        """A kind's extraction choices and parameters: ``ingestion:``, then ``kinds.<kind>``."""
        return resolve_kind(kind, self.kind_config.get(kind, {}), self.params, self.config_file)

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance folder under the home."""
        return self.home / "dagster"

    @property
    def training_settings_dir(self) -> Path:
        """Folder of training settings files (``training_dir`` in deep_events.yaml)."""
        return self.training_dir or self.home / "training"

    @property
    def keys_file(self) -> Path:
        """The user's folder-name vocabulary extension (used when present)."""
        return self.home / "keys.yaml"

    @property
    def config_file(self) -> Path:
        """The home's ``deep_events.yaml``."""
        return self.home / CONFIG_FILE


def resolve_home(home: str | Path | None = None) -> Path:
    """``--home`` if given, else ``$DEEP_EVENTS_HOME``, else ``./.deep_events`` (absolute)."""
    chosen = home or os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(os.path.abspath(os.path.expanduser(str(chosen))))


def read_config(path: Path) -> dict[str, Any]:
    """``deep_events.yaml`` as a mapping (empty when missing or empty).

    Raises
    ------
    MetadataError
        Malformed YAML (on one line), or not a mapping.
    """
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MetadataError(path, f"malformed YAML ({' '.join(str(exc).split())})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MetadataError(path, "must be a mapping")
    return data


# Every top-level key deep_events.yaml may hold (some are read elsewhere: ``deploy`` by
# ``ml.deploy``); anything else is a typo.
CONFIG_KEYS = (
    "kinds",
    "roots",
    "output_root",
    "quiet_seconds",
    "sensor_interval_seconds",
    "training_dir",
    "device",
    "catalog_uri",
    "ingestion",
    "deploy",
    "legacy_folders",
    "cluster",
)


def _check_keys(config: Mapping[str, Any], source: Path) -> None:
    import difflib

    for key in config:
        if key in CONFIG_KEYS:
            continue
        close = difflib.get_close_matches(str(key), CONFIG_KEYS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise MetadataError(
            source, f"unknown setting {key!r}{hint}; known settings: {', '.join(CONFIG_KEYS)}"
        )


def _params_from(config: Mapping[str, Any], source: Path) -> IngestionParams:
    section = config.get("ingestion", {}) or {}
    if not isinstance(section, dict):
        raise MetadataError(source, "'ingestion' must be a mapping")
    return IngestionParams.read(section, source, "ingestion")


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
        shape=section.get("type", "points"),
        line_width=float(section.get("line_width", DEFAULT_LINE_WIDTH)),
        img_identifier=params.img_identifier,
        contrasts=params.channel_contrast,
        labels=params.label,
        event_content=params.event_content,
    )
    return KindSettings(name=kind, options=options, params=params)


class KindSettings(BaseModel):
    """One annotation kind: its extraction choices and its ingestion parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    options: KindOptions
    params: IngestionParams


def _kinds_from(
    config: Mapping[str, Any], source: Path, params: IngestionParams
) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """``kinds:`` as names (a list) or a mapping name → per-kind settings."""
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
        if section.get("type", "points") not in ("points", "lines"):
            raise MetadataError(source, f"kinds.{name}.type must be points or lines")
        own = {k: v for k, v in section.items() if k not in KIND_KEYS}
        IngestionParams.read(own, source, f"kinds.{name}", params)  # validated now
        per_kind[str(name)] = dict(section)
    return tuple(per_kind), per_kind


def _legacy_folders_from(config: Mapping[str, Any], source: Path, home: Path) -> tuple[Path, ...]:
    """``legacy_folders:`` (a folder or a list of folders; relative ones under the home)."""
    value = config.get("legacy_folders")
    if value in (None, "", []):
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise MetadataError(source, "'legacy_folders' must be a folder or a list of folders")
    return tuple(home / Path(i).expanduser() for i in items)


def load_settings(
    home: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> PlatformSettings:
    """Settings from (later wins) defaults, ``<home>/deep_events.yaml``, environment, overrides.

    ``deep_events.yaml`` may hold ``kinds``, ``roots``, ``output_root``, ``quiet_seconds``,
    ``catalog_uri`` and an ``ingestion:`` mapping of :class:`IngestionParams` fields (and the
    other :data:`CONFIG_KEYS`).

    Raises
    ------
    MetadataError
        The file is malformed or holds an unknown key (the message names the file and the key).
    """
    env = os.environ if environ is None else environ
    resolved_home = resolve_home(home if home is not None else env.get(HOME_ENV))
    config_path = resolved_home / CONFIG_FILE
    config = read_config(config_path)
    _check_keys(config, config_path)
    params = _params_from(config, config_path)
    kinds, kind_config = _kinds_from(config, config_path, params)
    values: dict[str, Any] = {
        "home": resolved_home,
        "params": params,
        "cluster": _cluster_from(config, env, config_path),
        "kinds": kinds,
        "kind_config": kind_config,
    }
    for key in ("roots", "output_root", "device", "catalog_uri"):
        if config.get(key):
            values[key] = config[key]
    for key in ("quiet_seconds", "sensor_interval_seconds"):
        if config.get(key) is not None:
            values[key] = config[key]
    if config.get("training_dir"):
        values["training_dir"] = resolved_home / Path(config["training_dir"])  # absolute wins
    values["legacy_folders"] = _legacy_folders_from(config, config_path, resolved_home)
    if env.get(KINDS_ENV):
        values["kinds"] = tuple(k.strip() for k in env[KINDS_ENV].split(",") if k.strip())
    if env.get(ROOTS_ENV):
        values["roots"] = tuple(r for r in env[ROOTS_ENV].split(os.pathsep) if r)
    if env.get(OUTPUT_ROOT_ENV):
        values["output_root"] = env[OUTPUT_ROOT_ENV]
    if env.get(QUIET_ENV):
        values["quiet_seconds"] = env[QUIET_ENV]
    if env.get(CATALOG_URI_ENV):
        values.update(catalog_uri=env[CATALOG_URI_ENV], catalog_uri_from_env=True)
    values.update(overrides)
    try:
        settings = PlatformSettings(**values)
    except ValidationError as exc:
        raise MetadataError(config_path, _problems(exc)) from None
    for kind in settings.kinds:
        if not kind or not all(c.isascii() and (c.isalnum() or c == "_") for c in kind):
            raise ValueError(f"annotation kind {kind!r} must be ASCII letters, digits or '_'")
    return settings
