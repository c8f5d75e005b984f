"""The training package's resources — ``TrainingResource`` (settings files, run folders, the
training device) and ``PredictionResource`` (which model is deployed per kind) — and the run
folder's pointer files that hand a training set and a model from one step to the next."""

from pathlib import Path

import dagster as dg
import yaml

from deep_events_dagster.core.fsutil import atomic_write_text


class TrainingResource(dg.ConfigurableResource):
    """Where training settings files live and which device training uses."""

    home: str
    settings_dir: str = ""
    device: str = "auto"

    def settings_folder(self) -> Path:
        """Folder of training settings files (default ``<home>/training``)."""
        return Path(self.settings_dir) if self.settings_dir else Path(self.home) / "training"

    def runs(self):
        """Every (file, prompt) training run of the settings folder's valid files, with its
        validated settings, and one line per file left out (unreadable, malformed or invalid
        settings; see ``ml.training_runs.load_validated_training_folder``)."""
        from deep_events_dagster.ml.training_runs import load_validated_training_folder

        return load_validated_training_folder(self.settings_folder())

    def spec(self, partition_key: str):
        """The training run behind a partition key (``core.training_run.TrainingRunSpec``)."""
        return self.run(partition_key).spec

    def run(self, partition_key: str):
        """The training run behind a partition key with its validated settings
        (``ml.training_runs.ValidatedRun``); a ``dg.Failure`` naming the file's problem when its
        file is gone or no longer valid."""
        runs = self.runs()
        run = runs.run(partition_key)
        if run is not None:
            return run
        stem = partition_key.split("/", 1)[0]
        related = [p for p in runs.problems if Path(p.split(": ", 1)[0]).stem == stem]
        related = related or [p for p in runs.problems if stem in p]
        raise dg.Failure(
            description=(
                f"training run {partition_key!r} is not defined by any settings file in "
                f"{self.settings_folder()}"
                + (f": {related[0]}" if related else " (was its file or prompt removed?)")
            ),
            allow_retries=False,
        )

    def run_folder(self, spec) -> Path:
        """Folder holding this run's pointers and models."""
        base = spec.output_folder(self.home)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.partition_key)
        return base / "runs" / safe

    def training_root(self, spec) -> Path:
        """Folder holding content-addressed training sets."""
        return spec.output_folder(self.home) / "training_sets"


class PredictionResource(dg.ConfigurableResource):
    """Which model is deployed per annotation kind (read from the home's ``deep_events.yaml``
    when a run starts, so deploying needs no restart), and where predictions run."""

    home: str
    device: str = "cpu"
    # auto: the backend's fast inference path (bfloat16 where the CPU has it); float32: exact
    precision: str = "auto"
    max_tile: int = 2048

    def deployment(self, kind: str):
        """The :class:`~deep_events_dagster.ml.deploy.Deployment` of ``kind``, or None."""
        from deep_events_dagster.ml.deploy import read_deployments

        return read_deployments(Path(self.home)).get(kind)


def read_pointer(path: Path, what: str) -> dict:
    """A run folder's pointer file (``training_set.yaml``, ``model.yaml``); a ``dg.Failure``
    when the step that writes it has not run."""
    if not path.is_file():
        raise dg.Failure(description=f"{path}: no {what} yet; materialise it first")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def write_pointer(path: Path, data: dict) -> None:
    """Write a run folder's pointer file (atomically)."""
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
