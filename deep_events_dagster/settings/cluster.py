"""``cluster:`` of deep_events.yaml (:class:`ClusterSettings`, its :class:`QueueNames`), the
``DEEP_EVENTS_CLUSTER_*`` variables that override it and through which Dagster reads the URIs,
and the URI helpers (:func:`redact_uri`, :func:`storage_driver_url`, :func:`libpq_url`).

:func:`cluster_from` reads the section; ``settings.platform`` calls it with the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from deep_events_dagster.core.errors import MetadataError

CLUSTER_STORAGE_ENV = "DEEP_EVENTS_CLUSTER_STORAGE"
CLUSTER_BROKER_ENV = "DEEP_EVENTS_CLUSTER_BROKER"
CLUSTER_BACKEND_ENV = "DEEP_EVENTS_CLUSTER_BACKEND"


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


def cluster_from(
    config: Mapping[str, Any], env: Mapping[str, str], source: Path
) -> ClusterSettings:
    """``cluster:`` of the mapping ``config`` (read from ``source``), each URI overridden by its
    ``DEEP_EVENTS_CLUSTER_*`` variable in ``env``, validated.

    Raises
    ------
    MetadataError
        A bad section, key or URI, or a broker without storage (naming ``source`` and the key).
    """
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
