"""METABRIC overall survival: repeated 5-fold cross-validation, Harrell's C-index.

Data: DeepSurv's processed METABRIC (``load_builtin("metabric")``, 9 features x0..x8, ``duration`` in months,
``event`` = death). The source has 1,904 patients, one of them censored at duration 0 (never at risk); survival
times must be positive, so that row goes: ``load_builtin`` already drops it (1,903 rows), and this benchmark
drops any remaining row with ``duration <= 0`` (the count, now 0, is recorded in the results).
Published (Katzman et al., BMC Med Res Methodol 2018, Table; their own train/test split, not CV): DeepSurv 0.655,
Cox PH 0.632, random survival forest 0.620.

Protocol: for each seed, a stratified (by event) 5-fold partition seeded by the seed. Within each outer training
fold a stratified 80/20 inner split (seeded): every candidate of SURVIVAL_GRID is trained on the 80 % with early
stopping on the 20 %, and the candidate with the highest inner-validation C-index is the fold's model (nested
selection: the outer test fold is only scored). Baselines (scikit-survival Cox PH, random survival forest) are
fitted on the whole outer training fold with medai's preprocessing fitted on it, and scored on the same test fold.
A seed's number is the mean C over its 5 test folds; reported: mean ± SD over seeds and a 95 % bootstrap CI of
the overall mean (patients resampled, stratified by event; each resample recomputes every fold's C).

Run: ``python bench/metabric_cv.py`` (writes bench/results/metabric_cv.json).
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

NAME = "metabric_cv"
DATASET = "metabric"
SEEDS = (0, 1, 2)
N_FOLDS = 5
INNER_VAL_FRACTION = 0.2
GOAL = 0.66
PUBLISHED = {"deepsurv": 0.655, "cox_ph": 0.632, "random_survival_forest": 0.620}
SOURCE = "Katzman et al., BMC Med Res Methodol 2018;18:24, Table (METABRIC)"
BASELINES = ("cox_ph", "random_survival_forest")


def _fold_c(time_, event, fold, *risks):
    """Harrell's C of each test fold, ``(n_models, n_seeds * n_folds)``. ``fold`` and each risk are ``(n, n_seeds)``;
    the comparable pairs of a fold are found once for all models."""
    values = []
    for s in range(fold.shape[1]):
        for k in np.unique(fold[:, s]):
            rows = fold[:, s] == k
            values.append(common.harrell_c_many(time_[rows], event[rows],
                                                np.column_stack([r[rows, s] for r in risks])))
    return np.array(values).T


def run(quick: bool = False) -> dict:
    """Run the benchmark; ``quick`` shrinks seeds, grid and resamples for a smoke test (numbers not reportable)."""
    common.setup_torch()
    started = time.perf_counter()
    seeds = SEEDS[:1] if quick else SEEDS
    grid = common.SURVIVAL_GRID[:2] if quick else common.SURVIVAL_GRID
    n_resamples = 100 if quick else common.N_RESAMPLES
    info = BUILTIN_DATASETS.get(DATASET)
    frame = load_builtin(DATASET)
    keep = frame[info.time] > 0
    dropped = int((~keep).sum())
    frame = frame[keep].reset_index(drop=True)
    task_config = TaskConfig(kind=TaskKind.SURVIVAL, time=info.time, event=info.event, features=info.features)
    task = build_tabular_task(frame, task_config, DATASET)
    t, e = task.time, task.event
    n = len(e)

    risk = {m: np.zeros((n, len(seeds))) for m in ("ours", *BASELINES)}
    fold_of = np.zeros((n, len(seeds)), dtype=int)
    folds_log = []
    timing = {"networks_s": 0.0, "baselines_s": 0.0, "bootstrap_s": 0.0}
    for s_index, seed in enumerate(seeds):
        outer = StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed)
        for k, (train, test) in enumerate(outer.split(e, e)):
            fold_of[test, s_index] = k
            fit_idx, val_idx = train_test_split(train, test_size=INNER_VAL_FRACTION, stratify=e[train],
                                                random_state=seed)
            split = {"train": np.sort(fit_idx), "val": np.sort(val_idx), "test": test}
            inner = []
            best = None
            clock = time.perf_counter()
            for candidate in grid:
                fitted = fit_network(task, split, candidate.run_config(DATASET, task_config, seed=seed))
                val_c = common.harrell_c(t[split["val"]], e[split["val"]], fitted.scores["val"])
                inner.append({"candidate": candidate.name, "inner_val_c": val_c, "best_epoch": fitted.result.best_epoch})
                if best is None or val_c > best[0]:
                    best = (val_c, candidate.name, fitted.scores["test"])
            risk["ours"][test, s_index] = best[2]
            timing["networks_s"] += time.perf_counter() - clock
            clock = time.perf_counter()
            common.check_harrell_c(t[test], e[test], best[2])

            pre = TabularPreprocessor(task.numeric_columns, task.categorical_columns).fit(task.features.iloc[train])
            x_train = pre.transform(task.features.iloc[train], DATASET)
            x_test = pre.transform(task.features.iloc[test], DATASET)
            for name in BASELINES:
                baseline = common.baseline(name, TaskKind.SURVIVAL, seed).fit(x_train, time=t[train], event=e[train])
                risk[name][test, s_index] = baseline.scores(x_test)
            timing["baselines_s"] += time.perf_counter() - clock
            folds_log.append({
                "seed": seed, "fold": k, "n_test": int(len(test)), "chosen": best[1], "inner": inner,
                "test_c": {m: common.harrell_c(t[test], e[test], risk[m][test, s_index]) for m in risk},
            })

    def per_seed(model: str) -> dict:
        values = [np.mean([f["test_c"][model] for f in folds_log if f["seed"] == seed]) for seed in seeds]
        return common.summary(values)

    def metrics(time_, event, fold, ours, cox, forest):
        means = _fold_c(time_, event, fold, ours, cox, forest).mean(axis=1)
        return dict(zip(("ours", "cox_ph", "random_survival_forest"), map(float, means), strict=True))

    clock = time.perf_counter()
    ci = common.bootstrap_ci(metrics, (t, e, fold_of, risk["ours"], risk["cox_ph"], risk["random_survival_forest"]),
                             strata=e, n_resamples=n_resamples)
    timing["bootstrap_s"] = time.perf_counter() - clock
    summaries = {m: per_seed(m) for m in risk}
    fold_level = {m: common.summary([f["test_c"][m] for f in folds_log]) for m in risk}
    chosen = Counter(f["chosen"] for f in folds_log)
    table = [
        common.row("medai DeepSurv MLP (nested selection)", "c_index", summaries["ours"], ci["ours"],
                   published=PUBLISHED["deepsurv"], note="per seed: mean of 5 test folds"),
        common.row("Cox PH (scikit-survival)", "c_index", summaries["cox_ph"], ci["cox_ph"],
                   published=PUBLISHED["cox_ph"], note="in-run baseline, same folds"),
        common.row("Random survival forest (300 trees)", "c_index", summaries["random_survival_forest"],
                   ci["random_survival_forest"], published=PUBLISHED["random_survival_forest"],
                   note="in-run baseline, same folds"),
    ]
    return {
        "name": NAME,
        "title": f"METABRIC overall survival (n={n}), {N_FOLDS}-fold CV x {len(seeds)} seeds, Harrell C",
        "date": common.today(),
        "machine": common.machine(),
        "quick": quick,
        "runtime_s": time.perf_counter() - started,
        "timing": timing,
        "protocol": {
            "data": f"{DATASET}: {n} patients ({int(e.sum())} deaths); the source's patient censored at duration 0 "
                    f"is dropped by load_builtin, {dropped} further row(s) with {info.time} <= 0 dropped here; "
                    f"features {', '.join(info.features)}",
            "outer": f"stratified {N_FOLDS}-fold CV per seed (partition seeded by the seed)",
            "inner": f"stratified {1 - INNER_VAL_FRACTION:.0%}/{INNER_VAL_FRACTION:.0%} split of the outer training "
                     "fold: fit / early stopping + candidate choice by inner-validation C",
            "baselines": "fitted on the whole outer training fold; medai preprocessing fitted on it",
            "ci": f"percentile bootstrap over patients, stratified by event, {n_resamples} resamples, seed "
                  f"{common.BOOTSTRAP_SEED}, of the mean over all (seed, fold) test-fold C-indices",
        },
        "dropped_rows": dropped,
        "seeds": list(seeds),
        "grid": [c.describe() for c in grid],
        "chosen_candidates": dict(chosen),
        "folds": folds_log,
        "published": {**PUBLISHED, "source": SOURCE},
        "ours": {**summaries["ours"], **ci["ours"]},
        "baselines": {m: {**summaries[m], **ci[m]} for m in BASELINES},
        "fold_level": fold_level,
        "table": table,
        "goal": {"metric": "c_index (mean over seeds)", "value": GOAL, "met": summaries["ours"]["mean"] >= GOAL},
    }


def main(argv: list[str]) -> None:
    common.run_script(NAME, run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
