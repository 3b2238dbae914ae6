"""Percentile bootstrap confidence intervals for any set of metrics (Efron & Tibshirani 1993).

The resampling unit is the row (one record / patient) of the evaluated arrays. Resampling within strata
(e.g. the label, or the event indicator) keeps every resample's class balance equal to the original one,
so that rare-class metrics stay defined in (almost) every resample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import sklearn

from medai.core.errors import DataValidationError, invalid_parameter

__all__ = ["bootstrap_metrics"]

MetricFn = Callable[..., Mapping[str, float]]


def _to_json_number(value: float) -> float | None:
    """NaN and ±inf have no JSON form: they become None (``null``)."""
    return float(value) if math.isfinite(value) else None


def _as_float(value: object) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def bootstrap_metrics(
    metric_fn: MetricFn,
    arrays: tuple[np.ndarray, ...],
    *,
    strata=None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> dict[str, dict[str, float | None]]:
    """Point estimates and percentile bootstrap confidence intervals of ``metric_fn``.

    Example::

        from functools import partial
        fn = partial(binary_metrics, threshold=0.4, class_names=["no", "yes"])
        ci = bootstrap_metrics(fn, (y_true, y_prob), strata=y_true)
        ci["auroc"]  # {"value": 0.84, "ci_low": 0.79, "ci_high": 0.88}

    Args:
        metric_fn: called as ``metric_fn(*arrays)``; returns ``{metric_name: value}``. A value that is undefined
            on a resample must be NaN (the resample is then left out of that metric's interval).
        arrays: the arrays passed to ``metric_fn``, each of shape ``(n_samples, ...)``; the same rows of all of
            them are drawn together.
        strata: ``(n_samples,)`` labels; rows are drawn with replacement within each stratum, keeping the
            stratum sizes. None draws from all rows.
        n_resamples: number of bootstrap resamples.
        confidence: coverage of the interval, in (0, 1); the bounds are the ``(1 - confidence) / 2`` and
            ``(1 + confidence) / 2`` percentiles of the finite resampled values.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same intervals.

    Returns:
        ``{metric_name: {"value": v, "ci_low": lo, "ci_high": hi}}`` with ``v`` the estimate on the full data.
        Non-finite numbers are None (JSON ``null``); the interval is None when fewer than half of the resamples
        give a finite value.

    Raises:
        InvalidParameterError: invalid ``metric_fn``, ``n_resamples``, ``confidence`` or ``seed``, or
            ``metric_fn`` does not return a mapping.
        DataValidationError: ``arrays`` is empty, or the arrays / ``strata`` differ in number of rows.
    """
    owner = "bootstrap_metrics"
    if not callable(metric_fn):
        raise invalid_parameter("metric_fn", owner, "a callable returning {metric_name: value}", metric_fn)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 1:
        raise invalid_parameter("n_resamples", owner, "an int >= 1", n_resamples)
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float | np.number)
        or not 0.0 < float(confidence) < 1.0
    ):
        raise invalid_parameter("confidence", owner, "a number in the open interval (0, 1)", confidence)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise invalid_parameter("seed", owner, "an int or None", seed)
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, tuple | list) or len(arrays) == 0:
        raise DataValidationError(
            f"{owner}: 'arrays' must be a non-empty tuple of arrays, e.g. (y_true, y_prob); "
            f"got {type(arrays).__name__}."
        )
    arrays = tuple(np.asarray(a) for a in arrays)
    lengths = [a.shape[0] if a.ndim >= 1 else None for a in arrays]
    if None in lengths or len(set(lengths)) != 1 or lengths[0] == 0:
        raise DataValidationError(
            f"{owner}: every array in 'arrays' must have the same, non-zero number of rows; got row counts "
            f"{lengths}."
        )
    n = lengths[0]
    if strata is None:
        groups = [np.arange(n)]
    else:
        strata = np.asarray(strata)
        if strata.ndim != 1 or strata.shape[0] != n:
            raise DataValidationError(
                f"{owner}: 'strata' must have shape ({n},), one label per row of the arrays; got {strata.shape}."
            )
        _, inverse = np.unique(strata, return_inverse=True)
        groups = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]

    point = metric_fn(*arrays)
    if not isinstance(point, Mapping):
        raise invalid_parameter("metric_fn", owner, "a callable returning a dict", type(point).__name__)
    names = list(point)

    rng = np.random.default_rng(seed)
    resampled = np.full((len(names), n_resamples), math.nan)
    # Every resample holds rows of data that have just passed full validation in the point estimate:
    # scikit-learn's per-call re-validation is skipped (it dominates the cost of small metrics).
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for r in range(n_resamples):
            rows = np.concatenate([g[rng.integers(0, g.shape[0], size=g.shape[0])] for g in groups])
            values = metric_fn(*(a[rows] for a in arrays))
            for i, name in enumerate(names):
                resampled[i, r] = _as_float(values.get(name))

    alpha = (1.0 - float(confidence)) / 2.0
    out: dict[str, dict[str, float | None]] = {}
    for i, name in enumerate(names):
        finite = resampled[i][np.isfinite(resampled[i])]
        if finite.shape[0] * 2 < n_resamples:
            low = high = math.nan
        else:
            low, high = np.quantile(finite, [alpha, 1.0 - alpha])
        out[name] = {
            "value": _to_json_number(_as_float(point[name])),
            "ci_low": _to_json_number(float(low)),
            "ci_high": _to_json_number(float(high)),
        }
    return out
