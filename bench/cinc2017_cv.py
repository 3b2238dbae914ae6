"""PhysioNet/CinC Challenge 2017 (AF classification from a short single-lead ECG): the challenge score by
stratified 5-fold cross-validation on the 200 records of ``../shared/data/cinc2017_af``.

Published: the challenge's best entries scored F1 ≈ 0.83 (mean F1 over N, A, O) on the hidden test set, trained on
8,528 records (Clifford et al., "AF classification from a short single lead ECG recording: the PhysioNet/Computing in
Cardiology Challenge 2017", CinC 2017; joint winners Teijeiro et al., Datta et al., Zabihi et al., Hong et al.).
Goal here: ≥ 0.80 with 160 training records per fold — 2 % of the challenge's training data.

Protocol: the challenge has no official split of these records, so: stratified 5-fold CV (seed 0) over the 200
labelled records. In each fold, 15 % of the training part (stratified, seed = fold) is the validation set for early
stopping; the held-out fold is touched only for scoring. The network is medai's default (``medai train --data
FOLDER`` with no options: the same function, :func:`medai.workflows.ecg.fit_ecg`); the feature baseline is the run's
in-run baseline (HRV + morphology features, gradient boosting) fitted on the same training part. Recordings that
fail medai's signal check are scored as noisy ('~'), as `medai evaluate` does. Out-of-fold predictions of all 200
records are pooled: the CinC score with a stratified bootstrap 95 % CI (1,000 resamples), and per-fold mean ± SD.
Nothing was tuned on the held-out folds; the defaults (window 10 s at 150 Hz, resnet1d) were fixed beforehand.

Run: ``python bench/cinc2017_cv.py [--quick] [--model resnet1d|ecg_transformer]`` (writes
bench/results/cinc2017_cv.json).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

import common
from medai.core.config import DataConfig, ModelConfig, PreprocessingConfig, RunConfig, TaskConfig, TrainingConfig
from medai.evaluation.metrics import compute_cinc2017_score, multiclass_metrics
from medai.io.ecg import find_ecg_dataset
from medai.models.baselines import FittedBaseline
from medai.tasks.ecg import build_ecg_task
from medai.workflows.ecg import _baseline_features, fit_ecg, resolve_model

NAME = "cinc2017_cv"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cinc2017_af"
PUBLISHED = 0.83
GOAL = 0.80
SOURCE = ("Clifford GD, Liu C, Moody B, et al. AF classification from a short single lead ECG recording: the "
          "PhysioNet/Computing in Cardiology Challenge 2017. Computing in Cardiology 2017;44")


def _metrics(names):
    def fn(y, p):
        table = multiclass_metrics(y, p, names)
        return {k: table[k] for k in ("cinc2017_score", "f1_N", "f1_A", "f1_O", "auroc_A", "accuracy")}
    return fn


def run(quick: bool = False, model: str = "resnet1d") -> dict:
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found (see ../shared/DATA.md).")
    started = time.perf_counter()
    config = RunConfig(data=DataConfig(path=str(DATA)), task=TaskConfig(), model=ModelConfig(name=model),
                       training=TrainingConfig(max_epochs=3 if quick else None))
    config = config.replace(training=config.training.resolved("image"), model=resolve_model(config))
    task = build_ecg_task(DATA, config.task, PreprocessingConfig(), progress=True)
    names = task.class_names
    labels = find_ecg_dataset(DATA, require_labels=True).labels
    unusable_ids = [i for i, _ in task.unusable]
    all_ids = list(task.ids) + unusable_ids
    y_all = np.array([names.index(str(labels[i]).strip()) for i in all_ids])
    n_usable = len(task.ids)
    everything = np.arange(n_usable)
    features = _baseline_features(task, {"train": everything, "val": everything[:0], "test": everything[:0]})["train"]

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    ours = np.zeros((len(all_ids), len(names)))
    base = np.zeros_like(ours)
    noisy = np.eye(len(names))[names.index("~")]
    ours[n_usable:] = base[n_usable:] = noisy
    per_fold = []
    for fold, (train_val, test) in enumerate(folds.split(np.zeros(len(all_ids)), y_all)):
        train_val = train_val[train_val < n_usable]
        test_usable = test[test < n_usable]
        train, val = train_test_split(train_val, test_size=0.15, stratify=task.y[train_val], random_state=fold)
        split = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test_usable)}
        with tempfile.TemporaryDirectory() as tmp:
            fitted = fit_ecg(task, split, config, Path(tmp) / "checkpoints", progress=False)
        ours[split["test"]] = fitted.scores["test"]
        baseline = FittedBaseline("gradient_boosting", task.kind, config.training.seed)
        baseline.fit(features[split["train"]], y=task.y[split["train"]])
        base[split["test"]] = baseline.scores(features[split["test"]])
        fold_ours = compute_cinc2017_score(y_all[test], ours[test].argmax(1), names)
        fold_base = compute_cinc2017_score(y_all[test], base[test].argmax(1), names)
        per_fold.append({"fold": fold, "ours": fold_ours, "baseline": fold_base,
                         "epochs_run": fitted.result.epochs_run, "best_epoch": fitted.result.best_epoch})
        print(f"  fold {fold}: medai {fold_ours:.3f}  feature baseline {fold_base:.3f}  "
              f"({fitted.result.epochs_run} epochs)", flush=True)
        if quick and fold == 1:
            break
    scored = np.arange(len(all_ids)) if not quick else np.flatnonzero(ours.sum(1) > 0)
    n_resamples = 100 if quick else common.N_RESAMPLES
    ci_ours = common.bootstrap_ci(_metrics(names), (y_all[scored], ours[scored]), y_all[scored], n_resamples)
    ci_base = common.bootstrap_ci(_metrics(names), (y_all[scored], base[scored]), y_all[scored], n_resamples)
    fold_ours = common.summary([f["ours"] for f in per_fold])
    fold_base = common.summary([f["baseline"] for f in per_fold])
    label = f"medai {model} (CinC 2017, 5-fold CV)"
    table = [common.row(label, "cinc2017", fold_ours, ci_ours["cinc2017_score"], published=PUBLISHED,
                        note="published: best entries, hidden test, 8,528 training records")]
    for metric in ("f1_N", "f1_A", "f1_O", "auroc_A"):
        table.append(common.row(label, metric, None, ci_ours[metric]))
    table.append(common.row("HRV + morphology features, gradient boosting", "cinc2017", fold_base,
                            ci_base["cinc2017_score"], note="in-run baseline"))
    for metric in ("f1_A", "auroc_A"):
        table.append(common.row("HRV + morphology features, gradient boosting", metric, None, ci_base[metric]))
    return {
        "name": NAME,
        "title": "PhysioNet/CinC 2017 AF classification, 200 records, stratified 5-fold CV: CinC score",
        "date": common.today(), "machine": common.machine(), "quick": quick,
        "runtime_s": time.perf_counter() - started,
        "protocol": __doc__.split("Protocol: ")[1].split("Run:")[0].strip(),
        "seeds": {"folds": 0, "training": config.training.seed},
        "model": {"name": model, "params": config.model.params},
        "n_records": len(all_ids), "n_unusable": len(unusable_ids),
        "unusable": [{"id": i, "reasons": r} for i, r in task.unusable],
        "per_fold": per_fold, "pooled": {"medai": ci_ours, "feature_baseline": ci_base},
        "published": {"source": SOURCE, "cinc2017_score": PUBLISHED},
        "table": table,
        "goal": {"metric": "pooled out-of-fold CinC score", "value": GOAL,
                 "met": bool(ci_ours["cinc2017_score"]["value"] >= GOAL)},
    }


def main(argv: list[str]) -> None:
    model = argv[argv.index("--model") + 1] if "--model" in argv else "resnet1d"
    common.run_script(NAME if model == "resnet1d" else f"{NAME}_{model}", lambda quick: run(quick, model), argv)


if __name__ == "__main__":
    main(sys.argv[1:])
