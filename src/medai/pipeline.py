"""The training and external-validation workflows behind `medai train` and `medai evaluate`.

One direction: data → task → patient-level split → preprocessing fitted on train → network trained with
early stopping → evaluation with CIs (and in-run baselines) → artefact with manifest → report. Everything is
written into ``OUT.partial`` and renamed to ``OUT`` at the very end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from sksurv.linear_model.coxph import BreslowEstimator

import medai
from medai.core.config import OperatingPoint, RunConfig, TaskConfig, TaskKind, save_config
from medai.core.errors import DataValidationError, RunStateError
from medai.core.hashing import sha256_file
from medai.core.outputs import (
    check_run_directory, finish_run_directory, open_run_directory, write_json, write_text,
)
from medai.data.builtin import BUILTIN_DATASETS, load_builtin
from medai.data.preprocess import STRATEGY, TabularPreprocessor
from medai.data.split import SPLITS, split_indices
from medai.evaluation.evaluate import (
    MetricContext, SplitOutcome, evaluate_split, evaluate_subgroups, missingness_profile, operating_points,
    subgroup_columns,
)
from medai.evaluation.operating_point import choose_threshold
from medai.evaluation.report import write_report
from medai.evaluation.survival import choose_horizons
from medai.evaluation.trust import check_explanations, conformal, recalibrate, trust_metrics, write_trust_files, \
    write_tripod
from medai.explain.importance import tabular_feature_groups
from medai.io.tabular import read_table
from medai.models import build_model
from medai.models.baselines import BASELINES, DEFAULT_BASELINES, FittedBaseline, check_baselines
from medai.registry.artifact import Artifact, load_artifact, save_artifact
from medai.registry.drift_reference import drift_reference_for
from medai.registry.model_card import build_model_card, render_model_card
from medai.registry.predictor import Predictor
from medai.tasks.ecg import is_ecg_source
from medai.tasks.imaging import is_image_source
from medai.tasks.tabular import TabularTask, build_tabular_task
from medai.training.losses import make_loss
from medai.training.trainer import CHECKPOINT_NAME, Trainer, TrainingResult

Progress = Callable[[str], None]


@dataclass
class RunResult:
    """What a finished run or evaluation produced (the same content as its files)."""

    out: Path
    kind: TaskKind
    metrics: dict[str, Any]
    baselines: dict[str, Any]
    run: dict[str, Any]


# ----------------------------------------------------------------------------------------------------- data
def load_data(config_data, *, announce: Progress = lambda s: None) -> tuple[pd.DataFrame, str, str | None]:
    """The table, a name for messages, and the file's sha256 (None for built-in datasets)."""
    if config_data.builtin is not None:
        info = BUILTIN_DATASETS.get(config_data.builtin)
        announce(f"Data: built-in dataset '{info.name}' — {info.title} (from {info.package})")
        return load_builtin(config_data.builtin), f"builtin:{info.name}", None
    path = Path(config_data.path)
    frame = read_table(path)
    announce(f"Data: {path} ({len(frame)} rows, {frame.shape[1]} columns)")
    return frame, str(path), sha256_file(path)


def data_provenance(config_data) -> dict[str, Any]:
    """Where a built-in dataset comes from: package and version, licence, citation (empty for files)."""
    if config_data.builtin is None:
        return {}
    info = BUILTIN_DATASETS.get(config_data.builtin)
    try:
        version = importlib.metadata.version(info.package)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"builtin": info.name, "title": info.title, "package": info.package, "package_version": version,
            "licence": info.licence, "citation": info.citation}




def builtin_task_defaults(name: str, task: TaskConfig) -> TaskConfig:
    """Fill outcome columns the user did not give from the built-in dataset's declaration."""
    info = BUILTIN_DATASETS.get(name)
    updates: dict[str, Any] = {}
    if info.task == "survival":
        if task.time is None and task.event is None and task.label is None:
            updates.update(kind=TaskKind.SURVIVAL, time=info.time, event=info.event)
    elif task.label is None and task.time is None:
        updates["label"] = info.label
    if task.id is None and info.id_column:
        updates["id"] = info.id_column
    if task.positive_class is None and info.positive_class is not None:
        updates["positive_class"] = info.positive_class
    if task.features is None and info.features is not None:
        updates["features"] = tuple(info.features)
    return dataclasses.replace(task, **updates) if updates else task


# ----------------------------------------------------------------------------------------------------- train
def train(
    config: RunConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    announce: Progress = lambda s: None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> RunResult:
    """Run a whole training job into ``out`` (see docs/run-directory.md for the files).

    Image data (an ``.npz``, a class folder, a CSV manifest with a ``path`` column) goes to the imaging
    workflow (:mod:`medai.workflows.imaging`); segmentation tasks to :mod:`medai.workflows.segmentation`.
    """
    if config.task.kind is TaskKind.SEGMENTATION:
        from medai.workflows.segmentation import train_segmentation

        return train_segmentation(config, out, resume=resume, progress=progress, announce=announce,
                                  on_epoch_end=on_epoch_end)
    if config.task.text is not None:
        from medai.workflows.text import train_text

        return train_text(config, out, resume=resume, progress=progress, announce=announce,
                          on_epoch_end=on_epoch_end)
    if config.task.outcome is not None:
        from medai.workflows.ehr import train_ehr

        return train_ehr(config, out, resume=resume, progress=progress, announce=announce,
                         on_epoch_end=on_epoch_end)
    if config.data.path is not None and is_ecg_source(config.data.path):
        from medai.workflows.ecg import train_ecg

        return train_ecg(config, out, resume=resume, progress=progress, announce=announce,
                         on_epoch_end=on_epoch_end)
    if config.data.path is not None and is_image_source(config.data.path) \
            and config.task.kind is not TaskKind.SEGMENTATION:
        from medai.workflows.imaging import train_imaging

        return train_imaging(config, out, resume=resume, progress=progress, announce=announce,
                             on_epoch_end=on_epoch_end)
    out = Path(out)
    check_run_directory(out, resume=resume)
    config = config.replace(training=config.training.resolved("tabular"))
    seed = config.training.seed
    torch.use_deterministic_algorithms(True)

    frame, source, data_sha = load_data(config.data, announce=announce)
    if config.data.builtin is not None:
        config = config.replace(task=builtin_task_defaults(config.data.builtin, config.task))
    split_column = config.split.column
    task = build_tabular_task(frame, config.task, source, exclude=(split_column,) if split_column else ())
    frame = frame.iloc[task.rows].reset_index(drop=True)  # without records skipped for an invalid outcome
    baseline_names = config.baselines if config.baselines is not None else DEFAULT_BASELINES[task.kind]
    check_baselines(tuple(baseline_names), task.kind)
    announce(_describe_task(task))
    for note in task.warnings:
        announce(f"Note: {note}")

    split = _split(frame, task, config, source)
    split_of = np.empty(len(frame), dtype=object)
    for name in SPLITS:
        split_of[split[name]] = name
    announce("Split: " + split["strategy"] + " — " + ", ".join(f"{s} {len(split[s])}" for s in SPLITS))
    work = open_run_directory(out, resume=resume)  # only now: invalid input leaves nothing behind
    _check_resume_config(work, config, resume)

    fitted = fit_network(task, split, config, source=source, checkpoint_dir=work / "checkpoints", resume=resume,
                         progress=progress, announce=announce, on_epoch_end=on_epoch_end)
    predictor, x, scores, result = fitted.predictor, fitted.x, fitted.scores, fitted.result
    trust = _recalibrate_and_conform(task, split, config, predictor, scores, fitted.task_meta, seed)
    artifact, task_meta, thresholds = predictor.artifact, fitted.task_meta, predictor.artifact.thresholds
    preprocessor, state, n_weights = predictor.preprocessor, artifact.weights, fitted.n_weights

    # ---- evaluation (bootstrap CIs are the slow part: show each step)
    announce(f"Evaluating with {config.evaluation.n_resamples} bootstrap resamples ...")
    outcomes = {s: _outcome(task, split[s], scores[s], predictor) for s in ("val", "test")}
    context = _context(task, task_meta, thresholds, split, outcomes)
    test_frame = frame.iloc[split["test"]].reset_index(drop=True)
    groups = subgroup_columns(test_frame, config.evaluation.subgroups)
    n_steps = 4 + (task.kind is TaskKind.BINARY) + len(baseline_names) + bool(groups)
    with steps(n_steps, enabled=progress) as step:
        metrics = {}
        for s in ("val", "test"):
            step(f"{s} metrics")
            metrics[s] = evaluate_split(outcomes[s], context[s], config.evaluation, seed)
        points = None
        if task.kind is TaskKind.BINARY:
            step("operating points")
            points = operating_points(outcomes["val"], outcomes["test"], config.evaluation, seed)
        baselines = _baselines(baseline_names, task, x, split, config, seed, context, announce, step)
        if groups:
            step("subgroups")
            subgroups = evaluate_subgroups(groups, outcomes["test"], context["test"], metrics["test"],
                                           config.evaluation, seed)
        else:
            subgroups = {}
        step("fairness audit and lineage")
        metrics["test"].update(trust_metrics(trust["recalibration"], trust["conformal"]))
        write_trust_files(
            work, kind=task.kind, scores=scores, y=trust["y"], thresholds=thresholds, class_names=task.class_names,
            frames={s: frame.iloc[split[s]].reset_index(drop=True) for s in ("val", "test")},
            evaluation=config.evaluation, seed=seed, recalibration=trust["recalibration"],
            conformal_result=trust["conformal"], survival=trust["survival"],
            lineage={"data_files": [Path(config.data.path)] if config.data.path else None, "data_sha256": data_sha,
                     "config": config.to_dict(), "split_ids": {s: [str(i) for i in task.ids[split[s]]] for s in SPLITS},
                     "seeds": {"training": seed, "split": config.split.seed, "bootstrap": seed}})
        step("explanations (permutation importance, faithfulness)")
        explanations = check_explanations(
            predictor, x["test"], task.kind, y=None if task.kind is TaskKind.SURVIVAL else task.y[split["test"]],
            time=task.time[split["test"]] if task.kind is TaskKind.SURVIVAL else None,
            event=task.event[split["test"]] if task.kind is TaskKind.SURVIVAL else None,
            feature_groups=tabular_feature_groups(preprocessor), evaluation=config.evaluation, seed=seed)
        write_json(work / "explanations.json", explanations)
    missingness = missingness_profile(task.features, split_of)

    # ---- files
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = {
        "name": config.name,
        "created": created,
        "medai_version": medai.__version__,
        "seed": seed,
        "task": _task_summary(task, task_meta),
        "data": {"source": source, "sha256": data_sha, "n_rows": len(frame), "n_skipped": task.n_skipped,
                 "feature_columns": task.numeric_columns + task.categorical_columns,
                 **data_provenance(config.data)},
        "split": {"strategy": split["strategy"], "seed": config.split.seed,
                  "n": {s: int(len(split[s])) for s in SPLITS}},
        "model": {"name": config.model.name, "description": _model_description(config, task.kind),
                  "params": config.model.params, "n_weights": int(n_weights)},
        "training": {"batch_size": config.training.resolved_batch_size(task.kind, len(split["train"])) or "full",
                     "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                     "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
                     "resumed_from_epoch": result.resumed_from_epoch, "history": result.history},
        "operating_point": ({"method": thresholds["method"], "threshold": thresholds["threshold"]}
                            if task.kind is TaskKind.BINARY else None),
        "horizons": task_meta.get("horizons"),
        "baselines": {name: BASELINES.get(name).title for name in baseline_names},
        "warnings": task.warnings,
    }
    predictions = pd.concat(
        [_prediction_rows(task, split[s], s, predictor, scores[s]) for s in SPLITS if s != "train"],
        ignore_index=True)
    write_text(work / "predictions.csv", predictions.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "baselines.json", baselines)
    write_json(work / "missingness.json", missingness)
    write_json(work / "subgroups.json", subgroups)
    if points is not None:
        write_json(work / "operating_points.json", points)

    strategy = STRATEGY + (f" log(1 + x) applied first to: {', '.join(config.preprocessing.log1p)}."
                           if config.preprocessing.log1p else "")
    card = build_model_card(run, metrics, baselines, subgroups, strategy, dataclasses.asdict(config.model_card))
    digest = save_artifact(
        work / "model", state_dict=state, config=config, task=task_meta, preprocessor=preprocessor.to_dict(),
        thresholds=thresholds, model_card_md=render_model_card(card), model_card=card,
        survival_baseline=artifact.survival_baseline, recalibration=artifact.recalibration,
        conformal=artifact.conformal, drift_reference=drift_reference_for(predictor, x["val"], scores["val"]),
    )
    _check_artifact_reproduces(work / "model", task.features.iloc[split["test"]], scores["test"])
    run["artifact_sha256"] = digest  # the manifest's hash identifies this exact model
    write_json(work / "run.json", run)
    write_tripod(work)
    write_report(work)
    final = finish_run_directory(work, out)
    return RunResult(out=final, kind=task.kind, metrics=metrics, baselines=baselines, run=run)


def _recalibrate_and_conform(task: TabularTask, split, config: RunConfig, predictor: Predictor,
                             scores: dict[str, np.ndarray], task_meta: dict[str, Any], seed: int) -> dict[str, Any]:
    """Recalibration (classification; thresholds re-chosen on the recalibrated validation scores) and conformal
    sets/intervals, both fitted on validation and installed in the in-memory artefact (medai.evaluation.trust)."""
    y = {s: task.y[split[s]] for s in ("val", "test")} if task.kind is not TaskKind.SURVIVAL else None
    survival = None
    if task.kind is TaskKind.SURVIVAL:
        survival = {"time": {s: task.time[split[s]] for s in ("val", "test")},
                    "event": {s: task.event[split[s]] for s in ("val", "test")},
                    "horizon": float(task_meta["horizons"][0]),
                    "cutoff": predictor.artifact.thresholds["risk_group_cutoff"]}

    def rethreshold(val_scores: np.ndarray) -> dict[str, Any]:
        thresholds = dict(predictor.artifact.thresholds)
        if task.kind is TaskKind.BINARY:
            thresholds["threshold"] = float(choose_threshold(
                task.y[split["val"]], val_scores, method=config.evaluation.operating_point.value,
                target_sensitivity=config.evaluation.target_sensitivity))
        return thresholds

    recalibration = recalibrate(predictor, task.kind, scores, *(y["val"], y["test"]) if y else (None, None),
                                config.evaluation, seed, rethreshold=rethreshold)
    conformal_result = conformal(predictor, task.kind, scores, y or {}, class_names=task.class_names,
                                 evaluation=config.evaluation, seed=seed, survival=survival)
    return {"recalibration": recalibration, "conformal": conformal_result, "y": y, "survival": survival}


@contextlib.contextmanager
def steps(total: int, *, enabled: bool = True):
    """A progress bar over named steps; yields ``step(description)`` to call at the start of each."""
    columns = (TextColumn("[bold]evaluating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
               TimeElapsedColumn())
    with RichProgress(*columns, disable=not enabled, transient=True) as bar:
        task = bar.add_task("", total=total)
        started = [False]

        def step(description: str) -> None:
            if started[0]:
                bar.advance(task)
            started[0] = True
            bar.update(task, description=description)

        yield step
        bar.update(task, completed=total)


@dataclass
class FittedNetwork:
    """A trained network with everything derived from the training and validation splits."""

    predictor: Predictor          # in-memory artefact: weights, preprocessing, thresholds, survival baseline
    x: dict[str, np.ndarray]      # encoded features per split, (n, in_features)
    scores: dict[str, np.ndarray]  # Predictor.scores per split
    result: TrainingResult
    task_meta: dict[str, Any]
    n_weights: int


def fit_network(
    task: TabularTask,
    split: dict[str, np.ndarray],
    config: RunConfig,
    *,
    source: str = "input",
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: bool = False,
    announce: Progress = lambda s: None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> FittedNetwork:
    """Fit preprocessing on train, train the network with early stopping on val, then derive what the artefact
    needs from train/val only: the class-reweighting offset, the operating threshold (binary), the Breslow
    baseline hazard, horizons and risk-group cut-off (survival). The test split is only scored."""
    seed = config.training.seed
    config = config.replace(training=config.training.resolved("tabular"))
    preprocessor = TabularPreprocessor(task.numeric_columns, task.categorical_columns,
                                       config.preprocessing.log1p).fit(task.features.iloc[split["train"]], source)
    x = {s: preprocessor.transform(task.features.iloc[split[s]], source) for s in SPLITS}
    targets, task_meta = _targets(task, split, config)
    task_meta["in_features"] = int(x["train"].shape[1])
    if task.kind is TaskKind.SURVIVAL and config.data.builtin is not None:
        info = BUILTIN_DATASETS.get(config.data.builtin)
        task_meta["time_unit"] = info.time_unit if task.time_column == info.time else None

    torch.manual_seed(seed)
    model = build_model(config.model.name, task_meta["in_features"], task_meta["out_features"], config.model.params)
    n_weights = sum(p.numel() for p in model.parameters())
    announce(f"Model: {_model_description(config, task.kind)} ({n_weights:,} weights), seed {seed}")
    loss = make_loss(task.kind, targets["train"][0] if task.kind in (TaskKind.BINARY, TaskKind.MULTICLASS) else None,
                     task_meta["out_features"], config.training.class_weight)
    trainer = Trainer(
        model, loss, max_epochs=config.training.max_epochs,
        batch_size=config.training.resolved_batch_size(task.kind, len(split["train"])),
        learning_rate=config.training.learning_rate, weight_decay=config.training.weight_decay,
        patience=config.training.patience, seed=seed, checkpoint_dir=checkpoint_dir,
        checkpoint_every=config.training.checkpoint_every, progress=progress, on_epoch_end=on_epoch_end,
    )
    tensors = {s: (torch.from_numpy(x[s]), *(torch.from_numpy(t) for t in targets[s])) for s in SPLITS}
    can_resume = resume and checkpoint_dir is not None and (checkpoint_dir / CHECKPOINT_NAME).is_file()
    if resume and not can_resume:
        announce("No checkpoint in the interrupted run: training starts from epoch 0.")
    # Tabular networks are tiny: one thread is as fast as two on an idle 2-core machine, and far faster when the
    # cores are shared (OpenMP threads then wait on each other; measured 25x slower under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = trainer.fit(tensors["train"], tensors["val"], resume=can_resume)
    finally:
        torch.set_num_threads(threads)
    if result.resumed_from_epoch is not None:
        announce(f"Resumed from epoch {result.resumed_from_epoch}.")
    announce(f"Training: {result.epochs_run} epochs, best epoch {result.best_epoch} "
             f"(validation loss {result.best_val_loss:.4f}){', stopped early' if result.stopped_early else ''}")

    task_meta["logit_offset"] = _logit_offset(task, targets["train"], config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    artifact = Artifact(path=Path("model"), config=config, task=task_meta, preprocessor=preprocessor.to_dict(),
                        thresholds={}, weights=state, survival_baseline=None, model_card={}, sha256="")
    predictor = Predictor(artifact)
    scores = {s: predictor.scores(x[s]) for s in SPLITS}
    thresholds: dict[str, Any] = {"chosen_on": "val"}
    if task.kind is TaskKind.SURVIVAL:
        artifact.survival_baseline = _breslow(scores["train"], targets["train"][0], targets["train"][1])
        task_meta["horizons"] = list(config.evaluation.horizons or choose_horizons(
            targets["train"][1], targets["train"][0]))
        thresholds.update(method="median validation risk", risk_group_cutoff=float(np.median(scores["val"])))
    elif task.kind is TaskKind.BINARY:
        method = config.evaluation.operating_point
        threshold = choose_threshold(task.y[split["val"]], scores["val"], method=method.value,
                                     target_sensitivity=config.evaluation.target_sensitivity)
        thresholds.update(method=method.value, threshold=float(threshold),
                          target_sensitivity=config.evaluation.target_sensitivity
                          if method is OperatingPoint.SENSITIVITY else None)
    artifact.thresholds = thresholds
    return FittedNetwork(predictor=predictor, x=x, scores=scores, result=result, task_meta=task_meta,
                         n_weights=n_weights)


def _check_resume_config(work: Path, config: RunConfig, resume: bool) -> None:
    saved = work / "checkpoints" / "config.json"
    if resume and saved.exists():
        if json.loads(saved.read_text()) != json.loads(json.dumps(config.to_dict())):
            raise RunStateError(
                f"Cannot resume {work}: the command's configuration differs from the interrupted run's "
                f"({saved}). Resume with the same command, or start a new run with another --out."
            )
    else:
        saved.parent.mkdir(parents=True, exist_ok=True)
        save_config(config, saved)


def _split(frame: pd.DataFrame, task: TabularTask, config: RunConfig, source: str) -> dict[str, Any]:
    column = config.split.column
    if column is not None:
        if column not in frame.columns:
            raise DataValidationError(f"{source}: split column '{column}' not found.")
        values = frame[column].astype(str).str.strip().str.lower()
        bad = ~values.isin(SPLITS)
        if bad.any():
            raise DataValidationError(
                f"{source}: split column '{column}' must hold train, val or test; {int(bad.sum())} row(s) hold "
                "other values."
            )
        result: dict[str, Any] = {s: np.flatnonzero(values.to_numpy() == s) for s in SPLITS}
        for s in SPLITS:
            if len(result[s]) == 0:
                raise DataValidationError(f"{source}: split column '{column}' has no '{s}' rows.")
        result["strategy"] = f"predefined (column '{column}')"
        return result
    result = split_indices(task.strata, groups=task.groups, val_fraction=config.split.val_fraction,
                           test_fraction=config.split.test_fraction, seed=config.split.seed)
    what = {TaskKind.SURVIVAL: "event", TaskKind.REGRESSION: "target quintile"}.get(task.kind, "class")
    result["strategy"] = (f"by patient ('{task.patient_id_column}'), stratified by {what}" if task.groups is not None
                          else f"random, stratified by {what}")
    result["strategy"] += (f"; val {config.split.val_fraction:.0%}, test {config.split.test_fraction:.0%}, "
                           f"seed {config.split.seed}")
    return result


def _targets(task: TabularTask, split: dict[str, Any], config: RunConfig):
    """Per split, the target tensors in loss order, and the task metadata stored in the artefact."""
    meta: dict[str, Any] = {"kind": task.kind.value, "label": task.label, "time": task.time_column,
                            "event": task.event_column, "id_column": task.id_column,
                            "class_names": task.class_names, "positive_class": task.positive_class}
    targets = {}
    if task.kind is TaskKind.SURVIVAL:
        meta["out_features"] = 1
        for s in SPLITS:
            targets[s] = (task.event[split[s]].astype(np.float32), task.time[split[s]].astype(np.float32))
    elif task.kind is TaskKind.REGRESSION:
        train_y = task.y[split["train"]]
        meta.update(out_features=1, target_mean=float(train_y.mean()), target_std=float(train_y.std()) or 1.0)
        for s in SPLITS:
            targets[s] = (((task.y[split[s]] - meta["target_mean"]) / meta["target_std"]).astype(np.float32),)
    else:
        meta["out_features"] = 1 if task.kind is TaskKind.BINARY else len(task.class_names)
        for s in SPLITS:
            targets[s] = (task.y[split[s]].astype(np.int64),)
    return targets, meta


def _logit_offset(task: TabularTask, train_targets, config: RunConfig):
    """Undo class reweighting at prediction time (prior correction, King & Zeng 2001): a loss that weights
    class k by w_k learns logits shifted by log w_k, so subtracting log w_k restores calibrated probabilities."""
    if config.training.class_weight != "balanced" or task.kind not in (TaskKind.BINARY, TaskKind.MULTICLASS):
        return 0.0
    y = train_targets[0]
    if task.kind is TaskKind.BINARY:
        n_pos = float(y.sum())
        return [float(np.log((len(y) - n_pos) / max(n_pos, 1.0)))]
    counts = np.bincount(y, minlength=len(task.class_names)).astype(float)
    return np.log(len(y) / (len(counts) * np.maximum(counts, 1.0))).tolist()


def _breslow(log_risk: np.ndarray, event: np.ndarray, time: np.ndarray) -> dict[str, Any]:
    """Breslow estimate of the baseline cumulative hazard on the training split (scikit-survival)."""
    offset = float(np.mean(log_risk))
    estimator = BreslowEstimator().fit(log_risk - offset, event.astype(bool), time.astype(float))
    hazard = estimator.cum_baseline_hazard_
    return {"method": "Breslow (scikit-survival BreslowEstimator) on the training split",
            "risk_offset": offset, "time": hazard.x.tolist(), "cumulative_hazard": hazard.y.tolist()}


def _outcome(task: TabularTask, index: np.ndarray, scores: np.ndarray, predictor: Predictor) -> SplitOutcome:
    if task.kind is TaskKind.SURVIVAL:
        time = task.time[index]
        grid = survival_grid(time)
        return SplitOutcome(task.kind, scores, time=time, event=task.event[index],
                            surv_grid=predictor.survival_at(scores, grid.tolist()))
    return SplitOutcome(task.kind, scores, y=task.y[index])


def survival_grid(time: np.ndarray, n_points: int = 25) -> np.ndarray:
    """Time grid for the integrated Brier score: 10th to 80th percentile of the split's follow-up times, where
    the censoring distribution is still estimable."""
    low, high = np.percentile(time, [10, 80])
    return np.linspace(low, high, n_points)


def _context(task, task_meta, thresholds, split, outcomes) -> dict[str, MetricContext]:
    """Per evaluated split, what its metrics need: class names, threshold, and for survival the training
    follow-up (censoring distribution for Uno's C), horizons and the IBS time grid."""
    contexts = {}
    for s in outcomes:
        context = MetricContext(class_names=task.class_names, threshold=thresholds.get("threshold"))
        if task.kind is TaskKind.SURVIVAL:
            context.train_time = task.time[split["train"]]
            context.train_event = task.event[split["train"]]
            context.horizons = task_meta["horizons"]
            context.grid = survival_grid(outcomes[s].time)
        contexts[s] = context
    return contexts


def _baselines(names, task, x, split, config, seed, context, announce, step=lambda d: None) -> dict[str, Any]:
    """Fit each baseline on train (same preprocessing), choose its threshold on val, report it on test."""
    results = {}
    for name in names:
        step(f"baseline {name}")
        baseline = FittedBaseline(name, task.kind, seed)
        train_index = split["train"]
        if task.kind is TaskKind.SURVIVAL:
            baseline.fit(x["train"], time=task.time[train_index], event=task.event[train_index])
        else:
            baseline.fit(x["train"], y=task.y[train_index])
        tables = {}
        val_scores = baseline.scores(x["val"])
        ctx = dataclasses.replace(context["test"])
        if task.kind is TaskKind.BINARY:  # the baseline gets its own operating point, chosen the same way
            ctx.threshold = choose_threshold(task.y[split["val"]], val_scores,
                                             method=config.evaluation.operating_point.value,
                                             target_sensitivity=config.evaluation.target_sensitivity)
        scores = baseline.scores(x["test"])
        if task.kind is TaskKind.SURVIVAL:
            outcome = SplitOutcome(task.kind, scores, time=task.time[split["test"]], event=task.event[split["test"]],
                                   surv_grid=baseline.survival_on(x["test"], ctx.grid))
        else:
            outcome = SplitOutcome(task.kind, scores, y=task.y[split["test"]])
        tables["test"] = evaluate_split(outcome, ctx, config.evaluation, seed)
        results[name] = tables
        headline = _headline_metric(task.kind)
        announce(f"Baseline {name}: test {headline} {_fmt(tables['test'].get(headline))}")
    return results


def _prediction_rows(task: TabularTask, index, split_name, predictor: Predictor, scores) -> pd.DataFrame:
    frame = pd.DataFrame({"id": task.ids[index], "split": split_name})
    if task.groups is not None:  # lets users check that no patient crosses splits
        frame.insert(1, "patient_id", task.groups[index])
    if task.kind is TaskKind.SURVIVAL:
        frame["time"] = task.time[index]
        frame["event"] = task.event[index]
    elif task.kind is TaskKind.REGRESSION:
        frame["target"] = task.y[index]
    else:
        frame["label"] = np.asarray(task.class_names, dtype=object)[task.y[index]]
    return pd.concat([frame, predictor.format_scores(scores)], axis=1)


def _check_artifact_reproduces(model_dir: Path, features: pd.DataFrame, expected: np.ndarray) -> None:
    """Reload the saved artefact and check it reproduces the evaluated test scores (catches save bugs)."""
    reloaded = Predictor.load(model_dir)
    scores = reloaded.scores(reloaded.encode(features))
    if not np.allclose(scores, expected, rtol=1e-5, atol=1e-6):
        raise RunStateError(f"The saved artefact in {model_dir} does not reproduce the evaluated predictions.")


def _task_summary(task: TabularTask, meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in ("kind", "label", "time", "time_unit", "event", "class_names", "positive_class")}


def _describe_task(task: TabularTask) -> str:
    n_features = len(task.numeric_columns) + len(task.categorical_columns)
    features = f"{n_features} features ({len(task.numeric_columns)} numeric, {len(task.categorical_columns)} categorical)"
    if task.kind is TaskKind.SURVIVAL:
        return (f"Task: survival — time '{task.time_column}', event '{task.event_column}' "
                f"({int(task.event.sum())} events in {len(task.event)} records); {features}")
    if task.kind is TaskKind.REGRESSION:
        return f"Task: regression of '{task.label}'; {features}"
    counts = np.bincount(task.y, minlength=len(task.class_names))
    classes = ", ".join(f"{c} {n}" for c, n in zip(task.class_names, counts))
    positive = f", positive class '{task.positive_class}'" if task.positive_class else ""
    return f"Task: {task.kind.value} classification of '{task.label}' ({classes}{positive}); {features}"


def _model_description(config: RunConfig, kind: TaskKind) -> str:
    params = config.model.params
    if config.model.name == "mlp":
        hidden = params.get("hidden_sizes", [64, 32])
        base = f"MLP {list(hidden)}"
        return {TaskKind.SURVIVAL: f"DeepSurv ({base}, Cox partial likelihood, Efron ties)",
                TaskKind.REGRESSION: f"{base} regressor (squared error)",
                }.get(kind, f"{base} classifier (cross-entropy)")
    return config.model.name


def _headline_metric(kind: TaskKind) -> str:
    return {TaskKind.SURVIVAL: "c_index", TaskKind.REGRESSION: "rmse"}.get(kind, "auroc")


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    low, high = entry.get("ci_low"), entry.get("ci_high")
    ci = f" ({low:.3f}–{high:.3f})" if low is not None and high is not None else ""
    return f"{entry['value']:.3f}{ci}"


# ------------------------------------------------------------------------------------------------- evaluate
def evaluate_external(run_dir: Path, data, out: Path, *, announce: Progress = lambda s: None,
                      n_resamples: int | None = None) -> RunResult:
    """External validation of a trained run on new data; writes split ``external``.

    Uno's C uses the external data's own censoring distribution (the training data is not stored).
    """
    artifact = load_artifact(run_dir)
    predictor = Predictor(artifact)
    meta = artifact.task
    kind = TaskKind(meta["kind"])
    config = artifact.config
    evaluation = config.evaluation if n_resamples is None else dataclasses.replace(config.evaluation,
                                                                                   n_resamples=n_resamples)
    if predictor.is_ecg:
        from medai.workflows.ecg import evaluate_ecg

        return evaluate_ecg(predictor, data, Path(out), evaluation, announce=announce)
    if predictor.is_text:
        from medai.workflows.text import evaluate_text

        return evaluate_text(predictor, data, Path(out), evaluation, announce=announce)
    if predictor.is_ehr:
        from medai.workflows.ehr import evaluate_ehr

        return evaluate_ehr(predictor, data, Path(out), evaluation, announce=announce)
    if predictor.is_image:
        from medai.workflows.imaging import evaluate_images

        return evaluate_images(predictor, data, Path(out), evaluation, announce=announce)
    check_run_directory(Path(out))
    frame, source, data_sha = load_data(data, announce=announce)
    features = predictor.preprocessor.numeric_columns + predictor.preprocessor.categorical_columns
    task_config = TaskConfig(kind=kind, label=meta["label"], time=meta["time"], event=meta["event"],
                             id=meta["id_column"] if meta.get("id_column") in frame.columns else None,
                             positive_class=meta.get("positive_class"), features=tuple(features),
                             on_invalid=config.task.on_invalid)
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{source}: the model needs feature column(s) {', '.join(missing)}, absent from this data. External "
            "data must use the training column names (empty cells are allowed)."
        )
    task = build_tabular_task(frame, task_config, source)
    frame = frame.iloc[task.rows].reset_index(drop=True)
    if kind in (TaskKind.BINARY, TaskKind.MULTICLASS):
        task = _align_classes(task, meta["class_names"], source)
    x = predictor.encode(frame, source)
    work = open_run_directory(Path(out))
    unseen = predictor.preprocessor.unseen_categories(frame)
    warnings = list(task.warnings) + [f"Column '{c}': {n} value(s) not seen in training, encoded as all zeros."
                                      for c, n in unseen.items()]
    scores = predictor.scores(x)
    index = np.arange(len(frame))
    outcome = _outcome(task, index, scores, predictor)
    context = MetricContext(class_names=meta["class_names"], threshold=artifact.thresholds.get("threshold"))
    if kind is TaskKind.SURVIVAL:
        context.train_time, context.train_event = task.time, task.event
        context.horizons, context.grid = meta["horizons"], survival_grid(task.time)
    announce(f"Evaluating on {len(frame)} external records with {evaluation.n_resamples} bootstrap resamples ...")
    metrics = {"external": evaluate_split(outcome, context, evaluation, config.training.seed)}
    groups = subgroup_columns(frame, evaluation.subgroups)
    subgroups = evaluate_subgroups(groups, outcome, context, metrics["external"], evaluation, config.training.seed)
    split_of = np.full(len(frame), "external", dtype=object)
    missingness = missingness_profile(task.features, split_of)
    run = {
        "name": f"{config.name} — external validation",
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "medai_version": medai.__version__,
        "seed": config.training.seed,
        "evaluated_model": {"path": str(artifact.path), "sha256": artifact.sha256},
        "task": {k: meta.get(k) for k in ("kind", "label", "time", "time_unit", "event", "class_names",
                                          "positive_class")},
        "data": {"source": source, "sha256": data_sha, "n_rows": len(frame), "n_skipped": task.n_skipped,
                 "feature_columns": features},
        "split": {"strategy": "external validation (all records)", "n": {"external": len(frame)}},
        "model": {"name": config.model.name, "description": _model_description(config, kind),
                  "params": config.model.params},
        "operating_point": ({"method": artifact.thresholds["method"], "threshold": artifact.thresholds["threshold"]}
                            if kind is TaskKind.BINARY else None),
        "horizons": meta.get("horizons"),
        "warnings": warnings,
    }
    predictions = _prediction_rows(task, index, "external", predictor, scores)
    write_text(work / "predictions.csv", predictions.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "missingness.json", missingness)
    write_json(work / "subgroups.json", subgroups)
    write_json(work / "run.json", run)
    write_report(work)
    final = finish_run_directory(work, Path(out))
    return RunResult(out=final, kind=kind, metrics=metrics, baselines={}, run=run)


def _align_classes(task: TabularTask, class_names: list[str], source: str) -> TabularTask:
    """Re-express the external labels with the training class indices."""
    names = np.asarray(task.class_names, dtype=object)[task.y]
    unknown = sorted(set(names) - set(class_names))
    if unknown:
        raise DataValidationError(
            f"{source}: label column '{task.label}' holds class(es) {', '.join(unknown)} the model was not trained "
            f"on (classes: {', '.join(class_names)})."
        )
    index = {name: i for i, name in enumerate(class_names)}
    return dataclasses.replace(task, y=np.array([index[n] for n in names], dtype=np.int64), class_names=class_names)


# -------------------------------------------------------------------------------------------------- predict
def predict_file(run_dir: Path, input_path: Path, *, sampling_rate_hz: float | None = None,
                 ) -> tuple[pd.DataFrame, Predictor, list[str]]:
    """Predictions for every row of a CSV/Parquet file — or, for an image model, for an image file (PNG, JPEG,
    DICOM, NIfTI), a folder of images or a manifest; for an ECG model, for a recording (WFDB, CinC .mat, DICOM
    waveform, CSV with ``sampling_rate_hz`` when it has no time column) or a folder of them; for a text model, for
    every row of a table with its text column(s) — and warnings about the input (unseen categories; how images were
    resized or scaled; unusable signals; rows without text)."""
    predictor = Predictor.load(run_dir)
    if predictor.is_ehr:
        from medai.workflows.ehr import predict_ehr

        predictions, notes = predict_ehr(predictor, input_path)
        return predictions, predictor, notes
    if predictor.is_ecg:
        from medai.io.ecg import read_ecgs_for_prediction

        records = read_ecgs_for_prediction(input_path, sampling_rate_hz=sampling_rate_hz)
        predictions = predictor.predict_signals(records)
        unusable = int((predictions["pred"] == "unusable").sum())
        warnings = [f"{unusable} recording(s) failed the signal check: no rhythm is given for them (see the "
                    "'note' column)."] if unusable else []
        return predictions, predictor, warnings
    if predictor.is_image:
        from medai.io.images import read_images_for_prediction

        records = read_images_for_prediction(input_path)
        predictions, notes = predictor.predict_records(records)
        if len(records) == 1:
            return predictions, predictor, [f"{records[0].meta.get('source', records[0].id)}: {note}"
                                            for note in notes[0]]
        counts: dict[str, int] = {}
        for record_notes in notes:
            for note in record_notes:
                key = re.sub(r"resized from \S+ to", "resized to", note)
                counts[key] = counts.get(key, 0) + 1
        warnings = [f"{n} image(s): {note}" for note, n in counts.items()]
        return predictions, predictor, warnings
    if predictor.is_text:
        from medai.workflows.text import predict_table

        predictions, warnings = predict_table(predictor, read_table(input_path), str(input_path))
        return predictions, predictor, warnings
    frame = read_table(input_path)
    predictions = predictor.predict(frame, source=str(input_path))
    warnings = [f"Column '{c}': {n} value(s) not seen in training, encoded as all zeros."
                for c, n in predictor.preprocessor.unseen_categories(frame).items()]
    return predictions, predictor, warnings
