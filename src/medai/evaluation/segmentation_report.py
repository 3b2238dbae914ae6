"""The report sections of a segmentation run (``task.kind == "segmentation"``), for :func:`write_report`.

Like the rest of the report, it only reads the run directory: metrics and CIs from ``metrics.json`` and
``baselines.json``, per-case Dice from ``predictions.csv``, per-subject EF from ``ejection_fraction.csv`` (cardiac
cine runs) and the drawn test cases from ``segmentation_example/examples.npz``. Figures: example overlays (truth vs
prediction vs the first baseline), the per-case Dice distribution of the model and each baseline, and for cine
runs the EF scatter with the Bland–Altman plot and the volume curves of a few subjects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medai.evaluation.report import (
    Block, Cell, Figure, Table, _fmt_metric, _header, _model_card_section, _new_figure, _ordered_splits,
    _read_optional_json, _section, _split_label, _to_base64, _training_section, _trust_section,
)

__all__ = ["segmentation_context"]

_LABELS = {
    "dice": "Dice (mean)",
    "dice_median": "Dice (median)",
    "dice_ed": "Dice at end-diastole",
    "dice_es": "Dice at end-systole",
    "hd95_mm": "HD95, mm (mean)",
    "hd95_mm_median": "HD95, mm (median)",
    "lesion_sensitivity": "Lesion sensitivity",
    "false_positives_per_case": "False-positive lesions per case",
    "case_sensitivity": "Case sensitivity",
    "case_specificity": "Case specificity",
    "ef_mae": "EF error, mean absolute (EF points)",
    "ef_bias": "EF bias, predicted − truth (EF points)",
    "ef_loa_low": "EF lower limit of agreement",
    "ef_loa_high": "EF upper limit of agreement",
    "ef_pearson_r": "EF correlation (Pearson r)",
    "edv_mae_ml": "EDV error, mean absolute (mL)",
    "esv_mae_ml": "ESV error, mean absolute (mL)",
    "es_frame_mae": "ES frame error, mean absolute (frames)",
}


def _label(name: str) -> str:
    return _LABELS.get(name, name)


def _names(tables: list[Mapping[str, Any]]) -> list[str]:
    present = {name for table in tables for name in table}
    return [n for n in _LABELS if n in present] + sorted(present - set(_LABELS))


def _headline(metrics: Mapping[str, Any], splits: list[str]) -> Table:
    table = Table(columns=["Metric", *(_split_label(s) for s in splits)])
    for name in _names([metrics[s] for s in splits]):
        table.rows.append((_label(name), [_fmt_metric(metrics[s].get(name), reported=name in metrics[s])
                                          for s in splits], None))
    return table


def _baselines(baselines: Mapping[str, Any] | None, titles: Mapping[str, str], ours: Mapping[str, Any]) -> Table | None:
    if not baselines:
        return None
    theirs = {name: (tables or {}).get("test", {}) for name, tables in baselines.items()}
    table = Table(columns=["Metric", "This model", *(str(titles.get(n, n)) for n in theirs)],
                  caption="All methods on the test split, same cases.")
    for name in _names([ours, *theirs.values()]):
        cells = [_fmt_metric(ours.get(name), reported=name in ours)]
        cells += [_fmt_metric(m.get(name), reported=name in m) for m in theirs.values()]
        table.rows.append((_label(name), cells, None))
    return table


# ------------------------------------------------------------------------------------------------------ figures
def _plot_examples(examples: Mapping[str, np.ndarray]) -> str:
    n = len(examples["image"])
    baseline = str(examples["baseline_name"]) if "baseline_name" in examples else ""
    fig, axes = _new_figure(2.4 * n, 2.9)
    fig.clear()
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, image, truth, pred, other, title in zip(axes, examples["image"], examples["truth"], examples["pred"],
                                                     examples["baseline"], examples["title"]):
        ax.imshow(image, cmap="gray", interpolation="nearest")
        for mask, colour, style in ((truth, "#00c000", "-"), (pred, "#ff2020", "-"), (other, "#2080ff", ":")):
            if mask.any() and not mask.all():
                ax.contour(mask, levels=[0.5], colors=colour, linewidths=1.0, linestyles=style)
        ax.set_title(str(title), fontsize=6.5)
        ax.set_axis_off()
    fig.suptitle(f"green: truth · red: model · blue dotted: {baseline or 'baseline'}", fontsize=8)
    return _to_base64(fig)


def _plot_dice(cases: pd.DataFrame, baseline_columns: list[str]) -> str:
    fig, ax = _new_figure(6.0, 3.6)
    series = [("model", cases["dice"].dropna().to_numpy())]
    series += [(c.removeprefix("dice_"), cases[c].dropna().to_numpy()) for c in baseline_columns]
    series = [(name, values) for name, values in series if len(values)]
    ax.boxplot([v for _, v in series], showfliers=False, widths=0.5)  # vertical: the default of every version
    rng = np.random.default_rng(0)
    for i, (_, values) in enumerate(series, start=1):
        ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=6, alpha=0.5, color="#444")
    ax.set_xticks(range(1, len(series) + 1), [name for name, _ in series])
    ax.set(ylabel="Dice per case", ylim=(-0.02, 1.02))
    return _to_base64(fig)


def _plot_ef(subjects: pd.DataFrame) -> str:
    truth, pred = subjects["ef_true"].to_numpy(), subjects["ef_pred"].to_numpy()
    fig, _ = _new_figure(10.0, 4.2)
    fig.clear()
    left, right = fig.subplots(1, 2)
    baseline_columns = [c for c in subjects.columns if c.startswith("ef_pred_")]
    everything = np.concatenate([truth, pred, *(subjects[c].to_numpy(dtype=float) for c in baseline_columns)])
    low, high = float(np.nanmin(everything)) - 5, float(np.nanmax(everything)) + 5
    left.plot([low, high], [low, high], ls="--", color="grey", lw=1, label="identity")
    left.scatter(truth, pred, s=18, color="#c0392b", label="model")
    for column, marker in zip(baseline_columns, ("x", "+", "1")):
        left.scatter(truth, subjects[column], s=18, marker=marker, color="#2471a3",
                     label=column.removeprefix("ef_pred_"))
    left.set(xlabel="Truth EF (%)", ylabel="Predicted EF (%)", xlim=(low, high), ylim=(low, high))
    left.legend(fontsize=7)
    mean, difference = (truth + pred) / 2, pred - truth
    ok = np.isfinite(difference)
    bias = float(difference[ok].mean())
    sd = float(difference[ok].std(ddof=1)) if ok.sum() > 1 else 0.0
    right.scatter(mean[ok], difference[ok], s=18, color="#c0392b")
    for value, style, text in ((bias, "-", f"bias {bias:+.1f}"), (bias - 1.96 * sd, "--", f"−1.96 SD {bias - 1.96 * sd:+.1f}"),
                               (bias + 1.96 * sd, "--", f"+1.96 SD {bias + 1.96 * sd:+.1f}")):
        right.axhline(value, ls=style, color="black", lw=1)
        right.annotate(text, (1.0, value), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=7)
    right.axhline(0, color="grey", lw=0.6)
    right.set(xlabel="Mean of truth and predicted EF (%)", ylabel="Predicted − truth EF (EF points)",
              title="Bland–Altman")
    return _to_base64(fig)


def _plot_volume_curves(cases: pd.DataFrame, subject_ids: list[str]) -> str:
    fig, ax = _new_figure(6.0, 3.6)
    colours = ("#c0392b", "#2471a3", "#27ae60", "#8e44ad")
    for colour, subject in zip(colours, subject_ids):
        rows = cases[cases["patient_id"] == subject].sort_values("frame")
        ax.plot(rows["frame"], rows["volume_true_ml"], "-", color=colour, label=f"{subject} truth")
        ax.plot(rows["frame"], rows["volume_pred_ml"], "o--", ms=3, color=colour, label=f"{subject} model")
    ax.set(xlabel="Cine frame", ylabel="LV cavity volume (mL)")
    ax.legend(fontsize=6.5, ncol=2)
    return _to_base64(fig)


# ----------------------------------------------------------------------------------------------------- sections
def _segmentation_section(run: Mapping[str, Any], predictions: pd.DataFrame, run_dir: Path,
                          primary: str) -> dict[str, Any]:
    blocks: list[Block] = []
    definitions = run.get("metric_definitions")
    if definitions:
        blocks.append(str(definitions))
    example_path = run_dir / "segmentation_example" / "examples.npz"
    if example_path.is_file():
        with np.load(example_path, allow_pickle=False) as archive:
            examples = {k: archive[k] for k in archive.files}
        if len(examples.get("image", ())):
            blocks.append(Figure(_plot_examples(examples), "Example test cases with truth and predicted contours",
                                 "Test cases: truth (green), model (red) and a classical baseline (blue, dotted). For "
                                 "volumes the slice with the most truth is shown; for cine data the mid-ventricular "
                                 "slice at end-diastole and end-systole."))
    rows = predictions[predictions["split"] == primary]
    baseline_columns = [c for c in rows.columns if c.startswith("dice_") and rows[c].notna().any()]
    if "dice" in rows and rows["dice"].notna().any():
        blocks.append(Figure(_plot_dice(rows, baseline_columns), "Dice per case",
                             f"Dice of each {_split_label(primary)} case (cases with an empty truth and an empty "
                             "prediction have no Dice and are not shown); boxes: quartiles."))
    example = run.get("segmentation_example") or {}
    if example:
        blocks.append(f"DICOM output: the test case {example.get('case')} is written as an MR image series "
                      f"({example.get('image_series')}, {example.get('n_slices')} slice(s)) and its predicted "
                      f"segmentation as a DICOM SEG ({example.get('seg')}, segment '{example.get('segment_label')}'), "
                      "read back and checked voxel for voxel.")
    return _section("segmentation", "Segmentation", blocks)


def _ejection_fraction_section(run_dir: Path, predictions: pd.DataFrame, primary: str) -> dict[str, Any] | None:
    path = run_dir / "ejection_fraction.csv"
    if not path.is_file():
        return None
    subjects = pd.read_csv(path, dtype={"id": str, "split": str})
    subjects = subjects[subjects["split"] == primary]
    if subjects.empty:
        return None
    blocks: list[Block] = [
        "EF = (EDV − ESV) / EDV × 100 with volumes from voxel counts × voxel volume; the model's end-diastolic and "
        "end-systolic frames are those of its largest and smallest predicted volume, the truth's those of the "
        "truth masks."]
    defined = subjects[np.isfinite(subjects["ef_pred"])]
    if len(defined):
        blocks.append(Figure(_plot_ef(defined), "Predicted vs truth ejection fraction and Bland–Altman plot",
                             f"One point per {_split_label(primary)} subject; dashed lines: limits of agreement "
                             "(bias ± 1.96 SD of the differences)."))
    order = defined.reindex(defined["ef_error"].abs().sort_values().index)
    picks = list(dict.fromkeys([order["id"].iloc[0], order["id"].iloc[len(order) // 2], order["id"].iloc[-1]])) \
        if len(order) else []
    if picks and "volume_true_ml" in predictions:
        blocks.append(Figure(_plot_volume_curves(predictions[predictions["split"] == primary], picks),
                             "LV volume over the cardiac cycle", "Truth (lines) and predicted (dots) cavity volume per "
                             "frame for the subjects with the smallest, median and largest EF error."))
    table = Table(columns=["Truth EF", "Predicted EF", "Error", "Truth ED/ES frame", "Predicted ED/ES frame",
                           "Truth EDV / ESV (mL)", "Predicted EDV / ESV (mL)"],
                  caption=f"Per subject, {_split_label(primary)} split.")
    for _, row in subjects.iterrows():
        finite = np.isfinite(row["ef_pred"])
        table.rows.append((str(row["id"]), [
            Cell(f"{row['ef_true']:.1f}"), Cell(f"{row['ef_pred']:.1f}" if finite else "n/a"),
            Cell(f"{row['ef_error']:+.1f}".replace("-", "−") if finite else "n/a"),
            Cell(f"{int(row['ed_frame_true'])} / {int(row['es_frame_true'])}"),
            Cell(f"{int(row['ed_frame_pred'])} / {int(row['es_frame_pred'])}"),
            Cell(f"{row['edv_true_ml']:.1f} / {row['esv_true_ml']:.1f}"),
            Cell(f"{row['edv_pred_ml']:.1f} / {row['esv_pred_ml']:.1f}"),
        ], None if finite else "no predicted cavity in any frame"))
    blocks.append(table)
    return _section("ejection-fraction", "Ejection fraction", blocks)


def segmentation_context(run_dir: Path, run: Mapping[str, Any], metrics: Mapping[str, Any],
                         predictions: pd.DataFrame) -> dict[str, Any]:
    """The template context of a segmentation run's report (same keys as the other task kinds')."""
    run_dir = Path(run_dir)
    baselines = _read_optional_json(run_dir / "baselines.json")
    model_card = _read_optional_json(run_dir / "model" / "model_card.json")
    splits = [s for s in _ordered_splits(metrics) if isinstance(metrics.get(s), Mapping)]
    primary = "test" if "test" in splits else (splits[-1] if splits else "test")
    sections = [_segmentation_section(run, predictions, run_dir, primary)]
    optional = (_ejection_fraction_section(run_dir, predictions, primary), _training_section(run),
                _trust_section(run_dir), _model_card_section(model_card, run, run_dir))
    sections.extend(s for s in optional if s is not None)
    return {
        "header": _header(run, predictions, "segmentation"),
        "warnings": [str(w) for w in run.get("warnings") or []],
        "headline": _headline(metrics, splits),
        "baselines": _baselines(baselines, run.get("baselines") or {}, metrics.get(primary, {})),
        "primary_split": _split_label(primary),
        "sections": sections,
    }
