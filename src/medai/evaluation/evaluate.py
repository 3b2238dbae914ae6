"""Evaluation of one model's scores on one split: every metric with a stratified bootstrap CI, the binary
operating points, the subgroup audit and the missing-data profile. The same functions serve the main model,
the in-run baselines and external validation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from medai.core.config import EvaluationConfig, TaskKind
from medai.evaluation.bootstrap import bootstrap_metrics
from medai.evaluation.metrics import (
    binary_metrics, compute_confusion_rates, multiclass_metrics, multilabel_metrics, regression_metrics,
)
from medai.evaluation.operating_point import choose_threshold
from medai.evaluation.survival import survival_metrics

MetricTable = dict[str, dict[str, float | None]]

#: Age bands of the subgroup audit (years): [lower, upper).
AGE_BANDS = ((0, 50, "<50"), (50, 65, "50-64"), (65, 80, "65-79"), (80, 200, ">=80"))
SEX_COLUMNS = ("sex", "gender")


@dataclass
class SplitOutcome:
    """Truth and scores of one split, in the form the metric functions take.

    ``scores``: binary P(positive) ``(n,)``; multiclass ``(n, K)``; regression prediction ``(n,)``; survival log
    relative risk ``(n,)`` with ``surv_grid`` = S(t|x) on ``grid`` ``(n, len(grid))``.
    """

    kind: TaskKind
    scores: np.ndarray
    y: np.ndarray | None = None
    time: np.ndarray | None = None
    event: np.ndarray | None = None
    surv_grid: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def strata(self) -> np.ndarray | None:
        if self.kind is TaskKind.SURVIVAL:
            return self.event.astype(int)
        if self.kind in (TaskKind.REGRESSION, TaskKind.MULTILABEL):
            return None  # multi-label: K outcomes per record, plain (unstratified) bootstrap
        return self.y

    def subset(self, mask: np.ndarray) -> SplitOutcome:
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return SplitOutcome(self.kind, self.scores[mask], pick(self.y), pick(self.time), pick(self.event),
                            pick(self.surv_grid))


@dataclass
class MetricContext:
    """What a metric needs beyond truth and scores (fixed across bootstrap resamples)."""

    class_names: list[str] | None = None
    threshold: float | None = None
    train_time: np.ndarray | None = None
    train_event: np.ndarray | None = None
    horizons: list[float] | None = None
    grid: np.ndarray | None = None
    label_thresholds: list[float] | None = None


def metric_function(outcome: SplitOutcome, context: MetricContext) -> tuple[Callable[..., dict], tuple]:
    """The metric function and the arrays the bootstrap resamples for ``outcome.kind``."""
    kind = outcome.kind
    if kind is TaskKind.BINARY:
        return (lambda y, s: binary_metrics(y, s, context.threshold, context.class_names)), (outcome.y, outcome.scores)
    if kind is TaskKind.MULTICLASS:
        return (lambda y, s: multiclass_metrics(y, s, context.class_names)), (outcome.y, outcome.scores)
    if kind is TaskKind.MULTILABEL:
        return ((lambda y, s: multilabel_metrics(y, s, context.label_thresholds, context.class_names)),
                (outcome.y, outcome.scores))
    if kind is TaskKind.REGRESSION:
        return regression_metrics, (outcome.y, outcome.scores)

    def survival(time, event, risk, surv=None):
        return survival_metrics(time, event, risk, train_time=context.train_time, train_event=context.train_event,
                                horizons=context.horizons, surv_probs=surv, grid=context.grid)

    arrays = (outcome.time, outcome.event, outcome.scores)
    if outcome.surv_grid is not None:
        arrays = arrays + (outcome.surv_grid,)
    return survival, arrays


def evaluate_split(outcome: SplitOutcome, context: MetricContext, config: EvaluationConfig, seed: int) -> MetricTable:
    """All metrics of ``outcome`` with bootstrap CIs (stratified by class / event)."""
    fn, arrays = metric_function(outcome, context)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined metrics on a resample are NaN by design, counted by the bootstrap
        return bootstrap_metrics(fn, arrays, strata=outcome.strata, n_resamples=config.n_resamples,
                                 confidence=config.confidence, seed=seed)


def operating_points(val: SplitOutcome, test: SplitOutcome, config: EvaluationConfig, seed: int) -> dict[str, Any]:
    """Youden and fixed-sensitivity thresholds chosen on validation, with their validation and test metrics."""
    target = config.target_sensitivity
    points = {
        "youden": choose_threshold(val.y, val.scores, method="youden"),
        f"sensitivity_{target:.2f}": choose_threshold(val.y, val.scores, method="sensitivity",
                                                      target_sensitivity=target),
    }
    result: dict[str, Any] = {}
    for name, threshold in points.items():
        entry: dict[str, Any] = {"threshold": float(threshold), "chosen_on": "val"}
        for split_name, outcome in (("val", val), ("test", test)):
            fn = lambda y, s, t=threshold: compute_confusion_rates(y, (s >= t).astype(int))  # noqa: E731
            entry[split_name] = bootstrap_metrics(fn, (outcome.y, outcome.scores), strata=outcome.y,
                                                  n_resamples=config.n_resamples, confidence=config.confidence,
                                                  seed=seed)
        result[name] = entry
    return result


def subgroup_columns(frame: pd.DataFrame, requested: tuple[str, ...] | None) -> dict[str, pd.Series]:
    """Grouping variables for the audit: the requested columns, or sex/gender and age bands when present."""
    lowered = {c.lower(): c for c in frame.columns}
    names = list(requested) if requested else [lowered[c] for c in (*SEX_COLUMNS, "age") if c in lowered]
    groups: dict[str, pd.Series] = {}
    for column in names:
        if column not in frame.columns:
            continue
        values = frame[column]
        if column.lower() == "age" and pd.api.types.is_numeric_dtype(values):
            labels = pd.Series("missing", index=values.index, dtype=object)
            for low, high, label in AGE_BANDS:
                labels[(values >= low) & (values < high)] = label
            groups["age_band"] = labels
        else:
            groups[column] = values.map(lambda v: "missing" if pd.isna(v) else _group_label(v))
    return groups


def evaluate_subgroups(
    groups: dict[str, pd.Series], outcome: SplitOutcome, context: MetricContext, overall: MetricTable,
    config: EvaluationConfig, seed: int,
) -> dict[str, Any]:
    """Per attribute and group: n, positives/events, metrics with CIs and their gap to the overall value."""
    keep = {
        TaskKind.BINARY: ("auroc", "sensitivity", "specificity", "ppv", "npv", "brier", "ece"),
        TaskKind.MULTICLASS: ("auroc", "accuracy", "f1_macro"),
        TaskKind.REGRESSION: ("rmse", "mae", "r2"),
        TaskKind.SURVIVAL: ("c_index",),
    }[outcome.kind]
    result: dict[str, Any] = {}
    for attribute, labels in groups.items():
        result[attribute] = {}
        for group in sorted(labels.unique(), key=str):
            mask = (labels == group).to_numpy()
            part = outcome.subset(mask)
            count_name = "n_events" if outcome.kind is TaskKind.SURVIVAL else "n_positive"
            count = int(part.event.sum()) if outcome.kind is TaskKind.SURVIVAL else (
                int((part.y == 1).sum()) if outcome.kind is TaskKind.BINARY else None)
            entry: dict[str, Any] = {"n": int(mask.sum()), count_name: count, "metrics": {}, "gap": {}, "warning": None}
            if mask.sum() < config.min_subgroup_n:
                entry["warning"] = f"n = {int(mask.sum())} < {config.min_subgroup_n}: estimates unreliable"
            if mask.sum() >= 5 and (part.strata is None or len(np.unique(part.strata)) > 1):
                table = evaluate_split(part, context, config, seed)
                entry["metrics"] = {k: table[k] for k in keep if k in table}
                entry["gap"] = {
                    k: (None if v["value"] is None or overall.get(k, {}).get("value") is None
                        else v["value"] - overall[k]["value"])
                    for k, v in entry["metrics"].items()
                }
            else:
                entry["warning"] = (entry["warning"] or "") + ("; " if entry["warning"] else "") + \
                    "too few records or only one outcome class: metrics not computed"
            result[attribute][str(group)] = entry
    return result


def missingness_profile(features: pd.DataFrame, split_of: np.ndarray) -> dict[str, Any]:
    """Per feature column: missing count and fraction overall and by split."""
    profile = {}
    for column in features.columns:
        missing = features[column].isna().to_numpy()
        profile[column] = {
            "n_missing": int(missing.sum()),
            "fraction": float(missing.mean()),
            "by_split": {s: float(missing[split_of == s].mean()) for s in ("train", "val", "test")
                         if (split_of == s).any()},
        }
    return profile


def _group_label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
