"""The ``deep-events`` command line: its arguments and which command each runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from deep_events_dagster.cli.common import one_line, settings_from_args
from deep_events_dagster.cli.ingestion import catalog_find, catalog_import, ingest
from deep_events_dagster.cli.models import deploy, export, models, predict
from deep_events_dagster.cli.services import ui, worker
from deep_events_dagster.cli.training import train


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``deep-events``."""
    home_help = "platform home (default: $DEEP_EVENTS_HOME, else ./.deep_events)"
    home_parent = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's --home must not reset one given before the subcommand.
    home_parent.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    parser = argparse.ArgumentParser(
        prog="deep-events",
        description="deep-events: microscopy event detection on Dagster",
    )
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
        print(f"error: {one_line(exc)}", file=sys.stderr)
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
