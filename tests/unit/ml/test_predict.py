"""Predictions on whole movies: windows, tiles, bounded memory, outputs, events, comparison."""

from __future__ import annotations

import csv
import itertools
import json
import tracemalloc

import numpy as np
import pytest
import tifffile
import yaml
from scipy import ndimage

from deep_events_dagster.core.errors import InputError, MovieError
from deep_events_dagster.core.fsutil import TEMP_PREFIX
from deep_events_dagster.ml import predict
from deep_events_dagster.ml.predict import predict_movie
from deep_events_dagster.ml.predict_compare import (
    annotated_events,
    compare_events,
    frame_score_auroc,
)
from deep_events_dagster.ml.predict_maps import probability_maps, tile_starts, window_frames
from deep_events_dagster.ml.predict_records import AnnotatedEvent, PredictedEvent
from deep_events_dagster.testing.movies import synthesize_movie
from deep_events_dagster.testing.ome_tiff import write_ome_movie
from deep_events_dagster.testing.trees import generate_tree

# --------------------------------------------------------------------------- helpers


def write_movie(path, frames, *, fps=1.0):
    axes = "TCYX" if frames.ndim == 4 else "TYX"
    write_ome_movie(
        path,
        frames,
        axes=axes,
        physical_size_x=0.1,
        physical_size_y=0.1,
        time_increment_s=1.0 / fps,
    )
    return path


def write_model_folder(path, *, n_timepoints=1, fps=None, threshold=None):
    path.mkdir(parents=True, exist_ok=True)
    settings = {"backend": "torch", "n_timepoints": n_timepoints, "fps": fps}
    (path / "settings.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    if threshold is not None:
        (path / "evaluation.yaml").write_text(yaml.safe_dump({"threshold": threshold}), "utf-8")
    return path


def hot_pixel_movie(n_frames, height, width, positions, *, background=100, value=1000):
    """Frames of ``background`` with pixels at ``positions[t]`` (a list of (y, x)) set to
    ``value``: after per-frame normalisation those pixels are 1 and the rest 0."""
    movie = np.full((n_frames, height, width), background, dtype=np.uint16)
    for t, pixels in enumerate(positions):
        for y, x in pixels:
            movie[t, y, x] = value
    return movie


class RecordingPredictor:
    """Probability = ``factor`` × the window's latest frame; keeps every window it saw."""

    def __init__(self, in_channels=1, factor=0.8, record=True):
        self.in_channels = in_channels
        self.factor = np.float32(factor)
        self.record = record
        self.windows = []
        self.batch_sizes = []

    def predict(self, images, batch_size=8):
        assert images.dtype == np.float32 and images.ndim == 4
        assert images.shape[-2] % 4 == 0 and images.shape[-1] % 4 == 0, images.shape
        if self.record:
            self.windows.extend(images.copy())
        self.batch_sizes.append(len(images))
        return images[:, -1] * self.factor


class BlurPredictor:
    """A fully convolutional stand-in: a Gaussian blur of the latest frame."""

    in_channels = 1

    def predict(self, images, batch_size=8):
        assert images.shape[-2] % 4 == 0 and images.shape[-1] % 4 == 0, images.shape
        return ndimage.gaussian_filter(images[:, -1], sigma=(0, 1.5, 1.5), mode="reflect")


class SpotSizePredictor:
    """Probability at the spot = 0.5 + 0.1 × (its pixel count − 1): a 1-pixel spot scores
    exactly 0.5, a 2-pixel spot 0.6, a 3-pixel spot 0.7."""

    in_channels = 1

    def predict(self, images, batch_size=8):
        last = images[:, -1]
        count = (last > 0.5).sum(axis=(1, 2)).astype(np.float32)
        return last * (0.5 + 0.1 * (count - 1))[:, None, None]


@pytest.fixture
def use_predictor(monkeypatch):
    def install(predictor):
        monkeypatch.setattr(
            predict,
            "load_predictor",
            lambda model_dir, device="cpu", precision="float32": predictor,
        )
        return predictor

    return install


def leftovers(folder):
    return [p.name for p in folder.rglob("*") if p.name.startswith(TEMP_PREFIX)]


# --------------------------------------------------------------------------- windows


def test_window_frames_end_at_the_frame_oldest_first_and_clamp_to_frame_zero():
    assert window_frames(5, 3, 2) == (1, 3, 5)
    assert window_frames(1, 3, 2) == (0, 0, 1)
    assert window_frames(0, 1) == (0,)
    assert window_frames(7, 2, 3) == (4, 7)
    with pytest.raises(ValueError):
        window_frames(3, 0)


def test_each_frame_gets_the_window_at_the_model_frame_step(tmp_path, use_predictor):
    # 13×11 (not divisible by 4); frame t has its hot pixel on row t
    n = 12
    movie = hot_pixel_movie(n, 13, 11, [[(t, t % 11)] for t in range(n)])
    path = write_movie(tmp_path / "m.ome.tif", movie, fps=3.0)
    model = write_model_folder(tmp_path / "model", n_timepoints=2, fps=1.0)
    fake = use_predictor(RecordingPredictor(in_channels=2))

    calls = []
    result = predict_movie(path, model, batch_size=4, progress=lambda *a: calls.append(a))

    assert calls == [(i + 1, n) for i in range(n)]
    assert result.frame_step == 3  # 3 fps movie, model trained at 1 fps: every 3rd frame
    assert result.n_timepoints == 2
    rows = [tuple(int(frame[:13, :11].max(axis=1).argmax()) for frame in w) for w in fake.windows]
    assert rows == [(max(0, i - 3), i) for i in range(n)]
    assert max(fake.batch_sizes) <= 4
    assert [f.frame for f in result.frames] == list(range(n))
    assert [(f.y, f.x) for f in result.frames] == [(t, t % 11) for t in range(n)]
    assert all(f.score == pytest.approx(0.8) for f in result.frames)


def test_a_frame_rate_the_training_rule_skips_gives_step_1_and_a_note(tmp_path, use_predictor):
    movie = hot_pixel_movie(5, 8, 8, [[(t, t)] for t in range(5)])
    path = write_movie(tmp_path / "m.ome.tif", movie, fps=1.0)
    model = write_model_folder(tmp_path / "model", n_timepoints=2, fps=2.0)
    fake = use_predictor(RecordingPredictor(in_channels=2))

    result = predict_movie(path, model)

    assert result.frame_step == 1
    assert any("frame step 1" in note and "2 fps" in note for note in result.notes)
    rows = [tuple(int(frame.max(axis=1).argmax()) for frame in w) for w in fake.windows]
    assert rows == [(max(0, i - 1), i) for i in range(5)]


def test_the_movie_channel_can_be_chosen(tmp_path, use_predictor):
    movie = np.full((3, 2, 8, 8), 100, dtype=np.uint16)
    for t in range(3):
        movie[t, 0, 0, t] = 1000
        movie[t, 1, 5, t] = 1000
    path = write_movie(tmp_path / "m.ome.tif", movie)
    model = write_model_folder(tmp_path / "model")
    use_predictor(RecordingPredictor())

    assert [(f.y, f.x) for f in predict_movie(path, model).frames] == [(0, 0), (0, 1), (0, 2)]
    second = predict_movie(path, model, channel=1)
    assert second.channel == 1
    assert [(f.y, f.x) for f in second.frames] == [(5, 0), (5, 1), (5, 2)]
    with pytest.raises(InputError, match="channel 2"):
        predict_movie(path, model, channel=2)


# --------------------------------------------------------------------------- tiles


def test_tiles_cover_the_side_and_end_at_its_end():
    assert tile_starts(100, 128, 16) == [0]
    assert tile_starts(150, 64, 16) == [0, 48, 86]
    assert tile_starts(152, 64, 18, align=4) == [0, 44, 88]
    for size in (65, 133, 150, 1000):
        starts = tile_starts(size, 64, 16)
        assert starts[-1] + 64 == size
        assert all(b - a <= 48 for a, b in itertools.pairwise(starts))


def test_tiled_and_whole_frames_agree_for_a_fully_convolutional_model():
    rng = np.random.default_rng(0)
    frames = rng.random((2, 1, 150, 133), dtype=np.float32)
    frames[0, 0, 70, 60] = frames[1, 0, 40, 100] = 20.0  # a peak inside, near a tile seam
    frames = ndimage.gaussian_filter(frames, sigma=(0, 0, 2, 2))
    frames /= frames.max(axis=(2, 3), keepdims=True)

    whole = probability_maps(BlurPredictor(), frames, max_tile=1024)
    tiled = probability_maps(BlurPredictor(), frames, max_tile=64, tile_overlap=16)

    assert whole.shape == tiled.shape == (2, 150, 133)
    # the seams do not show: the tiles' edges get no weight
    assert np.abs(tiled - whole).max() < 5e-4  # measured 1e-5 (4e-3 weighting the edges)
    np.testing.assert_allclose(tiled.max(axis=(1, 2)), whole.max(axis=(1, 2)), atol=1e-3)


def test_large_frames_are_tiled_in_predict_movie(tmp_path, use_predictor):
    rng = np.random.default_rng(1)
    movie = (100 + 900 * ndimage.gaussian_filter(rng.random((3, 90, 77)), (0, 3, 3))).astype(
        np.uint16
    )
    path = write_movie(tmp_path / "m.ome.tif", movie)
    model = write_model_folder(tmp_path / "model")
    use_predictor(BlurPredictor())

    whole = predict_movie(path, model, out_dir=tmp_path / "whole")
    tiled = predict_movie(path, model, out_dir=tmp_path / "tiled", max_tile=32, tile_overlap=8)

    for a, b in zip(whole.frames, tiled.frames):
        assert b.score == pytest.approx(a.score, abs=0.01)
        assert abs(a.y - b.y) <= 1 and abs(a.x - b.x) <= 1
    a = tifffile.imread(whole.movie_out_path).astype(int)
    b = tifffile.imread(tiled.movie_out_path).astype(int)
    assert a.shape == b.shape == (3, 90, 77)
    assert np.abs(a - b).max() <= 8 and np.abs(a - b).mean() < 0.5


# --------------------------------------------------------------------------- memory


def write_long_movie(path, n_frames, side=256):
    rng = np.random.default_rng(2)
    base = rng.integers(100, 400, size=(side, side), dtype=np.uint16)

    def frame(t):
        out = base.copy()
        out[(7 * t) % side, (11 * t) % side] = 4000
        return out

    write_ome_movie(
        path,
        frame,
        shape=(n_frames, side, side),
        dtype="uint16",
        axes="TYX",
        physical_size_x=0.1,
        physical_size_y=0.1,
        time_increment_s=1.0,
    )
    return path


def peak_memory(function):
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_movie(tmp_path, use_predictor):
    n, side = 400, 256
    long_movie = write_long_movie(tmp_path / "long.ome.tif", n, side)
    short_movie = write_long_movie(tmp_path / "short.ome.tif", 40, side)
    model = write_model_folder(tmp_path / "model", n_timepoints=3)
    use_predictor(RecordingPredictor(in_channels=3, record=False))

    def run(movie, out):
        return predict_movie(movie, model, out_dir=tmp_path / out, batch_size=4)

    short, short_peak = peak_memory(lambda: run(short_movie, "short"))
    result, peak = peak_memory(lambda: run(long_movie, "long"))

    assert len(short.frames) == 40 and len(result.frames) == n
    assert [(f.y, f.x) for f in result.frames[:3]] == [(0, 0), (7, 11), (14, 22)]
    movie_bytes = n * side * side * 2
    # a few frames' worth (4 windows of 3 float32 frames ≈ 3 MiB, and their outputs)
    assert peak < movie_bytes / 5, (peak, movie_bytes)
    assert peak < 1.25 * short_peak, (peak, short_peak)  # ten times the frames, same memory
    with tifffile.TiffFile(result.movie_out_path) as tif:
        assert tif.series[0].shape == (n, side, side)


# --------------------------------------------------------------------------- outputs


def test_csv_and_probability_movie_are_written_atomically(tmp_path, use_predictor):
    n = 6
    movie = hot_pixel_movie(n, 10, 14, [[(t, 2 * t)] for t in range(n)])
    path = write_movie(tmp_path / "acq" / "m.ome.tif", movie)
    model = write_model_folder(tmp_path / "model")
    use_predictor(RecordingPredictor(factor=0.8))
    out = tmp_path / "out"

    result = predict_movie(path, model, out_dir=out, kind="fission")

    assert result.csv_path == out / "predictions_fission.csv"
    assert result.movie_out_path == out / "predictions_fission.ome.tif"
    assert sorted(p.name for p in out.iterdir()) == [
        "predictions_fission.csv",
        "predictions_fission.ome.tif",
    ]
    assert leftovers(tmp_path) == []
    with tifffile.TiffFile(result.movie_out_path) as tif:
        assert tif.is_ome
        assert tif.series[0].axes == "TYX"
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        data = tif.asarray()
    assert data.shape == (n, 10, 14) and data.dtype == np.uint8
    expected = np.zeros((n, 10, 14), dtype=np.uint8)
    for t in range(n):
        expected[t, t, 2 * t] = 204  # round(0.8 × 255)
    np.testing.assert_array_equal(data, expected)

    rows = list(csv.DictReader(result.csv_path.read_text().splitlines()))
    assert list(rows[0]) == ["frame", "score", "y", "x"]
    assert len(rows) == n
    for row, frame in zip(rows, result.frames):
        assert int(row["frame"]) == frame.frame
        assert float(row["score"]) == frame.score
        assert (int(row["y"]), int(row["x"])) == (frame.y, frame.x)


def test_without_out_dir_nothing_is_written_and_the_movie_is_optional(tmp_path, use_predictor):
    movie = hot_pixel_movie(3, 8, 8, [[(t, t)] for t in range(3)])
    path = write_movie(tmp_path / "acq" / "m.ome.tif", movie)
    model = write_model_folder(tmp_path / "model")
    use_predictor(RecordingPredictor())
    before = sorted(tmp_path.rglob("*"))

    result = predict_movie(path, model)
    assert result.csv_path is None and result.movie_out_path is None
    assert sorted(tmp_path.rglob("*")) == before

    csv_only = predict_movie(path, model, out_dir=tmp_path / "out", write_movie=False)
    assert csv_only.movie_out_path is None
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["predictions_points.csv"]


# --------------------------------------------------------------------------- threshold, events


def test_the_threshold_comes_from_the_evaluation_else_0_5(tmp_path, use_predictor):
    path = write_movie(tmp_path / "m.ome.tif", hot_pixel_movie(2, 8, 8, [[(1, 1)], [(2, 2)]]))
    use_predictor(RecordingPredictor())

    evaluated = predict_movie(path, write_model_folder(tmp_path / "a", threshold=0.42))
    assert (evaluated.threshold, evaluated.threshold_source) == (0.42, "evaluation.yaml")
    assert evaluated.notes == ()

    default = predict_movie(path, write_model_folder(tmp_path / "b"))
    assert (default.threshold, default.threshold_source) == (0.5, "default 0.5")
    assert any("evaluation.yaml" in note for note in default.notes)

    given = predict_movie(path, tmp_path / "a", threshold=0.9)
    assert (given.threshold, given.threshold_source) == (0.9, "argument")
    assert given.events == ()  # every frame scores 0.8


def test_frames_above_threshold_link_into_events(tmp_path, use_predictor):
    spots = [[] for _ in range(14)]
    spots[2] = [(10, 10), (10, 11)]
    spots[3] = [(11, 10), (11, 11), (11, 12)]  # the event's best frame (0.7)
    spots[4] = [(12, 11), (12, 12)]
    spots[5] = [(11, 11)]  # 0.5: not above the threshold (strict), the event ends
    spots[8] = [(30, 30), (30, 31)]
    spots[9] = [(31, 30), (31, 31)]
    spots[11] = [(30, 2), (30, 3)]  # within the frame gap but 28 px away: a new event
    spots[12] = [(10, 35), (10, 36)]  # next frame but 42 px away: a new event
    path = write_movie(tmp_path / "acq" / "m.ome.tif", hot_pixel_movie(14, 40, 40, spots))
    model = write_model_folder(tmp_path / "model", threshold=0.5)
    use_predictor(SpotSizePredictor())

    result = predict_movie(path, model)

    assert [f.score for f in result.frames][2:6] == pytest.approx([0.6, 0.7, 0.6, 0.5])
    got = [(e.frames, e.y, e.x, round(e.score, 4)) for e in result.events]
    assert got == [
        ((2, 5), 11, 10, 0.7),
        ((8, 10), 30, 30, 0.6),
        ((11, 12), 30, 2, 0.6),
        ((12, 13), 10, 35, 0.6),
    ]

    as_json = result.as_json()
    assert list(as_json) == ["acquisition", "movie", "threshold", "frames", "events"]
    assert as_json["acquisition"] == str(tmp_path / "acq")
    assert as_json["movie"] == "m.ome.tif"
    assert as_json["threshold"] == 0.5
    assert len(as_json["frames"]) == 14
    assert as_json["frames"][3] == {"frame": 3, "score": result.frames[3].score, "y": 11, "x": 10}
    assert as_json["events"][0] == {
        "frames": [2, 5],
        "y": 11,
        "x": 10,
        "score": result.events[0].score,
    }
    assert json.loads(json.dumps(as_json)) == as_json
    first = as_json["frames"][0]
    assert type(first["frame"]) is int and type(first["score"]) is float
    assert type(first["y"]) is int and type(as_json["events"][0]["score"]) is float


def test_simultaneous_events_and_a_one_frame_dip_are_not_cut_into_pieces(tmp_path, use_predictor):
    spots = [[] for _ in range(12)]
    for t in range(2, 8):
        # two events at once whose strengths alternate: the frame's maximum jumps between them
        if t % 2:  # the first event has 3 pixels (0.7), the second 2 (0.6)
            spots[t] = [(10, 10), (10, 11), (11, 10), (30, 30), (30, 31)]
        else:  # and the other way round
            spots[t] = [(10, 10), (10, 11), (30, 30), (30, 31), (31, 30)]
    spots[8] = []  # one frame below the threshold
    spots[9] = [(31, 31), (31, 32)]  # the second event again, one frame later
    path = write_movie(tmp_path / "acq" / "m.ome.tif", hot_pixel_movie(12, 40, 40, spots))
    model = write_model_folder(tmp_path / "model", threshold=0.5)

    class TwoSpotPredictor:
        """Each 8-connected spot scores 0.5 + 0.1 × (its pixel count − 1)."""

        in_channels = 1

        def predict(self, images, batch_size=8):
            out = np.zeros_like(images[:, -1])
            for i, frame in enumerate(images[:, -1]):
                labels, n = ndimage.label(frame > 0.5, structure=np.ones((3, 3)))
                for k in range(1, n + 1):
                    spot = labels == k
                    out[i][spot] = 0.5 + 0.1 * (spot.sum() - 1)
            return out

    use_predictor(TwoSpotPredictor())

    result = predict_movie(path, model)

    # the frame scores are one maximum per frame, alternating between the two events
    assert [(f.y, f.x) for f in result.frames[2:5]] == [(30, 30), (10, 10), (30, 30)]
    got = [(e.frames, e.y, e.x, round(e.score, 4)) for e in result.events]
    assert got == [((2, 8), 10, 10, 0.7), ((2, 10), 30, 30, 0.7)]


# --------------------------------------------------------------------------- comparison


def P(start, stop, y, x):
    return PredictedEvent(frames=(start, stop), y=y, x=x, score=0.9)


def A(start, stop, y, x):
    return AnnotatedEvent(frames=(start, stop), y=float(y), x=float(x))


def test_compare_events_matches_overlapping_nearby_events_one_to_one():
    predicted = [
        P(3, 6, 10, 10),  # matches a0 (5 px, frames overlap)
        P(4, 5, 12, 10),  # nearer to a0 (3 px): takes it; the one above is then a FP
        P(10, 12, 50, 50),  # a1 starts when it stops: no overlap
        P(20, 25, 0, 0),  # a2 is 30 px away
    ]
    annotated = [A(4, 8, 15, 10), A(12, 14, 50, 50), A(20, 25, 0, 30)]

    result = compare_events(predicted, annotated, max_link_distance_px=24)
    assert (result.tp, result.fp, result.fn) == (1, 3, 2)
    assert result.matches == ((predicted[1], annotated[0]),)
    assert result.precision == pytest.approx(0.25)
    assert result.recall == pytest.approx(1 / 3)
    assert result.f1 == pytest.approx(2 / 7)

    wider = compare_events(predicted, annotated, max_link_distance_px=30)
    assert (wider.tp, wider.fp, wider.fn) == (2, 2, 1)


def test_compare_events_is_zero_when_undefined():
    empty = compare_events([], [])
    assert (empty.tp, empty.fp, empty.fn) == (0, 0, 0)
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0)
    missed = compare_events([], [A(0, 2, 5, 5)])
    assert (missed.fn, missed.recall, missed.f1) == (1, 0.0, 0.0)


def test_frame_score_auroc_against_hand_computed_values():
    assert frame_score_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert frame_score_auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert frame_score_auroc([0.5, 0.5], [1, 0]) == 0.5  # ties count half
    assert frame_score_auroc([0.1, 0.2], [0, 1]) == 1.0
    assert np.isnan(frame_score_auroc([0.1, 0.2], [1, 1]))


def test_annotated_events_are_the_synthetic_truth(tmp_path):
    tree = generate_tree(
        tmp_path / "tree",
        seed=4,
        n_acquisitions=2,  # one CSV in µm, one in pixels (db_manual says scale_csv: false)
        height=96,
        width=96,
        n_frames=12,
        events_per_acquisition=2,
        channels=1,
        non_square=False,
        min_separation=40,
    )
    for acquisition in tree.acquisitions:
        found = annotated_events(acquisition.folder, "points")
        truth = sorted(acquisition.events, key=lambda e: (e.frames, e.center))
        assert [e.frames for e in found] == [e.frames for e in truth]
        for event, true in zip(found, truth):
            assert (event.y, event.x) == pytest.approx(true.center, abs=0.01)


# --------------------------------------------------------------------------- bad input


def test_a_missing_or_corrupt_movie_is_an_error_naming_it(tmp_path, use_predictor):
    model = write_model_folder(tmp_path / "model")
    use_predictor(RecordingPredictor())
    missing = tmp_path / "missing.ome.tif"
    with pytest.raises(MovieError, match=r"missing\.ome\.tif"):
        predict_movie(missing, model, out_dir=tmp_path / "out")
    corrupt = tmp_path / "corrupt.ome.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x07" * 100)
    with pytest.raises(MovieError) as info:
        predict_movie(corrupt, model, out_dir=tmp_path / "out")
    assert str(corrupt) in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_model_is_an_error_naming_it(tmp_path):
    movie = write_movie(tmp_path / "m.ome.tif", hot_pixel_movie(2, 8, 8, [[], []]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as info:
        predict_movie(movie, tmp_path / "empty")
    assert str(info.value).startswith(str(tmp_path / "empty"))
    assert "settings.yaml" in str(info.value)


def test_a_model_folder_without_weights_is_an_error_naming_the_file(tmp_path):
    pytest.importorskip("torch")
    movie = write_movie(tmp_path / "m.ome.tif", hot_pixel_movie(2, 8, 8, [[], []]))
    model = write_model_folder(tmp_path / "model")
    with pytest.raises(InputError) as info:
        predict_movie(movie, model)
    assert "model.pt" in str(info.value)


# --------------------------------------------------------------------------- learning


@pytest.fixture
def torch_one_thread():
    """Torch on one thread (restored after): on a busy 2-core machine two threads spend most of
    their time waiting for each other in a network this small (see export_fixtures)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_trained_model_scores_event_frames_higher_in_movies_it_never_saw(
    tmp_path, torch_one_thread
):
    """Train on synthetic acquisitions (~40 s on one CPU thread); on whole movies of an
    unrelated tree (never in the training set nor in its evaluation split) frames showing an
    event score higher than frames without one, and the annotated events are found."""
    from deep_events_dagster.ml.config import TrainingSettings
    from deep_events_dagster.ml.torch.train import train
    from deep_events_dagster.testing.learning import SMALL_PROBLEM_SETTINGS, build_learning_set

    data = build_learning_set(
        tmp_path / "learning",
        seed=5,
        n_train_acquisitions=6,
        n_held_out_acquisitions=1,
        size=128,
        crop_size=64,
        n_frames=16,
        events_per_acquisition=(3, 4),
        sigma=2.0,
    )
    settings = TrainingSettings.from_mapping({**SMALL_PROBLEM_SETTINGS, "epochs": 12})
    train(data.training_set.path, tmp_path / "model", settings, device="cpu")

    unseen = generate_tree(
        tmp_path / "unseen",
        seed=987,
        n_acquisitions=2,
        height=128,
        width=128,
        n_frames=40,
        events_per_acquisition=2,
        channels=1,
        non_square=False,
        min_separation=48,
    )
    scores, positive = [], []
    found = annotated = 0
    for acquisition in unseen.acquisitions:
        result = predict_movie(acquisition.movie_path, tmp_path / "model", threshold=0.5)
        visible = np.zeros(len(result.frames), dtype=bool)
        for event in acquisition.events:
            visible[slice(*event.frames)] = True
        scores += [f.score for f in result.frames]
        positive += visible.tolist()
        comparison = compare_events(result.events, annotated_events(acquisition.folder, "points"))
        found += comparison.tp
        annotated += comparison.tp + comparison.fn
    assert annotated == 4 and 0 < sum(positive) < len(positive)
    auroc = frame_score_auroc(scores, positive)
    assert auroc >= 0.85, auroc  # measured 0.999 (0.89 with another training seed)
    assert found >= 3, (found, annotated)  # measured 4 of 4

    # the real network on sides that are not multiples of 4, whole and in tiles
    odd = synthesize_movie(n_frames=8, height=255, width=249, seed=11, events_per_kind=2)
    path = write_movie(tmp_path / "odd" / "odd.ome.tif", odd.render())
    whole = predict_movie(path, tmp_path / "model", out_dir=tmp_path / "odd" / "whole")
    tiled = predict_movie(
        path, tmp_path / "model", out_dir=tmp_path / "odd" / "tiled", max_tile=192, tile_overlap=96
    )
    whole_movie = tifffile.imread(whole.movie_out_path).astype(int)
    tiled_movie = tifffile.imread(tiled.movie_out_path).astype(int)
    assert whole_movie.shape == tiled_movie.shape == (8, 255, 249)
    assert np.abs(whole_movie - tiled_movie).max() <= 1  # measured 0
    for a, b in zip(whole.frames, tiled.frames, strict=True):
        assert b.score == pytest.approx(a.score, abs=1e-3)
