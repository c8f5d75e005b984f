"""``deep-events demo``: the whole workflow on synthetic data, for a newcomer to watch.

Synthetic acquisitions (one held out and never ingested) → ingestion through Dagster → a small
U-Net trained from a settings file in the original format → evaluation, exports, deployment →
predictions on the never-ingested movie, compared with its annotations → a summary of what the
run made and measured. Every figure printed comes from the run's own files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deep_events_dagster.catalog.protocol import collection_name
from deep_events_dagster.cli.ingestion import ingest
from deep_events_dagster.cli.models import deploy
from deep_events_dagster.cli.runs import prepare_home, register_partitions, run_partition
from deep_events_dagster.cli.training import read_pointer, train, training_run_folder
from deep_events_dagster.core.acquisitions import acquisition_key
from deep_events_dagster.core.layout import Layout
from deep_events_dagster.settings.platform import PlatformSettings, load_settings

DEMO_KIND = "points"
DEMO_TREE = {
    "seed": 0,
    "n_acquisitions": 6,
    "height": 320,
    "width": 400,
    "n_frames": 32,
    "events_per_acquisition": (5, 6),
    # one channel: in two-channel synthetic movies half the events are in the second channel
    # while the annotations (three axes) do not say which, so a model of channel 0 misses them
    "channels": 1,
    # one kind: the synthetic events of every kind look alike, so a second kind's events would
    # be unlabelled look-alikes in the first kind's crops
    "kinds": ("points",),
    "csv_units": "mixed",
    "two_close_events": True,
    "edge_event": True,
}
DEMO_HARD_NEGATIVES = 6
DEMO_TRAINING = {
    # six epochs train in about 100 s on 2 CPU cores and already find the events (measured:
    # held-out event F1 0.94 and 1.00, never-ingested movie 5 of 6 events, no false alarm);
    # ten took the demo past its three minutes
    "nb_filters": 8,
    "first_conv_size": 5,
    "epochs": 6,
    "batch_size": 8,
    "n_augmentations": 2,
    "train_val_split": 0.25,
    "patience": 10,
}


def _frames_text(spans: Sequence[tuple[int, int]]) -> str:
    """``3–9, 20–26`` for half-open frame ranges (``none`` when empty)."""
    parts = [f"{a}" if b - a == 1 else f"{a}–{b - 1}" for a, b in sorted(spans)]
    return ", ".join(parts) or "none"


def demo(settings: PlatformSettings, *, workers: int) -> int:
    """The whole workflow on synthetic data: generate, ingest, train, evaluate, export, deploy,
    and predict on a movie the model never saw; ends with a summary of what was made.

    Returns
    -------
    int
        0 when every step worked; the failing step's status otherwise.
    """
    import time

    import yaml

    from deep_events_dagster.testing.trees import generate_tree

    started = time.monotonic()
    home = settings.home
    data, heldout_root = home / "demo_data", home / "demo_heldout"
    print("[1/5] synthetic acquisitions", flush=True)
    if not data.exists():
        generate_tree(data, **DEMO_TREE)
        print(f"  {DEMO_TREE['n_acquisitions']} acquisitions to ingest in {data}", flush=True)
    else:
        print(f"  using the acquisitions in {data}", flush=True)
    if not heldout_root.exists():
        generate_tree(heldout_root, seed=7, n_acquisitions=1, height=320, width=400, n_frames=32,
                      events_per_acquisition=6, channels=1, kinds=(DEMO_KIND,))  # fmt: skip
    heldout_movie = sorted(heldout_root.rglob("*.ome.tif"))[0]
    heldout = heldout_movie.parent
    print(f"  1 acquisition held out, never ingested: {heldout}", flush=True)

    if not settings.config_file.exists():
        # 128 px crops leave room for negatives beside every event in the small synthetic
        # movies; hard negatives show the model the tubule crossings it would mistake for events
        settings.config_file.write_text(
            f"# written by `deep-events demo`\ningestion:\n  crop_size: 128\n"
            f"  hard_negatives: {DEMO_HARD_NEGATIVES}\n",
            encoding="utf-8",
        )
        settings = load_settings(home)
    print("[2/5] ingesting through Dagster", flush=True)
    kinds = tuple(dict.fromkeys((*settings.kinds, *DEMO_TREE["kinds"])))
    code = ingest(load_settings(home, roots=(data,), kinds=kinds), workers=workers,
                  executor="in_process")  # fmt: skip
    if code:
        return code

    print("[3/5] training a small U-Net on the CPU (one line per epoch)", flush=True)
    settings_file = settings.training_settings_dir / "demo.yaml"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(
        "# written by `deep-events demo`: the original's training-settings format\n"
        + yaml.safe_dump(
            {
                "folder": str(home / "models"),
                "collection": collection_name(DEMO_KIND),
                "backend": "torch",
                "db_prompt": {"type": "event"},
                "settings": DEMO_TRAINING,
            },
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    code = train(settings, settings_file)
    if code:
        return code
    from deep_events_dagster.ml.training_runs import load_validated_training_file

    (run,) = load_validated_training_file(settings_file)
    model_dir = Path(read_pointer(training_run_folder(settings, run.spec) / "model.yaml")["path"])
    evaluation = yaml.safe_load((model_dir / "evaluation.yaml").read_text(encoding="utf-8"))

    print("[4/5] deploying the model for the microscope", flush=True)
    code = deploy(home, model_dir, DEMO_KIND)
    if code:
        return code

    print("[5/5] predicting on the held-out movie (a Dagster run of points/predictions)")
    heldout_settings = load_settings(home, roots=(heldout_root,), kinds=(DEMO_KIND,))
    prepare_home(heldout_settings)
    heldout_key = acquisition_key(heldout)
    register_partitions([heldout_key])
    outcome = run_partition(heldout_settings, heldout_key, job_definition="predict_job_definition")
    if not outcome.success:
        print(f"FAILED  {heldout_key}: {outcome.message}", flush=True)
        return 1
    out_dir = Layout(output_root=heldout_settings.output_root).derived_folder(heldout, heldout_root)
    record = yaml.safe_load((out_dir / f"predictions_{DEMO_KIND}.yaml").read_text(encoding="utf-8"))
    predicted = [tuple(e["frames"]) for e in record["events"]]
    annotated = [tuple(a["frames"]) for a in record["annotated"]]
    print(f"  predicted events in frames: {_frames_text(predicted)}")
    print(f"  true events in frames:      {_frames_text(annotated)}")
    print(
        f"  {record['tp']} of {record['annotated_events']} true events found, {record['fp']} "
        f"false alarm(s) (threshold {record['threshold']:g}); "
        f"{out_dir / f'predictions_{DEMO_KIND}.csv'}"
    )

    h5 = model_dir / "model.h5"
    minutes = (time.monotonic() - started) / 60
    print(
        "\nSummary\n"
        f"  made: {', '.join(collection_name(k) for k in kinds)} (the events of "
        f"{DEMO_TREE['n_acquisitions']} movies), a model, its exports, predictions\n"
        f"  held-out events (kept out of training): F1 {evaluation['f1']:.3f} at threshold "
        f"{evaluation['threshold']:.3f} (precision {evaluation['precision']:.3f}, recall "
        f"{evaluation['recall']:.3f}; {model_dir / 'evaluation.yaml'})\n"
        f"  movie never ingested: F1 {record['f1']:.3f} ({record['tp']} found, "
        f"{record['fn']} missed, {record['fp']} false)\n"
        f"  model for the microscope: {h5 if h5.is_file() else 'not exported (see exports.yaml)'}\n"
        f"  took {minutes:.1f} min. Every step was a Dagster run (ingestion per movie, the "
        "training run, the predictions): browse them and what they made with make ui",
        flush=True,
    )
    return 0
