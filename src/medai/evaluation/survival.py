"""Survival metrics: discrimination (Harrell's and Uno's C, time-dependent AUC), the integrated Brier score,
calibration at a horizon, and the choice of evaluation horizons.

Conventions: ``time`` is the follow-up time (any unit, the same everywhere, >= 0); ``event`` is 1 (True) when the
event was observed at ``time`` and 0 (False) when the record was censored there; ``risk`` is a risk score,
higher = worse prognosis (e.g. the Cox linear predictor); ``surv_probs[i, j]`` is the predicted probability that
sample ``i`` survives beyond ``grid[j]``.

Every metric comes from scikit-survival. What it refuses to compute on the given data (no comparable pair,
a horizon outside the follow-up, test times beyond the training follow-up for the censoring weights) is NaN,
not an exception.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import kaplan_meier_estimator

from medai.core.errors import DataValidationError, invalid_parameter
from medai.evaluation.metrics import (
    _as_float_array,
    _check_binary_labels,
    _check_finite,
    _check_probabilities,
    _check_same_length,
)

__all__ = ["calibration_at_horizon", "choose_horizons", "format_horizon", "survival_metrics"]


def _survival_inputs(time: object, event: object, owner: str, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    t_name, e_name = f"{prefix}time", f"{prefix}event"
    t = _as_float_array(time, t_name, owner)
    e = _check_binary_labels(_as_float_array(event, e_name, owner), e_name, owner).astype(bool)
    _check_same_length(owner, **{t_name: t, e_name: e})
    _check_finite(t, t_name, owner)
    if (t < 0).any():
        raise DataValidationError(
            f"{owner}: '{t_name}' must be non-negative follow-up times; {int((t < 0).sum())} value(s) are "
            "negative. Check how the times were computed (end minus start)."
        )
    return t, e


def _structured(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    """scikit-survival's outcome array (``sksurv.util.Surv.from_arrays``) without its re-validation."""
    out = np.empty(time.shape[0], dtype=[("event", bool), ("time", float)])
    out["event"] = event
    out["time"] = time
    return out


def _check_increasing(values: object, name: str, owner: str, *, positive: bool) -> np.ndarray:
    expected = "a non-empty, strictly increasing sequence of finite " + ("positive numbers" if positive else "numbers")
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise invalid_parameter(name, owner, expected, values) from None
    if (
        arr.ndim != 1
        or arr.shape[0] == 0
        or not np.all(np.isfinite(arr))
        or np.any(np.diff(arr) <= 0)
        or (positive and np.any(arr <= 0))
    ):
        raise invalid_parameter(name, owner, expected, values)
    return arr


def format_horizon(t: float) -> str:
    """The name of a horizon in metric and column names: ``365.0 -> "365"``, ``2.5 -> "2.5"``.

    The shortest decimal that reads back as the same float, without exponent or trailing zeros.
    """
    if isinstance(t, bool) or not isinstance(t, int | float | np.number) or not math.isfinite(float(t)):
        raise invalid_parameter("t", "format_horizon", "a finite number", t)
    return np.format_float_positional(float(t), trim="-")


def survival_metrics(
    time,
    event,
    risk,
    *,
    train_time,
    train_event,
    horizons: Sequence[float],
    surv_probs=None,
    grid=None,
) -> dict[str, float]:
    """Discrimination and overall accuracy of survival predictions.

    Args:
        time: ``(n_samples,)`` follow-up time of the evaluated (test) samples.
        event: ``(n_samples,)`` 1/True = event observed, 0/False = censored.
        risk: ``(n_samples,)`` risk score, higher = worse (earlier event).
        train_time: ``(n_train,)`` follow-up time of the training samples; with ``train_event`` it gives the
            Kaplan-Meier estimate of the censoring distribution used for inverse-probability-of-censoring weights.
        train_event: ``(n_train,)`` event indicator of the training samples.
        horizons: strictly increasing positive times at which the time-dependent AUC is computed; the largest
            is the truncation time ``tau`` of Uno's C.
        surv_probs: optional ``(n_samples, len(grid))`` predicted survival probabilities ``S(grid[j] | x_i)``.
        grid: ``(n_grid,)`` strictly increasing times of ``surv_probs``' columns; required with ``surv_probs``.

    Returns:
        ``c_index`` (Harrell, ``concordance_index_censored``), ``c_index_uno`` (``concordance_index_ipcw``,
        ``tau = max(horizons)``), ``td_auc_<t>`` for each horizon (cumulative/dynamic AUC, ``t`` named by
        :func:`format_horizon`) and, with ``surv_probs``, ``ibs`` (``integrated_brier_score`` over ``grid``).
        A value scikit-survival cannot compute on these data is NaN.

    Raises:
        DataValidationError: invalid or inconsistent arrays.
        InvalidParameterError: invalid ``horizons`` or ``grid``, or ``surv_probs`` without ``grid``.
    """
    owner = "survival_metrics"
    t, e = _survival_inputs(time, event, owner)
    r = _as_float_array(risk, "risk", owner)
    _check_same_length(owner, time=t, risk=r)
    _check_finite(r, "risk", owner)
    t_train, e_train = _survival_inputs(train_time, train_event, owner, prefix="train_")
    h = _check_increasing(horizons, "horizons", owner, positive=True)
    if surv_probs is not None:
        if grid is None:
            raise invalid_parameter("grid", owner, "the times of the columns of 'surv_probs'", grid)
        g = _check_increasing(grid, "grid", owner, positive=False)
        s = _as_float_array(surv_probs, "surv_probs", owner, ndim=2)
        if s.shape != (t.shape[0], g.shape[0]):
            raise DataValidationError(
                f"{owner}: 'surv_probs' must have shape (n_samples, len(grid)) = ({t.shape[0]}, {g.shape[0]}); "
                f"got {s.shape}."
            )
        _check_probabilities(s, "surv_probs", owner)

    train = _structured(e_train, t_train)
    test = _structured(e, t)
    out: dict[str, float] = {}
    try:
        out["c_index"] = float(concordance_index_censored(e, t, r)[0])
    except ValueError:  # e.g. "All samples are censored": no comparable pair
        out["c_index"] = math.nan
    try:
        out["c_index_uno"] = float(concordance_index_ipcw(train, test, r, tau=float(h[-1]))[0])
    except ValueError:  # e.g. test times beyond the training follow-up (censoring weights undefined)
        out["c_index_uno"] = math.nan
    try:
        auc = cumulative_dynamic_auc(train, test, r, h)[0]
    except ValueError:
        # One horizon outside the test follow-up fails the whole call; retry one by one to keep the others.
        auc = np.array([_td_auc_one(train, test, r, horizon) for horizon in h])
    for horizon, value in zip(h, auc, strict=True):
        out[f"td_auc_{format_horizon(float(horizon))}"] = float(value)
    if surv_probs is not None:
        try:
            out["ibs"] = float(integrated_brier_score(train, test, s, g))
        except ValueError:  # grid outside the test follow-up, or censoring weights undefined
            out["ibs"] = math.nan
    return out


def _td_auc_one(train: np.ndarray, test: np.ndarray, risk: np.ndarray, horizon: float) -> float:
    try:
        return float(cumulative_dynamic_auc(train, test, risk, [horizon])[0][0])
    except ValueError:
        return math.nan


def _round_significant(x: float, digits: int) -> float:
    if x == 0:
        return 0.0
    return float(round(x, digits - 1 - math.floor(math.log10(abs(x)))))


def choose_horizons(time, event, quantiles: Sequence[float] = (0.25, 0.5, 0.75)) -> list[float]:
    """Evaluation horizons at quantiles of the observed event times, rounded to readable numbers.

    Each quantile is rounded to 2 significant digits (347.3 -> 350, 2.46 -> 2.5), or to more digits when the
    rounded value would leave the open follow-up interval ``(min(time), max(time))``. Values that coincide after
    rounding are merged, so fewer horizons than quantiles may be returned.

    Args:
        time: ``(n_samples,)`` follow-up times (usually of the training split).
        event: ``(n_samples,)`` 1/True = event observed, 0/False = censored.
        quantiles: strictly increasing quantile levels in (0, 1).

    Returns:
        Strictly increasing horizons, each inside the observed follow-up.

    Raises:
        DataValidationError: invalid arrays, no event, or no quantile inside the follow-up.
        InvalidParameterError: invalid ``quantiles``.
    """
    owner = "choose_horizons"
    levels = _check_increasing(quantiles, "quantiles", owner, positive=True)
    if levels[-1] >= 1.0:
        raise invalid_parameter("quantiles", owner, "strictly increasing levels in the open interval (0, 1)", quantiles)
    t, e = _survival_inputs(time, event, owner)
    if not e.any():
        raise DataValidationError(
            f"{owner}: no event observed among {t.shape[0]} samples; horizons are quantiles of the event times. "
            "Check the event column (1 = event, 0 = censored) or pass the horizons explicitly."
        )
    low, high = float(t.min()), float(t.max())
    horizons: list[float] = []
    for q in np.quantile(t[e], levels):
        candidates = [_round_significant(float(q), d) for d in range(2, 7)] + [float(q)]
        inside = [c for c in candidates if low < c < high]
        if inside and (not horizons or inside[0] > horizons[-1]):
            horizons.append(inside[0])
    if not horizons:
        raise DataValidationError(
            f"{owner}: no quantile of the event times lies strictly inside the follow-up ({low:g}, {high:g}); "
            "pass the horizons explicitly."
        )
    return horizons


def _km_event_probability(time: np.ndarray, event: np.ndarray, t: float) -> tuple[float, float, float]:
    """``1 - KM(t)`` with its 95% log-log (Greenwood) interval; NaN where the estimate is undefined."""
    x, surv, conf = kaplan_meier_estimator(event, time, conf_type="log-log")
    index = int(np.searchsorted(x, t, side="right")) - 1
    if index < 0:  # before the first observed time nobody has had the event
        return 0.0, 0.0, 0.0
    if t > x[-1] and surv[-1] > 0:  # past the last follow-up with survivors censored: KM is not defined
        return math.nan, math.nan, math.nan
    return float(1.0 - surv[index]), float(1.0 - conf[1, index]), float(1.0 - conf[0, index])


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def calibration_at_horizon(time, event, surv_prob_at_t, t: float, n_groups: int = 5) -> dict:
    """Predicted versus observed (Kaplan-Meier) event probability by ``t``, in groups of predicted risk.

    The samples are sorted by predicted risk ``1 - S(t)`` and cut into ``n_groups`` groups of (almost) equal
    size (quantile groups; tied risks at a boundary are split in data order). In each group the mean predicted
    event probability is compared with ``1 - KM(t)``, whose 95% interval is the Greenwood log-log interval of
    ``kaplan_meier_estimator(conf_type="log-log")``.

    Args:
        time: ``(n_samples,)`` follow-up time.
        event: ``(n_samples,)`` 1/True = event observed, 0/False = censored.
        surv_prob_at_t: ``(n_samples,)`` predicted probability of surviving beyond ``t``.
        t: the horizon, in the unit of ``time``.
        n_groups: number of risk groups, at most ``n_samples``.

    Returns:
        ``{"horizon": t, "groups": [...]}``, groups from lowest to highest risk, each
        ``{"n", "n_events" (events up to t), "predicted", "observed", "observed_ci_low", "observed_ci_high"}``.
        ``observed`` and its bounds are None where Kaplan-Meier is undefined (``t`` past the group's last
        follow-up with survivors censored there, or an undefined interval).

    Raises:
        DataValidationError: invalid arrays, or fewer samples than groups.
        InvalidParameterError: invalid ``t`` or ``n_groups``.
    """
    owner = "calibration_at_horizon"
    if isinstance(t, bool) or not isinstance(t, int | float | np.number) or not (
        math.isfinite(float(t)) and float(t) > 0
    ):
        raise invalid_parameter("t", owner, "a finite positive time", t)
    if isinstance(n_groups, bool) or not isinstance(n_groups, int | np.integer) or n_groups < 1:
        raise invalid_parameter("n_groups", owner, "an int >= 1", n_groups)
    times, events = _survival_inputs(time, event, owner)
    s = _as_float_array(surv_prob_at_t, "surv_prob_at_t", owner)
    _check_same_length(owner, time=times, surv_prob_at_t=s)
    _check_probabilities(s, "surv_prob_at_t", owner)
    if times.shape[0] < n_groups:
        raise DataValidationError(
            f"{owner}: {times.shape[0]} samples cannot form {n_groups} risk groups; lower 'n_groups'."
        )
    t = float(t)
    risk = 1.0 - s
    groups = []
    for rows in np.array_split(np.argsort(risk, kind="stable"), n_groups):
        observed, ci_low, ci_high = _km_event_probability(times[rows], events[rows], t)
        groups.append(
            {
                "n": int(rows.shape[0]),
                "n_events": int(np.sum(events[rows] & (times[rows] <= t))),
                "predicted": float(risk[rows].mean()),
                "observed": _json_number(observed),
                "observed_ci_low": _json_number(ci_low),
                "observed_ci_high": _json_number(ci_high),
            }
        )
    return {"horizon": t, "groups": groups}
