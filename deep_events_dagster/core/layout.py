"""Where derived files go: next to the data (original layout) or in a mirror tree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deep_events_dagster.core.metadata import DB_FILE


def event_data_name(kind: str) -> str:
    """``event_data_<kind>``: the name of a kind's event folder tree and of its catalog collection
    (the original's convention; :func:`deep_events_dagster.catalog.protocol.collection_name`
    checks the kind and uses it)."""
    return f"event_data_{kind}"


@dataclass(frozen=True)
class Layout:
    """Paths of everything derived from an acquisition.

    With ``output_root`` unset, files go where the original deep-events put them: ``db.yaml``
    and ``ground_truth_<kind>.tif`` next to the movie, events under
    ``<root>/event_data_<kind>/``. With ``output_root`` set, the same tree is mirrored under
    ``<output_root>/<root name>/`` so the raw data can stay read-only.
    """

    output_root: Path | None = None

    def _base(self, root: Path) -> Path:
        root = Path(os.path.abspath(root))
        if self.output_root is None:
            return root
        return Path(os.path.abspath(self.output_root)) / root.name

    def derived_folder(self, folder: Path, root: Path) -> Path:
        """Folder receiving an acquisition's ``db.yaml`` and ground truth."""
        folder, root = Path(os.path.abspath(folder)), Path(os.path.abspath(root))
        if self.output_root is None:
            return folder
        return self._base(root) / folder.relative_to(root)

    def db_yaml(self, folder: Path, root: Path) -> Path:
        """The acquisition's ``db.yaml``."""
        return self.derived_folder(folder, root) / DB_FILE

    def ground_truth(self, folder: Path, root: Path, kind: str) -> Path:
        """The acquisition's Gaussian ground truth for one annotation kind."""
        return self.derived_folder(folder, root) / f"ground_truth_{kind}.tif"

    def events_manifest(self, folder: Path, root: Path, kind: str) -> Path:
        """List of the event folders last written for this acquisition and kind."""
        return self.derived_folder(folder, root) / f"events_{kind}.yaml"

    def event_data(self, root: Path, kind: str) -> Path:
        """Folder holding the ``ev_*`` event folders of a root and kind."""
        return self._base(root) / event_data_name(kind)

    def training_data(self, root: Path) -> Path:
        """Folder for training sets built from a root."""
        return self._base(root) / "training_data"
