"""Post-hoc recalibration of predicted probabilities, fitted on the validation split.

Methods (:class:`RecalibrationMethod`):

* ``temperature`` — divide the logits by one temperature ``T`` (Guo et al. 2017, "On calibration of modern
  neural networks"). Binary: ``sigmoid(logit(p) / T)``; multi-class: ``softmax(log(p) / T)`` (``log p`` are the
  logits up to a per-row constant, which the softmax ignores). ``T > 1`` softens over-confident scores. Keeps
  the ranking, hence the AUROC.
* ``platt`` — logistic regression on the logit, ``sigmoid(a + b * logit(p))`` (Platt 1999); binary and
  per-finding multi-label only. Also fixes calibration-in-the-large.
* ``isotonic`` — a monotone step function (Zadrozny & Elkan 2002; scikit-learn ``IsotonicRegression``),
  linear between its knots. Multi-class: one-vs-rest per class, rows then renormalised. Outputs are clipped to
  ``[1e-6, 1 - 1e-6]`` so that no record gets a probability of exactly 0 or 1 from a few validation records.
* ``none`` — the scores unchanged.
* ``auto`` — the candidate with the lowest *cross-validated* log-loss on the validation split (out-of-fold
  predictions of a stratified k-fold within validation; in-sample log-loss would always favour the most flexible
  map), ``none`` unless a candidate lowers it by more than ``1e-4`` nats per record. The test split is never used.

Multi-label scores ``(n, K)`` are recalibrated per finding, each with its own choice.

:func:`recalibration_report` fits on validation and reports, on test, the ECE, calibration slope and intercept,
log-loss and Brier score before and after, with paired bootstrap CIs (the same resamples for both).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, NotFittedError, closest, invalid_parameter
from medai.evaluation.bootstrap import bootstrap_metrics
from medai.evaluation.metrics import (
    _PROB_CLIP,
    _ROW_SUM_TOL,
    _as_float_array,
    _calibration_slope_intercept,
    _check_n_bins,
    _check_probabilities,
    _check_same_length,
    _ece,
    _ece_top_label,
    _fit_logistic,
    _logit,
)

__all__ = ["RecalibrationMethod", "Recalibrator", "recalibration_report"]


class RecalibrationMethod(StrEnum):
    """How probabilities are recalibrated (see the module docstring)."""

    AUTO = "auto"
    NONE = "none"
    TEMPERATURE = "temperature"
    PLATT = "platt"
    ISOTONIC = "isotonic"


#: ``auto`` switches away from ``none`` only when the cross-validated log-loss drops by more than this (nats per
#: record): smaller gains are within the noise of the fold split and not worth changing the scores for.
MIN_LOG_LOSS_GAIN = 1e-4
#: Candidates in order of simplicity; on equal log-loss the simpler one is kept.
_CANDIDATES = {
    TaskKind.BINARY: (RecalibrationMethod.NONE, RecalibrationMethod.TEMPERATURE, RecalibrationMethod.PLATT,
                      RecalibrationMethod.ISOTONIC),
    TaskKind.MULTICLASS: (RecalibrationMethod.NONE, RecalibrationMethod.TEMPERATURE, RecalibrationMethod.ISOTONIC),
}
_LOG_T_BOUNDS = (-5.0, 5.0)  # temperatures exp(±5): far beyond any useful correction


def _option(enum: type[StrEnum], value: object, name: str, owner: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        hint = closest(str(value), [e.value for e in enum])
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must be one of {', '.join(repr(e.value) for e in enum)}. "
            f"Got {value!r} instead.{hint}"
        ) from None


# --------------------------------------------------------------------------------------------------------------
# Losses and the maps of each method (binary: p (n,) -> (n,); multi-class: p (n, K) -> (n, K))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    if p.ndim == 1:
        q = np.clip(p, _PROB_CLIP, 1.0 - _PROB_CLIP)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))
    return float(-np.mean(np.log(np.clip(p[np.arange(p.shape[0]), y], _PROB_CLIP, 1.0))))


def _multiclass_logits(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, _PROB_CLIP, 1.0))


def _apply(method: RecalibrationMethod, params: dict[str, Any], p: np.ndarray) -> np.ndarray:
    if method is RecalibrationMethod.NONE:
        return p
    if method is RecalibrationMethod.TEMPERATURE:
        t = params["temperature"]
        return expit(_logit(p) / t) if p.ndim == 1 else softmax(_multiclass_logits(p) / t, axis=1)
    if method is RecalibrationMethod.PLATT:
        return expit(params["intercept"] + params["slope"] * _logit(p))
    # Isotonic: np.interp clips outside the knots, as IsotonicRegression(out_of_bounds="clip").predict does.
    knots = params["knots"] if p.ndim == 2 else [params]
    columns = [np.interp(p[:, k] if p.ndim == 2 else p, np.asarray(kn["x"]), np.asarray(kn["y"]))
               for k, kn in enumerate(knots)]
    out = np.clip(np.column_stack(columns) if p.ndim == 2 else columns[0], _PROB_CLIP, 1.0 - _PROB_CLIP)
    return out / out.sum(axis=1, keepdims=True) if p.ndim == 2 else out


def _fit_temperature(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    if p.ndim == 1:
        z, yf = _logit(p), y.astype(float)

        def nll(log_t: float) -> float:
            eta = z / math.exp(log_t)
            return float(np.mean(np.logaddexp(0.0, eta) - yf * eta))
    else:
        z = _multiclass_logits(p)
        rows = np.arange(p.shape[0])

        def nll(log_t: float) -> float:
            return float(-np.mean(log_softmax(z / math.exp(log_t), axis=1)[rows, y]))

    # The negative log-likelihood is convex in 1/T: a bounded scalar search finds the optimum.
    result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return {"temperature": float(math.exp(result.x))}


def _fit_platt(p: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    z = _logit(p)
    coef = _fit_logistic(np.column_stack([np.ones_like(z), z]), y.astype(float), np.zeros_like(z))
    return None if coef is None else {"intercept": float(coef[0]), "slope": float(coef[1])}


def _isotonic_knots(x: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y.astype(float))
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def _fit_isotonic(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    if p.ndim == 1:
        return _isotonic_knots(p, y)
    return {"knots": [_isotonic_knots(p[:, k], y == k) for k in range(p.shape[1])]}


_FIT = {
    RecalibrationMethod.NONE: lambda p, y: {},
    RecalibrationMethod.TEMPERATURE: _fit_temperature,
    RecalibrationMethod.PLATT: _fit_platt,
    RecalibrationMethod.ISOTONIC: _fit_isotonic,
}


def _cross_validated_log_loss(method: RecalibrationMethod, p: np.ndarray, y: np.ndarray, n_folds: int,
                              seed: int) -> float:
    """Log-loss of out-of-fold recalibrated predictions (NaN when a fold's fit does not exist)."""
    if method is RecalibrationMethod.NONE:
        return _log_loss(y, p)
    out = np.empty_like(p)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fit_rows, held_rows in folds.split(p, y):
        params = _FIT[method](p[fit_rows], y[fit_rows])
        if params is None:
            return math.nan
        out[held_rows] = _apply(method, params, p[held_rows])
    return _log_loss(y, out)


def _choose_and_fit(requested: RecalibrationMethod, kind: TaskKind, p: np.ndarray, y: np.ndarray, n_folds: int,
                    seed: int, where: str) -> tuple[RecalibrationMethod, dict[str, Any], dict[str, float | None], str]:
    """Fit one binary or multi-class map. Returns ``(method, params, candidates' CV log-loss, reason)``."""
    allowed = _CANDIDATES[kind]
    if requested not in (RecalibrationMethod.AUTO, *allowed):
        raise InvalidParameterError(f"Recalibrator: method {requested.value!r} does not apply to {kind.value} "
                                    f"scores; use one of {[m.value for m in allowed]} or 'auto'.")
    counts = np.bincount(y, minlength=p.shape[1] if p.ndim == 2 else 2)
    smallest = int(counts.min())
    if requested is not RecalibrationMethod.AUTO:
        if requested is not RecalibrationMethod.NONE and smallest == 0:
            raise DataValidationError(f"Recalibrator: {where} has a class with no validation record; method "
                                      f"{requested.value!r} cannot be fitted. Use method='none' or a validation "
                                      "split with every class.")
        params = _FIT[requested](p, y)
        if params is None:
            raise DataValidationError(f"Recalibrator: the Platt fit on {where} has no finite solution (the "
                                      "validation classes are separated by the score); use 'temperature' or "
                                      "'isotonic'.")
        return requested, params, {}, "requested"
    if smallest < 2:
        return (RecalibrationMethod.NONE, {}, {}, f"{where}: fewer than 2 validation records in a class, too few to "
                                                  "choose a recalibration by cross-validation")
    n_folds = min(n_folds, smallest)
    losses = {m: _cross_validated_log_loss(m, p, y, n_folds, seed) for m in allowed}
    best = RecalibrationMethod.NONE
    for m in allowed[1:]:
        if math.isfinite(losses[m]) and losses[m] < losses[best] - (MIN_LOG_LOSS_GAIN if best is
                                                                    RecalibrationMethod.NONE else 0.0):
            best = m
    params = _FIT[best](p, y)
    if params is None:  # Platt won on the folds but not on the whole split: fall back to none
        best, params = RecalibrationMethod.NONE, {}
    candidates = {m.value: (v if math.isfinite(v) else None) for m, v in losses.items()}
    return best, params, candidates, f"lowest {n_folds}-fold cross-validated log-loss on validation"


# --------------------------------------------------------------------------------------------------------------
# Recalibrator


def _check_kind(kind: object, owner: str) -> TaskKind | None:
    if kind is None:
        return None
    kind = _option(TaskKind, kind, "kind", owner)
    if kind not in (TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.MULTILABEL):
        raise invalid_parameter("kind", owner, "'binary', 'multiclass', 'multilabel' or None (inferred from the "
                                "score shape)", kind.value)
    return kind


def _scores_and_labels(kind: TaskKind, scores, y, owner: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate scores (and labels when given) of ``kind``; labels become int arrays."""
    ndim = 1 if kind is TaskKind.BINARY else 2
    p = _as_float_array(scores, "scores", owner, ndim=ndim)
    _check_probabilities(p, "scores", owner)
    if kind is TaskKind.MULTICLASS:
        if p.shape[1] < 2:
            raise DataValidationError(f"{owner}: multi-class 'scores' need at least 2 columns; got {p.shape}.")
        off = np.abs(p.sum(axis=1) - 1.0) > _ROW_SUM_TOL
        if off.any():
            raise DataValidationError(f"{owner}: each row of multi-class 'scores' must sum to 1; {int(off.sum())} "
                                      "row(s) do not. Pass softmax probabilities, or kind='multilabel' for "
                                      "independent findings.")
    if y is None:
        return p, None
    labels = _as_float_array(y, "y", owner, ndim=1 if kind is not TaskKind.MULTILABEL else 2)
    _check_same_length(owner, scores=p, y=labels)
    if kind is TaskKind.MULTILABEL and labels.shape != p.shape:
        raise DataValidationError(f"{owner}: multi-label 'y' must have the shape of 'scores'; got {labels.shape} "
                                  f"and {p.shape}.")
    n_classes = p.shape[1] if kind is TaskKind.MULTICLASS else 2
    bad = ~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0) | (labels >= n_classes)
    if bad.any():
        expected = f"class indices 0..{n_classes - 1}" if kind is TaskKind.MULTICLASS else "0/1 (1 = positive)"
        raise DataValidationError(f"{owner}: 'y' must hold {expected}; {int(bad.sum())} value(s) do not.")
    return p, labels.astype(np.int64)


class Recalibrator:
    """Recalibrate probabilities with a map fitted on validation.

    Example::

        recal = Recalibrator(method="auto").fit(val_prob, y_val)
        test_prob = recal.transform(test_prob)
        recal.method_          # e.g. RecalibrationMethod.TEMPERATURE
        recal.candidates_      # {"none": 0.52, "temperature": 0.47, ...} cross-validated log-loss

    Args:
        method: :class:`RecalibrationMethod`; ``auto`` chooses by cross-validated validation log-loss.
        kind: ``binary`` (scores ``(n,)`` P(positive)), ``multiclass`` (``(n, K)`` softmax probabilities) or
            ``multilabel`` (``(n, K)`` independent findings); None infers binary / multi-class from the shape.
        n_folds: folds of the cross-validation of ``auto`` (fewer when a class has fewer records).
        seed: seed of the fold split.
    """

    def __init__(self, method: RecalibrationMethod | str = RecalibrationMethod.AUTO, kind: TaskKind | str | None = None,
                 n_folds: int = 5, seed: int = 0) -> None:
        self.method = method
        self.kind = kind
        self.n_folds = n_folds
        self.seed = seed

    def fit(self, scores, y) -> Recalibrator:
        """Fit on the validation split.

        Args:
            scores: validation scores of :attr:`kind`'s shape.
            y: binary ``(n,)`` 0/1; multi-class ``(n,)`` class indices; multi-label ``(n, K)`` 0/1.

        Returns:
            self, with ``kind_``, ``method_`` (multi-label: a list, one per finding), ``params_``,
            ``candidates_`` (method → cross-validated log-loss), ``reason_`` and ``n_calibration_``.
        """
        owner = type(self).__name__
        requested = _option(RecalibrationMethod, self.method, "method", owner)
        kind = _check_kind(self.kind, owner) or (TaskKind.BINARY if np.ndim(scores) == 1 else TaskKind.MULTICLASS)
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, int | np.integer) or self.n_folds < 2:
            raise invalid_parameter("n_folds", owner, "an int >= 2", self.n_folds)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise invalid_parameter("seed", owner, "an int", self.seed)
        p, labels = _scores_and_labels(kind, scores, y, owner)
        if kind is TaskKind.MULTILABEL:
            fitted = [_choose_and_fit(requested, TaskKind.BINARY, p[:, k], labels[:, k], self.n_folds, self.seed,
                                      f"finding {k}") for k in range(p.shape[1])]
            self.method_ = [f[0] for f in fitted]
            self.params_ = [f[1] for f in fitted]
            self.candidates_ = [f[2] for f in fitted]
            self.reason_ = [f[3] for f in fitted]
            self.n_outputs_ = p.shape[1]
        else:
            where = "the binary scores" if kind is TaskKind.BINARY else "the multi-class scores"
            self.method_, self.params_, self.candidates_, self.reason_ = _choose_and_fit(
                requested, kind, p, labels, self.n_folds, self.seed, where)
            self.n_outputs_ = 1 if kind is TaskKind.BINARY else p.shape[1]
        self.kind_ = kind
        self.n_calibration_ = int(p.shape[0])
        return self

    def transform(self, scores) -> np.ndarray:
        """Recalibrated scores, same shape as ``scores`` (a fitted ``kind_`` shape)."""
        if getattr(self, "kind_", None) is None:
            raise NotFittedError("This Recalibrator is not fitted yet: call fit(val_scores, y_val) first, on the "
                                 "validation split.")
        owner = f"{type(self).__name__}.transform"
        p, _ = _scores_and_labels(self.kind_, scores, None, owner)
        width = 1 if p.ndim == 1 else p.shape[1]
        if width != self.n_outputs_:
            raise DataValidationError(f"{owner}: the scores have {width} column(s); the recalibrator was fitted on "
                                      f"{self.n_outputs_}.")
        if self.kind_ is TaskKind.MULTILABEL:
            return np.column_stack([_apply(m, prm, p[:, k])
                                    for k, (m, prm) in enumerate(zip(self.method_, self.params_, strict=True))])
        return _apply(self.method_, self.params_, p)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fitted state (stored in the model artefact; the Predictor applies it to its scores)."""
        if getattr(self, "kind_", None) is None:
            raise NotFittedError("This Recalibrator is not fitted yet: call fit(val_scores, y_val) first.")
        multilabel = self.kind_ is TaskKind.MULTILABEL
        return {"type": "recalibrator", "kind": self.kind_.value,
                "method": [m.value for m in self.method_] if multilabel else self.method_.value,
                "params": self.params_, "candidates_val_log_loss": self.candidates_, "reason": self.reason_,
                "n_outputs": self.n_outputs_, "n_calibration": self.n_calibration_}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "recalibration.json") -> Recalibrator:
        """Rebuild a fitted recalibrator from :meth:`to_dict` output; ``source`` names the file in errors."""
        keys = ("kind", "method", "params", "n_outputs", "n_calibration")
        if not isinstance(data, dict) or data.get("type") != "recalibrator" or any(k not in data for k in keys):
            raise DataValidationError(f"{source}: not a stored recalibrator (expected type 'recalibrator' with keys "
                                      f"{list(keys)}). Re-export the model artefact with this medai version.")
        kind = _check_kind(data["kind"], source)
        out = cls(method=RecalibrationMethod.AUTO, kind=kind)
        out.kind_ = kind
        if kind is TaskKind.MULTILABEL:
            out.method_ = [_option(RecalibrationMethod, m, "method", source) for m in data["method"]]
        else:
            out.method_ = _option(RecalibrationMethod, data["method"], "method", source)
        out.params_ = data["params"]
        out.candidates_ = data.get("candidates_val_log_loss", {})
        out.reason_ = data.get("reason", "")
        out.n_outputs_, out.n_calibration_ = int(data["n_outputs"]), int(data["n_calibration"])
        return out


# --------------------------------------------------------------------------------------------------------------
# Report


def _calibration_metrics(kind: TaskKind, n_bins: int):
    """Metric function ``(y, p_before, p_after) -> dict`` for the paired bootstrap."""

    def one(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        if kind is TaskKind.BINARY:
            slope, intercept = _calibration_slope_intercept(y, p)
            return {"ece": _ece(y, p, n_bins), "calibration_slope": slope, "calibration_intercept": intercept,
                    "log_loss": _log_loss(y, p), "brier": float(np.mean((p - y) ** 2))}
        if kind is TaskKind.MULTICLASS:
            onehot = np.eye(p.shape[1])[y]
            return {"ece": _ece_top_label(y, p, n_bins), "log_loss": _log_loss(y, p),
                    "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1)))}
        # Multi-label: the unweighted mean over findings (each finding a binary problem).
        columns = range(p.shape[1])
        return {"ece": float(np.mean([_ece(y[:, k], p[:, k], n_bins) for k in columns])),
                "log_loss": float(np.mean([_log_loss(y[:, k], p[:, k]) for k in columns])),
                "brier": float(np.mean((p - y) ** 2))}

    def metric(y: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict[str, float]:
        b, a = one(y, before), one(y, after)
        out = {f"{name}_before_recalibration": value for name, value in b.items()}
        out.update(a)
        out["ece_change"] = a["ece"] - b["ece"]  # paired: its CI says whether recalibration helped on test
        return out

    return metric


def _not_applicable(kind: TaskKind, reason: str) -> dict[str, Any]:
    empty = {"value": None, "ci_low": None, "ci_high": None}
    return {"kind": kind.value, "applicable": False, "method": RecalibrationMethod.NONE.value, "reason": reason,
            "metrics": {"ece_before_recalibration": dict(empty), "ece": dict(empty)}, "recalibrator": None}


def recalibration_report(
    kind: TaskKind | str,
    val_scores,
    y_val,
    test_scores,
    y_test,
    *,
    method: RecalibrationMethod | str = RecalibrationMethod.AUTO,
    n_bins: int = 10,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> dict[str, Any]:
    """Fit a :class:`Recalibrator` on validation and compare calibration before and after on test.

    Args:
        kind: :class:`~medai.core.config.TaskKind`. Regression and survival have no probabilities to recalibrate:
            the report then says so (``applicable`` False, ECE None).
        val_scores, test_scores: the Predictor's scores (binary ``(n,)``, multi-class / multi-label ``(n, K)``).
        y_val, y_test: binary 0/1 ``(n,)``; multi-class indices ``(n,)``; multi-label ``(n, K)`` 0/1.
        method: :class:`RecalibrationMethod` (``auto`` chooses on validation only).
        n_bins: equal-width bins of the ECE (as :func:`medai.evaluation.metrics.compute_ece`).
        n_resamples, confidence, seed: the paired bootstrap (stratified by class for binary / multi-class).

    Returns:
        A JSON-ready dict: ``applicable``, ``method`` (chosen; multi-label: a list per finding), ``reason``,
        ``candidates_val_log_loss``, ``metrics`` (test; each ``{"value", "ci_low", "ci_high"}``):
        ``ece_before_recalibration``, ``ece``, ``ece_change`` (after − before, paired), ``log_loss`` and
        ``brier`` before/after, binary also ``calibration_slope`` / ``calibration_intercept`` before/after;
        ``recalibrator`` (the ``to_dict`` state to store in the artefact).
    """
    owner = "recalibration_report"
    kind = _option(TaskKind, kind, "kind", owner)
    if kind is TaskKind.CLASSIFICATION:
        kind = TaskKind.BINARY if np.ndim(val_scores) == 1 else TaskKind.MULTICLASS
    if kind in (TaskKind.REGRESSION, TaskKind.SURVIVAL, TaskKind.SEGMENTATION):
        reasons = {
            TaskKind.REGRESSION: "regression predictions are values, not probabilities; their uncertainty is "
                                 "the conformal interval",
            TaskKind.SURVIVAL: "survival scores are log relative risks; calibration of the survival probabilities "
                               "is assessed at the horizons (calibration_at_horizon)",
            TaskKind.SEGMENTATION: "per-voxel probabilities are not recalibrated",
        }
        return _not_applicable(kind, reasons[kind])
    n_bins = _check_n_bins(n_bins, owner)
    recalibrator = Recalibrator(method=method, kind=kind).fit(val_scores, y_val)
    p_test, y = _scores_and_labels(kind, test_scores, y_test, owner)
    after = recalibrator.transform(p_test)
    metrics = bootstrap_metrics(_calibration_metrics(kind, n_bins), (y, p_test, after),
                                strata=None if kind is TaskKind.MULTILABEL else y,
                                n_resamples=n_resamples, confidence=confidence, seed=seed)
    state = recalibrator.to_dict()
    return {"kind": kind.value, "applicable": True, "method": state["method"], "reason": state["reason"],
            "candidates_val_log_loss": state["candidates_val_log_loss"], "n_calibration": state["n_calibration"],
            "n_test": int(p_test.shape[0]), "n_bins": n_bins, "metrics": metrics, "recalibrator": state}
