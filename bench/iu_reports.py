"""Indiana University chest X-ray reports (Open-i; Demner-Fushman et al., JAMIA 2016): report-text classification,
medai's MiniLM text model beside the in-run TF-IDF + logistic-regression baseline.

Published: none — text-only classification of these reports has no standard benchmark (DATA.md); the comparison is
the TF-IDF + LR baseline fitted in the same run on the same split. Goal (issue 5): normal vs abnormal AUROC ≥ 0.99
and above the baseline; on the multi-label findings, better than the baseline.

Protocol: ../shared/data/iu_xray_reports/indiana_reports.csv; text = findings + impression (joined under section
headers); label = Problems: "normal" against every other value ('!normal'), and the multi-label findings (≥ 20
positive reports, ≥ 5 in each split). Reports with neither section or coded "No Indexing" are left out (117). One
fixed split (each report is its own patient): stratified 65/15/20 train/val/test, seed 42 — the same as `medai
train recipes/iu-reports-*.yaml`. The network is trained with 3 seeds (42, 43, 44) on that split through
:func:`medai.workflows.text.fit_text` (the function behind `medai train`), early stopping and thresholds on
validation; the TF-IDF baseline's C is chosen on validation (it is deterministic: one fit). Test metrics (AUROC,
AUPRC, macro-F1; per-finding AUROC) with stratified bootstrap 95 % CIs (1,000 resamples) per seed, reported as
mean ± SD over seeds with the first seed's CI. Nothing was tuned on test.

Run: ``python bench/iu_reports.py [--quick] [--finetune]`` (writes bench/results/iu_reports[_finetune].json).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from medai.core.config import (
    DataConfig, EvaluationConfig, ModelConfig, RunConfig, TaskConfig, TaskKind, TrainingConfig,
)
from medai.evaluation.evaluate import MetricContext, SplitOutcome, evaluate_split
from medai.io.tabular import read_table
from medai.tasks.text import build_text_task, drop_sparse_findings
from medai.workflows.text import evaluate_text_baseline, fit_text, resolve_model, split_text

NAME = "iu_reports"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "iu_xray_reports" / "indiana_reports.csv"
GOAL = 0.99
SEEDS = (42, 43, 44)
TASKS = {
    "abnormal": TaskConfig(kind="binary", text="findings,impression", label="Problems", positive_class="!normal",
                           id="uid", on_invalid="skip"),
    "findings": TaskConfig(kind="multilabel", text="findings,impression", label="Problems", id="uid",
                           on_invalid="skip"),
}


def _config(task: TaskConfig, seed: int, finetune: bool, quick: bool, n_resamples: int) -> RunConfig:
    params = {"finetune": finetune, "max_tokens": 128}
    if finetune:
        params["tuned_layers"] = 1
    config = RunConfig(data=DataConfig(path=str(DATA)), task=task, model=ModelConfig(name="minilm", params=params),
                       training=TrainingConfig(seed=seed, max_epochs=(2 if quick else (4 if finetune else 200)),
                                               patience=2 if finetune else 20),
                       evaluation=EvaluationConfig(n_resamples=n_resamples))
    return config.replace(model=resolve_model(config))


def run(quick: bool = False, finetune: bool = False) -> dict:
    if not DATA.is_file():
        raise SystemExit(f"{DATA} not found (see ../shared/DATA.md).")
    common.setup_torch()
    started = time.perf_counter()
    frame = read_table(DATA)
    n_resamples = 100 if quick else common.N_RESAMPLES
    seeds = SEEDS[:1] if quick else SEEDS
    label = f"medai minilm ({'last layer fine-tuned' if finetune else 'frozen encoder'})"
    baseline_label = "TF-IDF 1-2-grams + logistic regression (C on val)"
    table, details = [], {}
    goal_met = None
    for task_name, task_config in TASKS.items():
        task = build_text_task(frame, task_config, str(DATA))
        config = _config(task_config, seeds[0], finetune, quick, n_resamples)
        split = split_text(task, config)
        task = drop_sparse_findings(task, split)
        y_test = task.y[split["test"]]
        per_seed, cache = [], None
        for seed in seeds:
            config = _config(task_config, seed, finetune, quick, n_resamples)
            with tempfile.TemporaryDirectory() as tmp:  # the frozen encoder's output is the same for every seed
                fitted = fit_text(task, split, config, Path(tmp) / "checkpoints", progress=False, cache=cache)
            cache = fitted.cache
            thresholds = fitted.predictor.artifact.thresholds
            context = MetricContext(class_names=task.class_names, threshold=thresholds.get("threshold"),
                                    label_thresholds=thresholds.get("label_thresholds"))
            metrics = evaluate_split(SplitOutcome(task.kind, fitted.scores["test"], y=y_test), context,
                                     config.evaluation, common.BOOTSTRAP_SEED)
            per_seed.append({"seed": seed, "metrics": metrics, "epochs_run": fitted.result.epochs_run,
                             "best_epoch": fitted.result.best_epoch, "reports_per_s": fitted.speed,
                             "encoder_cache_s": fitted.cache_seconds})
            print(f"  {task_name} seed {seed}: AUROC {metrics['auroc']['value']:.4f} macro-F1 "
                  f"{metrics['f1_macro']['value']:.4f} ({fitted.result.epochs_run} epochs)", flush=True)
        context = MetricContext(class_names=task.class_names)
        base, fitted_base = evaluate_text_baseline("tfidf_logistic", task, split, config, context)
        print(f"  {task_name} TF-IDF: AUROC {base['test']['auroc']['value']:.4f} (C {base['C']})", flush=True)
        metric_names = ["auroc", "auprc", "f1_macro"]
        if task.kind is TaskKind.MULTILABEL:
            metric_names += [f"auroc_{n}" for n in task.class_names]
        for metric in metric_names:
            values = common.summary([s["metrics"][metric]["value"] for s in per_seed])
            table.append(common.row(label, f"{task_name}:{metric}", values, per_seed[0]["metrics"][metric]))
            table.append(common.row(baseline_label, f"{task_name}:{metric}", None, base["test"][metric],
                                    note="in-run baseline"))
        ours = float(np.mean([s["metrics"]["auroc"]["value"] for s in per_seed]))
        details[task_name] = {
            "n": {s: int(len(split[s])) for s in ("train", "val", "test")}, "class_names": task.class_names,
            "dropped_findings": task.dropped_findings, "per_seed": per_seed,
            "baseline": {"C": base["C"], "test": base["test"]},
            "mean_auroc": ours, "baseline_auroc": base["test"]["auroc"]["value"],
        }
        if task_name == "abnormal":
            goal_met = bool(ours >= GOAL and ours > base["test"]["auroc"]["value"])
    return {
        "name": NAME if not finetune else f"{NAME}_finetune",
        "title": "IU chest X-ray reports (findings + impression): normal vs abnormal and multi-label findings, "
                 "fixed split, test set",
        "date": common.today(), "machine": common.machine(), "quick": quick,
        "runtime_s": time.perf_counter() - started,
        "protocol": __doc__.split("Protocol: ")[1].split("Run:")[0].strip(),
        "seeds": {"split": 42, "training": list(seeds)},
        "model": {"name": "minilm", "params": _config(TASKS["abnormal"], 42, finetune, quick, 100).model.params},
        "tasks": details, "table": table,
        "goal": {"metric": "normal vs abnormal test AUROC (mean over seeds), and above TF-IDF + LR", "value": GOAL,
                 "met": goal_met},
    }


def main(argv: list[str]) -> None:
    finetune = "--finetune" in argv
    common.run_script(NAME if not finetune else f"{NAME}_finetune", lambda quick: run(quick, finetune), argv)


if __name__ == "__main__":
    main(sys.argv[1:])
