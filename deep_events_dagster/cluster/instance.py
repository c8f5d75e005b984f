"""The home's Dagster instance file (``<home>/dagster/dagster.yaml``) and its managed
``storage:`` block, which follows ``cluster.storage``; the cluster's URIs in the environment.

The storage URI is read from ``DEEP_EVENTS_CLUSTER_STORAGE``, so no password is written in the
instance file.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from deep_events_dagster.cluster.checks import ClusterError
from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.settings.cluster import CLUSTER_STORAGE_ENV, ClusterSettings
from deep_events_dagster.settings.platform import PlatformSettings

MANAGED_BEGIN = "# >>> deep-events cluster storage (managed: follows cluster.storage)"
MANAGED_END = "# <<< deep-events cluster storage"


def instance_yaml(existing: str | None, cluster: ClusterSettings, *, source: Path) -> str:
    """The instance file's text for these cluster settings.

    ``existing`` (the current text, or None for the packaged template) keeps everything the user
    wrote; only the block between the managed markers changes.

    Raises
    ------
    ClusterError
        The user's own part already configures ``storage:`` while ``cluster.storage`` is set.
    """
    import yaml

    if existing is None:
        template = resources.files("deep_events_dagster.resources").joinpath("dagster.yaml")
        existing = template.read_text("utf-8")
    lines = existing.splitlines()
    kept: list[str] = []
    inside = False
    for line in lines:
        if line.strip() == MANAGED_BEGIN:
            inside = True
            continue
        if inside and line.strip() == MANAGED_END:
            inside = False
            continue
        if not inside:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    text = "\n".join(kept) + "\n"
    if not cluster.enabled:
        return text
    own = yaml.safe_load(text) or {}
    if isinstance(own, dict) and "storage" in own:
        raise ClusterError(
            f"{source}: configures its own storage: while deep_events.yaml sets cluster.storage; "
            "remove one of them"
        )
    block = [
        "",
        MANAGED_BEGIN,
        "# Dagster's run, event-log and schedule storage in PostgreSQL; the URI (with its",
        f"# password) is read from {CLUSTER_STORAGE_ENV}, set by the deep-events commands.",
        "storage:",
        "  postgres:",
        "    postgres_url:",
        f"      env: {CLUSTER_STORAGE_ENV}",
        MANAGED_END,
    ]
    return text + "\n".join(block) + "\n"


def write_instance_yaml(settings: PlatformSettings) -> Path:
    """Create or update ``<home>/dagster/dagster.yaml`` for the settings' cluster block."""
    path = settings.dagster_home / "dagster.yaml"
    existing = path.read_text("utf-8") if path.exists() else None
    text = instance_yaml(existing, settings.cluster, source=path)
    if text != existing:
        atomic_write_text(path, text)
    return path


def export_environment(settings: PlatformSettings) -> None:
    """Put the cluster's URIs in this process's environment (inherited by the daemon, the run
    workers and the Celery workers this process starts)."""
    for name, value in settings.cluster.environment().items():
        os.environ[name] = value
