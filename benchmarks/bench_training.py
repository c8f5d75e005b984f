"""Training speed on the CPU: our data path, our model, and the original's model, side by side.

``run(quick)`` measures training samples/s for the original settings (batch 8, 256×256 crops,
``UNet(1, 16, 12)``, 155,345 parameters, Adam, binary cross-entropy on logits) and returns a
dict (see :func:`run`). Three loops, interleaved step by step so that other load on the
machine hits all of them alike (the median step time per loop counts):

``full``
    Our whole training path: :class:`~deep_events_dagster.ml.torch.data.AugmentedDataset` over
    memory-mapped ``.npy`` stacks, on-the-fly augmentation (``n_augmentations: 4``: flips,
    rotations, brightness), the DataLoader, the training step and the per-step metrics — exactly
    :meth:`~deep_events_dagster.ml.torch.session.TrainingSession.train_epoch`.
``plain``
    The same model and step
    (:meth:`~deep_events_dagster.ml.torch.session.TrainingSession.train_step`) over batches
    preloaded as tensors. ``plain / full − 1`` is the data path's overhead
    (goal ≤ 10 %).
``original``
    The original deep-events U-Net rebuilt here (:func:`build_original_unet`: the same 155,345
    parameters; 12×12 convolutions padded with 6 on both sides so level 0 grows to 257 and 258
    px, crop/pad of the decoder's maps to the skip connections, ``align_corners=True``
    upsampling, the output interpolated back to 256²), float32 and contiguous as the original
    ran on a CPU, in a plain loop over the same preloaded batches. ``plain / original`` is the
    speed-up (goal ≥ 1.5×; the original's loop ran 6.2 samples/s on a 2-core machine).

Where our speed comes from is printed too: our model in float32 and contiguous memory (the
exact "same" padding alone), then channels-last, then bfloat16 autocast (used by
``mixed_precision: auto`` only when the CPU has native bfloat16 instructions).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["build_original_unet", "run"]

BATCH = 8
SIZE = 256
OVERHEAD_GOAL_PCT = 10.0
SPEEDUP_GOAL = 1.5


def _original_unet_class():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class OriginalUNet(nn.Module):
        """The original deep-events ``UNet`` forward (PyTorch port), for reference timings."""

        def __init__(self, in_channels: int = 1, nb: int = 16, k: int = 12):
            super().__init__()

            def block(i: int, o: int, size: int) -> list[nn.Module]:
                return [nn.Conv2d(i, o, size, padding=size // 2), nn.BatchNorm2d(o)]

            self.d0 = nn.ModuleList([*block(in_channels, nb, k), *block(nb, nb, k)])
            self.d1 = nn.ModuleList([*block(nb, 2 * nb, 3), *block(2 * nb, 2 * nb, 3)])
            self.c = nn.ModuleList([*block(2 * nb, 4 * nb, 3), *block(4 * nb, 4 * nb, 3)])
            self.u1 = nn.ModuleList([*block(6 * nb, 2 * nb, 3), *block(2 * nb, 2 * nb, 3)])
            self.u0 = nn.ModuleList([*block(3 * nb, nb, 3), *block(nb, nb, 3)])
            self.out = nn.Conv2d(nb, 1, 1)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        @staticmethod
        def _pair(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(layers[1](layers[0](x)))
            return F.relu(layers[3](layers[2](x)))

        @staticmethod
        def _match(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            # the original's _crop_or_pad_to_match: centre crop or zero pad, per axis
            for axis in (2, 3):
                have, want = x.shape[axis], target.shape[axis]
                if have > want:
                    x = x.narrow(axis, (have - want) // 2, want)
                elif have < want:
                    before = (want - have) // 2
                    pad = [0, 0, 0, 0]
                    pad[(3 - axis) * 2 : (3 - axis) * 2 + 2] = [before, want - have - before]
                    x = F.pad(x, pad)
            return x

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            size = x.shape[-2:]
            d0 = self._pair(self.d0, x)  # 257, then 258 px
            d1 = self._pair(self.d1, F.max_pool2d(d0, 2))
            c = self._pair(self.c, F.max_pool2d(d1, 2))
            up = F.interpolate(c, scale_factor=2, mode="bilinear", align_corners=True)
            up = self._pair(self.u1, torch.cat([d1, self._match(up, d1)], 1))
            up = F.interpolate(up, scale_factor=2, mode="bilinear", align_corners=True)
            up = self._pair(self.u0, torch.cat([d0, self._match(up, d0)], 1))
            out = self.out(up)
            if out.shape[-2:] != size:
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
            return out

    return OriginalUNet


def build_original_unet(in_channels: int = 1, nb_filters: int = 16, first_conv_size: int = 12):
    """The original deep-events U-Net (PyTorch port of its forward), for reference timings."""
    return _original_unet_class()(in_channels, nb_filters, first_conv_size)


def _rate(step, batches, n_steps: int) -> float:
    tick = time.perf_counter()
    for i in range(n_steps):
        step(*batches[i % len(batches)])
    return n_steps * BATCH / (time.perf_counter() - tick)


def run(quick: bool = False, workdir: str | Path | None = None) -> dict[str, Any]:
    """Measure and return the training speeds.

    Parameters
    ----------
    quick
        3 timed steps per loop instead of 12 (a smoke run, noisier).
    workdir
        Where the synthetic training set goes (a temporary folder, removed afterwards).

    Returns
    -------
    dict
        ``samples_per_s`` (``full``, ``plain``, ``original``, and the breakdown
        ``ours_float32``, ``ours_float32_channels_last``), ``overhead_pct`` with its goal and
        ``overhead_pass``, ``speedup`` (plain / original) with ``speedup_goal`` and
        ``speedup_pass``, ``parameters`` of both models, ``precision``, ``threads``,
        ``step_seconds`` (every timed step per loop) and ``lines`` (a printable report).
    """
    import torch
    import torch.nn.functional as F

    from deep_events_dagster.ml.config import TrainingSettings
    from deep_events_dagster.ml.synthetic import write_synthetic_training_set
    from deep_events_dagster.ml.torch.metrics import PixelCounts
    from deep_events_dagster.ml.torch.models import UNet, count_parameters
    from deep_events_dagster.ml.torch.train import prepare_training

    n_steps, warmup = (3, 1) if quick else (12, 2)
    n_batches = 4
    with tempfile.TemporaryDirectory(prefix="bench-training-", dir=workdir) as tmp:
        folder = write_synthetic_training_set(
            Path(tmp) / "ts",
            n_train=n_batches * BATCH,
            n_eval=BATCH,
            size=(SIZE, SIZE),
            sigma=6.0,
            seed=3,
        )
        settings = TrainingSettings()  # the original settings: batch 8, UNet(1, 16, 12), …
        ours = prepare_training(folder, settings, "cpu")
        images = torch.from_numpy(ours.data.train_images[: n_batches * BATCH].copy())
        masks = torch.from_numpy(ours.data.train_masks[: n_batches * BATCH].copy())[:, None]
        plain_batches = [
            (ours.to_device(images[i : i + BATCH]), masks[i : i + BATCH])
            for i in range(0, len(images), BATCH)
        ]
        raw_batches = [
            (images[i : i + BATCH].contiguous(), masks[i : i + BATCH])
            for i in range(0, len(images), BATCH)
        ]

        def make_step(model, channels_last):
            """A float32 training step, as the original ran on a CPU."""
            model = model.to(memory_format=torch.channels_last) if channels_last else model
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
            model.train()

            def step(x, y):
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                F.binary_cross_entropy_with_logits(model(x), y).backward()
                optimizer.step()

            return model, step

        torch.manual_seed(0)
        original, original_step = make_step(build_original_unet(1, 16, 12), False)
        _, fp32_step = make_step(UNet(1, 16, 12), False)
        _, fp32_cl_step = make_step(UNet(1, 16, 12), True)

        plain_loops = {  # name: (step, batches)
            "original": (original_step, raw_batches),
            "plain": (ours.train_step, plain_batches),
            "ours_float32": (fp32_step, raw_batches),
            "ours_float32_channels_last": (fp32_cl_step, raw_batches),
        }
        counts = PixelCounts(ours.device)
        epochs = itertools.count()
        full_steps = iter(())

        def full_step() -> None:
            nonlocal full_steps
            try:
                next(full_steps)
            except StopIteration:  # next epoch: new augmentations, new order
                full_steps = ours.steps(next(epochs), counts)
                next(full_steps)

        names = ["original", "plain", "full", "ours_float32", "ours_float32_channels_last"]
        cursor = dict.fromkeys(names, 0)

        def one_step(name: str) -> float:
            """Seconds of one training step (one batch of the full path for "full")."""
            tick = time.perf_counter()
            if name == "full":
                full_step()
            else:
                step, batches = plain_loops[name]
                step(*batches[cursor[name] % len(batches)])
                cursor[name] += 1
            return time.perf_counter() - tick

        for _ in range(warmup):  # oneDNN primitives, page cache, allocator
            for name in names:
                one_step(name)
        # Interleaved step by step, so load from other processes hits every loop alike; the
        # median step time per loop is robust against bursts.
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(n_steps):
            for name in names:
                times[name].append(one_step(name))
        rates = {name: BATCH / statistics.median(times[name]) for name in names}
        params_ours = ours.parameters
        params_original = count_parameters(original)
        precision = ours.precision
        threads = torch.get_num_threads()

    overhead_pct = (rates["plain"] / rates["full"] - 1.0) * 100.0
    speedup = rates["plain"] / rates["original"]
    pair_speedups = sorted(o / p for o, p in zip(times["original"], times["plain"]))
    lines = [
        f"training, CPU ({threads} threads), batch {BATCH}, {SIZE}², UNet(1, 16, 12): "
        f"{params_ours:,} parameters (original variant {params_original:,}); "
        f"{n_steps} steps per loop, interleaved step by step; median step time",
        f"  full data path (mmap + augmentation + DataLoader + step) {rates['full']:7.2f} "
        "samples/s",
        f"  plain loop, preloaded tensors, same model and step       {rates['plain']:7.2f} "
        f"samples/s   ({precision}, channels-last)",
        f"  data-path overhead: {overhead_pct:+.1f}% (goal ≤ {OVERHEAD_GOAL_PCT:g}%) "
        + ("PASS" if overhead_pct <= OVERHEAD_GOAL_PCT else "MISS"),
        f"  original variant (pad 6 → 257/258 px, resize back), plain {rates['original']:7.2f} "
        "samples/s   (float32)",
        f"  ours / original: {speedup:.2f}× (goal ≥ {SPEEDUP_GOAL:g}×) "
        + ("PASS" if speedup >= SPEEDUP_GOAL else "MISS")
        + f"; step by step: median {statistics.median(pair_speedups):.2f}×, "
        f"range {pair_speedups[0]:.2f}–{pair_speedups[-1]:.2f}×",
        f"  breakdown, plain loops: ours float32 {rates['ours_float32']:.2f}, + channels-last "
        f"{rates['ours_float32_channels_last']:.2f}, + {precision} autocast {rates['plain']:.2f} "
        "samples/s",
    ]
    return {
        "name": "training",
        "quick": quick,
        "batch_size": BATCH,
        "size": SIZE,
        "threads": threads,
        "precision": precision,
        "parameters": {"ours": params_ours, "original": params_original},
        "samples_per_s": rates,
        "overhead_pct": overhead_pct,
        "overhead_goal_pct": OVERHEAD_GOAL_PCT,
        "overhead_pass": overhead_pct <= OVERHEAD_GOAL_PCT,
        "speedup": speedup,
        "speedup_goal": SPEEDUP_GOAL,
        "speedup_pass": speedup >= SPEEDUP_GOAL,
        "step_seconds": times,
        "lines": lines,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.bench_training [--quick] [--json PATH]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.quick)
    print("\n".join(result["lines"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def result(quick: bool = False):
    """The benchmark as a report section of ``benchmarks.run`` (headline: speed-up)."""
    from benchmarks.common import Line, Result

    data = run(quick=quick)
    overhead_verdict = "PASS" if data["overhead_pass"] else "MISS"
    speeds = data["samples_per_s"]
    lines = [
        Line(
            "ours, full data path",
            f"{speeds['full']:.2f} samples/s",
            "memory-mapped stacks + augmentation + DataLoader + step",
        ),
        Line("ours, preloaded tensors", f"{speeds['plain']:.2f} samples/s", "same model and step"),
        Line(
            "original variant",
            f"{speeds['original']:.2f} samples/s",
            "12×12 padding 6 → 258 px maps, resized back; same parameter count",
        ),
        Line(
            "data-path overhead",
            f"{data['overhead_pct']:.1f} %",
            f"goal ≤ {data.get('overhead_goal_pct', 10)} % → {overhead_verdict}",
        ),
    ]
    return Result(
        name="training",
        title="Training samples/s on CPU, batch 8, 256², UNet(1, 16, 12)",
        compares="our training loop vs the original's (same parameter count), and our data "
        "path vs a plain loop over preloaded tensors",
        lines=lines,
        ratio_label="speed-up (ours ÷ original)",
        ratio=data["speedup"],
        target=data.get("speedup_goal", 1.5),
        op=">=",
        info=[str(line) for line in data.get("lines", [])][-4:],
        data={k: v for k, v in data.items() if k != "lines"},
    )
