"""What every command shares: settings from the command line, one-line error messages."""

from __future__ import annotations

import argparse
from pathlib import Path

from deep_events_dagster.settings.platform import PlatformSettings, load_settings, resolve_home


def settings_from_args(args: argparse.Namespace, **overrides) -> PlatformSettings:
    """Settings for a command: ``--home`` and other flags override the home's config."""
    home = resolve_home(getattr(args, "home", None))
    extra = dict(overrides)
    if getattr(args, "kind", None):
        extra["kinds"] = tuple(dict.fromkeys(args.kind))
    if getattr(args, "output_root", None):
        extra["output_root"] = Path(args.output_root).resolve()
    return load_settings(home, **extra)


def one_line(exc: BaseException) -> str:
    """An error message on one line (user errors never print a traceback)."""
    return " ".join(str(exc).split())
