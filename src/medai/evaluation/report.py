"""The clinical evaluation report: one self-contained HTML page built from a finished run directory.

The report only *reads* what a run wrote (see ``docs/run-directory.md``): metrics and their confidence intervals
come from ``metrics.json`` and are never recomputed here; curves (ROC, precision-recall, reliability, decision
curve, Kaplan-Meier) are drawn from ``predictions.csv``. The page has no external resources — no scripts, fonts or
style sheets from elsewhere — so it can be archived, e-mailed or opened on an air-gapped hospital workstation.
Figures are PNG files embedded as base64 ``data:`` URIs.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from medai.core.errors import DataValidationError
from medai.core.outputs import PARTIAL_SUFFIX

__all__ = ["write_report"]

_DPI = 100
_SPLIT_ORDER = ("train", "val", "test", "external")
_SPLIT_LABELS = {"train": "training", "val": "validation", "test": "test", "external": "external"}
_NOT_COMPUTABLE = "not computable on this split (see the warnings at the top of the report)"
_NOT_REPORTED = "not reported for this split"

# The metric names medai.evaluation writes, in the order the tables list them.
_METRIC_LABELS = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1_macro": "Macro F1",
    "brier": "Brier score",
    "ece": "Expected calibration error (ECE)",
    "ece_before_recalibration": "ECE before recalibration",
    "conformal_target": "Conformal target coverage",
    "conformal_coverage": "Conformal coverage (truth in the prediction set)",
    "abstain_rate": "Abstain rate (refer to clinician)",
    "mean_set_size": "Mean prediction-set size",
    "mean_interval_width": "Mean conformal interval width",
    "calibration_slope": "Calibration slope",
    "calibration_intercept": "Calibration intercept",
    "mae": "Mean absolute error",
    "rmse": "Root mean squared error",
    "r2": "R²",
    "c_index": "C-index (Harrell)",
    "c_index_uno": "C-index (Uno)",
    "ibs": "Integrated Brier score (IBS)",
}
# Time-dependent AUC at horizon t, named by medai.evaluation.survival.format_horizon: ``td_auc_365``.
_TD_AUC_KEY = re.compile(r"^td_auc_(?P<t>\d+(?:\.\d+)?)$")
_SURV_COLUMN = re.compile(r"^surv_(?P<t>\d+(?:\.\d+)?)$")
_CALIBRATION_KEYS = ("ece", "calibration_slope", "calibration_intercept", "brier")
_SURVIVAL_KEYS = ("c_index", "c_index_uno", "ibs")
_OPERATING_POINT_METRICS = ("sensitivity", "specificity", "ppv", "npv")


# ----------------------------------------------------------------------------------------------------------------
# What the template receives: plain data, every string escaped by Jinja2's autoescape.
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One table cell: its text, an optional hover explanation and an optional CSS class."""

    text: str
    title: str | None = None
    css: str | None = None


@dataclass
class Table:
    """A table with a header row; ``rows`` holds (row label, cells, flag message or None)."""

    columns: list[str]
    rows: list[tuple[str, list[Cell], str | None]] = field(default_factory=list)
    caption: str | None = None


@dataclass(frozen=True)
class Figure:
    """An embedded PNG figure (base64 text) with its alternative text and caption."""

    png: str
    alt: str
    caption: str | None = None


Block = Figure | Table | str  # what a section shows, in order; a str is a note


def _section(id_: str, title: str, blocks: Sequence[Block],
             details: list[tuple[str, list[str]]] | None = None) -> dict[str, Any]:
    return {"id": id_, "title": title, "blocks": list(blocks), "details": details or []}


# ----------------------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------------------
def write_report(run_dir: Path, out_path: Path | None = None) -> Path:
    """Write the self-contained clinical evaluation report of a run directory.

    Reads ``metrics.json``, ``predictions.csv`` and ``run.json`` (required) and, when present, ``baselines.json``,
    ``missingness.json``, ``operating_points.json``, ``subgroups.json`` and ``model/model_card.json``; a section
    whose file is absent is left out. The page is written to a temporary file beside ``out_path`` and renamed, so
    a reader never sees a half-written report.

    Args:
        run_dir: a run directory as written by ``medai train`` or ``medai evaluate`` (``docs/run-directory.md``).
        out_path: where to write the HTML; defaults to ``run_dir / "report.html"``.

    Returns:
        The path of the written report.

    Raises:
        DataValidationError: a required file is missing, or a file does not follow the run-directory format.
    """
    run_dir = Path(run_dir)
    out_path = Path(out_path) if out_path is not None else run_dir / "report.html"

    metrics = _read_required_json(run_dir, "metrics.json", "the metrics with 95 % CIs per split")
    run = _read_required_json(run_dir, "run.json", "the description of what was run")
    predictions = _read_predictions(run_dir)
    _check_metrics(metrics, run_dir / "metrics.json")

    if (run.get("task") or {}).get("kind") == "segmentation":  # its sections: medai.evaluation.segmentation_report
        from medai.evaluation.segmentation_report import segmentation_context

        context = segmentation_context(run_dir, run, metrics, predictions)
    else:
        kind = _task_kind(run, run_dir / "run.json")
        context = _build_context(run_dir, run, metrics, predictions, kind)
    html = _render(context)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_path, html)
    return out_path


# ----------------------------------------------------------------------------------------------------------------
# Reading and checking the run directory
# ----------------------------------------------------------------------------------------------------------------
def _read_required_json(run_dir: Path, name: str, what: str) -> dict[str, Any]:
    path = run_dir / name
    if not path.is_file():
        raise DataValidationError(
            f"Run directory '{run_dir}' has no {name} ({what}). It is written by `medai train` (or `medai evaluate`"
            f" for an external set); point write_report at a finished run directory or re-run the training."
        )
    return _read_json(path)


def _read_optional_json(path: Path) -> dict[str, Any] | None:
    return _read_json(path) if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataValidationError(
            f"'{path}' is not valid JSON ({error.msg} at line {error.lineno}); re-create it with `medai train`."
        ) from None
    if not isinstance(content, dict):
        raise DataValidationError(f"'{path}' must hold a JSON object; got {type(content).__name__}.")
    return content


def _read_predictions(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "predictions.csv"
    if not path.is_file():
        raise DataValidationError(
            f"Run directory '{run_dir}' has no predictions.csv (one row per evaluated record, with truth and"
            f" scores). It is written by `medai train` (or `medai evaluate` for an external set); point"
            f" write_report at a finished run directory or re-run the training."
        )
    frame = pd.read_csv(path, dtype={"id": str, "split": str})
    missing = [c for c in ("id", "split") if c not in frame.columns]
    if missing:
        raise DataValidationError(f"'{path}' lacks the column(s) {missing}; it must start with 'id' and 'split'.")
    return frame


def _check_metrics(metrics: Mapping[str, Any], path: Path) -> None:
    for split, by_metric in metrics.items():
        if not isinstance(by_metric, dict):
            raise DataValidationError(f"'{path}': split '{split}' must map metric names to values.")
        for name, entry in by_metric.items():
            if entry is not None and not (isinstance(entry, dict) and "value" in entry):
                raise DataValidationError(
                    f"'{path}': metric '{name}' of split '{split}' must be null or an object with 'value',"
                    f" 'ci_low' and 'ci_high'; got {entry!r}."
                )


def _task_kind(run: Mapping[str, Any], path: Path) -> str:
    kind = (run.get("task") or {}).get("kind")
    if kind not in ("binary", "multiclass", "multilabel", "regression", "survival"):
        raise DataValidationError(
            f"'{path}': task.kind must be one of 'binary', 'multiclass', 'multilabel', 'regression', 'survival'; "
            f"got {kind!r}."
        )
    return kind


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], kind: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"predictions.csv of a {kind} run lacks the column(s) {missing}; see docs/run-directory.md for the"
            f" columns each task kind writes."
        )
    for column in columns:
        n_missing = int(frame[column].isna().sum())
        if n_missing:
            raise DataValidationError(
                f"predictions.csv has {n_missing} empty value(s) in column '{column}'; every evaluated record"
                f" needs its truth and score. Re-run the evaluation."
            )


# ----------------------------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------------------------
def _is_missing(value: Any) -> bool:
    """None (JSON null) or NaN: a value that could not be computed."""
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _fmt_number(value: float) -> str:
    text = f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return text.replace("-", "−")  # the typographic minus sign: unambiguous beside dashes


def _fmt_metric(entry: Mapping[str, Any] | None, *, reported: bool = True) -> Cell:
    """``0.912 (0.871–0.948)``; a null value renders as ``n/a`` with the reason on hover."""
    if not reported:
        return Cell("—", _NOT_REPORTED, "na")
    if entry is None or _is_missing(entry.get("value")):
        return Cell("n/a", _NOT_COMPUTABLE, "na")
    text = _fmt_number(float(entry["value"]))
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if _is_missing(low) or _is_missing(high):
        return Cell(text, "95 % confidence interval not computable on this split")
    # An en dash between two signed numbers reads as a minus: spell the range out when a bound is negative.
    joiner = " to " if float(low) < 0 or float(high) < 0 else "–"
    return Cell(f"{text} ({_fmt_number(float(low))}{joiner}{_fmt_number(float(high))})")


def _fmt_value(value: Any) -> Cell:
    """A point estimate without interval (e.g. a mean prediction)."""
    return Cell("n/a", _NOT_COMPUTABLE, "na") if _is_missing(value) else Cell(_fmt_number(float(value)))


def _fmt_gap(value: Any) -> Cell:
    if _is_missing(value):
        return Cell("n/a", _NOT_COMPUTABLE, "na")
    return Cell(("+" if float(value) > 0 else "") + _fmt_number(float(value)))


def _fmt_horizon(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else f"{t:g}"


def _metric_label(name: str) -> str:
    match = _TD_AUC_KEY.match(name)
    if match:
        return f"Time-dependent AUC at t = {_fmt_horizon(float(match['t']))}"
    if name.startswith("f1_") and name not in _METRIC_LABELS:
        return f"F1 ({name.removeprefix('f1_')})"
    if name.startswith("auroc_") and name not in _METRIC_LABELS:
        return f"AUROC ({name.removeprefix('auroc_')} vs rest)"
    if name == "cinc2017_score":
        return "CinC 2017 score (mean F1 of N, A, O)"
    return _METRIC_LABELS.get(name, name)


def _ordered_splits(splits: Iterable[str]) -> list[str]:
    splits = list(dict.fromkeys(splits))
    known = [s for s in _SPLIT_ORDER if s in splits]
    return known + sorted(s for s in splits if s not in _SPLIT_ORDER)


def _primary_split(splits: Iterable[str]) -> str | None:
    """The split the figures describe: the held-out test set, else the external set, else validation."""
    splits = list(splits)
    for split in ("test", "external", "val"):
        if split in splits:
            return split
    return splits[0] if splits else None


def _split_label(split: str) -> str:
    return _SPLIT_LABELS.get(split, split)


def _mpl(text: Any) -> str:
    """Make a user string safe for matplotlib: '$' would start mathtext, a leading '_' hides a legend entry."""
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [f"{k}: {v}" for k, v in value.items()]
    return [str(v) for v in value]


# ----------------------------------------------------------------------------------------------------------------
# Figures: one function per figure, each returning base64 PNG text
# ----------------------------------------------------------------------------------------------------------------
def _new_figure(width: float, height: float, nrows: int = 1, height_ratios: Sequence[float] | None = None):
    """A figure on the Agg canvas and its axes (an array of them when ``nrows > 1``)."""
    # The object-oriented API (no pyplot) keeps no global figure registry, so nothing leaks between reports and
    # the caller's interactive backend is untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    gridspec = {"height_ratios": height_ratios} if height_ratios else None
    return fig, fig.subplots(nrows, 1, sharex=nrows > 1, gridspec_kw=gridspec)


def _to_base64(fig) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    fig.clear()
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _legend_metric(name: str, metrics: Mapping[str, Any], key: str) -> str:
    return f"{name} {_fmt_metric(metrics.get(key)).text}" if key in metrics else f"{name} not reported"


def _plot_roc(curves: Sequence[tuple[str, np.ndarray, np.ndarray, str]]) -> str:
    """ROC curves; ``curves`` holds (split label, y_true, y_score, legend suffix)."""
    from sklearn.metrics import roc_curve

    fig, ax = _new_figure(5.2, 4.8)
    for label, y_true, y_score, suffix in curves:
        fpr, tpr, _ = roc_curve(y_true, y_score)
        ax.step(fpr, tpr, where="post", label=f"{_mpl(label)}: {suffix}")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    ax.set(xlabel="1 − specificity (false positive rate)", ylabel="Sensitivity (true positive rate)",
           xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(loc="lower right", fontsize=8)
    return _to_base64(fig)


def _plot_precision_recall(curves: Sequence[tuple[str, np.ndarray, np.ndarray, str]]) -> str:
    from sklearn.metrics import precision_recall_curve

    fig, ax = _new_figure(5.2, 4.8)
    for label, y_true, y_score, suffix in curves:
        precision, recall, _ = precision_recall_curve(y_true, y_score)
        line = ax.step(recall, precision, where="post", label=f"{_mpl(label)}: {suffix}")[0]
        prevalence = float(np.mean(y_true))
        ax.axhline(prevalence, ls=":", color=line.get_color(),
                   label=f"{_mpl(label)} prevalence {prevalence:.3f} (no-skill)")
    ax.set(xlabel="Sensitivity (recall)", ylabel="PPV (precision)", xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(loc="lower left", fontsize=8)
    return _to_base64(fig)


def _plot_reliability(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> str:
    """Reliability diagram (observed fraction with Wilson 95 % intervals) above the histogram of bin counts."""
    from medai.evaluation.calibration import reliability_curve

    curve = reliability_curve(y_true, y_prob, n_bins=n_bins)
    mean_pred = np.asarray(curve["bin_mean_pred"], dtype=float)
    frac_pos = np.asarray(curve["bin_frac_pos"], dtype=float)
    count = np.asarray(curve["bin_count"], dtype=float)
    keep = count > 0
    mean_pred, frac_pos, count = mean_pred[keep], frac_pos[keep], count[keep]
    low, high = _wilson_interval(frac_pos, count)

    fig, (ax, ax_hist) = _new_figure(5.2, 5.6, nrows=2, height_ratios=(3, 1))
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
    ax.errorbar(mean_pred, frac_pos, yerr=_error_bars(frac_pos, low, high), fmt="o-", capsize=3,
                label="model (95 % CI per bin)")
    ax.set(ylabel="Observed fraction positive", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    ax_hist.hist(y_prob, bins=np.linspace(0, 1, n_bins + 1), color="grey", edgecolor="white")
    ax_hist.set(xlabel="Predicted probability", ylabel="Records")
    ax_hist.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
    return _to_base64(fig)


def _error_bars(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    # Clipped at 0: rounding can put a bound a hair on the wrong side of its estimate.
    return np.clip(np.vstack([value - low, high - value]), 0, None)


def _wilson_interval(fraction: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    # Wilson (1927) score interval: stays inside [0, 1] and behaves for the small counts of extreme bins.
    centre = (fraction + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(fraction * (1 - fraction) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def _plot_decision_curve(y_true: np.ndarray, y_prob: np.ndarray, thresholds: np.ndarray,
                         operating_threshold: float | None) -> str:
    """Net benefit (Vickers & Elkin 2006) of the model against treating everyone and treating no one."""
    from medai.evaluation.decision_curve import compute_net_benefit, net_benefit_treat_all

    model = np.asarray(compute_net_benefit(y_true, y_prob, thresholds), dtype=float)
    treat_all = np.asarray(net_benefit_treat_all(y_true, thresholds), dtype=float)
    prevalence = float(np.mean(y_true))

    fig, ax = _new_figure(6.0, 4.2)
    ax.plot(thresholds, model, label="model")
    ax.plot(thresholds, treat_all, ls="--", color="grey", label="treat all")
    ax.axhline(0, color="black", lw=1, label="treat none")
    if operating_threshold is not None:
        ax.axvline(operating_threshold, ls=":", color="tab:red", label=f"operating threshold {operating_threshold:.3f}")
    top = max(prevalence, float(np.nanmax(model)) if np.isfinite(model).any() else 0.0)
    # Treat-all falls steeply below zero; a floor keeps the clinically relevant band readable.
    ax.set(xlabel="Threshold probability", ylabel="Net benefit", xlim=(thresholds[0], thresholds[-1]),
           ylim=(-0.05, max(top * 1.15, 0.05)))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=4, fontsize=8, frameon=False)
    return _to_base64(fig)


def _plot_score_distribution(scores_by_class: Sequence[tuple[str, np.ndarray]], threshold: float | None) -> str:
    fig, ax = _new_figure(6.0, 3.8)
    bins = np.linspace(0, 1, 26)
    for label, scores in scores_by_class:
        ax.hist(scores, bins=bins, alpha=0.55, density=True, label=f"{_mpl(label)} (n = {len(scores)})")
    if threshold is not None:
        ax.axvline(threshold, ls=":", color="black", label=f"operating threshold {threshold:.3f}")
    ax.set(xlabel="Predicted probability of the positive class", ylabel="Density", xlim=(0, 1))
    ax.legend(fontsize=8)
    return _to_base64(fig)


def _plot_roc_one_vs_rest(y_true: np.ndarray, scores: np.ndarray, class_names: Sequence[str]) -> str:
    """One-vs-rest ROC curve per class; ``scores`` has shape (n_records, n_classes)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = _new_figure(5.6, 5.0)
    for k, name in enumerate(class_names):
        positive = y_true == k
        if positive.all() or not positive.any():
            continue  # a class absent from (or alone in) the split has no ROC curve
        fpr, tpr, _ = roc_curve(positive, scores[:, k])
        auc = roc_auc_score(positive, scores[:, k])
        ax.step(fpr, tpr, where="post", label=f"{_mpl(name)}: AUC {auc:.3f} (n = {int(positive.sum())})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    ax.set(xlabel="1 − specificity", ylabel="Sensitivity", xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(loc="lower right", fontsize=8)
    return _to_base64(fig)


def _plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str]) -> str:
    size = 2.5 + 0.6 * len(class_names)
    fig, ax = _new_figure(size, size)
    ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    names = [_mpl(n) for n in class_names]
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black")
    ax.set(xlabel="Predicted class", ylabel="True class")
    return _to_base64(fig)


def _plot_predicted_vs_observed(observed: np.ndarray, predicted: np.ndarray, target_name: str) -> str:
    fig, ax = _new_figure(5.2, 5.0)
    ax.scatter(observed, predicted, s=12, alpha=0.6)
    low = float(min(observed.min(), predicted.min()))
    high = float(max(observed.max(), predicted.max()))
    ax.plot([low, high], [low, high], ls=":", color="grey", label="perfect prediction")
    ax.set(xlabel=f"Observed {_mpl(target_name)}", ylabel=f"Predicted {_mpl(target_name)}")
    ax.legend(loc="upper left", fontsize=8)
    return _to_base64(fig)


def _plot_residuals(residuals: np.ndarray) -> str:
    fig, ax = _new_figure(6.0, 3.8)
    ax.hist(residuals, bins=min(40, max(10, len(residuals) // 10)), color="grey", edgecolor="white")
    ax.axvline(0, color="black", lw=1)
    ax.axvline(float(np.mean(residuals)), ls="--", color="tab:red", label=f"mean {np.mean(residuals):.3f}")
    ax.set(xlabel="Residual (predicted − observed)", ylabel="Records")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return _to_base64(fig)


def _plot_kaplan_meier(groups: Sequence[tuple[str, np.ndarray, np.ndarray]],
                       time_label: str) -> tuple[str, list[float]]:
    """Kaplan-Meier curves with log-log 95 % bands per group; returns the PNG and the x ticks (for at-risk counts)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    fig, ax = _new_figure(6.4, 4.4)
    t_max = max(float(time.max()) for _, time, _ in groups)
    for label, time, event in groups:
        t, surv, ci = kaplan_meier_estimator(event.astype(bool), time, conf_type="log-log")
        # Start every curve at S(0) = 1 so the step plot begins at the origin.
        t, surv = np.r_[0.0, t], np.r_[1.0, surv]
        ci_low, ci_high = np.r_[1.0, ci[0]], np.r_[1.0, ci[1]]
        line = ax.step(t, surv, where="post", label=f"{_mpl(label)} (n = {len(time)}, events = {int(event.sum())})")[0]
        ax.fill_between(t, ci_low, ci_high, step="post", alpha=0.2, color=line.get_color())
    ax.set(xlabel=_mpl(time_label), ylabel="Survival probability", xlim=(0, t_max), ylim=(0, 1.02))
    ax.legend(loc="best", fontsize=8)
    ticks = [float(x) for x in ax.get_xticks() if 0 <= x <= t_max]
    return _to_base64(fig), ticks


def _plot_td_auc(series: Mapping[str, Sequence[tuple[float, Mapping[str, Any] | None]]], time_label: str) -> str:
    """Time-dependent AUC against horizon with 95 % CI error bars, one series per split."""
    fig, ax = _new_figure(6.0, 3.8)
    horizons = sorted({t for points in series.values() for t, _ in points})
    # Splits side by side at each horizon, so that overlapping error bars stay readable.
    dodge = 0.01 * (horizons[-1] - horizons[0] or horizons[0])
    for i, (split, points) in enumerate(series.items()):
        points = [(t, e) for t, e in points if e is not None and not _is_missing(e.get("value"))]
        if not points:
            continue
        t = np.array([p[0] for p in points]) + (i - (len(series) - 1) / 2) * dodge
        value = np.array([float(p[1]["value"]) for p in points])
        low = np.array([_float_or(p[1].get("ci_low"), v) for p, v in zip(points, value)])
        high = np.array([_float_or(p[1].get("ci_high"), v) for p, v in zip(points, value)])
        ax.errorbar(t, value, yerr=_error_bars(value, low, high), fmt="o-", capsize=3, label=_split_label(split))
    ax.axhline(0.5, ls=":", color="grey", label="chance")
    ax.set_xticks(horizons, [_fmt_horizon(t) for t in horizons])
    ax.set(xlabel=f"Horizon ({_mpl(time_label)})", ylabel="Time-dependent AUC", ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower right")
    return _to_base64(fig)


def _float_or(value: Any, default: float) -> float:
    return default if _is_missing(value) else float(value)


def _plot_survival_calibration(curves: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> str:
    """Predicted vs observed (Kaplan-Meier) event probability per risk group; one series per horizon."""
    fig, ax = _new_figure(5.2, 5.0)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
    for label, predicted, observed, low, high in curves:
        ax.errorbar(predicted, observed, yerr=_error_bars(observed, low, high), fmt="o-", capsize=3, label=label)
    ax.set(xlabel="Predicted event probability", ylabel="Observed event probability (Kaplan-Meier)",
           xlim=(0, 1), ylim=(0, 1), aspect="equal")
    ax.legend(loc="upper left", fontsize=8)
    return _to_base64(fig)


def _plot_training_curve(history: Sequence[Mapping[str, Any]], best_epoch: int | None) -> str:
    fig, ax = _new_figure(6.0, 3.8)
    epochs = [h.get("epoch") for h in history]
    for key, label in (("train_loss", "training loss"), ("val_loss", "validation loss")):
        values = [np.nan if _is_missing(h.get(key)) else float(h[key]) for h in history]
        if not all(math.isnan(v) for v in values):
            ax.plot(epochs, values, "o-", ms=3, label=label)
    if best_epoch is not None:
        ax.axvline(best_epoch, ls=":", color="black", label=f"best epoch ({best_epoch})")
    ax.set(xlabel="Epoch", ylabel="Loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return _to_base64(fig)


# ----------------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------------
def _build_context(run_dir: Path, run: Mapping[str, Any], metrics: Mapping[str, Any], predictions: pd.DataFrame,
                   kind: str) -> dict[str, Any]:
    baselines = _read_optional_json(run_dir / "baselines.json")
    missingness = _read_optional_json(run_dir / "missingness.json")
    operating_points = _read_optional_json(run_dir / "operating_points.json")
    subgroups = _read_optional_json(run_dir / "subgroups.json")
    model_card = _read_optional_json(run_dir / "model" / "model_card.json")

    splits = _ordered_splits(list(metrics) + list(predictions["split"].unique()))
    primary = _primary_split(s for s in splits if s in set(predictions["split"])) or _primary_split(splits)
    sections: list[dict[str, Any]] = []
    if kind == "binary":
        sections.append(_binary_section(run, metrics, predictions, operating_points, primary))
    elif kind == "multiclass":
        sections.append(_multiclass_section(run, metrics, predictions, primary))
    elif kind == "multilabel":
        sections.append(_multilabel_section(run, metrics, predictions, primary))
    elif kind == "regression":
        sections.append(_regression_section(run, predictions, primary))
    else:
        sections.append(_survival_section(run, metrics, predictions, primary))
    from medai.evaluation.text_report import text_section  # here: that module imports this one

    optional = (
        _ecg_section(run, run_dir),
        text_section(run),
        _explanation_section(run, run_dir),
        _training_section(run),
        _missingness_section(missingness, model_card),
        _imputation_section(run),
        _trust_section(run_dir),
        _subgroup_section(subgroups, kind, primary),
        _model_card_section(model_card, run, run_dir),
    )
    sections.extend(s for s in optional if s is not None)

    return {
        "header": _header(run, predictions, kind),
        "warnings": _as_list(run.get("warnings")),
        "headline": _headline_table(metrics, splits),
        "baselines": _baseline_table(baselines, run.get("baselines") or {}, metrics, primary),
        "primary_split": _split_label(primary) if primary else None,
        "sections": sections,
    }


def _header(run: Mapping[str, Any], predictions: pd.DataFrame, kind: str) -> list[tuple[str, str]]:
    task = run.get("task") or {}
    data = run.get("data") or {}
    model = run.get("model") or {}
    rows = [("Run", str(run.get("name") or "unnamed run"))]
    description = f" — {model['description']}" if model.get("description") else ""
    rows.append(("Model", f"{model.get('name', 'unknown')}{description}"))
    if model.get("n_weights") is not None:
        rows.append(("Number of weights", f"{int(model['n_weights']):,}"))
    target = task.get("label") or ", ".join(f"{k} '{task[k]}'" for k in ("time", "event") if task.get(k))
    rows.append(("Task", f"{kind}" + (f" — {target}" if target else "")))
    if kind == "binary" and task.get("positive_class") is not None:
        rows.append(("Positive class", str(task["positive_class"])))
    if kind == "multiclass" and task.get("class_names"):
        rows.append(("Classes", ", ".join(str(c) for c in task["class_names"])))
    if data.get("source"):
        rows.append(("Data source", str(data["source"])))
    if data.get("sha256"):
        rows.append(("Data sha256", str(data["sha256"])))
    rows.append(("Records per split", _n_per_split(run, predictions)))
    split = run.get("split") or {}
    if split.get("strategy"):
        rows.append(("Split strategy", str(split["strategy"])))
    for key, label in (("created", "Date"), ("medai_version", "medai version"), ("seed", "Seed")):
        if run.get(key) is not None:
            rows.append((label, str(run[key])))
    return rows


def _n_per_split(run: Mapping[str, Any], predictions: pd.DataFrame) -> str:
    split = run.get("split") or {}
    counts = split.get("n") if isinstance(split.get("n"), Mapping) else None
    if counts is None:
        counts = {k: v for k, v in split.items() if k in _SPLIT_ORDER and isinstance(v, int)}
    if not counts:  # fall back to the evaluated records themselves
        counts = predictions["split"].value_counts().to_dict()
    return ", ".join(f"{_split_label(k)} {int(counts[k]):,}" for k in _ordered_splits(counts))


def _metric_names(tables: Iterable[Mapping[str, Any]]) -> list[str]:
    """Metric names of all ``tables``: known metrics in a fixed reading order, then the others as they come."""
    names: dict[str, None] = {}
    for table in tables:
        names.update(dict.fromkeys(table))
    known = list(_METRIC_LABELS)

    def rank(item: tuple[int, str]) -> tuple[int, float, int]:
        position, name = item
        if name in _METRIC_LABELS:
            return known.index(name), 0.0, position
        if name.startswith("f1_"):  # per-class F1 right after the macro F1
            return known.index("f1_macro"), 1.0, position
        if match := _TD_AUC_KEY.match(name):  # time-dependent AUC after the C-indices, by horizon
            return known.index("c_index_uno"), 1.0 + float(match["t"]), position
        return len(known), 0.0, position

    return [name for _, name in sorted(enumerate(names), key=rank)]


def _headline_table(metrics: Mapping[str, Any], splits: Sequence[str]) -> Table:
    splits = [s for s in splits if s in metrics]
    table = Table(columns=["Metric", *(_split_label(s) for s in splits)])
    for name in _metric_names(metrics[s] for s in splits):
        cells = [_fmt_metric(metrics[s].get(name), reported=name in metrics[s]) for s in splits]
        table.rows.append((_metric_label(name), cells, None))
    return table


def _baseline_table(baselines: Mapping[str, Any] | None, titles: Mapping[str, str], metrics: Mapping[str, Any],
                    split: str | None) -> Table | None:
    """Our metrics beside each in-run baseline's (``titles``: run.json ``baselines``, name → readable title)."""
    if not baselines or split is None:
        return None
    ours = metrics.get(split, {})
    theirs = {name: (by_split or {}).get(split, {}) for name, by_split in baselines.items()}
    table = Table(columns=["Metric", "This model", *(str(titles.get(name, name)) for name in theirs)],
                  caption=f"All models on the {_split_label(split)} split, same records.")
    for name in _metric_names(theirs.values()):  # the metrics the baselines report
        cells = [_fmt_metric(ours.get(name), reported=name in ours)]
        cells += [_fmt_metric(m.get(name), reported=name in m) for m in theirs.values()]
        table.rows.append((_metric_label(name), cells, None))
    return table


def _metric_rows(entries: Mapping[str, Any], keys: Sequence[str]) -> Table | None:
    table = Table(columns=["Metric", "Value (95 % CI)"])
    for key in keys:
        if key in entries:
            table.rows.append((_metric_label(key), [_fmt_metric(entries[key])], None))
    return table if table.rows else None


def _binary_labels(run: Mapping[str, Any], labels: pd.Series) -> np.ndarray:
    """Truth as 0/1 from ``label``, which holds class names (1 = ``positive_class``, else ``class_names[1]``)."""
    task = run.get("task") or {}
    names = [str(c) for c in task.get("class_names") or []]
    positive = task.get("positive_class") or (names[1] if len(names) == 2 else None)
    values = {str(v) for v in labels.unique()}
    if positive is not None and values <= set(names or values):
        return (labels.astype(str) == str(positive)).to_numpy(dtype=int)
    if values <= {"0", "1"}:  # no class names recorded: 0/1 labels, 1 = positive
        return (labels.astype(str) == "1").to_numpy(dtype=int)
    raise DataValidationError(
        f"predictions.csv of a binary run has labels {sorted(values)[:5]} that are not the class names of run.json"
        f" task.class_names {names}; re-run the evaluation so that both files come from the same run."
    )


def _binary_section(run: Mapping[str, Any], metrics: Mapping[str, Any], predictions: pd.DataFrame,
                    operating_points: Mapping[str, Any] | None, primary: str) -> dict[str, Any]:
    _require_columns(predictions, ["label", "score"], "binary")
    task = run.get("task") or {}
    names = [str(c) for c in task.get("class_names") or []]
    # (negative, positive) order, as in medai.evaluation.metrics.binary_metrics.
    negative_name, positive_name = names if len(names) == 2 else ("negative", "positive")
    threshold = (run.get("operating_point") or {}).get("threshold")
    threshold = None if _is_missing(threshold) else float(threshold)

    def split_data(split: str) -> tuple[np.ndarray, np.ndarray]:
        rows = predictions[predictions["split"] == split]
        return _binary_labels(run, rows["label"]), rows["score"].to_numpy(dtype=float)

    blocks: list[Block] = []
    curve_splits = [s for s in _ordered_splits(predictions["split"].unique()) if s in ("val", primary)]
    curves, pr_curves = [], []
    for split in curve_splits:
        y, score = split_data(split)
        if len(set(y)) < 2:
            blocks.append(f"The {_split_label(split)} split has a single class: no ROC or precision-recall curve.")
            continue
        m = metrics.get(split, {})
        curves.append((_split_label(split), y, score, _legend_metric("AUROC", m, "auroc")))
        pr_curves.append((_split_label(split), y, score, _legend_metric("AUPRC", m, "auprc")))
    if curves:
        blocks.append(Figure(_plot_roc(curves), "ROC curve",
                             "ROC curve. Legend: AUROC with 95 % bootstrap CI from metrics.json."))
        blocks.append(Figure(_plot_precision_recall(pr_curves), "Precision-recall curve",
                             "Precision-recall curve; the dotted line is the prevalence (a model without skill)."))

    y, score = split_data(primary)
    blocks.append(Figure(_plot_reliability(y, score), "Reliability diagram",
                         f"Reliability diagram on the {_split_label(primary)} split: observed fraction of positives"
                         f" per predicted-probability bin (95 % Wilson interval), with the number of records per"
                         f" bin below. Points on the diagonal mean the probabilities can be taken at face value."))
    calibration = _metric_rows(metrics.get(primary, {}), _CALIBRATION_KEYS)
    if calibration:
        calibration.caption = (f"Calibration on the {_split_label(primary)} split. Ideal: ECE 0, slope 1, intercept"
                               f" 0; a slope below 1 means over-confident predictions.")
        blocks.append(calibration)

    op_table = _operating_point_table(operating_points, primary)
    if op_table:
        blocks.append(op_table)

    thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2)
    blocks.append(Figure(_plot_decision_curve(y, score, thresholds, threshold), "Decision curve",
                         f"Decision curve on the {_split_label(primary)} split: net benefit = true positives/n −"
                         f" false positives/n × pt/(1 − pt) at threshold probability pt. The model is useful"
                         f" where its curve is above both 'treat all' and 'treat none'."))
    by_class = [(negative_name, score[y == 0]), (positive_name, score[y == 1])]
    blocks.append(Figure(_plot_score_distribution([c for c in by_class if len(c[1])], threshold),
                         "Score distributions by class",
                         f"Predicted probabilities on the {_split_label(primary)} split by true class."))
    return _section("classification", "Classification performance", blocks)


def _operating_point_table(operating_points: Mapping[str, Any] | None, primary: str) -> Table | None:
    if not operating_points:
        return None
    split = primary if any(primary in p for p in operating_points.values()) else "test"
    columns = ["Operating point", "Threshold", "Chosen on", *(_metric_label(m) for m in _OPERATING_POINT_METRICS)]
    table = Table(columns=columns, caption=(
        f"Thresholds were chosen on the split named under 'Chosen on' and applied unchanged to the"
        f" {_split_label(split)} split; sensitivity, specificity, PPV and NPV are on the {_split_label(split)} split"
        f" with 95 % CIs. PPV and NPV depend on the prevalence of the evaluated population."))
    for name, point in operating_points.items():
        threshold = point.get("threshold")
        entries = point.get(split) or {}
        cells = [Cell("n/a", _NOT_COMPUTABLE, "na") if _is_missing(threshold) else Cell(f"{float(threshold):.3f}"),
                 Cell(_split_label(str(point.get("chosen_on", "val"))))]
        cells += [_fmt_metric(entries.get(m), reported=m in entries) for m in _OPERATING_POINT_METRICS]
        table.rows.append((_operating_point_label(name), cells, None))
    return table


def _operating_point_label(name: str) -> str:
    if name == "youden":
        return "Youden index (max sensitivity + specificity)"
    match = re.match(r"^sensitivity_(?P<t>[0-9.]+)$", name)
    if match:
        return f"Sensitivity ≥ {float(match['t']):.0%}"
    return name


def _class_indices(values: pd.Series, class_names: Sequence[str], column: str) -> np.ndarray:
    """Map class names or integer indices to indices into ``class_names``."""
    by_name = {str(c): i for i, c in enumerate(class_names)}
    as_text = values.astype(str)
    if as_text.isin(list(by_name)).all():
        return as_text.map(by_name).to_numpy(dtype=int)
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and (numeric % 1 == 0).all() and numeric.between(0, len(class_names) - 1).all():
        return numeric.to_numpy(dtype=int)
    unknown = sorted(set(as_text) - set(by_name))[:5]
    raise DataValidationError(
        f"predictions.csv column '{column}' has values {unknown} that are neither class names from run.json"
        f" task.class_names nor class indices 0..{len(class_names) - 1}."
    )


def _multiclass_section(run: Mapping[str, Any], metrics: Mapping[str, Any], predictions: pd.DataFrame,
                        primary: str) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    class_names = [str(c) for c in (run.get("task") or {}).get("class_names") or []]
    score_columns = [c for c in predictions.columns if c.startswith("score_")]
    if not class_names:
        class_names = [c.removeprefix("score_") for c in score_columns]
    columns = [f"score_{c}" if f"score_{c}" in predictions.columns else f"score_{i}"
               for i, c in enumerate(class_names)]
    _require_columns(predictions, ["label", *columns], "multiclass")

    rows = predictions[predictions["split"] == primary]
    y = _class_indices(rows["label"], class_names, "label")
    scores = rows[columns].to_numpy(dtype=float)
    pred = _class_indices(rows["pred"], class_names, "pred") if "pred" in rows else scores.argmax(axis=1)
    labels = list(range(len(class_names)))

    matrix = confusion_matrix(y, pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=np.nan)
    m = metrics.get(primary, {})
    table = Table(columns=["Class", "Records", "Precision (PPV)", "Recall (sensitivity)", "F1"], caption=(
        f"Per-class results on the {_split_label(primary)} split at the predicted class. F1 shows the 95 % CI"
        f" where metrics.json reports it (f1_<class>); other values are point estimates."))
    for k, name in enumerate(class_names):
        f1_cell = _fmt_metric(m[f"f1_{name}"]) if f"f1_{name}" in m else _fmt_value(f1[k])
        table.rows.append((name, [Cell(f"{int(support[k]):,}"), _fmt_value(precision[k]),
                                  _fmt_value(recall[k]), f1_cell], None))
    blocks = [
        Figure(_plot_roc_one_vs_rest(y, scores, class_names), "One-vs-rest ROC curves",
               f"One-vs-rest ROC curve per class on the {_split_label(primary)} split (AUC point estimates)."),
        Figure(_plot_confusion_matrix(matrix, class_names), "Confusion matrix",
               f"Confusion matrix (record counts) on the {_split_label(primary)} split: rows are the true class."),
    ]
    return _section("classification", "Classification performance", [*blocks, table])


def _regression_section(run: Mapping[str, Any], predictions: pd.DataFrame, primary: str) -> dict[str, Any]:
    prediction_column = "score" if "score" in predictions.columns else "pred"
    _require_columns(predictions, ["target", prediction_column], "regression")
    rows = predictions[predictions["split"] == primary]
    observed = rows["target"].to_numpy(dtype=float)
    predicted = rows[prediction_column].to_numpy(dtype=float)
    target_name = str((run.get("task") or {}).get("label") or "target")
    blocks = [
        Figure(_plot_predicted_vs_observed(observed, predicted, target_name), "Predicted against observed",
               f"Predicted against observed values on the {_split_label(primary)} split; the dotted line is"
               f" perfect prediction."),
        Figure(_plot_residuals(predicted - observed), "Residual histogram",
               f"Residuals (predicted − observed) on the {_split_label(primary)} split; a mean away from 0 is a"
               f" systematic bias."),
    ]
    return _section("regression", "Regression performance", blocks)


def _risk_groups(rows: pd.DataFrame) -> tuple[pd.Series, str]:
    """Risk group per record: the ``pred`` column when present, else tertiles of the predicted risk."""
    if "pred" in rows.columns and rows["pred"].notna().all():
        return rows["pred"].astype(str), "the run's risk groups, cut at the validation median risk"
    ranks = rows["score"].rank(method="first")
    groups = pd.qcut(ranks, 3, labels=["low", "intermediate", "high"]).astype(str)
    return groups, "tertiles of predicted risk on this split"


def _group_order(groups: pd.Series, score: pd.Series) -> list[str]:
    known = ["low", "intermediate", "medium", "high"]
    present = list(groups.unique())
    ordered = [g for g in known if g in present]
    rest = sorted((g for g in present if g not in known), key=lambda g: float(score[groups == g].mean()))
    return ordered + rest


def _survival_section(run: Mapping[str, Any], metrics: Mapping[str, Any], predictions: pd.DataFrame,
                      primary: str) -> dict[str, Any]:
    from medai.evaluation.survival import calibration_at_horizon

    _require_columns(predictions, ["time", "event", "score"], "survival")
    rows = predictions[predictions["split"] == primary].reset_index(drop=True)
    time = rows["time"].to_numpy(dtype=float)
    event = rows["event"].to_numpy(dtype=int).astype(bool)
    task_info = run.get("task") or {}
    time_label = str(task_info.get("time") or "time")
    if task_info.get("time_unit"):
        time_label += f", {task_info['time_unit']}"
    blocks: list[Block] = []

    groups, how = _risk_groups(rows)
    order = _group_order(groups, rows["score"])
    km_groups = [(g, time[(groups == g).to_numpy()], event[(groups == g).to_numpy()]) for g in order]
    km_png, ticks = _plot_kaplan_meier(km_groups, time_label)
    blocks.append(Figure(km_png, "Kaplan-Meier curves by predicted risk group",
                         f"Kaplan-Meier survival on the {_split_label(primary)} split by predicted risk group"
                         f" ({how}); shaded bands are log-log 95 % confidence intervals."))
    at_risk = Table(columns=["Risk group", *(f"t = {_fmt_horizon(round(t, 6))}" for t in ticks)],
                    caption="Numbers at risk (records still followed and event-free) at each time.")
    for label, t_group, _ in km_groups:
        at_risk.rows.append((label, [Cell(f"{int((t_group >= t).sum()):,}") for t in ticks], None))
    blocks.append(at_risk)

    summary = _metric_rows(metrics.get(primary, {}), _SURVIVAL_KEYS)
    if summary:
        summary.caption = (f"Discrimination (C-index: 0.5 chance, 1 perfect; Uno's is robust to the censoring"
                           f" pattern) and overall accuracy (IBS: lower is better) on the {_split_label(primary)}"
                           f" split.")
        blocks.append(summary)

    td_auc = {split: _td_auc_points(entries) for split, entries in metrics.items()}
    td_auc = {split: points for split, points in td_auc.items() if points}
    if td_auc:
        blocks.append(Figure(_plot_td_auc({s: td_auc[s] for s in _ordered_splits(td_auc)}, time_label),
                             "Time-dependent AUC by horizon",
                             "Cumulative/dynamic AUC at each horizon (who has the event by t against who is"
                             " event-free after t), with 95 % CIs."))

    curves, calibration_table = [], Table(
        columns=["Horizon", "Risk quintile", "Records", "Events by t", "Predicted", "Observed (95 % CI)"],
        caption=f"Calibration at each horizon on the {_split_label(primary)} split: mean predicted event"
                f" probability against the Kaplan-Meier observed event probability, by risk quintile.")
    for column in sorted((c for c in rows.columns if _SURV_COLUMN.match(c)),
                         key=lambda c: float(_SURV_COLUMN.match(c)["t"])):
        t = float(_SURV_COLUMN.match(column)["t"])
        surv = rows[column].to_numpy(dtype=float)
        groups_at_t = calibration_at_horizon(time, event, surv, t, n_groups=min(5, len(rows)))["groups"]
        label = f"t = {_fmt_horizon(t)}"
        for i, group in enumerate(groups_at_t, start=1):
            observed = {"value": group["observed"], "ci_low": group["observed_ci_low"],
                        "ci_high": group["observed_ci_high"]}
            calibration_table.rows.append((label, [
                Cell(f"Q{i}"), Cell(f"{group['n']:,}"), Cell(f"{group.get('n_events', 'n/a')}"),
                _fmt_value(group["predicted"]), _fmt_metric(observed)], None))
        points = [g for g in groups_at_t if not any(_is_missing(g[k]) for k in ("observed", "observed_ci_low",
                                                                                 "observed_ci_high"))]
        if len(points) < len(groups_at_t):
            blocks.append(f"At {label}, {len(groups_at_t) - len(points)} risk group(s) have no Kaplan-Meier estimate"
                          f" (follow-up ends before t): left out of the calibration figure.")
        if points:
            curves.append((label, *(np.array([g[k] for g in points], dtype=float) for k in (
                "predicted", "observed", "observed_ci_low", "observed_ci_high"))))
    if curves:
        blocks.append(Figure(_plot_survival_calibration(curves), "Calibration at each horizon",
                             "Predicted against observed event probability by risk quintile, with 95 % CIs of"
                             " the Kaplan-Meier estimate. Points on the diagonal are well calibrated."))
        blocks.append(calibration_table)
    return _section("survival", "Survival performance", blocks)


def _td_auc_points(entries: Mapping[str, Any]) -> list[tuple[float, Mapping[str, Any] | None]]:
    points = [(float(m["t"]), entry) for name, entry in entries.items() if (m := _TD_AUC_KEY.match(name))]
    return sorted(points, key=lambda p: p[0])


def _multilabel_section(run: Mapping[str, Any], metrics: Mapping[str, Any], predictions: pd.DataFrame,
                        primary: str) -> dict[str, Any]:
    """Per-finding AUROC with CIs, sensitivity/specificity at each finding's threshold, and ROC curves."""
    names = [str(c) for c in (run.get("task") or {}).get("class_names") or []]
    _require_columns(predictions, [f"label_{n}" for n in names] + [f"score_{n}" for n in names], "multilabel")
    entries = metrics.get(primary) or {}
    table = Table(columns=["Finding", "Prevalence", "AUROC", "Sensitivity", "Specificity"],
                  caption=f"Per finding on the {_split_label(primary)} split; sensitivity and specificity at the "
                          "finding's threshold chosen on validation.")
    rows = predictions[predictions["split"] == primary]
    curves = []
    for name in names:
        y = rows[f"label_{name}"].to_numpy().astype(int)
        score = rows[f"score_{name}"].to_numpy().astype(float)
        table.rows.append((name, [Cell(f"{y.mean():.1%}"), _fmt_metric(entries.get(f"auroc_{name}")),
                                  _fmt_metric(entries.get(f"sensitivity_{name}")),
                                  _fmt_metric(entries.get(f"specificity_{name}"))], None))
        if 0 < y.sum() < len(y):
            auc = entries.get(f"auroc_{name}") or {}
            curves.append((name, y, score, f"AUC {auc['value']:.2f}" if auc.get("value") is not None else ""))
    blocks: list[Block] = [table]
    if curves:
        blocks.append(Figure(_plot_roc(curves), "ROC curves per finding",
                             f"ROC curve of each finding on the {_split_label(primary)} split."))
    return _section("performance", "Discrimination per finding", blocks)


def _explanation_section(run: Mapping[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """Saliency overlays of a few test images and the model-randomisation sanity check (image runs)."""
    explanations = run.get("explanations") or {}
    examples = explanations.get("examples") or []
    if not examples:
        return None
    blocks: list[Block] = [
        "Where the model looked: Grad-CAM (the last convolutional block's evidence for the explained class) and "
        "integrated gradients (each pixel's contribution to the score against a mean-intensity image). Saliency "
        "maps are hypotheses about the model, not proof of clinical reasoning; the randomisation check below says "
        "whether they depend on what the model learned at all."]
    for example in examples:
        path = run_dir / example["file"]
        if not path.is_file():
            raise DataValidationError(f"'{path}' listed in run.json explanations is missing.")
        blocks.append(Figure(base64.b64encode(path.read_bytes()).decode("ascii"), f"Saliency for test image "
                             f"{example['id']}", f"{example['why']} — test image {example['id']}: truth "
                             f"{example['truth']}, P({example['explained_class']}) = {example['probability']:.2f}."))
    sanity = explanations.get("sanity") or {}
    if sanity:
        table = Table(columns=["Method", "Spearman |map| after full randomisation", "SSIM", "Interpretation"],
                      caption="Cascading model-parameter randomisation (Adebayo et al. 2018): the maps of the trained "
                              "model against those of a copy whose weights were re-initialised from the output layer "
                              "down. A faithful explanation changes (low correlation).")
        for method, entry in sanity.items():
            final = entry.get("final") or {}
            table.rows.append((method.replace("_", " "), [_fmt_value(final.get("spearman_abs")),
                                                           _fmt_value(final.get("ssim")),
                                                           Cell(str(entry.get("interpretation", "")))], None))
        blocks.append(table)
    return _section("explanations", "Explanations", blocks)


def _ecg_section(run: Mapping[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """ECG strips of test recordings with the prediction and a saliency trace, and the unusable recordings."""
    examples = run.get("ecg_examples") or []
    unusable = (run.get("data") or {}).get("unusable") or []
    if not examples and not unusable:
        return None
    blocks: list[Block] = []
    if examples:
        blocks.append("Test recordings (one per class where possible), each at the window where the predicted class "
                      "is most probable, on a 0.2 s grid. The orange band and trace show integrated-gradients "
                      "saliency over time: where the evidence for the prediction lies. Saliency is a hypothesis "
                      "about the model, not proof of its reasoning.")
    for example in examples:
        path = run_dir / example["image"]
        if not path.is_file():
            raise DataValidationError(f"'{path}' listed in run.json ecg_examples is missing.")
        blocks.append(Figure(base64.b64encode(path.read_bytes()).decode("ascii"), f"ECG strip {example['id']}",
                             f"{example['id']}: predicted {example['pred']} (p = {example['probability']:.2f})"
                             + (f", reference {example['truth']}" if example.get("truth") else "")
                             + f"; window {example['window_start_s']:.1f}–"
                               f"{example['window_start_s'] + example['window_s']:.1f} s."))
    if unusable:
        table = Table(columns=["Recording", "Why the signal is unusable"],
                      caption="Recordings that failed the signal check: no rhythm was predicted for them.")
        for entry in unusable[:50]:
            table.rows.append((str(entry["id"]), [Cell("; ".join(entry["reasons"]))], None))
        blocks.append(table)
    return _section("ecg", "ECG strips and signal quality", blocks)


def _training_section(run: Mapping[str, Any]) -> dict[str, Any] | None:
    training = run.get("training") or {}
    history = training.get("history") or []
    if not history:
        return None
    best = training.get("best_epoch")
    caption = (f"Loss by epoch; {training.get('epochs_run', len(history))} epoch(s) run"
               + (f", the weights of epoch {best} (lowest validation loss) were kept." if best is not None else "."))
    figure = Figure(_plot_training_curve(history, best), "Training curve", caption)
    return _section("training", "Training", [figure])


def _missingness_section(missingness: Mapping[str, Any] | None,
                         model_card: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not missingness:
        return None
    splits = _ordered_splits(s for entry in missingness.values() for s in (entry.get("by_split") or {}))
    # EHR runs also give missingness by subgroup and the fraction of time bins measured (medai.workflows.ehr)
    subgroups = sorted({(attr, group) for entry in missingness.values()
                        for attr, groups in (entry.get("by_subgroup") or {}).items() for group in groups})
    has_bins = any("bins_measured" in entry for entry in missingness.values())
    caption = ("Concepts of the observation window: samples with no value in the window, most incomplete first; "
               "'bins measured' is the mean fraction of time bins holding a measurement." if has_bins else
               "Feature columns of the input table, most incomplete first.")
    table = Table(columns=["Column", "Missing", "Fraction", *(f"Fraction ({_split_label(s)})" for s in splits),
                           *(f"{attr}: {group}" for attr, group in subgroups),
                           *(["Bins measured"] if has_bins else [])], caption=caption)
    ordered = sorted(missingness.items(), key=lambda item: -_float_or(item[1].get("fraction"), 0.0))
    for column, entry in ordered:
        by_split = entry.get("by_split") or {}
        by_subgroup = entry.get("by_subgroup") or {}
        cells = [Cell(f"{int(entry.get('n_missing', 0)):,}"), _fmt_fraction(entry.get("fraction"))]
        cells += [_fmt_fraction(by_split.get(s)) for s in splits]
        cells += [_fmt_fraction((by_subgroup.get(attr) or {}).get(group)) for attr, group in subgroups]
        if has_bins:
            cells.append(_fmt_fraction(entry.get("bins_measured")))
        table.rows.append((column, cells, None))
    strategy = (model_card or {}).get("preprocessing_and_missing_data")
    note = (f"Handling of missing values and preprocessing: {strategy}" if strategy else
            "The imputation strategy is not recorded here (no model/model_card.json in the run directory).")
    return _section("missing", "Missing data", [note, table])


def _trust_section(run_dir: Path) -> dict[str, Any] | None:
    """Uncertainty and abstention, recalibration, the fairness audit, checked explanations and the TRIPOD+AI
    checklist (files written by medai.evaluation.trust)."""
    trust = _read_optional_json(run_dir / "trust.json")
    fairness = _read_optional_json(run_dir / "fairness.json")
    explanations = _read_optional_json(run_dir / "explanations.json")
    tripod = _read_optional_json(run_dir / "tripod_ai.json")
    if not any((trust, fairness, explanations, tripod)):
        return None
    blocks: list[Block] = []
    if trust and trust.get("not_applicable"):
        blocks.append(str(trust["not_applicable"]))
    elif trust:
        conformal = trust.get("conformal") or {}
        recal = trust.get("recalibration") or {}
        segmentation = conformal.get("kind") == "segmentation"
        caption = ("Conformal risk control (Angelopoulos et al. 2022) of the per-case false-negative rate, calibrated "
                   "on validation: the conformal mask (foreground probability ≥ λ̂) misses at most α of the true "
                   "foreground on average; coverage = 1 − mean missed fraction. A case is referred when the "
                   "uncertain band (conformal mask minus predicted mask) is larger than the predicted mask, or the "
                   "model predicts nothing but the band is not empty. Temperature scaling fitted on validation "
                   "voxels." if segmentation else
                   "Split-conformal sets calibrated on validation (a case abstains — 'refer to clinician' — when its "
                   "set is not a single answer); recalibration chosen on validation by cross-validated log-loss.")
        table = Table(columns=["Check", "Test value"], caption=caption)
        cm = conformal.get("metrics") or {}
        for key, label in (("conformal_target", "Conformal target coverage"),
                           ("conformal_coverage", "Empirical coverage"), ("coverage_argmax", "Coverage of the "
                           "predicted (argmax) mask"), ("abstain_rate", "Abstain (refer) rate"),
                           ("mean_extra_volume_ml", "Mean extra volume of the conformal mask (mL)"),
                           ("dice_kept", "Dice of kept cases"), ("dice_referred", "Dice of referred cases"),
                           ("mean_set_size", "Mean set size"), ("mean_interval_width", "Mean interval width")):
            if key in cm:
                table.rows.append((label, [_fmt_metric(cm.get(key))], None))
        rm = recal.get("metrics") or {}
        if recal.get("applicable", True) and rm:
            table.rows.append((f"Recalibration method: {_fmt_method(recal.get('method'))}",
                               [Cell(str(recal.get("reason") or ""))], None))
            for key, label in (("ece_before_recalibration", "ECE before recalibration"), ("ece", "ECE after"),
                               ("calibration_slope_before_recalibration", "Calibration slope before"),
                               ("calibration_slope", "Calibration slope after")):
                if key in rm:
                    table.rows.append((label, [_fmt_metric(rm.get(key))], None))
        else:
            table.rows.append(("Recalibration", [Cell(str(recal.get("reason") or "not applicable"))], None))
        blocks.append(table)
        if trust.get("selective_risk"):
            from medai.evaluation.conformal import plot_selective_risk

            risk = "1 − Dice" if segmentation else "error rate"
            blocks.append(Figure(plot_selective_risk({"test": trust["selective_risk"]}), "Selective risk curve",
                                 f"Risk ({risk}) when abstaining on the least confident test cases; AURC "
                                 f"{_fmt_number(trust['selective_risk'].get('aurc') or float('nan'))}."))
    if fairness:
        all_gaps = fairness.get("gaps_beyond_ci") or []
        gaps = [g for g in all_gaps if g.get("reliable")]  # small groups' bootstrap CIs are not trustworthy
        table = Table(columns=["Group", "Metric", "Gap to overall (95 % CI)", "Reliable n"],
                      caption="Subgroups and intersections of at least the minimum size whose gap to the overall "
                              "value has a CI excluding 0 (every group and metric in fairness.json).")
        for gap in gaps[:15]:
            table.rows.append((f"{gap['attribute']}: {gap['group']}", [
                Cell(str(gap["metric"])),
                Cell(f"{gap['gap']:+.3f} ({gap['gap_ci_low']:+.3f} to {gap['gap_ci_high']:+.3f})"),
                Cell("yes" if gap.get("reliable") else "no (n below the minimum)")], None))
        attributes = list((fairness.get("attributes") or {}))
        over = ", ".join(attributes) if attributes else ("no attribute (the data has no sex, age or race/ethnicity "
                                                         "column; name one with evaluation.subgroups)")
        blocks.append(f"Fairness audit over {over}: {len(gaps)} gap(s) beyond their CI in groups of at least the "
                      f"minimum size" + (f"; {len(all_gaps) - len(gaps)} more in smaller groups (unreliable; see "
                                         "fairness.json)." if len(all_gaps) > len(gaps) else "."))
        if gaps:
            blocks.append(table)
        for attribute, result in (fairness.get("mitigation") or {}).items():
            if result.get("status") != "fitted":
                blocks.append(f"Group-specific thresholds for {attribute}: not fitted ({result.get('reason')}).")
                continue
            overall = result.get("overall") or {}
            before, after = overall.get("before") or {}, overall.get("after") or {}
            parts = [f"{m} {_fmt_number((before.get(m) or {}).get('value', float('nan')))} → "
                     f"{_fmt_number((after.get(m) or {}).get('value', float('nan')))}"
                     for m in ("accuracy", "sensitivity", "specificity")]
            blocks.append(f"Mitigation for {attribute} ({result.get('method')}, {result.get('constraint')}; fitted on "
                          f"validation, applied to test): overall {'; '.join(parts)}.")
    if explanations:
        summary = explanations.get("summary") or {}
        parts = [f"deletion/insertion better than random orderings: "
                 f"{_yes_no(summary.get('faithful_better_than_random'))}"]
        if summary.get("randomisation_test_passed") is not None:
            parts.append(f"parameter randomisation test passed: {_yes_no(summary['randomisation_test_passed'])}")
        if summary.get("n_important") is not None:
            parts.append(f"{summary['n_important']} input(s) with permutation importance above 0 (CI excludes 0)")
        blocks.append(f"Explanations checked on {explanations.get('n_explained')} test inputs: " + "; ".join(parts)
                      + ".")
        from medai.explain.faithfulness import deletion_insertion_chart
        from medai.explain.importance import importance_chart

        if explanations.get("importance"):
            blocks.append(Figure(importance_chart(explanations["importance"]), "Permutation importance",
                                 "Drop of the test metric when an input is permuted (95 % CI)."))
        if explanations.get("faithfulness"):
            blocks.append(Figure(deletion_insertion_chart(explanations["faithfulness"]), "Deletion and insertion",
                                 "Score as the most important inputs are removed / inserted, against random "
                                 "orderings."))
    if tripod:
        summary = tripod.get("summary") or {}
        table = Table(columns=["Item", "Status", "Where / why"],
                      caption=f"TRIPOD+AI checklist from this run's files: {summary.get('met', 0)} met, "
                              f"{summary.get('not_met', 0)} not met, {summary.get('not_applicable', 0)} not "
                              "applicable (manuscript items). Full list in tripod_ai.json.")
        for number, item in (tripod.get("items") or {}).items():
            if item.get("status") == "not_applicable":
                continue
            detail = ", ".join(item.get("where") or []) if item.get("status") == "met" else item.get("why") or ""
            table.rows.append((f"{number} {item.get('topic', '')}", [Cell(str(item.get("status"))), Cell(detail)],
                               None))
        blocks.append(table)
    return _section("trust", "Trust: uncertainty, calibration, fairness, explanations, TRIPOD+AI", blocks)


def _yes_no(value: Any) -> str:
    return "not measured" if value is None else ("yes" if value else "no")


def _fmt_method(method: Any) -> str:
    if isinstance(method, list):
        return ", ".join(sorted(set(map(str, method))))
    return str(method)


def _imputation_section(run: Mapping[str, Any]) -> dict[str, Any] | None:
    """EHR runs: the network retrained with other imputation choices (same split and seed)."""
    sensitivity = run.get("imputation_sensitivity")
    if not sensitivity:
        return None
    table = Table(columns=["Imputation", "Validation AUROC", "Test AUROC"],
                  caption="Same network, split and seed; only the handling of missing values changes.")
    for row in sensitivity.get("variants") or []:
        table.rows.append((row["variant"], [_fmt_metric(row.get("val_auroc")), _fmt_metric(row.get("test_auroc"))],
                           None))
    return _section("imputation", "Imputation sensitivity analysis", [sensitivity.get("note", ""), table])


def _fmt_fraction(value: Any) -> Cell:
    if _is_missing(value):
        return Cell("n/a", _NOT_COMPUTABLE, "na")
    return Cell(f"{float(value):.1%}")


def _subgroup_section(subgroups: Mapping[str, Any] | None, kind: str, split: str) -> dict[str, Any] | None:
    if not subgroups:
        return None
    count_key, count_label = ("n_events", "Events") if kind == "survival" else ("n_positive", "Positives")
    blocks: list[Block] = [
        "Flagged rows (⚠) carry a warning: their estimates are imprecise and differences may be chance."]
    for attribute, groups in subgroups.items():
        names = _metric_names((g.get("metrics") or {}) for g in groups.values())
        # Positives are counted for binary tasks only (the pipeline writes null otherwise).
        with_count = any(g.get(count_key) is not None for g in groups.values())
        columns = ["Group", "Records", *([count_label] if with_count else [])]
        for name in names:
            columns += [_metric_label(name), "Gap to overall"]
        table = Table(columns=columns, caption=f"Results by {attribute} on the {_split_label(split)} split;"
                                                      f" gap = group − overall.")
        for group, entry in groups.items():
            n, count = entry.get("n"), entry.get(count_key)
            cells = [Cell("n/a" if n is None else f"{int(n):,}")]
            if with_count:
                cells.append(Cell("n/a" if count is None else f"{int(count):,}"))
            group_metrics, gaps = entry.get("metrics") or {}, entry.get("gap") or {}
            for name in names:
                cells += [_fmt_metric(group_metrics.get(name), reported=name in group_metrics),
                          _fmt_gap(gaps.get(name))]
            table.rows.append((str(group), cells, entry.get("warning")))
        blocks.append(table)
    return _section("subgroups", "Subgroups", blocks)


def _model_card_section(model_card: Mapping[str, Any] | None, run: Mapping[str, Any],
                        run_dir: Path) -> dict[str, Any] | None:
    """Intended use and limitations from ``model/model_card.json`` (schema ``medai-model-card/1``), and where the
    artefact is: ``model/`` for a training run, the evaluated artefact for an external validation."""
    card = model_card or {}
    use = card.get("intended_use") or {}
    use = use if isinstance(use, Mapping) else {"primary_use": use}
    items: list[tuple[str, list[str]]] = []
    for label, value in (("Intended use", use.get("primary_use")),
                         ("Out of scope and contraindications", use.get("out_of_scope_and_contraindications")),
                         ("Limitations and caveats", card.get("caveats_and_recommendations")),
                         ("Ethical considerations", card.get("ethical_considerations"))):
        if value:
            items.append((label, _as_list(value)))
    model_dir = run_dir / "model"
    evaluated = run.get("evaluated_model") or {}
    if model_dir.is_dir():
        # The report is written inside OUT.partial, which becomes OUT once the run is complete: name the final place.
        final_dir = run_dir.resolve()
        final_dir = final_dir.with_name(final_dir.name.removesuffix(PARTIAL_SUFFIX))
        location = [str(final_dir / "model")]
        if (model_dir / "MANIFEST.sha256").is_file():
            location.append("Every file is listed with its sha256 in MANIFEST.sha256; check it before deployment.")
        items.append(("Model artefact", location))
    elif evaluated.get("path"):
        items.append(("Evaluated model artefact", [str(evaluated["path"])] + (
            [f"sha256 {evaluated['sha256']}"] if evaluated.get("sha256") else [])))
    return _section("model-card", "Model card", [], details=items) if items else None


# ----------------------------------------------------------------------------------------------------------------
# Rendering and writing
# ----------------------------------------------------------------------------------------------------------------
def _render(context: Mapping[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    # autoescape=True: column, class and group names come from users' data and must never become markup.
    env = Environment(loader=PackageLoader("medai.evaluation", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(**context)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with 0o666 lets the umask decide the final permissions, as for any ordinary file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
