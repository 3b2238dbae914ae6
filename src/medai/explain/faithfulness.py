"""Checks that an explanation reflects the model: deletion / insertion curves against random orderings (Petsiuk,
Das & Saenko, BMVC 2018, "RISE") and a model-parameter randomisation test for any input layout (Adebayo et al.,
NeurIPS 2018, "Sanity checks for saliency maps").

Deletion / insertion work on any layout: images ``(C, H, W)``, ECG ``(leads, samples)``, tabular feature vectors
``(features,)``, EHR sequences ``(bins, channels)``, token embeddings ``(tokens, dim)``. The attribution map has
the input's trailing shape (``(H, W)`` for an image, ``(samples,)`` for a time trace over all leads, or the full
shape); each position of the map is one *element*, and removing it replaces every leading channel at that position
by the baseline. Elements are removed (deletion: start from the input) or restored (insertion: start from the
baseline) most important first in ``steps`` equal steps, recording the model's score for the explained class.
A faithful map makes the score fall fast on deletion (low area under the curve) and rise fast on insertion (high
area). Areas only mean something relative to a reference, so the same curves are computed for ``n_random`` random
orderings of the same elements: the map is "better than random" when it beats the random orderings' mean by more
than :data:`BETTER_THAN_RANDOM_Z` standard deviations (SD over the random orderings of the mean area over inputs),
for deletion and insertion alike.

Memory stays bounded: the perturbed copies of all inputs are built lazily and scored ``batch_size`` at a time.
Cost: ``n_inputs * 2 * (steps + 1) * (1 + n_random)`` model evaluations.

The randomisation test re-initialises the model's layers from the output downwards (cascading) and measures the
Spearman rank correlation between the attribution maps before and after, as :mod:`medai.explain.sanity` does for
images (it reuses its layer ordering and re-initialisation); maps that do not change when the weights are destroyed
do not explain what the model learned. Passing is necessary, not sufficient.
"""

from __future__ import annotations

import base64
import copy
import io
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import nn

from medai.core.errors import DataValidationError, invalid_parameter
from medai.explain.sanity import (
    NOT_SENSITIVE_ABOVE,
    SENSITIVE_BELOW,
    RandomisationMode,
    _parameterised_layers,
    _randomise,
)

__all__ = [
    "BETTER_THAN_RANDOM_Z",
    "Activation",
    "AttributionOrder",
    "Baseline",
    "GradientMethod",
    "deletion_insertion_chart",
    "faithfulness_report",
    "gradient_attribution",
    "randomisation_chart",
    "randomisation_test",
    "torch_model_fn",
]

#: Margin, in standard deviations of the random orderings' mean area, by which a map must beat random.
BETTER_THAN_RANDOM_Z = 2.0


class Baseline(StrEnum):
    """What a removed element is replaced by."""

    ZERO = "zero"  # 0: the training mean for standardised inputs (tabular, EHR, ECG, normalised images)
    MEAN = "mean"  # the mean of the explained inputs at each position
    BLUR = "blur"  # the input blurred (Gaussian) along the map's axes: RISE's choice for images; suits signals


class AttributionOrder(StrEnum):
    """How elements are ranked for removal."""

    SIGNED = "signed"  # most positive (evidence for the class) first
    ABSOLUTE = "absolute"  # largest magnitude first, whatever the sign


class Activation(StrEnum):
    """What :func:`torch_model_fn` applies to the logits."""

    SIGMOID = "sigmoid"  # binary / multilabel probabilities
    SOFTMAX = "softmax"  # multiclass probabilities
    NONE = "none"  # raw output (regression, survival log-risk, logits)


class GradientMethod(StrEnum):
    """Gradient attributions of :func:`gradient_attribution` (captum)."""

    GRADIENT = "gradient"  # d score / d input (signed)
    GRADIENT_X_INPUT = "gradient_x_input"  # gradient times input (Shrikumar et al. 2016)
    INTEGRATED_GRADIENTS = "integrated_gradients"  # Sundararajan et al. 2017, zero baseline


# ------------------------------------------------------------------------------------------------ model adapters


def torch_model_fn(model: nn.Module, activation: Activation | str = Activation.NONE,
                   batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """A numpy scoring function of a torch model, for :func:`faithfulness_report` and
    :func:`medai.explain.importance.permutation_importance`.

    Args:
        model: the network; called in eval mode without gradients, on its own device.
        activation: applied to the logits; a single output column is returned as ``(b,)``.
        batch_size: most inputs per forward pass.

    Returns:
        ``fn(x (b, *shape)) -> (b,) or (b, K)`` float32 scores.
    """
    owner = "torch_model_fn"
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", owner, "a torch.nn.Module", type(model).__name__)
    act = _enum(Activation, activation, "activation", owner)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")

    def fn(x: np.ndarray) -> np.ndarray:
        model.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                batch = torch.as_tensor(np.asarray(x[start:start + batch_size], dtype=np.float32), device=device)
                out = model(batch).float()
                out = out[:, None] if out.ndim == 1 else out
                if act is Activation.SIGMOID:
                    out = torch.sigmoid(out)
                elif act is Activation.SOFTMAX:
                    out = torch.softmax(out, dim=1)
                outputs.append(out.cpu().numpy())
        scores = np.concatenate(outputs) if outputs else np.zeros((0, 1), np.float32)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    return fn


def gradient_attribution(model: nn.Module, inputs, target: int | Sequence[int] | None = None,
                         method: GradientMethod | str = GradientMethod.GRADIENT_X_INPUT,
                         n_steps: int = 32) -> np.ndarray:
    """Gradient-based attribution of any input layout (tabular, ECG, EHR sequences), via captum.

    A model with a single output (binary logit, regression, survival log-risk) is explained as the two "classes"
    ``[-output, output]``: target 1 (or None) explains the output itself (the positive class, higher risk), target
    0 its negation. A model with K outputs needs the class index.

    Args:
        model: the network (float32).
        inputs: ``(N, *shape)`` inputs (numpy or tensor).
        target: class index, one per input, or None (single-output models).
        method: ``gradient``, ``gradient_x_input`` or ``integrated_gradients`` (zero baseline).
        n_steps: integration points of integrated gradients.

    Returns:
        ``(N, *shape)`` float32 attributions; positive = evidence for the target.
    """
    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    owner = "gradient_attribution"
    chosen = _enum(GradientMethod, method, "method", owner)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.as_tensor(np.asarray(inputs.detach().cpu() if isinstance(inputs, torch.Tensor) else inputs,
                                   dtype=np.float32), device=device)
    if x.ndim < 2:
        raise DataValidationError(f"{owner}: 'inputs' must be (N, *shape); got shape {tuple(x.shape)}.")
    x = x.detach().clone().requires_grad_(True)  # a leaf of our own: the caller's tensor is left untouched
    model.eval()
    with torch.no_grad():
        width = model(x[:1]).reshape(1, -1).shape[1]
    single = width == 1

    def forward(batch: torch.Tensor) -> torch.Tensor:
        out = model(batch).reshape(batch.shape[0], -1)
        return torch.cat([-out, out], dim=1) if single else out

    n = x.shape[0]
    if target is None:
        if not single:
            raise invalid_parameter("target", owner, f"a class index in [0, {width}) for a {width}-output model",
                                    target)
        target = 1
    targets = np.broadcast_to(np.asarray(target), (n,)).astype(int)
    limit = 2 if single else width
    if targets.min() < 0 or targets.max() >= limit:
        raise invalid_parameter("target", owner, f"class indices in [0, {limit})", target)
    t = torch.as_tensor(targets, device=device)
    # cuDNN RNNs refuse backward in eval mode; attributions need no dropout either way (CPU is unaffected).
    with torch.backends.cudnn.flags(enabled=False):
        if chosen is GradientMethod.GRADIENT:
            attribution = Saliency(forward).attribute(x, target=t, abs=False)
        elif chosen is GradientMethod.GRADIENT_X_INPUT:
            attribution = InputXGradient(forward).attribute(x, target=t)
        else:
            attribution = IntegratedGradients(forward).attribute(x, baselines=torch.zeros_like(x), target=t,
                                                                 n_steps=n_steps, internal_batch_size=n_steps)
    return attribution.detach().float().cpu().numpy()


# ------------------------------------------------------------------------------------------ deletion / insertion


def faithfulness_report(
    model_fn: Callable[[np.ndarray], np.ndarray],
    inputs,
    attributions,
    target: int | Sequence[int] | None = None,
    *,
    baseline: Baseline | str | np.ndarray | float = Baseline.ZERO,
    steps: int | None = None,
    n_random: int = 10,
    seed: int = 0,
    order: AttributionOrder | str = AttributionOrder.SIGNED,
    blur_sigma: float | Sequence[float] | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Deletion and insertion curves of an attribution method, compared with random orderings (RISE).

    Args:
        model_fn: ``(b, *shape)`` float32 array → scores ``(b,)`` (already the explained class's score, e.g.
            P(positive), survival log-risk) or ``(b, K)`` (the ``target`` column is read). See
            :func:`torch_model_fn`; a binary model explained for class 0 needs ``lambda x: 1 - fn(x)``. Prefer
            logits for confident models: a probability stuck at 1.000 makes every ordering look alike.
        inputs: ``(N, *shape)`` the explained inputs (numpy or tensor).
        attributions: ``(N, *map_shape)`` with ``map_shape`` the trailing dimensions of ``shape`` (e.g.
            ``(H, W)`` for ``(C, H, W)`` images, ``(samples,)`` for ``(leads, samples)`` ECG, or the full shape).
        target: column of a ``(b, K)`` score: one int or one per input; None for ``(b,)`` scores.
        baseline: ``zero``, ``mean``, ``blur`` (see :class:`Baseline`), a number, or an array broadcastable to
            ``shape`` or ``(N, *shape)`` (e.g. training means of tabular features).
        steps: removal steps; each removes ``1/steps`` of the elements. None: ``min(20, n_elements)``.
        n_random: random orderings of the reference (at least 2: their SD sets the margin).
        seed: seed of the random orderings and of tie-breaking between equal attributions.
        order: ``signed`` (most positive first) or ``absolute``.
        blur_sigma: Gaussian sigma of the ``blur`` baseline, in elements, one per map axis or one for all (0 =
            no blur along that axis, e.g. across EHR channels). None: a tenth of each map axis' length.
        batch_size: most perturbed copies per call of ``model_fn`` (bounds memory).

    Returns:
        A JSON-serialisable dict: ``n_inputs``, ``n_elements``, ``steps``, ``n_random``, ``seed``, ``baseline``,
        ``order``, ``fractions`` (share of elements removed / inserted at each point), ``deletion`` and
        ``insertion`` (each: ``auc`` mean area of the map's curves, ``auc_per_input``, ``curve`` mean curve,
        ``random_auc_mean``, ``random_auc_sd``, ``random_curve``, ``random_curve_sd``, ``difference`` (how much
        the map beats random: random − map for deletion, map − random for insertion; > 0 = better), ``z``
        (difference / random SD), ``win_rate`` (share of inputs where the map beats that input's random mean),
        ``better_than_random``), ``better_than_random`` (both curves) and ``interpretation``.

    Raises:
        InvalidParameterError: an invalid parameter.
        DataValidationError: shapes that do not match, non-finite values, or model scores of the wrong shape.
    """
    owner = "faithfulness_report"
    x = _as_array(inputs, "inputs", owner)
    a = _as_array(attributions, "attributions", owner)
    if x.ndim < 2 or a.ndim < 2 or a.shape[0] != x.shape[0] or a.ndim > x.ndim \
            or x.shape[x.ndim - a.ndim + 1:] != a.shape[1:]:
        raise DataValidationError(
            f"{owner}: 'attributions' {a.shape} must be (N, *map_shape) with map_shape the trailing dimensions of "
            f"the inputs {x.shape} (N, *shape), one map per input."
        )
    n_inputs = x.shape[0]
    map_shape = a.shape[1:]
    n_elements = int(np.prod(map_shape))
    lead = int(np.prod(x.shape[1:x.ndim - a.ndim + 1]))
    if n_elements < 2:
        raise DataValidationError(f"{owner}: the attribution map has {n_elements} element; at least 2 are needed.")
    if steps is None:
        steps = min(20, n_elements)
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or not 1 <= steps <= n_elements:
        raise invalid_parameter("steps", owner, f"an integer in [1, {n_elements}] (the number of elements)", steps)
    for name, value, low in (("n_random", n_random, 2), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise invalid_parameter(name, owner, f"an integer >= {low}", value)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise invalid_parameter("seed", owner, "an integer", seed)
    ranking = _enum(AttributionOrder, order, "order", owner)
    base, baseline_name = _baseline(baseline, x, a.ndim - 1, blur_sigma, owner)
    targets = _targets(target, n_inputs, owner)

    rng = np.random.default_rng(seed)
    flat_x = x.reshape(n_inputs, lead, n_elements)
    flat_base = base.reshape(n_inputs, lead, n_elements)
    values = a.reshape(n_inputs, n_elements)
    values = np.abs(values) if ranking is AttributionOrder.ABSOLUTE else values
    # Orders per input: [the map's (ties broken at random), n_random random ones].
    orders = np.empty((n_inputs, 1 + n_random, n_elements), dtype=np.int64)
    for i in range(n_inputs):
        orders[i, 0] = np.lexsort((rng.random(n_elements), -values[i]))
        for j in range(n_random):
            orders[i, 1 + j] = rng.permutation(n_elements)
    counts = np.round(np.arange(steps + 1) * n_elements / steps).astype(int)

    # curves[mode, input, order, step]: mode 0 = deletion, 1 = insertion
    curves = np.empty((2, n_inputs, 1 + n_random, steps + 1))
    jobs = [(mode, i, o, s) for i in range(n_inputs) for o in range(1 + n_random) for mode in (0, 1)
            for s in range(steps + 1)]
    for chunk in _chunks(jobs, batch_size):
        batch = np.empty((len(chunk), lead, n_elements), dtype=np.float32)
        for k, (mode, i, o, s) in enumerate(chunk):
            chosen = orders[i, o, :counts[s]]
            start, fill = (flat_x[i], flat_base[i]) if mode == 0 else (flat_base[i], flat_x[i])
            batch[k] = start
            batch[k][:, chosen] = fill[:, chosen]
        scores = _score(model_fn, batch.reshape((len(chunk),) + x.shape[1:]), [targets[i] for _, i, _, _ in chunk],
                        owner)
        for k, (mode, i, o, s) in enumerate(chunk):
            curves[mode, i, o, s] = scores[k]

    fractions = counts / n_elements
    areas = np.trapezoid(curves, fractions, axis=-1)  # (2, inputs, orders)
    result: dict[str, Any] = {
        "n_inputs": n_inputs, "n_elements": n_elements, "steps": int(steps), "n_random": int(n_random),
        "seed": int(seed), "baseline": baseline_name, "order": ranking.value,
        "fractions": [_number(f) for f in fractions],
    }
    for mode, name, sign in ((0, "deletion", -1.0), (1, "insertion", 1.0)):
        result[name] = _compare(areas[mode], curves[mode], sign)
    result["better_than_random"] = bool(result["deletion"]["better_than_random"]
                                        and result["insertion"]["better_than_random"])
    result["interpretation"] = _interpret_curves(result)
    return result


def _compare(areas: np.ndarray, curves: np.ndarray, sign: float) -> dict[str, Any]:
    """Map vs random orderings for one curve type; ``sign`` -1: lower area is better (deletion)."""
    mine = areas[:, 0]
    random_means = areas[:, 1:].mean(axis=0)  # one mean area over inputs per random ordering
    random_mean = float(random_means.mean())
    random_sd = float(random_means.std(ddof=1))
    difference = sign * (float(mine.mean()) - random_mean)
    scale = max(abs(random_mean), abs(float(mine.mean())), 1e-12)
    if random_sd > 1e-9 * scale:
        z = difference / random_sd
        better = z > BETTER_THAN_RANDOM_Z
    else:  # every random ordering scores the same (e.g. a model that ignores these inputs)
        z = math.nan
        better = difference > 1e-6 * scale
    per_input_random = areas[:, 1:].mean(axis=1)
    wins = sign * (mine - per_input_random) > 0
    random_curves = curves[:, 1:].mean(axis=0)  # (n_random, steps + 1): mean over inputs per ordering
    return {
        "auc": _number(mine.mean()),
        "auc_per_input": [_number(v) for v in mine],
        "curve": [_number(v) for v in curves[:, 0].mean(axis=0)],
        "random_auc_mean": _number(random_mean),
        "random_auc_sd": _number(random_sd),
        "random_curve": [_number(v) for v in random_curves.mean(axis=0)],
        "random_curve_sd": [_number(v) for v in random_curves.std(axis=0, ddof=1)],
        "difference": _number(difference),
        "z": _number(z),
        "win_rate": _number(wins.mean()),
        "better_than_random": bool(better),
    }


def _interpret_curves(result: dict[str, Any]) -> str:
    d, i = result["deletion"], result["insertion"]
    text = (f"Deletion (score as the most important elements are removed; lower area = more faithful): map "
            f"{d['auc']:.4g} vs random orderings {d['random_auc_mean']:.4g} ± {d['random_auc_sd']:.2g} — "
            f"{'better' if d['better_than_random'] else 'not better'} than random. Insertion (score as they are "
            f"restored; higher = more faithful): map {i['auc']:.4g} vs {i['random_auc_mean']:.4g} ± "
            f"{i['random_auc_sd']:.2g} — {'better' if i['better_than_random'] else 'not better'} than random.")
    if result["better_than_random"]:
        return text + (" The map ranks the elements the model relies on ahead of chance on both curves.")
    return text + (" The map is not shown to be more faithful than a random ordering: do not read it as the "
                   "model's reasons.")


# ------------------------------------------------------------------------------------------------ randomisation


def randomisation_test(
    model: nn.Module,
    attribution_fn: Callable[[nn.Module, torch.Tensor, Any], np.ndarray] | None,
    inputs,
    target: int | Sequence[int] | None = None,
    seed: int = 0,
    *,
    mode: RandomisationMode | str = RandomisationMode.CASCADING,
    max_steps: int = 8,
) -> dict[str, Any]:
    """Model-parameter randomisation test for attributions of any input layout (Adebayo et al. 2018).

    The layers owning parameters are ordered as the forward pass calls them and grouped into at most
    ``max_steps`` groups; from the output downwards (cascading) each group is re-initialised (its own
    ``reset_parameters``, as :func:`medai.explain.sanity.model_randomisation_check`) in a copy of the model and
    the attributions are recomputed. The model itself is never modified.

    Args:
        model: the trained network.
        attribution_fn: ``fn(model, inputs (N, *shape) tensor, target) -> (N, ...)`` attributions; None:
            :func:`gradient_attribution` (gradient × input). A global attribution (one vector for the data set,
            e.g. importances) is returned as ``(1, F)``.
        inputs: ``(N, *shape)`` a few test inputs (numpy or tensor).
        target: passed to ``attribution_fn``.
        seed: seed of the re-initialisation.
        mode: ``cascading`` (the paper's main test) or ``independent``.
        max_steps: the most randomisation steps.

    Returns:
        A JSON-serialisable dict: ``mode``, ``seed``, ``n_inputs``, ``n_layers``, ``reference`` (the maps recomputed
        on an unmodified copy: 1.0 unless not deterministic), ``steps`` (top first: ``step``, ``layer``,
        ``layers``, ``n_layers_randomised``, ``spearman_abs``, ``spearman``, ``n_undefined``,
        ``n_became_constant``), ``final`` (the fully randomised model), ``thresholds``, ``passed`` (final
        ``spearman_abs`` below the "sensitive" threshold, or every map lost its structure) and
        ``interpretation``.
    """
    owner = "randomisation_test"
    if not isinstance(model, nn.Module) or next(model.parameters(), None) is None:
        raise invalid_parameter("model", owner, "a torch.nn.Module with parameters", type(model).__name__)
    chosen_mode = _enum(RandomisationMode, mode, "mode", owner)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise invalid_parameter("max_steps", owner, "a positive integer", max_steps)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise invalid_parameter("seed", owner, "an integer", seed)
    if attribution_fn is None:
        attribution_fn = lambda net, batch, t: gradient_attribution(net, batch, t)  # noqa: E731
    if not callable(attribution_fn):
        raise invalid_parameter("attribution_fn", owner, "a callable fn(model, inputs, target)", attribution_fn)
    device = next(model.parameters()).device
    x = torch.as_tensor(_as_array(inputs, "inputs", owner), device=device)

    def explain(net: nn.Module) -> np.ndarray:
        maps = np.asarray(attribution_fn(net, x, target), dtype=float)
        if maps.ndim < 2 or not np.isfinite(maps).all():
            raise DataValidationError(f"{owner}: attribution_fn must return finite (N, ...) maps; got shape "
                                      f"{maps.shape}.")
        return maps.reshape(maps.shape[0], -1)

    original = explain(model)
    randomised = copy.deepcopy(model)
    reference = _rank_similarity(original, explain(randomised))
    layers = _parameterised_layers(randomised, x)
    groups = [list(g) for g in np.array_split(np.array(layers[::-1], dtype=object), min(max_steps, len(layers)))]
    steps, done = [], 0
    for number, group in enumerate(groups, start=1):
        if chosen_mode is RandomisationMode.INDEPENDENT:
            randomised = copy.deepcopy(model)
        _randomise(randomised, group, seed + number)
        done = done + len(group) if chosen_mode is RandomisationMode.CASCADING else len(group)
        steps.append({"step": number, "layer": group[-1], "layers": group, "n_layers_randomised": done,
                      **_rank_similarity(original, explain(randomised))})
    if chosen_mode is RandomisationMode.CASCADING:
        final = {k: v for k, v in steps[-1].items() if k in _MEASURES}
    else:
        full = copy.deepcopy(model)
        _randomise(full, layers[::-1], seed)
        final = _rank_similarity(original, explain(full))
    rho = final["spearman_abs"]
    n = original.shape[0]
    passed = (rho is not None and rho < SENSITIVE_BELOW) or (rho is None and final["n_became_constant"] == n)
    result = {
        "mode": chosen_mode.value, "seed": seed, "n_inputs": n, "n_layers": len(layers),
        "reference": reference, "steps": steps, "final": final,
        "thresholds": {"not_sensitive_above": NOT_SENSITIVE_ABOVE, "sensitive_below": SENSITIVE_BELOW},
        "passed": bool(passed),
    }
    result["interpretation"] = _interpret_randomisation(result)
    return result


_MEASURES = ("spearman_abs", "spearman", "n_undefined", "n_became_constant")


def _rank_similarity(original: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """Mean over inputs of Spearman's ρ between flattened maps (absolute and signed); constant maps are
    undefined and counted."""
    from scipy.stats import spearmanr

    rho_abs, rho, lost = [], [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant map gives NaN, counted below
        for first, second in zip(original, other, strict=True):
            rho_abs.append(spearmanr(np.abs(first), np.abs(second)).statistic)
            rho.append(spearmanr(first, second).statistic)
            lost += int(np.ptp(first) > 0 and np.ptp(second) == 0)
    rho_abs_np, rho_np = np.asarray(rho_abs, dtype=float), np.asarray(rho, dtype=float)
    return {"spearman_abs": _mean(rho_abs_np), "spearman": _mean(rho_np),
            "n_undefined": int(np.isnan(rho_abs_np).sum()), "n_became_constant": lost}


def _interpret_randomisation(result: dict[str, Any]) -> str:
    final = result["final"]
    rho = final["spearman_abs"]
    if rho is None:
        text = ("The attributions lose all structure once every weight is randomised: they depend on the weights "
                "(passes; necessary, not sufficient, for a faithful explanation)."
                if result["passed"] else "The trained model's attributions are constant: the test cannot be assessed.")
    elif rho > NOT_SENSITIVE_ABOVE:
        text = (f"The attributions stay similar after every weight is randomised (Spearman of absolute maps "
                f"{rho:.2f}): they do not reflect what the model learned — do not trust them.")
    elif rho >= SENSITIVE_BELOW:
        text = (f"The attributions are only partly changed by randomising every weight (Spearman {rho:.2f}): part "
                "of what they show is the input's structure — read them with caution.")
    else:
        text = (f"The attributions change substantially when every weight is randomised (Spearman {rho:.2f}): "
                "the method passes this sanity check (necessary, not sufficient, for a faithful explanation).")
    ref = result["reference"]["spearman_abs"]
    if ref is not None and ref < 0.99:
        text += (f" Warning: recomputing on an unmodified copy gives only {ref:.2f} (not deterministic), which "
                 "weakens the comparison.")
    return text


# ------------------------------------------------------------------------------------------------ charts


def deletion_insertion_chart(report: Mapping[str, Any], title: str = "") -> str:
    """Deletion and insertion curves of a :func:`faithfulness_report` (the map's mean curve against the random
    orderings' mean ± 1 SD) as base64 PNG text for ``<img src="data:image/png;base64,...">``."""
    if not isinstance(report, Mapping) or "deletion" not in report or "fractions" not in report:
        raise invalid_parameter("report", "deletion_insertion_chart", "the dict returned by faithfulness_report",
                                type(report).__name__)
    plt = _pyplot()
    fractions = np.asarray(report["fractions"], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2), sharey=True)
    for ax, name in zip(axes, ("deletion", "insertion"), strict=True):
        part = report[name]
        mean = np.asarray(part["random_curve"], dtype=float)
        sd = np.nan_to_num(np.asarray([np.nan if v is None else v for v in part["random_curve_sd"]], dtype=float))
        ax.fill_between(fractions, mean - sd, mean + sd, color="tab:gray", alpha=0.3, label="random ± 1 SD")
        ax.plot(fractions, mean, color="tab:gray", linewidth=1.0)
        ax.plot(fractions, np.asarray(part["curve"], dtype=float), color="tab:red", linewidth=1.6,
                label=f"map (AUC {part['auc']:.3g})")
        verdict = "better than random" if part["better_than_random"] else "not better than random"
        ax.set_title(f"{name.capitalize()}: {verdict}", fontsize=9)
        ax.set_xlabel(f"fraction of elements {'removed' if name == 'deletion' else 'inserted'}")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("score of the explained class")
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig, plt)


def randomisation_chart(result: Mapping[str, Any], title: str = "") -> str:
    """Spearman correlation with the trained model's attributions after each randomisation step of a
    :func:`randomisation_test`, as base64 PNG text."""
    if not isinstance(result, Mapping) or "steps" not in result or "final" not in result:
        raise invalid_parameter("result", "randomisation_chart", "the dict returned by randomisation_test",
                                type(result).__name__)
    plt = _pyplot()
    steps = result["steps"]
    labels = [s["layer"] for s in steps]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for key, colour in (("spearman_abs", "tab:red"), ("spearman", "tab:blue")):
        values = [np.nan if s[key] is None else s[key] for s in steps]
        ax.plot(np.arange(len(steps)), values, marker="o", color=colour, label=key.replace("_", " "))
    ax.axhline(SENSITIVE_BELOW, color="black", linestyle=":", linewidth=0.8)
    ax.set_xticks(np.arange(len(steps)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("rank correlation with trained")
    ax.set_xlabel(f"randomised down to ({result.get('mode', '')})")
    ax.legend(fontsize=7)
    ax.set_title(title or "Model-parameter randomisation test", fontsize=10)
    return _png(fig, plt)


# ------------------------------------------------------------------------------------------------ helpers


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig, plt) -> str:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _enum(cls, value, name: str, owner: str):
    try:
        return cls(value)
    except ValueError:
        raise invalid_parameter(name, owner, f"one of {[m.value for m in cls]}", value) from None


def _as_array(value, name: str, owner: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.number) or array.ndim < 2 or array.shape[0] == 0:
        raise DataValidationError(f"{owner}: '{name}' must be a numeric (N, ...) array with N >= 1; got shape "
                                  f"{array.shape} of {array.dtype}.")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise DataValidationError(f"{owner}: '{name}' holds NaN or infinite values.")
    return array


def _baseline(baseline, x: np.ndarray, map_ndim: int, blur_sigma, owner: str) -> tuple[np.ndarray, str]:
    """The ``(N, *shape)`` replacement values and the baseline's name for the report."""
    if isinstance(baseline, str):
        kind = _enum(Baseline, baseline, "baseline", owner)
        if kind is Baseline.ZERO:
            return np.zeros_like(x), kind.value
        if kind is Baseline.MEAN:
            return np.broadcast_to(x.mean(axis=0, keepdims=True), x.shape), kind.value
        from scipy.ndimage import gaussian_filter

        map_axes = x.shape[x.ndim - map_ndim:]
        if blur_sigma is None:
            sigma_map = [length / 10 for length in map_axes]
        else:
            sigma_map = list(np.broadcast_to(np.asarray(blur_sigma, dtype=float), (map_ndim,)))
            if any(not math.isfinite(s) or s < 0 for s in sigma_map):
                raise invalid_parameter("blur_sigma", owner, "non-negative numbers", blur_sigma)
        sigma = [0.0] * (x.ndim - map_ndim) + sigma_map  # no blur across inputs nor leading channels
        return gaussian_filter(x, sigma=sigma, mode="nearest").astype(np.float32), kind.value
    try:
        base = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    except ValueError:
        raise invalid_parameter("baseline", owner, f"'zero', 'mean', 'blur' or an array broadcastable to {x.shape}",
                                f"array of shape {np.shape(baseline)}") from None
    if not np.isfinite(base).all():
        raise DataValidationError(f"{owner}: 'baseline' holds NaN or infinite values.")
    return base, "constant" if np.ndim(baseline) == 0 else "array"


def _targets(target, n: int, owner: str) -> list[int | None]:
    if target is None:
        return [None] * n
    values = np.asarray(target)
    if values.ndim > 1 or (values.ndim == 1 and values.shape[0] != n) or not np.issubdtype(values.dtype, np.integer) \
            or (values < 0).any():
        raise invalid_parameter("target", owner, f"None, one class index or {n} class indices (one per input)",
                                target if values.size <= 10 else f"array of shape {values.shape}")
    return [int(v) for v in np.broadcast_to(values, (n,))]


def _score(model_fn, batch: np.ndarray, targets: list[int | None], owner: str) -> np.ndarray:
    scores = np.asarray(model_fn(batch), dtype=float)
    if scores.shape[0] != batch.shape[0] or scores.ndim not in (1, 2) or not np.isfinite(scores).all():
        raise DataValidationError(f"{owner}: model_fn must return finite (b,) or (b, K) scores for b inputs; got "
                                  f"shape {scores.shape} for {batch.shape[0]} inputs.")
    if scores.ndim == 1:
        if any(t is not None for t in targets):
            raise invalid_parameter("target", owner, "None when model_fn returns one score per input", targets[0])
        return scores
    if any(t is None for t in targets) and scores.shape[1] != 1:
        raise invalid_parameter("target", owner, f"a class index in [0, {scores.shape[1]}) (model_fn returns "
                                f"{scores.shape[1]} scores per input)", None)
    columns = np.array([0 if t is None else t for t in targets])
    if columns.max() >= scores.shape[1]:
        raise invalid_parameter("target", owner, f"class indices in [0, {scores.shape[1]})", int(columns.max()))
    return scores[np.arange(len(columns)), columns]


def _chunks(jobs: list, size: int) -> Iterator[list]:
    for start in range(0, len(jobs), size):
        yield jobs[start:start + size]


def _mean(values: np.ndarray) -> float | None:
    defined = values[~np.isnan(values)]
    return round(float(defined.mean()), 4) if defined.size else None


def _number(value: float) -> float | None:
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None
