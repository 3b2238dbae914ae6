"""Percentile bootstrap: coverage of the point estimate, determinism, strata, width, NaN handling."""

import math
from functools import partial

import numpy as np
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.evaluation.bootstrap import bootstrap_metrics
from medai.evaluation.metrics import binary_metrics


@pytest.fixture
def binary_data():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + 0.7 * rng.random(200), 0, 1)
    return y, p


def _mean(x):
    return {"mean": float(np.mean(x))}


def test_ci_contains_the_point_estimate_for_every_binary_metric(binary_data):
    y, p = binary_data
    fn = partial(binary_metrics, threshold=0.5, class_names=["neg", "pos"])
    out = bootstrap_metrics(fn, (y, p), strata=y, n_resamples=200)
    assert list(out) == list(fn(y, p))
    for name, ci in out.items():
        assert set(ci) == {"value", "ci_low", "ci_high"}
        assert ci["value"] == pytest.approx(fn(y, p)[name])
        assert ci["ci_low"] < ci["value"] < ci["ci_high"], name


def test_same_seed_same_result_other_seed_other_result(binary_data):
    y, p = binary_data
    a = bootstrap_metrics(_mean, (p,), n_resamples=100, seed=3)
    b = bootstrap_metrics(_mean, (p,), n_resamples=100, seed=3)
    c = bootstrap_metrics(_mean, (p,), n_resamples=100, seed=4)
    assert a == b
    assert a["mean"]["ci_low"] != c["mean"]["ci_low"]


def test_percentile_interval_of_the_resampled_values():
    x = np.arange(10.0)
    out = bootstrap_metrics(_mean, (x,), n_resamples=400, confidence=0.9, seed=0)
    rng = np.random.default_rng(0)
    means = [x[np.concatenate([np.arange(10)[rng.integers(0, 10, size=10)]])].mean() for _ in range(400)]
    assert (out["mean"]["ci_low"], out["mean"]["ci_high"]) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))


def test_stratified_resamples_keep_per_stratum_counts(binary_data):
    y, _ = binary_data

    def counts(labels):
        return {"n_pos": int(labels.sum()), "n": labels.shape[0]}

    stratified = bootstrap_metrics(counts, (y,), strata=y, n_resamples=100)
    assert stratified["n_pos"] == {"value": y.sum(), "ci_low": y.sum(), "ci_high": y.sum()}
    assert stratified["n"]["ci_low"] == stratified["n"]["ci_high"] == len(y)
    plain = bootstrap_metrics(counts, (y,), n_resamples=100)
    assert plain["n_pos"]["ci_low"] < y.sum() < plain["n_pos"]["ci_high"]


def test_rows_of_all_arrays_stay_aligned_including_2d():
    x = np.arange(50.0)
    matrix = np.stack([x, -x], axis=1)  # (n, 2)

    def misalignment(v, m):
        return {"gap": float(np.abs(m[:, 0] - v).max() + np.abs(m[:, 1] + v).max()), "spread": float(np.ptp(v))}

    out = bootstrap_metrics(misalignment, (x, matrix), n_resamples=50)
    assert out["gap"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert out["spread"]["ci_low"] > 0


def test_smaller_sample_gives_wider_interval():
    rng = np.random.default_rng(7)
    big, small = rng.normal(size=800), rng.normal(size=50)
    width = {}
    for name, x in (("big", big), ("small", small)):
        ci = bootstrap_metrics(_mean, (x,), n_resamples=300)["mean"]
        width[name] = ci["ci_high"] - ci["ci_low"]
    assert width["small"] > 2 * width["big"]


def _mean_if_first_row_drawn(min_times):
    def fn(ids):
        return {"m": float(ids.mean()) if np.sum(ids == 0) >= min_times else math.nan}

    return fn


def test_nan_resamples_are_ignored_in_the_percentiles():
    ids = np.arange(20)
    # row 0 is missing from ~36% of the resamples ((19/20)^20): the others still give an interval
    out = bootstrap_metrics(_mean_if_first_row_drawn(1), (ids,), n_resamples=300)["m"]
    assert out["value"] == pytest.approx(9.5)
    assert out["ci_low"] is not None and out["ci_low"] < out["ci_high"]


def test_interval_is_null_when_fewer_than_half_the_resamples_are_finite():
    ids = np.arange(20)
    # row 0 drawn at least twice in only ~26% of the resamples
    out = bootstrap_metrics(_mean_if_first_row_drawn(2), (ids,), n_resamples=300)["m"]
    assert out == {"value": None, "ci_low": None, "ci_high": None}
    out = bootstrap_metrics(lambda v: {"m": math.nan}, (ids,), n_resamples=10)["m"]
    assert out == {"value": None, "ci_low": None, "ci_high": None}


def test_bootstrap_rejects_mismatched_rows():
    with pytest.raises(DataValidationError, match=r"same, non-zero number of rows; got row counts \[3, 2\]"):
        bootstrap_metrics(_mean, (np.zeros(3), np.zeros(2)))
    with pytest.raises(DataValidationError, match=r"'strata' must have shape \(3,\)"):
        bootstrap_metrics(_mean, (np.zeros(3),), strata=[0, 1])
    with pytest.raises(DataValidationError, match="'arrays' must be a non-empty tuple of arrays"):
        bootstrap_metrics(_mean, np.zeros(3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_resamples": 0}, "'n_resamples' parameter of bootstrap_metrics must be an int >= 1"),
        ({"confidence": 95}, r"'confidence' parameter of bootstrap_metrics must be a number in the open interval"),
        ({"seed": 1.5}, "'seed' parameter of bootstrap_metrics must be an int or None"),
    ],
)
def test_bootstrap_rejects_bad_parameters(kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        bootstrap_metrics(_mean, (np.zeros(3),), **kwargs)


def test_bootstrap_rejects_metric_fn_not_returning_a_mapping():
    with pytest.raises(
        InvalidParameterError,
        match="'metric_fn' parameter of bootstrap_metrics must "
        "be a callable returning a dict",
    ):
        bootstrap_metrics(np.mean, (np.zeros(3),))
