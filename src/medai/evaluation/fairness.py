"""Subgroup fairness audit and post-processing mitigation: the content of a run's ``fairness.json``.

The audit measures, for every sociodemographic attribute (sex, age band, race/ethnicity, any column the user names)
and every pairwise intersection of them ("sex × age_band"), the model's performance in each group with a percentile
bootstrap CI, and the *gap* to the whole split (group − overall) with its own CI. Group and overall values are
computed on the same resample, so the gap's interval accounts for their correlation; resampling is stratified by
group × outcome, so every resample keeps each group's size and case mix.

Metrics per task kind (score conventions of :mod:`medai.registry.predictor`):

* binary (P(positive) ``(n,)``): AUROC, sensitivity, specificity, PPV, NPV at the operating ``threshold``; ECE
  (10 equal-width bins); ``mean_predicted`` and ``observed_rate``; ``calibration_in_the_large`` = observed rate −
  mean prediction (positive: risk under-estimated in that group).
* multiclass (probabilities ``(n, K)``): accuracy, macro-F1 (over the classes present in the group's truth), macro
  one-vs-rest AUROC (null unless every class is present).
* multilabel (``(n, K)``): macro AUROC over findings with both outcomes present, Brier score.
* regression (prediction ``(n,)``): MAE and ``mean_error`` (prediction − truth: systematic over/under-estimation).
* survival (log relative risk ``(n,)``): Harrell's C-index.

Mitigation (binary): :func:`mitigate_thresholds` fits fairlearn's ``ThresholdOptimizer`` (Hardt, Price & Srebro,
NeurIPS 2016) on the *validation* split with the sensitive attribute and applies it to the test split. It is the one
method medai offers: group-specific (possibly randomised) thresholds on the unchanged scores, which needs no
retraining and no access to the network. Its cost is reported next to its benefit (overall accuracy, sensitivity
and specificity before and after, with paired bootstrap CIs of the change).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import f1_score

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, MissingDependencyError, invalid_parameter, unknown_name
from medai.evaluation.bootstrap import bootstrap_metrics
from medai.evaluation.evaluate import AGE_BANDS, SEX_COLUMNS
from medai.evaluation.metrics import compute_confusion_rates, compute_ece

__all__ = [
    "FairnessConstraint", "FairnessObjective", "broad_race_ethnicity", "fairness_audit", "group_attributes",
    "mitigate_thresholds",
]

SCHEMA = "medai-fairness/1"
INTERSECTION = " × "
#: Column names (case-insensitive) recognised as age in years, race/ethnicity (MIMIC-III ``ETHNICITY``,
#: MIMIC-IV ``race``, US Core race/ethnicity flattened to a column).
AGE_COLUMNS = ("age", "age_years", "anchor_age")
RACE_ETHNICITY_COLUMNS = ("race", "ethnicity", "race_ethnicity")
#: An attribute with more groups than this is refused: it is an identifier or a continuous value, not a group.
MAX_GROUPS = 20
MISSING = "missing"

METRICS: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.BINARY: ("auroc", "sensitivity", "specificity", "ppv", "npv", "ece", "mean_predicted", "observed_rate",
                      "calibration_in_the_large"),
    TaskKind.MULTICLASS: ("accuracy", "f1_macro", "auroc"),
    TaskKind.MULTILABEL: ("auroc", "brier"),
    TaskKind.REGRESSION: ("mae", "mean_error"),
    TaskKind.SURVIVAL: ("c_index",),
}
DEFINITIONS = {
    "auroc": "area under the ROC curve (multi-class / multi-label: unweighted mean over classes)",
    "sensitivity": "true-positive rate at the operating threshold (score >= threshold is positive)",
    "specificity": "true-negative rate at the operating threshold",
    "ppv": "positive predictive value at the operating threshold",
    "npv": "negative predictive value at the operating threshold",
    "ece": "expected calibration error, 10 equal-width bins",
    "mean_predicted": "mean predicted probability",
    "observed_rate": "observed fraction of positives",
    "calibration_in_the_large": "observed rate - mean predicted probability (> 0: risk under-estimated)",
    "accuracy": "fraction of records whose arg-max class is the true class",
    "f1_macro": "mean F1 over the classes present in the group's truth",
    "brier": "mean squared difference between predicted probability and outcome, over findings",
    "mae": "mean absolute error, in the target's unit",
    "mean_error": "mean of prediction - truth, in the target's unit (> 0: over-estimation)",
    "c_index": "Harrell's concordance index (higher risk = earlier event)",
    "gap": "group value - overall value, on the same bootstrap resamples",
}


class FairnessConstraint(StrEnum):
    """What :func:`mitigate_thresholds` equalises across groups.

    ``equalized_odds``: both true- and false-positive rates; ``true_positive_rate_parity``: sensitivity only (equal
    opportunity), which usually costs less specificity.
    """

    EQUALIZED_ODDS = "equalized_odds"
    TRUE_POSITIVE_RATE_PARITY = "true_positive_rate_parity"


class FairnessObjective(StrEnum):
    """What ThresholdOptimizer maximises under the constraint. Balanced accuracy is the default because with a rare
    outcome plain accuracy is maximised by calling nobody positive."""

    BALANCED_ACCURACY = "balanced_accuracy_score"
    ACCURACY = "accuracy_score"


# ------------------------------------------------------------------------------------------------ attributes
def broad_race_ethnicity(values: pd.Series) -> pd.Series:
    """Collapse detailed race/ethnicity labels into broad groups, keeping labels it does not recognise.

    MIMIC-III's ``ETHNICITY`` has ~40 values ("ASIAN - CHINESE", "HISPANIC/LATINO - PUERTO RICAN", "UNABLE TO
    OBTAIN"), most too small to audit. Values are matched case-insensitively, first match wins: unknown / declined /
    unable to obtain → ``Unknown``; Hispanic or Latino → ``Hispanic/Latino``; then ``Black``, ``White``, ``Asian``;
    a missing value → ``missing``; anything else keeps its own label.

    Args:
        values: one label per record.

    Returns:
        The broad labels, same index.
    """
    rules = (
        (("UNKNOWN", "NOT SPECIFIED", "UNABLE TO OBTAIN", "DECLINED"), "Unknown"),
        (("HISPANIC", "LATINO", "LATINA"), "Hispanic/Latino"),
        (("BLACK", "AFRICAN AMERICAN"), "Black"),
        (("WHITE",), "White"),
        (("ASIAN",), "Asian"),
    )

    def broad(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return MISSING
        text = str(value)
        upper = text.upper()
        for keys, label in rules:
            if any(k in upper for k in keys):
                return label
        return text

    return values.map(broad).astype(object)


def group_attributes(frame: pd.DataFrame, groups: Sequence[str] = (), *, defaults: bool = True) -> dict[str, pd.Series]:
    """The grouping variables of the audit found in ``frame`` (one row per evaluated record).

    Defaults (when ``defaults``): a sex/gender column, age in years cut into the bands of
    :data:`medai.evaluation.evaluate.AGE_BANDS` (attribute ``age_band``), and a race/ethnicity column collapsed by
    :func:`broad_race_ethnicity`. ``groups`` adds user columns (the ``--group COL`` option): each is audited as is;
    a recognised age or race/ethnicity column gets the same treatment as a default one.

    Args:
        frame: records as rows, in the order of the evaluated arrays.
        groups: extra column names (exact or case-insensitive match).
        defaults: look for sex, age and race/ethnicity columns.

    Returns:
        ``{attribute: labels}``, labels as strings (``"missing"`` for a missing value), index of ``frame``.

    Raises:
        UnknownNameError: a column of ``groups`` is not in ``frame`` (the message suggests the closest).
        DataValidationError: a column has more than :data:`MAX_GROUPS` distinct values (bin it first).
    """
    lowered = {str(c).lower(): c for c in frame.columns}
    names: list[Any] = []
    if defaults:
        for candidates in (SEX_COLUMNS, AGE_COLUMNS, RACE_ETHNICITY_COLUMNS):
            found = next((lowered[c] for c in candidates if c in lowered), None)
            if found is not None:
                names.append(found)
    for column in groups:
        actual = column if column in frame.columns else lowered.get(str(column).lower())
        if actual is None:
            raise unknown_name("group column", str(column), [str(c) for c in frame.columns])
        if actual not in names:
            names.append(actual)
    result: dict[str, pd.Series] = {}
    for column in names:
        values = frame[column]
        key = str(column).lower()
        if key in AGE_COLUMNS and pd.api.types.is_numeric_dtype(values):
            labels = pd.Series(MISSING, index=values.index, dtype=object)
            for low, high, label in AGE_BANDS:
                labels[(values >= low) & (values < high)] = label
            result["age_band"] = labels
            continue
        if key in RACE_ETHNICITY_COLUMNS:
            labels = broad_race_ethnicity(values)
        else:
            labels = values.map(_label).astype(object)
        n_groups = labels.nunique()
        if n_groups > MAX_GROUPS:
            raise DataValidationError(
                f"Group column '{column}' has {n_groups} distinct values; a subgroup audit expects at most "
                f"{MAX_GROUPS} groups. Bin it into categories first (e.g. a new column with 'low'/'high'), or leave "
                "it out of --group."
            )
        result[str(column)] = labels
    return result


def _label(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ------------------------------------------------------------------------------------------------ metrics
def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUROC with mid-ranks for ties (equal to scikit-learn's ``roc_auc_score``); NaN with one class.
    Rank-based because the audit evaluates it thousands of times per attribute."""
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _binary_group_metrics(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    rates = compute_confusion_rates(y, (s >= threshold).astype(np.int64))
    observed, predicted = float(y.mean()), float(s.mean())
    return {"auroc": _auroc(y, s), **rates, "ece": compute_ece(y, s, 10), "mean_predicted": predicted,
            "observed_rate": observed, "calibration_in_the_large": observed - predicted}


def _multiclass_group_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    pred = p.argmax(axis=1)
    present = np.unique(y)
    aurocs = [_auroc((y == k).astype(np.int64), p[:, k]) for k in range(p.shape[1])]
    return {
        "accuracy": float((pred == y).mean()),
        "f1_macro": float(f1_score(y, pred, labels=present, average="macro", zero_division=0.0)),
        "auroc": float(np.mean(aurocs)) if len(present) == p.shape[1] else math.nan,
    }


def _multilabel_group_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    aurocs = [_auroc(y[:, j].astype(np.int64), p[:, j]) for j in range(y.shape[1])]
    finite = [a for a in aurocs if math.isfinite(a)]
    return {"auroc": float(np.mean(finite)) if finite else math.nan, "brier": float(np.mean((p - y) ** 2))}


def _regression_group_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {"mae": float(np.mean(np.abs(pred - y))), "mean_error": float(np.mean(pred - y))}


def _harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C with scikit-survival's conventions (``concordance_index_censored``), in O(n sqrt(n)) numpy.

    A pair (i, j) is comparable when i has an event and ``t_j > t_i``, or j is censored at ``t_i``; it is
    concordant when ``risk_i > risk_j`` and counts 1/2 when the risks tie. scikit-survival's loop is too slow to
    run on every group of thousands of bootstrap resamples (minutes per attribute at n = 2,000).

    Returns:
        The C-index, NaN when there is no comparable pair.
    """
    ev = event.astype(bool)
    if not ev.any():
        return math.nan
    # Time descending, censored before events at the same time: then the records comparable to an event i are
    # exactly the positions before the first event at t_i.
    order = np.lexsort((ev, -time))
    t, e, r = time[order], ev[order], risk[order]
    n = t.shape[0]
    new_time = np.r_[True, t[1:] != t[:-1]]
    group = np.cumsum(new_time) - 1
    start = np.flatnonzero(new_time)[group]
    censored_in_group = np.bincount(group, weights=(~e).astype(np.float64))[group].astype(np.int64)
    events = np.flatnonzero(e)
    prefix = (start + censored_in_group)[events]  # comparable records: positions [0, prefix)
    query = r[events]
    comparable = int(prefix.sum())
    if comparable == 0:
        return math.nan
    less = np.zeros(events.shape[0])
    tied = np.zeros(events.shape[0])
    block = max(32, int(math.sqrt(n)))
    for b0 in range(0, n, block):
        b1 = min(b0 + block, n)
        full = prefix >= b1  # the whole block is comparable: binary search in its sorted risks
        if full.any():
            sorted_block = np.sort(r[b0:b1])
            low = np.searchsorted(sorted_block, query[full], "left")
            less[full] += low
            tied[full] += np.searchsorted(sorted_block, query[full], "right") - low
        part = (prefix > b0) & (prefix < b1)  # only the block's first positions are comparable
        if part.any():
            inside = np.arange(b0, b1)[None, :] < prefix[part, None]
            less[part] += ((r[None, b0:b1] < query[part, None]) & inside).sum(axis=1)
            tied[part] += ((r[None, b0:b1] == query[part, None]) & inside).sum(axis=1)
    return float((less.sum() + 0.5 * tied.sum()) / comparable)


def _survival_group_metrics(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> dict[str, float]:
    return {"c_index": _harrell_c(time, event, risk)}


def _metric_function(kind: TaskKind, threshold: float | None) -> Callable[..., dict[str, float]]:
    if kind is TaskKind.BINARY:
        return lambda y, s: _binary_group_metrics(y, s, threshold)
    return {
        TaskKind.MULTICLASS: _multiclass_group_metrics,
        TaskKind.MULTILABEL: _multilabel_group_metrics,
        TaskKind.REGRESSION: _regression_group_metrics,
        TaskKind.SURVIVAL: _survival_group_metrics,
    }[kind]


def _null_reason(kind: TaskKind, metric: str, count: int | None, n: int) -> str:
    """Why a metric is undefined in a group (counts only, never patient values)."""
    if kind is TaskKind.BINARY:
        reasons = {
            "auroc": f"only one outcome class in this group ({count} positive of {n}): AUROC is undefined",
            "sensitivity": "no positive record in this group: sensitivity is undefined",
            "specificity": "no negative record in this group: specificity is undefined",
            "ppv": "no record is predicted positive at the threshold: PPV is undefined",
            "npv": "no record is predicted negative at the threshold: NPV is undefined",
        }
        if metric in reasons:
            return reasons[metric]
    if kind is TaskKind.MULTICLASS and metric == "auroc":
        return "not every class is present in this group: macro one-vs-rest AUROC is undefined"
    if kind is TaskKind.MULTILABEL and metric == "auroc":
        return "no finding has both outcomes in this group: AUROC is undefined"
    if kind is TaskKind.SURVIVAL:
        return f"no comparable pair in this group ({count} events of {n}): C-index is undefined"
    return "undefined on this group's data"


# ------------------------------------------------------------------------------------------------ validation
def _validate(kind: TaskKind, groups: Mapping[str, pd.Series], y, scores, threshold, class_names, time, event,
              min_n, owner: str) -> tuple[tuple[np.ndarray, ...], np.ndarray | None, int]:
    """Checked outcome arrays (in metric-function order), the outcome strata and n."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 0 or s.shape[0] == 0:
        raise DataValidationError(f"{owner}: 'scores' is empty; at least one evaluated record is needed.")
    n = s.shape[0]
    if not np.all(np.isfinite(s)):
        raise DataValidationError(f"{owner}: 'scores' contains non-finite values; expected finite model outputs.")
    if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 1:
        raise invalid_parameter("min_n", owner, "an int >= 1", min_n)
    if not isinstance(groups, Mapping):  # empty is allowed: overall only, and the file says no attribute was found
        raise invalid_parameter("groups", owner, "a dict {attribute: pandas Series of group labels}",
                                type(groups).__name__)
    for name, labels in groups.items():
        if not isinstance(labels, pd.Series) or len(labels) != n:
            length = len(labels) if hasattr(labels, "__len__") else None
            raise DataValidationError(
                f"{owner}: group attribute '{name}' must be a pandas Series with one label per evaluated record "
                f"({n}); got {type(labels).__name__} of length {length}."
            )
    if kind is TaskKind.SURVIVAL:
        if time is None or event is None:
            raise invalid_parameter("time", owner, "the follow-up times and event indicators (time=, event=) of a "
                                    "survival task", None)
        t, e = np.asarray(time, dtype=np.float64), np.asarray(event, dtype=np.float64)
        if t.shape != (n,) or e.shape != (n,) or s.ndim != 1:
            raise DataValidationError(f"{owner}: 'time', 'event' and 'scores' must all have shape ({n},); got "
                                      f"{t.shape}, {e.shape} and {s.shape}.")
        if not np.isin(e, (0, 1)).all():
            raise DataValidationError(f"{owner}: 'event' must hold 0/1 (1 = event observed).")
        return (t, e.astype(np.int64), s), e.astype(np.int64), n
    if y is None:
        raise invalid_parameter("y", owner, f"the true outcomes of a {kind} task", None)
    yy = np.asarray(y, dtype=np.float64)
    if yy.shape[0] != n:
        raise DataValidationError(f"{owner}: 'y' has {yy.shape[0]} rows and 'scores' {n}; they must match.")
    if kind is TaskKind.BINARY:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number) \
                or not 0.0 <= float(threshold) <= 1.0:
            raise invalid_parameter("threshold", owner, "the operating threshold in [0, 1] chosen on validation "
                                    "(thresholds.json 'threshold')", threshold)
        if yy.ndim != 1 or s.ndim != 1 or not np.isin(yy, (0, 1)).all():
            raise DataValidationError(f"{owner}: a binary task needs 'y' (n,) of 0/1 and 'scores' (n,) of "
                                      f"P(positive); got shapes {yy.shape} and {s.shape}.")
        if (s < 0).any() or (s > 1).any():
            raise DataValidationError(f"{owner}: binary 'scores' must be probabilities in [0, 1]. Pass P(positive), "
                                      "not logits.")
        yi = yy.astype(np.int64)
        return (yi, s), yi, n
    if kind is TaskKind.MULTICLASS:
        if s.ndim != 2 or yy.ndim != 1:
            raise DataValidationError(f"{owner}: a multiclass task needs 'y' (n,) of class indices and 'scores' "
                                      f"(n, K); got shapes {yy.shape} and {s.shape}.")
        if not np.isin(yy, np.arange(s.shape[1])).all():
            raise DataValidationError(f"{owner}: 'y' must hold class indices 0..{s.shape[1] - 1}.")
        if class_names is not None and len(class_names) != s.shape[1]:
            raise invalid_parameter("class_names", owner, f"{s.shape[1]} names, one per column of 'scores'",
                                    class_names)
        yi = yy.astype(np.int64)
        return (yi, s), yi, n
    if kind is TaskKind.MULTILABEL:
        if s.ndim != 2 or yy.shape != s.shape or not np.isin(yy, (0, 1)).all():
            raise DataValidationError(f"{owner}: a multilabel task needs 'y' and 'scores' of the same shape (n, K), "
                                      f"'y' 0/1; got {yy.shape} and {s.shape}.")
        return (yy, s), None, n
    if kind is TaskKind.REGRESSION:
        if yy.ndim != 1 or s.ndim != 1 or not np.all(np.isfinite(yy)):
            raise DataValidationError(f"{owner}: a regression task needs finite 'y' (n,) and 'scores' (n,); got "
                                      f"shapes {yy.shape} and {s.shape}.")
        return (yy, s), None, n
    raise invalid_parameter("kind", owner, "one of binary, multiclass, multilabel, regression, survival", str(kind))


def _kind(kind: Any, owner: str) -> TaskKind:
    try:
        return TaskKind(kind)
    except ValueError:
        raise invalid_parameter("kind", owner, "one of binary, multiclass, multilabel, regression, survival",
                                kind) from None


# ------------------------------------------------------------------------------------------------ audit
def fairness_audit(
    kind: TaskKind | str,
    groups: Mapping[str, pd.Series],
    y=None,
    scores=None,
    *,
    threshold: float | None = None,
    class_names: Sequence[str] | None = None,
    time=None,
    event=None,
    intersections: bool = True,
    min_n: int = 30,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-group performance with bootstrap CIs and gaps to the overall value: the content of ``fairness.json``.

    Args:
        kind: the task kind (``binary``, ``multiclass``, ``multilabel``, ``regression``, ``survival``).
        groups: ``{attribute: labels}``, one label per record, positionally aligned with ``scores`` (see
            :func:`group_attributes`); a missing label is the group ``"missing"``.
        y: truth: binary 0/1 ``(n,)`` (1 = positive), class indices ``(n,)``, multilabel 0/1 ``(n, K)``, regression
            target ``(n,)``. None for survival.
        scores: binary P(positive) ``(n,)``; multiclass probabilities ``(n, K)``; multilabel ``(n, K)``; regression
            prediction ``(n,)``; survival log relative risk ``(n,)`` (higher = earlier event).
        threshold: binary operating point chosen on validation (positive when ``score >= threshold``); required
            for binary tasks.
        class_names: multiclass/multilabel names of the K columns (recorded in the output only).
        time: survival follow-up times ``(n,)``.
        event: survival event indicators ``(n,)``, 1 = event observed, 0 = censored.
        intersections: also audit every pair of attributes (``"sex × age_band"``).
        min_n: groups smaller than this are flagged ``reliable: false`` with a warning; their metrics are still
            computed when defined.
        n_resamples: bootstrap resamples per attribute.
        confidence: CI coverage in (0, 1).
        seed: bootstrap seed (same seed, same intervals).

    Returns:
        JSON-ready dict: ``schema``, ``kind``, settings, ``metrics`` (names), ``definitions``, ``overall``
        (``n``, ``n_positive``/``n_events``, ``metrics``: ``{metric: {value, ci_low, ci_high}}``), ``attributes``
        (``{attribute: {"columns": [...], "groups": {group: {"n", "n_positive"|"n_events", "reliable",
        "warning", "metrics": {metric: {value, ci_low, ci_high, gap, gap_ci_low, gap_ci_high}}, "reasons":
        {metric: why null}}}}}``) and ``gaps_beyond_ci``: every (attribute, group, metric) whose gap CI excludes 0,
        largest |gap| first. Undefined values are null.

    Raises:
        InvalidParameterError: unknown ``kind``, a binary task without ``threshold``, bad ``min_n`` or bootstrap
            settings.
        DataValidationError: arrays of the wrong shape or content, a group Series of the wrong length.
    """
    owner = "fairness_audit"
    kind = _kind(kind, owner)
    arrays, strata, n = _validate(kind, groups, y, scores, threshold, class_names, time, event, min_n, owner)
    fn = _metric_function(kind, None if threshold is None else float(threshold))
    names = METRICS[kind]
    count_name = "n_events" if kind is TaskKind.SURVIVAL else "n_positive" if kind is TaskKind.BINARY else None
    count_of = (lambda idx: int(arrays[1][idx].sum())) if kind is TaskKind.SURVIVAL else \
        (lambda idx: int(arrays[0][idx].sum())) if kind is TaskKind.BINARY else (lambda idx: None)

    attributes = {name: np.array([_label(v) for v in labels.to_numpy()], dtype=object)
                  for name, labels in groups.items()}
    columns = {name: [name] for name in attributes}
    if intersections:
        for a, b in itertools.combinations(list(groups), 2):
            name = f"{a}{INTERSECTION}{b}"
            attributes[name] = np.array([f"{u}{INTERSECTION}{v}" for u, v in zip(attributes[a], attributes[b],
                                                                                 strict=True)], dtype=object)
            columns[name] = [a, b]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined metrics on a resample are NaN by design
        overall_table = bootstrap_metrics(fn, arrays, strata=strata, n_resamples=n_resamples, confidence=confidence,
                                          seed=seed)
        everyone = np.ones(n, dtype=bool)
        overall = {"n": n, **({count_name: count_of(everyone)} if count_name else {}),
                   "metrics": {m: overall_table[m] for m in names}}
        audited: dict[str, Any] = {}
        for name, labels in attributes.items():
            audited[name] = {"columns": columns[name],
                             "groups": _audit_attribute(kind, fn, names, labels, arrays, strata, count_name, count_of,
                                                        min_n, n_resamples, confidence, seed)}

    beyond = gaps_beyond_ci(audited)
    return {
        "schema": SCHEMA,
        "kind": str(kind),
        "threshold": None if threshold is None else float(threshold),
        "class_names": None if class_names is None else [str(c) for c in class_names],
        "min_n": min_n,
        "n_resamples": n_resamples,
        "confidence": confidence,
        "seed": seed,
        "bootstrap": "percentile; resampled within group x outcome strata; gap = group - overall on each resample",
        "metrics": list(names),
        "definitions": {m: DEFINITIONS[m] for m in (*names, "gap")},
        "overall": overall,
        "attributes": audited,
        "gaps_beyond_ci": beyond,
        "mitigation": None,
    }


def gaps_beyond_ci(audited: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (attribute, group, metric) whose gap to the overall value has a CI excluding 0, largest first."""
    beyond = []
    for name, entry in audited.items():
        for group, g in entry["groups"].items():
            for metric, m in g["metrics"].items():
                low, high = m["gap_ci_low"], m["gap_ci_high"]
                if low is not None and high is not None and (low > 0 or high < 0):
                    beyond.append({"attribute": name, "group": group, "metric": metric, "gap": m["gap"],
                                   "gap_ci_low": low, "gap_ci_high": high, "reliable": g["reliable"]})
    beyond.sort(key=lambda row: -abs(row["gap"]))
    return beyond


def _audit_attribute(kind, fn, names, labels, arrays, strata, count_name, count_of, min_n, n_resamples, confidence,
                     seed) -> dict[str, Any]:
    group_names = sorted(set(labels), key=str)
    codes = pd.Categorical(labels, categories=group_names).codes.astype(np.int64)
    n_strata = 1 if strata is None else int(strata.max()) + 1
    combined = codes if strata is None else codes * n_strata + strata

    def per_group(code_arr, *arrs):
        out = {}
        overall = fn(*arrs)
        for g in range(len(group_names)):
            mask = code_arr == g
            values = fn(*(a[mask] for a in arrs))
            for m in names:
                out[f"{g}\tvalue\t{m}"] = values[m]
                out[f"{g}\tgap\t{m}"] = values[m] - overall[m]
        return out

    table = bootstrap_metrics(per_group, (codes, *arrays), strata=combined, n_resamples=n_resamples,
                              confidence=confidence, seed=seed)
    result: dict[str, Any] = {}
    for g, group in enumerate(group_names):
        idx = codes == g
        size = int(idx.sum())
        count = count_of(idx)
        entry: dict[str, Any] = {"n": size}
        if count_name:
            entry[count_name] = count
        entry["reliable"] = size >= min_n
        entry["warning"] = None if size >= min_n else f"n = {size} < {min_n}: estimates unreliable"
        metrics, reasons = {}, {}
        for m in names:
            value, gap = table[f"{g}\tvalue\t{m}"], table[f"{g}\tgap\t{m}"]
            metrics[m] = {**value, "gap": gap["value"], "gap_ci_low": gap["ci_low"], "gap_ci_high": gap["ci_high"]}
            if value["value"] is None:
                reasons[m] = _null_reason(kind, m, count, size)
            elif value["ci_low"] is None:
                reasons[m] = "defined on the group but on fewer than half of the bootstrap resamples: no CI"
        entry["metrics"] = metrics
        entry["reasons"] = reasons
        result[str(group)] = entry
    return result


# ------------------------------------------------------------------------------------------------ mitigation
def _score_estimator():
    """A scikit-learn classifier whose 'features' are the model's own P(positive): it lets ThresholdOptimizer
    (prefit=True) post-process scores the network already produced, without refitting anything."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class PrecomputedScores(ClassifierMixin, BaseEstimator):
        classes_ = np.array([0, 1])

        def fit(self, X, y):  # noqa: N803 (scikit-learn's name)
            return self

        def __sklearn_is_fitted__(self) -> bool:
            return True

        def predict_proba(self, X):  # noqa: N803
            s = np.asarray(X, dtype=np.float64)[:, 0]
            return np.column_stack([1.0 - s, s])

    return PrecomputedScores()


def _rates(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    pos, neg = y == 1, y == 0
    return {
        "accuracy": float((pred == y).mean()),
        "sensitivity": float(pred[pos].mean()) if pos.any() else math.nan,
        "specificity": float(1.0 - pred[neg].mean()) if neg.any() else math.nan,
    }


def mitigate_thresholds(
    y_val,
    scores_val,
    groups_val: pd.Series,
    y_test,
    scores_test,
    groups_test: pd.Series,
    *,
    threshold: float,
    attribute: str,
    constraint: FairnessConstraint | str = FairnessConstraint.EQUALIZED_ODDS,
    objective: FairnessObjective | str = FairnessObjective.BALANCED_ACCURACY,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Group-specific thresholds fitted on validation (fairlearn ``ThresholdOptimizer``), applied to test.

    ThresholdOptimizer (Hardt et al. 2016) chooses, per group, a threshold on the unchanged scores — for some groups
    a random mix of two thresholds, or of a threshold and a constant — so that the ``constraint`` holds on
    validation while the ``objective`` is maximised. The randomised decisions are drawn with ``seed`` (reproducible).
    Test groups never seen in validation keep the original threshold and are listed in ``unseen_groups``.

    Args:
        y_val: validation truth ``(n_val,)``, 1 = positive.
        scores_val: validation P(positive) ``(n_val,)``.
        groups_val: validation group labels ``(n_val,)`` of the sensitive attribute.
        y_test: test truth ``(n_test,)``.
        scores_test: test P(positive) ``(n_test,)``.
        groups_test: test group labels ``(n_test,)``.
        threshold: the model's single operating threshold (the "before" decisions: ``score >= threshold``).
        attribute: name of the sensitive attribute (recorded in the output).
        constraint: :class:`FairnessConstraint`.
        objective: :class:`FairnessObjective`.
        n_resamples: bootstrap resamples of the test split.
        confidence: CI coverage.
        seed: bootstrap seed and ThresholdOptimizer's ``random_state``.

    Returns:
        JSON-ready dict: ``status`` (``fitted`` or ``not_fitted`` with ``reason``), ``method``, ``constraint``,
        ``objective``, ``attribute``, ``fitted_on: "val"``, ``applied_to: "test"``, ``thresholds`` (per group the
        rules ThresholdOptimizer chose), ``groups`` (per test group ``n``, ``n_positive``, ``before``/``after``
        sensitivity and specificity with CIs), ``gaps`` (largest − smallest group sensitivity and specificity,
        before and after, with CIs), ``overall`` (accuracy, sensitivity, specificity ``before``/``after`` and the
        paired ``change`` after − before, with CIs) and ``unseen_groups``.

    Raises:
        MissingDependencyError: fairlearn is not installed.
        InvalidParameterError: bad ``constraint``, ``objective`` or ``threshold``.
        DataValidationError: arrays of the wrong shape or content.
    """
    owner = "mitigate_thresholds"
    try:
        constraint = FairnessConstraint(constraint)
    except ValueError:
        raise invalid_parameter("constraint", owner, f"one of {[c.value for c in FairnessConstraint]}",
                                constraint) from None
    try:
        objective = FairnessObjective(objective)
    except ValueError:
        raise invalid_parameter("objective", owner, f"one of {[o.value for o in FairnessObjective]}",
                                objective) from None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number) \
            or not 0.0 <= float(threshold) <= 1.0:
        raise invalid_parameter("threshold", owner, "the operating threshold in [0, 1] chosen on validation",
                                threshold)
    split_data = {}
    inputs = {"val": (y_val, scores_val, groups_val), "test": (y_test, scores_test, groups_test)}
    for split, (y, s, g) in inputs.items():
        (yy, ss), _, n = _validate(TaskKind.BINARY, {attribute: g}, y, s, threshold, None, None, None, 1,
                                   f"{owner} ({split} split)")
        split_data[split] = (yy, ss, np.array([_label(v) for v in g], dtype=object))
    try:
        from fairlearn.postprocessing import ThresholdOptimizer
    except ImportError:
        raise MissingDependencyError("Fairness mitigation needs fairlearn: pip install 'fairlearn>=0.13'.") from None

    y_v, s_v, g_v = split_data["val"]
    y_t, s_t, g_t = split_data["test"]
    before = (s_t >= threshold).astype(np.int64)
    result: dict[str, Any] = {
        "status": "not_fitted", "reason": None,
        "method": "fairlearn ThresholdOptimizer (Hardt et al. 2016) on the model's fixed scores (prefit)",
        "constraint": str(constraint), "objective": str(objective), "attribute": attribute,
        "fitted_on": "val", "applied_to": "test", "threshold_before": float(threshold), "random_state": seed,
        "thresholds": {}, "groups": {}, "gaps": {}, "overall": {}, "unseen_groups": [],
    }
    degenerate = [(str(g), int((g_v == g).sum()), int(y_v[g_v == g].sum())) for g in sorted(set(g_v), key=str)
                  if len(np.unique(y_v[g_v == g])) < 2]
    if degenerate:
        listed = "; ".join(f"'{g}' (n = {n}, {k} positive)" for g, n, k in degenerate)
        result["reason"] = (f"ThresholdOptimizer needs both outcome classes in every validation group of "
                            f"'{attribute}'; only one class in: {listed}. Merge small groups or audit without "
                            "mitigation.")
        return result
    optimizer = ThresholdOptimizer(estimator=_score_estimator(), constraints=str(constraint),
                                   objective=str(objective), prefit=True, predict_method="predict_proba")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer.fit(s_v[:, None], y_v, sensitive_features=g_v)
    except ValueError as error:  # fairlearn's own refusals (degenerate labels, unsupported settings)
        result["reason"] = f"ThresholdOptimizer could not be fitted on validation: {error}"
        return result

    seen = set(g_v)
    unseen = sorted({str(g) for g in g_t if g not in seen})
    after = before.copy()
    known = np.array([g in seen for g in g_t])
    if known.any():
        after[known] = optimizer.predict(s_t[known, None], sensitive_features=g_t[known],
                                         random_state=seed).astype(np.int64)
    result["status"] = "fitted"
    result["unseen_groups"] = unseen
    result["thresholds"] = {str(g): _describe_rule(rule)
                            for g, rule in optimizer.interpolated_thresholder_.interpolation_dict.items()}

    group_names = sorted(set(g_t), key=str)
    codes = pd.Categorical(g_t, categories=group_names).codes.astype(np.int64)

    def table(y, b, a, code_arr):
        out: dict[str, float] = {}
        rb, ra = _rates(y, b), _rates(y, a)
        for m in ("accuracy", "sensitivity", "specificity"):
            out[f"overall\tbefore\t{m}"], out[f"overall\tafter\t{m}"] = rb[m], ra[m]
            out[f"overall\tchange\t{m}"] = ra[m] - rb[m]
        per = {"before": {"sensitivity": [], "specificity": []}, "after": {"sensitivity": [], "specificity": []}}
        for g in range(len(group_names)):
            mask = code_arr == g
            for when, pred in (("before", b), ("after", a)):
                rates = _rates(y[mask], pred[mask])
                for m in ("sensitivity", "specificity"):
                    out[f"{g}\t{when}\t{m}"] = rates[m]
                    if math.isfinite(rates[m]):
                        per[when][m].append(rates[m])
        for when, rates in per.items():
            for m, values in rates.items():
                out[f"gap\t{when}\t{m}"] = max(values) - min(values) if len(values) >= 2 else math.nan
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = bootstrap_metrics(table, (y_t, before, after, codes), strata=codes * 2 + y_t, n_resamples=n_resamples,
                                 confidence=confidence, seed=seed)
    result["overall"] = {when: {m: boot[f"overall\t{when}\t{m}"] for m in ("accuracy", "sensitivity", "specificity")}
                         for when in ("before", "after", "change")}
    result["gaps"] = {m: {when: boot[f"gap\t{when}\t{m}"] for when in ("before", "after")}
                      for m in ("sensitivity", "specificity")}
    for g, group in enumerate(group_names):
        mask = codes == g
        result["groups"][str(group)] = {
            "n": int(mask.sum()), "n_positive": int(y_t[mask].sum()), "seen_in_validation": group in seen,
            **{when: {m: boot[f"{g}\t{when}\t{m}"] for m in ("sensitivity", "specificity")}
               for when in ("before", "after")},
        }
    return result


def _describe_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """ThresholdOptimizer's per-group decision rule as JSON: with probability ``p`` apply threshold operation k;
    with probability ``p_ignore`` output the constant instead."""

    def operation(op) -> str:
        threshold = float(op.threshold)
        return f"score {op.operator} {threshold:.6g}" if math.isfinite(threshold) else (
            "always positive" if threshold < 0 else "always negative")

    described = {"rules": [{"probability": float(rule["p0"]), "decision": operation(rule["operation0"])},
                           {"probability": float(rule["p1"]), "decision": operation(rule["operation1"])}]}
    if "p_ignore" in rule:
        described["p_ignore"] = float(rule["p_ignore"])
        described["prediction_constant"] = float(rule["prediction_constant"])
    return described
