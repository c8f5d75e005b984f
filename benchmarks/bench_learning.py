"""Learning: does a model trained on CPU find events in acquisitions it never saw?

Data: :func:`deep_events_dagster.testing.learning.build_learning_set` — synthetic
mitochondria-like movies (tubules drifting on two layers, Poisson noise; each event a spot on a
tubule about as bright as the tubules themselves), ingested by the core (Gaussian ground truth,
event folders with auto-negatives). Whole acquisitions are held out: the training set's ``eval``
split (the trainer picks its best epoch and the evaluation its threshold there) and a separate
set of *test* acquisitions that take no part in any choice.

Sections, all in one run:

``main``
    The settings file of the original's README (UNet(1, 16, 12), soft focal α 0.4 γ 2, Poisson
    0.2, batch 8, 256² crops, our defaults for everything it leaves out — among them training
    on random 128² windows of the crops, ``patch_size``), trained on the CPU
    epoch by epoch within a wall-clock budget (10 minutes; ``--quick``: 2), exactly as
    :func:`deep_events_dagster.ml.torch.train.train` runs it. After every epoch: event-level F1
    on the held-out acquisitions at the threshold the evaluation would choose (F-beta, β 0.1),
    against epochs, wall seconds and process CPU seconds. The kept checkpoint is chosen as the
    trainer chooses it (``monitor: event_f1``: the best held-out event F1 at the evaluation's
    threshold, ties by margin then loss; :class:`deep_events_dagster.ml.epochs.BestEpoch`),
    so the held-out acquisitions take part in a choice. Headline: event-level F1 of that
    checkpoint on the *test* acquisitions (never seen, no choice made on them) at the threshold
    chosen on the held-out ones; goal ≥ 0.95 within the budget. The epoch the same budget in
    process CPU seconds would keep is scored on the test acquisitions too.
``whole_crops``
    The same training on whole 256² crops (``patch_size: null``) within the same budget, side
    by side (not in ``--quick``).
``recipe``
    Smaller crops (64², UNet(1, 8, 5)) so that each choice of the recipe is trained side by
    side from the same seed for the same number of epochs: the default recipe, then one change
    at a time (learning rate 1e-4, no output-bias prior, no positive oversampling, one-cycle and
    constant schedules, no gradient clipping, float32 instead of bfloat16 autocast). Printed:
    event-level F1 on held-out and test acquisitions, and wall seconds.
``legacy``
    The five real event folders of the original project (``../shared/data/legacy_events``,
    iSIM, COS-7, mitochondrial divisions; their fps corrected from ``ome.time_increment``):
    the ``main`` model scored on them at its threshold (a synthetic → real check), and a model
    trained on four of them, scored on the fifth.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

MAIN_SETTINGS = {
    "epochs": 150,
    "batch_size": 8,
    "loss": "soft_focal",
    "weight": {"alpha": 0.4, "gamma": 2},
    "model": "unet",
    "poisson": 0.2,
    "n_timepoints": 1,
}
RECIPE_BASE = {**MAIN_SETTINGS, "nb_filters": 8, "first_conv_size": 5, "n_augmentations": 2}
RECIPE_VARIANTS: dict[str, dict[str, Any]] = {
    "default recipe": {},
    "initial_learning_rate 1e-4 (the former default)": {"initial_learning_rate": 1e-4},
    "no output-bias prior": {"output_bias_prior": False},
    "no positive oversampling": {"positive_fraction": 0.0},
    "one-cycle schedule": {"lr_schedule": "onecycle"},
    "constant learning rate": {"lr_schedule": "constant"},
    "no gradient clipping": {"gradient_clip_norm": 0.0},
    "float32 (no bf16 autocast)": {"mixed_precision": "off"},
}
F1_GOAL = 0.95


def _legacy_folder() -> Path:
    base = os.environ.get("DEEP_EVENTS_SHARED_DATA")
    if base:
        return Path(base) / "legacy_events"
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "legacy_events"


def _event_scores(model, images: np.ndarray, masks: np.ndarray, events) -> dict[str, Any]:
    """Per-event maxima of a model's probabilities and of the ground truth."""
    from deep_events_dagster.core.metric_units import event_groups, sample_max, unit_scores
    from deep_events_dagster.ml.torch.predictor import predict

    probabilities = predict(model, images, batch_size=16)
    groups = event_groups(events, len(images))
    return {
        "scores": unit_scores(sample_max(probabilities), groups),
        "truth": unit_scores(sample_max(masks), groups),
        "probabilities": probabilities,
    }


def _at_threshold(scores: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, Any]:
    """Event-level counts and F1 at ``threshold`` (one score and one truth maximum per event)."""
    from deep_events_dagster.core.metrics import event_counts, f1_from_counts

    counts = event_counts(scores, truth, None, threshold)
    return {"f1": f1_from_counts(*counts), **counts._asdict()}


def _chosen(scores: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Event-level result at the threshold the evaluation chooses (best F-beta)."""
    from deep_events_dagster.core.metrics import best_threshold, max_sweep

    threshold = float(best_threshold(max_sweep(scores, truth), metric="fbeta"))
    return {"threshold": threshold, **_at_threshold(scores, truth, threshold)}


def _stack(folder: Path) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text(encoding="utf-8"))
    images = np.load(folder / "eval_images.npy")
    masks = np.load(folder / "eval_masks.npy")
    return images, masks, manifest["events"]


class _Keeper:
    """The kept epoch under one budget (wall or CPU seconds), as the trainer keeps it."""

    def __init__(self, monitor: str, patience: int | None, clock: str, budget_s: float):
        from deep_events_dagster.ml.epochs import BestEpoch

        self.best = BestEpoch(monitor, patience)
        self.clock, self.budget_s = clock, budget_s
        self.kept: dict[str, Any] = {
            "val_loss": math.nan, "epoch": 0, "threshold": 1.0, "f1": 0.0,
            "tp": 0, "fp": 0, "fn": 0, "tn": 0,
        }  # fmt: skip
        self.state = None

    def offer(self, row: dict[str, Any], validation, session) -> None:
        if row[self.clock] > self.budget_s:
            return
        if self.best.offer(row["epoch"], validation.loss, validation):
            self.kept = {
                "val_loss": validation.loss,
                "epoch": row["epoch"],
                "threshold": row["chosen_threshold"],
                **{k: row[f"chosen_{k}"] for k in ("f1", "tp", "fp", "fn", "tn")},
            }
            self.state = session.state()


def train_within_budget(
    training_set: Path,
    settings: Mapping[str, Any],
    *,
    budget_s: float,
    max_epochs: int | None = None,
    test_set: Path | None = None,
    say=print,
) -> dict[str, Any]:
    """Train epoch by epoch as ``train()`` does (the same session, validation and choice of the
    kept epoch, :class:`~deep_events_dagster.ml.epochs.BestEpoch`), until the budget,
    ``max_epochs`` or early stopping; print the held-out events' score after each epoch; keep
    the best epoch among those that *ended* within the budget (the epoch that crosses it is
    trained and printed, never kept). The budget is wall seconds; the epoch the same budget in
    process CPU seconds would keep is scored too (``cpu_budget``)."""
    import torch

    from deep_events_dagster.core.metric_units import unit_scores
    from deep_events_dagster.ml.config import TrainingSettings
    from deep_events_dagster.ml.torch.train import prepare_training

    config = TrainingSettings.from_mapping(dict(settings))
    session = prepare_training(training_set, config, "cpu")
    epochs_cap = max_epochs or config.epochs
    rows = []
    wall = _Keeper(config.monitor, config.patience, "wall_s", budget_s)
    cpu = _Keeper(config.monitor, config.patience, "cpu_s", budget_s)
    event_truth = _event_truth(session.data)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for epoch in range(1, epochs_cap + 1):
        session.train_epoch(epoch)
        validation = session.validate()
        session.end_of_epoch(validation.loss)
        counts = validation.event_counts
        chosen = validation.event_score
        event_scores = unit_scores(validation.sample_max, session.data.eval_groups)
        at_chosen = _at_threshold(event_scores, event_truth, chosen.threshold)
        row = {
            "epoch": epoch,
            "wall_s": round(time.perf_counter() - wall0, 1),
            "cpu_s": round(time.process_time() - cpu0, 1),
            "val_loss": validation.loss,
            "event_f1_at_0.5": validation.event_f1,
            "chosen_threshold": chosen.threshold,
            **{f"chosen_{k}": v for k, v in at_chosen.items()},
        }
        within = row["wall_s"] <= budget_s
        row["within_budget"] = within
        rows.append(row)
        say(
            f"      epoch {epoch:>3}  wall {row['wall_s']:>6.0f} s  cpu {row['cpu_s']:>6.0f} s  "
            f"held-out event F1 {at_chosen['f1']:.3f} at {chosen.threshold:.2f} "
            f"(tp {at_chosen['tp']} fp {at_chosen['fp']} fn {at_chosen['fn']} "
            f"tn {at_chosen['tn']}), at 0.5 {validation.event_f1:.3f} {list(counts)}, "
            f"val loss {validation.loss:.3g}" + ("" if within else "  (after the budget)")
        )
        wall.offer(row, validation, session)
        cpu.offer(row, validation, session)
        if wall.best.should_stop or not within or row["wall_s"] >= budget_s:
            break
    result = {
        "epochs": rows,
        "kept": wall.kept,
        "monitor": config.monitor,
        "wall_s": rows[-1]["wall_s"],
        "cpu_s": rows[-1]["cpu_s"],
        "model": session.model,
        "precision": session.precision,
        "threads": torch.get_num_threads(),
        "cpu_budget": {"kept": cpu.kept},
    }
    reach = next((r for r in rows if r["chosen_f1"] >= 0.9), None)
    result["reach_0.9"] = None if reach is None else (reach["epoch"], reach["wall_s"])
    if test_set is not None:
        t_images, t_masks, t_events = _stack(test_set)
        for name, keeper in (("cpu_budget", cpu), ("wall", wall)):  # the wall one stays loaded
            if keeper.state is not None:
                session.restore(keeper.state)
            scored = _event_scores(session.model, t_images, t_masks, t_events)
            kept = keeper.kept
            test = _at_threshold(scored["scores"], scored["truth"], kept["threshold"])
            test["own_best"] = _chosen(scored["scores"], scored["truth"])
            if name == "wall":
                result["test"] = test
            else:
                result["cpu_budget"]["test"] = test
            say(
                f"      {budget_s:.0f} {'CPU' if name == 'cpu_budget' else 'wall'} seconds: "
                f"kept epoch {kept['epoch']} (held-out F1 {kept['f1']:.3f} at "
                f"{kept['threshold']:.2f}); test acquisitions at that threshold: F1 "
                f"{test['f1']:.3f} (tp {test['tp']} fp {test['fp']} fn {test['fn']} "
                f"tn {test['tn']})"
            )
    elif wall.state is not None:
        session.restore(wall.state)
    return result


def _event_truth(data) -> np.ndarray:
    """Per eval event, the maximum of its ground truth (computed once per training)."""
    from deep_events_dagster.core.metric_units import sample_max, unit_scores

    return unit_scores(sample_max(data.eval_masks), data.eval_groups)


def _legacy_documents(folder: Path) -> list[dict[str, Any]]:
    from deep_events_dagster.catalog.legacy import legacy_document

    return [
        legacy_document(p)
        for p in sorted(folder.iterdir())
        if p.is_dir() and (p / "event_db.yaml").is_file()
    ]


SECTIONS = ("main", "whole_crops", "recipe", "legacy")


def run(
    workdir: Path | None = None,
    quick: bool = False,
    say=print,
    sections: tuple[str, ...] = SECTIONS,
) -> dict[str, Any]:
    """The sections asked for (all by default); returns the figures (module docstring)."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    # A fixed folder: event ids hash the acquisitions' absolute paths, and they order the
    # samples, so a random temporary name would change the training from run to run.
    root = Path(workdir or tempfile.gettempdir()) / "deep-events-bench-learning"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    out: dict[str, Any] = {}
    main: dict[str, Any] | None = None
    try:
        # -- main --------------------------------------------------------------------------
        if "main" in sections:
            main = _main_section(root, quick, say)
            out["main"] = {k: v for k, v in main.items() if k != "model"}
        if "whole_crops" in sections and not quick:
            out["whole_crops"] = _whole_crops_section(root, say)
        if "recipe" in sections:
            out["recipe"] = _recipe_section(root, quick, say)
        if "legacy" in sections:
            legacy = _legacy_section(root, quick, say, main)
            if legacy is not None:
                out["legacy"] = legacy
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _main_section(root: Path, quick: bool, say) -> dict[str, Any]:
    from deep_events_dagster.testing.learning import build_learning_set

    budget = 120.0 if quick else 600.0
    say(f"  main: building the learning set in {root}")
    main_set = build_learning_set(
        root / "main",
        n_train_acquisitions=4 if quick else 8,
        n_held_out_acquisitions=2 if quick else 3,
        n_test_acquisitions=2 if quick else 6,
        size=1024,
        crop_size=256,
        n_frames=20,
        events_per_acquisition=(3, 5),
    )
    ts = main_set.training_set
    say(
        f"    training set: {ts.n_train} train samples ({ts.path.name}), {ts.n_eval} "
        f"held-out samples; test set {main_set.test_set.n_eval} samples; budget {budget:.0f} s"
    )
    main = train_within_budget(
        ts.path, MAIN_SETTINGS, budget_s=budget, test_set=main_set.test_set.path, say=say
    )
    main["train_samples"], main["eval_samples"] = ts.n_train, ts.n_eval
    return main


def _whole_crops_section(root: Path, say) -> dict[str, Any]:
    """The main training on whole 256² crops (``patch_size: null``), same data and budget."""
    from deep_events_dagster.core.training_set_folder import read_training_set_manifest

    folder = next((root / "main" / "training_sets").glob("ts_*"), None)
    test = next((root / "main" / "test_sets").glob("ts_*"), None)
    if folder is None or test is None or not read_training_set_manifest(folder):
        say("  whole_crops: needs the main section's data; skipped")
        return {}
    say("  whole_crops: the main training on whole 256² crops (patch_size: null), side by side")
    whole = train_within_budget(
        folder, {**MAIN_SETTINGS, "patch_size": None}, budget_s=600.0, test_set=test, say=say
    )
    return {
        "kept": whole["kept"],
        "test": {k: whole["test"][k] for k in ("f1", "tp", "fp", "fn", "tn")},
        "epochs": len(whole["epochs"]),
        "reach_0.9": whole["reach_0.9"],
    }


def _recipe_section(root: Path, quick: bool, say) -> dict[str, Any]:
    from deep_events_dagster.testing.learning import SMALL_PROBLEM, build_learning_set

    say("  recipe: the same small problem, one change at a time")
    small = build_learning_set(root / "small", **SMALL_PROBLEM)
    recipe = {}
    variants = dict(list(RECIPE_VARIANTS.items())[:3]) if quick else RECIPE_VARIANTS
    for name, change in variants.items():
        say(f"    {name}")
        trained = train_within_budget(
            small.training_set.path,
            {**RECIPE_BASE, **change, "patience": None},
            budget_s=math.inf,
            max_epochs=6 if quick else 15,
            test_set=small.test_set.path,
            say=lambda _: None,
        )
        recipe[name] = {
            "held_out_f1": trained["kept"]["f1"],
            "test_f1": trained["test"]["f1"],
            "test_counts": [trained["test"][k] for k in ("tp", "fp", "fn", "tn")],
            "held_out_threshold": trained["kept"]["threshold"],
            "test_own_threshold_f1": trained["test"]["own_best"]["f1"],
            "kept_epoch": trained["kept"]["epoch"],
            "wall_s": trained["wall_s"],
            "precision": trained["precision"],
        }
        say(
            f"      held-out F1 {trained['kept']['f1']:.3f} at {trained['kept']['threshold']:.2f}, "
            f"test F1 {trained['test']['f1']:.3f} {recipe[name]['test_counts']} (at its own "
            f"best threshold {trained['test']['own_best']['f1']:.3f}), kept epoch "
            f"{trained['kept']['epoch']}, {trained['wall_s']:.0f} s ({trained['precision']})"
        )
    return recipe


def _legacy_section(root: Path, quick: bool, say, main: dict[str, Any] | None):
    from deep_events_dagster.core.training_set import build_training_set
    from deep_events_dagster.core.training_set_parameters import TrainingSetParameters

    folder = _legacy_folder()
    out: dict[str, Any] = {}
    if not folder.is_dir():
        say(f"  legacy: no events at {folder}; skipped")
        return None
    docs = _legacy_documents(folder)
    if main is not None:
        synthetic_model = main["model"]
        eval_docs = [{**d, "dataset_split": "eval"} for d in docs]
        legacy_all = build_training_set(
            eval_docs,
            params=TrainingSetParameters(n_timepoints=1),
            out_root=root / "legacy_all",
            db_prompt={},
            collection="legacy",
        )
        images, masks, events = _stack(legacy_all.path)
        scored = _event_scores(synthetic_model, images, masks, events)
        on_legacy = _at_threshold(scored["scores"], scored["truth"], main["kept"]["threshold"])
        frames_hit = int(
            np.count_nonzero(
                (scored["probabilities"].reshape(len(images), -1).max(axis=1) > 0.5)
                & (masks.reshape(len(masks), -1).max(axis=1) > 0.5)
            )
        )
        positive_frames = int(np.count_nonzero(masks.reshape(len(masks), -1).max(axis=1) > 0.5))
        out = {
            "synthetic_model": on_legacy,
            "frames_found_at_0.5": frames_hit,
            "positive_frames": positive_frames,
        }
        say(
            f"  legacy: the main (synthetic) model on the {len(docs)} real events: "
            f"tp {on_legacy['tp']} fn {on_legacy['fn']} at {main['kept']['threshold']:.2f}; "
            f"{frames_hit}/{positive_frames} positive frames above 0.5"
        )
    split_docs = [
        {**d, "dataset_split": "eval" if i == len(docs) - 1 else "train"}
        for i, d in enumerate(docs)
    ]
    legacy_set = build_training_set(
        split_docs,
        params=TrainingSetParameters(n_timepoints=1),
        out_root=root / "legacy_split",
        db_prompt={},
        collection="legacy",
    )
    trained = train_within_budget(
        legacy_set.path,
        {**MAIN_SETTINGS, "patience": None},
        budget_s=60.0 if quick else 180.0,
        max_epochs=20,
        say=lambda _: None,
    )
    images, masks, events = _stack(legacy_set.path)
    scored = _event_scores(trained["model"], images, masks, events)
    frame_max = scored["probabilities"].reshape(len(images), -1).max(axis=1)
    truth = masks.reshape(len(masks), -1).max(axis=1) > 0.5
    out["trained_on_four"] = {
        "epochs": len(trained["epochs"]),
        "held_out_positive_frames": int(truth.sum()),
        "held_out_frames_found_at_0.5": int(np.count_nonzero((frame_max > 0.5) & truth)),
        "held_out_negative_frames": int((~truth).sum()),
        "held_out_false_frames_at_0.5": int(np.count_nonzero((frame_max > 0.5) & ~truth)),
    }
    say(f"  legacy: trained on four real events, scored on the fifth: {out}")
    return out


def result(workdir: Path | None = None, quick: bool = False):
    """The benchmark as a report section of ``benchmarks.run`` (headline: test-acquisition F1)."""
    from benchmarks.common import Line, Result

    data = run(workdir, quick=quick)
    main = data["main"]
    kept = main["kept"]
    lines = [
        Line(
            "training set",
            f"{main['train_samples']} / {main['eval_samples']}",
            "train / held-out samples (every frame of every event, auto-negatives included)",
        ),
        Line(
            "kept checkpoint",
            f"epoch {kept['epoch']}",
            f"of {len(main['epochs'])} in {main['wall_s']:.0f} s wall, {main['cpu_s']:.0f} s "
            f"CPU ({main['precision']}, {main['threads']} threads)",
        ),
        Line(
            "held-out events",
            f"F1 {kept['f1']:.3f}",
            f"threshold {kept['threshold']:.2f}: tp {kept['tp']} fp {kept['fp']} fn {kept['fn']} "
            f"tn {kept['tn']}",
        ),
    ]
    if "test" in main:
        test = main["test"]
        lines.append(
            Line(
                "test acquisitions",
                f"F1 {test['f1']:.3f}",
                f"same threshold, never seen: tp {test['tp']} fp {test['fp']} fn {test['fn']} "
                f"tn {test['tn']}",
            )
        )
    cpu_budget = main.get("cpu_budget", {})
    if "test" in cpu_budget:
        test, kept_cpu = cpu_budget["test"], cpu_budget["kept"]
        lines.append(
            Line(
                "same budget in CPU seconds",
                f"F1 {test['f1']:.3f}",
                f"test acquisitions; kept epoch {kept_cpu['epoch']} (held-out F1 "
                f"{kept_cpu['f1']:.3f} at {kept_cpu['threshold']:.2f})",
            )
        )
    reach = main.get("reach_0.9")
    lines.append(
        Line(
            "time to F1 0.9",
            "never" if reach is None else f"{reach[1]:.0f} s",
            "" if reach is None else f"epoch {reach[0]}",
        )
    )
    whole = data.get("whole_crops")
    if whole:
        reach = whole["reach_0.9"]
        lines.append(
            Line(
                "whole 256² crops instead",
                f"F1 {whole['kept']['f1']:.3f}",
                f"same budget: test {whole['test']['f1']:.3f}, kept epoch "
                f"{whole['kept']['epoch']} of {whole['epochs']}, F1 0.9 "
                + ("never" if reach is None else f"at {reach[1]:.0f} s"),
            )
        )
    for name, row in data.get("recipe", {}).items():
        lines.append(
            Line(
                f"recipe: {name}",
                f"F1 {row['held_out_f1']:.3f}",
                f"test {row['test_f1']:.3f}, kept epoch {row['kept_epoch']}, {row['wall_s']:.0f} s",
            )
        )
    info = [
        f"epoch {r['epoch']}: {r['wall_s']:.0f} s wall / {r['cpu_s']:.0f} s CPU → held-out "
        f"event F1 {r['chosen_f1']:.3f} at {r['chosen_threshold']:.2f}"
        + ("" if r["within_budget"] else " (after the budget: not kept)")
        for r in main["epochs"]
    ]
    if "legacy" in data:
        info.append(f"legacy events: {data['legacy']}")
    return Result(
        name="learning",
        title="Event-level F1 on held-out acquisitions, the original's settings, CPU",
        compares="a model trained within the time budget vs the goal, on acquisitions it "
        "never saw; recipe choices side by side",
        lines=lines,
        ratio_label="test-acquisition event F1",
        ratio=float(main["test"]["f1"] if "test" in main else kept["f1"]),
        target=F1_GOAL,
        op=">=",
        unit="",
        digits=3,
        info=info,
        data=data,
    )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=SECTIONS)
    args = parser.parse_args()
    figures = run(quick=args.quick, sections=tuple(args.sections))
    print(yaml.safe_dump(figures, sort_keys=False, default_flow_style=None))
