"""Decision curve analysis: net benefit of acting on a model's predictions (Vickers & Elkin 2006).

At a threshold probability ``pt`` a clinician treats a patient when the predicted risk is at least ``pt``; the
threshold expresses how many false positives one true positive is worth (``pt / (1 - pt)``). The net benefit
``NB(pt) = TP/n - FP/n * pt / (1 - pt)`` is compared with "treat all" (:func:`net_benefit_treat_all`) and
"treat none" (net benefit 0 at every threshold).
"""

from __future__ import annotations

import numpy as np

from medai.core.errors import invalid_parameter
from medai.evaluation.metrics import _as_float_array, _binary_inputs, _check_binary_labels

__all__ = ["compute_net_benefit", "net_benefit_treat_all"]


def _check_thresholds(thresholds: object, owner: str) -> np.ndarray:
    try:
        pt = np.asarray(thresholds, dtype=float)
    except (TypeError, ValueError):
        raise invalid_parameter("thresholds", owner, "a 1-D array of numbers in [0, 1)", thresholds) from None
    if pt.ndim != 1 or not np.all(np.isfinite(pt)) or np.any(pt < 0.0) or np.any(pt >= 1.0):
        # pt = 1 would weigh a false positive infinitely: the net benefit is undefined there.
        raise invalid_parameter("thresholds", owner, "a 1-D array of numbers in [0, 1)", thresholds)
    return pt


def _n_at_or_above(sorted_scores: np.ndarray, pt: np.ndarray) -> np.ndarray:
    return sorted_scores.shape[0] - np.searchsorted(sorted_scores, pt, side="left")


def compute_net_benefit(y_true, y_prob, thresholds) -> np.ndarray:
    """Net benefit of treating the patients whose predicted risk is at least each threshold.

    Args:
        y_true: ``(n_samples,)`` outcome, 1 = event (patient benefits from treatment), 0 = no event.
        y_prob: ``(n_samples,)`` predicted probability of the event.
        thresholds: ``(n_thresholds,)`` threshold probabilities ``pt`` in [0, 1).

    Returns:
        ``(n_thresholds,)`` net benefit ``TP/n - FP/n * pt / (1 - pt)``, where a patient is treated when
        ``y_prob >= pt`` (the decision rule of :func:`medai.evaluation.metrics.binary_metrics`).
    """
    owner = "compute_net_benefit"
    pt = _check_thresholds(thresholds, owner)
    y, p = _binary_inputs(y_true, y_prob, owner)
    n = y.shape[0]
    tp = _n_at_or_above(np.sort(p[y == 1]), pt)
    fp = _n_at_or_above(np.sort(p[y == 0]), pt)
    return tp / n - fp / n * pt / (1.0 - pt)


def net_benefit_treat_all(y_true, thresholds) -> np.ndarray:
    """Net benefit of treating every patient: ``prevalence - (1 - prevalence) * pt / (1 - pt)``.

    Args:
        y_true: ``(n_samples,)`` outcome, 1 = event, 0 = no event.
        thresholds: ``(n_thresholds,)`` threshold probabilities ``pt`` in [0, 1).

    Returns:
        ``(n_thresholds,)`` net benefit of the treat-all strategy.
    """
    owner = "net_benefit_treat_all"
    pt = _check_thresholds(thresholds, owner)
    y = _check_binary_labels(_as_float_array(y_true, "y_true", owner), "y_true", owner)
    prevalence = y.mean()
    return prevalence - (1.0 - prevalence) * pt / (1.0 - pt)
