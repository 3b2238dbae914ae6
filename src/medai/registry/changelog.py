"""Change log across versions of a model (``changelog.json`` / ``CHANGELOG.md``).

Artefacts are immutable: a new version is a new run folder. The change log says, for each pair of consecutive
versions, what changed (configuration keys, data hash, split membership, artefact hash) and whether the test
metrics changed beyond their uncertainty:

* ``paired_bootstrap`` when both runs scored the same records (``predictions.csv`` ids of the split, same truth):
  the difference new − old is bootstrapped on the shared records, so the CI accounts for the correlation between
  the two models' errors; a change is *significant* when that CI excludes 0.
* ``ci_overlap`` otherwise: a change is significant only when the two runs' CIs do not overlap (conservative).

Metric orientation decides *better* or *worse*: lower is better for Brier, ECE, MAE, RMSE, IBS and
calibration errors; higher is better for the others.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medai.core.errors import DataValidationError
from medai.evaluation.bootstrap import bootstrap_metrics
from medai.evaluation.fairness import _auroc, _harrell_c  # the audit's fast exact AUROC and Harrell's C
from medai.evaluation.metrics import compute_ece

__all__ = ["build_changelog", "compare_runs", "render_changelog"]

SCHEMA = "medai-changelog/1"
LOWER_IS_BETTER = ("brier", "ece", "mae", "rmse", "ibs", "abstain_rate", "ece_before_recalibration")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise DataValidationError(f"Change log: {path} is not valid JSON; the run folder is damaged. Re-run or "
                                  "remove it from the comparison.") from None


def _load(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    run = _read_json(run_dir / "run.json")
    metrics = _read_json(run_dir / "metrics.json")
    if run is None or metrics is None:
        missing = [n for n, d in (("run.json", run), ("metrics.json", metrics)) if d is None]
        raise DataValidationError(f"Change log: {run_dir} lacks {', '.join(missing)}; pass finished run folders "
                                  "written by `medai train`.")
    config = _read_json(run_dir / "model" / "config.json")
    lineage = _read_json(run_dir / "lineage.json")
    if config is None and lineage is not None:
        config = lineage.get("config")
    return {"dir": run_dir, "run": run, "metrics": metrics, "config": config or {}, "lineage": lineage}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def _config_changes(old: dict, new: dict) -> list[dict[str, Any]]:
    a, b = _flatten(old), _flatten(new)
    return [{"key": k, "old": a.get(k), "new": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# ------------------------------------------------------------------------------------------------ paired metrics
def _paired_setup(kind: str, class_names: list[str] | None, old: pd.DataFrame, new: pd.DataFrame):
    """(metric function of one model's columns, truth arrays, per-model score arrays, strata) or None."""
    if kind == "binary" and {"label", "score"} <= set(old.columns) & set(new.columns) and class_names:
        y = (old["label"].astype(str) == str(class_names[1])).to_numpy().astype(np.int64)

        def fn(y, s):
            return {"auroc": _auroc(y, s), "brier": float(np.mean((s - y) ** 2)), "ece": compute_ece(y, s, 10)}

        return fn, (y,), old["score"].to_numpy(float), new["score"].to_numpy(float), y
    if kind == "regression" and {"target", "score"} <= set(old.columns) & set(new.columns):
        y = old["target"].to_numpy(float)

        def fn(y, s):
            return {"mae": float(np.mean(np.abs(s - y))), "rmse": float(np.sqrt(np.mean((s - y) ** 2)))}

        return fn, (y,), old["score"].to_numpy(float), new["score"].to_numpy(float), None
    if kind == "survival" and {"time", "event", "score"} <= set(old.columns) & set(new.columns):
        t, e = old["time"].to_numpy(float), old["event"].to_numpy(np.int64)

        def fn(t, e, s):
            return {"c_index": _harrell_c(t, e, s)}

        return fn, (t, e), old["score"].to_numpy(float), new["score"].to_numpy(float), e
    if kind == "multiclass" and class_names:
        columns = [f"score_{c}" for c in class_names]
        if "label" in old.columns and set(columns) <= set(old.columns) & set(new.columns):
            lookup = {str(c): k for k, c in enumerate(class_names)}
            y = old["label"].astype(str).map(lookup).to_numpy()

            def fn(y, s):
                return {"accuracy": float((s.argmax(axis=1) == y).mean())}

            return fn, (y,), old[columns].to_numpy(float), new[columns].to_numpy(float), y
    return None


def _paired(old: dict, new: dict, split: str, n_resamples: int, confidence: float, seed: int):
    """Paired bootstrap of new − old on the shared records of ``split``, or (None, why not)."""
    paths = [d["dir"] / "predictions.csv" for d in (old, new)]
    if not all(p.is_file() for p in paths):
        return None, "predictions.csv missing in one run"
    kind = str(new["run"].get("task", {}).get("kind"))
    if kind != str(old["run"].get("task", {}).get("kind")):
        return None, "the runs predict different task kinds"
    frames = []
    for path in paths:
        frame = pd.read_csv(path, dtype={"id": str, "split": str, "label": str})
        frame = frame[frame["split"] == split] if "split" in frame.columns else frame.iloc[0:0]
        if frame["id"].duplicated().any():
            return None, f"{path} lists an id twice in split '{split}': records cannot be paired"
        frames.append(frame.set_index("id"))
    shared = frames[0].index.intersection(frames[1].index)
    if len(shared) < 10:
        return None, f"the runs share {len(shared)} record ids in split '{split}' (need >= 10)"
    a, b = frames[0].loc[shared], frames[1].loc[shared]
    truth = [c for c in ("label", "target", "time", "event") if c in a.columns and c in b.columns]
    if any(not a[c].equals(b[c]) for c in truth):
        return None, "the shared records have different truth in the two runs (another outcome definition)"
    setup = _paired_setup(kind, new["run"].get("task", {}).get("class_names"), a, b)
    if setup is None:
        return None, f"paired metrics are not available for task kind '{kind}'"
    fn, truth_arrays, s_old, s_new, strata = setup
    k = len(truth_arrays)

    def difference(*arrays):
        t, so, sn = arrays[:k], arrays[k], arrays[k + 1]
        mo, mn = fn(*t, so), fn(*t, sn)
        return {**{f"old\t{m}": v for m, v in mo.items()}, **{f"new\t{m}": v for m, v in mn.items()},
                **{f"diff\t{m}": mn[m] - mo[m] for m in mo}}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = bootstrap_metrics(difference, (*truth_arrays, s_old, s_new), strata=strata, n_resamples=n_resamples,
                                  confidence=confidence, seed=seed)
    return (table, int(len(shared))), None


def _direction(metric: str, diff: float) -> str:
    lower = metric in LOWER_IS_BETTER or metric.startswith("calibration_error")
    return "better" if (diff < 0) == lower else "worse"


# ------------------------------------------------------------------------------------------------ public API
def compare_runs(old_run_dir: Path, new_run_dir: Path, *, split: str = "test", n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """What changed from ``old_run_dir`` to ``new_run_dir`` and whether the ``split`` metrics changed beyond their
    uncertainty.

    Args:
        old_run_dir: the earlier run folder (``run.json``, ``metrics.json``; ``predictions.csv``,
            ``model/config.json`` and ``lineage.json`` used when present).
        new_run_dir: the later run folder.
        split: the split whose metrics are compared (``test``; ``external`` for `medai evaluate` folders).
        n_resamples: paired bootstrap resamples.
        confidence: CI coverage of the paired differences.
        seed: bootstrap seed.

    Returns:
        JSON-ready dict: ``old``/``new`` (name, created, folder, artefact sha256), ``method`` (``paired_bootstrap``
        with ``n_paired`` records, or ``ci_overlap`` with ``why_not_paired``), ``metrics`` (per metric: ``old`` and
        ``new`` ``{value, ci_low, ci_high}``, ``difference`` (new − old; with its CI when paired),
        ``significant``, ``change``: ``better``/``worse``/``no_significant_change``/``unknown``), ``worse`` and
        ``better`` (metric names changed significantly), ``config_changes`` (``[{key, old, new}]``), ``data``
        (old/new sha256, ``changed``), ``splits`` (membership hash per split and ``changed``, from lineage.json).

    Raises:
        DataValidationError: a folder lacks run.json or metrics.json, or has a damaged JSON file.
    """
    old, new = _load(old_run_dir), _load(new_run_dir)
    paired, why_not = _paired(old, new, split, n_resamples, confidence, seed)
    old_table = old["metrics"].get(split) or {}
    new_table = new["metrics"].get(split) or {}
    metrics: dict[str, Any] = {}
    for name in [m for m in new_table if m in old_table]:
        o, n = old_table[name], new_table[name]
        if not (isinstance(o, dict) and isinstance(n, dict)) or o.get("value") is None or n.get("value") is None:
            continue
        entry: dict[str, Any] = {"old": o, "new": n, "difference": {"value": n["value"] - o["value"]}}
        if paired is not None and f"diff\t{name}" in paired[0]:
            diff = paired[0][f"diff\t{name}"]
            entry["difference"] = diff
            low, high = diff["ci_low"], diff["ci_high"]
            significant = None if low is None or high is None else bool(low > 0 or high < 0)
            entry["method"] = "paired_bootstrap"
        else:
            bounds = [o.get("ci_low"), o.get("ci_high"), n.get("ci_low"), n.get("ci_high")]
            significant = None if None in bounds else bool(bounds[3] < bounds[0] or bounds[2] > bounds[1])
            entry["method"] = "ci_overlap"
        entry["significant"] = significant
        value = entry["difference"]["value"]
        entry["change"] = ("unknown" if significant is None or value is None else
                           _direction(name, value) if significant else "no_significant_change")
        metrics[name] = entry

    old_lineage, new_lineage = old["lineage"] or {}, new["lineage"] or {}
    splits = {}
    for name in sorted(set(old_lineage.get("splits", {})) | set(new_lineage.get("splits", {}))):
        a = old_lineage.get("splits", {}).get(name, {}).get("sha256")
        b = new_lineage.get("splits", {}).get(name, {}).get("sha256")
        splits[name] = {"old": a, "new": b, "changed": None if a is None or b is None else a != b}
    old_sha, new_sha = old["run"].get("data", {}).get("sha256"), new["run"].get("data", {}).get("sha256")

    def describe(d: dict) -> dict:
        return {"name": d["run"].get("name"), "created": d["run"].get("created"), "folder": str(d["dir"]),
                "artifact_sha256": d["run"].get("artifact_sha256"),
                "git_commit": ((d["lineage"] or {}).get("code") or {}).get("git_commit")}

    return {
        "schema": SCHEMA,
        "split": split,
        "old": describe(old),
        "new": describe(new),
        "method": "paired_bootstrap" if paired is not None else "ci_overlap",
        "n_paired": paired[1] if paired is not None else None,
        "why_not_paired": why_not,
        "confidence": confidence,
        "metrics": metrics,
        "worse": [m for m, e in metrics.items() if e["change"] == "worse"],
        "better": [m for m, e in metrics.items() if e["change"] == "better"],
        "config_changes": _config_changes(old["config"], new["config"]),
        "data": {"old_sha256": old_sha, "new_sha256": new_sha,
                 "changed": None if old_sha is None or new_sha is None else old_sha != new_sha},
        "splits": splits,
    }


def build_changelog(run_dirs: Sequence[Path] | Path, *, split: str = "test", n_resamples: int = 1000,
                    confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Change log over several versions: each run compared with the one before it (ordered by ``run.json``
    ``created``, then folder name).

    Args:
        run_dirs: run folders, or one registry folder whose sub-folders holding a ``run.json`` are the versions.
        split, n_resamples, confidence, seed: as in :func:`compare_runs`.

    Returns:
        ``{"schema", "versions": [{name, created, folder}], "entries": [compare_runs(...) per consecutive pair]}``.

    Raises:
        DataValidationError: fewer than two run folders.
    """
    if isinstance(run_dirs, str | Path):
        root = Path(run_dirs)
        folders = sorted(p for p in root.iterdir() if (p / "run.json").is_file()) if root.is_dir() else []
    else:
        folders = [Path(p) for p in run_dirs]
    if len(folders) < 2:
        raise DataValidationError(f"Change log: found {len(folders)} run folder(s); at least two versions (folders "
                                  "with run.json) are needed.")
    created = {p: (_read_json(p / "run.json") or {}).get("created") or "" for p in folders}
    folders.sort(key=lambda p: (created[p], p.name))
    entries = [compare_runs(a, b, split=split, n_resamples=n_resamples, confidence=confidence, seed=seed)
               for a, b in zip(folders[:-1], folders[1:], strict=True)]
    return {"schema": SCHEMA,
            "versions": [{"folder": str(p), "created": created[p] or None} for p in folders],
            "entries": entries}


def render_changelog(entries: Sequence[dict[str, Any]] | dict[str, Any]) -> str:
    """Markdown change log of :func:`compare_runs` results (or of :func:`build_changelog`'s output)."""
    if isinstance(entries, dict):
        entries = entries["entries"] if "entries" in entries else [entries]

    def num(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = ["# Model change log", ""]
    for entry in entries:
        old, new = entry["old"], entry["new"]
        lines += [f"## {old['name']} ({old['created']}) → {new['name']} ({new['created']})", ""]
        method = ("paired bootstrap on " + str(entry["n_paired"]) + " shared records" if entry["method"] ==
                  "paired_bootstrap" else f"CI overlap ({entry['why_not_paired']})")
        lines += [f"Comparison on the {entry['split']} split: {method}.", ""]
        if entry["worse"]:
            lines.append(f"**Worse beyond the CI:** {', '.join(entry['worse'])}.")
        if entry["better"]:
            lines.append(f"Better beyond the CI: {', '.join(entry['better'])}.")
        lines += ["", "| metric | old | new | new − old (CI) | change |", "|---|---|---|---|---|"]
        for name, m in entry["metrics"].items():
            d = m["difference"]
            ci = f" ({num(d.get('ci_low'))} to {num(d.get('ci_high'))})" if "ci_low" in d else ""
            lines.append(f"| {name} | {num(m['old']['value'])} | {num(m['new']['value'])} | {num(d['value'])}{ci} | "
                         f"{m['change'].replace('_', ' ')} |")
        data = entry["data"]
        state = {True: "changed", False: "unchanged", None: "unknown"}[data["changed"]]
        lines += ["", f"- Data: {state} (sha256 {str(data['old_sha256'])[:12]} → {str(data['new_sha256'])[:12]})"]
        for name, s in entry["splits"].items():
            if s["changed"]:
                lines.append(f"- Split '{name}' membership changed")
        if entry["config_changes"]:
            lines.append("- Configuration changes: " + "; ".join(
                f"`{c['key']}`: {c['old']!r} → {c['new']!r}" for c in entry["config_changes"]))
        else:
            lines.append("- Configuration: unchanged")
        lines.append("")
    return "\n".join(lines)
