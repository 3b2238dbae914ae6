"""Trust outputs of a segmentation run: voxel-level recalibration, conformal risk control of the false-negative
rate, referral ("refer to clinician") and the subgroup audit of per-case Dice / HD95. Plain functions: numpy in,
JSON-ready dicts out; the workflow (:mod:`medai.workflows.segmentation`) feeds them chunk by chunk so memory stays
bounded whatever the number of voxels.

* Recalibration: temperature scaling (Guo et al. 2017) of the network's two class logits. With two classes the
  softmax depends on the *margin* ``z = logit_1 − logit_0`` only: ``P(foreground) = sigmoid(z / T)``. ``T`` minimises
  the negative log-likelihood on a sample of validation voxels drawn with known inclusion probabilities (stratified
  so that foreground is represented; :func:`voxel_sampling_rates`) and weighted by their inverse, so the weighted
  NLL estimates the NLL of all validation voxels. ``T`` keeps the ranking of voxels and the argmax mask (``z > 0``).
* Voxel ECE: 10 equal-width bins over all test voxels (bins as :func:`medai.evaluation.metrics.compute_ece`). The
  per-case bin sums (:func:`calibration_histogram`) are resampled *by case* (or by subject), never by voxel:
  voxels of one image are not independent.
* Conformal risk control (Angelopoulos, Bates, Fisch, Lei & Schuster, "Conformal risk control", ICLR 2024; arXiv
  2022): the conformal mask of a case is ``{p ≥ λ}`` for the recalibrated foreground probability ``p``. The loss of a
  case is its false-negative rate ``|truth \\ mask| / |truth|`` (0 when the truth is empty), bounded by ``B = 1``
  and non-decreasing in ``λ``. On ``n`` calibration units ``λ̂ = sup{λ : n/(n+1) · R̂_n(λ) + B/(n+1) ≤ α}``
  guarantees ``E[FNR of a new case] ≤ α`` when calibration and new cases are exchangeable
  (:func:`crc_threshold`).
* Referral: the uncertain band of a case is the conformal mask minus the argmax mask. A case is referred when the
  band is larger than the predicted structure (band ratio > 1), or when the argmax mask is empty but the band is
  not (a possibly missed structure) (:func:`refer_cases`). Whether the referral signal is informative is shown by
  the Dice of referred vs kept cases and a selective-risk curve (risk = 1 − Dice, cases ordered by band ratio)
  (:func:`referral_report`).
* Subgroup audit: the schema of :func:`medai.evaluation.fairness.fairness_audit` with per-case Dice and HD95
  (:func:`segmentation_fairness_audit`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import expit

from medai.core.errors import DataValidationError, invalid_parameter
from medai.evaluation.bootstrap import bootstrap_metrics

__all__ = [
    "CONFORMAL_ALPHA",
    "ReferReason",
    "calibration_histogram",
    "crc_threshold",
    "fit_temperature",
    "foreground_probability",
    "refer_cases",
    "referral_report",
    "segmentation_fairness_audit",
    "voxel_ece_report",
    "voxel_sampling_rates",
]

#: Target expected false-negative rate of the conformal mask (coverage target 1 − α = 0.9, as every run's sets).
CONFORMAL_ALPHA = 0.1
#: Equal-width bins of the voxel ECE.
N_ECE_BINS = 10
#: A case is referred when its uncertain band holds more voxels than this multiple of its predicted structure.
MAX_BAND_RATIO = 1.0
#: Temperatures searched: exp(±5), far beyond any useful correction (as medai.evaluation.recalibration).
_LOG_T_BOUNDS = (-5.0, 5.0)
SEGMENTATION_METRICS = ("dice", "hd95_mm")
SEGMENTATION_DEFINITIONS = {
    "dice": "mean per-case Dice 2|T∩P|/(|T|+|P|) over the group's cases with a structure in the truth (or with a "
            "prediction)",
    "hd95_mm": "mean per-case 95th-percentile Hausdorff distance in mm over the same cases",
    "gap": "group value - overall value, on the same bootstrap resamples",
}


class ReferReason(StrEnum):
    """Why a case is referred to a clinician."""

    UNCERTAIN_BAND = "uncertain_band_exceeds_prediction"
    POSSIBLE_MISSED_STRUCTURE = "possible_missed_structure"


# ------------------------------------------------------------------------------------------------ recalibration
def foreground_probability(margin, temperature: float = 1.0) -> np.ndarray:
    """Recalibrated foreground probability ``sigmoid(margin / T)`` of logit margins, float32.

    The one function that turns margins into probabilities, used by the run and the
    :class:`~medai.registry.segmentation_predictor.SegmentationPredictor` alike so that a stored threshold
    selects exactly the same voxels in both.

    Args:
        margin: ``logit_foreground − logit_background``, any shape (float32 as the network gives it).
        temperature: the fitted temperature (> 0).

    Returns:
        float32 array of the margin's shape, in [0, 1].
    """
    if not (isinstance(temperature, int | float | np.floating) and math.isfinite(temperature) and temperature > 0):
        raise invalid_parameter("temperature", "foreground_probability", "a finite number > 0", temperature)
    return expit(np.asarray(margin, dtype=np.float32) / np.float32(temperature)).astype(np.float32)


def voxel_sampling_rates(n_foreground: int, n_background: int, *, max_voxels: int = 200_000,
                         foreground_share: float = 0.5) -> tuple[float, float]:
    """Bernoulli inclusion probabilities ``(foreground, background)`` of a stratified voxel sample.

    About ``max_voxels`` voxels are drawn, ``foreground_share`` of them foreground when there is that much
    foreground (all of it otherwise, the rest of the budget going to background).

    Args:
        n_foreground / n_background: truth voxel counts of the calibration split.
        max_voxels: expected sample size (bounds memory).
        foreground_share: share of the budget reserved for foreground voxels, in (0, 1).

    Returns:
        The two rates in [0, 1] (0 for an empty stratum).
    """
    owner = "voxel_sampling_rates"
    if isinstance(max_voxels, bool) or not isinstance(max_voxels, int | np.integer) or max_voxels < 2:
        raise invalid_parameter("max_voxels", owner, "an integer >= 2", max_voxels)
    if not 0.0 < foreground_share < 1.0:
        raise invalid_parameter("foreground_share", owner, "a number in (0, 1)", foreground_share)
    if n_foreground < 0 or n_background < 0:
        raise invalid_parameter("n_foreground", owner, "non-negative voxel counts", (n_foreground, n_background))
    fg_budget = min(n_foreground, int(max_voxels * foreground_share))
    bg_budget = min(n_background, max_voxels - fg_budget)
    return (fg_budget / n_foreground if n_foreground else 0.0, bg_budget / n_background if n_background else 0.0)


def fit_temperature(margins, truth, weights=None) -> dict[str, Any]:
    """Temperature ``T`` minimising the (weighted) negative log-likelihood of ``sigmoid(margin / T)``.

    Args:
        margins: ``(n,)`` logit margins of sampled voxels.
        truth: ``(n,)`` 0/1, 1 = foreground.
        weights: ``(n,)`` inverse inclusion probabilities of the sample (None: all 1).

    Returns:
        ``{"temperature", "nll_before" (T = 1), "nll_after", "n_voxels", "n_foreground"}``; NLL in nats per voxel
        (weighted mean).

    Raises:
        DataValidationError: empty or mismatched arrays, non-finite margins, truth not 0/1, or a single class.
    """
    owner = "fit_temperature"
    z = np.asarray(margins, dtype=np.float64).ravel()
    y = np.asarray(truth, dtype=np.float64).ravel()
    w = np.ones_like(z) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if z.size == 0 or z.shape != y.shape or z.shape != w.shape:
        raise DataValidationError(f"{owner}: 'margins', 'truth' and 'weights' must be non-empty and of the same "
                                  f"length; got {z.size}, {y.size} and {w.size}.")
    if not np.isfinite(z).all() or not np.isfinite(w).all() or (w <= 0).any():
        raise DataValidationError(f"{owner}: 'margins' must be finite and 'weights' finite and > 0.")
    if not np.isin(y, (0, 1)).all():
        raise DataValidationError(f"{owner}: 'truth' must hold only 0 and 1 (1 = foreground).")
    if y.min() == y.max():
        raise DataValidationError(f"{owner}: the sampled voxels are all {'foreground' if y[0] else 'background'}; "
                                  "a temperature needs both classes in the calibration voxels.")
    total = w.sum()

    def nll(log_t: float) -> float:
        eta = z / math.exp(log_t)
        return float(np.sum(w * (np.logaddexp(0.0, eta) - y * eta)) / total)

    # The NLL is convex in 1/T: a bounded scalar search finds the optimum.
    result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return {"temperature": float(math.exp(result.x)), "nll_before": nll(0.0), "nll_after": float(result.fun),
            "n_voxels": int(z.size), "n_foreground": int(y.sum())}


def calibration_histogram(probability, truth, n_bins: int = N_ECE_BINS) -> np.ndarray:
    """Per-bin voxel count, sum of probabilities and sum of truth of one case: the sufficient statistics of the
    ECE, which add up over cases.

    Args:
        probability: foreground probabilities, any shape.
        truth: 0/1 of the same shape.
        n_bins: equal-width bins of [0, 1] (a value on an inner edge goes to the lower bin, as
            :func:`medai.evaluation.metrics.compute_ece`).

    Returns:
        float64 ``(n_bins, 3)``: columns count, sum p, sum truth.
    """
    p = np.asarray(probability, dtype=np.float64).ravel()
    y = np.asarray(truth, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise DataValidationError(f"calibration_histogram: 'probability' ({p.size} voxels) and 'truth' ({y.size}) "
                                  "must have the same shape.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    return np.stack([np.bincount(ids, minlength=n_bins), np.bincount(ids, weights=p, minlength=n_bins),
                     np.bincount(ids, weights=y, minlength=n_bins)], axis=1).astype(np.float64)


def _ece_of(histogram: np.ndarray) -> float:
    """ECE of summed ``(n_bins, 3)`` statistics: ``sum_b |sum_y_b − sum_p_b| / n``."""
    n = histogram[:, 0].sum()
    return float(np.abs(histogram[:, 2] - histogram[:, 1]).sum() / n) if n > 0 else math.nan


def _sum_by_group(values: np.ndarray, groups) -> np.ndarray:
    """Rows of ``values`` summed within ``groups`` (one label per row; sorted labels); None: as is."""
    if groups is None:
        return values
    labels = np.asarray(groups)
    if labels.shape[0] != values.shape[0]:
        raise DataValidationError(f"'groups' must have one label per case ({values.shape[0]}); got "
                                  f"{labels.shape[0]}.")
    _, inverse = np.unique(labels, return_inverse=True)
    out = np.zeros((int(inverse.max()) + 1,) + values.shape[1:])
    np.add.at(out, inverse, values)
    return out


def voxel_ece_report(hist_before, hist_after, *, groups=None, n_resamples: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, Any]:
    """Voxel ECE before and after recalibration with percentile bootstrap CIs over cases (or ``groups``).

    Args:
        hist_before / hist_after: ``(cases, n_bins, 3)`` per-case :func:`calibration_histogram` of the
            probabilities before (T = 1) and after recalibration.
        groups: ``(cases,)`` resampling unit of each case (e.g. the subject of a cine frame); None: the case.
        n_resamples, confidence, seed: the paired bootstrap (the same resamples for both).

    Returns:
        ``{"ece_before_recalibration", "ece", "ece_change"}`` each ``{"value", "ci_low", "ci_high"}``.
    """
    before = np.asarray(hist_before, dtype=np.float64)
    after = np.asarray(hist_after, dtype=np.float64)
    if before.ndim != 3 or before.shape != after.shape or before.shape[2] != 3 or before.shape[0] == 0:
        raise DataValidationError(f"voxel_ece_report: histograms must be (cases, n_bins, 3) of equal shape; got "
                                  f"{before.shape} and {after.shape}.")
    before, after = _sum_by_group(before, groups), _sum_by_group(after, groups)

    def metric(b: np.ndarray, a: np.ndarray) -> dict[str, float]:
        eb, ea = _ece_of(b.sum(axis=0)), _ece_of(a.sum(axis=0))
        return {"ece_before_recalibration": eb, "ece": ea, "ece_change": ea - eb}

    return bootstrap_metrics(metric, (before, after), n_resamples=n_resamples, confidence=confidence, seed=seed)


# ------------------------------------------------------------------------------------------------ conformal
def crc_threshold(foreground_probabilities: Sequence[np.ndarray], alpha: float = CONFORMAL_ALPHA, *,
                  groups=None, bound: float = 1.0) -> dict[str, Any]:
    """Conformal risk control of the per-case false-negative rate: the largest threshold ``λ`` on the foreground
    probability whose corrected calibration risk stays within ``α``.

    The mask of a case at ``λ`` is ``{p ≥ λ}``; its loss ``L(λ) = |{truth voxels with p < λ}| / |truth|`` (0 for an
    empty truth) is non-decreasing and left-continuous in ``λ``, so ``R̂_n`` is a weighted empirical distribution
    function of the truth voxels' probabilities and the supremum is attained at one of them:
    ``λ̂ = sup{λ : n/(n+1) · R̂_n(λ) + B/(n+1) ≤ α}``. When even ``λ = 0`` (every voxel in the mask) fails the
    bound (``n < 1/α − 1`` units), ``λ̂ = 0`` and ``feasible`` is False.

    Args:
        foreground_probabilities: per calibration case, the recalibrated probabilities ``p`` of its *truth
            foreground voxels* (any shape; empty for a case without foreground).
        alpha: target expected false-negative rate, in (0, 1).
        groups: one label per case: the exchangeable unit (e.g. the subject of cine frames); a unit's loss is the
            mean of its cases' losses. None: each case is a unit.
        bound: ``B``, the largest possible loss (1 for a rate).

    Returns:
        ``{"lambda", "alpha", "n" (units), "unit" ("case" or "group"), "n_cases", "empirical_risk" (R̂_n at λ̂),
        "corrected_risk" (n/(n+1) R̂_n + B/(n+1)), "feasible", "reason"}``.

    Raises:
        InvalidParameterError: ``alpha`` outside (0, 1) or ``bound`` not positive.
        DataValidationError: no cases, non-finite probabilities, or ``groups`` of the wrong length.
    """
    owner = "crc_threshold"
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating) or not 0.0 < alpha < 1.0:
        raise invalid_parameter("alpha", owner, "a number in (0, 1)", alpha)
    if not (isinstance(bound, int | float | np.floating) and bound > 0):
        raise invalid_parameter("bound", owner, "a number > 0", bound)
    cases = [np.asarray(p, dtype=np.float64).ravel() for p in foreground_probabilities]
    if not cases:
        raise DataValidationError(f"{owner}: no calibration case; at least one validation case is needed.")
    if any(not np.isfinite(p).all() for p in cases):
        raise DataValidationError(f"{owner}: foreground probabilities hold NaN or infinite values.")
    labels = np.arange(len(cases)) if groups is None else np.asarray(groups)
    if labels.shape != (len(cases),):
        raise DataValidationError(f"{owner}: 'groups' must have one label per case ({len(cases)}); got shape "
                                  f"{labels.shape}.")
    _, unit_of = np.unique(labels, return_inverse=True)
    n = int(unit_of.max()) + 1
    cases_per_unit = np.bincount(unit_of, minlength=n)
    # R̂(λ) = Σ_v w_v [p_v < λ] with w_v = 1 / (n · cases in its unit · truth voxels of its case).
    p = np.concatenate(cases) if any(len(c) for c in cases) else np.zeros(0)
    w = np.concatenate([np.full(len(c), 1.0 / (n * cases_per_unit[u] * len(c))) for c, u in zip(cases, unit_of)
                        if len(c)]) if len(p) else np.zeros(0)
    order = np.argsort(p, kind="stable")
    p, w = p[order], w[order]
    values, first = np.unique(p, return_index=True)
    below = np.r_[0.0, np.cumsum(w)][first]  # R̂ at λ = each distinct value (strictly below it)
    corrected = n / (n + 1) * below + bound / (n + 1)
    ok = np.flatnonzero(corrected <= alpha)
    total = float(w.sum())
    base = {"alpha": float(alpha), "n": n, "unit": "case" if groups is None else "group", "n_cases": len(cases),
            "bound": float(bound)}
    if bound / (n + 1) > alpha:
        return {**base, "lambda": 0.0, "empirical_risk": 0.0, "corrected_risk": bound / (n + 1), "feasible": False,
                "reason": f"{n} calibration unit(s) are too few for alpha = {alpha}: B/(n+1) = {bound / (n + 1):.3f} "
                          f"exceeds alpha even with every voxel in the mask (needs n >= {math.ceil(bound / alpha) - 1})"
                          "; the conformal mask is the whole image"}
    if n / (n + 1) * total + bound / (n + 1) <= alpha:
        # Even missing every truth voxel keeps the bound (no foreground in calibration): no threshold is needed.
        return {**base, "lambda": 1.0, "empirical_risk": total, "corrected_risk": n / (n + 1) * total + bound / (n + 1),
                "feasible": True, "reason": "the bound holds at every threshold (little or no calibration foreground)"}
    # R̂ is non-decreasing, so the feasible values form a prefix (non-empty: R̂ = 0 at the smallest value and
    # B/(n+1) <= α). Between its last value and the next one R̂ already counts the last value's voxels and is
    # infeasible (beyond the largest value: the total, checked above), so the supremum is that last value.
    k = int(ok[-1])
    lam = float(values[k])
    return {**base, "lambda": lam, "empirical_risk": float(below[k]), "corrected_risk": float(corrected[k]),
            "feasible": True, "reason": "finite-sample conformal risk control"}


# ------------------------------------------------------------------------------------------------ referral
def refer_cases(predicted_voxels, band_voxels, *, max_band_ratio: float = MAX_BAND_RATIO) -> dict[str, Any]:
    """Referral of each case from its argmax mask size and its uncertain band (conformal mask minus argmax mask).

    Args:
        predicted_voxels: ``(cases,)`` voxels in the argmax mask.
        band_voxels: ``(cases,)`` voxels in the conformal mask but not in the argmax mask.
        max_band_ratio: refer when ``band / predicted`` exceeds it.

    Returns:
        ``{"refer": bool (cases,), "reason": list of str or None, "band_ratio": float (cases,)}`` — band ratio
        ``inf`` when the argmax mask is empty and the band is not (reason ``possible_missed_structure``), 0 when
        both are empty.
    """
    predicted = np.asarray(predicted_voxels, dtype=np.float64).ravel()
    band = np.asarray(band_voxels, dtype=np.float64).ravel()
    if predicted.shape != band.shape or (predicted < 0).any() or (band < 0).any():
        raise DataValidationError(f"refer_cases: 'predicted_voxels' and 'band_voxels' must be non-negative counts, "
                                  f"one per case; got {predicted.size} and {band.size} values.")
    if not (isinstance(max_band_ratio, int | float | np.floating) and max_band_ratio >= 0):
        raise invalid_parameter("max_band_ratio", "refer_cases", "a number >= 0", max_band_ratio)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(predicted > 0, band / np.where(predicted > 0, predicted, 1.0),
                         np.where(band > 0, np.inf, 0.0))
    missed = (predicted == 0) & (band > 0)
    wide = (predicted > 0) & (ratio > max_band_ratio)
    reasons: list[str | None] = [ReferReason.POSSIBLE_MISSED_STRUCTURE.value if m else
                                 ReferReason.UNCERTAIN_BAND.value if u else None for m, u in zip(missed, wide)]
    return {"refer": missed | wide, "reason": reasons, "band_ratio": ratio}


def _grouped_mean(values: np.ndarray, groups, *, n_resamples: int, confidence: float,
                  seed: int) -> dict[str, float | None]:
    """Mean of the finite per-case ``values`` with a bootstrap CI over cases, or over ``groups`` (clusters)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return {"value": None, "ci_low": None, "ci_high": None}
    stats = np.column_stack([np.where(finite, values, 0.0), finite.astype(np.float64)])
    stats = _sum_by_group(stats, groups)
    stats = stats[stats[:, 1] > 0]

    def mean(s: np.ndarray) -> dict[str, float]:
        return {"mean": float(s[:, 0].sum() / s[:, 1].sum())}

    return bootstrap_metrics(mean, (stats,), n_resamples=n_resamples, confidence=confidence, seed=seed)["mean"]


def _selective_risk(loss: np.ndarray, band_ratio: np.ndarray, n_points: int = 101) -> dict[str, Any]:
    """Risk–coverage curve keeping the cases with the smallest band ratio first (keys of
    :func:`medai.evaluation.conformal.selective_risk_curve`)."""
    from medai.evaluation.conformal import _risk_by_coverage

    finite = band_ratio[np.isfinite(band_ratio)]
    # An infinite ratio (nothing predicted, a band) ranks below every finite one; ties stay ties.
    ratio = np.where(np.isfinite(band_ratio), band_ratio, (finite.max() if finite.size else 0.0) + 1.0)
    risk = _risk_by_coverage(loss, -ratio)
    optimal = _risk_by_coverage(loss, -loss)
    n = loss.shape[0]
    grid = np.linspace(1.0 / n, 1.0, min(n_points, n))
    picks = np.clip(np.ceil(grid * n).astype(int) - 1, 0, n - 1)
    aurc, aurc_optimal = float(risk.mean()), float(optimal.mean())
    return {"coverage": [float((i + 1) / n) for i in picks], "risk": [float(risk[i]) for i in picks],
            "aurc": aurc, "aurc_optimal": aurc_optimal, "e_aurc": aurc - aurc_optimal,
            "full_coverage_risk": float(risk[-1]), "n": int(n), "loss": "1 - Dice",
            "ordered_by": "band ratio (uncertain band / predicted volume), smallest first"}


def referral_report(*, fnr_conformal, fnr_argmax, truth_voxels, predicted_voxels, conformal_voxels,
                    band_voxels, intersection_voxels, voxel_volume_ml: float, alpha: float = CONFORMAL_ALPHA,
                    max_band_ratio: float = MAX_BAND_RATIO, groups=None, n_resamples: int = 1000,
                    confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Test-split report of the conformal masks and of referral, from per-case voxel counts.

    Args:
        fnr_conformal / fnr_argmax: ``(cases,)`` false-negative rate of the conformal / argmax mask (0 when the
            truth is empty).
        truth_voxels, predicted_voxels, conformal_voxels: ``(cases,)`` voxels in the truth, the argmax mask and
            the conformal mask.
        band_voxels: ``(cases,)`` voxels in the conformal mask but not in the argmax mask (the uncertain band).
        intersection_voxels: ``(cases,)`` voxels in truth ∩ argmax mask (for the per-case Dice).
        voxel_volume_ml: volume of one voxel in mL.
        alpha: the target expected FNR.
        max_band_ratio: referral rule of :func:`refer_cases`.
        groups: ``(cases,)`` resampling unit of each case (subject); None: the case.
        n_resamples, confidence, seed: bootstrap CIs over cases (or groups).

    Returns:
        ``{"metrics": {"conformal_target", "conformal_coverage", "coverage_argmax", "abstain_rate",
        "mean_extra_volume_ml", "dice_kept", "dice_referred"}`` (each ``{"value", "ci_low", "ci_high"}``),
        ``"n_cases", "n_referred", "referral_reasons" (counts), "referral_rule", "selective_risk", "per_case"
        ({"refer", "reason", "band_ratio", "dice"})}``. Per-case Dice: ``2|T∩P|/(|T|+|P|)``; in the selective-risk
        curve a case with empty truth and empty prediction counts as Dice 1. ``dice_kept`` / ``dice_referred``
        average the cases with a structure in the truth (as the headline Dice).
    """
    arrays = {name: np.asarray(value, dtype=np.float64).ravel() for name, value in (
        ("fnr_conformal", fnr_conformal), ("fnr_argmax", fnr_argmax), ("truth_voxels", truth_voxels),
        ("predicted_voxels", predicted_voxels), ("conformal_voxels", conformal_voxels),
        ("band_voxels", band_voxels), ("intersection_voxels", intersection_voxels))}
    n = arrays["fnr_conformal"].shape[0]
    if n == 0 or any(a.shape != (n,) for a in arrays.values()):
        raise DataValidationError("referral_report: every per-case array must have the same, non-zero length; got "
                                  + ", ".join(f"{k} {v.shape[0]}" for k, v in arrays.items()) + ".")
    predicted, conformal = arrays["predicted_voxels"], arrays["conformal_voxels"]
    truth, tp = arrays["truth_voxels"], arrays["intersection_voxels"]
    referral = refer_cases(predicted, arrays["band_voxels"], max_band_ratio=max_band_ratio)
    refer = referral["refer"]
    with np.errstate(divide="ignore", invalid="ignore"):
        dice = np.where(truth + predicted > 0, 2 * tp / (truth + predicted), 1.0)
    dice_with_truth = np.where(truth > 0, dice, np.nan)
    kw = {"groups": groups, "n_resamples": n_resamples, "confidence": confidence, "seed": seed}

    def coverage(fnr: np.ndarray) -> dict[str, float | None]:
        mean = _grouped_mean(fnr, **kw)
        return {k: None if v is None else 1.0 - v for k, v in
                (("value", mean["value"]), ("ci_low", mean["ci_high"]), ("ci_high", mean["ci_low"]))}

    reasons: dict[str, int] = {}
    for reason in referral["reason"]:
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
    metrics = {
        "conformal_target": {"value": 1.0 - float(alpha), "ci_low": None, "ci_high": None},
        "conformal_coverage": coverage(arrays["fnr_conformal"]),
        "coverage_argmax": coverage(arrays["fnr_argmax"]),
        "abstain_rate": _grouped_mean(refer.astype(np.float64), **kw),
        "mean_extra_volume_ml": _grouped_mean((conformal - predicted) * voxel_volume_ml, **kw),
        "dice_kept": _grouped_mean(np.where(refer, np.nan, dice_with_truth), **kw),
        "dice_referred": _grouped_mean(np.where(refer, dice_with_truth, np.nan), **kw),
    }
    return {
        "metrics": metrics,
        "n_cases": int(n),
        "n_referred": int(refer.sum()),
        "referral_reasons": reasons,
        "referral_rule": f"refer when the uncertain band (conformal mask minus argmax mask) holds more than "
                         f"{max_band_ratio:g} x the predicted volume, or when nothing is predicted but the band is "
                         "not empty (possible missed structure)",
        "selective_risk": _selective_risk(1.0 - dice, referral["band_ratio"]),
        "per_case": {"refer": [bool(r) for r in refer], "reason": referral["reason"],
                     "band_ratio": [None if not math.isfinite(r) else float(r) for r in referral["band_ratio"]],
                     "dice": [float(d) for d in dice]},
    }


# ------------------------------------------------------------------------------------------------ fairness
def segmentation_fairness_audit(groups: Mapping[str, pd.Series], dice, hd95_mm, *, min_n: int = 30,
                                n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                                intersections: bool = True, unit: str = "case",
                                note: str | None = None) -> dict[str, Any]:
    """Per-group mean Dice and HD95 with bootstrap CIs and gaps to the overall value: ``fairness.json`` of a
    segmentation run, in the schema of :func:`medai.evaluation.fairness.fairness_audit`.

    Args:
        groups: ``{attribute: labels}`` one label per evaluated unit (see
            :func:`medai.evaluation.fairness.group_attributes`); empty: the overall row only.
        dice: ``(n,)`` per-unit Dice (NaN when undefined: empty truth and prediction).
        hd95_mm: ``(n,)`` per-unit HD95 in mm (NaN when undefined).
        min_n: groups smaller than this are flagged ``reliable: false``.
        n_resamples, confidence, seed: bootstrap (stratified by group).
        intersections: also audit every pair of attributes.
        unit: what one row is (``case`` or ``subject``), recorded in the file.
        note: recorded as ``note`` (e.g. why no attribute was audited).

    Returns:
        The fairness dict (``schema``, ``kind`` = ``segmentation``, ``overall``, ``attributes``,
        ``gaps_beyond_ci``, ...).
    """
    from medai.evaluation.fairness import INTERSECTION, SCHEMA, _audit_attribute, _label, gaps_beyond_ci

    owner = "segmentation_fairness_audit"
    d = np.asarray(dice, dtype=np.float64).ravel()
    h = np.asarray(hd95_mm, dtype=np.float64).ravel()
    n = d.shape[0]
    if n == 0 or h.shape != (n,):
        raise DataValidationError(f"{owner}: 'dice' and 'hd95_mm' must have the same, non-zero length; got {n} "
                                  f"and {h.shape[0]}.")
    if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 1:
        raise invalid_parameter("min_n", owner, "an int >= 1", min_n)
    for name, labels in groups.items():
        if not isinstance(labels, pd.Series) or len(labels) != n:
            raise DataValidationError(f"{owner}: group attribute '{name}' must be a pandas Series with one label per "
                                      f"evaluated {unit} ({n}); got {type(labels).__name__} of length "
                                      f"{len(labels) if hasattr(labels, '__len__') else None}.")

    def fn(dd: np.ndarray, hh: np.ndarray) -> dict[str, float]:
        return {"dice": float(np.nanmean(dd)) if np.isfinite(dd).any() else math.nan,
                "hd95_mm": float(np.nanmean(hh)) if np.isfinite(hh).any() else math.nan}

    attributes = {name: np.array([_label(v) for v in labels.to_numpy()], dtype=object)
                  for name, labels in groups.items()}
    columns = {name: [name] for name in attributes}
    if intersections:
        for a, b in itertools.combinations(list(groups), 2):
            name = f"{a}{INTERSECTION}{b}"
            attributes[name] = np.array([f"{u}{INTERSECTION}{v}" for u, v in zip(attributes[a], attributes[b])],
                                        dtype=object)
            columns[name] = [a, b]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample of a small group may hold no defined Dice: NaN by design
        overall_table = bootstrap_metrics(fn, (d, h), n_resamples=n_resamples, confidence=confidence, seed=seed)
        audited = {name: {"columns": columns[name],
                          "groups": _audit_attribute("segmentation", fn, SEGMENTATION_METRICS, labels, (d, h), None,
                                                     None, lambda idx: None, min_n, n_resamples, confidence, seed)}
                   for name, labels in attributes.items()}
    beyond = gaps_beyond_ci(audited)
    return {
        "schema": SCHEMA, "kind": "segmentation", "threshold": None, "class_names": None, "unit": unit,
        "min_n": min_n, "n_resamples": n_resamples, "confidence": confidence, "seed": seed,
        "bootstrap": "percentile; resampled within group; gap = group - overall on each resample",
        "metrics": list(SEGMENTATION_METRICS),
        "definitions": dict(SEGMENTATION_DEFINITIONS),
        "overall": {"n": n, "metrics": {m: overall_table[m] for m in SEGMENTATION_METRICS}},
        "attributes": audited,
        "gaps_beyond_ci": beyond,
        "mitigation": None,
        "note": note,
    }
