"""Errors raised for bad user input; every message names the file at fault."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A user-supplied file is unusable. The message starts with the file's path."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class MovieError(InputError):
    """The movie (OME-TIFF) cannot be read or disagrees with its own header."""


class AnnotationError(InputError):
    """An annotation CSV is empty, malformed, or has points outside the movie."""


class MetadataError(InputError):
    """A db_manual.yaml / keys.yaml file is malformed."""


class ConfigurationError(ValueError):
    """Parameters are inconsistent with the data (e.g. a crop larger than the movie)."""
