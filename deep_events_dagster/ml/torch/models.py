"""The networks: the original deep-events U-Net, and its bottleneck ConvLSTM variant.

Both take ``B×T×H×W`` float inputs (``T = n_timepoints`` frames, oldest first) and return
``B×1×H×W`` **logits** (no sigmoid: the losses take logits, predictions apply the sigmoid).

U-Net (``model: unet``), the original's layers with ``nb = nb_filters`` and
``k = first_conv_size``; the ``T`` frames are the input channels::

    level 0   conv(T→nb, k)    BN ReLU drop   conv(nb→nb, k)   BN ReLU drop   ─┐ skip 0
              maxpool 2                                                        │
    level 1   conv(nb→2nb, 3)  BN ReLU drop   conv(2nb→2nb, 3) BN ReLU drop ─┐ │ skip 1
              maxpool 2                                                      │ │
    centre    conv(2nb→4nb, 3) BN ReLU drop   conv(4nb→4nb, 3) BN ReLU drop  │ │
    up 1      bilinear ×2, concat [skip 1, up] (6nb)                  ◄──────┘ │
              conv(6nb→2nb, 3) BN ReLU drop   conv(2nb→2nb, 3) BN ReLU drop    │
    up 0      bilinear ×2, concat [skip 0, up] (3nb)                  ◄────────┘
              conv(3nb→nb, 3)  BN ReLU drop   conv(nb→nb, 3)   BN ReLU drop
    output    conv(nb→1, 1) → logits

``UNet(1, 16, 12)`` has 155,345 parameters, like the original. Differences from the original:

* every convolution has exact "same" padding, also the even 12×12 kernels (5 rows/columns of
  zeros before, 6 after — TensorFlow's convention), so maps stay ``H×W`` and nothing is
  cropped, padded or resized back. The original padded 12×12 kernels with 6 on both sides, so
  level 0 grew to ``H+1`` then ``H+2`` pixels (shifting features by up to a pixel against the
  input), and the decoder cropped/padded and finally interpolated the output back to ``H×W``;
* the decoder upsamples to the skip connection's exact size (bilinear, ``align_corners=False``,
  the half-pixel-correct alignment for 2× pooling), so any ``H×W`` works — 256², 200×248, odd
  sizes — and the output always has the input's size.

Bottleneck ConvLSTM (``model: bottleneck_lstm``, ``T ≥ 2``), the original's design: the level 0
and level 1 encoder above (one input channel) is applied to every frame with shared weights
(all frames of the batch in one ``(B·T)×1×H×W`` pass); the pooled level-1 features
``2nb×H/4×W/4`` of frames 1…T drive a ConvLSTM cell (one 3×3 convolution over
``[x_t, h_{t−1}]`` giving the input, forget, output and candidate gates, ``4nb`` hidden
channels, zero initial state) in place of the centre; the last hidden state goes through BN,
ReLU and dropout and is decoded as above with the skip connections of the **last** frame.

Weights are initialised like the original (Kaiming normal, fan-out, for convolutions; BN scale
1, shift 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BottleneckConvLSTM",
    "ConvBlock",
    "ConvLSTMCell",
    "SameConv2d",
    "UNet",
    "build_model",
    "count_parameters",
    "inference_copy",
    "same_padding",
]


def same_padding(kernel_size: int) -> tuple[int, int]:
    """Zeros before and after an axis so a stride-1 convolution keeps its size.

    Odd ``k``: ``(k//2, k//2)``. Even ``k``: ``((k−1)//2, k//2)`` — one more after, as
    TensorFlow's ``padding="same"``.
    """
    total = kernel_size - 1
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A stride-1 ``nn.Conv2d`` whose output has its input's size, also for even kernels.

    Odd kernels use the convolution's own zero padding; even kernels pad the input
    asymmetrically (see :func:`same_padding`) and convolve without padding. Its state dict is a
    plain ``Conv2d``'s (``weight``, ``bias``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        before, after = same_padding(kernel_size)
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            padding=before if before == after else 0,
            bias=bias,
        )
        self._pad = None if before == after else (before, after, before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._pad is not None:
            x = F.pad(x, self._pad)
        return super().forward(x)


class ConvBlock(nn.Sequential):
    """Convolution ("same" padding) → batch norm → ReLU → dropout."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dropout: float):
        super().__init__(
            SameConv2d(in_channels, out_channels, kernel_size),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )


def _double(in_channels: int, out_channels: int, kernel_size: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        ConvBlock(in_channels, out_channels, kernel_size, dropout),
        ConvBlock(out_channels, out_channels, kernel_size, dropout),
    )


class _Encoder(nn.Module):
    """Levels 0 and 1: returns (skip 0, skip 1, pooled level 1)."""

    def __init__(self, in_channels: int, nb: int, first_conv_size: int, dropout: float):
        super().__init__()
        self.level0 = _double(in_channels, nb, first_conv_size, dropout)
        self.level1 = _double(nb, 2 * nb, 3, dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        skip0 = self.level0(x)
        skip1 = self.level1(F.max_pool2d(skip0, 2))
        return skip0, skip1, F.max_pool2d(skip1, 2)


class _Decoder(nn.Module):
    """Up 1, up 0 and the 1×1 output convolution."""

    def __init__(self, nb: int, dropout: float):
        super().__init__()
        self.up1 = _double(6 * nb, 2 * nb, 3, dropout)
        self.up0 = _double(3 * nb, nb, 3, dropout)
        self.output = nn.Conv2d(nb, 1, kernel_size=1)

    @staticmethod
    def _up(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([skip, up.to(skip.dtype)], dim=1)

    def forward(self, centre: torch.Tensor, skip0: torch.Tensor, skip1: torch.Tensor):
        x = self.up1(self._up(centre, skip1))
        x = self.up0(self._up(x, skip0))
        return self.output(x)


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class UNet(nn.Module):
    """The original deep-events U-Net (see the module docstring), returning logits.

    Parameters
    ----------
    in_channels
        Input channels (``n_timepoints``: frames stacked as channels).
    nb_filters
        Filters of level 0.
    first_conv_size
        Kernel size of the two level-0 convolutions.
    dropout_rate
        Dropout after every block (0: none).
    """

    def __init__(
        self,
        in_channels: int = 1,
        nb_filters: int = 16,
        first_conv_size: int = 12,
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        self.in_channels = in_channels
        nb = nb_filters
        self.encoder = _Encoder(in_channels, nb, first_conv_size, dropout_rate)
        self.centre = _double(2 * nb, 4 * nb, 3, dropout_rate)
        self.decoder = _Decoder(nb, dropout_rate)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B×in_channels×H×W`` → ``B×1×H×W`` logits."""
        skip0, skip1, pooled = self.encoder(x)
        return self.decoder(self.centre(pooled), skip0, skip1)


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell: one convolution over ``[x_t, h_{t−1}]`` gives all gates.

    ``i, f, o = σ(·)``, ``g = tanh(·)``, ``c_t = f·c_{t−1} + i·g``, ``h_t = o·tanh(c_t)``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.conv = SameConv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])
            state = (zeros, zeros)
        h, c = state
        gates = self.conv(torch.cat([x, h.to(x.dtype)], dim=1))
        i, f, o, g = torch.split(gates, self.hidden_channels, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class BottleneckConvLSTM(nn.Module):
    """U-Net encoder per frame, ConvLSTM at the bottleneck, decoder from the last frame.

    Parameters
    ----------
    n_timepoints
        Frames per sample (``T`` of the ``B×T×H×W`` input); any ``T ≥ 1`` runs.
    nb_filters, first_conv_size, dropout_rate
        As for :class:`UNet`.
    """

    def __init__(
        self,
        n_timepoints: int,
        nb_filters: int = 16,
        first_conv_size: int = 12,
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        self.in_channels = n_timepoints
        nb = nb_filters
        self.encoder = _Encoder(1, nb, first_conv_size, dropout_rate)
        self.lstm = ConvLSTMCell(2 * nb, 4 * nb, 3)
        self.centre = nn.Sequential(
            nn.BatchNorm2d(4 * nb),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity(),
        )
        self.decoder = _Decoder(nb, dropout_rate)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B×T×H×W`` → ``B×1×H×W`` logits."""
        batch, frames, height, width = x.shape
        skip0, skip1, pooled = self.encoder(x.reshape(batch * frames, 1, height, width))
        pooled = pooled.reshape(batch, frames, *pooled.shape[1:])
        state = None
        for t in range(frames):
            state = self.lstm(pooled[:, t], state)
        centre = self.centre(state[0])
        skip0 = skip0.reshape(batch, frames, *skip0.shape[1:])[:, -1]
        skip1 = skip1.reshape(batch, frames, *skip1.shape[1:])[:, -1]
        return self.decoder(centre, skip0, skip1)


def build_model(settings, in_channels: int) -> nn.Module:
    """The network a :class:`~deep_events_dagster.ml.config.TrainingSettings` asks for.

    Parameters
    ----------
    settings
        Training settings (``model``, ``nb_filters``, ``first_conv_size``, ``dropout_rate``).
    in_channels
        Frames per sample (``T`` of the training set).
    """
    if settings.model == "unet":
        return UNet(
            in_channels, settings.nb_filters, settings.first_conv_size, settings.dropout_rate
        )
    if settings.model == "bottleneck_lstm":
        return BottleneckConvLSTM(
            in_channels, settings.nb_filters, settings.first_conv_size, settings.dropout_rate
        )
    raise ValueError(f"unknown model {settings.model!r}")


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def set_output_prior(model: nn.Module, positive_prior: float) -> float:
    """Initialise the last layer's bias to ``log(p / (1 − p))`` so that the untrained network
    predicts probability ``p`` everywhere (the positive pixel prior), instead of 0.5.

    With rare event pixels a start at 0.5 spends the first epochs, and often the whole
    training, pushing every pixel down; starting from the prior lets the first gradients
    shape the events. Returns the bias set.
    """
    p = min(max(float(positive_prior), 1e-6), 1 - 1e-6)
    bias = math.log(p / (1 - p))
    output = model.decoder.output
    with torch.no_grad():
        output.bias.fill_(bias)
    return bias


@torch.no_grad()
def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for fast inference: every batch norm that follows a convolution
    folded into it (``w·γ/σ``, ``(b − μ)·γ/σ + β`` with the running statistics), activations
    channels-last, in eval mode. The same function up to rounding (about 1e-6 in float32); it
    saves one pass over every full-size feature map per block.
    """
    import copy

    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, ConvBlock) or not isinstance(module[1], nn.BatchNorm2d):
            continue
        conv, norm = module[0], module[1]
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
        conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias)
        module[1] = nn.Identity()
    return folded.to(memory_format=torch.channels_last)
