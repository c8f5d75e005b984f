"""The ``deep-events`` command: the same Definitions and Dagster instance as the UI."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from deep_events_dagster.catalog.protocol import collection_name
from deep_events_dagster.settings import (
    HOME_ENV,
    KINDS_ENV,
    OUTPUT_ROOT_ENV,
    QUIET_ENV,
    ROOTS_ENV,
    PlatformSettings,
    load_settings,
    resolve_home,
)

PARTITION_TAG = "dagster/partition"


# ---------------------------------------------------------------- environment


def prepare_home(settings: PlatformSettings) -> None:
    """Create the home and its Dagster instance folder; point this process (and children) at it."""
    from deep_events_dagster.cluster import export_environment, write_instance_yaml

    settings.home.mkdir(parents=True, exist_ok=True)
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    write_instance_yaml(settings)
    export_environment(settings)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    os.environ[HOME_ENV] = str(settings.home)
    os.environ[KINDS_ENV] = ",".join(settings.kinds)
    if settings.roots:
        os.environ[ROOTS_ENV] = os.pathsep.join(str(Path(r).resolve()) for r in settings.roots)
    if settings.output_root is not None:
        os.environ[OUTPUT_ROOT_ENV] = str(Path(settings.output_root).resolve())
    os.environ[QUIET_ENV] = str(settings.quiet_seconds)


def settings_from_args(args: argparse.Namespace, **overrides) -> PlatformSettings:
    """Settings for a command: ``--home`` and other flags override the home's config."""
    home = resolve_home(getattr(args, "home", None))
    extra = dict(overrides)
    if getattr(args, "kind", None):
        extra["kinds"] = tuple(dict.fromkeys(args.kind))
    if getattr(args, "output_root", None):
        extra["output_root"] = Path(args.output_root).resolve()
    return load_settings(home, **extra)


# ---------------------------------------------------------------- running partitions


@dataclass(frozen=True)
class PartitionOutcome:
    """How one acquisition's run ended."""

    key: str
    success: bool
    message: str
    run_id: str


def ingest_job_definition(settings_key: str = ""):
    """The ingest job with its resources, rebuilt from the environment in worker processes.

    ``settings_key`` is not read: it makes the reconstructable job of each settings distinct.
    Dagster keeps the last reconstructed definition per process (an ``lru_cache`` keyed by the
    code pointer), so without it a second ``ingest`` in one process (tests, library use) ran
    with the first one's roots, kinds and parameters.
    """
    from deep_events_dagster.defs.build import build_definitions
    from deep_events_dagster.defs.ingestion.jobs import INGEST_JOB

    settings = load_settings()
    return build_definitions(settings, home_from_env=True).resolve_job_def(INGEST_JOB)


def predict_job_definition(settings_key: str = ""):
    """The predict job (the deployed model of each kind over one acquisition), rebuilt from
    the environment like :func:`ingest_job_definition`."""
    from deep_events_dagster.defs.build import build_definitions
    from deep_events_dagster.defs.training.jobs import PREDICTIONS_JOB

    settings = load_settings()
    return build_definitions(settings, home_from_env=True).resolve_job_def(PREDICTIONS_JOB)


def _failure_message(result) -> str:
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            user = getattr(data, "user_failure_data", None)
            if user is not None and user.description:
                messages.append(user.description)
            elif data.error is not None:
                error = data.error
                while error.cause is not None:  # the innermost error says what went wrong
                    error = error.cause
                lines = error.message.strip().splitlines() or [error.cls_name or "error"]
                messages.append(lines[0])
    import dagster as dg

    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            messages.append(
                f"{evaluation.asset_key.to_user_string()} check {evaluation.check_name} failed: "
                f"{evaluation.description}"
            )
    return "; ".join(dict.fromkeys(messages)) or "run failed (see the Dagster UI for its logs)"


def _reconstructable_job(function_name: str):
    """A job-building function of this module as a reconstructable job keyed by the settings."""
    import hashlib

    import dagster as dg

    settings = load_settings()
    # a digest: the key is stored with the run, and the catalog URI may hold a password
    key = hashlib.sha256(repr((settings, settings.catalog_uri)).encode()).hexdigest()
    return dg.build_reconstructable_job(
        "deep_events_dagster.cli",
        function_name,
        reconstructable_kwargs={"settings_key": key},
    )


def run_partition(
    key: str,
    executor: str = "in_process",
    log_level: str = "WARNING",
    job_definition: str = "ingest_job_definition",
) -> PartitionOutcome:
    """Execute a job (by default ingest; ``job_definition`` names this module's function that
    builds it) for one acquisition partition on the home's instance."""
    import dagster as dg

    run_config = {
        "execution": {"config": {"mode": executor}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            _reconstructable_job(job_definition),
            instance=instance,
            tags={PARTITION_TAG: key},
            run_config=run_config,
            raise_on_error=False,
        )
        message = "" if result.success else _failure_message(result)
        return PartitionOutcome(key, result.success, message, result.run_id)


def _run_partition_safely(key: str, executor: str, log_level: str) -> PartitionOutcome:
    try:
        return run_partition(key, executor, log_level)
    except Exception as exc:  # one bad acquisition never stops the others
        return PartitionOutcome(key, False, f"{type(exc).__name__}: {exc}", "")


def run_partitions(
    keys: Sequence[str],
    *,
    workers: int = 1,
    executor: str = "in_process",
    log_level: str = "WARNING",
) -> list[PartitionOutcome]:
    """Run the ingest job for each key, ``workers`` runs at a time (separate processes)."""
    if workers <= 1 or len(keys) <= 1:
        outcomes = []
        for key in keys:
            outcome = _run_partition_safely(key, executor, log_level)
            _print_outcome(outcome)
            outcomes.append(outcome)
        return outcomes
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_partition_safely, key, executor, log_level) for key in keys]
        outcomes = []
        for future in futures:
            outcome = future.result()
            _print_outcome(outcome)
            outcomes.append(outcome)
        return outcomes


def _print_outcome(outcome: PartitionOutcome) -> None:
    if outcome.success:
        print(f"ok      {outcome.key}", flush=True)
    else:
        print(f"FAILED  {outcome.key}: {outcome.message}", flush=True)


def run_on_cluster(job_name: str, keys: Sequence[str], *, verbose: bool = False):
    """Run a job per partition through the cluster's instance, printing each as it ends."""
    from deep_events_dagster.cluster import submit_runs

    level = "DEBUG" if verbose else "CRITICAL"  # failures are summarised per acquisition
    run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    outcomes = []
    for run in submit_runs(job_name, keys, run_config=run_config):
        outcome = PartitionOutcome(run.key, run.success, run.message, run.run_id)
        _print_outcome(outcome)
        outcomes.append(outcome)
    return outcomes


def cluster_problem(settings: PlatformSettings, requested: PlatformSettings | None = None) -> str:
    """Why this cluster home cannot run a command ("" when it can): an unreachable service, or
    command-line settings that the workers (which read deep_events.yaml) would not see."""
    from deep_events_dagster.cluster import ClusterError, check_cluster

    if not settings.cluster.enabled:
        return ""
    if requested is not None:
        configured = load_settings(settings.home)
        known = [Path(os.path.abspath(r)) for r in configured.roots]

        def covered(root: Path) -> bool:
            root = Path(os.path.abspath(root))
            return any(root == k or k in root.parents for k in known)

        outside = [str(root) for root in requested.roots if not covered(root)]
        if outside:
            return (
                f"{settings.config_file}: with a cluster the workers read roots: from this file; "
                f"add {', '.join(outside)} to roots: there"
            )
        if requested.kinds != configured.kinds or requested.output_root != configured.output_root:
            return (
                f"{settings.config_file}: with a cluster the workers read kinds: and output_root: "
                "from this file; set them there instead of on the command line"
            )
    try:
        check_cluster(settings)
    except ClusterError as exc:
        return str(exc)
    return ""


def register_partitions(keys: Sequence[str]) -> int:
    """Add acquisition partitions that the instance does not know yet; returns how many."""
    import dagster as dg

    from deep_events_dagster.defs.partitions import ACQUISITIONS

    with dg.DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(ACQUISITIONS))
        new = [k for k in keys if k not in known]
        if new:
            instance.add_dynamic_partitions(ACQUISITIONS, new)
        return len(new)


# ---------------------------------------------------------------- commands


def ingest(
    settings: PlatformSettings, *, workers: int, executor: str, verbose: bool = False
) -> int:
    """Register and ingest every acquisition under the settings' roots; 1 if any failed."""
    from deep_events_dagster.core.acquisitions import iter_acquisitions

    prepare_home(settings)
    problem = cluster_problem(settings, settings)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    exclude = [settings.output_root] if settings.output_root else []
    missing = [r for r in settings.roots if not Path(r).is_dir()]
    for root in missing:
        print(f"FAILED  {root}: not a folder", file=sys.stderr)
    acquisitions = list(
        iter_acquisitions([r for r in settings.roots if r not in missing], exclude=exclude)
    )
    keys = [a.key for a in acquisitions]
    added = register_partitions(keys)
    print(
        f"{len(keys)} acquisitions found ({added} new partitions) under "
        + ", ".join(str(r) for r in settings.roots),
        flush=True,
    )
    if settings.cluster.enabled:
        if workers > 1:
            print("note: --workers does not apply with a cluster: start more `deep-events worker`")
        outcomes = run_on_cluster("ingest", keys, verbose=verbose)
    else:
        outcomes = run_partitions(
            keys, workers=workers, executor=executor, log_level="DEBUG" if verbose else "WARNING"
        )
    failed = [o for o in outcomes if not o.success]
    print_summary(settings, keys)
    if failed:
        print(f"{len(failed)} of {len(outcomes)} acquisitions failed", file=sys.stderr)
    return 1 if failed or missing else 0


def print_summary(settings: PlatformSettings, keys: Sequence[str]) -> None:
    """Print acquisitions, events per kind and where the files and the catalog are."""
    from deep_events_dagster.catalog import EventCatalog
    from deep_events_dagster.core.errors import ConfigurationError
    from deep_events_dagster.core.layout import Layout

    layout = Layout(output_root=settings.output_root)
    try:
        catalog = EventCatalog.open(settings.catalog_uri or None, home=settings.home)
    except (ConfigurationError, OSError) as exc:
        print(f"cannot open the catalog: {exc}", file=sys.stderr)
        return
    try:
        print()
        header = "acquisition".ljust(60) + "".join(f"{k + ' (+/-)':>18}" for k in settings.kinds)
        print(header)
        totals = {kind: [0, 0] for kind in settings.kinds}
        for key in keys:
            cells = []
            for kind in settings.kinds:
                collection = collection_name(kind)
                positives = catalog.count(collection, {"acquisition_key": key, "label": kind})
                negatives = catalog.count(collection, {"acquisition_key": key, "label": "negative"})
                totals[kind][0] += positives
                totals[kind][1] += negatives
                cells.append(f"{positives:>10} / {negatives:<5}")
            shown = key if len(key) <= 58 else "…" + key[-57:]
            print(shown.ljust(60) + "".join(f"{c:>18}" for c in cells))
        print(f"\ncatalog: {catalog.describe()}")
        for kind, (positives, negatives) in totals.items():
            print(f"  {collection_name(kind)}: {positives} events, {negatives} negatives")
    finally:
        catalog.close()
    for root in settings.roots:
        for kind in settings.kinds:
            print(f"event folders ({kind}): {layout.event_data(Path(root).resolve(), kind)}")
    print(f"Dagster home: {settings.dagster_home} (see the runs with `deep-events ui`)")


def catalog_find(settings: PlatformSettings, collection: str, filter_json: str | None) -> int:
    """Print matching catalog documents, one JSON object per line."""
    from deep_events_dagster.catalog import EventCatalog

    try:
        query = json.loads(filter_json) if filter_json else {}
    except json.JSONDecodeError as exc:
        print(f"--filter is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(query, dict):
        print("--filter must be a JSON object", file=sys.stderr)
        return 2
    catalog = EventCatalog.open(settings.catalog_uri or None, home=settings.home)
    try:
        for document in catalog.find(collection, query):
            print(json.dumps(document, default=str, ensure_ascii=False))
    finally:
        catalog.close()
    return 0


def catalog_import(settings: PlatformSettings, folder: Path, collection: str) -> int:
    """Import original deep-events event folders into a catalog collection."""
    from deep_events_dagster.catalog import EventCatalog
    from deep_events_dagster.catalog.legacy import import_legacy_events

    if not folder.is_dir():
        print(f"{folder}: not a folder", file=sys.stderr)
        return 2
    catalog = EventCatalog.open(settings.catalog_uri or None, home=settings.home)
    try:
        report = import_legacy_events(catalog, folder, collection)
    finally:
        catalog.close()
    for problem in report.problems:
        print(f"FAILED  {problem}", file=sys.stderr)
    print(
        f"{report.imported} event folders imported into {collection} "
        f"({report.inserted} new, {report.updated} updated), {len(report.problems)} failed"
    )
    print(
        f"fps corrected in {report.fps_corrected} documents (frame interval in seconds "
        "rewritten as frames per second; old value kept in fps_as_written)"
    )
    return 1 if report.problems else 0


def train_job_definition(settings_key: str = ""):
    """The train job with its resources (``settings_key``: see ``ingest_job_definition``)."""
    from deep_events_dagster.defs.build import build_definitions

    settings = load_settings()
    return build_definitions(settings, home_from_env=True).resolve_job_def("train")


def train(settings: PlatformSettings, settings_file: Path, *, verbose: bool = False) -> int:
    """Validate a settings file, register its training runs, run them, print a summary per run.

    The whole file is validated first (``ml.config.load_validated_training_file``): a wrong key
    or value prints one line naming the file, the key and what is allowed, on stderr, and
    returns 2 before anything is registered, copied or built.

    Returns
    -------
    int
        0 when every run succeeded, 1 when a run failed, 2 for an unusable settings file.
    """
    import filecmp

    from deep_events_dagster.core.errors import InputError
    from deep_events_dagster.ml.config import load_validated_training_file

    if not settings_file.is_file():
        print(f"{settings_file}: no such settings file", file=sys.stderr)
        return 2
    try:
        load_validated_training_file(settings_file)
    except InputError as exc:
        print(_one_line(exc), file=sys.stderr)
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
        print(_one_line(exc), file=sys.stderr)
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
                _reconstructable_job("train_job_definition"),
                instance=instance,
                tags={PARTITION_TAG: spec.partition_key},
                run_config={
                    "loggers": {
                        "console": {"config": {"log_level": "INFO" if verbose else "WARNING"}}
                    },
                },
                raise_on_error=False,
            )
            return result.success, "" if result.success else _failure_message(result)

    if settings.cluster.enabled:
        from deep_events_dagster.cluster import submit_runs

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
        model = _pointer(_training_run_folder(settings, spec) / "model.yaml")
        print(f"ok      {spec.partition_key}")
        if model.get("path"):
            model_dir = Path(model["path"])
            print(f"  {_evaluation_summary(model_dir / 'evaluation.yaml')}")
            print(f"  model:       {model_dir}")
            for line in _export_lines(model_dir):
                print(f"  {line}")
            print(f"  tensorboard --logdir {run.settings.tensorboard_dir(model_dir)}")
        else:
            print("  no model folder recorded (see the run in the Dagster UI)")
    if failed:
        print(f"{failed} of {len(runs)} training runs failed", file=sys.stderr)
    return 1 if failed else 0


def _export_lines(model_dir: Path) -> list[str]:
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


def _one_line(exc: BaseException) -> str:
    """An error message on one line (user errors never print a traceback)."""
    return " ".join(str(exc).split())


def _evaluation_summary(path: Path) -> str:
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


def _pointer(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _training_run_folder(settings: PlatformSettings, spec) -> Path:
    from deep_events_dagster.defs.training.resources import TrainingResource

    resource = TrainingResource(
        home=str(settings.home), settings_dir=str(settings.training_settings_dir)
    )
    return resource.run_folder(spec)


def ui(settings: PlatformSettings, *, host: str, port: int) -> int:
    """Run ``dagster dev`` (webserver + daemon) on the home's instance."""
    prepare_home(settings)
    problem = cluster_problem(settings)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if settings.cluster.enabled:
        print(f"cluster: {settings.cluster.describe()}", flush=True)
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or shutil.which(
        "dagster"
    )
    if dagster is None:
        print("the `dagster` command is not installed beside deep-events", file=sys.stderr)
        return 2
    command = [dagster, "dev", "-m", "deep_events_dagster.definitions", "-h", host, "-p", str(port)]
    print(f"Dagster UI on http://{host}:{port} (home {settings.home})", flush=True)
    if settings.roots:
        print(
            "watching "
            + ", ".join(str(r) for r in settings.roots)
            + f" (quiet period {settings.quiet_seconds:g} s)",
            flush=True,
        )
    else:
        print("no data roots to watch (use --watch ROOT or roots: in deep_events.yaml)")
    # replace this process: signals (Ctrl-C, SIGTERM from a service manager) reach dagster dev
    os.execve(command[0], command, os.environ.copy())


def worker(
    settings: PlatformSettings, *, queue: str, concurrency: int, name: str | None, loglevel: str
) -> int:
    """Start a Celery worker for this home (``cluster.run_worker``); 2 when it cannot start."""
    from deep_events_dagster.cluster import run_worker
    from deep_events_dagster.core.errors import ConfigurationError

    try:
        prepare_home(settings)
    except ConfigurationError as exc:
        print(f"worker not started: {exc}", file=sys.stderr)
        return 2
    return run_worker(settings, role=queue, concurrency=concurrency, name=name, loglevel=loglevel)


def export(model_dir: Path, formats: Sequence[str] | None = None) -> int:
    """Write a model folder's exports (``ml.export.export_model``), print one line per format.

    Returns
    -------
    int
        0 when every export was written and checked (or skipped with a reason), 1 when a check
        failed (the file was removed), 2 for a folder that cannot be exported (not a model
        folder, not evaluated, unknown format): one line on stderr, no traceback.
    """
    from deep_events_dagster.ml.export import DEFAULT_FORMATS, ExportCheckFailed, export_model

    try:
        report = export_model(model_dir, tuple(formats or DEFAULT_FORMATS))
    except ExportCheckFailed as exc:
        print("\n".join(exc.report.lines()))
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


def predict(
    paths: Sequence[Path],
    model_dir: Path,
    *,
    out_dir: Path | None = None,
    kind: str = "points",
    as_json: bool = False,
    device: str = "cpu",
    precision: str = "auto",
) -> int:
    """Score every frame of each movie with a model (``ml.predict.predict_movie``), print the
    result per acquisition: a short summary, or one JSON object a line with ``as_json``.

    A PATH is an acquisition folder (its most recently modified ``*.ome.tif[f]``) or a movie
    file. With ``out_dir`` the CSV and probability movie are written there (one PATH) or into
    ``out_dir/<acquisition folder name>/`` (several); without it nothing is written.

    Returns
    -------
    int
        0 when every movie was scored, 1 when some PATH could not be (one line each on stderr;
        the others are still scored), 2 when the model cannot be loaded.
    """
    from deep_events_dagster.core.acquisitions import movie_in_folder
    from deep_events_dagster.ml.predict import load_model_predictor, predict_movie

    try:
        predictor = load_model_predictor(model_dir, device, precision)
    except (ValueError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    failed = 0
    used_names: set[str] = set()
    for path in paths:
        movie = movie_in_folder(path) if path.is_dir() else path
        if movie is None:
            print(
                f"error: {path}: no *.ome.tif / *.ome.tiff / *.ome.zarr movie in this folder",
                file=sys.stderr,
            )
            failed += 1
            continue
        target = out_dir
        if out_dir is not None and len(paths) > 1:
            name = movie.parent.name or "movie"
            unique, n = name, 2
            while unique in used_names:
                unique, n = f"{name}_{n}", n + 1
            used_names.add(unique)
            target = out_dir / unique
        try:
            result = predict_movie(
                movie, model_dir, out_dir=target, kind=kind, device=device, predictor=predictor
            )
        except (ValueError, OSError) as exc:  # InputError and MovieError name their file
            message = _one_line(exc)
            if not message.startswith(str(movie)) and not message.startswith(str(model_dir)):
                message = f"{movie}: {message}"
            print(f"error: {message}", file=sys.stderr, flush=True)
            failed += 1
            continue
        if as_json:
            print(json.dumps(result.as_json()), flush=True)
            continue
        print(
            f"{movie}: {len(result.frames)} frames, {len(result.events)} event(s) above "
            f"threshold {result.threshold:g} ({result.threshold_source}), "
            f"frame step {result.frame_step}, {result.seconds:.1f} s"
        )
        for event in result.events:
            start, stop = event.frames
            span = f"frame {start}" if stop - start == 1 else f"frames {start}–{stop - 1}"
            print(f"  {span} at y {event.y}, x {event.x}: score {event.score:.3f}")
        written = [str(p) for p in (result.csv_path, result.movie_out_path) if p is not None]
        print(f"  files: {', '.join(written)}" if written else "  files: none (use --out DIR)")
        for note in result.notes:
            print(f"  note: {note}")
        sys.stdout.flush()
    if failed:
        print(f"{failed} of {len(paths)} path(s) could not be scored", file=sys.stderr)
    return 1 if failed else 0


def deploy(home: str | Path | None, model_dir: Path, kind: str | None = None) -> int:
    """Deploy a model folder for an annotation kind (``ml.deploy.deploy_model``) and print what
    is now deployed for it: kind, folder, event F1, threshold, identity.

    Without ``kind`` the platform's only kind is used; a platform with several asks for one.

    Returns
    -------
    int
        0 when deployed; 2 (one line on stderr, nothing written) for a kind the platform does
        not have, a folder that is not an evaluated model folder, or an unreadable
        ``deep_events.yaml``.
    """
    from deep_events_dagster.ml.deploy import deploy_model, read_deployments
    from deep_events_dagster.ml.model_folder import ModelFolder

    try:
        settings = load_settings(resolve_home(home))
    except ValueError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    kinds = ", ".join(settings.kinds)
    if kind is None:
        if len(settings.kinds) != 1:
            print(
                f"error: the platform has several annotation kinds ({kinds}); "
                "say which one the model is for with --kind",
                file=sys.stderr,
            )
            return 2
        kind = settings.kinds[0]
    if kind not in settings.kinds:
        print(
            f"error: unknown annotation kind {kind!r}; the platform's kinds: {kinds} "
            f"(kinds: in {settings.config_file})",
            file=sys.stderr,
        )
        return 2
    try:
        previous = read_deployments(settings.home).get(kind)
    except ValueError:
        previous = None  # a broken entry is what this deployment may be fixing
    try:
        deployment = deploy_model(settings.home, model_dir, kind)
    except (ValueError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    evaluation = ModelFolder(deployment.model_dir).evaluation() or {}
    f1 = evaluation.get("f1")
    print(f"deployed for {kind}: {deployment.model_dir}")
    print(
        f"  event F1 {'–' if f1 is None else format(float(f1), '.3f')}, "
        f"threshold {float(evaluation['threshold']):.3f}, identity {deployment.identity}"
    )
    if previous is not None and previous.model_dir != deployment.model_dir:
        print(f"  replaces {previous.model_dir} (identity {previous.identity})")
    print(f"  written to {settings.config_file}")
    return 0


def models(home: str | Path | None, roots: Sequence[Path] = (), *, as_json: bool = False) -> int:
    """List the trained model folders, newest first (``ml.deploy.list_models``): the deployed
    ones marked ``*`` with their kind, event F1, threshold, training set, date.

    Searched: the ``folder:`` of every training settings file of the home, ``roots``, and the
    deployed folders.

    Returns
    -------
    int
        0; 1 when the home's ``deploy:`` is malformed (one line on stderr; the models are
        still listed, unmarked); 2 for an unreadable ``deep_events.yaml``.
    """
    from deep_events_dagster.ml.deploy import list_models, training_model_roots

    try:
        settings = load_settings(resolve_home(home))
        search = [*training_model_roots(settings.home), *(Path(r) for r in roots)]
    except ValueError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    status = 0
    try:
        found = list_models(search, settings.home)
    except ValueError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        found = list_models(search)
        status = 1
    if as_json:
        print(json.dumps([m.as_json() for m in found]))
        return status
    if not found:
        if search:
            print("no trained models under " + ", ".join(str(r) for r in search))
        else:
            print(
                f"no trained models: no training settings files in "
                f"{settings.training_settings_dir} and no --root DIR"
            )
        return status
    rows = [
        (
            f"* {','.join(m.deployed_for)}" if m.deployed_for else "",
            m.created.strftime("%Y-%m-%d %H:%M"),
            "–" if m.event_f1 is None else f"{m.event_f1:.3f}",
            "–" if m.threshold is None else f"{m.threshold:.3f}",
            m.backend,
            str(m.path),
            m.training_set or "–",
        )
        for m in found
    ]
    header = ("deployed", "date", "event F1", "threshold", "backend", "model", "training set")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return status


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``deep-events``."""
    home_help = "platform home (default: $DEEP_EVENTS_HOME, else ./.deep_events)"
    home_parent = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's --home must not reset one given before the subcommand.
    home_parent.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    parser = argparse.ArgumentParser(prog="deep-events", description=__doc__)
    parser.add_argument("--home", default=None, help=home_help)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("ingest", parents=[home_parent], help="ingest acquisition trees")
    p.add_argument("roots", nargs="+", type=Path, metavar="ROOT")
    p.add_argument("--kind", action="append", help="annotation kind (CSV prefix); repeatable")
    p.add_argument("--output-root", help="write derived files to a mirror tree here")
    p.add_argument("--workers", type=int, default=1, help="acquisitions ingested at once")
    p.add_argument("--executor", choices=["in_process", "multiprocess"], default="in_process")
    p.add_argument("--verbose", action="store_true", help="show Dagster's step logs")

    p = commands.add_parser(
        "worker",
        parents=[home_parent],
        help="start a Celery worker for this home's cluster (cluster: in deep_events.yaml)",
    )
    p.add_argument(
        "--queue",
        choices=["default", "gpu"],
        default="default",
        help="default: ingestion and everything else; gpu: training and evaluation",
    )
    p.add_argument("--concurrency", type=int, default=1, help="steps this worker runs at once")
    p.add_argument("--name", help="worker name (default: <queue>-<pid>); @<host> is appended")
    p.add_argument("--loglevel", default="INFO", help="Celery's log level")

    p = commands.add_parser("catalog", parents=[home_parent], help="query the event catalog")
    catalog_commands = p.add_subparsers(dest="catalog_command", required=True)
    f = catalog_commands.add_parser("find", parents=[home_parent], help="print documents")
    f.add_argument("collection")
    f.add_argument("--filter", help='a JSON query, e.g. \'{"cell_line": "cos7"}\'')

    i = catalog_commands.add_parser(
        "import", parents=[home_parent], help="import original-format event folders"
    )
    i.add_argument("folder", type=Path)
    i.add_argument("--collection", required=True)

    p = commands.add_parser(
        "demo", parents=[home_parent], help="the whole workflow on synthetic data"
    )
    p.add_argument("--workers", type=int, default=2)

    p = commands.add_parser(
        "train",
        parents=[home_parent],
        help="train from a settings file",
        description="Validate a scheduled settings file (a wrong key or value stops here, "
        "with one line), then build each run's training set, train and evaluate the model; "
        "ends with event-level precision/recall/F1, the model folder and the TensorBoard "
        "command per run.",
    )
    p.add_argument(
        "settings_file",
        type=Path,
        metavar="SETTINGS.yaml",
        help="the original's scheduled settings format (see README: Training from the catalog)",
    )
    p.add_argument("--verbose", action="store_true", help="show Dagster's step logs")

    p = commands.add_parser(
        "export",
        help="write and check a model folder's exports",
        description="Write the exports of a trained, evaluated model folder (Keras .h5, ONNX, "
        "TorchScript; a bioimage.io package on request), load each back and check it against "
        "the model and evaluation.yaml; prints one line per export.",
    )
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    p.add_argument(
        "--format",
        action="append",
        choices=["keras", "onnx", "torchscript", "bioimageio"],
        help="export only this format; repeatable (default: keras, onnx, torchscript)",
    )

    p = commands.add_parser(
        "predict",
        help="score every frame of movies with a trained model",
        description="Run a trained model over whole movies: per frame the highest probability "
        "and where it is, and the events (consecutive frames above the model's threshold). "
        "Prints a summary per acquisition, or one JSON object a line with --json.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="an acquisition folder (its newest *.ome.tif) or a movie file",
    )
    p.add_argument("--model", required=True, type=Path, metavar="DIR", help="model folder")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write predictions_<kind>.csv and .ome.tif here (in DIR/<acquisition>/ for "
        "several PATHs); without it nothing is written",
    )
    p.add_argument("--kind", default="points", help="annotation kind (names the output files)")
    p.add_argument("--json", action="store_true", help="one JSON object per acquisition a line")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1…")
    p.add_argument(
        "--precision",
        choices=("auto", "float32"),
        default="auto",
        help="auto (default): the fast path (bfloat16 where the CPU has it, scores within "
        "0.02); float32: exactly as the evaluation",
    )

    p = commands.add_parser(
        "deploy",
        parents=[home_parent],
        help="deploy a model folder for an annotation kind",
        description="Name MODEL_DIR (a trained, evaluated model folder) as the model that "
        "scores new movies of an annotation kind: writes deploy: {KIND: MODEL_DIR} into the "
        "home's deep_events.yaml, then prints the kind, folder, event F1, threshold and the "
        "model's identity.",
    )
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    p.add_argument(
        "--kind",
        metavar="NAME",
        help="annotation kind (default: the platform's only kind; required when it has several)",
    )

    p = commands.add_parser(
        "models",
        parents=[home_parent],
        help="list trained models and the deployed ones",
        description="List the trained model folders, newest first, with event-level F1, "
        "threshold, training set and date; the deployed ones are marked * with their kind. "
        "Searched: the folder: of every training settings file, each --root and the deployed "
        "folders.",
    )
    p.add_argument(
        "--root",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="also search this folder for model folders; repeatable",
    )
    p.add_argument("--json", action="store_true", help="a JSON list instead of the table")

    p = commands.add_parser("synth", help="write a synthetic acquisition tree")
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)

    p = commands.add_parser("ui", parents=[home_parent], help="run the Dagster UI and daemon")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument(
        "--watch",
        action="append",
        type=Path,
        metavar="ROOT",
        help="data root the acquisition sensor watches; repeatable",
    )
    p.add_argument(
        "--quiet-seconds",
        type=float,
        help="how long a movie must stay unchanged before it is ingested",
    )
    p.add_argument("--kind", action="append", help="annotation kind (CSV prefix); repeatable")
    p.add_argument("--output-root", help="write derived files to a mirror tree here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deep-events`` console script.

    A bad setting (``deep_events.yaml``, the instance file, a cluster service) is one line on
    stderr naming the file or service, and exit status 2.
    """
    import warnings

    from deep_events_dagster.core.errors import ConfigurationError, InputError

    args = build_parser().parse_args(argv)
    # a preview notice from inside Dagster Pipes, printed on every training run
    warnings.filterwarnings("ignore", message=r"Function `PipesMessageReader\.")
    try:
        return _run_command(args)
    except (InputError, ConfigurationError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "synth":
        from deep_events_dagster.testing.trees import synth_main

        tree = synth_main(args.out, seed=args.seed)
        for acquisition in tree.acquisitions:
            print(acquisition.folder)
        return 0
    if args.command == "export":
        return export(args.model_dir, args.format)
    if args.command == "predict":
        return predict(
            args.paths,
            args.model,
            out_dir=args.out,
            kind=args.kind,
            as_json=args.json,
            device=args.device,
            precision=args.precision,
        )
    if args.command == "deploy":
        return deploy(args.home, args.model_dir, args.kind)
    if args.command == "models":
        return models(args.home, args.root, as_json=args.json)
    if args.command == "ingest":
        settings = settings_from_args(args, roots=tuple(r.resolve() for r in args.roots))
        return ingest(settings, workers=args.workers, executor=args.executor, verbose=args.verbose)
    overrides = {}
    if getattr(args, "watch", None):
        overrides["roots"] = tuple(r.resolve() for r in args.watch)
    if getattr(args, "quiet_seconds", None) is not None:
        overrides["quiet_seconds"] = args.quiet_seconds
    settings = settings_from_args(args, **overrides)
    if args.command == "catalog" and args.catalog_command == "import":
        return catalog_import(settings, args.folder, args.collection)
    if args.command == "catalog":
        return catalog_find(settings, args.collection, args.filter)
    if args.command == "train":
        return train(settings, args.settings_file, verbose=args.verbose)
    if args.command == "demo":
        from deep_events_dagster.demo import demo

        return demo(settings, workers=args.workers)
    if args.command == "ui":
        return ui(settings, host=args.host, port=args.port)
    if args.command == "worker":
        return worker(
            settings,
            queue=args.queue,
            concurrency=args.concurrency,
            name=args.name,
            loglevel=args.loglevel,
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
