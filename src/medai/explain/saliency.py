"""Saliency maps for image classifiers: Grad-CAM (MONAI) and integrated gradients (captum).

Both take ``images`` ``(N, C, *spatial)`` (2-D or 3-D) already preprocessed exactly as the model expects, and a
``target`` class per image, and return one map per image ``(N, *spatial)`` at the input resolution.

Targets and single-logit models: a multiclass (or multilabel) model's target ``k`` explains logit ``k``. A binary model with ONE
output logit ``z`` (medai's binary models) is treated as having the two class scores ``(-z, z)``: target 1
explains the positive class (``z``), target 0 the negative class (``-z``, the evidence *against* the positive
class). Scores are logits, never probabilities (the softmax/sigmoid saturates and flattens gradients; Selvaraju
et al. 2017 also use the pre-softmax score).

The model is put in eval mode for the computation and every module's train/eval flag is restored afterwards;
parameters get no gradient (their ``requires_grad`` flags and any ``.grad`` already present are restored).
Everything runs in float32 with autocast disabled.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medai.core.errors import DataValidationError, InvalidParameterError, invalid_parameter, unknown_name

__all__ = [
    "SaliencyMethod",
    "displayable",
    "explain_images",
    "find_target_layer",
    "grad_cam",
    "integrated_gradients",
]


class SaliencyMethod(StrEnum):
    """The saliency methods :func:`explain_images` and the sanity check know."""

    GRAD_CAM = "grad_cam"  # Selvaraju et al. 2017, via monai.visualize.GradCAM
    INTEGRATED_GRADIENTS = "integrated_gradients"  # Sundararajan et al. 2017, via captum


_CONV = (nn.Conv2d, nn.Conv3d)
# Modules that map a feature map to a feature map of the same shape, element-wise or per channel: a block whose
# last convolution is followed only by these still outputs "the last convolutional feature map".
_POINTWISE = (
    nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.ReLU, nn.ReLU6,
    nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Tanh,
    nn.Dropout, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
)


def _attention_types() -> tuple[type, ...]:
    types: list[type] = [nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer]
    with contextlib.suppress(ImportError):
        from monai.networks.blocks import CrossAttentionBlock, SABlock, TransformerBlock

        types += [SABlock, CrossAttentionBlock, TransformerBlock]
    return tuple(types)


def _is_attention(module: nn.Module, types: tuple[type, ...]) -> bool:
    # Swin's WindowAttention and similar blocks are not subclasses of a shared type; their names say it.
    return isinstance(module, types) or type(module).__name__.endswith("Attention")


def find_target_layer(model: nn.Module) -> str:
    """Name of the module whose output is the model's last convolutional feature map (the Grad-CAM layer).

    That is the last ``Conv2d``/``Conv3d`` (in definition order), or, when it ends a block, the outermost block
    that ends with it and adds only per-channel operations (normalisation, activation, dropout) — so that the
    map covers what the block outputs: MONAI ResNet's ``layer4`` (with its residual connection), DenseNet's
    ``features`` (all concatenated channels, not only the 32 of the last dense layer), a plain ``nn.Sequential``
    CNN's last ``Conv`` index. The model itself is never returned. :func:`grad_cam` checks at run time that the
    module runs once per forward pass and outputs a ``(N, C, *spatial)`` map; pass ``layer=`` to override.

    Raises:
        InvalidParameterError: the model has no convolution, or applies attention after its last convolution
            (a ViT: its convolution only embeds patches). Grad-CAM is then not available; use integrated
            gradients alone.
    """
    named = list(model.named_modules())
    conv_positions = [i for i, (_, m) in enumerate(named) if isinstance(m, _CONV)]
    owner = type(model).__name__
    if not conv_positions:
        raise InvalidParameterError(
            f"Grad-CAM needs a convolutional network, but {owner} has no Conv2d/Conv3d layer. Grad-CAM is not "
            "available for this model; use integrated gradients alone (methods=('integrated_gradients',))."
        )
    last = conv_positions[-1]
    attention = _attention_types()
    after = [name for name, m in named[last + 1:] if _is_attention(m, attention)]
    if after:
        raise InvalidParameterError(
            f"Grad-CAM needs a convolutional network, but {owner} applies attention ('{after[0]}') after its last "
            f"convolution ('{named[last][0]}'), as a Vision Transformer does: there is no convolutional feature "
            "map to weight. Grad-CAM is not available for this model; use integrated gradients alone "
            "(methods=('integrated_gradients',))."
        )
    index = {name: i for i, (name, _) in enumerate(named)}
    target = named[last][0]
    while "." in target:
        parent = target.rsplit(".", 1)[0]
        # named_modules() is a pre-order walk: a module's subtree follows it contiguously, in definition order.
        end_of_target = max(i for name, i in index.items() if name == target or name.startswith(target + "."))
        later = [m for name, m in named[end_of_target + 1:]
                 if name.startswith(parent + ".") and next(m.children(), None) is None]
        if not all(isinstance(m, _POINTWISE) for m in later):
            break
        target = parent
    return target


class _ClassScores(nn.Module):
    """The wrapped model's logits as one score per class: a single logit ``z`` becomes ``(-z, z)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:  # (N, C, *spatial) -> (N, n_classes)
        logits = self.model(x)
        if isinstance(logits, tuple | list):  # e.g. MONAI's ViT returns (logits, hidden states)
            logits = logits[0]
        if logits.ndim == 1:
            logits = logits[:, None]
        if logits.ndim != 2:
            raise DataValidationError(
                f"Saliency maps explain a classifier's logits (N, n_classes), but {type(self.model).__name__} "
                f"returned shape {tuple(logits.shape)}."
            )
        return torch.cat([-logits, logits], dim=1) if logits.shape[1] == 1 else logits


def _check_images(images: Any, owner: str) -> Tensor:
    if not isinstance(images, Tensor):
        raise invalid_parameter("images", owner, "a float torch.Tensor (N, C, *spatial) (use torch.as_tensor)",
                                type(images).__name__)
    if images.ndim not in (4, 5):
        raise DataValidationError(
            f"{owner}: images must be (N, C, H, W) or (N, C, D, H, W); got shape {tuple(images.shape)}. "
            "Add the batch axis with images[None] for one image."
        )
    if not images.is_floating_point():
        raise DataValidationError(
            f"{owner}: images must be floating point, preprocessed as the model expects; got {images.dtype}."
        )
    if images.shape[0] == 0:
        raise DataValidationError(f"{owner}: images is empty (N = 0).")
    return images


def _check_model(model: Any, owner: str) -> torch.device:
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", owner, "a torch.nn.Module", type(model).__name__)
    params = list(model.parameters())
    other = sorted({str(p.dtype) for p in params if p.is_floating_point() and p.dtype != torch.float32})
    if other:
        raise InvalidParameterError(
            f"{owner} runs in float32, but the model has {', '.join(other)} parameters. Pass a float32 model "
            "(model.float(), or load the checkpoint without converting it)."
        )
    return params[0].device if params else torch.device("cpu")


def _n_classes(model: nn.Module, x: Tensor) -> int:
    with torch.no_grad():
        return int(_ClassScores(model)(x[:1]).shape[1])


def _check_targets(target: Any, n_images: int, n_classes: int, owner: str) -> np.ndarray:
    if isinstance(target, Tensor):
        target = target.detach().cpu().numpy()
    values = np.asarray(target)
    if values.ndim == 0:
        values = np.full(n_images, values)
    if values.ndim != 1 or len(values) != n_images or values.dtype.kind not in "iub":
        raise invalid_parameter("target", owner, f"one integer class index or {n_images} of them (one per image)",
                                target if np.ndim(target) == 0 else f"array of shape {np.shape(target)}")
    values = values.astype(np.int64)
    bad = values[(values < 0) | (values >= n_classes)]
    if bad.size:
        meaning = " (a single-logit binary model: 0 = negative, 1 = positive class)" if n_classes == 2 else ""
        raise invalid_parameter("target", owner, f"class indices in [0, {n_classes - 1}]{meaning}", int(bad[0]))
    return values


@contextlib.contextmanager
def _explaining(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, frozen parameters, float32, gradients on; restores every flag and existing ``.grad`` after."""
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    flags = [(p, p.requires_grad, p.grad) for p in params]
    try:
        model.eval()
        for p in params:
            # Gradients flow to the input and the hooked activations only; no parameter accumulates one.
            p.requires_grad_(False)
        with torch.enable_grad(), torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad, grad in flags:
            p.requires_grad_(requires_grad)
            p.grad = grad


@contextlib.contextmanager
def _temporary_hooks(module: nn.Module) -> Iterator[None]:
    """Remove the hooks monai.visualize adds to ``module`` when done (it never removes them)."""
    forward_keys = set(module._forward_hooks)
    backward_keys = set(module._backward_hooks)
    full_backward = getattr(module, "_is_full_backward_hook", None)
    try:
        yield
    finally:
        for key in set(module._forward_hooks) - forward_keys:
            del module._forward_hooks[key]
        for key in set(module._backward_hooks) - backward_keys:
            del module._backward_hooks[key]
        module._is_full_backward_hook = full_backward


@contextlib.contextmanager
def _out_of_place(model: nn.Module) -> Iterator[None]:
    """Switch off ``inplace`` everywhere: an in-place op on the hooked layer's output (DenseNet's ReLU after
    ``features``) is forbidden under a full backward hook. In-place is only a memory saving; results are equal."""
    switched = [m for m in model.modules() if m.__dict__.get("inplace") is True]
    try:
        for m in switched:
            m.inplace = False
        yield
    finally:
        for m in switched:
            m.inplace = True


def grad_cam(model: nn.Module, images: Tensor, target: Any, layer: str | None = None) -> np.ndarray:
    """Grad-CAM maps (Selvaraju et al. 2017) computed with ``monai.visualize.GradCAM``.

    The map is ReLU(Σ_c α_c A_c) at the target layer, with α_c the spatial mean of the target score's gradient
    over feature map ``A_c``, upsampled (bi/trilinear) to the input size and divided by its maximum: 1 marks the
    strongest positive evidence for the target class, 0 none. A map with no positive evidence is all zeros.

    Args:
        model: a float32 classifier returning logits ``(N, n_classes)`` or one logit ``(N, 1)``.
        images: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` float tensor, preprocessed as the model expects.
        target: the class to explain, one int for all images or one per image. For a single-logit binary
            model 1 explains the positive class and 0 the negative class (the negated logit).
        layer: name of the module to take the feature maps from (``dict(model.named_modules())`` keys);
            default :func:`find_target_layer`.

    Returns:
        ``(N, *spatial)`` float32 maps in [0, 1], at the input resolution.

    Raises:
        InvalidParameterError: a bad ``target``; a layer that is not a spatial feature map or runs more than once
            per forward pass; a model without convolutions (see :func:`find_target_layer`).
        UnknownNameError: ``layer`` is not a module of the model.
    """
    from monai.visualize import GradCAM

    owner = "grad_cam"
    device = _check_model(model, owner)
    x = _check_images(images, owner).detach().to(device=device, dtype=torch.float32)
    modules = dict(model.named_modules())
    if layer is None:
        layer = find_target_layer(model)
    elif layer not in modules or layer == "":
        raise unknown_name("layer", str(layer), [name for name in modules if name])
    module = modules[layer]
    scores = _ClassScores(model)
    scores.training = False  # its own flag only; _explaining has set the model's
    out = np.zeros((x.shape[0], *x.shape[2:]), dtype=np.float32)
    calls: list[tuple[int, ...]] = []

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        calls.append(tuple(output.shape) if isinstance(output, Tensor) else ())

    with _explaining(model, device), _out_of_place(model), _temporary_hooks(module):
        # One plain forward pass first: it checks the layer before MONAI fails on it with a shape error.
        handle = module.register_forward_hook(record)
        try:
            n_classes = _n_classes(model, x)
        finally:
            handle.remove()
        _check_layer_calls(calls, layer, x.ndim, type(model).__name__)
        targets = _check_targets(target, x.shape[0], n_classes, owner)
        cam = GradCAM(nn_module=scores, target_layers=f"model.{layer}", postprocessing=lambda m: m)
        # MONAI's class_idx is one int per call: run once per distinct target.
        for cls in np.unique(targets):
            rows = np.flatnonzero(targets == cls)
            batch = x[rows].clone().requires_grad_(True)  # the graph reaches the layer with frozen weights
            out[rows] = cam(batch, class_idx=int(cls))[:, 0].detach().cpu().numpy()
    peak = out.reshape(len(out), -1).max(axis=1)
    peak = peak.reshape(-1, *[1] * (out.ndim - 1))
    return np.divide(out, peak, out=np.zeros_like(out), where=peak > 0).astype(np.float32)


def _check_layer_calls(calls: list[tuple[int, ...]], layer: str, ndim: int, owner: str) -> None:
    if len(calls) != 1:
        raise InvalidParameterError(
            f"Grad-CAM layer '{layer}' of {owner} runs {len(calls)} times per forward pass; it needs a module "
            "that runs once (e.g. a whole block, or the last Conv2d/Conv3d). Pass another layer=."
        )
    shape = calls[0]
    if len(shape) != ndim:
        raise InvalidParameterError(
            f"Grad-CAM layer '{layer}' of {owner} outputs shape (N, {', '.join(map(str, shape[1:]))}), not a "
            "feature map (N, C, *spatial); "
            "pass layer= naming the last convolution or the block that outputs it."
        )
    if all(s == 1 for s in shape[2:]):
        warnings.warn(
            f"Grad-CAM layer '{layer}' has a {'x'.join(map(str, shape[2:]))} feature map for this input size: "
            "the map is constant and says nothing about location. Use a larger input or an earlier layer.",
            stacklevel=3,
        )


def integrated_gradients(
    model: nn.Module,
    images: Tensor,
    target: Any,
    baseline: Tensor | float | None = None,
    n_steps: int = 32,
    internal_batch_size: int | None = 16,
    return_completeness: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Integrated gradients (Sundararajan et al. 2017) computed with captum's ``IntegratedGradients``.

    The attribution of input element ``x_i`` is ``(x_i - x'_i) · ∫₀¹ ∂f(x' + α(x - x'))/∂x_i dα`` with ``f``
    the target's score (logit) and ``x'`` the baseline; the path integral uses ``n_steps`` Gauss–Legendre points.
    Attributions are summed over channels and returned signed: positive pixels raise the target score, negative
    ones lower it. Use :func:`displayable` to draw them.

    Completeness: the attributions of an image sum to ``f(x) - f(x')`` exactly; the numerical error (captum's
    convergence delta) shows whether ``n_steps`` is enough and is returned with ``return_completeness=True``.

    Args:
        model: a float32 classifier returning logits ``(N, n_classes)`` or one logit ``(N, 1)``.
        images: ``(N, C, *spatial)`` float tensor, preprocessed as the model expects.
        target: class to explain, one int or one per image; single-logit binary models: 1 = positive class,
            0 = negative class (whose attributions are exactly the negated positive-class ones).
        baseline: the reference input ``x'`` in the model's input space: ``None`` (zeros), a float (constant
            image) or a tensor broadcastable to ``images``. After z-score normalisation zero is the training
            mean intensity — the "no signal" reference; for unnormalised inputs zero is a black image.
        n_steps: integration points; raise it when the completeness error is large.
        internal_batch_size: how many of the ``N × n_steps`` interpolated images go through the model at once
            (memory bound); ``None`` sends all at once.
        return_completeness: also return the completeness check.

    Returns:
        ``(N, *spatial)`` float32 signed attributions; with ``return_completeness`` also a JSON-serialisable
        dict: ``n_steps``, per image ``sum_attributions``, ``output_difference`` (``f(x) - f(x')``), ``delta``
        (their difference, captum's convergence delta) and ``relative_error`` (``|delta| / |f(x) - f(x')|``),
        and ``max_abs_delta`` / ``max_relative_error`` over images.
    """
    from captum.attr import IntegratedGradients

    owner = "integrated_gradients"
    device = _check_model(model, owner)
    x = _check_images(images, owner).detach().to(device=device, dtype=torch.float32)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise invalid_parameter("n_steps", owner, "an integer >= 2", n_steps)
    if internal_batch_size is not None and (not isinstance(internal_batch_size, int) or internal_batch_size < 1):
        raise invalid_parameter("internal_batch_size", owner, "a positive integer or None", internal_batch_size)
    base = _baseline(baseline, x, owner)
    scores = _ClassScores(model)
    scores.training = False
    with _explaining(model, device):
        targets = _check_targets(target, x.shape[0], _n_classes(model, x), owner)
        target_t = torch.as_tensor(targets, device=device)
        ig = IntegratedGradients(scores)
        attributions, delta = ig.attribute(
            x, baselines=base, target=target_t, n_steps=n_steps, internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            rows = torch.arange(len(x), device=device)
            difference = scores(x)[rows, target_t] - scores(base.expand_as(x))[rows, target_t]
    maps = attributions.sum(dim=1).detach().cpu().numpy().astype(np.float32)
    if not return_completeness:
        return maps
    totals = attributions.detach().reshape(len(x), -1).sum(dim=1).cpu().numpy().astype(np.float64)
    difference_np = difference.cpu().numpy().astype(np.float64)
    delta_np = delta.detach().cpu().numpy().astype(np.float64)
    relative = np.abs(delta_np) / np.maximum(np.abs(difference_np), 1e-12)
    completeness = {
        "n_steps": n_steps,
        "sum_attributions": [float(v) for v in totals],
        "output_difference": [float(v) for v in difference_np],
        "delta": [float(v) for v in delta_np],
        "relative_error": [float(v) for v in relative],
        "max_abs_delta": float(np.abs(delta_np).max()),
        "max_relative_error": float(relative.max()),
    }
    return maps, completeness


def _baseline(baseline: Tensor | float | None, x: Tensor, owner: str) -> Tensor:
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, int | float) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if isinstance(baseline, Tensor):
        try:
            return baseline.detach().to(device=x.device, dtype=torch.float32).expand_as(x).contiguous()
        except RuntimeError:
            raise DataValidationError(
                f"{owner}: baseline of shape {tuple(baseline.shape)} does not broadcast to the images' shape "
                f"{tuple(x.shape)}."
            ) from None
    raise invalid_parameter("baseline", owner, "None, a float or a torch.Tensor", type(baseline).__name__)


def displayable(maps: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Signed attributions → display maps in [0, 1], one per image.

    Takes the absolute value, clips each image's map at its ``percentile`` (a few extreme pixels would otherwise
    make the rest invisible) and divides by that value. A map that is zero everywhere stays zero.

    Args:
        maps: ``(N, *spatial)`` attributions (one map per image; use ``maps[None]`` for a single map).
        percentile: per-image clipping percentile in (0, 100].

    Returns:
        ``(N, *spatial)`` float32 in [0, 1].
    """
    values = np.abs(np.asarray(maps, dtype=np.float64))
    if values.ndim < 2:
        raise DataValidationError(f"displayable: maps must be (N, *spatial); got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise DataValidationError("displayable: maps contain NaN or infinite values.")
    if not 0 < percentile <= 100:
        raise invalid_parameter("percentile", "displayable", "in (0, 100]", percentile)
    flat = values.reshape(len(values), -1)
    scale = np.percentile(flat, percentile, axis=1)
    scale = np.where(scale > 0, scale, flat.max(axis=1))  # a sparse map can have a zero percentile
    scale = scale.reshape(-1, *[1] * (values.ndim - 1))
    scaled = np.divide(values, scale, out=np.zeros_like(values), where=scale > 0)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def explain_images(
    model: nn.Module,
    images: Tensor,
    target: Any,
    methods: Sequence[SaliencyMethod | str] = (SaliencyMethod.GRAD_CAM, SaliencyMethod.INTEGRATED_GRADIENTS),
    n_steps: int = 32,
) -> dict[str, np.ndarray]:
    """Run several saliency methods on the same images and targets.

    Returns:
        ``{method name: (N, *spatial) maps}``: Grad-CAM maps in [0, 1], integrated gradients signed (pass them
        through :func:`displayable` to draw). Target meaning as in :func:`grad_cam`.
    """
    chosen = [_method(m) for m in methods]
    if not chosen:
        raise invalid_parameter("methods", "explain_images", "at least one saliency method", methods)
    return {method.value: _compute_map(model, images, target, method, n_steps=n_steps) for method in chosen}


def _method(name: SaliencyMethod | str) -> SaliencyMethod:
    try:
        return SaliencyMethod(name)
    except ValueError:
        raise unknown_name("saliency method", str(name), [m.value for m in SaliencyMethod]) from None


def _compute_map(model: nn.Module, images: Tensor, target: Any, method: SaliencyMethod | str, *,
                 layer: str | None = None, n_steps: int = 32) -> np.ndarray:
    """One method's maps, as :func:`explain_images` computes them (Grad-CAM at ``layer`` when given)."""
    method = _method(method)
    if method is SaliencyMethod.GRAD_CAM:
        return grad_cam(model, images, target, layer=layer)
    return integrated_gradients(model, images, target, n_steps=n_steps)
