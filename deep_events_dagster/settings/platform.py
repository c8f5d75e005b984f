"""Platform settings (:class:`PlatformSettings`): the home folder (:func:`resolve_home`), its
``deep_events.yaml`` (:func:`read_config`, its top-level keys :data:`CONFIG_KEYS`) and the
``DEEP_EVENTS_*`` environment variables, validated once by :func:`load_settings`.

The sections have their own models: ``ingestion:`` and ``kinds:`` in ``settings.ingestion``,
``cluster:`` in ``settings.cluster``. Nothing here reads the environment at import time;
:func:`load_settings` does, when called.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deep_events_dagster.core.errors import MetadataError
from deep_events_dagster.settings.cluster import ClusterSettings, cluster_from
from deep_events_dagster.settings.ingestion import (
    DEFAULT_KINDS,
    IngestionParams,
    KindSettings,
    kinds_from,
    params_from,
    resolve_kind,
    validation_problems,
)

HOME_ENV = "DEEP_EVENTS_HOME"
ROOTS_ENV = "DEEP_EVENTS_ROOTS"
KINDS_ENV = "DEEP_EVENTS_KINDS"
OUTPUT_ROOT_ENV = "DEEP_EVENTS_OUTPUT_ROOT"
CATALOG_URI_ENV = "DEEP_EVENTS_CATALOG_URI"
QUIET_ENV = "DEEP_EVENTS_QUIET_SECONDS"
CONFIG_FILE = "deep_events.yaml"
DEFAULT_HOME = ".deep_events"


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
    params = params_from(config, config_path)
    kinds, kind_config = kinds_from(config, config_path, params)
    values: dict[str, Any] = {
        "home": resolved_home,
        "params": params,
        "cluster": cluster_from(config, env, config_path),
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
        raise MetadataError(config_path, validation_problems(exc)) from None
    for kind in settings.kinds:
        if not kind or not all(c.isascii() and (c.isalnum() or c == "_") for c in kind):
            raise ValueError(f"annotation kind {kind!r} must be ASCII letters, digits or '_'")
    return settings
