"""Segmentation metrics: per-case Dice and 95th-percentile Hausdorff distance, lesion detection, volumes and
ejection-fraction agreement, with percentile bootstrap CIs over cases (or subjects).

Per-case overlap and distance come from MONAI (``monai.metrics.compute_dice`` and
``compute_hausdorff_distance(percentile=95)``, surface distances in mm with the voxel spacing). Conventions for
empty masks, which MONAI leaves undefined:

* Dice: truth and prediction both empty → ``empty_value`` (NaN by default: the case has nothing to overlap);
  exactly one empty → 0.
* HD95 (the larger of the two directed 95th-percentile border distances): both empty → NaN; exactly one empty → ``missing_value_mm``, by default the diagonal of the image in mm
  (the largest distance possible in it, as in the BraTS challenges), so that a missed structure is penalised
  rather than dropped.

Agreement of a derived measurement (ejection fraction, volumes) with its truth follows Bland & Altman (Lancet
1986): bias = mean(predicted − truth), limits of agreement = bias ± 1.96 SD of the differences.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from medai.core.errors import DataValidationError, invalid_parameter
from medai.evaluation.bootstrap import bootstrap_metrics

__all__ = [
    "agreement_metrics",
    "compute_dice",
    "compute_hd95",
    "compute_lesion_detection",
    "compute_volume_ml",
    "ejection_fraction_metrics",
    "lesion_metrics",
    "otsu_threshold",
]


def _as_cases(y: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    array = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if array.ndim not in (3, 4):
        raise DataValidationError(
            f"'{name}' must be binary masks of shape (cases, H, W) or (cases, D, H, W); got shape {array.shape}. "
            "Drop the channel axis (masks[:, 0]) or add a case axis (mask[None])."
        )
    if array.dtype != bool:
        values = np.unique(array)
        if not np.isin(values, (0, 1)).all():
            raise DataValidationError(f"'{name}' must hold only 0 and 1; found values {values[:6].tolist()}.")
    return array.astype(bool)


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    truth, pred = _as_cases(y_true, "y_true"), _as_cases(y_pred, "y_pred")
    if truth.shape != pred.shape:
        raise DataValidationError(f"y_true and y_pred must have the same shape; got {truth.shape} and {pred.shape}.")
    return truth, pred


def _spacing(spacing_mm: float | Sequence[float], dims: int) -> tuple[float, ...]:
    spacing = (float(spacing_mm),) * dims if np.isscalar(spacing_mm) else tuple(float(s) for s in spacing_mm)
    if len(spacing) != dims or not all(s > 0 for s in spacing):
        raise invalid_parameter("spacing_mm", "compute_hd95", f"{dims} positive voxel sizes (mm)", spacing_mm)
    return spacing


def compute_dice(y_true, y_pred, *, empty_value: float = math.nan) -> np.ndarray:
    """Dice similarity coefficient ``2 |T ∩ P| / (|T| + |P|)`` of each case (MONAI ``compute_dice``).

    Args:
        y_true / y_pred: binary masks ``(cases, *spatial)`` (2-D or 3-D), 1 = structure.
        empty_value: the value of a case where truth and prediction are both empty.

    Returns:
        float64 ``(cases,)``.
    """
    from monai.metrics import compute_dice as monai_dice

    truth, pred = _check_pair(y_true, y_pred)
    values = monai_dice(torch.from_numpy(pred[:, None]).float(), torch.from_numpy(truth[:, None]).float(),
                        include_background=True, ignore_empty=False)[:, 0].double().numpy()
    both_empty = ~truth.reshape(len(truth), -1).any(1) & ~pred.reshape(len(pred), -1).any(1)
    values[both_empty] = empty_value
    return values


def compute_hd95(y_true, y_pred, *, spacing_mm: float | Sequence[float] = 1.0,
                 missing_value_mm: float | None = None) -> np.ndarray:
    """95th-percentile symmetric Hausdorff distance of each case, in mm (MONAI, ``percentile=95``).

    MONAI measures, from each border voxel of one mask (the mask minus its erosion), the distance to the nearest
    border voxel of the other, and returns the larger of the two directed 95th percentiles (truth → prediction and
    prediction → truth).

    Args:
        y_true / y_pred: binary masks ``(cases, *spatial)``.
        spacing_mm: voxel size, one number (isotropic) or one per spatial axis in array order.
        missing_value_mm: value when exactly one of the masks is empty; None = the image diagonal in mm.

    Returns:
        float64 ``(cases,)``; NaN where both masks are empty.
    """
    from monai.metrics import compute_hausdorff_distance

    truth, pred = _check_pair(y_true, y_pred)
    spacing = _spacing(spacing_mm, truth.ndim - 1)
    if missing_value_mm is None:
        missing_value_mm = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(truth.shape[1:], spacing))))
    t_any = truth.reshape(len(truth), -1).any(1)
    p_any = pred.reshape(len(pred), -1).any(1)
    values = np.full(len(truth), math.nan)
    values[t_any != p_any] = missing_value_mm
    both = np.flatnonzero(t_any & p_any)
    if len(both):
        with warnings.catch_warnings():  # MONAI's own deprecation notice of an argument it passes itself
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*")
            distances = compute_hausdorff_distance(
                torch.from_numpy(pred[both, None]), torch.from_numpy(truth[both, None]), include_background=True,
                percentile=95, spacing=list(spacing))
        values[both] = distances[:, 0].double().numpy()
    return values


def compute_volume_ml(mask, spacing_mm: Sequence[float]) -> np.ndarray:
    """Volume of each case in mL: voxel count x voxel volume (``spacing_mm`` per axis, mm)."""
    masks = _as_cases(mask, "mask")
    voxel_ml = float(np.prod(_spacing(spacing_mm, masks.ndim - 1))) / 1000.0
    return masks.reshape(len(masks), -1).sum(1).astype(np.float64) * voxel_ml


def compute_lesion_detection(y_true, y_pred) -> dict[str, np.ndarray]:
    """Lesion-level detection per case from connected components (face connectivity).

    A truth lesion is *detected* when at least one predicted voxel overlaps it; a predicted component that
    overlaps no truth lesion is a *false positive*.

    Returns:
        ``{"n_lesions", "n_detected", "n_false_positives"}``, int arrays ``(cases,)``.
    """
    truth, pred = _check_pair(y_true, y_pred)
    n_lesions = np.zeros(len(truth), np.int64)
    n_detected = np.zeros(len(truth), np.int64)
    n_false = np.zeros(len(truth), np.int64)
    for i in range(len(truth)):
        labels, n = ndimage.label(truth[i])
        n_lesions[i] = n
        if n:
            n_detected[i] = len(np.setdiff1d(np.unique(labels[pred[i]]), [0]))
        predicted, m = ndimage.label(pred[i])
        if m:
            hit = np.unique(predicted[truth[i]])
            n_false[i] = m - len(np.setdiff1d(hit, [0]))
    return {"n_lesions": n_lesions, "n_detected": n_detected, "n_false_positives": n_false}


# ------------------------------------------------------------------------------------------ aggregated metrics
def _lesion_table(dice, hd95, n_lesions, n_detected, n_false, pred_empty):
    has = n_lesions > 0
    lesions = n_lesions.sum()
    return {
        "dice": float(np.mean(dice[has])) if has.any() else math.nan,
        "hd95_mm": float(np.mean(hd95[has])) if has.any() else math.nan,
        "lesion_sensitivity": float(n_detected.sum() / lesions) if lesions else math.nan,
        "false_positives_per_case": float(n_false.mean()),
        "case_sensitivity": float((n_detected[has] > 0).mean()) if has.any() else math.nan,
        "case_specificity": float(pred_empty[~has].mean()) if (~has).any() else math.nan,
        "dice_median": float(np.median(dice[has])) if has.any() else math.nan,
        "hd95_mm_median": float(np.median(hd95[has])) if has.any() else math.nan,
    }


def lesion_metrics(y_true, y_pred, *, spacing_mm: float | Sequence[float] = 1.0, n_resamples: int = 1000,
                   confidence: float = 0.95, seed: int = 0) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Overlap, distance and detection metrics of a lesion segmentation, with bootstrap CIs over cases.

    Dice and HD95 are averaged over the cases whose truth holds a lesion (a case with no lesion has no overlap to
    measure; its false positives count in ``false_positives_per_case`` and ``case_specificity``). Resampling is
    stratified by "case holds a lesion", keeping the share of lesion-free cases of every resample.

    Metrics: ``dice`` (mean), ``dice_median``, ``hd95_mm`` (mean; a missed case counts the image diagonal),
    ``hd95_mm_median``, ``lesion_sensitivity`` (detected / all truth lesions), ``false_positives_per_case``
    (predicted components touching no lesion), ``case_sensitivity`` (lesion cases with at least one lesion
    detected), ``case_specificity`` (lesion-free cases with an empty prediction).

    Returns:
        ``({metric: {"value", "ci_low", "ci_high"}}, per-case arrays)``; the per-case arrays are ``dice`` and
        ``hd95_mm`` (NaN for a case without lesion), ``n_lesions``, ``n_detected``, ``n_false_positives``,
        ``volume_true_ml``, ``volume_pred_ml``.
    """
    truth, pred = _check_pair(y_true, y_pred)
    has = truth.reshape(len(truth), -1).any(1)
    dice, hd95 = np.full(len(truth), math.nan), np.full(len(truth), math.nan)
    if has.any():
        dice[has] = compute_dice(truth[has], pred[has])
        hd95[has] = compute_hd95(truth[has], pred[has], spacing_mm=spacing_mm)
    per_case = {"dice": dice, "hd95_mm": hd95, **compute_lesion_detection(truth, pred),
                "volume_true_ml": compute_volume_ml(truth, _spacing(spacing_mm, truth.ndim - 1)),
                "volume_pred_ml": compute_volume_ml(pred, _spacing(spacing_mm, truth.ndim - 1))}
    pred_empty = ~pred.reshape(len(pred), -1).any(1)
    arrays = (per_case["dice"], per_case["hd95_mm"], per_case["n_lesions"], per_case["n_detected"],
              per_case["n_false_positives"], pred_empty)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices of a resample → NaN, left out of the CI
        table = bootstrap_metrics(_lesion_table, arrays, strata=per_case["n_lesions"] > 0, n_resamples=n_resamples,
                                  confidence=confidence, seed=seed)
    return table, per_case


def _agreement(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    difference = pred - truth
    sd = float(difference.std(ddof=1)) if len(difference) > 1 else math.nan
    bias = float(difference.mean())
    r = math.nan
    if len(truth) > 2 and truth.std() > 0 and pred.std() > 0:
        r = float(np.corrcoef(truth, pred)[0, 1])
    return {"mae": float(np.abs(difference).mean()), "bias": bias, "sd_difference": sd,
            "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd, "pearson_r": r}


def agreement_metrics(truth, pred) -> dict[str, float]:
    """Agreement of a measurement with its truth (Bland–Altman): ``mae``, ``bias`` (mean of pred − truth),
    ``sd_difference``, ``loa_low`` / ``loa_high`` (bias ∓ 1.96 SD) and Pearson's ``pearson_r``."""
    truth, pred = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if truth.shape != pred.shape or truth.ndim != 1 or len(truth) == 0:
        raise DataValidationError(f"truth and pred must be 1-D arrays of equal, non-zero length; got shapes "
                                  f"{truth.shape} and {pred.shape}.")
    if not (np.isfinite(truth).all() and np.isfinite(pred).all()):
        raise DataValidationError("truth and pred must be finite (a subject with no predicted cavity has no EF).")
    return _agreement(truth, pred)


def _cardiac_table(dice, dice_ed, dice_es, hd95, ef_true, ef_pred, edv_true, edv_pred, esv_true, esv_pred,
                   es_frame_error):
    ef = _agreement(ef_true, ef_pred)
    return {
        "dice": float(np.nanmean(dice)), "hd95_mm": float(np.nanmean(hd95)),
        "ef_mae": ef["mae"], "ef_bias": ef["bias"], "ef_loa_low": ef["loa_low"], "ef_loa_high": ef["loa_high"],
        "dice_ed": float(np.nanmean(dice_ed)), "dice_es": float(np.nanmean(dice_es)),
        "ef_pearson_r": ef["pearson_r"],
        "edv_mae_ml": float(np.abs(edv_pred - edv_true).mean()),
        "esv_mae_ml": float(np.abs(esv_pred - esv_true).mean()),
        "es_frame_mae": float(np.abs(es_frame_error).mean()),
    }


def ejection_fraction_metrics(per_subject: dict[str, np.ndarray], *, n_resamples: int = 1000,
                              confidence: float = 0.95, seed: int = 0) -> dict[str, dict]:
    """Cine segmentation metrics with bootstrap CIs over subjects (frames of one subject are not independent).

    Args:
        per_subject: arrays ``(subjects,)``: ``dice`` and ``hd95_mm`` (mean over the subject's frames),
            ``dice_ed`` / ``dice_es`` (at the truth ED / ES frames), ``ef_true`` / ``ef_pred`` (%),
            ``edv_true`` / ``edv_pred`` / ``esv_true`` / ``esv_pred`` (mL), ``es_frame_error`` (predicted − truth
            ES frame, cyclic distance).

    Returns:
        ``{metric: {"value", "ci_low", "ci_high"}}`` for ``dice``, ``dice_ed``, ``dice_es``, ``hd95_mm``,
        ``ef_mae`` (EF points), ``ef_bias``, ``ef_loa_low`` / ``ef_loa_high`` (Bland–Altman limits),
        ``ef_pearson_r``, ``edv_mae_ml``, ``esv_mae_ml``, ``es_frame_mae`` (frames).
    """
    keys = ("dice", "dice_ed", "dice_es", "hd95_mm", "ef_true", "ef_pred", "edv_true", "edv_pred", "esv_true",
            "esv_pred", "es_frame_error")
    missing = [k for k in keys if k not in per_subject]
    if missing:
        raise DataValidationError(f"ejection_fraction_metrics: per_subject lacks {missing}.")
    arrays = tuple(np.asarray(per_subject[k], dtype=np.float64) for k in keys)
    if not (np.isfinite(arrays[4]).all() and np.isfinite(arrays[5]).all()):
        raise DataValidationError("ejection_fraction_metrics: every subject needs a finite truth and predicted EF "
                                  "(a subject with no predicted cavity in any frame has none).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return bootstrap_metrics(_cardiac_table, arrays, n_resamples=n_resamples, confidence=confidence, seed=seed)


# -------------------------------------------------------------------------------------------- classical method
def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (IEEE Trans. SMC 1979): the cut of the histogram that maximises the between-class
    variance. Returns the upper edge of the last bin of the lower class (values > threshold are foreground)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        raise DataValidationError("otsu_threshold needs finite values that are not all equal.")
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(counts * centres) / np.maximum(weight_low, 1)
    mean_high = ((counts * centres).sum() - np.cumsum(counts * centres)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[1:][np.argmax(between[:-1])])
