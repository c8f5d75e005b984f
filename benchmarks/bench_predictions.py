"""Whole-movie prediction on the CPU: ours against the microscope analyser's naive way.

``run(workdir, quick)`` writes a 2048×2048×100 uint16 OME-TIFF movie
(:func:`deep_events_dagster.testing.benchmark_movies.write_large_movie`) and a model folder holding
``UNet(1, 16, 12)`` (the original's settings; random weights: speed does not depend on them),
then, on 2 threads:

``ours``
    :func:`deep_events_dagster.ml.predict.predict_movie` over every frame: each frame read once,
    normalised as in training, the whole 2048² frame through the fully convolutional network
    on the fast path (``precision: auto``: batch norm folded into the convolutions,
    channels-last, bfloat16 autocast where the CPU has native bfloat16), probabilities written
    as a compressed uint8 OME-TIFF and the per-frame table; frames/s over the whole movie.
``reference``
    The analyser's way, implemented here: the model as the microscope loads it (``model.h5``,
    ``keras.models.load_model(compile=False)``), every frame cut into 256² tiles, each tile
    normalised on its own and predicted on its own (``model.predict``, batch of one), the
    frame's score the largest tile maximum; nothing written. Timed on the first 10 frames
    (frames/s is a rate; the naive way is too slow for all 100 on 2 cores). Beside it, for
    transparency, the same tiling with the torch model in float32 (the engine ours uses).

Goal: ours ≥ 3× the reference's frames/s. Memory: the peak RSS of ``predict_movie`` in a child
process on the whole movie and on its first quarter (a separate 25-frame movie), side by side;
independent of the movie's length when the two agree. ``--quick``: 512×512×24 frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["result", "run"]

THREADS = 2
SPEED_GOAL = 3.0
TILE = 256


def _model_folder(folder: Path) -> Path:
    """A model folder with the original's UNet(1, 16, 12), random weights, threshold 0.5."""
    import torch

    from deep_events_dagster.ml.config import TrainingSettings
    from deep_events_dagster.ml.model_folder import SETTINGS_FILE, TORCH_WEIGHTS_FILE
    from deep_events_dagster.ml.torch.checkpoints import save_checkpoint
    from deep_events_dagster.ml.torch.models import build_model

    folder.mkdir(parents=True, exist_ok=True)
    settings = TrainingSettings()
    torch.manual_seed(0)
    model = build_model(settings, 1)
    (folder / SETTINGS_FILE).write_text(yaml.safe_dump(settings.as_dict()), encoding="utf-8")
    save_checkpoint(folder / TORCH_WEIGHTS_FILE, model, settings, 1, 1, 0.0, "bench")
    (folder / "evaluation.yaml").write_text(yaml.safe_dump({"threshold": 0.5}), "utf-8")
    return folder


def _movie(path: Path, n_frames: int, side: int) -> Path:
    from deep_events_dagster.testing.benchmark_movies import write_large_movie

    write_large_movie(
        path, n_frames=n_frames, height=side, width=side, n_points=4, seed=3, event_frames=(2, 3)
    )
    return path


def _tiled(movie: Path, n_frames: int, predict_tile) -> tuple[float, list[float]]:
    """Seconds for the first ``n_frames`` frames the naive way, and their scores: every 256²
    tile normalised on its own and predicted on its own."""
    import tifffile

    from deep_events_dagster.core.normalisation import normalize_image_frames

    scores = []
    started = time.perf_counter()
    with tifffile.TiffFile(movie) as tif:
        for t in range(n_frames):
            frame = tif.pages[t].asarray()
            best = 0.0
            for y in range(0, frame.shape[0], TILE):
                for x in range(0, frame.shape[1], TILE):
                    tile = normalize_image_frames(frame[y : y + TILE, x : x + TILE])
                    best = max(best, float(np.max(predict_tile(tile))))
            scores.append(best)
    return time.perf_counter() - started, scores


def _keras_tile_predictor(model_dir: Path, folder: Path):
    """The analyser's model: ``model.h5`` loaded with ``load_model(compile=False)``, one
    ``model.predict`` per tile (frames last), 2 TensorFlow threads."""
    from benchmarks.bench_exports import _configure_tensorflow_threads

    _configure_tensorflow_threads()
    from deep_events_dagster.ml.tensorflow.convert import (
        keras_model_from_torch,
        load_keras_h5,
        write_keras_h5,
    )
    from deep_events_dagster.ml.torch.checkpoints import load_model

    torch_model = load_model(model_dir / "model.pt")
    path = write_keras_h5(keras_model_from_torch(torch_model), folder / "model.h5")
    model = load_keras_h5(path)
    return lambda tile: model.predict(tile[None, :, :, None], batch_size=1, verbose=0)


def _torch_tile_predictor(model_dir: Path):
    """The same tiling with the torch model in float32 (the engine ours uses)."""
    from deep_events_dagster.ml.backend import load_predictor

    predictor = load_predictor(model_dir, device="cpu", precision="float32")
    return lambda tile: predictor.predict(tile[None, None], batch_size=1)


def _child(movie: str, model_dir: str, out_dir: str) -> None:
    """Run ``predict_movie`` and print its peak RSS (``VmHWM``) and time as JSON."""
    import torch

    from benchmarks.ingest_child import read_status
    from deep_events_dagster.ml.predict import predict_movie

    torch.set_num_threads(THREADS)
    baseline = read_status()["VmHWM"]
    started = time.perf_counter()
    from deep_events_dagster.ml.predict import load_model_predictor

    predictor = load_model_predictor(model_dir)
    prediction = predict_movie(movie, model_dir, out_dir=out_dir, predictor=predictor)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "peak_rss_kib": read_status()["VmHWM"],
                "baseline_kib": baseline,
                "seconds": seconds,
                "frames": len(prediction.frames),
                "precision": getattr(predictor, "precision", "float32"),
                "scores": [f.score for f in prediction.frames],
            }
        )
    )


def _run_child(movie: Path, model_dir: Path, out_dir: Path) -> dict[str, Any]:
    args = (movie, model_dir, out_dir)
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_predictions", "--child", *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run(workdir: str | Path | None = None, quick: bool = False) -> dict[str, Any]:
    """Time whole-movie prediction, ours against the naive reference (module docstring)."""
    import torch

    side, n_frames, reference_frames = (512, 24, 4) if quick else (2048, 100, 10)
    short_frames = n_frames // 4
    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory(prefix="bench-predictions-", dir=workdir) as tmp:
        folder = Path(tmp)
        model_dir = _model_folder(folder / "model")
        movie = _movie(folder / "long" / "movie.ome.tif", n_frames, side)
        short = _movie(folder / "short" / "movie.ome.tif", short_frames, side)
        ours = _run_child(movie, model_dir, folder / "long" / "out")
        ours_short = _run_child(short, model_dir, folder / "short" / "out")
        torch_s, _ = _tiled(movie, reference_frames, _torch_tile_predictor(model_dir))
        keras_s, reference_scores = _tiled(
            movie, reference_frames, _keras_tile_predictor(model_dir, folder)
        )
        written = sum(p.stat().st_size for p in (folder / "long" / "out").iterdir())
    ours_fps = ours["frames"] / ours["seconds"]
    reference_fps = reference_frames / keras_s
    ours_scores = np.array(ours["scores"][:reference_frames])
    return {
        "torch_tiles_frames_per_s": reference_frames / torch_s,
        "speedup_vs_torch_tiles": ours_fps / (reference_frames / torch_s),
        "precision": ours["precision"],
        "movie": f"{side}×{side}×{n_frames} uint16",
        "threads": THREADS,
        "ours_frames_per_s": ours_fps,
        "ours_seconds": ours["seconds"],
        "reference_frames_per_s": reference_fps,
        "reference_frames": reference_frames,
        "speedup": ours_fps / reference_fps,
        "peak_rss_mib": ours["peak_rss_kib"] / 1024,
        "peak_rss_short_mib": ours_short["peak_rss_kib"] / 1024,
        "short_frames": short_frames,
        "baseline_rss_mib": ours["baseline_kib"] / 1024,
        "written_mib": written / 2**20,
        # tiles normalised one by one see other numbers: the scores differ, by how much
        "score_difference_vs_reference": float(
            np.abs(ours_scores - np.array(reference_scores)).max()
        ),
    }


def result(workdir: Path | None = None, quick: bool = False):
    """The benchmark as a report section of ``benchmarks.run``."""
    from benchmarks.common import Line, Result

    data = run(workdir, quick=quick)
    return Result(
        name="predictions",
        title="Whole-movie prediction on the CPU, 2 threads",
        compares=f"predict_movie over a {data['movie']} movie vs 256² tiles one by one "
        "(each normalised and predicted on its own)",
        lines=[
            Line(
                "ours",
                f"{data['ours_frames_per_s']:.3f} frames/s",
                f"{data['ours_seconds']:.0f} s for the movie ({data['precision']}), outputs "
                f"{data['written_mib']:.0f} MiB written",
            ),
            Line(
                "reference",
                f"{data['reference_frames_per_s']:.3f} frames/s",
                f"the analyser's way, Keras model.h5, first {data['reference_frames']} frames",
            ),
            Line(
                "same tiles, torch float32",
                f"{data['torch_tiles_frames_per_s']:.3f} frames/s",
                f"ours is {data['speedup_vs_torch_tiles']:.2f}× this (same engine as ours)",
            ),
            Line(
                "peak memory",
                f"{data['peak_rss_mib']:.0f} MiB",
                f"{data['peak_rss_short_mib']:.0f} MiB for a {data['short_frames']}-frame movie "
                f"(after imports: {data['baseline_rss_mib']:.0f} MiB)",
            ),
        ],
        ratio_label="speed-up",
        ratio=float(data["speedup"]),
        target=SPEED_GOAL,
        op=">=",
        unit="×",
        digits=2,
        info=[
            "scores differ from the reference's by up to "
            f"{data['score_difference_vs_reference']:.3f} (per-tile normalisation)"
        ],
        data=data,
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(*sys.argv[2:])
    else:
        import argparse

        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--quick", action="store_true")
        args = parser.parse_args()
        print(yaml.safe_dump(run(quick=args.quick), sort_keys=False))
