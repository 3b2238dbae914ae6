"""Classification and regression metrics on numpy arrays.

Everything scikit-learn computes (AUROC, average precision, accuracy, F1, Brier score, RMSE, MAE, R²) is
delegated to scikit-learn. Implemented here is only what it lacks: the expected calibration error, the
calibration slope and intercept (Cox 1958; Van Calster et al. 2019, "Calibration: the Achilles heel of
predictive analytics") and the confusion rates (sensitivity, specificity, PPV, NPV).

Label meaning: binary ``y_true`` holds 1 for the positive class and 0 for the negative class; binary
``y_prob`` is the predicted probability of class 1. Multi-class ``y_true`` holds class indices ``0 .. K-1``
and ``y_prob`` has shape ``(n_samples, K)`` with rows summing to 1.

A metric that is undefined on the given data (one class only, a zero denominator, a diverging fit)
is ``float('nan')``, never a substitute value. Invalid input (wrong shape, non-finite score, probability
outside [0, 1]) raises :class:`~medai.core.errors.DataValidationError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import expit
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from medai.core.errors import DataValidationError, InvalidParameterError, invalid_parameter

__all__ = [
    "binary_metrics",
    "compute_calibration_slope_intercept",
    "compute_confusion_rates",
    "compute_ece",
    "compute_ece_multiclass",
    "multiclass_metrics",
    "multilabel_metrics",
    "regression_metrics",
]

# Probabilities are clipped before the logit so that a confident 0 or 1 does not become ±inf.
_PROB_CLIP = 1e-6
# Rows of a multi-class probability matrix may deviate this much from summing to 1 (float32 softmax).
_ROW_SUM_TOL = 1e-3


# --------------------------------------------------------------------------------------------------------------
# Input validation shared by the evaluation modules (private: the public functions call these at their boundary).


def _as_float_array(x: object, name: str, owner: str, ndim: int = 1) -> np.ndarray:
    """Convert ``x`` to a float array of the given dimensionality, or raise DataValidationError."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise DataValidationError(
            f"{owner}: '{name}' must be numeric; got values of type {np.asarray(x).dtype}. "
            "Convert it to numbers first."
        ) from None
    shape_text = "(n_samples,)" if ndim == 1 else "(n_samples, n_columns)"
    if arr.ndim != ndim:
        raise DataValidationError(
            f"{owner}: '{name}' must be a {ndim}-D array of shape {shape_text}; got shape {arr.shape}."
        )
    if arr.shape[0] == 0:
        raise DataValidationError(f"{owner}: '{name}' is empty; at least one sample is needed.")
    return arr


def _check_finite(arr: np.ndarray, name: str, owner: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DataValidationError(
            f"{owner}: '{name}' contains {int(bad.sum())} non-finite value(s) (NaN or inf); expected finite "
            "numbers. Drop or impute those records before evaluating."
        )


def _check_probabilities(arr: np.ndarray, name: str, owner: str) -> None:
    _check_finite(arr, name, owner)
    outside = (arr < 0.0) | (arr > 1.0)
    if outside.any():
        raise DataValidationError(
            f"{owner}: '{name}' must hold probabilities in [0, 1]; {int(outside.sum())} value(s) are outside "
            f"(min {arr.min():.4g}, max {arr.max():.4g}). Pass probabilities (after sigmoid/softmax), not logits."
        )


def _check_binary_labels(arr: np.ndarray, name: str, owner: str) -> np.ndarray:
    """Return ``arr`` as an int array of 0/1 or raise DataValidationError."""
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        found = np.unique(arr[bad])[:5].tolist()
        raise DataValidationError(
            f"{owner}: '{name}' must contain only 0 and 1 (1 = positive class); found other values such as "
            f"{found}. Encode the labels as 0/1 first."
        )
    return arr.astype(np.int64)


def _check_same_length(owner: str, **arrays: np.ndarray) -> None:
    lengths = {name: arr.shape[0] for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"'{name}' has {length}" for name, length in lengths.items())
        raise DataValidationError(f"{owner}: the inputs must have the same number of samples; {listed}.")


def _check_n_bins(n_bins: object, owner: str) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise invalid_parameter("n_bins", owner, "an int >= 1", n_bins)
    return int(n_bins)


def _binary_inputs(y_true: object, y_prob: object, owner: str) -> tuple[np.ndarray, np.ndarray]:
    y = _check_binary_labels(_as_float_array(y_true, "y_true", owner), "y_true", owner)
    p = _as_float_array(y_prob, "y_prob", owner)
    _check_same_length(owner, y_true=y, y_prob=p)
    _check_probabilities(p, "y_prob", owner)
    return y, p


# --------------------------------------------------------------------------------------------------------------
# Calibration


def _equal_width_bins(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int):
    """Per-bin count, mean prediction and observed frequency over ``n_bins`` equal-width bins of [0, 1].

    The binning is scikit-learn's ``calibration_curve(strategy="uniform")``: a probability that lies exactly on
    an inner edge goes to the lower bin. Empty bins are dropped.

    Returns:
        ``(count, mean_pred, frac_pos)``, three arrays of shape ``(n_nonempty_bins,)``.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], y_prob)
    count = np.bincount(ids, minlength=n_bins)
    sum_pred = np.bincount(ids, weights=y_prob, minlength=n_bins)
    sum_true = np.bincount(ids, weights=y_true, minlength=n_bins)
    keep = count > 0
    return count[keep], sum_pred[keep] / count[keep], sum_true[keep] / count[keep]


def _ece(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int) -> float:
    count, mean_pred, frac_pos = _equal_width_bins(y_true, y_prob, n_bins)
    return float(np.sum(count * np.abs(frac_pos - mean_pred)) / y_true.shape[0])


def compute_ece(y_true, y_prob, n_bins: int = 10) -> float:
    """Expected calibration error of binary predictions (Naeini et al. 2015).

    ``ECE = sum_b (n_b / n) * |frac_pos_b - mean_prob_b|`` over ``n_bins`` equal-width bins of [0, 1]; empty
    bins do not contribute. The bins are those of :func:`medai.evaluation.calibration.reliability_curve`.

    Args:
        y_true: ``(n_samples,)`` labels, 1 = positive, 0 = negative.
        y_prob: ``(n_samples,)`` predicted probability of class 1.
        n_bins: number of equal-width bins.

    Returns:
        The ECE in [0, 1].
    """
    owner = "compute_ece"
    n_bins = _check_n_bins(n_bins, owner)
    y, p = _binary_inputs(y_true, y_prob, owner)
    return _ece(y, p, n_bins)


def _ece_top_label(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int) -> float:
    confidence = y_prob.max(axis=1)
    correct = (y_prob.argmax(axis=1) == y_true).astype(float)
    return _ece(correct, confidence, n_bins)


def compute_ece_multiclass(y_true, y_prob, n_bins: int = 10) -> float:
    """Top-label expected calibration error (Guo et al. 2017).

    The confidence of a sample is its largest class probability; the accuracy of a bin is the fraction of its
    samples whose arg-max class is the true class. Bins as in :func:`compute_ece`.

    Args:
        y_true: ``(n_samples,)`` class indices ``0 .. K-1``.
        y_prob: ``(n_samples, K)`` class probabilities, rows summing to 1.
        n_bins: number of equal-width bins.

    Returns:
        The top-label ECE in [0, 1].
    """
    owner = "compute_ece_multiclass"
    n_bins = _check_n_bins(n_bins, owner)
    y, p = _multiclass_inputs(y_true, y_prob, owner)
    return _ece_top_label(y, p, n_bins)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _PROB_CLIP, 1.0 - _PROB_CLIP)
    return np.log(p) - np.log1p(-p)


def _fit_logistic(design: np.ndarray, y: np.ndarray, offset: np.ndarray) -> np.ndarray | None:
    """Unpenalised maximum-likelihood logistic regression by Newton-Raphson with step halving.

    Args:
        design: ``(n_samples, d)`` design matrix (include a column of ones for an intercept).
        y: ``(n_samples,)`` 0/1 outcomes.
        offset: ``(n_samples,)`` fixed term added to the linear predictor.

    Returns:
        The ``(d,)`` coefficients, or None when the maximum-likelihood estimate does not exist or the fit does
        not converge (separation, a singular information matrix).
    """
    beta = np.zeros(design.shape[1])
    eta = offset.copy()
    loglik = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    for _ in range(100):
        mu = expit(eta)
        grad = design.T @ (y - mu)
        info = (design * (mu * (1.0 - mu))[:, None]).T @ design
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)):
            return None
        # Step halving keeps every iteration an ascent step; Newton alone can overshoot far from the optimum.
        scale = 1.0
        while True:
            candidate = beta + scale * step
            cand_eta = offset + design @ candidate
            cand_loglik = float(np.sum(y * cand_eta - np.logaddexp(0.0, cand_eta)))
            if cand_loglik >= loglik - 1e-10 or scale < 1e-8:
                break
            scale /= 2.0
        change = np.max(np.abs(candidate - beta))
        beta, eta, loglik = candidate, cand_eta, cand_loglik
        if change < 1e-9 * (1.0 + np.max(np.abs(beta))):
            return beta
    # Under (quasi-)separation the coefficients grow without bound and the steps never shrink.
    return None


def _calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.shape[0]:
        return math.nan, math.nan
    lp = _logit(p)
    yf = y.astype(float)
    ones = np.ones((y.shape[0], 1))
    slope = math.nan
    if np.ptp(lp) > 0:  # a constant prediction carries no slope
        coef = _fit_logistic(np.hstack([ones, lp[:, None]]), yf, np.zeros_like(lp))
        if coef is not None:
            slope = float(coef[1])
    coef = _fit_logistic(ones, yf, lp)
    intercept = float(coef[0]) if coef is not None else math.nan
    return slope, intercept


def compute_calibration_slope_intercept(y_true, y_prob) -> tuple[float, float]:
    """Calibration slope and calibration-in-the-large of binary predictions.

    With ``lp = logit(p)`` (``p`` clipped to ``[1e-6, 1 - 1e-6]``):

    * slope: ``b`` in the unpenalised logistic regression ``logit P(y=1) = a + b * lp``. 1 is ideal; below 1
      means over-confident (too extreme) predictions, above 1 under-confident ones.
    * intercept (calibration-in-the-large): ``a`` in ``logit P(y=1) = a + lp`` (``lp`` as offset). 0 is ideal;
      positive means risks are under-estimated on average.

    Both are fitted by Newton-Raphson (Van Calster et al. 2019).

    Args:
        y_true: ``(n_samples,)`` labels, 1 = positive, 0 = negative.
        y_prob: ``(n_samples,)`` predicted probability of class 1.

    Returns:
        ``(slope, intercept)``. Each is NaN when it is not estimable: one class only, a constant prediction
        (slope), or perfect separation (no finite maximum-likelihood estimate).
    """
    y, p = _binary_inputs(y_true, y_prob, "compute_calibration_slope_intercept")
    return _calibration_slope_intercept(y, p)


# --------------------------------------------------------------------------------------------------------------
# Confusion rates


def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else math.nan


def _confusion_rates(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp = int(np.sum((pred == 1) & (y == 1)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    tn = y.shape[0] - tp - fp - fn
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
    }


def compute_confusion_rates(y_true, y_pred) -> dict[str, float]:
    """Sensitivity, specificity, positive and negative predictive value of binary decisions.

    Args:
        y_true: ``(n_samples,)`` labels, 1 = positive, 0 = negative.
        y_pred: ``(n_samples,)`` decisions, 1 = predicted positive.

    Returns:
        ``{"sensitivity": TP/(TP+FN), "specificity": TN/(TN+FP), "ppv": TP/(TP+FP), "npv": TN/(TN+FN)}``;
        a rate whose denominator is zero is NaN.
    """
    owner = "compute_confusion_rates"
    y = _check_binary_labels(_as_float_array(y_true, "y_true", owner), "y_true", owner)
    pred = _check_binary_labels(_as_float_array(y_pred, "y_pred", owner), "y_pred", owner)
    _check_same_length(owner, y_true=y, y_pred=pred)
    return _confusion_rates(y, pred)


# --------------------------------------------------------------------------------------------------------------
# Metric sets used by the pipeline


def _check_class_names(class_names: object, n_classes: int, owner: str) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence | np.ndarray):
        raise invalid_parameter("class_names", owner, f"a sequence of {n_classes} class names", class_names)
    names = [str(c) for c in class_names]
    if len(names) != n_classes:
        raise invalid_parameter("class_names", owner, f"a sequence of {n_classes} class names", class_names)
    if len(set(names)) != len(names) or "macro" in names:
        raise invalid_parameter(
            "class_names", owner, "distinct names, none equal to 'macro' (they name the f1_<class> keys)", names
        )
    return names


def binary_metrics(y_true, y_prob, threshold: float, class_names: Sequence[str]) -> dict[str, float]:
    """All binary classification metrics of the evaluation report.

    Args:
        y_true: ``(n_samples,)`` labels, 1 = positive (``class_names[1]``), 0 = negative (``class_names[0]``).
        y_prob: ``(n_samples,)`` predicted probability of class 1.
        threshold: operating point; a sample is predicted positive when ``y_prob >= threshold``.
        class_names: ``(negative_name, positive_name)``; they name the per-class F1 keys.

    Returns:
        ``auroc``, ``auprc`` (average precision), ``accuracy``, ``f1_macro``, ``f1_<class_names[0]>``,
        ``f1_<class_names[1]>``, ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``brier``, ``ece``,
        ``calibration_slope``, ``calibration_intercept``. Undefined metrics are NaN: AUROC, AUPRC and the
        calibration fit with one class only; the F1 of a class that is neither present nor predicted (and
        then ``f1_macro``); a confusion rate with a zero denominator.

    Raises:
        DataValidationError: the arrays differ in length, ``y_true`` is not 0/1, or ``y_prob`` is not a finite
            probability.
        InvalidParameterError: ``threshold`` is not in [0, 1] or ``class_names`` is not two distinct names.
    """
    owner = "binary_metrics"
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number) or not (
        0.0 <= float(threshold) <= 1.0
    ):
        raise invalid_parameter("threshold", owner, "a number in [0, 1]", threshold)
    names = _check_class_names(class_names, 2, owner)
    y, p = _binary_inputs(y_true, y_prob, owner)

    pred = (p >= threshold).astype(np.int64)
    n_pos = int(y.sum())
    both_classes = 0 < n_pos < y.shape[0]
    f1_per_class = f1_score(y, pred, labels=[0, 1], average=None, zero_division=np.nan)
    slope, intercept = _calibration_slope_intercept(y, p)
    out = {
        # Checked here rather than left to scikit-learn, which would warn and (for AP) return 0.
        "auroc": float(roc_auc_score(y, p)) if both_classes else math.nan,
        "auprc": float(average_precision_score(y, p)) if both_classes else math.nan,
        "accuracy": float(accuracy_score(y, pred)),
        # Mean of the per-class F1 (scikit-learn's macro F1 when both are defined); NaN if one is undefined.
        "f1_macro": float(np.mean(f1_per_class)),
        f"f1_{names[0]}": float(f1_per_class[0]),
        f"f1_{names[1]}": float(f1_per_class[1]),
    }
    out.update(_confusion_rates(y, pred))
    out.update(
        {
            "brier": float(brier_score_loss(y, p, labels=[0, 1])),
            "ece": _ece(y, p, 10),
            "calibration_slope": slope,
            "calibration_intercept": intercept,
        }
    )
    return out


def _multiclass_inputs(y_true: object, y_prob: object, owner: str) -> tuple[np.ndarray, np.ndarray]:
    p = _as_float_array(y_prob, "y_prob", owner, ndim=2)
    n_classes = p.shape[1]
    if n_classes < 2:
        raise DataValidationError(
            f"{owner}: 'y_prob' must have one column per class (at least 2); got shape {p.shape}."
        )
    y = _as_float_array(y_true, "y_true", owner)
    _check_same_length(owner, y_true=y, y_prob=p)
    _check_finite(y, "y_true", owner)
    bad = (y != np.round(y)) | (y < 0) | (y >= n_classes)
    if bad.any():
        found = np.unique(y[bad])[:5].tolist()
        raise DataValidationError(
            f"{owner}: 'y_true' must hold class indices 0..{n_classes - 1} (one per column of 'y_prob'); found "
            f"values such as {found}."
        )
    _check_probabilities(p, "y_prob", owner)
    row_sums = p.sum(axis=1)
    off = np.abs(row_sums - 1.0) > _ROW_SUM_TOL
    if off.any():
        raise DataValidationError(
            f"{owner}: each row of 'y_prob' must sum to 1; {int(off.sum())} row(s) do not (e.g. "
            f"{row_sums[off][0]:.4g}). Pass softmax probabilities, not logits or one-vs-rest scores."
        )
    return y.astype(np.int64), p


#: The PhysioNet/CinC Challenge 2017 score averages the F1 of these classes (normal, AF, other rhythm); the noisy
#: class '~' is scored only through the others' F1 (Clifford et al., Computing in Cardiology 2017).
CINC2017_CLASSES = ("N", "A", "O")


def compute_cinc2017_score(y_true, y_pred, class_names: Sequence[str]) -> float:
    """The CinC 2017 challenge score: mean F1 over classes N, A and O, each F1 = 2·TP / (2·TP + FP + FN) counted
    over all four classes (so a normal recording called noisy costs N its recall).

    Args:
        y_true: ``(n,)`` class indices; y_pred: ``(n,)`` predicted indices; class_names: names of the indices,
            which must include ``N``, ``A`` and ``O``.
    """
    names = list(class_names)
    missing = [c for c in CINC2017_CLASSES if c not in names]
    if missing:
        raise InvalidParameterError(f"compute_cinc2017_score needs classes N, A and O; {missing} absent from "
                                    f"{names}.")
    labels = [names.index(c) for c in CINC2017_CLASSES]
    scores = f1_score(np.asarray(y_true), np.asarray(y_pred), labels=labels, average=None, zero_division=0.0)
    return float(np.mean(scores))


def multiclass_metrics(y_true, y_prob, class_names: Sequence[str]) -> dict[str, float]:
    """All multi-class classification metrics of the evaluation report.

    Args:
        y_true: ``(n_samples,)`` class indices ``0 .. K-1``; index ``k`` means ``class_names[k]``.
        y_prob: ``(n_samples, K)`` class probabilities, rows summing to 1 (within 1e-3).
        class_names: the ``K`` class names; they name the per-class F1 keys.

    Returns:
        ``auroc`` (macro one-vs-rest), ``auprc`` (macro one-vs-rest average precision), ``accuracy`` (of the
        arg-max class), ``f1_macro``, ``f1_<class>`` for each class, ``brier`` (mean over samples of
        ``sum_k (p_k - onehot_k)^2``, in [0, 2]), ``ece`` (top-label, 10 bins), ``auroc_<class>`` (one vs rest)
        and, when the classes include N, A and O, ``cinc2017_score`` (:func:`compute_cinc2017_score`). AUROC and
        AUPRC are NaN when a class is absent from ``y_true`` (its one-vs-rest curve is undefined); a class F1 is
        NaN when the class is neither present nor predicted, and then so is ``f1_macro``.

    Raises:
        DataValidationError: lengths differ, ``y_true`` is not a class index, or ``y_prob`` is not a
            probability matrix.
        InvalidParameterError: ``class_names`` is not ``K`` distinct names.
    """
    owner = "multiclass_metrics"
    y, p = _multiclass_inputs(y_true, y_prob, owner)
    n_classes = p.shape[1]
    names = _check_class_names(class_names, n_classes, owner)
    labels = list(range(n_classes))
    pred = p.argmax(axis=1)

    all_present = np.bincount(y, minlength=n_classes).min() > 0
    if all_present:
        # Macro one-vs-rest = the unweighted mean of the per-class binary scores, computed on the one-hot
        # (multilabel) form: equal to roc_auc_score(multi_class="ovr", average="macro") without its strict
        # row-sum check, which float32 softmax output can fail.
        onehot = (y[:, None] == np.arange(n_classes)[None, :]).astype(np.int64)
        auroc = float(roc_auc_score(onehot, p, average="macro"))
        auprc = float(average_precision_score(onehot, p, average="macro"))
    else:
        auroc = auprc = math.nan
    f1_per_class = f1_score(y, pred, labels=labels, average=None, zero_division=np.nan)
    out = {
        "auroc": auroc,
        "auprc": auprc,
        "accuracy": float(accuracy_score(y, pred)),
        "f1_macro": float(np.mean(f1_per_class)),
    }
    for name, value in zip(names, f1_per_class, strict=True):
        out[f"f1_{name}"] = float(value)
    for k, name in enumerate(names):  # one-vs-rest AUROC per class (e.g. atrial fibrillation vs the rest)
        present = (y == k).any() and (y != k).any()
        out[f"auroc_{name}"] = float(roc_auc_score(y == k, p[:, k])) if present else math.nan
    if set(CINC2017_CLASSES) <= set(names):
        out["cinc2017_score"] = compute_cinc2017_score(y, pred, names)
    out["brier"] = float(brier_score_loss(y, p, labels=labels, scale_by_half=False))
    out["ece"] = _ece_top_label(y, p, 10)
    return out


def multilabel_metrics(y_true, y_prob, thresholds: Sequence[float], class_names: Sequence[str]) -> dict[str, float]:
    """Metrics of K independent findings (multi-label, CheXNet-style).

    Args:
        y_true: ``(n_samples, K)`` 0/1, 1 = finding present.
        y_prob: ``(n_samples, K)`` predicted probability that each finding is present.
        thresholds: ``(K,)`` per-finding operating points (present when ``y_prob >= threshold``).
        class_names: the K finding names; they name the per-finding keys.

    Returns:
        ``auroc`` and ``auprc``: the unweighted mean over findings with both outcomes present (macro; NaN if
        none); ``auroc_<finding>``, ``sensitivity_<finding>``, ``specificity_<finding>`` per finding;
        ``accuracy``: the fraction of correct (sample, finding) decisions (1 − Hamming loss); ``f1_macro``: mean
        per-finding F1 (NaN if a finding is neither present nor predicted); ``brier``: mean per-finding Brier.
    """
    owner = "multilabel_metrics"
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_prob, dtype=np.float64)
    if y.ndim != 2 or p.shape != y.shape:
        raise DataValidationError(f"{owner}: 'y_true' and 'y_prob' must both be (n_samples, K); got {y.shape} and "
                                  f"{p.shape}.")
    if not np.isin(y, (0, 1)).all():
        raise DataValidationError(f"{owner}: 'y_true' must hold 0/1 indicators.")
    _check_probabilities(p, "y_prob", owner)
    names = _check_class_names(class_names, y.shape[1], owner)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (y.shape[1],):
        raise invalid_parameter("thresholds", owner, f"{y.shape[1]} thresholds, one per finding", thresholds)
    pred = (p >= t).astype(np.int64)
    out: dict[str, float] = {}
    aurocs, auprcs, f1s = [], [], []
    for j, name in enumerate(names):
        n_pos = int(y[:, j].sum())
        both = 0 < n_pos < len(y)
        auroc = float(roc_auc_score(y[:, j], p[:, j])) if both else math.nan
        if both:
            aurocs.append(auroc)
            auprcs.append(float(average_precision_score(y[:, j], p[:, j])))
        rates = _confusion_rates(y[:, j].astype(np.int64), pred[:, j])
        out[f"auroc_{name}"] = auroc
        out[f"sensitivity_{name}"] = rates["sensitivity"]
        out[f"specificity_{name}"] = rates["specificity"]
        f1s.append(float(f1_score(y[:, j], pred[:, j], zero_division=np.nan)))
    out = {"auroc": float(np.mean(aurocs)) if aurocs else math.nan,
           "auprc": float(np.mean(auprcs)) if auprcs else math.nan,
           "accuracy": float((pred == y).mean()), "f1_macro": float(np.mean(f1s)),
           "brier": float(np.mean((p - y) ** 2)), **out}
    return out


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """Regression metrics of the evaluation report.

    Args:
        y_true: ``(n_samples,)`` observed target.
        y_pred: ``(n_samples,)`` predicted target, same unit.

    Returns:
        ``rmse``, ``mae`` (in the target's unit) and ``r2``; ``r2`` is NaN with fewer than two samples or a
        constant ``y_true`` (no variance to explain).

    Raises:
        DataValidationError: lengths differ or a value is not finite.
    """
    owner = "regression_metrics"
    y = _as_float_array(y_true, "y_true", owner)
    pred = _as_float_array(y_pred, "y_pred", owner)
    _check_same_length(owner, y_true=y, y_pred=pred)
    _check_finite(y, "y_true", owner)
    _check_finite(pred, "y_pred", owner)
    defined_r2 = y.shape[0] >= 2 and np.ptp(y) > 0
    return {
        "rmse": float(root_mean_squared_error(y, pred)),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)) if defined_r2 else math.nan,
    }
