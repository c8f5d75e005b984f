"""``deep-events train``: a training settings file into registered, run and summarised training
runs; and the summary lines of a model folder (evaluation, exports)."""

from __future__ import annotations

import sys
from pathlib import Path

from deep_events_dagster.cli.common import one_line
from deep_events_dagster.cli.runs import (
    PARTITION_TAG,
    cluster_problem,
    failure_message,
    prepare_home,
    reconstructable_job,
)
from deep_events_dagster.settings.platform import PlatformSettings


def train(settings: PlatformSettings, settings_file: Path, *, verbose: bool = False) -> int:
    """Validate a settings file, register its training runs, run them, print a summary per run.

    The whole file is validated first (``ml.training_runs.load_validated_training_file``): a
    wrong key or value prints one line naming the file, the key and what is allowed, on stderr, and
    returns 2 before anything is registered, copied or built.

    Returns
    -------
    int
        0 when every run succeeded, 1 when a run failed, 2 for an unusable settings file.
    """
    import filecmp

    from deep_events_dagster.core.errors import InputError
    from deep_events_dagster.ml.training_runs import load_validated_training_file

    if not settings_file.is_file():
        print(f"{settings_file}: no such settings file", file=sys.stderr)
        return 2
    try:
        load_validated_training_file(settings_file)
    except InputError as exc:
        print(one_line(exc), file=sys.stderr)
        return 2

    import dagster as dg

    from deep_events_dagster.defs.partitions import TRAINING_RUNS
    from deep_events_dagster.defs.training.resources import TrainingResource

    prepare_home(settings)
    problem = cluster_problem(settings)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    folder = settings.training_settings_dir
    target = folder / settings_file.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if settings_file.resolve() != target.resolve():
            if target.exists() and not filecmp.cmp(settings_file, target, shallow=False):
                print(f"replacing {target} with {settings_file}")
            _copy_settings_file(settings_file, target)
        runs = load_validated_training_file(target)
    except OSError as exc:
        print(f"{target}: cannot copy the settings file there: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(one_line(exc), file=sys.stderr)
        return 2
    keys = [run.partition_key for run in runs]
    with dg.DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(TRAINING_RUNS))
        new = [k for k in keys if k not in known]
        if new:
            instance.add_dynamic_partitions(TRAINING_RUNS, new)
    print(f"{len(runs)} training run(s) in {target}", flush=True)
    resource = TrainingResource(
        home=str(settings.home), settings_dir=str(settings.training_settings_dir)
    )
    notes = [
        note
        for run in runs
        for note in run.settings.effect_notes(training_sets=resource.training_root(run.spec))
    ]
    for note in dict.fromkeys(notes):
        print(f"note: {note}", flush=True)

    def run_locally(spec) -> tuple[bool, str]:
        with dg.DagsterInstance.get() as instance:
            result = dg.execute_job(
                reconstructable_job("train_job_definition", settings),
                instance=instance,
                tags={PARTITION_TAG: spec.partition_key},
                run_config={
                    "loggers": {
                        "console": {"config": {"log_level": "INFO" if verbose else "WARNING"}}
                    },
                },
                raise_on_error=False,
            )
            return result.success, "" if result.success else failure_message(result)

    if settings.cluster.enabled:
        from deep_events_dagster.cluster.runs import submit_runs

        run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
        ended = {
            r.key: (r.success, r.message) for r in submit_runs("train", keys, run_config=run_config)
        }
        outcome_of = ended.__getitem__
    else:
        outcome_of = None
    failed = 0
    for run in runs:
        spec = run.spec
        success, message = outcome_of(spec.partition_key) if outcome_of else run_locally(spec)
        if not success:
            failed += 1
            print(f"FAILED  {spec.partition_key}: {message}", flush=True)
            continue
        model = read_pointer(training_run_folder(settings, spec) / "model.yaml")
        print(f"ok      {spec.partition_key}")
        if model.get("path"):
            model_dir = Path(model["path"])
            print(f"  {evaluation_summary(model_dir / 'evaluation.yaml')}")
            print(f"  model:       {model_dir}")
            for line in export_lines(model_dir):
                print(f"  {line}")
            print(f"  tensorboard --logdir {run.settings.tensorboard_dir(model_dir)}")
        else:
            print("  no model folder recorded (see the run in the Dagster UI)")
    if failed:
        print(f"{failed} of {len(runs)} training runs failed", file=sys.stderr)
    return 1 if failed else 0


def export_lines(model_dir: Path) -> list[str]:
    """One line per export recorded in the model folder's ``exports.yaml``."""
    from deep_events_dagster.ml.model_folder import ModelFolder

    lines = []
    for name, entry in ModelFolder(model_dir).exports().items():
        if not isinstance(entry, dict) or "status" not in entry:
            continue
        if entry["status"] == "ok":
            size = f"{int(entry.get('bytes') or 0) / 1e6:.2f} MB"
            lines.append(f"export {name + ':':<12} {model_dir / str(entry.get('file'))} ({size})")
        else:
            lines.append(f"export {name + ':':<12} {entry['status']}: {entry.get('reason', '')}")
    return lines


def evaluation_summary(path: Path) -> str:
    """``events at threshold 0.42: precision 0.91, recall 0.80, F1 0.85`` from a model folder's
    ``evaluation.yaml`` (whatever part of it is there)."""
    import yaml

    if not path.is_file():
        return f"evaluation: none yet ({path})"
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        values = None
    if not isinstance(values, dict):
        return f"evaluation: cannot read {path}"

    def number(key: str) -> str | None:
        value = values.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{value:.3f}" if isinstance(value, float) else str(value)
        return None

    scores = [
        f"{label} {text}"
        for label, key in (("precision", "precision"), ("recall", "recall"), ("F1", "f1"))
        if (text := number(key)) is not None
    ]
    if not scores:
        return f"evaluation: no precision/recall/F1 in {path}"
    unit = values.get("unit")
    what = {"event": "events", "frame": "frames", "pixel": "pixels"}.get(unit, "evaluation")
    if not unit:
        what = "evaluation (unit not recorded)"
    threshold = number("threshold")
    at = f" at threshold {threshold}" if threshold is not None else ""
    return f"{what}{at}: {', '.join(scores)}  ({path})"


def _copy_settings_file(source: Path, target: Path) -> None:
    """Copy a settings file into the settings folder, keeping a relative ``folder`` meaning
    what it meant next to the original file."""
    import yaml

    text = source.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None  # copied as is; loading it reports the error with the file's name
    folder = data.get("folder") if isinstance(data, dict) else None
    if isinstance(folder, str) and folder and not Path(folder).is_absolute():
        data["folder"] = str((source.parent / folder).resolve())
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    target.write_text(text, encoding="utf-8")


def read_pointer(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}


def training_run_folder(settings: PlatformSettings, spec) -> Path:
    from deep_events_dagster.defs.training.resources import TrainingResource

    resource = TrainingResource(
        home=str(settings.home), settings_dir=str(settings.training_settings_dir)
    )
    return resource.run_folder(spec)
