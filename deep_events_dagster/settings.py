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

from deep_events_dagster.core.errors import MetadataError

HOME_ENV = "DEEP_EVENTS_HOME"
ROOTS_ENV = "DEEP_EVENTS_ROOTS"
KINDS_ENV = "DEEP_EVENTS_KINDS"
OUTPUT_ROOT_ENV = "DEEP_EVENTS_OUTPUT_ROOT"
CATALOG_URI_ENV = "DEEP_EVENTS_CATALOG_URI"
QUIET_ENV = "DEEP_EVENTS_QUIET_SECONDS"
CONFIG_FILE = "deep_events.yaml"
DEFAULT_HOME = ".deep_events"
DEFAULT_KINDS = ("points",)


@dataclass(frozen=True)
class IngestionParams:
    """Parameters of the science; defaults as documented in DESIGN.md and the README."""

    sigma: float = 5.0
    gt_cutoff: float = 0.1
    detection_threshold: float = 0.5
    crop_size: int = 256
    max_link_distance_px: float = 24.0
    max_gap_frames: int = 2
    add_pre_frames: int = 0
    add_post_frames: int = 5
    auto_negatives: bool = True


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
# ``ml.deploy``, ``legacy_folders`` by ``defs.legacy``); anything else is a typo.
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
    known = IngestionParams.__dataclass_fields__
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise MetadataError(source, f"unknown ingestion settings {unknown}; known: {sorted(known)}")
    return IngestionParams(**section)


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
    settings = PlatformSettings(home=resolved_home, params=_params_from(config, config_path))
    if config.get("kinds"):
        settings = replace(settings, kinds=tuple(str(k) for k in config["kinds"]))
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
