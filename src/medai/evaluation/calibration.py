"""Reliability curve (calibration plot data) of binary predictions."""

from __future__ import annotations

from medai.evaluation.metrics import _binary_inputs, _check_n_bins, _equal_width_bins

__all__ = ["reliability_curve"]


def reliability_curve(y_true, y_prob, n_bins: int = 10) -> dict[str, list[float] | list[int]]:
    """Mean prediction and observed frequency per equal-width probability bin.

    The bins are those of :func:`medai.evaluation.metrics.compute_ece` and of scikit-learn's
    ``calibration_curve(strategy="uniform")``: ``n_bins`` equal-width bins of [0, 1], a probability on an inner
    edge counted in the lower bin, empty bins dropped. A well-calibrated model has ``bin_frac_pos`` close to
    ``bin_mean_pred`` in every bin.

    Args:
        y_true: ``(n_samples,)`` labels, 1 = positive, 0 = negative.
        y_prob: ``(n_samples,)`` predicted probability of class 1.
        n_bins: number of equal-width bins.

    Returns:
        ``{"bin_mean_pred": [...], "bin_frac_pos": [...], "bin_count": [...]}``, plain lists (JSON-ready) of
        equal length, one entry per non-empty bin in increasing order of probability.
    """
    owner = "reliability_curve"
    n_bins = _check_n_bins(n_bins, owner)
    y, p = _binary_inputs(y_true, y_prob, owner)
    count, mean_pred, frac_pos = _equal_width_bins(y, p, n_bins)
    return {
        "bin_mean_pred": [float(v) for v in mean_pred],
        "bin_frac_pos": [float(v) for v in frac_pos],
        "bin_count": [int(v) for v in count],
    }
