"""MIMIC-III demo: in-hospital mortality predicted 48 h after ICU admission, by repeated patient-grouped
cross-validation on the 71 ICU stays (55 patients, 26 deaths) of ``../shared/data/mimic3_demo``.

Published: none on the demo. For context only, on a different and 300 times larger dataset (full MIMIC-III, 21,139
stays, official test split of 3,236 stays): standard LSTM AUROC 0.855, logistic regression 0.848 (Harutyunyan et
al., "Multitask learning and benchmarking with clinical time series data", Sci Data 2019). The demo's 100 patients
are enriched for deaths (37 % of the stays here against 13 % in full MIMIC-III), so neither AUPRC nor AUROC is
comparable with those numbers.

Protocol: the samples are exactly those of ``medai train --data mimic3_demo --task mortality``
(:func:`medai.tasks.ehr.build_ehr_task`: adults, ICU stays still ongoing and patients alive 48 h after ICU
admission; features from the first 48 h only). For each seed s in 0, 1, 2: patient-grouped stratified 5-fold CV
(scikit-learn ``StratifiedGroupKFold``, shuffled with seed s; no patient in two folds). Inside each fold's
training part, a second grouped stratified split (4 parts, seed s; the first part, about 25 % of the training
stays) is the validation set: early stopping of the networks and the decision threshold of every model (Youden's J,
as medai ships) are chosen on it. 25 % rather than medai's 15 % so that the validation set holds about 5 deaths,
not 3. The held-out fold is only scored. Models, all on the same folds and seeds:

- ``gru`` (medai's default EHR network) and ``ehr_transformer``, trained by
  :func:`medai.workflows.ehr.fit_ehr` (the function behind ``medai train``) with medai's defaults: EhrFeaturizer
  fitted on the training part (1-h bins, forward fill up to 24 h, masks and time-since-last channels), class-balanced
  loss, AdamW lr 1e-3, up to 100 epochs, patience 15, training seed s.
- medai's in-run baselines, logistic regression (L2, C=1) and gradient boosting (scikit-learn HistGradientBoosting,
  defaults), on the aggregated features of ``medai train`` (last/min/max/mean/count per concept, age, sex; median
  imputation + indicators, standardised on the training part), fitted on the training part only (the networks'
  weights see the same stays), seed s. With scikit-learn's default ``min_samples_leaf=20`` and about 40 training
  stays, gradient boosting can make at most one split per tree (two leaves of >= 20 stays), and none below 40
  training stays (as in ``--quick``'s 2 folds: constant scores, AUROC exactly 0.5; ``folds[*].distinct_test_scores``
  shows it): it is reported as medai ships it, not tuned here.

Metrics: per seed, the out-of-fold probabilities of all 71 stays are pooled: AUROC and AUPRC (average precision),
plus Brier score and sensitivity / specificity of the pooled decisions at each fold's validation threshold. The
95 % CIs are medai's percentile bootstrap (:func:`medai.evaluation.bootstrap.bootstrap_metrics`, 1,000 resamples,
seed 0) with patients as the resampled unit (a patient's stays are drawn together), stratified by whether the
patient died; the table's CI is that of the seed-averaged metric, the per-seed CIs are in ``results``. Mean ± SD
over the 3 seeds is given beside it; ``results[*].auroc_per_fold`` holds the mean ± SD of the 15 per-fold
AUROCs (about 14 test stays each) for comparison. Nothing was tuned: every setting above is medai's default or was
fixed before the first run; no held-out fold was used to choose anything.

Small n: 71 stays and 26 deaths give AUROC CIs about ±0.15 wide; differences between these models are not
significant unless their CIs separate, and the numbers say whether the pipeline works end to end, not how well a
model would do on full MIMIC-III.

Run: ``python bench/mimic_mortality.py [--quick]`` (writes bench/results/mimic_mortality.json; ``--quick``: 1 seed,
2 folds, 5 epochs, 100 resamples, writes nothing).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold

import common
from medai.core.config import DataConfig, ModelConfig, RunConfig, TaskConfig, TaskKind, TrainingConfig
from medai.evaluation.metrics import binary_metrics, compute_confusion_rates
from medai.evaluation.operating_point import choose_threshold
from medai.io.ehr import read_timelines
from medai.tasks.ehr import build_ehr_task
from medai.workflows.ehr import _baseline_features, featurizer_for, fit_ehr, resolve_model

NAME = "mimic_mortality"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mimic3_demo"
SEEDS = (0, 1, 2)
N_FOLDS = 5
#: The validation set is one of this many grouped, stratified parts of a fold's training stays.
INNER_PARTS = 4
NETWORKS = ("gru", "ehr_transformer")
BASELINES = ("logistic_regression", "gradient_boosting")
MODELS = NETWORKS + BASELINES
METRICS = ("auroc", "auprc", "brier", "sensitivity", "specificity")
TITLES = {
    "gru": "medai gru (default EHR network)",
    "ehr_transformer": "medai ehr_transformer",
    "logistic_regression": "Logistic regression, aggregated features",
    "gradient_boosting": "Gradient boosting, aggregated features",
}
#: Full MIMIC-III (Harutyunyan et al. 2019, in-hospital mortality, test set): context, not a target.
PUBLISHED_FULL_MIMIC_AUROC = {"gru": 0.855, "logistic_regression": 0.848}
SOURCE = ("Harutyunyan H, Khachatrian H, Kale DC, Ver Steeg G, Galstyan A. Multitask learning and benchmarking with "
          "clinical time series data. Sci Data 2019;6:96 (full MIMIC-III, in-hospital mortality: standard LSTM "
          "AUROC 0.855, logistic regression 0.848)")
CAVEAT = ("Small n: 71 ICU stays, 26 deaths — AUROC CIs are about ±0.15 wide; differences between models are not "
          "significant unless their CIs separate. The published numbers are full MIMIC-III (21,139 stays), a "
          "different dataset: context only.")


def _split(y: np.ndarray, groups: np.ndarray, seed: int, n_folds: int):
    """Yield ``{"train", "val", "test"}`` index arrays of each outer fold (patients never cross parts)."""
    index = np.arange(len(y))
    outer = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
    for train_val, test in outer.split(index, y, groups):
        inner = StratifiedGroupKFold(INNER_PARTS, shuffle=True, random_state=seed)
        fit_part, val_part = next(inner.split(train_val, y[train_val], groups[train_val]))
        split = {"train": np.sort(train_val[fit_part]), "val": np.sort(train_val[val_part]), "test": np.sort(test)}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            if set(groups[split[a]]) & set(groups[split[b]]):
                raise AssertionError(f"a patient is in both the {a} and the {b} part of a fold")
        for part in ("train", "val", "test"):
            if not 0 < y[split[part]].sum() < len(split[part]):
                raise AssertionError(f"the {part} part of a fold (seed {seed}) lacks deaths or survivors")
        yield split


def _bootstrap(y: np.ndarray, groups: np.ndarray, probability: dict[str, np.ndarray],
               decision: dict[str, np.ndarray], class_names: list[str], n_resamples: int) -> dict[str, Any]:
    """Cluster bootstrap over patients via medai's ``bootstrap_metrics``: its rows are patients, and the metric
    function gathers the stays of the drawn patients (a patient drawn twice counts twice)."""
    patients, stay_patient = np.unique(groups, return_inverse=True)
    stays_of = [np.flatnonzero(stay_patient == p) for p in range(len(patients))]
    died = np.array([int(y[rows].max()) for rows in stays_of])
    n_seeds = next(iter(probability.values())).shape[1]

    def metrics(drawn: np.ndarray) -> dict[str, float]:
        rows = np.concatenate([stays_of[p] for p in drawn])
        out: dict[str, float] = {}
        for m in probability:
            for s in range(n_seeds):
                table = binary_metrics(y[rows], probability[m][rows, s], 0.5, class_names)
                table.update(compute_confusion_rates(y[rows], decision[m][rows, s]))
                for metric in METRICS:
                    out[f"{m}:{metric}:seed{s}"] = table[metric]
            for metric in METRICS:
                out[f"{m}:{metric}:mean"] = float(np.mean([out[f"{m}:{metric}:seed{s}"] for s in range(n_seeds)]))
        return out

    return common.bootstrap_ci(metrics, (np.arange(len(patients)),), strata=died, n_resamples=n_resamples)


def run(quick: bool = False) -> dict:
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found (see ../shared/DATA.md).")
    started = time.perf_counter()
    torch.use_deterministic_algorithms(True, warn_only=True)  # as train_ehr does
    seeds = SEEDS[:1] if quick else SEEDS
    n_folds = 2 if quick else N_FOLDS
    n_resamples = 100 if quick else common.N_RESAMPLES
    timing = {"read_s": 0.0, "networks_s": 0.0, "baselines_s": 0.0, "bootstrap_s": 0.0}

    clock = time.perf_counter()
    timelines = read_timelines(DATA, progress=False)
    task = build_ehr_task(timelines, "mortality", source=str(DATA))
    timing["read_s"] = time.perf_counter() - clock
    y, groups = task.y.astype(int), task.groups
    base = RunConfig(data=DataConfig(path=str(DATA)), task=TaskConfig(outcome="mortality"),
                     training=TrainingConfig(max_epochs=5 if quick else None))
    base = base.replace(training=base.training.resolved("ehr"), model=resolve_model(base))

    probability = {m: np.full((len(y), len(seeds)), np.nan) for m in MODELS}
    decision = {m: np.zeros((len(y), len(seeds)), dtype=int) for m in MODELS}
    folds_log: list[dict[str, Any]] = []
    featurizer_facts: dict[str, Any] = {}
    for s_index, seed in enumerate(seeds):
        for k, split in enumerate(_split(y, groups, seed, n_folds)):
            test = split["test"]
            entry: dict[str, Any] = {
                "seed": seed, "fold": k,
                "n": {part: int(len(split[part])) for part in ("train", "val", "test")},
                "deaths": {part: int(y[split[part]].sum()) for part in ("train", "val", "test")},
                "networks": {}, "thresholds": {}, "test_auroc": {},
            }
            clock = time.perf_counter()
            fitted_featurizer = None
            for name in NETWORKS:
                config = base.replace(model=ModelConfig(name=name),
                                      training=dataclasses.replace(base.training, seed=seed))
                fitted = fit_ehr(task, timelines, split, config,
                                 featurizer_for(config, task.labeler.observation_hours), progress=False)
                probability[name][test, s_index] = fitted["scores"]["test"]
                threshold = float(fitted["predictor"].artifact.thresholds["threshold"])
                decision[name][test, s_index] = fitted["scores"]["test"] >= threshold
                entry["thresholds"][name] = threshold
                entry["networks"][name] = {"epochs_run": fitted["result"].epochs_run,
                                           "best_epoch": fitted["result"].best_epoch,
                                           "n_weights": fitted["n_weights"]}
                fitted_featurizer = fitted["predictor"].preprocessor
            featurizer_facts = {"n_bins": fitted_featurizer.n_bins, "bin_hours": fitted_featurizer.bin_hours,
                                "n_channels": fitted_featurizer.n_channels,
                                "n_concepts": len(fitted_featurizer.concepts_)}
            timing["networks_s"] += time.perf_counter() - clock

            clock = time.perf_counter()
            # the featurizer fitted on this fold's training stays (the same for both networks) gives the concepts
            features = _baseline_features(task, timelines, split, fitted_featurizer)
            for name in BASELINES:
                baseline = common.baseline(name, TaskKind.BINARY, seed).fit(features["train"], y=y[split["train"]])
                threshold = float(choose_threshold(y[split["val"]], baseline.scores(features["val"]),
                                                   method=base.evaluation.operating_point.value))
                scores = baseline.scores(features["test"])
                probability[name][test, s_index] = scores
                decision[name][test, s_index] = scores >= threshold
                entry["thresholds"][name] = threshold
            timing["baselines_s"] += time.perf_counter() - clock
            entry["test_auroc"] = {m: common.auroc(y[test], probability[m][test, s_index]) for m in MODELS}
            # gradient boosting's default min_samples_leaf=20 allows at most one split on ~40 training stays: a
            # fold where it predicts one constant shows up here (its AUROC is then exactly 0.5)
            entry["distinct_test_scores"] = {m: int(len(np.unique(probability[m][test, s_index].round(12))))
                                             for m in MODELS}
            common.check_auroc(y[test], probability["gru"][test, s_index])
            folds_log.append(entry)
            print(f"  seed {seed} fold {k}: test AUROC " + "  ".join(
                f"{m} {entry['test_auroc'][m]:.3f}" for m in MODELS), flush=True)
    for m in MODELS:
        if np.isnan(probability[m]).any():
            raise AssertionError(f"{m}: some stays were never scored out of fold")

    clock = time.perf_counter()
    ci = _bootstrap(y, groups, probability, decision, list(task.class_names), n_resamples)
    timing["bootstrap_s"] = time.perf_counter() - clock

    results: dict[str, Any] = {}
    table = []
    for m in MODELS:
        results[m] = {}
        for metric in METRICS:
            per_seed = common.summary([ci[f"{m}:{metric}:seed{s}"]["value"] for s in range(len(seeds))])
            results[m][metric] = {"per_seed": per_seed, "seed_mean_ci": ci[f"{m}:{metric}:mean"],
                                  "per_seed_ci": [ci[f"{m}:{metric}:seed{s}"] for s in range(len(seeds))]}
        results[m]["auroc_per_fold"] = common.summary([f["test_auroc"][m] for f in folds_log])
        for metric in ("auroc", "auprc"):
            published = PUBLISHED_FULL_MIMIC_AUROC.get(m) if metric == "auroc" else None
            note = "in-run baseline" if m in BASELINES else "medai network"
            if published is not None:
                note += "; published = full MIMIC-III (different dataset), context only"
            table.append(common.row(TITLES[m], metric, results[m][metric]["per_seed"], ci[f"{m}:{metric}:mean"],
                                    published=published, note=note))
    n_patients = len(set(groups))
    return {
        "name": NAME,
        "title": (f"MIMIC-III demo in-hospital mortality at 48 h, {len(y)} stays / {n_patients} patients / "
                  f"{int(y.sum())} deaths, grouped {n_folds}-fold CV x {len(seeds)} seed(s) — SMALL n: "
                  "CIs ≈ ±0.15, published = full MIMIC-III (context only)"),
        "caveat": CAVEAT,
        "date": common.today(), "machine": common.machine(), "quick": quick,
        "runtime_s": time.perf_counter() - started,
        "timing": timing,
        "protocol": __doc__.split("Protocol: ")[1].split("Run:")[0].strip(),
        "data": {"path": str(DATA.relative_to(ROOT.parent)), "n_timelines": len(timelines), "n_stays": len(y),
                 "n_patients": n_patients, "n_deaths": int(y.sum()), "excluded": dict(task.excluded),
                 "observation_hours": task.labeler.observation_hours},
        "featurizer": featurizer_facts,
        "training": {"max_epochs": base.training.max_epochs, "patience": base.training.patience,
                     "learning_rate": base.training.learning_rate, "weight_decay": base.training.weight_decay,
                     "class_weight": base.training.class_weight, "batch_size": base.training.batch_size or 32},
        "seeds": list(seeds), "n_folds": n_folds, "inner_parts": INNER_PARTS, "n_resamples": n_resamples,
        "folds": folds_log,
        "results": results,
        "published": {"source": SOURCE, "dataset": "full MIMIC-III (different dataset; context only)",
                      "auroc": {"lstm": 0.855, "logistic_regression": 0.848}},
        "table": table,
        "goal": None,
    }


def main(argv: list[str]) -> None:
    payload = run(quick="--quick" in argv)
    common.print_result(payload)
    print(f"  NOTE: {CAVEAT}")
    if not payload["quick"]:
        print(f"  -> {common.write_result(NAME, payload)}")


if __name__ == "__main__":
    main(sys.argv[1:])
