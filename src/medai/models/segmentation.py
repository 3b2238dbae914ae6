"""Segmentation networks: MONAI's U-Net (2-D or 3-D) registered as ``unet``.

The U-Net follows Ronneberger et al., MICCAI 2015 (2-D) and Çiçek et al., MICCAI 2016 (3-D), in MONAI's residual
variant (Kerfoot et al., STACOM 2018): strided convolutions down, transposed convolutions up, skip connections.
The network outputs one logit map per class; the class of a voxel is the argmax (softmax over classes for
probabilities). Class 0 is the background.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.nets import UNet as MonaiUNet
from torch import Tensor

from medai.core.errors import DataValidationError, invalid_parameter
from medai.models.registry import MODELS

__all__ = ["UNet"]


@MODELS.register("unet")
class UNet(MonaiUNet):
    """U-Net ``(batch, in_features, *spatial) -> (batch, out_features, *spatial)`` class logits.

    The state dict is MONAI's ``monai.networks.nets.UNet`` one (same keys), so weights move between the two.

    Args:
        in_features: input channels (1 for a grey image or volume).
        out_features: classes including the background (2 for one structure against the background).
        spatial_dims: 2 (images ``(H, W)``) or 3 (volumes ``(D, H, W)``).
        channels: feature channels per resolution level, from the finest to the bottleneck.
        strides: down-sampling factor between consecutive levels (``len(channels) - 1`` values); every spatial
            size of the input must be a multiple of their product.
        num_res_units: residual units per block (0 = plain convolutions). The default 1 trains about twice as
            fast as 2 on a CPU (measured at 64 x 64, one thread).
        norm: ``instance`` (default; independent of batch size) or ``batch``.
        dropout: dropout probability inside each block.
    """

    def __init__(
        self,
        in_features: int = 1,
        out_features: int = 2,
        spatial_dims: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 1,
        norm: str = "instance",
        dropout: float = 0.0,
    ) -> None:
        owner = "UNet"
        if spatial_dims not in (2, 3):
            raise invalid_parameter("spatial_dims", owner, "2 or 3", spatial_dims)
        channels, strides = tuple(int(c) for c in channels), tuple(int(s) for s in strides)
        if len(channels) < 2 or any(c < 1 for c in channels):
            raise invalid_parameter("channels", owner, "at least 2 positive integers, e.g. [16, 32, 64, 128]",
                                    list(channels))
        if len(strides) != len(channels) - 1 or any(s < 1 for s in strides):
            raise invalid_parameter("strides", owner, f"{len(channels) - 1} positive integers (one fewer than "
                                    "'channels')", list(strides))
        if norm not in ("instance", "batch"):
            raise invalid_parameter("norm", owner, "'instance' or 'batch'", norm)
        if not 0.0 <= dropout < 1.0:
            raise invalid_parameter("dropout", owner, "in [0, 1)", dropout)
        if in_features < 1 or out_features < 1:
            raise invalid_parameter("out_features", owner, "a positive number of classes", out_features)
        super().__init__(spatial_dims=spatial_dims, in_channels=in_features, out_channels=out_features,
                         channels=channels, strides=strides, num_res_units=num_res_units, norm=norm,
                         dropout=dropout)
        self.size_multiple = math.prod(strides)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, *spatial) -> (B, classes, *spatial)
        if x.ndim != self.dimensions + 2:
            raise DataValidationError(
                f"UNet with spatial_dims={self.dimensions} expects input (batch, channels, "
                f"{', '.join('HW' if self.dimensions == 2 else 'DHW')}); got shape {tuple(x.shape)}."
            )
        bad = [s for s in x.shape[2:] if s % self.size_multiple]
        if bad:
            raise DataValidationError(
                f"UNet input spatial size {tuple(x.shape[2:])} must be a multiple of {self.size_multiple} on every "
                "axis (the product of 'strides'); pad or crop the images (e.g. preprocessing.image_size)."
            )
        return super().forward(x)

    @classmethod
    def contract_case(cls, out_features: int) -> tuple[int, dict, Tensor, tuple[int, ...]]:
        """A small 2-D case for the common model contract test: ``(in_features, params, x, output shape)``."""
        params = {"spatial_dims": 2, "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}
        x = torch.randn(2, 1, 16, 16)
        return 1, params, x, (2, out_features, 16, 16)
