"""Split-conformal prediction, abstention ("refer to a clinician") and selective-risk curves.

Split conformal prediction (Vovk et al. 2005; Angelopoulos & Bates 2021, "A gentle introduction to conformal
prediction and distribution-free uncertainty quantification"): a nonconformity score ``s(x, y)`` is computed on
the ``n`` validation (calibration) records, and a new record's prediction set holds every outcome ``y`` with
``s(x, y) <= q``, where ``q`` is the ``ceil((n + 1)(1 - alpha))``-th smallest calibration score. If calibration
and new records are exchangeable, the set contains the truth with probability at least ``1 - alpha`` (marginally,
over records — not for every patient or every subgroup). When ``ceil((n + 1)(1 - alpha)) > n`` the validation
split is too small for ``alpha``: ``q`` is infinite and every set holds every outcome.

What each task kind gets (scores follow :class:`medai.registry.predictor.Predictor`):

* binary ``(n,)`` P(positive) and multi-class ``(n, K)`` probabilities — :class:`ConformalClassifier`; scores
  ``lac`` (least ambiguous set-valued classifier, ``1 - p_true``; Sadinle et al. 2019) or ``aps`` (adaptive
  prediction sets, the probability mass of the classes at least as likely as the true one; Romano et al. 2020,
  non-randomised, hence deterministic per record but conservative: it always keeps the most likely class, so its
  sets fill up when the top-class error rate exceeds ``alpha``). A set that is not exactly one class (empty, or
  two classes or more) is an *abstention*: the model does not commit and the case is referred to a clinician.
* multi-label ``(n, K)`` per-finding probabilities — :class:`ConformalMultilabel`: one binary LAC set over
  {absent, present} per finding, each with its own calibrated ``q`` (coverage ``1 - alpha`` per finding).
* regression ``(n,)`` predictions — :class:`ConformalRegressor`: intervals ``pred ± q`` (absolute residual) or
  ``pred ± q * scale`` (normalised residual, when the caller has a per-record spread estimate such as an
  ensemble's standard deviation; Lei et al. 2018). An interval never abstains by itself; a run may set a maximum
  useful width, beyond which the interval is an abstention.
* survival ``(n,)`` log relative risk — :class:`ConformalRiskGroup`. A log-risk is not a time, so no interval on
  a time is offered. Instead the binary question the risk groups of ``medai predict`` answer ("event by the
  horizon?") gets a conformal set over {low, high}: with cut-off ``c`` (default: the validation median, the
  predictor's ``risk_group_cutoff``) the score is ``c - r`` when the event happened by the horizon and
  ``r - c`` otherwise, which is LAC on ``sigmoid(r - c)``. The calibrated band ``[c - q, c + q]`` around the
  cut-off is where the model abstains. Records censored before the horizon have an unknown outcome: the other
  records are weighted by the inverse probability of remaining uncensored (Kaplan–Meier of the censoring times,
  as in the IPCW Brier score of Graf et al. 1999) and ``q`` is the weighted quantile (Tibshirani et al. 2019).
  This holds only under censoring independent of the outcome and covariates, and only approximately (the weights
  are estimated): coverage is then estimated on the test split with the same weights.

:func:`conformal_report` calibrates on validation and measures coverage, abstention and set sizes on test;
:func:`selective_risk_curve` gives the risk-coverage curve and its area (AURC; Geifman & El-Yaniv 2017).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

import numpy as np
from scipy.stats import beta as beta_distribution

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, NotFittedError, closest, invalid_parameter
from medai.evaluation.bootstrap import bootstrap_metrics
from medai.evaluation.metrics import (
    _as_float_array,
    _check_finite,
    _check_probabilities,
    _check_same_length,
    _ROW_SUM_TOL,
)

__all__ = [
    "ClassificationScore",
    "ConformalClassifier",
    "ConformalMultilabel",
    "ConformalRegressor",
    "ConformalRiskGroup",
    "RegressionScore",
    "clopper_pearson",
    "conformal_from_dict",
    "conformal_quantile",
    "conformal_report",
    "plot_selective_risk",
    "selective_risk_curve",
]


class ClassificationScore(StrEnum):
    """Nonconformity score of classification sets."""

    LAC = "lac"  # 1 - p(true class): smallest average sets; may be empty
    APS = "aps"  # mass of the classes at least as likely as the true one: sets adapt to the case's difficulty


class RegressionScore(StrEnum):
    """Nonconformity score of regression intervals."""

    ABSOLUTE = "absolute"  # |y - pred|: one width for every record
    NORMALIZED = "normalized"  # |y - pred| / scale: width proportional to the record's spread estimate


#: Names of the two survival risk groups, as ``Predictor.format_scores`` writes them (index 0 and 1 of a set).
RISK_GROUPS = ("low", "high")


# --------------------------------------------------------------------------------------------------------------
# Parameter and input checks


def _check_alpha(alpha: object, owner: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.number) or not 0.0 < float(alpha) < 1.0:
        raise invalid_parameter("alpha", owner, "a number in the open interval (0, 1), e.g. 0.1 for 90 % coverage",
                                alpha)
    return float(alpha)


def _option(enum: type[StrEnum], value: object, name: str, owner: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        hint = closest(str(value), [e.value for e in enum])
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must be one of {', '.join(repr(e.value) for e in enum)}. "
            f"Got {value!r} instead.{hint}"
        ) from None


def _class_probabilities(scores: object, name: str, owner: str) -> np.ndarray:
    """Binary ``(n,)`` P(positive) or multi-class ``(n, K)`` probabilities as an ``(n, K)`` matrix."""
    if np.ndim(scores) == 1:
        p = _as_float_array(scores, name, owner)
        _check_probabilities(p, name, owner)
        return np.column_stack([1.0 - p, p])
    p = _as_float_array(scores, name, owner, ndim=2)
    if p.shape[1] < 2:
        raise DataValidationError(
            f"{owner}: '{name}' must be P(positive) of shape (n_samples,) or class probabilities of shape "
            f"(n_samples, K >= 2); got shape {p.shape}."
        )
    _check_probabilities(p, name, owner)
    off = np.abs(p.sum(axis=1) - 1.0) > _ROW_SUM_TOL
    if off.any():
        raise DataValidationError(
            f"{owner}: each row of '{name}' must sum to 1; {int(off.sum())} row(s) do not. Pass softmax "
            "probabilities, not logits; multi-label scores go to ConformalMultilabel."
        )
    return p


def _class_indices(y: object, n_classes: int, name: str, owner: str) -> np.ndarray:
    arr = _as_float_array(y, name, owner)
    _check_finite(arr, name, owner)
    bad = (arr != np.round(arr)) | (arr < 0) | (arr >= n_classes)
    if bad.any():
        raise DataValidationError(
            f"{owner}: '{name}' must hold class indices 0..{n_classes - 1} (one per column of the scores; binary: "
            f"1 = positive); {int(bad.sum())} value(s) are not. Encode the labels as indices first."
        )
    return arr.astype(np.int64)


def _check_fitted(obj: object, attribute: str) -> None:
    if getattr(obj, attribute, None) is None:
        raise NotFittedError(f"This {type(obj).__name__} is not fitted yet: call fit(val_scores, y_val) first, on "
                             "the validation split.")


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _from_json_float(value: object) -> float:
    return math.inf if value is None else float(value)


def _check_dict(data: object, expected_type: str, keys: tuple[str, ...], source: str) -> dict:
    if not isinstance(data, dict) or data.get("type") != expected_type:
        got = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise DataValidationError(f"{source}: expected a stored '{expected_type}' (its 'type' key); got {got!r}. "
                                  "Re-export the model artefact with this medai version.")
    missing = [k for k in keys if k not in data]
    if missing:
        raise DataValidationError(f"{source}: the stored '{expected_type}' lacks {missing}. Re-export the model "
                                  "artefact with this medai version.")
    return data


# --------------------------------------------------------------------------------------------------------------
# Quantile and binomial interval


def conformal_quantile(scores, alpha: float, weights=None) -> float:
    """The split-conformal threshold of calibration nonconformity scores.

    Unweighted: the ``ceil((n + 1)(1 - alpha))``-th smallest score (the finite-sample correction of Vovk et al.
    2005), ``inf`` when that rank exceeds ``n``. Weighted (Tibshirani et al. 2019): the smallest score ``s`` whose
    weight share ``sum(w_i : s_i <= s) / (sum(w) + w_new)`` reaches ``1 - alpha``, with the unknown new record's
    weight ``w_new`` taken as the mean weight; equal weights give the unweighted rank.

    Args:
        scores: ``(n,)`` calibration nonconformity scores (larger = less conforming).
        alpha: miscoverage in (0, 1); the target coverage is ``1 - alpha``.
        weights: ``(n,)`` non-negative weights, or None.

    Returns:
        The threshold ``q`` (``inf`` when the calibration set is too small for ``alpha``).
    """
    owner = "conformal_quantile"
    alpha = _check_alpha(alpha, owner)
    s = _as_float_array(scores, "scores", owner)
    _check_finite(s, "scores", owner)
    order = np.argsort(s, kind="stable")
    s = s[order]
    if weights is None:
        rank = math.ceil((s.shape[0] + 1) * (1.0 - alpha))
        return float(s[rank - 1]) if rank <= s.shape[0] else math.inf
    w = _as_float_array(weights, "weights", owner)
    _check_same_length(owner, scores=s, weights=w)
    _check_finite(w, "weights", owner)
    if (w < 0).any() or w.sum() <= 0:
        raise DataValidationError(f"{owner}: 'weights' must be non-negative with a positive sum.")
    w = w[order]
    positive = w > 0
    share = np.cumsum(w) / (w.sum() + w[positive].mean())
    # A tiny tolerance keeps equal weights on exactly the unweighted rank despite rounding in the cumulative sum.
    reached = np.flatnonzero(share >= (1.0 - alpha) - 1e-12)
    return float(s[reached[0]]) if reached.shape[0] else math.inf


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson 1934) binomial confidence interval of ``k`` successes in ``n`` trials.

    Returns:
        ``(low, high)`` in [0, 1]; ``(nan, nan)`` when ``n == 0``.
    """
    if n == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else float(beta_distribution.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta_distribution.ppf(1.0 - tail, k + 1, n - k))
    return low, high


# --------------------------------------------------------------------------------------------------------------
# Classification


def _lac_scores(p: np.ndarray) -> np.ndarray:
    """``(n, K)`` LAC nonconformity of every candidate class."""
    return 1.0 - p


def _aps_scores(p: np.ndarray) -> np.ndarray:
    """``(n, K)`` APS nonconformity of every candidate class: ``sum_j p_j [p_j >= p_k]`` (ties share a score)."""
    at_least = p[:, None, :] >= p[:, :, None]  # [i, k, j]: class j at least as likely as class k
    return np.einsum("ikj,ij->ik", at_least, p)


class ConformalClassifier:
    """Split-conformal prediction sets for binary and multi-class classification.

    Example::

        cp = ConformalClassifier(alpha=0.1).fit(val_prob, y_val)
        sets = cp.predict_sets(test_prob)  # (n, K) bool; binary: K = 2, column 1 = positive class
        refer = sets.sum(axis=1) != 1       # abstain: refer to a clinician

    Args:
        alpha: miscoverage; sets contain the true class with probability >= ``1 - alpha``.
        score: ``"lac"`` or ``"aps"`` (:class:`ClassificationScore`).
    """

    def __init__(self, alpha: float = 0.1, score: ClassificationScore | str = ClassificationScore.LAC) -> None:
        self.alpha = alpha
        self.score = score

    def _score_matrix(self, p: np.ndarray) -> np.ndarray:
        return _aps_scores(p) if self.score_ is ClassificationScore.APS else _lac_scores(p)

    def fit(self, scores, y) -> ConformalClassifier:
        """Calibrate on validation.

        Args:
            scores: binary ``(n,)`` P(positive) or multi-class ``(n, K)`` probabilities.
            y: ``(n,)`` class indices (binary: 1 = positive).

        Returns:
            self, with ``quantile_``, ``n_classes_``, ``binary_`` and ``n_calibration_`` set.
        """
        owner = type(self).__name__
        alpha = _check_alpha(self.alpha, owner)
        self.score_ = _option(ClassificationScore, self.score, "score", owner)
        p = _class_probabilities(scores, "scores", owner)
        labels = _class_indices(y, p.shape[1], "y", owner)
        _check_same_length(owner, scores=p, y=labels)
        calibration = self._score_matrix(p)[np.arange(p.shape[0]), labels]
        self.alpha_ = alpha
        self.binary_ = np.ndim(scores) == 1
        self.n_classes_ = p.shape[1]
        self.n_calibration_ = int(p.shape[0])
        self.quantile_ = conformal_quantile(calibration, alpha)
        return self

    def predict_sets(self, scores) -> np.ndarray:
        """Prediction sets of new records.

        Args:
            scores: as in :meth:`fit` (same number of classes).

        Returns:
            ``(n, K)`` bool; ``[i, k]`` is True when class ``k`` is in record ``i``'s set.
        """
        _check_fitted(self, "quantile_")
        owner = f"{type(self).__name__}.predict_sets"
        p = _class_probabilities(scores, "scores", owner)
        if p.shape[1] != self.n_classes_:
            raise DataValidationError(f"{owner}: the scores have {p.shape[1]} classes; the predictor was "
                                      f"calibrated with {self.n_classes_}.")
        return self._score_matrix(p) <= self.quantile_

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (``quantile`` is null when infinite)."""
        _check_fitted(self, "quantile_")
        return {"type": "conformal_classifier", "alpha": self.alpha_, "score": self.score_.value,
                "n_classes": self.n_classes_, "binary": self.binary_, "n_calibration": self.n_calibration_,
                "quantile": _json_float(self.quantile_)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "conformal.json") -> ConformalClassifier:
        """Rebuild a fitted predictor from :meth:`to_dict` output; ``source`` names the file in errors."""
        keys = ("alpha", "score", "n_classes", "binary", "n_calibration", "quantile")
        data = _check_dict(data, "conformal_classifier", keys, source)
        out = cls(alpha=data["alpha"], score=data["score"])
        out.alpha_ = _check_alpha(data["alpha"], source)
        out.score_ = _option(ClassificationScore, data["score"], "score", source)
        out.n_classes_, out.binary_ = int(data["n_classes"]), bool(data["binary"])
        out.n_calibration_ = int(data["n_calibration"])
        out.quantile_ = _from_json_float(data["quantile"])
        return out


class ConformalMultilabel:
    """Per-finding split-conformal sets over {absent, present} for multi-label outputs (LAC score).

    Each finding ``k`` has its own threshold ``quantile_[k]``; the set of finding ``k`` contains its true status
    with probability >= ``1 - alpha`` (per finding, not jointly over the findings).

    Args:
        alpha: per-finding miscoverage.
    """

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha

    @staticmethod
    def _inputs(scores, y, owner: str) -> tuple[np.ndarray, np.ndarray | None]:
        p = _as_float_array(scores, "scores", owner, ndim=2)
        _check_probabilities(p, "scores", owner)
        if y is None:
            return p, None
        labels = _as_float_array(y, "y", owner, ndim=2)
        if labels.shape != p.shape:
            raise DataValidationError(f"{owner}: 'y' must have the shape of 'scores' (n_samples, K); got "
                                      f"{labels.shape} and {p.shape}.")
        if not np.isin(labels, (0, 1)).all():
            raise DataValidationError(f"{owner}: 'y' must hold 0/1 indicators (1 = finding present).")
        return p, labels.astype(np.int64)

    def fit(self, scores, y) -> ConformalMultilabel:
        """Calibrate on validation: ``scores`` ``(n, K)`` P(finding present), ``y`` ``(n, K)`` 0/1."""
        owner = type(self).__name__
        alpha = _check_alpha(self.alpha, owner)
        p, labels = self._inputs(scores, y, owner)
        calibration = np.where(labels == 1, 1.0 - p, p)  # LAC: 1 - probability of the true status
        self.alpha_ = alpha
        self.n_calibration_ = int(p.shape[0])
        self.quantile_ = np.array([conformal_quantile(calibration[:, k], alpha) for k in range(p.shape[1])])
        return self

    def predict_sets(self, scores) -> np.ndarray:
        """``(n, K, 2)`` bool sets: ``[..., 0]`` absent in the set, ``[..., 1]`` present in the set."""
        _check_fitted(self, "quantile_")
        owner = f"{type(self).__name__}.predict_sets"
        p, _ = self._inputs(scores, None, owner)
        if p.shape[1] != self.quantile_.shape[0]:
            raise DataValidationError(f"{owner}: the scores have {p.shape[1]} findings; the predictor was "
                                      f"calibrated with {self.quantile_.shape[0]}.")
        return np.stack([p <= self.quantile_, 1.0 - p <= self.quantile_], axis=-1)

    def to_dict(self) -> dict[str, Any]:
        _check_fitted(self, "quantile_")
        return {"type": "conformal_multilabel", "alpha": self.alpha_, "n_calibration": self.n_calibration_,
                "quantile": [_json_float(q) for q in self.quantile_]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "conformal.json") -> ConformalMultilabel:
        data = _check_dict(data, "conformal_multilabel", ("alpha", "n_calibration", "quantile"), source)
        out = cls(alpha=data["alpha"])
        out.alpha_ = _check_alpha(data["alpha"], source)
        out.n_calibration_ = int(data["n_calibration"])
        out.quantile_ = np.array([_from_json_float(q) for q in data["quantile"]], dtype=float)
        return out


# --------------------------------------------------------------------------------------------------------------
# Regression


class ConformalRegressor:
    """Split-conformal prediction intervals for regression (Lei et al. 2018).

    Args:
        alpha: miscoverage; intervals contain the observed value with probability >= ``1 - alpha``.
        score: ``"absolute"`` (``pred ± q``) or ``"normalized"`` (``pred ± q * scale``; needs a positive
            per-record ``scale`` at fit and predict time).
    """

    def __init__(self, alpha: float = 0.1, score: RegressionScore | str = RegressionScore.ABSOLUTE) -> None:
        self.alpha = alpha
        self.score = score

    def _scale(self, scale, n: int, owner: str) -> np.ndarray:
        if self.score_ is RegressionScore.ABSOLUTE:
            if scale is not None:
                raise InvalidParameterError(f"{owner}: 'scale' is only used with score='normalized'; this "
                                            "predictor uses score='absolute'. Drop 'scale' or refit.")
            return np.ones(n)
        if scale is None:
            raise InvalidParameterError(f"{owner}: score='normalized' needs 'scale', a (n_samples,) positive "
                                        "spread estimate per record (e.g. an ensemble's standard deviation).")
        s = _as_float_array(scale, "scale", owner)
        _check_finite(s, "scale", owner)
        if s.shape[0] != n:
            raise DataValidationError(f"{owner}: 'scale' has {s.shape[0]} values for {n} predictions.")
        if (s <= 0).any():
            raise DataValidationError(f"{owner}: 'scale' must be > 0 for every record; {int((s <= 0).sum())} "
                                      "value(s) are not. Floor the spread estimate at a small positive value.")
        return s

    def fit(self, pred, y, scale=None) -> ConformalRegressor:
        """Calibrate on validation: ``pred`` and ``y`` ``(n,)`` in the target's unit; ``scale`` ``(n,)`` or None."""
        owner = type(self).__name__
        alpha = _check_alpha(self.alpha, owner)
        self.score_ = _option(RegressionScore, self.score, "score", owner)
        p = _as_float_array(pred, "pred", owner)
        target = _as_float_array(y, "y", owner)
        _check_same_length(owner, pred=p, y=target)
        _check_finite(p, "pred", owner)
        _check_finite(target, "y", owner)
        s = self._scale(scale, p.shape[0], owner)
        self.alpha_ = alpha
        self.n_calibration_ = int(p.shape[0])
        self.quantile_ = conformal_quantile(np.abs(target - p) / s, alpha)
        return self

    def predict_intervals(self, pred, scale=None) -> np.ndarray:
        """``(n, 2)`` lower and upper bounds in the target's unit (±inf when the calibration set was too small)."""
        _check_fitted(self, "quantile_")
        owner = f"{type(self).__name__}.predict_intervals"
        p = _as_float_array(pred, "pred", owner)
        _check_finite(p, "pred", owner)
        half = self.quantile_ * self._scale(scale, p.shape[0], owner)
        return np.column_stack([p - half, p + half])

    def to_dict(self) -> dict[str, Any]:
        _check_fitted(self, "quantile_")
        return {"type": "conformal_regressor", "alpha": self.alpha_, "score": self.score_.value,
                "n_calibration": self.n_calibration_, "quantile": _json_float(self.quantile_)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "conformal.json") -> ConformalRegressor:
        data = _check_dict(data, "conformal_regressor", ("alpha", "score", "n_calibration", "quantile"), source)
        out = cls(alpha=data["alpha"], score=data["score"])
        out.alpha_ = _check_alpha(data["alpha"], source)
        out.score_ = _option(RegressionScore, data["score"], "score", source)
        out.n_calibration_ = int(data["n_calibration"])
        out.quantile_ = _from_json_float(data["quantile"])
        return out


# --------------------------------------------------------------------------------------------------------------
# Survival


def _survival_outcome(time: object, event: object, horizon: float, owner: str):
    """Event-by-horizon status and its IPCW weights.

    Returns:
        ``(status, weight)``, each ``(n,)``: status 1 = event at or before ``horizon``, 0 = event-free past it,
        -1 = censored before it (unknown; weight 0). Weights are ``1 / G(T-)`` for events by the horizon and
        ``1 / G(horizon)`` for records followed past it, ``G`` the Kaplan–Meier survival of the censoring time.
    """
    t = _as_float_array(time, "time", owner)
    e = _as_float_array(event, "event", owner)
    _check_same_length(owner, time=t, event=e)
    _check_finite(t, "time", owner)
    if not np.isin(e, (0, 1)).all():
        raise DataValidationError(f"{owner}: 'event' must hold 1 (event observed) or 0 (censored).")
    if (t < 0).any():
        raise DataValidationError(f"{owner}: 'time' must be >= 0 (time from the start of follow-up).")
    e = e.astype(bool)
    status = np.where(e & (t <= horizon), 1, np.where(t > horizon, 0, -1))
    # Reverse Kaplan-Meier (censoring as the event): every record with time >= c is at risk of censoring at c.
    # An event at t uses G(t-), the censorings strictly before t: it was still uncensored when it happened.
    censor_times = np.unique(t[~e])
    at_risk = t.shape[0] - np.searchsorted(np.sort(t), censor_times, side="left")
    n_censored = np.array([np.sum((t == c) & ~e) for c in censor_times], dtype=float)
    g_after = np.cumprod(1.0 - n_censored / at_risk)  # G just after each censoring time

    def g_before(x: np.ndarray, inclusive: bool) -> np.ndarray:
        idx = np.searchsorted(censor_times, x, side="right" if inclusive else "left") - 1
        return np.where(idx >= 0, g_after[np.clip(idx, 0, None)] if g_after.size else 1.0, 1.0)

    g = np.where(status == 1, g_before(t, inclusive=False), g_before(np.full_like(t, horizon), inclusive=True))
    weight = np.where(status >= 0, 1.0 / np.where(g > 0, g, np.nan), 0.0)
    if not np.isfinite(weight).all() or weight.sum() == 0:
        raise DataValidationError(f"{owner}: no record is followed up to the horizon {horizon:g} (the censoring "
                                  "survival reaches 0 before it); choose an earlier horizon.")
    return status, weight


class ConformalRiskGroup:
    """Conformal sets over the survival risk groups {low, high} at a horizon (see the module docstring).

    The set of a record holds ``high`` when ``r >= c - q`` and ``low`` when ``r <= c + q`` (``r`` its log
    relative risk, ``c`` the cut-off): records within ``q`` of the cut-off get both groups (abstain) when
    ``q > 0``; with ``q < 0`` those within ``|q|`` get none (also an abstention).

    Args:
        alpha: miscoverage of the event-by-horizon status.
        horizon: the horizon, in the unit of the time column.
        cutoff: log-risk cut-off between the groups; None takes the validation median (as the predictor's
            ``risk_group_cutoff``).
    """

    def __init__(self, alpha: float = 0.1, horizon: float | None = None, cutoff: float | None = None) -> None:
        self.alpha = alpha
        self.horizon = horizon
        self.cutoff = cutoff

    def fit(self, log_risk, time, event) -> ConformalRiskGroup:
        """Calibrate on validation: ``log_risk``, ``time``, ``event`` (1 = event, 0 = censored), each ``(n,)``."""
        owner = type(self).__name__
        alpha = _check_alpha(self.alpha, owner)
        if (isinstance(self.horizon, bool) or not isinstance(self.horizon, int | float | np.number)
                or not float(self.horizon) > 0):
            raise invalid_parameter("horizon", owner, "a positive time in the unit of the time column", self.horizon)
        r = _as_float_array(log_risk, "log_risk", owner)
        _check_finite(r, "log_risk", owner)
        status, weight = _survival_outcome(time, event, float(self.horizon), owner)
        _check_same_length(owner, log_risk=r, time=status)
        cutoff = float(np.median(r)) if self.cutoff is None else float(self.cutoff)
        known = status >= 0
        calibration = np.where(status[known] == 1, cutoff - r[known], r[known] - cutoff)
        self.alpha_, self.horizon_, self.cutoff_ = alpha, float(self.horizon), cutoff
        self.n_calibration_ = int(known.sum())
        self.quantile_ = conformal_quantile(calibration, alpha, weights=weight[known])
        return self

    def predict_sets(self, log_risk) -> np.ndarray:
        """``(n, 2)`` bool sets over ``("low", "high")``."""
        _check_fitted(self, "quantile_")
        owner = f"{type(self).__name__}.predict_sets"
        r = _as_float_array(log_risk, "log_risk", owner)
        _check_finite(r, "log_risk", owner)
        return np.column_stack([r - self.cutoff_ <= self.quantile_, self.cutoff_ - r <= self.quantile_])

    def to_dict(self) -> dict[str, Any]:
        _check_fitted(self, "quantile_")
        return {"type": "conformal_risk_group", "alpha": self.alpha_, "horizon": self.horizon_,
                "cutoff": self.cutoff_, "groups": list(RISK_GROUPS), "n_calibration": self.n_calibration_,
                "quantile": _json_float(self.quantile_)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "conformal.json") -> ConformalRiskGroup:
        keys = ("alpha", "horizon", "cutoff", "n_calibration", "quantile")
        data = _check_dict(data, "conformal_risk_group", keys, source)
        out = cls(alpha=data["alpha"], horizon=data["horizon"], cutoff=data["cutoff"])
        out.alpha_ = _check_alpha(data["alpha"], source)
        out.horizon_, out.cutoff_ = float(data["horizon"]), float(data["cutoff"])
        out.n_calibration_ = int(data["n_calibration"])
        out.quantile_ = _from_json_float(data["quantile"])
        return out


_FROM_DICT = {
    "conformal_classifier": ConformalClassifier,
    "conformal_multilabel": ConformalMultilabel,
    "conformal_regressor": ConformalRegressor,
    "conformal_risk_group": ConformalRiskGroup,
}


def conformal_from_dict(data: dict[str, Any], source: str = "conformal.json"):
    """Rebuild whichever conformal predictor :meth:`to_dict` stored (dispatch on its ``type``)."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in _FROM_DICT:
        raise DataValidationError(f"{source}: unknown conformal predictor type {kind!r}; expected one of "
                                  f"{sorted(_FROM_DICT)}. Re-export the model artefact with this medai version.")
    return _FROM_DICT[kind].from_dict(data, source)


# --------------------------------------------------------------------------------------------------------------
# Report


def _entry(value: float, low: float = math.nan, high: float = math.nan) -> dict[str, float | None]:
    return {"value": _json_float(value), "ci_low": _json_float(low), "ci_high": _json_float(high)}


def _proportion(k: int, n: int, confidence: float) -> dict[str, float | None]:
    low, high = clopper_pearson(k, n, confidence)
    return _entry(k / n if n else math.nan, low, high)


def _check_confidence(confidence: object, owner: str) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, int | float | np.number) \
            or not 0.0 < float(confidence) < 1.0:
        raise invalid_parameter("confidence", owner, "a number in the open interval (0, 1)", confidence)
    return float(confidence)


def _set_report(sets: np.ndarray, truth: np.ndarray, names: list[str], confidence: float) -> dict[str, Any]:
    """Coverage, abstention and set sizes of ``(n, K)`` sets against ``(n,)`` class indices."""
    n = sets.shape[0]
    covered = sets[np.arange(n), truth]
    size = sets.sum(axis=1)
    single = size == 1
    committed_right = int(np.sum(single & covered))
    return {
        "metrics": {
            "conformal_coverage": _proportion(int(covered.sum()), n, confidence),
            "abstain_rate": _proportion(int((~single).sum()), n, confidence),
            "mean_set_size": _entry(float(size.mean())),
        },
        "coverage_by_class": {
            name: {"n": int((truth == k).sum()),
                   **_proportion(int(covered[truth == k].sum()), int((truth == k).sum()), confidence)}
            for k, name in enumerate(names)
        },
        "set_size_counts": {str(s): int((size == s).sum()) for s in range(sets.shape[1] + 1)},
        # What a clinician gets when the model commits: the accuracy of the single-class sets.
        "singleton_accuracy": _proportion(committed_right, int(single.sum()), confidence),
    }


def _class_names(class_names, n_classes: int, owner: str) -> list[str]:
    if class_names is None:
        return [str(k) for k in range(n_classes)]
    names = [str(c) for c in class_names]
    if len(names) != n_classes or len(set(names)) != n_classes:
        raise invalid_parameter("class_names", owner, f"{n_classes} distinct names, one per class", class_names)
    return names


def _survival_truth(y: object, name: str, owner: str) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(y, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise DataValidationError(f"{owner}: survival '{name}' must be an (n_samples, 2) array of (time, event) "
                                  f"columns, e.g. np.column_stack([time, event]); got shape {arr.shape}.")
    return arr[:, 0], arr[:, 1]


def conformal_report(
    kind: TaskKind | str,
    val_scores,
    y_val,
    test_scores,
    y_test,
    alpha: float = 0.1,
    *,
    score: str | None = None,
    class_names=None,
    horizon: float | None = None,
    cutoff: float | None = None,
    val_scale=None,
    test_scale=None,
    max_interval_width: float | None = None,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int | None = 0,
) -> dict[str, Any]:
    """Calibrate a conformal predictor on validation and measure it on test.

    Args:
        kind: :class:`~medai.core.config.TaskKind` (binary, multiclass, multilabel, regression, survival).
        val_scores, test_scores: scores as the Predictor gives them (binary ``(n,)`` P(positive); multi-class
            ``(n, K)``; multi-label ``(n, K)``; regression ``(n,)`` prediction; survival ``(n,)`` log-risk).
        y_val, y_test: class indices ``(n,)``; multi-label ``(n, K)`` 0/1; regression ``(n,)`` observed values;
            survival ``(n, 2)`` columns (time, event), event 1 = observed, 0 = censored.
        alpha: miscoverage; the target coverage is ``1 - alpha``.
        score: classification ``"lac"`` (default) or ``"aps"``; regression ``"absolute"`` (default) or
            ``"normalized"`` (then ``val_scale`` and ``test_scale`` are needed).
        class_names: names of the classes / findings (keys of ``coverage_by_class``); default their indices.
        horizon: survival only (required): the horizon of the event-by-horizon status.
        cutoff: survival only: log-risk cut-off between the groups (default: the validation median).
        val_scale, test_scale: regression with ``score="normalized"``: ``(n,)`` positive spread estimates.
        max_interval_width: regression: intervals wider than this (target unit) count as abstentions; None
            reports no abstain rate (an interval alone never abstains).
        confidence: level of the Clopper–Pearson (or, for weighted / multi-label coverage, bootstrap) intervals.
        n_resamples, seed: bootstrap of the multi-label and survival coverage intervals.

    Returns:
        A JSON-ready dict: ``metrics`` (to merge into the test split of ``metrics.json``:
        ``conformal_target``, ``conformal_coverage``, ``abstain_rate``, ``mean_set_size`` or
        ``mean_interval_width``, each ``{"value", "ci_low", "ci_high"}``), ``coverage_by_class``, ``method``,
        ``alpha``, ``n_calibration``, ``n_test``, ``quantile``, ``predictor`` (the ``to_dict`` state to store in
        the artefact) and ``notes``. A value that cannot be computed is None.

    Raises:
        InvalidParameterError: invalid ``kind``, ``alpha``, ``score``, ``confidence``, ``horizon`` or
            ``class_names``.
        DataValidationError: scores or labels of the wrong shape, type or range.
    """
    owner = "conformal_report"
    kind = _option(TaskKind, kind, "kind", owner)
    alpha = _check_alpha(alpha, owner)
    confidence = _check_confidence(confidence, owner)
    notes: list[str] = []
    out: dict[str, Any] = {"kind": kind.value, "alpha": alpha}
    target = _entry(1.0 - alpha)

    if kind in (TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.CLASSIFICATION):
        predictor = ConformalClassifier(alpha, score or ClassificationScore.LAC).fit(val_scores, y_val)
        sets = predictor.predict_sets(test_scores)
        truth = _class_indices(y_test, predictor.n_classes_, "y_test", owner)
        _check_same_length(owner, test_scores=sets, y_test=truth)
        names = _class_names(class_names, predictor.n_classes_, owner)
        body = _set_report(sets, truth, names, confidence)
        method = f"split conformal, {predictor.score_.value.upper()} score, calibrated on validation"
        notes.append("Abstain (refer to a clinician) when the set is empty or holds two classes or more.")
    elif kind is TaskKind.MULTILABEL:
        predictor = ConformalMultilabel(alpha).fit(val_scores, y_val)
        sets = predictor.predict_sets(test_scores)
        _, truth = ConformalMultilabel._inputs(test_scores, y_test, owner)
        names = _class_names(class_names, truth.shape[1], owner)
        covered = np.take_along_axis(sets, truth[..., None], axis=-1)[..., 0]  # (n, K)
        abstain = sets.sum(axis=-1) != 1
        with np.errstate(all="ignore"):
            ci = bootstrap_metrics(
                lambda c, a: {"conformal_coverage": float(c.mean()), "abstain_rate": float(a.mean()),
                              "abstain_rate_records": float(a.any(axis=1).mean())},
                (covered, abstain), n_resamples=n_resamples, confidence=confidence, seed=seed)
        body = {
            "metrics": {**ci, "mean_set_size": _entry(float(sets.sum(axis=-1).mean()))},
            "coverage_by_class": {name: {"n": int(truth.shape[0]),
                                         **_proportion(int(covered[:, k].sum()), truth.shape[0], confidence)}
                                  for k, name in enumerate(names)},
        }
        method = "split conformal per finding, LAC score over {absent, present}, calibrated on validation"
        notes.append("Coverage and abstain rate are over (record, finding) decisions, the target holding per "
                     "finding; abstain_rate_records is the share of records with at least one abstained finding "
                     "(bootstrap CIs over records).")
    elif kind is TaskKind.REGRESSION:
        predictor = ConformalRegressor(alpha, score or RegressionScore.ABSOLUTE).fit(val_scores, y_val, val_scale)
        intervals = predictor.predict_intervals(test_scores, test_scale)
        y = _as_float_array(y_test, "y_test", owner)
        _check_finite(y, "y_test", owner)
        _check_same_length(owner, test_scores=intervals, y_test=y)
        covered = (y >= intervals[:, 0]) & (y <= intervals[:, 1])
        width = intervals[:, 1] - intervals[:, 0]
        metrics = {"conformal_coverage": _proportion(int(covered.sum()), y.shape[0], confidence),
                   "mean_interval_width": _entry(float(width.mean()))}
        if max_interval_width is None:
            metrics["abstain_rate"] = _entry(math.nan)
            notes.append("Regression intervals never abstain by themselves; set max_interval_width to count too "
                         "wide intervals as abstentions.")
        else:
            metrics["abstain_rate"] = _proportion(int((width > max_interval_width).sum()), y.shape[0], confidence)
        body = {"metrics": metrics, "coverage_by_class": {}}
        method = (f"split conformal intervals, {predictor.score_.value} residual score, calibrated on validation")
    elif kind is TaskKind.SURVIVAL:
        val_time, val_event = _survival_truth(y_val, "y_val", owner)
        test_time, test_event = _survival_truth(y_test, "y_test", owner)
        predictor = ConformalRiskGroup(alpha, horizon, cutoff).fit(val_scores, val_time, val_event)
        sets = predictor.predict_sets(test_scores)
        status, weight = _survival_outcome(test_time, test_event, predictor.horizon_, owner)
        _check_same_length(owner, test_scores=sets, y_test=status)
        covered = sets[np.arange(sets.shape[0]), np.clip(status, 0, 1)] & (status >= 0)
        abstain = sets.sum(axis=1) != 1
        known = status >= 0

        def survival_metrics(c, w, a):
            return {"conformal_coverage": float(np.sum(w * c) / np.sum(w)) if np.sum(w) > 0 else math.nan,
                    "abstain_rate": float(a.mean())}

        with np.errstate(all="ignore"):
            body = {"metrics": {**bootstrap_metrics(survival_metrics, (covered.astype(float), weight, abstain),
                                                    n_resamples=n_resamples, confidence=confidence, seed=seed),
                                "mean_set_size": _entry(float(sets.sum(axis=1).mean()))},
                    "coverage_by_class": {
                        group: {"n": int((status == k).sum()),
                                **_entry(float(np.sum((weight * covered)[status == k]) / np.sum(weight[status == k]))
                                         if (status == k).any() else math.nan)}
                        for k, group in enumerate(RISK_GROUPS)}}
        body["n_censored_before_horizon"] = int((~known).sum())
        method = ("split conformal over risk groups {low, high} at the horizon, score ±(log-risk − cut-off), "
                  "inverse-probability-of-censoring weighted quantile, calibrated on validation")
        notes.append("Truth is the event-by-horizon status; records censored before the horizon are weighted "
                     "out (Kaplan–Meier censoring weights, valid under independent censoring); coverage is the "
                     "weighted share on test with bootstrap CIs; the guarantee is approximate.")
    else:
        raise invalid_parameter("kind", owner, "binary, multiclass, multilabel, regression or survival", kind.value)

    quantile = predictor.quantile_
    finite = np.all(np.isfinite(quantile))
    if not finite:
        notes.append(f"The validation split ({predictor.n_calibration_} records) is too small for alpha={alpha}: "
                     "the conformal threshold is infinite and every set holds every outcome. Use a larger "
                     "validation split or a larger alpha.")
    body["metrics"] = {"conformal_target": target, **body["metrics"]}
    out.update(
        method=method,
        n_calibration=predictor.n_calibration_,
        n_test=int(np.shape(test_scores)[0]),
        quantile=[_json_float(q) for q in quantile] if np.ndim(quantile) else _json_float(quantile),
        **body,
        predictor=predictor.to_dict(),
        notes=notes,
    )
    return out


# --------------------------------------------------------------------------------------------------------------
# Selective risk


def _selective_inputs(kind: TaskKind, y_true, scores, threshold, uncertainty, owner: str):
    """Per-record loss and confidence (higher = more confident) of ``kind``."""
    if kind in (TaskKind.BINARY, TaskKind.CLASSIFICATION) and np.ndim(scores) == 1:
        p = _class_probabilities(scores, "scores", owner)[:, 1]
        y = _class_indices(y_true, 2, "y_true", owner)
        _check_same_length(owner, y_true=y, scores=p)
        t = 0.5 if threshold is None else float(threshold)
        # Distance to the operating threshold, scaled to [0, 1] on each side so both sides weigh alike.
        confidence = np.where(p >= t, (p - t) / max(1.0 - t, 1e-12), (t - p) / max(t, 1e-12))
        return ((p >= t).astype(int) != y).astype(float), confidence
    if kind in (TaskKind.MULTICLASS, TaskKind.CLASSIFICATION, TaskKind.BINARY):
        p = _class_probabilities(scores, "scores", owner)
        y = _class_indices(y_true, p.shape[1], "y_true", owner)
        _check_same_length(owner, y_true=y, scores=p)
        return (p.argmax(axis=1) != y).astype(float), p.max(axis=1)
    if kind is TaskKind.MULTILABEL:
        p, y = ConformalMultilabel._inputs(scores, y_true, owner)
        t = np.full(p.shape[1], 0.5) if threshold is None else np.asarray(threshold, dtype=float)
        if t.shape != (p.shape[1],):
            raise invalid_parameter("threshold", owner, f"{p.shape[1]} per-finding thresholds", threshold)
        confidence = np.where(p >= t, (p - t) / np.maximum(1.0 - t, 1e-12), (t - p) / np.maximum(t, 1e-12))
        return ((p >= t).astype(int) != y).mean(axis=1), confidence.mean(axis=1)  # Hamming loss per record
    if kind is TaskKind.REGRESSION:
        pred = _as_float_array(scores, "scores", owner)
        y = _as_float_array(y_true, "y_true", owner)
        _check_same_length(owner, y_true=y, scores=pred)
        _check_finite(pred, "scores", owner)
        _check_finite(y, "y_true", owner)
        if uncertainty is None:
            raise InvalidParameterError(f"{owner}: regression needs 'uncertainty', a (n_samples,) spread estimate "
                                        "per record (higher = less certain); a point prediction alone does not "
                                        "rank records by confidence.")
        u = _as_float_array(uncertainty, "uncertainty", owner)
        _check_same_length(owner, scores=pred, uncertainty=u)
        _check_finite(u, "uncertainty", owner)
        return np.abs(y - pred), -u
    raise invalid_parameter("kind", owner, "binary, multiclass, multilabel or regression (survival log-risks have "
                            "no per-record loss)", kind.value)


def _risk_by_coverage(loss: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """``(n,)`` risk when keeping the ``k = 1..n`` most confident records; ties are averaged over their orders."""
    order = np.argsort(-confidence, kind="stable")
    loss, confidence = loss[order], confidence[order]
    n = loss.shape[0]
    # Within a block of equal confidence any order is as likely: the expected cumulative loss grows linearly.
    block_start = np.r_[0, np.flatnonzero(np.diff(confidence) != 0) + 1]
    block_id = np.repeat(np.arange(block_start.shape[0]), np.diff(np.r_[block_start, n]))
    cum = np.r_[0.0, np.cumsum(loss)]
    start, end = block_start[block_id], np.r_[block_start[1:], n][block_id]
    k = np.arange(1, n + 1)
    expected = cum[start] + (k - start) * (cum[end] - cum[start]) / (end - start)
    return expected / k


def selective_risk_curve(
    kind: TaskKind | str, y_true, scores, *, threshold=None, uncertainty=None, n_points: int = 101,
) -> dict[str, Any]:
    """Risk–coverage curve of abstaining on the least confident records, and its area (AURC).

    Confidence and loss per kind: binary — distance of P(positive) to ``threshold`` (default 0.5), loss = wrong
    decision at the threshold; multi-class — largest class probability, loss = arg-max wrong (risk = 1 −
    accuracy); multi-label — mean per-finding distance to its threshold, loss = per-record Hamming loss;
    regression — ``-uncertainty`` (required), loss = absolute error (risk in the target's unit).

    Args:
        kind: the task kind.
        y_true: labels / observed values as in :func:`conformal_report`.
        scores: the Predictor's scores.
        threshold: binary operating threshold, or ``(K,)`` multi-label thresholds.
        uncertainty: regression: ``(n,)`` spread per record, higher = less certain.
        n_points: points of the returned curve (an even grid of coverage; the AURC uses every record).

    Returns:
        ``{"coverage": [...], "risk": [...], "aurc", "aurc_optimal", "e_aurc", "full_coverage_risk", "n"}``:
        ``aurc`` is the mean risk over the coverages ``k / n`` (Geifman et al. 2019), ``aurc_optimal`` that of an
        oracle ranking by loss, ``e_aurc`` their difference (0 = confidence ranks errors perfectly).
    """
    owner = "selective_risk_curve"
    kind = _option(TaskKind, kind, "kind", owner)
    if isinstance(n_points, bool) or not isinstance(n_points, int | np.integer) or n_points < 2:
        raise invalid_parameter("n_points", owner, "an int >= 2", n_points)
    loss, confidence = _selective_inputs(kind, y_true, scores, threshold, uncertainty, owner)
    risk = _risk_by_coverage(loss, confidence)
    optimal = _risk_by_coverage(loss, -loss)
    n = loss.shape[0]
    grid = np.linspace(1.0 / n, 1.0, min(n_points, n))
    picks = np.clip(np.ceil(grid * n).astype(int) - 1, 0, n - 1)
    aurc, aurc_optimal = float(risk.mean()), float(optimal.mean())
    return {
        "coverage": [float((i + 1) / n) for i in picks],
        "risk": [float(risk[i]) for i in picks],
        "aurc": aurc,
        "aurc_optimal": aurc_optimal,
        "e_aurc": aurc - aurc_optimal,
        "full_coverage_risk": float(risk[-1]),
        "n": int(n),
        "loss": "absolute error" if kind is TaskKind.REGRESSION
        else "Hamming loss" if kind is TaskKind.MULTILABEL else "error rate",
    }


def plot_selective_risk(curves: dict[str, dict[str, Any]], *, dpi: int = 100) -> str:
    """Risk–coverage curves as a base64 PNG.

    Args:
        curves: ``{legend label: selective_risk_curve(...) output}``.
        dpi: resolution of the PNG.

    Returns:
        The PNG, base64-encoded (ASCII), for an ``<img src="data:image/png;base64,...">``.
    """
    import base64
    import io

    # Object-oriented matplotlib on the Agg canvas: no pyplot global state leaks between reports.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(curves, dict) or not curves:
        raise invalid_parameter("curves", "plot_selective_risk", "a non-empty {label: curve} dict", curves)
    fig = Figure(figsize=(5.2, 4.2), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, curve in curves.items():
        ax.plot(curve["coverage"], curve["risk"], label=f"{label} (AURC {curve['aurc']:.3f})")
    first = next(iter(curves.values()))
    ax.set(xlabel="Coverage (share of records the model decides)", ylabel=f"Risk ({first.get('loss', 'loss')})",
           xlim=(0, 1), ylim=(0, None))
    ax.legend(loc="upper left", fontsize=8)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    fig.clear()
    return base64.b64encode(buffer.getvalue()).decode("ascii")
