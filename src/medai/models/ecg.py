"""Networks for ECG: ``(batch, leads, samples)`` of any length → logits ``(batch, out_features)``.

Every builder takes ``in_features`` = the number of leads (1 for a single-lead rhythm strip, 12 for a standard
ECG) and ``out_features`` = outputs (1 for a binary task, K for K classes or K findings). Inputs are expected
normalised before they reach the network (per lead, about mean 0 and s.d. 1; see
:mod:`medai.data.ecg_augmentation`). Weights are always randomly initialised: medai never downloads pretrained
weights.

Both networks also give

- ``features(x)``: the pooled embedding ``(batch, embedding_size)`` the linear head reads;
- ``forward_time(x)``: per-time-step logits ``(batch, out_features, steps)`` from the last feature map before
  pooling, one step per ``downsampling`` input samples (step ``t`` covers about samples
  ``[t · downsampling, (t + 1) · downsampling)``, widened by the receptive field). Upsample it to the input length
  (``torch.nn.functional.interpolate``) for a class activation map over the recording;
- ``feature_map(x)``: that last feature map ``(batch, channels, steps)``, the layer to take 1-D Grad-CAM on
  (Selvaraju et al. 2017: weight each channel by the mean gradient of a logit, sum, ReLU).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from medai.core.errors import DataValidationError, invalid_parameter
from medai.models.registry import MODELS


def _check_input(x: Tensor, leads: int, min_samples: int, owner: str) -> None:
    if x.ndim != 3 or x.shape[1] != leads:
        raise DataValidationError(
            f"{owner} expects input (batch, leads={leads}, samples); got shape {tuple(x.shape)}. Stack recordings "
            "as (leads, samples) and resample them to the training sampling rate first."
        )
    if x.shape[2] < min_samples:
        raise DataValidationError(
            f"{owner} needs at least {min_samples} samples per recording; got {x.shape[2]}. Pad short recordings "
            "or use a longer window."
        )


def _positive_int(value: Any, name: str, owner: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise invalid_parameter(name, owner, f"an integer >= {minimum}", value)
    return value


def _dropout(value: Any, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise invalid_parameter("dropout", owner, "a number in [0, 1)", value)
    return float(value)


class _PreActBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016, "Identity mappings"; the block of Hannun et al. 2019):
    BN → ReLU → dropout → conv(k, stride) → BN → ReLU → dropout → conv(k), plus a shortcut that max-pools by the
    stride (Ribeiro et al. 2020) and projects with a 1×1 convolution when the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, dropout: float) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.BatchNorm1d(in_channels), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=pad, bias=False),
            nn.BatchNorm1d(out_channels), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad, bias=False),
        )
        shortcut: list[nn.Module] = []
        if stride > 1:  # ceil_mode: ceil(L / 2) steps, the same as the strided convolution with odd kernel
            shortcut.append(nn.MaxPool1d(stride, ceil_mode=True))
        if in_channels != out_channels:
            shortcut.append(nn.Conv1d(in_channels, out_channels, 1, bias=False))
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, L) -> (B, C_out, ceil(L / stride))
        return self.body(x) + self.shortcut(x)


@MODELS.register("resnet1d")
class ResNet1d(nn.Module):
    """A 1-D residual network for ECG classification, after Hannun et al. (Nat Med 2019) and Ribeiro et al.
    (Nat Commun 2020).

    Stem: convolution (``stem_kernel_size``, stride 2) → BN → ReLU. Then ``stages`` stages of
    ``blocks_per_stage`` pre-activation residual blocks (kernel ``kernel_size``); the first block of every stage
    halves the time axis and stage ``i`` has ``width · 2**i`` channels. A final BN → ReLU closes the
    pre-activation stack; global average and max pooling over time are concatenated, then dropout → linear.

    The time axis is divided by ``downsampling = 2 ** (stages + 1)`` (32 by default): 10 s at 150 Hz (1,500
    samples) leaves 47 steps of ~0.21 s, 10 s at 500 Hz leaves 157 steps of 64 ms. Any length of at least
    ``downsampling`` samples works; give ≥ 2 s for a meaningful rhythm.

    Args:
        in_features: number of leads.
        out_features: number of logits.
        width: channels of the stem and the first stage (default 32).
        stages: number of stride-2 stages (default 4).
        blocks_per_stage: residual blocks per stage (default 1; 2 doubles the depth).
        kernel_size: odd kernel of the residual convolutions (default 9; 9–17 in the papers).
        stem_kernel_size: odd kernel of the stem convolution (default 15).
        dropout: dropout inside blocks and before the head (default 0.2).

    ``forward_time(x)`` gives, for every step ``t`` of the last feature map ``h``, the logits the head gives a
    feature map that is ``h_t`` alone (its average and its max are both ``h_t``), i.e.
    ``W_avg · h_t + W_max · h_t + b``: high where the evidence for a class lies. Because of the max branch its
    mean over time is not exactly the logits (it is for ``ecg_transformer``).
    """

    def __init__(self, in_features: int, out_features: int, width: int = 32, stages: int = 4,
                 blocks_per_stage: int = 1, kernel_size: int = 9, stem_kernel_size: int = 15,
                 dropout: float = 0.2) -> None:
        super().__init__()
        owner = "ResNet1d"
        _positive_int(in_features, "in_features", owner)
        _positive_int(out_features, "out_features", owner)
        _positive_int(width, "width", owner)
        _positive_int(stages, "stages", owner)
        _positive_int(blocks_per_stage, "blocks_per_stage", owner)
        for name, value in (("kernel_size", kernel_size), ("stem_kernel_size", stem_kernel_size)):
            if _positive_int(value, name, owner) % 2 == 0:  # odd: "same" padding keeps steps aligned with time
                raise invalid_parameter(name, owner, "an odd integer >= 1", value)
        dropout = _dropout(dropout, owner)
        self.in_features = in_features
        self.downsampling = 2 ** (stages + 1)
        self.stem = nn.Sequential(
            nn.Conv1d(in_features, width, stem_kernel_size, stride=2, padding=stem_kernel_size // 2, bias=False),
            nn.BatchNorm1d(width), nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        channels = width
        for stage in range(stages):
            out_channels = width * 2**stage
            for block in range(blocks_per_stage):
                blocks.append(_PreActBlock(channels, out_channels, kernel_size, 2 if block == 0 else 1, dropout))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.final = nn.Sequential(nn.BatchNorm1d(channels), nn.ReLU(inplace=True))
        self.channels = channels
        self.embedding_size = 2 * channels
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels, out_features)

    def feature_map(self, x: Tensor) -> Tensor:
        """``(batch, leads, samples)`` → last feature map ``(batch, channels, ceil(samples / downsampling))``."""
        _check_input(x, self.in_features, self.downsampling, "ResNet1d")
        return self.final(self.blocks(self.stem(x)))

    def features(self, x: Tensor) -> Tensor:
        """Pooled embedding ``(batch, 2 · channels)``: time-average then time-max of the last feature map."""
        h = self.feature_map(x)
        return torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)

    def forward(self, x: Tensor) -> Tensor:  # (batch, leads, samples) -> (batch, out_features)
        return self.head(self.dropout(self.features(x)))

    def forward_time(self, x: Tensor) -> Tensor:
        """Per-time-step logits ``(batch, out_features, steps)`` (see the class docstring)."""
        h = self.feature_map(x)  # (B, C, T)
        weight = self.head.weight[:, : self.channels] + self.head.weight[:, self.channels :]  # (out, C)
        return torch.einsum("oc,bct->bot", weight.to(h.dtype), h) + self.head.bias.to(h.dtype)[None, :, None]

    @classmethod
    def contract_case(cls, out_features: int):
        return 2, {"width": 8, "stages": 3}, torch.randn(4, 2, 300), (4, out_features)


def sinusoidal_positions(steps: int, width: int, device: torch.device | None = None) -> Tensor:
    """Sinusoidal position encoding ``(steps, width)`` (Vaswani et al. 2017), computed for any length in fp32."""
    position = torch.arange(steps, dtype=torch.float32, device=device)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32, device=device)
                          * (-math.log(10000.0) / width))
    table = torch.zeros(steps, width, dtype=torch.float32, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return table


@MODELS.register("ecg_transformer")
class EcgTransformer(nn.Module):
    """A small transformer for ECG: a convolutional tokenizer, sinusoidal positions, pre-norm encoder layers,
    mean pooling over tokens, linear head.

    Tokenizer: conv(kernel 9, stride 4) → BN → GELU → conv(kernel ``2 · s + 1``, stride ``s = token_stride / 4``)
    → BN gives one token of ``width`` channels per ``token_stride`` samples. The last BN puts the tokens on the
    scale of the ±1 positional encoding added to them: without it the positions swamped the content at
    initialisation and a synthetic rhythm task trained slowly or not at all (0.5–0.7 vs 0.98–1.0 accuracy after 60
    steps). Choose about 60 ms per token:
    ``token_stride`` 8 at 150 Hz (53 ms), 16 at 250 Hz (64 ms), 32 at 500 Hz (64 ms); the default 16 suits
    250–360 Hz. The sinusoidal positions are computed for the number of tokens of each batch, so any length works
    (at least ``token_stride`` samples). Then ``depth`` × ``nn.TransformerEncoderLayer`` (``heads`` heads,
    feed-forward 4 · ``width``, GELU, pre-norm) and a final LayerNorm; the token mean feeds the head.

    Args:
        in_features: number of leads.
        out_features: number of logits.
        width: token size ``d_model`` (default 64; must divide by ``heads`` and be even).
        depth: encoder layers (default 4).
        heads: attention heads (default 4).
        token_stride: input samples per token, a multiple of 4 (default 16).
        dropout: dropout in the encoder layers and before the head (default 0.1).

    ``forward(x, valid_samples=None)``: ``valid_samples`` ``(batch,)`` gives the real length of each recording of
    a zero-padded batch; tokens that start past it are masked out of attention and pooling.
    ``forward_time(x)`` is the head applied to every token, so its mean over time equals the logits (in eval mode).
    """

    def __init__(self, in_features: int, out_features: int, width: int = 64, depth: int = 4, heads: int = 4,
                 token_stride: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        owner = "EcgTransformer"
        _positive_int(in_features, "in_features", owner)
        _positive_int(out_features, "out_features", owner)
        _positive_int(depth, "depth", owner)
        _positive_int(heads, "heads", owner)
        if _positive_int(width, "width", owner, minimum=2) % heads or width % 2:
            raise invalid_parameter("width", owner, f"an even multiple of heads={heads}", width)
        if _positive_int(token_stride, "token_stride", owner, minimum=4) % 4:
            raise invalid_parameter("token_stride", owner, "a multiple of 4 (e.g. 8, 16, 32)", token_stride)
        dropout = _dropout(dropout, owner)
        self.in_features = in_features
        self.downsampling = token_stride
        self.width = width
        self.embedding_size = width
        second = token_stride // 4
        self.tokenizer = nn.Sequential(
            nn.Conv1d(in_features, width // 2, 9, stride=4, padding=4, bias=False),
            nn.BatchNorm1d(width // 2), nn.GELU(),
            nn.Conv1d(width // 2, width, 2 * second + 1, stride=second, padding=second, bias=False),
            nn.BatchNorm1d(width),
        )
        layer = nn.TransformerEncoderLayer(d_model=width, nhead=heads, dim_feedforward=4 * width, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        # enable_nested_tensor is a speed path for padded batches that norm_first layers do not take (it warns)
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, out_features)

    def _tokens(self, x: Tensor, valid_samples: Tensor | None) -> tuple[Tensor, Tensor | None]:
        _check_input(x, self.in_features, self.downsampling, "EcgTransformer")
        tokens = self.tokenizer(x).transpose(1, 2)  # (B, T, width)
        steps = tokens.shape[1]
        tokens = tokens + sinusoidal_positions(steps, self.width, tokens.device).to(tokens.dtype)
        padding = None
        if valid_samples is not None:
            valid_samples = torch.as_tensor(valid_samples, device=x.device)
            if valid_samples.shape != (x.shape[0],) or bool((valid_samples < 1).any()):
                raise DataValidationError(
                    f"EcgTransformer: valid_samples must hold one positive length per recording "
                    f"({x.shape[0]}); got shape {tuple(valid_samples.shape)}."
                )
            start = torch.arange(steps, device=x.device) * self.downsampling
            padding = start[None, :] >= valid_samples[:, None]  # True = a token that starts in the padding
        return self.norm(self.encoder(tokens, src_key_padding_mask=padding)), padding

    def feature_map(self, x: Tensor, valid_samples: Tensor | None = None) -> Tensor:
        """``(batch, leads, samples)`` → encoded tokens ``(batch, width, ceil(samples / token_stride))``."""
        return self._tokens(x, valid_samples)[0].transpose(1, 2)

    def features(self, x: Tensor, valid_samples: Tensor | None = None) -> Tensor:
        """Pooled embedding ``(batch, width)``: the mean of the encoded tokens (of the valid ones when given)."""
        tokens, padding = self._tokens(x, valid_samples)
        if padding is None:
            return tokens.mean(dim=1)
        keep = (~padding).to(tokens.dtype)[:, :, None]
        return (tokens * keep).sum(dim=1) / keep.sum(dim=1)

    def forward(self, x: Tensor, valid_samples: Tensor | None = None) -> Tensor:
        return self.head(self.dropout(self.features(x, valid_samples)))

    def forward_time(self, x: Tensor, valid_samples: Tensor | None = None) -> Tensor:
        """Per-token logits ``(batch, out_features, steps)``; their mean over the tokens is the logits."""
        return self.head(self._tokens(x, valid_samples)[0]).transpose(1, 2)

    @classmethod
    def contract_case(cls, out_features: int):
        params = {"width": 32, "depth": 2, "heads": 4, "token_stride": 8}
        return 2, params, torch.randn(4, 2, 300), (4, out_features)


#: Registered names that take ECG ``(batch, leads, samples)``.
ECG_MODELS = ("resnet1d", "ecg_transformer")
