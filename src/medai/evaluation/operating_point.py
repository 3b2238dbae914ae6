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
        method: ``"youden"`` maximises sensitivity + specificity - 1, taking the highest threshold among ties;
            ``"sensitivity"`` returns the highest threshold whose sensitivity is at least
            ``target_sensitivity`` (so specificity is as high as that sensitivity allows).
        target_sensitivity: the sensitivity to reach, in (0, 1); used by ``method="sensitivity"``.

    Returns:
        A finite threshold, one of the values of ``y_prob``.

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
        index = int(np.argmax(tpr - fpr))  # first maximum = highest threshold among ties
    else:
        index = int(np.argmax(tpr >= float(target_sensitivity) - _SENSITIVITY_TOL))  # tpr reaches 1 at the end
    threshold = float(thresholds[index])
    # J <= 0 everywhere selects the +inf threshold; the highest score is the finite equivalent.
    return threshold if np.isfinite(threshold) else float(p.max())
