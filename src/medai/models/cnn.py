"""Image classifiers (2-D and 3-D) built from MONAI's networks, with stems that are sane on a CPU.

Every builder takes ``in_features`` = input channels (1 grey, 3 RGB) and ``out_features`` = outputs (1 for a binary
task, K for K classes or K findings) and returns logits ``(batch, out_features)`` for an input
``(batch, C, *spatial)``. Weights are always randomly initialised: medai never downloads pretrained weights.

Stems (the first convolution), chosen by ``stem``:

- ``standard``: 7×7 stride-2 convolution + 3×3 max-pool, the ImageNet stem — for images of 64 px and more.
  (MONAI's ResNet defaults to stride 1 here, about 4× the compute of the usual network; medai passes stride 2.)
- ``small``: 3×3 stride-1 convolution, no max-pool — for 28–32 px inputs (MedMNIST), where the standard stem
  throws resolution away early (about 0.915 vs 0.886 AUC on BreastMNIST at ~2.5× the cost).

``stem: auto`` is resolved by the imaging workflow from the input size before the model is built (and stored
in the run's configuration, so the artefact rebuilds the same network).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from medai.core.errors import invalid_parameter
from medai.models.registry import MODELS

STEMS = ("standard", "small")
#: Inputs whose smallest spatial side is at most this get the small stem under ``stem: auto``.
SMALL_INPUT_MAX = 64


def resolve_stem(stem: str, spatial_shape: tuple[int, ...]) -> str:
    """``auto`` → ``small`` for inputs up to :data:`SMALL_INPUT_MAX` px on their smallest side, else ``standard``."""
    if stem == "auto":
        return "small" if min(spatial_shape) <= SMALL_INPUT_MAX else "standard"
    if stem not in STEMS:
        raise invalid_parameter("stem", "image model", f"'auto' or one of {list(STEMS)}", stem)
    return stem


def _check(spatial_dims: int, stem: str, owner: str) -> None:
    if spatial_dims not in (2, 3):
        raise invalid_parameter("spatial_dims", owner, "2 or 3", spatial_dims)
    if stem not in STEMS:
        raise invalid_parameter("stem", owner, f"one of {list(STEMS)} (resolve 'auto' from the input size first)",
                                stem)


class _ImageModel(nn.Module):
    """Shared example input for the common model contract test."""

    @classmethod
    def contract_case(cls, out_features: int):
        return 1, {"spatial_dims": 2, "stem": "small"}, torch.randn(4, 1, 32, 32), (4, out_features)


NORMS = ("batch", "group")


def _resnet(block: str, layers: list[int], in_features: int, out_features: int, spatial_dims: int, stem: str,
            widen_factor: float, norm: str) -> nn.Module:
    from monai.networks.nets import ResNet

    if norm not in NORMS:
        raise invalid_parameter("norm", "ResNet", f"one of {list(NORMS)}", norm)
    small = stem == "small"
    net = ResNet(block=block, layers=layers, block_inplanes=[64, 128, 256, 512], spatial_dims=spatial_dims,
                 n_input_channels=in_features, conv1_t_size=3 if small else 7, conv1_t_stride=1 if small else 2,
                 no_max_pool=small, widen_factor=widen_factor, num_classes=out_features,
                 norm="batch" if norm == "batch" else ("group", {"num_groups": 4}))
    if norm == "group":  # MONAI builds the shortcut's norm as batch norm whatever `norm` says: replace it
        _replace_batch_norm(net)
    return net


def _replace_batch_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.GroupNorm(4, child.num_features))
        else:
            _replace_batch_norm(child)


@MODELS.register("resnet18")
class ResNet18(_ImageModel):
    """ResNet-18 (He et al. 2016) from MONAI. Args: ``spatial_dims`` 2 or 3, ``stem`` (see module docstring),
    ``widen_factor`` (channel multiplier; 0.5 halves the width for small datasets), ``norm``: ``batch`` (default)
    or ``group`` (GroupNorm with 4 groups: independent of the batch, so training under DDP on CPUs — where
    SyncBatchNorm is unavailable — is exactly the single-process training)."""

    layers = [2, 2, 2, 2]
    block = "basic"

    def __init__(self, in_features: int, out_features: int, spatial_dims: int = 2, stem: str = "standard",
                 widen_factor: float = 1.0, norm: str = "batch") -> None:
        super().__init__()
        _check(spatial_dims, stem, type(self).__name__)
        self.net = _resnet(self.block, self.layers, in_features, out_features, spatial_dims, stem, widen_factor,
                           norm)

    def forward(self, x: Tensor) -> Tensor:  # (batch, C, *spatial) -> (batch, out_features)
        return self.net(x)


@MODELS.register("resnet50")
class ResNet50(ResNet18):
    """ResNet-50 (bottleneck blocks) from MONAI; same arguments as ``resnet18``."""

    layers = [3, 4, 6, 3]
    block = "bottleneck"


@MODELS.register("densenet121")
class DenseNet121(_ImageModel):
    """DenseNet-121 (Huang et al. 2017; CheXNet's network) from MONAI. Args: ``spatial_dims``, ``stem``,
    ``dropout`` (after each dense layer). The small stem replaces the 7×7/2 convolution + max-pool by a 3×3/1
    convolution."""

    def __init__(self, in_features: int, out_features: int, spatial_dims: int = 2, stem: str = "standard",
                 dropout: float = 0.0) -> None:
        super().__init__()
        from monai.networks.nets import DenseNet

        _check(spatial_dims, stem, type(self).__name__)
        self.net = DenseNet(spatial_dims=spatial_dims, in_channels=in_features, out_channels=out_features,
                            init_features=64, growth_rate=32, block_config=(6, 12, 24, 16), dropout_prob=dropout)
        if stem == "small":
            conv = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
            self.net.features.conv0 = conv(in_features, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.net.features.pool0 = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@MODELS.register("vit")
class SmallViT(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al. 2021) from MONAI: patch embedding, ``depth`` encoder blocks
    of width ``hidden_size``, classification token. ``image_size`` (the training size, set by the workflow) and
    ``patch_size`` fix the number of tokens. Defaults (6 blocks × 192, 3 heads) suit 28–64 px inputs on a CPU."""

    def __init__(self, in_features: int, out_features: int, image_size: list[int] | tuple[int, ...] = (28, 28),
                 patch_size: int = 4, hidden_size: int = 192, depth: int = 6, heads: int = 3,
                 dropout: float = 0.1) -> None:
        super().__init__()
        from monai.networks.nets import ViT

        image_size = tuple(int(s) for s in image_size)
        if len(image_size) not in (2, 3):
            raise invalid_parameter("image_size", "SmallViT", "2 or 3 integers", image_size)
        if any(s % patch_size for s in image_size):
            raise invalid_parameter("patch_size", "SmallViT", f"a divisor of every side of {image_size}",
                                    patch_size)
        self.net = ViT(in_channels=in_features, img_size=image_size, patch_size=patch_size, hidden_size=hidden_size,
                       mlp_dim=4 * hidden_size, num_layers=depth, num_heads=heads, classification=True,
                       num_classes=out_features, dropout_rate=dropout, spatial_dims=len(image_size),
                       post_activation=None)
        for block in self.net.blocks:  # MONAI keeps an unused cross-attention norm: drop it (DDP needs every
            if not getattr(block, "with_cross_attention", False):  # parameter to get a gradient)
                block.norm_cross_attn = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        logits, _hidden = self.net(x)
        return logits

    @classmethod
    def contract_case(cls, out_features: int):
        params: dict[str, Any] = {"image_size": [16, 16], "patch_size": 4, "hidden_size": 32, "depth": 2,
                                  "heads": 2}
        return 1, params, torch.randn(4, 1, 16, 16), (4, out_features)


#: Registered names that take images, i.e. the imaging workflow's model choices.
IMAGE_MODELS = ("resnet18", "resnet50", "densenet121", "vit")
