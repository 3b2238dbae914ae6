"""Wisconsin diagnostic breast cancer: repeated stratified 10-fold cross-validation, accuracy and AUROC.

Data: ``load_builtin("wdbc")`` (569 fine-needle aspirates, 30 nuclear features, 212 malignant = positive class).
Published: 97.5 % accuracy by 10-fold CV (Street, Wolberg & Mangasarian 1993, multisurface method tree on 3
features).

Protocol: for each seed, a stratified 10-fold partition seeded by the seed. Within each outer training fold a
stratified 80/20 inner split (seeded): every candidate of BINARY_GRID is trained on the 80 % with early stopping on
the 20 %, the candidate with the lowest inner-validation loss (class-balanced cross-entropy, the loss early
stopping uses) is the fold's model, and its decision threshold is the one medai ships: Youden's J on the inner
validation split. The outer test fold is only scored. Accuracy is pooled over the 569 out-of-fold decisions of a
seed (as in the paper); AUROC is the mean over the 10 test folds. Also reported, fixed in advance rather than
tuned: the network's accuracy at threshold 0.5 (its probabilities are prior-corrected, so 0.5 is the
accuracy-optimal cut-off in theory).

Baseline: medai's logistic regression (scikit-learn, L2, C=1) on the same folds, fitted on the whole outer
training fold with medai's preprocessing fitted on it, decision at 0.5.

Run: ``python bench/wdbc_cv.py`` (writes bench/results/wdbc_cv.json).
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

import common
from medai.core.config import TaskConfig, TaskKind
from medai.data.builtin import BUILTIN_DATASETS, load_builtin
from medai.data.preprocess import TabularPreprocessor
from medai.pipeline import fit_network
from medai.tasks.tabular import build_tabular_task

NAME = "wdbc_cv"
DATASET = "wdbc"
SEEDS = (0, 1, 2, 3, 4)
N_FOLDS = 10
INNER_VAL_FRACTION = 0.2
GOAL = 0.98
PUBLISHED_ACCURACY = 0.975
SOURCE = ("Street WN, Wolberg WH, Mangasarian OL. Nuclear feature extraction for breast tumor diagnosis. "
          "Proc SPIE 1905; 1993 (10-fold CV accuracy 97.5 %)")
MODELS = ("ours", "ours_at_0.5", "logistic_regression")


def _cv_metrics(y, fold, *pairs):
    """For each (probability, decision) pair of ``(n, n_seeds)`` arrays: pooled accuracy and mean per-fold AUROC,
    each averaged over seeds."""
    out = []
    for probability, decision in pairs:
        accuracy = np.mean([(decision[:, s] == y).mean() for s in range(fold.shape[1])])
        aurocs = [common.auroc(y[fold[:, s] == k], probability[fold[:, s] == k, s])
                  for s in range(fold.shape[1]) for k in np.unique(fold[:, s])]
        out.append((float(accuracy), float(np.mean(aurocs))))
    return out


def run(quick: bool = False) -> dict:
    """Run the benchmark; ``quick`` shrinks seeds, grid and resamples for a smoke test (numbers not reportable)."""
    common.setup_torch()
    started = time.perf_counter()
    seeds = SEEDS[:1] if quick else SEEDS
    grid = common.BINARY_GRID[:2] if quick else common.BINARY_GRID
    n_resamples = 100 if quick else common.N_RESAMPLES
    info = BUILTIN_DATASETS.get(DATASET)
    task_config = TaskConfig(kind=TaskKind.BINARY, label=info.label, positive_class=info.positive_class)
    task = build_tabular_task(load_builtin(DATASET), task_config, DATASET)
    y = task.y
    n = len(y)

    probability = {m: np.zeros((n, len(seeds))) for m in MODELS}
    decision = {m: np.zeros((n, len(seeds)), dtype=int) for m in MODELS}
    fold_of = np.zeros((n, len(seeds)), dtype=int)
    folds_log = []
    timing = {"networks_s": 0.0, "baselines_s": 0.0, "bootstrap_s": 0.0}
    for s_index, seed in enumerate(seeds):
        outer = StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed)
        for k, (train, test) in enumerate(outer.split(y, y)):
            fold_of[test, s_index] = k
            fit_idx, val_idx = train_test_split(train, test_size=INNER_VAL_FRACTION, stratify=y[train],
                                                random_state=seed)
            split = {"train": np.sort(fit_idx), "val": np.sort(val_idx), "test": test}
            inner, best = [], None
            clock = time.perf_counter()
            for candidate in grid:
                fitted = fit_network(task, split, candidate.run_config(DATASET, task_config, seed=seed))
                loss = fitted.result.best_val_loss
                inner.append({"candidate": candidate.name, "inner_val_loss": loss,
                              "best_epoch": fitted.result.best_epoch})
                if best is None or loss < best[0]:
                    best = (loss, candidate.name, fitted)
            fitted = best[2]
            timing["networks_s"] += time.perf_counter() - clock
            clock = time.perf_counter()
            p = fitted.scores["test"]
            threshold = fitted.predictor.artifact.thresholds["threshold"]
            probability["ours"][test, s_index] = probability["ours_at_0.5"][test, s_index] = p
            decision["ours"][test, s_index] = p >= threshold
            decision["ours_at_0.5"][test, s_index] = p >= 0.5

            pre = TabularPreprocessor(task.numeric_columns, task.categorical_columns).fit(task.features.iloc[train])
            baseline = common.baseline("logistic_regression", TaskKind.BINARY, seed).fit(
                pre.transform(task.features.iloc[train], DATASET), y=y[train])
            q = baseline.scores(pre.transform(task.features.iloc[test], DATASET))
            probability["logistic_regression"][test, s_index] = q
            decision["logistic_regression"][test, s_index] = q >= 0.5
            timing["baselines_s"] += time.perf_counter() - clock
            common.check_auroc(y[test], p)
            folds_log.append({
                "seed": seed, "fold": k, "n_test": int(len(test)), "chosen": best[1], "threshold": threshold,
                "inner": inner,
                "test_auroc": {m: common.auroc(y[test], probability[m][test, s_index]) for m in MODELS},
                "test_errors": {m: int((decision[m][test, s_index] != y[test]).sum()) for m in MODELS},
            })

    pairs = [(probability[m], decision[m]) for m in MODELS]

    def metrics(y_, fold, *arrays):
        values = _cv_metrics(y_, fold, *zip(arrays[0::2], arrays[1::2], strict=True))
        out = {}
        for m, (accuracy, area) in zip(MODELS, values, strict=True):
            out[f"{m}:accuracy"], out[f"{m}:auroc"] = accuracy, area
        return out

    flat = tuple(a for pair in pairs for a in pair)
    clock = time.perf_counter()
    ci = common.bootstrap_ci(metrics, (y, fold_of, *flat), strata=y, n_resamples=n_resamples)
    timing["bootstrap_s"] = time.perf_counter() - clock
    per_seed = {}
    for m in MODELS:
        per_seed[m] = {"accuracy": common.summary([(decision[m][:, s] == y).mean() for s in range(len(seeds))]),
                       "auroc": common.summary([np.mean([f["test_auroc"][m] for f in folds_log if f["seed"] == seed])
                                                for seed in seeds])}
    titles = {"ours": "medai MLP, Youden threshold on inner val",
              "ours_at_0.5": "medai MLP (same models), threshold 0.5",
              "logistic_regression": "Logistic regression (L2, C=1), threshold 0.5"}
    table = []
    for m in MODELS:
        for metric in ("accuracy", "auroc"):
            table.append(common.row(titles[m], metric, per_seed[m][metric], ci[f"{m}:{metric}"],
                                    published=PUBLISHED_ACCURACY if metric == "accuracy" and m == "ours" else None))
    return {
        "name": NAME,
        "title": f"Wisconsin diagnostic breast cancer (n={n}), {N_FOLDS}-fold CV x {len(seeds)} seeds",
        "date": common.today(),
        "machine": common.machine(),
        "quick": quick,
        "runtime_s": time.perf_counter() - started,
        "timing": timing,
        "protocol": {
            "data": f"{DATASET}: {n} aspirates ({int(y.sum())} malignant = positive), 30 features",
            "outer": f"stratified {N_FOLDS}-fold CV per seed (partition seeded by the seed)",
            "inner": f"stratified {1 - INNER_VAL_FRACTION:.0%}/{INNER_VAL_FRACTION:.0%} split of the outer training "
                     "fold: fit / early stopping, candidate choice by lowest inner-validation loss, Youden threshold",
            "baseline": "logistic regression fitted on the whole outer training fold, threshold 0.5",
            "metrics": "accuracy pooled over a seed's out-of-fold decisions; AUROC mean over its test folds; "
                       "both averaged over seeds",
            "ci": f"percentile bootstrap over aspirates, stratified by diagnosis, {n_resamples} resamples, seed "
                  f"{common.BOOTSTRAP_SEED}, of the seed-averaged metric",
        },
        "seeds": list(seeds),
        "grid": [c.describe() for c in grid],
        "chosen_candidates": dict(Counter(f["chosen"] for f in folds_log)),
        "folds": folds_log,
        "published": {"accuracy": PUBLISHED_ACCURACY, "source": SOURCE},
        "results": {m: {metric: {**per_seed[m][metric], **ci[f"{m}:{metric}"]} for metric in ("accuracy", "auroc")}
                    for m in MODELS},
        "table": table,
        "goal": {"metric": "accuracy (mean over seeds, medai threshold)", "value": GOAL,
                 "met": per_seed["ours"]["accuracy"]["mean"] >= GOAL},
    }


def main(argv: list[str]) -> None:
    common.run_script(NAME, run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
