"""``deep-events export``, ``predict``, ``deploy`` and ``models``: what happens to a trained model
folder after training."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from deep_events_dagster.cli.common import one_line
from deep_events_dagster.settings.platform import load_settings, resolve_home


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
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
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
        print(f"error: {one_line(exc)}", file=sys.stderr)
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
            message = one_line(exc)
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
        print(f"error: {one_line(exc)}", file=sys.stderr)
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
        print(f"error: {one_line(exc)}", file=sys.stderr)
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
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    status = 0
    try:
        found = list_models(search, settings.home)
    except ValueError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
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
