"""The EHR workflow behind `medai train --data EHR --task mortality|length_of_stay|readmission|phenotype`, external
validation (`medai evaluate`) and prediction (`medai predict`) of EHR models.

One direction: MIMIC-III tables, FHIR R4 Bundles or a flat event CSV → patient timelines (:mod:`medai.io.ehr`)
→ labeler with a strict prediction time (:mod:`medai.tasks.ehr`) → patient-level split → features fitted on train
(:class:`~medai.data.ehr_features.EhrFeaturizer`: time bins, masks, imputation) → GRU or transformer, early stopping
on validation → thresholds on validation → metrics with bootstrap CIs beside logistic regression and gradient
boosting on aggregated features → missingness (overall, by split and subgroup) → imputation sensitivity analysis
(the network retrained with other imputation choices) → subgroup audit → artefact → report. Everything is written
into ``OUT.partial`` and renamed at the end.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

import medai
from medai.core.config import ModelConfig, RunConfig, TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, RunStateError
from medai.core.hashing import sha256_files
from medai.core.outputs import check_run_directory, finish_run_directory, open_run_directory, write_json, write_text
from medai.data.ehr_features import EhrFeaturizer
from medai.data.preprocess import TabularPreprocessor
from medai.data.split import SPLITS, split_indices
from medai.evaluation.bootstrap import bootstrap_metrics
from medai.evaluation.evaluate import (
    MetricContext, SplitOutcome, evaluate_split, evaluate_subgroups, operating_points, subgroup_columns,
)
from medai.evaluation.trust import check_explanations, trust_metrics, write_trust_files, write_tripod
from medai.models import build_model
from medai.models.baselines import BASELINES, check_baselines
from medai.models.sequence import SEQUENCE_MODELS
from medai.registry.artifact import Artifact, save_artifact
from medai.registry.drift_reference import drift_reference_for
from medai.registry.model_card import build_model_card, render_model_card
from medai.registry.predictor import Predictor
from medai.tasks.ehr import EhrTask, build_ehr_task
from medai.training.losses import make_loss
from medai.training.trainer import CHECKPOINT_NAME, Trainer
from medai.workflows.finishing import calibrate_and_conform

Progress = Callable[[str], None]

DEFAULT_EHR_MODEL = "gru"
#: Imputation variants of the sensitivity analysis: (name, impute, indicators).
SENSITIVITY_VARIANTS = (
    ("median, no indicators", "median", False),
    ("forward fill, no indicators", "ffill", False),
    ("mean + indicators", "mean", True),
)


def resolve_model(config: RunConfig) -> ModelConfig:
    name = config.model.name if config.model.name != "mlp" else DEFAULT_EHR_MODEL
    if name not in SEQUENCE_MODELS:
        raise InvalidParameterError(
            f"Model '{name}' does not take EHR time series; for EHR data use one of {', '.join(SEQUENCE_MODELS)}.")
    return ModelConfig(name=name, params=dict(config.model.params))


def featurizer_for(config: RunConfig, observation_hours: float) -> EhrFeaturizer:
    p = config.preprocessing
    return EhrFeaturizer(observation_hours, bin_hours=p.bin_hours or (1.0 if observation_hours <= 48 else 2.0),
                         impute=p.impute or "ffill", ffill_limit_hours=p.ffill_limit_hours,
                         indicators=p.missing_indicators)


def read_ehr(path, *, progress: bool, announce: Progress):
    from medai.io.ehr import find_ehr_source, read_timelines

    if path is None:
        raise InvalidParameterError("EHR tasks need data: --data FOLDER (MIMIC-III tables), a FHIR bundle (.json, "
                                    ".ndjson, or a folder of them) or an event CSV.")
    layout = find_ehr_source(path)
    if layout is None:
        raise DataValidationError(
            f"{path}: not EHR data medai can read. Give a folder with the MIMIC-III tables (PATIENTS, ADMISSIONS, "
            "ICUSTAYS, CHARTEVENTS, LABEVENTS, DIAGNOSES_ICD), FHIR R4 Bundle JSON/NDJSON file(s), or a CSV with "
            "columns patient_id, time, code, value, unit.")
    timelines = read_timelines(path, progress=progress)
    n_events = sum(len(t.events) for t in timelines)
    announce(f"Data: {path} ({layout}) — {len(timelines)} patients, {n_events:,} events")
    return timelines, layout


# ----------------------------------------------------------------------------------------------------- train
def train_ehr(config: RunConfig, out: Path, *, resume: bool = False, progress: bool = True,
              announce: Progress = lambda s: None,
              on_epoch_end: Callable[[int, dict[str, float]], None] | None = None):
    """Run a whole EHR training job into ``out`` (see docs/run-directory.md for the files)."""
    from medai.pipeline import RunResult, _baselines, _check_resume_config, steps

    out = Path(out)
    check_run_directory(out, resume=resume)
    config = config.replace(training=config.training.resolved("ehr"), model=resolve_model(config))
    torch.use_deterministic_algorithms(True, warn_only=True)
    seed = config.training.seed
    timelines, layout = read_ehr(config.data.path, progress=progress, announce=announce)
    task = build_ehr_task(timelines, config.task.outcome, observation_hours=config.task.observation_hours,
                          horizon_hours=config.task.horizon_hours, source=str(config.data.path))
    announce(task.describe())
    for reason, n in task.excluded.items():
        announce(f"Excluded: {n} × {reason}")
    for note in task.warnings:
        announce(f"Note: {note}")
    default_baselines = ("logistic_regression", "gradient_boosting") if task.kind is TaskKind.BINARY else ()
    baseline_names = config.baselines if config.baselines is not None else default_baselines
    check_baselines(tuple(baseline_names), task.kind)

    split = _split(task, config)
    announce("Split: " + split["strategy"] + " — " + ", ".join(f"{s} {len(split[s])}" for s in SPLITS))
    if task.kind is TaskKind.MULTILABEL:
        task = _keep_splittable_phenotypes(task, split)
    work = open_run_directory(out, resume=resume)
    _check_resume_config(work, config, resume)

    featurizer = featurizer_for(config, task.labeler.observation_hours)
    fitted = fit_ehr(task, timelines, split, config, featurizer, checkpoint_dir=work / "checkpoints",
                     resume=resume, progress=progress, announce=announce, on_epoch_end=on_epoch_end)
    predictor, scores, result = fitted["predictor"], fitted["scores"], fitted["result"]
    y, recalibration, conformal_result = calibrate_and_conform(predictor, task, split, scores, config)
    thresholds = predictor.artifact.thresholds

    announce(f"Evaluating with {config.evaluation.n_resamples} bootstrap resamples ...")
    outcomes = {s: SplitOutcome(task.kind, scores[s], y=task.y[split[s]]) for s in ("val", "test")}
    context = MetricContext(class_names=task.class_names, threshold=thresholds.get("threshold"),
                            label_thresholds=thresholds.get("label_thresholds"))
    sensitivity_on = config.evaluation.imputation_sensitivity and task.kind is TaskKind.BINARY
    n_steps = 6 + (task.kind is TaskKind.BINARY) + len(baseline_names) + len(SENSITIVITY_VARIANTS) * sensitivity_on
    with steps(n_steps, enabled=progress) as step:
        metrics = {}
        for s in ("val", "test"):
            step(f"{s} metrics")
            metrics[s] = evaluate_split(outcomes[s], context, config.evaluation, seed)
        points = None
        if task.kind is TaskKind.BINARY:
            step("operating points")
            points = operating_points(outcomes["val"], outcomes["test"], config.evaluation, seed)
        step("aggregated features")
        features = _baseline_features(task, timelines, split, predictor.preprocessor)
        baselines = _baselines(baseline_names, task, features, split, config, seed, {"test": context},
                               announce, step)
        step("subgroups and missingness")
        facts = _sample_facts(task)
        subgroups = {}
        if task.kind is TaskKind.BINARY:
            groups = subgroup_columns(facts.iloc[split["test"]].reset_index(drop=True),
                                      config.evaluation.subgroups or ("sex", "age"))
            subgroups = evaluate_subgroups(groups, outcomes["test"], context, metrics["test"], config.evaluation,
                                           seed)
        missingness = missingness_by_concept(task, timelines, split, predictor.preprocessor, facts)
        metrics["test"].update(trust_metrics(recalibration, conformal_result))
        step("fairness audit and lineage")
        write_trust_files(
            work, kind=task.kind, scores=scores, y=y, thresholds=thresholds, class_names=task.class_names,
            frames={s: facts.iloc[split[s]].reset_index(drop=True) for s in ("val", "test")},
            evaluation=config.evaluation, seed=seed, recalibration=recalibration, conformal_result=conformal_result,
            lineage={"data_files": None, "data_sha256": None, "config": config.to_dict(),
                     "split_ids": {s: list(task.ids[split[s]]) for s in SPLITS},
                     "seeds": {"training": seed, "split": config.split.seed, "bootstrap": seed}})
        step("explanations (permutation importance, faithfulness)")
        from medai.explain.importance import ehr_channel_groups

        explanations = check_explanations(predictor, fitted["x"]["test"], task.kind, y=y["test"],
                                          feature_groups=ehr_channel_groups(predictor.preprocessor),
                                          blur_sigma=(2, 0), evaluation=config.evaluation, seed=seed)
        write_json(work / "explanations.json", explanations)
        sensitivity = None
        if sensitivity_on:
            sensitivity = imputation_sensitivity(task, timelines, split, config, metrics, step=step,
                                                 announce=announce)

    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = {
        "name": config.name,
        "created": created,
        "medai_version": medai.__version__,
        "seed": seed,
        "task": task_summary(task),
        "data": _data_facts(timelines, layout, config.data.path),
        "split": {"strategy": split["strategy"], "seed": config.split.seed,
                  "n": {s: int(len(split[s])) for s in SPLITS},
                  "n_patients": {s: int(len(set(task.groups[split[s]]))) for s in SPLITS}},
        "model": {"name": config.model.name, "description": _describe_model(config, predictor.preprocessor),
                  "params": config.model.params, "n_weights": fitted["n_weights"]},
        "preprocessing": predictor.preprocessor.strategy(),
        "training": {"batch_size": fitted["batch_size"], "precision": "fp32", "device": "cpu",
                     "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                     "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
                     "resumed_from_epoch": result.resumed_from_epoch, "history": result.history},
        "operating_point": ({"method": thresholds["method"], "threshold": thresholds["threshold"]}
                            if task.kind is TaskKind.BINARY else None),
        "baselines": {name: _baseline_title(name) for name in baseline_names},
        "imputation_sensitivity": sensitivity,
        "warnings": _warnings(task, timelines),
    }
    predictions = pd.concat([_prediction_rows(task, split[s], s, predictor, scores[s]) for s in ("val", "test")],
                            ignore_index=True)
    write_text(work / "predictions.csv", predictions.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "baselines.json", baselines)
    write_json(work / "missingness.json", missingness)
    write_json(work / "subgroups.json", subgroups)
    if points is not None:
        write_json(work / "operating_points.json", points)

    card = build_model_card(run, metrics, baselines, subgroups, _model_card_strategy(predictor.preprocessor,
                                                                                     sensitivity),
                            dataclasses.asdict(config.model_card))
    digest = save_artifact(work / "model", state_dict=predictor.artifact.weights, config=config,
                           task=predictor.task, preprocessor=predictor.preprocessor.to_dict(), thresholds=thresholds,
                           model_card_md=render_model_card(card), model_card=card,
                           recalibration=predictor.artifact.recalibration, conformal=predictor.artifact.conformal,
                           drift_reference=drift_reference_for(predictor, fitted["x"]["val"], scores["val"]))
    reloaded = Predictor.load(work / "model")
    test_x = reloaded.preprocessor.sequences([task.samples[i] for i in split["test"]], timelines)
    if not np.allclose(reloaded.scores(test_x), scores["test"], rtol=1e-4, atol=1e-5):
        raise RunStateError(f"The saved artefact in {work / 'model'} does not reproduce the evaluated predictions.")
    run["artifact_sha256"] = digest
    write_json(work / "run.json", run)
    write_tripod(work)
    from medai.evaluation.report import write_report

    write_report(work)
    final = finish_run_directory(work, out)
    return RunResult(out=final, kind=task.kind, metrics=metrics, baselines=baselines, run=run)


def fit_ehr(task: EhrTask, timelines, split: dict[str, Any], config: RunConfig, featurizer: EhrFeaturizer, *,
            checkpoint_dir: Path | None = None, resume: bool = False, progress: bool = True,
            announce: Progress = lambda s: None,
            on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Fit the featurizer on train, train the network (early stopping on val), choose thresholds on val.

    Returns ``predictor`` (in-memory artefact), ``scores`` per split, ``result``, ``n_weights``, ``batch_size``."""
    from medai.workflows.imaging import _logit_offset, _thresholds

    seed = config.training.seed
    featurizer.fit([task.samples[i] for i in split["train"]], timelines)
    x = {s: featurizer.sequences([task.samples[i] for i in split[s]], timelines) for s in SPLITS}
    out_features = 1 if task.kind is TaskKind.BINARY else len(task.class_names)
    torch.manual_seed(seed)
    model = build_model(config.model.name, featurizer.n_channels, out_features, config.model.params)
    n_weights = int(sum(p.numel() for p in model.parameters()))
    announce(f"Model: {config.model.name} ({n_weights:,} weights), seed {seed}; input {featurizer.n_bins} bins × "
             f"{featurizer.n_channels} channels ({len(featurizer.concepts_)} concepts)")
    y = {s: task.y[split[s]] for s in SPLITS}
    loss = make_loss(task.kind, y["train"], out_features, config.training.class_weight)
    batch_size = config.training.batch_size or 32
    trainer = Trainer(
        model, loss, max_epochs=config.training.max_epochs, batch_size=batch_size,
        learning_rate=config.training.learning_rate, weight_decay=config.training.weight_decay,
        patience=config.training.patience, seed=seed, checkpoint_dir=checkpoint_dir,
        checkpoint_every=config.training.checkpoint_every, progress=progress, on_epoch_end=on_epoch_end,
        precision="fp32", lr_schedule=config.training.lr_schedule,
    )
    targets = {s: torch.from_numpy(y[s].astype(np.float32)) for s in SPLITS}  # (n,) binary, (n, K) phenotypes
    tensors = {s: (torch.from_numpy(x[s]), targets[s]) for s in SPLITS}
    can_resume = resume and checkpoint_dir is not None and (checkpoint_dir / CHECKPOINT_NAME).is_file()
    if resume and not can_resume:
        announce("No checkpoint in the interrupted run: training starts from epoch 0.")
    result = trainer.fit(tensors["train"], tensors["val"], resume=can_resume)
    announce(f"Training: {result.epochs_run} epochs, best epoch {result.best_epoch} (validation loss "
             f"{result.best_val_loss:.4f}){', stopped early' if result.stopped_early else ''}")
    model = trainer.model.to("cpu").float()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    task_meta = {**task_summary(task), "in_features": featurizer.n_channels, "out_features": out_features,
                 "id_column": None, "time": None, "event": None, "logit_offset": _logit_offset(task, y["train"], config)}
    artifact = Artifact(path=Path("model"), config=config, task=task_meta, preprocessor=featurizer.to_dict(),
                        thresholds={}, weights=state, survival_baseline=None, model_card={}, sha256="")
    predictor = Predictor(artifact)
    scores = {s: predictor.scores(x[s]) for s in SPLITS}
    artifact.thresholds = _thresholds(task, split, scores["val"], config)
    return {"predictor": predictor, "scores": scores, "result": result, "n_weights": n_weights,
            "batch_size": batch_size, "x": x}


# ---------------------------------------------------------------------------------------- analyses
def imputation_sensitivity(task: EhrTask, timelines, split, config: RunConfig, metrics, *, step=lambda d: None,
                           announce: Progress = lambda s: None) -> dict[str, Any]:
    """Retrain the network (same seed, split and settings) with each imputation variant; validation and test AUROC
    with CIs beside the chosen setting. Choices are made on validation; the test column is shown, never used."""
    chosen = featurizer_for(config, task.labeler.observation_hours)
    rows = [{"variant": f"{chosen.impute.value}{' + indicators' if chosen.indicators else ', no indicators'} "
                        "(this model)", "impute": chosen.impute.value, "indicators": chosen.indicators,
             "val_auroc": metrics["val"].get("auroc"), "test_auroc": metrics["test"].get("auroc")}]
    quiet = config.replace(training=dataclasses.replace(config.training, checkpoint_every=10**6))
    for name, impute, indicators in SENSITIVITY_VARIANTS:
        step(f"imputation sensitivity: {name}")
        featurizer = EhrFeaturizer(chosen.observation_hours, bin_hours=chosen.bin_hours, impute=impute,
                                   ffill_limit_hours=chosen.ffill_limit_hours, indicators=indicators,
                                   min_coverage=chosen.min_coverage)
        fitted = fit_ehr(task, timelines, split, quiet, featurizer, progress=False)
        row = {"variant": name, "impute": impute, "indicators": indicators}
        for s in ("val", "test"):  # AUROC only: the full metric table per variant costs far more
            y = task.y[split[s]]
            row[f"{s}_auroc"] = bootstrap_metrics(
                lambda t, p: {"auroc": roc_auc_score(t, p) if 0 < t.sum() < len(t) else float("nan")},
                (y, fitted["scores"][s]), strata=y, n_resamples=config.evaluation.n_resamples,
                confidence=config.evaluation.confidence, seed=config.training.seed)["auroc"]
        rows.append(row)
        announce(f"Imputation '{name}': validation AUROC {_value(row['val_auroc'])}, test {_value(row['test_auroc'])}")
    return {"metric": "auroc", "variants": rows,
            "note": "Same split, seed and network; only the imputation changes. Compare on validation: the test "
                    "column is reported, not used to choose."}


def missingness_by_concept(task: EhrTask, timelines, split, featurizer: EhrFeaturizer,
                           facts: pd.DataFrame) -> dict[str, Any]:
    """Per concept: the fraction of samples with no value in the observation window (overall, by split, by sex and
    age band) and the mean fraction of time bins measured — the report's missingness table."""
    observed = featurizer.observed_fraction(task.samples, timelines)
    names = [s for s, index in split.items() if isinstance(index, np.ndarray)]
    split_of = np.empty(len(task.samples), dtype=object)
    for s in names:
        split_of[split[s]] = s
    groups = subgroup_columns(facts, ("sex", "age"))
    profile = {}
    for concept in observed.columns:
        missing = (observed[concept] == 0).to_numpy()
        profile[concept] = {
            "n_missing": int(missing.sum()),
            "fraction": float(missing.mean()),
            "by_split": {s: float(missing[split_of == s].mean()) for s in names if (split_of == s).any()},
            "by_subgroup": {attr: {str(g): float(missing[(values == g).to_numpy()].mean())
                                   for g in sorted(values.unique())} for attr, values in groups.items()},
            "bins_measured": float(observed[concept].mean()),
        }
    return profile


# ------------------------------------------------------------------------------------------------- helpers
def _split(task: EhrTask, config: RunConfig) -> dict[str, Any]:
    # phenotypes: stratify by the number of groups a sample has (above/below the median) — rare label
    # combinations would leave strata too small to split
    strata = task.y if task.y.ndim == 1 else (task.y.sum(axis=1) > np.median(task.y.sum(axis=1))).astype(int)
    index = split_indices(np.asarray(strata), groups=task.groups, val_fraction=config.split.val_fraction,
                          test_fraction=config.split.test_fraction, seed=config.split.seed)
    return {**index, "strategy": "stratified by outcome, grouped by patient (no patient in two splits)"}


def _keep_splittable_phenotypes(task: EhrTask, split) -> EhrTask:
    """Phenotypes need positives and negatives in every split (a threshold is chosen on validation, metrics are
    computed on test); the others are dropped and named in the warnings."""
    keep, dropped = [], []
    for j, name in enumerate(task.class_names):
        ok = all(0 < task.y[split[s], j].sum() < len(split[s]) for s in SPLITS)
        (keep if ok else dropped).append(j)
    if not keep:
        raise DataValidationError(f"{task.source}: no phenotype has positive and negative samples in each of the "
                                  "train, validation and test splits; more data is needed.")
    if not dropped:
        return task
    names = ", ".join(task.class_names[j] for j in dropped)
    return dataclasses.replace(task, y=task.y[:, keep], class_names=[task.class_names[j] for j in keep],
                               warnings=task.warnings + [f"Phenotypes absent from (or in every sample of) a split "
                                                         f"are not modelled: {names}."])


def _baseline_features(task: EhrTask, timelines, split, featurizer: EhrFeaturizer) -> dict[str, np.ndarray]:
    """Aggregates per concept (last, min, max, mean, count) + age and sex, median-imputed with indicators and
    standardised on train — the baselines' input."""
    frames = {s: featurizer.aggregates([task.samples[i] for i in split[s]], timelines) for s in SPLITS}
    numeric = [c for c in frames["train"].columns if c != "sex"]
    preprocessor = TabularPreprocessor(numeric, ["sex"]).fit(frames["train"], "aggregated EHR features")
    return {s: preprocessor.transform(frames[s], "aggregated EHR features") for s in SPLITS}


def _sample_facts(task: EhrTask) -> pd.DataFrame:
    facts = pd.DataFrame({"sex": [s.static.get("sex") for s in task.samples],
                          "age": [s.static.get("age_years") for s in task.samples]})
    ethnicity = [s.static.get("ethnicity") for s in task.samples]
    if any(e is not None for e in ethnicity):  # MIMIC ADMISSIONS.ETHNICITY; FHIR US Core race/ethnicity
        facts["ethnicity"] = ethnicity
    return facts


def task_summary(task: EhrTask) -> dict[str, Any]:
    summary = {"kind": task.kind.value, "outcome": task.outcome.value, "class_names": list(task.class_names),
               "positive_class": task.class_names[1] if task.kind is TaskKind.BINARY else None,
               "observation_hours": task.labeler.observation_hours, "horizon_hours": task.labeler.horizon_hours,
               "min_age_years": task.labeler.min_age_years, "label": task.outcome.value,
               "n_samples": len(task.samples), "excluded": dict(task.excluded)}
    if task.kind is TaskKind.BINARY:
        summary["prevalence"] = float(task.y.mean())
    return summary


def _data_facts(timelines, layout: str, path) -> dict[str, Any]:
    dropped: dict[str, int] = {}
    for t in timelines:
        for reason, n in (t.meta.get("dropped") or {}).items():
            dropped[reason] = dropped.get(reason, 0) + int(n)
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = sha256_files(path if path.is_dir() else path.parent, files)
    return {"source": str(path), "sha256": digest, "layout": layout, "n_patients": len(timelines),
            "n_rows": len(timelines),
            "n_events": int(sum(len(t.events) for t in timelines)),
            "n_encounters": int(sum(len(t.encounters) for t in timelines)), "dropped_events": dropped}


def _warnings(task: EhrTask, timelines) -> list[str]:
    warnings = list(task.warnings)
    if len(task.samples) < 500:
        warnings.append(f"Only {len(task.samples)} samples: metrics have wide confidence intervals and the model "
                        "is not fit for clinical use; treat this run as a demonstration of the pipeline.")
    return warnings


def _describe_model(config: RunConfig, featurizer: EhrFeaturizer) -> str:
    title = {"gru": "GRU", "ehr_transformer": "transformer encoder"}[config.model.name]
    return (f"{title} over {featurizer.n_bins} time bins of {featurizer.bin_hours:g} h "
            f"({len(featurizer.concepts_)} concepts{', with masks and time since last measurement' if featurizer.indicators else ''})")


def _baseline_title(name: str) -> str:
    return BASELINES.get(name).title + " on aggregated features (last/min/max/mean/count per concept, age, sex)"


def _model_card_strategy(featurizer: EhrFeaturizer, sensitivity: dict[str, Any] | None) -> str:
    text = featurizer.strategy()
    if sensitivity:
        parts = [f"{row['variant']}: validation AUROC {_value(row['val_auroc'])}" for row in sensitivity["variants"]]
        text += " Imputation sensitivity analysis (same network and split): " + "; ".join(parts) + "."
    return text


def _value(entry) -> str:
    return "n/a" if not entry or entry.get("value") is None else f"{entry['value']:.3f}"


def _prediction_rows(task: EhrTask, index, split_name: str, predictor: Predictor, scores) -> pd.DataFrame:
    samples = [task.samples[i] for i in index]
    frame = pd.DataFrame({"id": task.ids[index], "patient_id": task.groups[index], "split": split_name,
                          "prediction_time": [s.prediction_time.isoformat() for s in samples]})
    if task.kind is TaskKind.BINARY:
        frame["label"] = np.asarray(task.class_names, dtype=object)[task.y[index]]
    else:
        for j, name in enumerate(task.class_names):
            frame[f"label_{name}"] = task.y[index, j]
    return pd.concat([frame, predictor.format_scores(scores)], axis=1)


# ------------------------------------------------------------------------------------- evaluate and predict
def _task_for(predictor: Predictor, timelines, source: str, *, with_labels: bool = True) -> EhrTask:
    """The artefact's own task definition (outcome, observation and horizon hours, phenotypes) on new data."""
    meta = predictor.task
    if with_labels:
        return build_ehr_task(timelines, meta["outcome"], observation_hours=meta["observation_hours"],
                              horizon_hours=meta["horizon_hours"], source=source,
                              phenotypes=meta["class_names"] if meta["kind"] == TaskKind.MULTILABEL.value else None)
    from medai.tasks.ehr import EhrLabeler

    labeler = EhrLabeler(meta["outcome"], meta["observation_hours"], meta["horizon_hours"], with_labels=False)
    samples, excluded = labeler.samples(timelines)
    return EhrTask(labeler.outcome, labeler, samples, TaskKind(meta["kind"]), np.zeros(len(samples), dtype=np.int64),
                   list(meta["class_names"]), np.array([s.sample_id for s in samples], dtype=object),
                   np.array([timelines[s.patient].patient_id for s in samples], dtype=object), excluded, source)


def predict_ehr(predictor: Predictor, path) -> tuple[pd.DataFrame, list[str]]:
    """Predictions for every eligible encounter of new EHR data (MIMIC tables, FHIR bundles, event CSV) at the
    model's prediction time (e.g. 48 h after ICU admission); outcomes are not read. Returns the predictions
    (``id``, ``patient_id``, ``prediction_time``, scores, ``pred``) and notes on the encounters left out."""
    timelines, _ = read_ehr(path, progress=False, announce=lambda s: None)
    task = _task_for(predictor, timelines, str(path), with_labels=False)
    notes = [f"{n} encounter(s) not predicted: {reason}." for reason, n in task.excluded.items()]
    if not task.samples:
        return pd.DataFrame(columns=["id", "patient_id", "prediction_time"]), notes
    scores = predictor.scores(predictor.preprocessor.sequences(task.samples, timelines))
    frame = pd.DataFrame({"id": task.ids, "patient_id": task.groups,
                          "prediction_time": [s.prediction_time.isoformat() for s in task.samples]})
    return pd.concat([frame, predictor.format_scores(scores)], axis=1), notes


def evaluate_ehr(predictor: Predictor, data, out: Path, evaluation, *, announce: Progress = lambda s: None):
    """External validation of an EHR model on new labelled data (the model's own task definition and features,
    never refitted); writes split ``external``."""
    from medai.evaluation.report import write_report
    from medai.pipeline import RunResult

    out = Path(out)
    check_run_directory(out)
    config = predictor.artifact.config
    timelines, layout = read_ehr(data.path, progress=False, announce=announce)
    task = _task_for(predictor, timelines, str(data.path))
    announce(task.describe())
    work = open_run_directory(out)
    scores = predictor.scores(predictor.preprocessor.sequences(task.samples, timelines))
    thresholds = predictor.artifact.thresholds
    context = MetricContext(class_names=task.class_names, threshold=thresholds.get("threshold"),
                            label_thresholds=thresholds.get("label_thresholds"))
    outcome = SplitOutcome(task.kind, scores, y=task.y)
    announce(f"Evaluating on {len(task.samples)} external samples with {evaluation.n_resamples} bootstrap "
             "resamples ...")
    metrics = {"external": evaluate_split(outcome, context, evaluation, config.training.seed)}
    facts = _sample_facts(task)
    subgroups = {}
    if task.kind is TaskKind.BINARY:
        groups = subgroup_columns(facts, evaluation.subgroups or ("sex", "age"))
        subgroups = evaluate_subgroups(groups, outcome, context, metrics["external"], evaluation,
                                       config.training.seed)
    index = np.arange(len(task.samples))
    split = {"external": index}
    missingness = missingness_by_concept(task, timelines, split, predictor.preprocessor, facts)
    run = {
        "name": f"{config.name} — external validation",
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "medai_version": medai.__version__,
        "seed": config.training.seed,
        "evaluated_model": {"path": str(predictor.artifact.path), "sha256": predictor.artifact.sha256},
        "task": task_summary(task),
        "data": _data_facts(timelines, layout, data.path),
        "split": {"strategy": "external validation (all samples)", "n": {"external": len(index)}},
        "model": {"name": config.model.name, "params": config.model.params},
        "operating_point": ({"method": thresholds["method"], "threshold": thresholds["threshold"]}
                            if task.kind is TaskKind.BINARY else None),
        "warnings": _warnings(task, timelines),
    }
    rows = _prediction_rows(task, split["external"], "external", predictor, scores)
    write_text(work / "predictions.csv", rows.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "subgroups.json", subgroups)
    write_json(work / "missingness.json", missingness)
    write_json(work / "run.json", run)
    write_report(work)
    final = finish_run_directory(work, out)
    return RunResult(out=final, kind=task.kind, metrics=metrics, baselines={}, run=run)
