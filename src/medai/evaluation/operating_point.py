"""Choice of the decision threshold (operating point) of a binary classifier.

The threshold is chosen on validation data and then applied, unchanged, to the test data; a sample is
predicted positive when ``y_prob >= threshold`` (scikit-learn's ``roc_curve`` convention).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from sklearn.metrics import roc_curve

from medai.core.errors import DataValidationError, invalid_parameter
from medai.evaluation.metrics import _binary_inputs

__all__ = ["OperatingPointMethod", "choose_threshold"]

# Sensitivities are ratios of counts; this absorbs their floating-point error (9/10 vs 0.9).
_SENSITIVITY_TOL = 1e-12


class OperatingPointMethod(StrEnum):
    """How :func:`choose_threshold` picks the threshold."""

    YOUDEN = "youden"  # maximise Youden's J = sensitivity + specificity - 1 (Youden 1950)
    SENSITIVITY = "sensitivity"  # the highest threshold that reaches a target sensitivity (screening use)


def choose_threshold(
    y_true, y_prob, method: OperatingPointMethod | str = "youden", target_sensitivity: float = 0.9
) -> float:
    """Choose a decision threshold on (validation) data.

    Args:
        y_true: ``(n_samples,)`` labels, 1 = positive, 0 = negative; both classes must be present.
        y_prob: ``(n_samples,)`` predicted probability of class 1.
        method: ``"youden"`` maximises sensitivity + specificity - 1; ``"sensitivity"`` keeps the highest
            specificity among thresholds whose sensitivity is at least ``target_sensitivity``.
        target_sensitivity: the sensitivity to reach, in (0, 1); used by ``method="sensitivity"``.

    Every threshold in an interval between two consecutive observed scores gives the same validation
    results; the chosen threshold is the middle of the best interval (for Youden: of the whole run of
    thresholds reaching the maximal J), not its upper edge. On well-separated validation data the edge sits
    on the lowest-scoring positive and the threshold would swing from 0.05 to 1.0 across resamples; the
    middle keeps a margin on both sides.

    Returns:
        A finite threshold with the chosen validation sensitivity and specificity.

    Raises:
        InvalidParameterError: unknown ``method`` or ``target_sensitivity`` outside (0, 1).
        DataValidationError: invalid arrays, or only one class present in ``y_true``.
    """
    owner = "choose_threshold"
    try:
        method = OperatingPointMethod(method)
    except ValueError:
        raise invalid_parameter(
            "method", owner, f"one of {[m.value for m in OperatingPointMethod]}", method
        ) from None
    if (
        isinstance(target_sensitivity, bool)
        or not isinstance(target_sensitivity, int | float | np.number)
        or not 0.0 < float(target_sensitivity) < 1.0
    ):
        raise invalid_parameter("target_sensitivity", owner, "a number in the open interval (0, 1)", target_sensitivity)
    y, p = _binary_inputs(y_true, y_prob, owner)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.shape[0]:
        missing = "positive (1)" if n_pos == 0 else "negative (0)"
        raise DataValidationError(
            f"{owner}: 'y_true' has no {missing} sample; a threshold needs both classes. Choose it on a "
            "validation split that contains both (a stratified split guarantees it)."
        )

    # Thresholds come in decreasing order; the first is +inf (nothing predicted positive).
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    if method is OperatingPointMethod.YOUDEN:
        j = tpr - fpr
        first = int(np.argmax(j >= j.max() - _SENSITIVITY_TOL))  # highest threshold reaching the maximum
        last = first
        while last + 1 < len(j) and j[last + 1] >= j[first] - _SENSITIVITY_TOL:
            last += 1  # the contiguous run of thresholds with the same maximal J
    else:
        first = last = int(np.argmax(tpr >= float(target_sensitivity) - _SENSITIVITY_TOL))  # tpr reaches 1 at the end
    upper = float(thresholds[first])
    if not np.isfinite(upper):  # J <= 0 everywhere selects +inf: nothing positive; the top score is the finite edge
        return float(p.max())
    # thresholds[last + 1] is the next lower observed score: any threshold in (it, thresholds[last]] ... (upper]
    # classifies the validation data identically within the run; take the middle.
    lower = float(thresholds[last + 1]) if last + 1 < len(thresholds) else 0.0
    return (upper + lower) / 2.0
