"""Model-parameter randomisation test for saliency maps (Adebayo et al. 2018, "Sanity checks for saliency maps").

An explanation of a model's decision must change when the model's learned weights are destroyed. The test
re-initialises the layers of a copy of the model from the output layer downwards ("cascading"), or one layer
group at a time ("independent"), recomputes the maps after each step and compares them with the trained
model's maps by Spearman rank correlation (of absolute and of signed values) and SSIM. A method whose maps stay
similar after every weight is randomised shows the input's structure (edges, bright regions), not what the model
learned. Passing is necessary, not sufficient, for a faithful explanation.
"""

from __future__ import annotations

import copy
import warnings
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medai.core.errors import invalid_parameter
from medai.explain.saliency import (
    SaliencyMethod,
    _check_images,
    _check_model,
    _compute_map,
    _method,
    displayable,
    find_target_layer,
)

__all__ = ["NOT_SENSITIVE_ABOVE", "SENSITIVE_BELOW", "RandomisationMode", "model_randomisation_check"]

#: Rank correlation with the trained model's maps above which randomised maps count as "the same": the method
#: does not depend on the weights.
NOT_SENSITIVE_ABOVE = 0.5
#: Rank correlation below which the maps count as clearly changed.
SENSITIVE_BELOW = 0.2
#: SSIM window (pixels per side), as scikit-image's default used in the paper's comparisons.
_SSIM_WINDOW = 7


_MEASURES = ("spearman_abs", "spearman", "ssim", "n_undefined", "n_became_constant")
_DISPLAY_NAMES = {SaliencyMethod.GRAD_CAM: "Grad-CAM", SaliencyMethod.INTEGRATED_GRADIENTS: "Integrated gradients"}


class RandomisationMode(StrEnum):
    """Which layers each step re-initialises."""

    CASCADING = "cascading"  # from the output layer downwards, keeping earlier steps' randomisation
    INDEPENDENT = "independent"  # one layer group at a time, all others trained


def model_randomisation_check(
    model: nn.Module,
    images: Tensor,
    target: Any,
    method: SaliencyMethod | str,
    seed: int = 0,
    layers: RandomisationMode | str = RandomisationMode.CASCADING,
    max_steps: int = 12,
    n_steps: int = 32,
) -> dict[str, Any]:
    """Run the model-parameter randomisation test for one saliency method.

    The layers are the modules that own parameters, in the order the forward pass first calls them; deep
    networks (DenseNet-121 has ~240) are grouped into at most ``max_steps`` contiguous groups so the test stays
    affordable. Each layer is re-initialised with its own ``reset_parameters()`` (PyTorch's initialisation; batch
    norm also resets its running statistics); parameters of a module without one are drawn from N(0, σ²) with σ
    their trained standard deviation. The model itself is never modified (the test works on deep copies).

    Args:
        model: the trained float32 classifier.
        images: ``(N, C, *spatial)`` preprocessed images (a few test examples).
        target: class to explain, one int or one per image (see :func:`medai.explain.saliency.grad_cam`).
        method: ``"grad_cam"`` or ``"integrated_gradients"``.
        seed: seed of the re-initialisation.
        layers: ``"cascading"`` (the paper's main test) or ``"independent"``.
        max_steps: the most randomisation steps (layer groups).
        n_steps: integration points of integrated gradients.

    Returns:
        A JSON-serialisable dict: ``method``, ``mode``, ``seed``, ``n_images``, ``n_layers``, ``layer`` (the
        Grad-CAM layer or None), ``n_steps`` (integrated gradients or None), ``reference`` (the maps recomputed
        on an unmodified copy against the originals: 1.0 unless the computation is not deterministic),
        ``steps`` (one per group, top first:
        ``step``, ``layer`` (the lowest layer randomised in this step), ``layers``, ``n_layers_randomised``,
        ``spearman_abs``, ``spearman``, ``ssim``, ``n_undefined``, ``n_became_constant``), ``final`` (the same
        measures for the fully randomised model), ``thresholds`` and ``interpretation`` (sentences computed from
        ``final``). Measures are means over images. Spearman is undefined for an image whose map is constant
        (e.g. an all-zero Grad-CAM map): such images are left out of the mean and counted in ``n_undefined``;
        ``n_became_constant`` counts those whose trained-model map had structure and lost it all — a change,
        not a similarity. SSIM is reported but not used for the verdict: two mostly-empty maps score high.
    """
    owner = "model_randomisation_check"
    chosen = _method(method)
    mode = _mode(layers)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise invalid_parameter("max_steps", owner, "a positive integer", max_steps)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise invalid_parameter("seed", owner, "an integer", seed)
    device = _check_model(model, owner)
    x = _check_images(images, owner).detach().to(device=device, dtype=torch.float32)
    # Grad-CAM must read the same layer in every copy; a ViT raises here with the reason.
    cam_layer = find_target_layer(model) if chosen is SaliencyMethod.GRAD_CAM else None

    def explain(net: nn.Module) -> np.ndarray:
        return _compute_map(net, x, target, chosen, layer=cam_layer, n_steps=n_steps)

    original = explain(model)
    randomised = copy.deepcopy(model)
    reference = _similarity(original, explain(randomised))
    order = _parameterised_layers(randomised, x)
    if not order:
        raise invalid_parameter("model", owner, "a model with parameters to randomise", type(model).__name__)
    groups = [list(g) for g in np.array_split(np.array(order[::-1], dtype=object), min(max_steps, len(order)))]

    steps = []
    done = 0
    for number, group in enumerate(groups, start=1):
        if mode is RandomisationMode.INDEPENDENT:
            randomised = copy.deepcopy(model)
        _randomise(randomised, group, seed + number)
        done = done + len(group) if mode is RandomisationMode.CASCADING else len(group)
        steps.append({"step": number, "layer": group[-1], "layers": group, "n_layers_randomised": done,
                      **_similarity(original, explain(randomised))})
    if mode is RandomisationMode.CASCADING:
        final = {k: v for k, v in steps[-1].items() if k in _MEASURES}
    else:
        full = copy.deepcopy(model)
        _randomise(full, order[::-1], seed)
        final = _similarity(original, explain(full))
    return {
        "method": chosen.value,
        "mode": mode.value,
        "seed": seed,
        "n_images": int(x.shape[0]),
        "n_layers": len(order),
        "layer": cam_layer,
        "n_steps": n_steps if chosen is SaliencyMethod.INTEGRATED_GRADIENTS else None,
        "reference": reference,
        "steps": steps,
        "final": final,
        "thresholds": {"not_sensitive_above": NOT_SENSITIVE_ABOVE, "sensitive_below": SENSITIVE_BELOW},
        "interpretation": _interpret(chosen, mode, reference, steps, final, int(x.shape[0])),
    }


def _mode(value: RandomisationMode | str) -> RandomisationMode:
    try:
        return RandomisationMode(value)
    except ValueError:
        raise invalid_parameter("layers", "model_randomisation_check",
                                f"one of {[m.value for m in RandomisationMode]}", value) from None


def _parameterised_layers(model: nn.Module, x: Tensor) -> list[str]:
    """Names of the modules owning parameters, in the order the forward pass first calls them; owners the
    forward pass never calls as modules (e.g. a projection used through its weight) come last."""
    owners = {name: m for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None}
    seen: list[str] = []
    handles = [m.register_forward_hook(lambda _m, _i, _o, name=name: seen.append(name) if name not in seen else None)
               for name, m in owners.items()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes:
            m.training = training
    return seen + [name for name in owners if name not in seen]


def _randomise(model: nn.Module, names: list[str], seed: int) -> None:
    modules = dict(model.named_modules())
    device = next(model.parameters()).device
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():  # the caller's random state is untouched
        torch.manual_seed(seed)
        for name in names:
            module = modules[name]
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
                continue
            for p in module.parameters(recurse=False):
                scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.02
                p.normal_(0.0, scale)


def _similarity(original: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """Mean over images of Spearman's ρ (absolute and signed maps) and SSIM of the display maps."""
    from scipy.stats import spearmanr

    rho_abs, rho, lost = [], [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant maps: ρ is undefined (NaN), counted below
        for a, b in zip(original, other, strict=True):
            rho_abs.append(spearmanr(np.abs(a).ravel(), np.abs(b).ravel()).statistic)
            rho.append(spearmanr(a.ravel(), b.ravel()).statistic)
            lost += int(np.ptp(a) > 0 and np.ptp(b) == 0)
    rho_abs_np, rho_np = np.asarray(rho_abs, dtype=float), np.asarray(rho, dtype=float)
    return {
        "spearman_abs": _mean(rho_abs_np),
        "spearman": _mean(rho_np),
        "ssim": _ssim(displayable(original), displayable(other)),
        "n_undefined": int(np.isnan(rho_abs_np).sum()),
        "n_became_constant": lost,
    }


def _mean(values: np.ndarray) -> float | None:
    defined = values[~np.isnan(values)]
    return round(float(defined.mean()), 4) if defined.size else None


def _ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean SSIM (Wang et al. 2004, MONAI's implementation) of ``(N, *spatial)`` maps in [0, 1]."""
    from monai.metrics import SSIMMetric

    window = min(_SSIM_WINDOW, *a.shape[1:])
    window -= 1 - window % 2  # odd
    if window < 3:
        return None
    metric = SSIMMetric(spatial_dims=a.ndim - 1, data_range=1.0, win_size=window)
    values = metric(y_pred=torch.from_numpy(a[:, None]), y=torch.from_numpy(b[:, None]))
    return round(float(values.mean()), 4)


def _interpret(method: SaliencyMethod, mode: RandomisationMode, reference: dict[str, Any],
               steps: list[dict[str, Any]], final: dict[str, Any], n_images: int) -> str:
    name = _DISPLAY_NAMES[method]
    rho, ssim = final["spearman_abs"], final["ssim"]
    with_ssim = f", SSIM {ssim:.2f}" if ssim is not None else ""
    if rho is None and final["n_became_constant"] == n_images:
        parts = [f"{name} maps lose all structure (become constant) once every weight is randomised: they depend on "
                 "the model's weights, and the method passes this sanity check (necessary, not sufficient, for a "
                 "faithful explanation)."]
    elif rho is None:
        parts = [f"{name} maps could not be assessed: the trained model's maps are themselves constant."]
    else:
        measure = f"Spearman rank correlation of absolute maps {rho:.2f}{with_ssim}"
        if rho > NOT_SENSITIVE_ABOVE:
            verdict = (f"stay similar to the trained model's maps after every weight is randomised ({measure}): they "
                       "are not sensitive to the model's weights — do not trust them as explanations of this model.")
        elif rho >= SENSITIVE_BELOW:
            verdict = (f"are only partly changed by randomising every weight ({measure}): part of what they show is "
                       "the image's structure rather than what the model learned — read them with caution.")
        else:
            verdict = (f"change substantially when every weight is randomised ({measure}): the method passes this "
                       "sanity check (necessary, not sufficient, for a faithful explanation).")
        parts = [f"{name} maps {verdict}"]
        if final["n_undefined"]:
            parts.append(f"{final['n_undefined']} of {n_images} images are left out of the correlation (constant "
                         f"maps; {final['n_became_constant']} lost all structure with randomisation).")
        if mode is RandomisationMode.CASCADING and rho <= NOT_SENSITIVE_ABOVE:
            first = next((s for s in steps if s["spearman_abs"] is not None
                          and s["spearman_abs"] <= NOT_SENSITIVE_ABOVE), None)
            if first is not None:
                parts.append(f"The rank correlation first falls to {NOT_SENSITIVE_ABOVE} or below after randomising "
                             f"{first['n_layers_randomised']} layer(s) from the top, down to '{first['layer']}'.")
    ref = reference["spearman_abs"]
    if ref is not None and ref < 0.99:
        parts.append(f"Warning: recomputing the maps on an unmodified copy gives only {ref:.2f}: the computation "
                     "is not deterministic, which weakens this comparison.")
    return " ".join(parts)
