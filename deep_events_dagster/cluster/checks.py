"""Start-up checks of a cluster home, with clear errors: PostgreSQL and the broker reachable,
the embedded catalog on a local file system of a single host, the shared paths visible.

The embedded catalog (montydb on sqlite, guarded by ``flock``) is a single-host file: with
Celery workers it is accepted only on a local file system and only from the host that first
used it with a cluster (recorded in ``<catalog>/.cluster_host``); workers on several hosts need a
``mongodb://`` catalog.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.fsutil import NETWORK_FILESYSTEMS, atomic_write_text, filesystem_type
from deep_events_dagster.settings.cluster import libpq_url, redact_uri
from deep_events_dagster.settings.platform import PlatformSettings

HOST_MARKER = ".cluster_host"
CONNECT_TIMEOUT_S = 5.0


class ClusterError(ConfigurationError):
    """A cluster service or shared path is not usable; the message says which and why."""


def check_storage(uri: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to the PostgreSQL storage once.

    Raises
    ------
    ClusterError
        Naming the URI (password hidden) and the server's answer.
    """
    import psycopg2

    try:
        psycopg2.connect(libpq_url(uri), connect_timeout=max(1, int(timeout_s))).close()
    except psycopg2.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Dagster storage at {redact_uri(uri)}: {reason}"
        ) from None


def check_broker(uri: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to the Celery broker once (no endless retries).

    Raises
    ------
    ClusterError
        Naming the URI (password hidden) and why the connection failed.
    """
    from kombu import Connection

    try:
        with Connection(uri, connect_timeout=timeout_s) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout_s)
    except Exception as exc:  # kombu raises transport-specific errors
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Celery broker at {redact_uri(uri)}: {reason}"
        ) from None


def check_embedded_catalog(settings: PlatformSettings, *, host: str | None = None) -> Path | None:
    """With Celery workers, the embedded catalog must be on a local file system of one host
    (:func:`check_single_host_catalog`); the catalog folder, or None for a MongoDB server."""
    from deep_events_dagster.catalog import EventCatalog

    folder = EventCatalog.embedded_folder(settings.catalog_uri, home=settings.home)
    if folder is not None and settings.cluster.distributed:
        check_single_host_catalog(folder, host=host)
    return folder


def check_single_host_catalog(
    folder: Path, *, host: str | None = None, mounts: str | None = None
) -> None:
    """Refuse an embedded catalog folder on a network file system or owned by another host;
    record this host as the owner on first use (``<folder>/.cluster_host``).

    Raises
    ------
    ClusterError
        Naming the folder, the file system or the owning host, and what to do instead.
    """
    host = host or socket.gethostname()
    fs_type = filesystem_type(folder, mounts)
    if fs_type in NETWORK_FILESYSTEMS:
        raise ClusterError(
            f"the embedded catalog {folder} is on a network file system ({fs_type}): its file "
            "lock does not hold across machines; set catalog_uri: mongodb://… in "
            "deep_events.yaml for workers on several hosts"
        )
    marker = folder / HOST_MARKER
    owner = marker.read_text("utf-8").strip() if marker.is_file() else ""
    if owner and owner != host:
        raise ClusterError(
            f"the embedded catalog {folder} belongs to host {owner!r} and this process runs on "
            f"{host!r}: the embedded catalog serves one host; run every worker there, or set "
            "catalog_uri: mongodb://… in deep_events.yaml"
        )
    if not owner:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, host + "\n")


def require_visible(paths: Mapping[str, Path | str]) -> None:
    """Every named path exists on this host (a shared path that a worker cannot see).

    Raises
    ------
    ClusterError
        Naming the first missing path and the host.
    """
    for what, path in paths.items():
        if not Path(path).exists():
            raise ClusterError(
                f"{what} {path} is not visible on host {socket.gethostname()}: every worker must "
                "see the data roots and the home at the same paths as the machine that "
                "registered them (mount the share there)"
            )


def check_cluster(settings: PlatformSettings) -> None:
    """All start-up checks of a cluster home (storage, broker, embedded catalog)."""
    cluster = settings.cluster
    if cluster.storage:
        check_storage(cluster.storage)
    if cluster.broker:
        check_broker(cluster.broker)
    check_embedded_catalog(settings)
