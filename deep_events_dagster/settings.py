"""Platform settings: the home folder, its ``deep_events.yaml`` and environment overrides.

Nothing here reads the environment at import time; :func:`load_settings` does, when called.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from deep_events_dagster.core.errors import MetadataError

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


@dataclass(frozen=True)
class IngestionParams:
    """Parameters of the science; defaults as documented in the README and docs/architecture.md."""

    sigma: float = 5.0
    gt_cutoff: float = 0.1
    detection_threshold: float = 0.5
    crop_size: int = 256
    max_link_distance_px: float = 24.0
    max_gap_frames: int = 2
    add_pre_frames: int = 0
    add_post_frames: int = 5
    auto_negatives: bool | int = True  # or a count 0–4 (up, right, down, left)
    # more negatives per acquisition, at the brightest signal-free places (not in the original)
    hard_negatives: int = 0
    # the original's settings dict: which movie, channel and label the crops come from
    img_identifier: str = ""
    channel_contrast: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    event_content: str = ""


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


@dataclass(frozen=True)
class PlatformSettings:
    """Everything a deep-events process needs to know about where things are."""

    home: Path
    kinds: tuple[str, ...] = DEFAULT_KINDS
    roots: tuple[Path, ...] = ()
    output_root: Path | None = None
    catalog_uri_from_env: bool = False
    catalog_uri: str = field(default="", repr=False)
    quiet_seconds: float = 30.0
    sensor_interval_seconds: int = 5
    training_dir: Path | None = None
    device: str = "auto"
    params: IngestionParams = IngestionParams()
    cluster: ClusterSettings = field(default=ClusterSettings(), repr=False)
    # per-kind settings from a ``kinds:`` mapping (see kind_settings)
    kind_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

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
# ``ml.deploy``, ``legacy_folders`` by ``defs.ingestion.legacy``); anything else is a typo.
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


def _params(
    section: Mapping[str, Any], source: Path, where: str, base: IngestionParams
) -> IngestionParams:
    from deep_events_dagster.core.errors import ConfigurationError
    from deep_events_dagster.core.kinds import as_names, negatives_count

    known = IngestionParams.__dataclass_fields__
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise MetadataError(source, f"unknown {where} settings {unknown}; known: {sorted(known)}")
    values = dict(section)
    for key in ("channel_contrast", "label"):
        if key in values:
            if not isinstance(values[key], str | list | tuple | type(None)):
                raise MetadataError(source, f"{where}.{key} must be a name or a list of names")
            values[key] = as_names(values[key])
    for key in ("img_identifier", "event_content"):
        if key in values:
            values[key] = "" if values[key] is None else str(values[key])
    if "hard_negatives" in values:
        count = values["hard_negatives"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise MetadataError(
                source, f"{where}.hard_negatives must be a whole number ≥ 0, not {count!r}"
            )
    if "auto_negatives" in values:
        try:
            negatives_count(values["auto_negatives"])
        except ConfigurationError as exc:
            raise MetadataError(source, f"{where}.{exc}") from None
    return replace(base, **values)


def _params_from(config: Mapping[str, Any], source: Path) -> IngestionParams:
    section = config.get("ingestion", {}) or {}
    if not isinstance(section, dict):
        raise MetadataError(source, "'ingestion' must be a mapping")
    return _params(section, source, "ingestion", IngestionParams())


def resolve_kind(
    kind: str, section: Mapping[str, Any], base: IngestionParams, source: Path
) -> KindSettings:
    """A kind's settings: ``base`` (``ingestion:``) overridden by its ``kinds.<kind>`` section.

    Raises
    ------
    MetadataError
        An unknown key or a bad value (naming ``source`` and the key).
    """
    from deep_events_dagster.core.kinds import DEFAULT_LINE_WIDTH, KindOptions

    own = {k: v for k, v in section.items() if k not in KIND_KEYS}
    params = _params(own, source, f"kinds.{kind}", base)
    options = KindOptions(
        annotations=str(section.get("annotations") or kind),
        shape=section.get("type", "points"),
        line_width=float(section.get("line_width", DEFAULT_LINE_WIDTH)),
        img_identifier=params.img_identifier,
        contrasts=params.channel_contrast,
        labels=params.label,
        event_content=params.event_content,
    )
    return KindSettings(kind, options, params)


@dataclass(frozen=True)
class KindSettings:
    """One annotation kind: its extraction choices and its ingestion parameters."""

    name: str
    options: Any  # core.kinds.KindOptions
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
        unknown = sorted(set(section) - set(KIND_KEYS) - set(IngestionParams.__dataclass_fields__))
        if unknown:
            raise MetadataError(
                source,
                f"unknown settings {unknown} for kind {name!r}; known: "
                f"{sorted({*KIND_KEYS, *IngestionParams.__dataclass_fields__})}",
            )
        if section.get("type", "points") not in ("points", "lines"):
            raise MetadataError(source, f"kinds.{name}.type must be points or lines")
        own = {k: v for k, v in section.items() if k not in KIND_KEYS}
        _params(own, source, f"kinds.{name}", params)  # validated now, applied per kind
        per_kind[str(name)] = dict(section)
    return tuple(per_kind), per_kind


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
    settings = PlatformSettings(
        home=resolved_home,
        params=params,
        cluster=_cluster_from(config, env, config_path),
        kinds=kinds,
        kind_config=kind_config,
    )
    if config.get("roots"):
        settings = replace(settings, roots=tuple(Path(r) for r in config["roots"]))
    if config.get("output_root"):
        settings = replace(settings, output_root=Path(config["output_root"]))
    if config.get("quiet_seconds") is not None:
        settings = replace(settings, quiet_seconds=float(config["quiet_seconds"]))
    if config.get("sensor_interval_seconds") is not None:
        interval = int(config["sensor_interval_seconds"])
        settings = replace(settings, sensor_interval_seconds=interval)
    if config.get("training_dir"):
        training_dir = Path(config["training_dir"])
        if not training_dir.is_absolute():
            training_dir = resolved_home / training_dir
        settings = replace(settings, training_dir=training_dir)
    if config.get("device"):
        settings = replace(settings, device=str(config["device"]))
    if config.get("catalog_uri"):
        settings = replace(settings, catalog_uri=str(config["catalog_uri"]))
    if env.get(KINDS_ENV):
        kinds = tuple(k.strip() for k in env[KINDS_ENV].split(",") if k.strip())
        settings = replace(settings, kinds=kinds)
    if env.get(ROOTS_ENV):
        roots = tuple(Path(r) for r in env[ROOTS_ENV].split(os.pathsep) if r)
        settings = replace(settings, roots=roots)
    if env.get(OUTPUT_ROOT_ENV):
        settings = replace(settings, output_root=Path(env[OUTPUT_ROOT_ENV]))
    if env.get(QUIET_ENV):
        settings = replace(settings, quiet_seconds=float(env[QUIET_ENV]))
    if env.get(CATALOG_URI_ENV):
        settings = replace(settings, catalog_uri=env[CATALOG_URI_ENV], catalog_uri_from_env=True)
    if overrides:
        settings = replace(settings, **overrides)
    for kind in settings.kinds:
        if not kind or not all(c.isascii() and (c.isalnum() or c == "_") for c in kind):
            raise ValueError(f"annotation kind {kind!r} must be ASCII letters, digits or '_'")
    return settings
