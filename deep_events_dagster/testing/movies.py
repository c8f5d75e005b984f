"""The synthetic image model: deterministic mitochondria-like movies with annotated events.

Everything is a pure function of a seed. The model: a dim, smooth background; tubular
structures (random smooth curves rendered with a Gaussian blur) that drift slightly over time;
and *events*, bright spots on a tubule at an annotated position that last a few consecutive
frames (as a fission site marked by a biologist). Photon counts get Poisson noise (or a fast
Gaussian approximation for very large movies) and a camera offset of ~100 counts; movies are
``uint16``.

:func:`synthesize_movie` plans the events (:mod:`deep_events_dagster.testing.event_plans`)
and returns a :class:`SyntheticMovie`, rendered frame by frame on demand; its ``events``
(:class:`SyntheticEvent`) are the truth. Nothing here writes files: trees of acquisitions are
:mod:`deep_events_dagster.testing.trees`, big benchmark movies
:mod:`deep_events_dagster.testing.benchmark_movies`.

Every piece of randomness draws from its own stream, ``stream_rng(seed, STREAM_...)``, so that
adding a stream never changes another one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.testing.event_plans import EventPlan, as_range, plan_events

__all__ = ["CAMERA_OFFSET", "SyntheticEvent", "SyntheticMovie", "synthesize_movie"]

CAMERA_OFFSET = 100
# Random-stream identifiers (so that adding a stream never changes another one).
STREAM_DRIFT, STREAM_TUBES, STREAM_EVENTS, STREAM_BG, STREAM_NOISE = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class SyntheticEvent:
    """The truth for one synthetic event.

    Attributes
    ----------
    kind
        Annotation kind (CSV file-name prefix), e.g. ``"points"``.
    points
        The annotated points ``(frame, y, x)`` in pixels, exactly what the CSV holds (one per
        frame of the event, or only the first one in one-point-per-event mode).
    channel
        The channel the event is visible in for ``TCYX`` movies, ``None`` for ``TYX``.
    track
        Every rendered position ``(frame, y, x)`` of the event (one per frame where the event
        is visible). Equal to ``points`` unless one point per event was annotated.
    """

    kind: str
    points: tuple[tuple[int, float, float], ...]
    channel: int | None = None
    track: tuple[tuple[int, float, float], ...] = ()

    @property
    def frames(self) -> tuple[int, int]:
        """Half-open frame range ``(start, stop)`` where the event is visible."""
        track = self.track or self.points
        return track[0][0], track[-1][0] + 1

    @property
    def center(self) -> tuple[float, float]:
        """Mean ``(y, x)`` of the track, in pixels."""
        track = self.track or self.points
        return (
            float(np.mean([p[1] for p in track])),
            float(np.mean([p[2] for p in track])),
        )


def stream_rng(seed: int, *stream: int) -> np.random.Generator:
    """The generator of random stream ``stream`` (``STREAM_DRIFT``, ...) of ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *stream]))


def ou_drift(rng: np.random.Generator, n_frames: int, n_layers: int) -> np.ndarray:
    """Slow mean-reverting drift per layer: ``(n_layers, T, 2)``, zero at t=0, steps ≤ 0.6 px."""
    steps = np.clip(rng.normal(0.0, 0.2, size=(n_layers, n_frames, 2)), -0.6, 0.6)
    drift = np.zeros((n_layers, n_frames, 2))
    for t in range(1, n_frames):
        drift[:, t] = 0.995 * drift[:, t - 1] + steps[:, t]
    # a mean-reverting walk can step by up to 0.6 + 0.005·|d|; clip the step size explicitly
    delta = np.clip(np.diff(drift, axis=1), -0.6, 0.6)
    drift[:, 1:] = np.cumsum(delta, axis=1)
    return drift


def _splat(canvas_shape: tuple[int, int], ys, xs, weights) -> np.ndarray:
    """Bilinear splatting of weighted points into a float32 image."""
    h, w = canvas_shape
    ys = np.asarray(ys, dtype=np.float64).ravel()
    xs = np.asarray(xs, dtype=np.float64).ravel()
    weights = np.asarray(weights, dtype=np.float64).ravel()
    iy = np.floor(ys).astype(np.int64)
    ix = np.floor(xs).astype(np.int64)
    fy = ys - iy
    fx = xs - ix
    out = np.zeros(h * w, dtype=np.float64)
    for dy, dx, wt in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy = iy + dy
        xx = ix + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        out += np.bincount(yy[ok] * w + xx[ok], weights=(weights * wt)[ok], minlength=h * w)
    return out.reshape(h, w).astype(np.float32)


def _random_tubes(
    rng: np.random.Generator, n: int, canvas_shape: tuple[int, int], step: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample points of ``n`` random smooth curves (``ys, xs, relative weight``)."""
    h, w = canvas_shape
    lengths = rng.uniform(20.0, 90.0, size=n)
    n_samples = math.ceil(float(lengths.max()) / step) if n else 1
    heading = rng.uniform(0, 2 * np.pi, size=(n, 1)) + np.cumsum(
        rng.normal(0.0, 0.05, size=(n, n_samples)), axis=1
    )
    y0 = rng.uniform(0, h, size=(n, 1))
    x0 = rng.uniform(0, w, size=(n, 1))
    ys = y0 + np.cumsum(step * np.sin(heading), axis=1)
    xs = x0 + np.cumsum(step * np.cos(heading), axis=1)
    s = np.arange(n_samples) * step
    mask = s[None, :] < lengths[:, None]
    brightness = rng.uniform(0.6, 1.2, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    weights = brightness * (1.0 + 0.25 * np.sin(phase + s[None, :] / 6.0)) * mask
    return ys, xs, weights


def _event_tube(
    rng: np.random.Generator, center: tuple[float, float], step: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A slightly bent tubule passing exactly through ``center``."""
    half = rng.uniform(15.0, 30.0)
    s = np.arange(-half, half + step / 2, step)
    theta = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(-0.01, 0.01)
    dy, dx = np.sin(theta), np.cos(theta)
    ys = center[0] + s * dy + bend * s**2 * dx
    xs = center[1] + s * dx - bend * s**2 * dy
    return ys, xs, np.full_like(s, rng.uniform(0.8, 1.1))


class SyntheticMovie:
    """A deterministic mitochondria-like movie, rendered frame by frame on demand.

    Build it with :func:`synthesize_movie`. ``frame(t)`` depends only on the seed and ``t``
    (not on which frames were rendered before), so writing frame by frame and writing
    ``render()`` give identical files.

    Attributes
    ----------
    shape, axes, dtype
        ``(T, Y, X)``/``"TYX"`` or ``(T, C, Y, X)``/``"TCYX"``; ``uint16``.
    events
        The events, all kinds.
    """

    def __init__(
        self,
        *,
        n_frames: int,
        height: int,
        width: int,
        n_channels: int,
        seed: int,
        drift: np.ndarray,
        plans: Sequence[EventPlan],
        one_point_per_event: bool,
        noise: str,
        tube_density: float,
        tube_sigma: float,
        spot_sigma: float,
        offset: int,
    ):
        if noise not in ("poisson", "gaussian"):
            raise ConfigurationError(f"noise must be 'poisson' or 'gaussian', not {noise!r}")
        self.n_frames, self.height, self.width = int(n_frames), int(height), int(width)
        self.n_channels = int(n_channels)
        self.seed = int(seed)
        self.noise = noise
        self.offset = int(offset)
        self.spot_sigma = float(spot_sigma)
        self.axes = "TYX" if n_channels == 1 else "TCYX"
        self.shape: tuple[int, ...] = (
            (self.n_frames, self.height, self.width)
            if n_channels == 1
            else (self.n_frames, self.n_channels, self.height, self.width)
        )
        self.dtype = np.dtype("uint16")
        self._drift = drift  # (n_layers, T, 2)
        self.pad = math.ceil(float(np.abs(drift).max())) + 2
        canvas = (self.height + 2 * self.pad + 1, self.width + 2 * self.pad + 1)
        rng = stream_rng(seed, STREAM_TUBES)

        # channel 0: tubules on two layers drifting independently; event tubules on layer 0
        area_mpx = self.height * self.width / 1e6
        n_tubes = max(4, round(250 * tube_density * area_mpx))
        ys, xs, ws = _random_tubes(rng, n_tubes, canvas)
        layer_of = rng.integers(0, 2, size=n_tubes)
        tube_peak = rng.uniform(700.0, 1100.0)
        w_scale = tube_peak * 0.5 * math.sqrt(2 * math.pi) * tube_sigma
        self._layers: list[tuple[int, int, np.ndarray]] = []  # (channel, drift layer, canvas)
        for layer in (0, 1):
            sel = layer_of == layer
            pys, pxs, pws = [ys[sel].ravel()], [xs[sel].ravel()], [ws[sel].ravel()]
            if layer == 0:
                for plan in plans:
                    d0 = drift[0, plan.start]
                    c = (plan.anchor[0] + self.pad - d0[0], plan.anchor[1] + self.pad - d0[1])
                    eys, exs, ews = _event_tube(rng, c)
                    pys.append(eys)
                    pxs.append(exs)
                    pws.append(ews)
            img = _splat(
                canvas,
                np.concatenate(pys),
                np.concatenate(pxs),
                np.concatenate(pws) * w_scale,
            )
            self._layers.append((0, layer, ndimage.gaussian_filter(img, tube_sigma)))
        if n_channels > 1:
            # channel 1..: sparse puncta (e.g. a Drp1-like marker) drifting on layer 2
            for c in range(1, n_channels):
                n_dots = max(8, round(400 * area_mpx))
                dys = rng.uniform(0, canvas[0], n_dots)
                dxs = rng.uniform(0, canvas[1], n_dots)
                dws = rng.uniform(0.3, 0.8, n_dots) * 600.0 * 2 * math.pi * 1.5**2
                img = _splat(canvas, dys, dxs, dws)
                self._layers.append((c, 2, ndimage.gaussian_filter(img, 1.5)))

        # static smooth background (illumination and cytosol), one per channel
        brng = stream_rng(seed, STREAM_BG)
        yy = (np.arange(self.height, dtype=np.float32) / self.height)[:, None]
        xx = (np.arange(self.width, dtype=np.float32) / self.width)[None, :]
        self._background = []
        for c in range(n_channels):
            level = brng.uniform(40.0, 80.0) * (1.0 if c == 0 else 0.6)
            bg = np.full((self.height, self.width), level, dtype=np.float32)
            for _ in range(3):
                fy, fx = brng.uniform(0.3, 1.5, size=2)
                ph = brng.uniform(0, 2 * np.pi)
                amp = level * brng.uniform(0.05, 0.2)
                bg += amp * np.cos(2 * np.pi * fy * yy + ph) * np.cos(2 * np.pi * fx * xx - ph)
            self._background.append(np.maximum(bg, 1.0))

        # event spots per frame: t -> list of (channel, y, x, amplitude)
        self._spots: dict[int, list[tuple[int, float, float, float]]] = {}
        events = []
        for plan in plans:
            track = []
            d0 = drift[0, plan.start]
            for k in range(plan.length):
                t = plan.start + k
                y = plan.anchor[0] + drift[0, t, 0] - d0[0] + plan.jitter[k][0]
                x = plan.anchor[1] + drift[0, t, 1] - d0[1] + plan.jitter[k][1]
                y, x = round(float(y), 4), round(float(x), 4)
                track.append((t, y, x))
                profile = 0.6 + 0.4 * math.sin(math.pi * (k + 0.5) / plan.length)
                amp = plan.amplitude * tube_peak * profile
                self._spots.setdefault(t, []).append((plan.channel or 0, y, x, amp))
            track_t = tuple(track)
            events.append(
                SyntheticEvent(
                    kind=plan.kind,
                    points=track_t[:1] if one_point_per_event else track_t,
                    channel=plan.channel,
                    track=track_t,
                )
            )
        self.events: tuple[SyntheticEvent, ...] = tuple(events)

    def _shifted(self, canvas: np.ndarray, d: np.ndarray) -> np.ndarray:
        h, w = self.height, self.width
        cy, cx = self.pad - d[0], self.pad - d[1]
        iy, ix = math.floor(cy), math.floor(cx)
        fy, fx = np.float32(cy - iy), np.float32(cx - ix)
        top = (
            canvas[iy : iy + h, ix : ix + w] * (1 - fx)
            + canvas[iy : iy + h, ix + 1 : ix + 1 + w] * fx
        )
        bottom = (
            canvas[iy + 1 : iy + 1 + h, ix : ix + w] * (1 - fx)
            + canvas[iy + 1 : iy + 1 + h, ix + 1 : ix + 1 + w] * fx
        )
        return top * (1 - fy) + bottom * fy

    def expected(self, t: int) -> np.ndarray:
        """Noise-free expected photon counts of frame ``t`` (float32, ``C×Y×X``)."""
        if not 0 <= t < self.n_frames:
            raise IndexError(f"frame {t} outside 0..{self.n_frames - 1}")
        lam = np.stack([bg.copy() for bg in self._background])
        for channel, layer, canvas in self._layers:
            lam[channel] += self._shifted(canvas, self._drift[layer, t])
        s = self.spot_sigma
        r = math.ceil(4 * s)
        for channel, y, x, amp in self._spots.get(t, ()):
            y0, y1 = max(0, math.floor(y) - r), min(self.height, math.floor(y) + r + 2)
            x0, x1 = max(0, math.floor(x) - r), min(self.width, math.floor(x) + r + 2)
            gy = np.exp(-((np.arange(y0, y1) - y) ** 2) / (2 * s * s)).astype(np.float32)
            gx = np.exp(-((np.arange(x0, x1) - x) ** 2) / (2 * s * s)).astype(np.float32)
            lam[channel, y0:y1, x0:x1] += np.float32(amp) * gy[:, None] * gx[None, :]
        return lam

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as ``uint16`` (``Y×X`` for one channel, else ``C×Y×X``)."""
        lam = self.expected(t)
        rng = stream_rng(self.seed, STREAM_NOISE, t)
        if self.noise == "poisson":
            counts = rng.poisson(lam).astype(np.float32)
        else:
            counts = lam + np.sqrt(lam) * rng.standard_normal(lam.shape, dtype=np.float32)
            np.rint(counts, out=counts)
        counts += self.offset
        out = np.clip(counts, 0, 65535).astype(np.uint16)
        return out[0] if self.n_channels == 1 else out

    def render(self) -> np.ndarray:
        """The whole movie in memory (``shape``, ``uint16``)."""
        out = np.empty(self.shape, dtype=self.dtype)
        for t in range(self.n_frames):
            out[t] = self.frame(t)
        return out


def synthesize_movie(
    *,
    n_frames: int = 24,
    height: int = 320,
    width: int = 400,
    n_channels: int = 1,
    seed: int = 0,
    kinds: Sequence[str] = ("points",),
    events_per_kind: int | Sequence[int] = (2, 3),
    event_frames: int | Sequence[int] = (3, 6),
    two_close_events: bool = False,
    edge_event: bool = False,
    one_point_per_event: bool = False,
    noise: str = "poisson",
    margin: int = 24,
    min_separation: float = 96.0,
    tube_density: float = 1.0,
    tube_sigma: float = 2.0,
    spot_sigma: float = 2.0,
    offset: int = CAMERA_OFFSET,
) -> SyntheticMovie:
    """Plan events and build a deterministic mitochondria-like movie model (no files).

    Parameters
    ----------
    n_frames, height, width, n_channels
        Movie size; ``n_channels`` 1 gives ``TYX``, more gives ``TCYX``.
    seed
        Everything derives from it.
    kinds
        Annotation kinds; each gets ``events_per_kind`` events.
    events_per_kind
        Number of events per kind, or an inclusive ``(min, max)`` range.
    event_frames
        Event duration in frames, or an inclusive ``(min, max)`` range.
    two_close_events
        Two simultaneous events exactly 150 px apart (same frames, same drift), e.g. to check
        that event detection keeps them apart. Needs a side ≥ ``150 + 2·margin + 5`` px.
    edge_event
        One event within 10 px of an image edge (its centre stays 2–9 px from the border).
    one_point_per_event
        Annotate each event with one point (its first frame) instead of one per frame.
    noise
        ``"poisson"`` (exact) or ``"gaussian"`` (``λ + √λ·N(0, 1)``, ~6× faster on big frames).
    margin
        Minimum distance of ordinary events from the image border, px.
    min_separation
        Minimum distance between events whose frames are within 5 frames of each other
        (except the close pair), px.
    tube_density, tube_sigma, spot_sigma
        Number of tubules relative to the default (~250 per megapixel), their blur σ and the
        event spot σ in pixels.
    offset
        Camera offset added to all counts.

    Returns
    -------
    SyntheticMovie
        Call ``frame(t)`` or ``render()``; ``events`` holds the truth.
    """
    lo, hi = as_range(events_per_kind)
    ev_rng = stream_rng(seed, STREAM_EVENTS)
    counts = [(k, int(ev_rng.integers(lo, hi + 1))) for k in kinds]
    drift = ou_drift(stream_rng(seed, STREAM_DRIFT), n_frames, 3)
    plans = plan_events(
        ev_rng,
        drift0=drift[0],
        n_frames=n_frames,
        height=height,
        width=width,
        n_channels=n_channels,
        counts=counts,
        event_frames=as_range(event_frames),
        two_close_events=two_close_events,
        edge_event=edge_event,
        margin=margin,
        min_separation=min_separation,
    )
    return SyntheticMovie(
        n_frames=n_frames,
        height=height,
        width=width,
        n_channels=n_channels,
        seed=seed,
        drift=drift,
        plans=plans,
        one_point_per_event=one_point_per_event,
        noise=noise,
        tube_density=tube_density,
        tube_sigma=tube_sigma,
        spot_sigma=spot_sigma,
        offset=offset,
    )


def channel_names_of(n_channels: int) -> list[str]:
    """OME channel names of an ``n_channels`` synthetic movie (``mito``, ``drp1``, ...)."""
    names = ["mito", "drp1", "er", "dna"]
    return [names[c] if c < len(names) else f"ch{c}" for c in range(n_channels)]
