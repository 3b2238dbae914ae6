"""The ECG training workflow behind `medai train --data FOLDER` for a folder of recordings, and external
validation of ECG models (`medai evaluate RUN --data FOLDER`).

One direction, as for images: recordings → task (rhythm per recording, AAMI class per beat, or 12-lead findings;
:mod:`medai.tasks.ecg`) → signal check (unusable recordings listed, never classified) → band-pass + notch,
resampling → patient/record-level split (or the dataset's own) → amplitude scale fitted on train → windows →
1-D ResNet (or the small transformer) trained with ECG augmentation, early stopping on validation loss → a
recording's probabilities = the mean over its windows → thresholds on validation → metrics with bootstrap CIs
(per-class F1, the CinC 2017 score, AF AUROC, confusion matrix) beside an in-run feature baseline (HRV and
morphology features + gradient boosting) → ECG strips with a saliency trace → artefact → report. Everything is
written into ``OUT.partial`` and renamed at the end.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import medai
from medai.core.config import ModelConfig, RunConfig, TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, RunStateError
from medai.core.outputs import check_run_directory, finish_run_directory, open_run_directory, write_json, write_text
from medai.data.ecg_augmentation import EcgAugmentation
from medai.data.split import SPLITS, split_indices
from medai.evaluation.evaluate import MetricContext, SplitOutcome, evaluate_split, operating_points
from medai.evaluation.report import write_report
from medai.evaluation.trust import trust_metrics, write_trust_files, write_tripod
from medai.models import build_model
from medai.models.baselines import BASELINES, check_baselines
from medai.models.ecg import ECG_MODELS
from medai.registry.artifact import Artifact, save_artifact
from medai.registry.drift_reference import drift_reference_for
from medai.registry.model_card import build_model_card, render_model_card
from medai.registry.predictor import Predictor
from medai.tasks.ecg import EcgTask, build_ecg_task, task_summary
from medai.training.losses import make_loss
from medai.training.trainer import CHECKPOINT_NAME, Trainer
from medai.workflows.finishing import calibrate_and_conform

Progress = Callable[[str], None]

#: Default network for ECG data when the recipe or command names none.
DEFAULT_ECG_MODEL = "resnet1d"
#: Test recordings drawn as ECG strips in the report (one per class where possible).
N_STRIPS = 4


def resolve_model(config: RunConfig) -> ModelConfig:
    name = config.model.name if config.model.name != "mlp" else DEFAULT_ECG_MODEL
    if name not in ECG_MODELS:
        raise InvalidParameterError(
            f"Model '{name}' does not take ECG signals; for recordings use one of {', '.join(ECG_MODELS)}."
        )
    return ModelConfig(name=name, params=dict(config.model.params))


# ----------------------------------------------------------------------------------------------------- train
def train_ecg(config: RunConfig, out: Path, *, resume: bool = False, progress: bool = True,
              announce: Progress = lambda s: None,
              on_epoch_end: Callable[[int, dict[str, float]], None] | None = None):
    """Run a whole ECG training job into ``out`` (see docs/run-directory.md for the files)."""
    from medai.pipeline import RunResult, _baselines, _check_resume_config, steps

    out = Path(out)
    config = config.replace(training=config.training.resolved("image"))
    torch.use_deterministic_algorithms(True, warn_only=True)
    check_run_directory(out, resume=resume)
    seed = config.training.seed
    task = build_ecg_task(config.data.path, config.task, config.preprocessing, progress=progress)
    announce(task.describe())
    for reason in _unusable_summary(task):
        announce(f"Unusable: {reason}")
    for note in task.notes:
        announce(f"Note: {note}")
    config = config.replace(model=resolve_model(config))
    default_baselines = () if task.kind is TaskKind.MULTILABEL else ("gradient_boosting",)
    baseline_names = config.baselines if config.baselines is not None else default_baselines
    check_baselines(tuple(baseline_names), task.kind)

    split = _split(task, config)
    announce("Split: " + split["strategy"] + " — " + ", ".join(f"{s} {len(split[s])}" for s in SPLITS))
    work = open_run_directory(out, resume=resume)
    _check_resume_config(work, config, resume)

    fitted = fit_ecg(task, split, config, work / "checkpoints", resume=resume, progress=progress,
                     announce=announce, on_epoch_end=on_epoch_end)
    predictor, result, scores = fitted.predictor, fitted.result, fitted.scores
    preprocessor, state, task_meta = task.preprocessor, predictor.artifact.weights, predictor.task
    n_weights, augmentation, batch_size = fitted.n_weights, fitted.augmentation, fitted.batch_size
    speed = fitted.speed
    y, recalibration, conformal_result = calibrate_and_conform(predictor, task, split, scores, config)
    thresholds = predictor.artifact.thresholds

    announce(f"Evaluating with {config.evaluation.n_resamples} bootstrap resamples ...")
    outcomes = {s: SplitOutcome(task.kind, scores[s], y=task.y[split[s]]) for s in ("val", "test")}
    context = MetricContext(class_names=task.class_names, threshold=thresholds.get("threshold"),
                            label_thresholds=thresholds.get("label_thresholds"))
    n_steps = 4 + (task.kind is TaskKind.BINARY) + len(baseline_names)
    with steps(n_steps, enabled=progress) as step:
        metrics = {}
        for s in ("val", "test"):
            step(f"{s} metrics")
            metrics[s] = evaluate_split(outcomes[s], context, config.evaluation, seed)
        points = None
        if task.kind is TaskKind.BINARY:
            step("operating points")
            points = operating_points(outcomes["val"], outcomes["test"], config.evaluation, seed)
        features = {}
        if baseline_names:
            step("baseline features (HRV, morphology)")
            features = _baseline_features(task, split)
        baselines = _baselines(baseline_names, task, features, split, config, seed, {"test": context},
                               announce, step)
        step("ECG strips")
        strips = _strips(predictor, task, split["test"], scores["test"], work / "ecg_examples")
        write_json(work / "explanations.json", _check_explanations(predictor, task, split["test"], seed))
        step("fairness audit and lineage")
        metrics["test"].update(trust_metrics(recalibration, conformal_result))
        write_trust_files(work, kind=task.kind, scores=scores, y=y, thresholds=thresholds,
                          class_names=task.class_names, frames=None, evaluation=config.evaluation, seed=seed,
                          recalibration=recalibration, conformal_result=conformal_result,
                          lineage={"data_files": None, "data_sha256": task.sha256,
                                   "config": config.to_dict(),
                                   "split_ids": {s: list(dict.fromkeys(str(i) for i in task.ids[split[s]]))
                                                 for s in SPLITS},
                                   "seeds": {"training": seed, "split": config.split.seed, "bootstrap": seed}})

    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = {
        "name": config.name,
        "created": created,
        "medai_version": medai.__version__,
        "seed": seed,
        "task": task_summary(task),
        "data": _data_facts(task, config.data.path),
        "split": {"strategy": split["strategy"], "seed": config.split.seed,
                  "n": {s: int(len(split[s])) for s in SPLITS},
                  "n_recordings": {s: int(len(set(task.records[split[s]]))) for s in SPLITS}},
        "model": {"name": config.model.name, "description": _describe_model(config, task),
                  "params": config.model.params, "n_weights": int(n_weights)},
        "training": {"batch_size": batch_size, "precision": "fp32", "augmentation": augmentation,
                     "device": "cpu", "windows_per_s": float(speed), "epochs_run": result.epochs_run,
                     "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
                     "stopped_early": result.stopped_early, "resumed_from_epoch": result.resumed_from_epoch,
                     "history": result.history},
        "operating_point": ({"method": thresholds["method"], "threshold": thresholds["threshold"]}
                            if task.kind is TaskKind.BINARY else None),
        "baselines": {name: _baseline_title(name) for name in baseline_names},
        "ecg_examples": strips,
        "warnings": _warnings(task),
    }
    predictions = pd.concat([_prediction_rows(task, split[s], s, predictor, scores[s]) for s in ("val", "test")],
                            ignore_index=True)
    write_text(work / "predictions.csv", predictions.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "baselines.json", baselines)
    if points is not None:
        write_json(work / "operating_points.json", points)

    card = build_model_card(run, metrics, baselines, {}, _strategy(task), dataclasses.asdict(config.model_card))
    # a recording's features are its windows' mean; a beat model scores (and monitors) each beat in window order
    val_windows, _, val_owner = _network_inputs(task, split["val"])
    digest = save_artifact(work / "model", state_dict=state, config=config, task=task_meta,
                           preprocessor=preprocessor.to_dict(), thresholds=thresholds,
                           model_card_md=render_model_card(card), model_card=card,
                           recalibration=predictor.artifact.recalibration, conformal=predictor.artifact.conformal,
                           drift_reference=drift_reference_for(predictor, val_windows, scores["val"],
                                                               groups=None if task.name == "beats" else val_owner))
    reloaded = Predictor.load(work / "model")
    if not np.allclose(_sample_scores(reloaded, task, split["test"]), scores["test"], rtol=1e-4, atol=1e-5):
        raise RunStateError(f"The saved artefact in {work / 'model'} does not reproduce the evaluated predictions.")
    run["artifact_sha256"] = digest
    write_json(work / "run.json", run)
    write_tripod(work)
    write_report(work)
    final = finish_run_directory(work, out)
    return RunResult(out=final, kind=task.kind, metrics=metrics, baselines=baselines, run=run)


@dataclasses.dataclass
class FittedEcg:
    """A trained ECG network (in-memory artefact with thresholds) and its validation/test scores."""

    predictor: Predictor
    scores: dict[str, np.ndarray]
    result: Any
    n_weights: int
    augmentation: str
    batch_size: int
    speed: float


def fit_ecg(task: EcgTask, split: dict[str, Any], config: RunConfig, checkpoint_dir: Path, *, resume: bool = False,
            progress: bool = True, announce: Progress = lambda s: None,
            on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> FittedEcg:
    """Fit the preprocessing on train, train the network on train windows (early stopping on val), and choose
    thresholds on val. Used by :func:`train_ecg` and by the cross-validation benchmark (bench/cinc2017_cv.py)."""
    from medai.workflows.imaging import _logit_offset, _thresholds

    seed = config.training.seed
    preprocessor = task.preprocessor
    train_records = sorted(set(task.records[split["train"]]))
    preprocessor.fit([task.signals[r] for r in train_records])
    inputs = {s: _network_inputs(task, split[s]) for s in SPLITS}
    out_features = 1 if task.kind is TaskKind.BINARY else len(task.class_names)
    torch.manual_seed(seed)
    n_leads = preprocessor.n_channels
    model = build_model(config.model.name, n_leads, out_features, config.model.params)
    n_weights = sum(p.numel() for p in model.parameters())
    augmentation = config.training.augmentation if config.training.augmentation != "auto" else "light"
    announce(f"Model: {config.model.name} ({n_weights:,} weights), seed {seed}; "
             f"{len(inputs['train'][0])} training windows; augmentation '{augmentation}'")
    y_train = inputs["train"][1]
    loss = make_loss(task.kind, y_train, out_features, config.training.class_weight)
    batch_size = config.training.batch_size or 64
    trainer = Trainer(
        model, loss, max_epochs=config.training.max_epochs, batch_size=batch_size,
        learning_rate=config.training.learning_rate, weight_decay=config.training.weight_decay,
        patience=config.training.patience, seed=seed, checkpoint_dir=checkpoint_dir,
        checkpoint_every=config.training.checkpoint_every, progress=progress, on_epoch_end=on_epoch_end,
        batch_transform=EcgAugmentation(augmentation, seed=seed, sampling_rate_hz=preprocessor.sampling_rate_hz),
        precision="fp32", eval_batch_size=256, lr_schedule=config.training.lr_schedule,
    )
    tensors = {s: (torch.from_numpy(inputs[s][0]), torch.from_numpy(_targets(task, inputs[s][1])))
               for s in SPLITS}
    can_resume = resume and (checkpoint_dir / CHECKPOINT_NAME).is_file()
    if resume and not can_resume:
        announce("No checkpoint in the interrupted run: training starts from epoch 0.")
    result = trainer.fit(tensors["train"], tensors["val"], resume=can_resume)
    if result.resumed_from_epoch is not None:
        announce(f"Resumed from epoch {result.resumed_from_epoch}.")
    speed = float(np.median([row["samples_per_s"] for row in result.history]))
    announce(f"Training: {result.epochs_run} epochs ({speed:.0f} windows/s), best epoch {result.best_epoch} "
             f"(validation loss {result.best_val_loss:.4f}){', stopped early' if result.stopped_early else ''}")

    # the in-memory artefact scores every split exactly as the saved one will
    model = trainer.model.to("cpu").float()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    task_meta = {**task_summary(task), "in_features": n_leads, "out_features": out_features, "id_column": None,
                 "time": None, "event": None, "logit_offset": _logit_offset(task, y_train, config)}
    artifact = Artifact(path=Path("model"), config=config, task=task_meta, preprocessor=preprocessor.to_dict(),
                        thresholds={}, weights=state, survival_baseline=None, model_card={}, sha256="")
    predictor = Predictor(artifact)
    scores = {s: _sample_scores(predictor, task, split[s]) for s in ("val", "test")}
    artifact.thresholds = _thresholds(task, split, scores["val"], config)
    return FittedEcg(predictor, scores, result, int(n_weights), augmentation, batch_size, speed)


# ------------------------------------------------------------------------------------------------ evaluate
def evaluate_ecg(predictor: Predictor, data, out: Path, evaluation, *, announce: Progress = lambda s: None):
    """External validation of an ECG model on a new labelled folder (same layout as for training); writes split
    ``external``. Recordings that fail the signal check get no rhythm: with a noisy class (``~``) they count as
    predicted noisy, otherwise they are left out — either way run.json and the report list them."""
    from medai.pipeline import RunResult

    if data.path is None:
        raise InvalidParameterError("External validation of an ECG model needs a folder of recordings (--data).")
    out = Path(out)
    check_run_directory(out)
    meta = predictor.task
    kind = TaskKind(meta["kind"])
    names = list(meta["class_names"])
    config = predictor.artifact.config
    task_config = dataclasses.replace(config.task, class_names=tuple(names))
    task = build_ecg_task(data.path, task_config, config.preprocessing, min_recordings=1,
                          preprocessor=predictor.preprocessor)  # the model's own preparation, never refitted
    if task.name != meta["ecg_task"]:
        raise DataValidationError(f"{data.path}: this folder holds a {task.name} dataset; the model was trained "
                                  f"for {meta['ecg_task']}.")
    announce(task.describe())
    work = open_run_directory(out)
    index = np.arange(len(task.y))
    scores = _sample_scores(predictor, task, index) if len(index) else np.zeros((0, len(names)))
    y, ids = task.y, task.ids
    noisy = "~" in names and task.name == "rhythm"
    if noisy and task.unusable_labels:  # the challenge's "too noisy to classify": what the check found
        extra = [i for i in task.unusable_labels if str(task.unusable_labels[i]).strip() in names]
        y = np.concatenate([y, [names.index(str(task.unusable_labels[i]).strip()) for i in extra]]).astype(np.int64)
        ids = np.concatenate([ids, np.array(extra, dtype=object)])
        scores = np.concatenate([scores, np.tile(np.eye(len(names))[names.index("~")], (len(extra), 1))])
    outcome = SplitOutcome(kind, scores, y=y)
    thresholds = predictor.artifact.thresholds
    context = MetricContext(class_names=names, threshold=thresholds.get("threshold"),
                            label_thresholds=thresholds.get("label_thresholds"))
    announce(f"Evaluating on {len(y)} external recordings with {evaluation.n_resamples} bootstrap resamples ...")
    metrics = {"external": evaluate_split(outcome, context, evaluation, config.training.seed)}
    warnings = _warnings(task)
    if task.unusable:
        warnings.append(f"{len(task.unusable)} recording(s) failed the signal check: "
                        + ("scored as noisy ('~')." if noisy else "left out of the metrics."))
    run = {
        "name": f"{config.name} — external validation",
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "medai_version": medai.__version__,
        "seed": config.training.seed,
        "evaluated_model": {"path": str(predictor.artifact.path), "sha256": predictor.artifact.sha256},
        "task": {k: meta.get(k) for k in ("kind", "ecg_task", "class_names", "positive_class", "leads",
                                          "sampling_rate_hz", "window_s")},
        "data": _data_facts(task, data.path),
        "split": {"strategy": "external validation (all recordings)", "n": {"external": int(len(y))}},
        "model": {"name": config.model.name, "params": config.model.params},
        "operating_point": ({"method": thresholds["method"], "threshold": thresholds["threshold"]}
                            if kind is TaskKind.BINARY else None),
        "warnings": warnings,
    }
    rows = _prediction_rows(task, index, "external", predictor, scores[:len(index)])
    rows["signal"] = "usable"
    if len(y) > len(index):
        extra = pd.DataFrame({"id": ids[len(index):], "split": "external",
                              "label": np.asarray(names, dtype=object)[y[len(index):]]})
        extra = pd.concat([extra, predictor.format_scores(scores[len(index):])], axis=1)
        extra["signal"] = "unusable"
        rows = pd.concat([rows, extra], ignore_index=True)
    write_text(work / "predictions.csv", rows.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "run.json", run)
    write_report(work)
    final = finish_run_directory(work, out)
    return RunResult(out=final, kind=kind, metrics=metrics, baselines={}, run=run)


# ------------------------------------------------------------------------------------------------- helpers
def _split(task: EcgTask, config: RunConfig) -> dict[str, Any]:
    if task.predefined_split is not None:
        result: dict[str, Any] = dict(task.predefined_split)
        result["strategy"] = ("de Chazal's inter-patient split of MIT-BIH (DS1 train/val, DS2 test)"
                              if task.name == "beats" else "the dataset's split (PTB-XL strat_fold 1-8/9/10)")
        return result
    groups = task.groups
    result = split_indices(task.strata, groups=groups, val_fraction=config.split.val_fraction,
                           test_fraction=config.split.test_fraction, seed=config.split.seed)
    unit = "record (inter-patient)" if task.name == "beats" else ("patient" if groups is not None else None)
    result["strategy"] = (f"by {unit}, stratified by class" if unit else "random by recording, stratified by class")
    result["strategy"] += (f"; val {config.split.val_fraction:.0%}, test {config.split.test_fraction:.0%}, "
                           f"seed {config.split.seed}")
    return result


def _network_inputs(task: EcgTask, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows (or beats) of the samples ``index``: ``(n_windows, leads, window)`` float32, their labels and the
    position in ``index`` each window belongs to."""
    p = task.preprocessor
    windows, labels, owner = [], [], []
    if task.name == "beats":
        for record in sorted(set(task.records[index])):
            positions = index[task.records[index] == record]
            beats, kept = p.beat_windows(task.signals[record], task.beat_peaks[positions])
            positions = positions[np.isin(task.beat_peaks[positions], kept)]
            windows.append(beats)
            labels.append(task.y[positions])
            owner.append(np.searchsorted(index, positions))
    else:
        for k, i in enumerate(index):
            w, _ = p.windows(task.signals[task.records[i]])
            windows.append(w)
            labels.append(np.repeat(task.y[i:i + 1], len(w), axis=0))
            owner.append(np.full(len(w), k))
    n_leads = p.n_channels
    x = np.concatenate(windows) if windows else np.zeros((0, n_leads, p.window_samples), np.float32)
    return x, np.concatenate(labels), np.concatenate(owner)


def _targets(task: EcgTask, y: np.ndarray) -> np.ndarray:
    return y.astype(np.float32 if task.kind is TaskKind.MULTILABEL else np.int64)


def _sample_scores(predictor: Predictor, task: EcgTask, index: np.ndarray) -> np.ndarray:
    """Scores per sample: a recording's = the mean of its windows' probabilities; a beat's own."""
    x, _, owner = _network_inputs(task, index)
    window_scores = predictor.scores(x, recalibrate=task.name == "beats")  # recordings: recalibrate the mean
    if task.name == "beats":
        if len(owner) != len(index):
            raise DataValidationError(f"{task.source}: {len(index) - len(owner)} annotated beat(s) lie too near "
                                      "the start or end of their recording for a beat window.")
        return window_scores
    return predictor.recalibrated(_mean_by_owner(window_scores, owner, len(index)))


def _mean_by_owner(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(owner, minlength=n).astype(np.float64)
    if values.ndim == 1:
        return np.bincount(owner, weights=values, minlength=n) / counts
    return np.stack([np.bincount(owner, weights=values[:, k], minlength=n) for k in range(values.shape[1])],
                    axis=1) / counts[:, None]


def _baseline_features(task: EcgTask, split: dict[str, Any]) -> dict[str, np.ndarray]:
    """HRV + morphology features per sample (each recording on its first model lead at its own rate)."""
    from joblib import Parallel, delayed

    from medai.data.ecg import record_features

    lead_records = {}
    for record_id, record in task.raw.items():
        data, _ = task.preprocessor.select_leads(record)
        lead_records[record_id] = (data[0], float(record.meta["sampling_rate_hz"]))
    if task.name == "beats":
        return {s: _beat_features(task, split[s]) for s in SPLITS}
    order = sorted(lead_records)
    rows = Parallel(n_jobs=2)(delayed(record_features)(*lead_records[r]) for r in order)
    table = pd.DataFrame(rows, index=order)
    return {s: table.loc[list(task.records[split[s]])].to_numpy(dtype=np.float64) for s in SPLITS}


def _beat_features(task: EcgTask, index: np.ndarray) -> np.ndarray:
    """RR features of each beat (previous and next RR, their ratio to the record's mean RR; de Chazal et al.
    2004) and its QRS window (±100 ms) down-sampled to 25 Hz (morphology)."""
    rate = task.preprocessor.sampling_rate_hz
    rows = []
    for i in index:
        record = task.records[i]
        peaks = task.beat_peaks[task.records == record]
        position = int(np.searchsorted(peaks, task.beat_peaks[i]))
        rr = np.diff(peaks) / rate
        mean_rr = float(np.mean(rr)) if len(rr) else np.nan
        pre = rr[position - 1] if 0 < position <= len(rr) else np.nan
        post = rr[position] if position < len(rr) else np.nan
        signal = task.signals[record][0]
        half = int(0.1 * rate)
        centre = int(task.beat_peaks[i])
        segment = signal[max(0, centre - half):centre + half]
        segment = np.pad(segment, (0, 2 * half - len(segment)))
        morphology = segment[:: max(1, int(rate // 25))]
        rows.append(np.concatenate([[pre, post, mean_rr, pre / mean_rr, post / mean_rr], morphology]))
    return np.asarray(rows, dtype=np.float64)


def _baseline_title(name: str) -> str:
    return f"{BASELINES.get(name).title} on HRV and morphology features"


def _prediction_rows(task: EcgTask, index: np.ndarray, split_name: str, predictor: Predictor,
                     scores: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"id": task.ids[index], "split": split_name})
    if task.name == "beats":
        frame.insert(1, "record", task.records[index])
    if task.kind is TaskKind.MULTILABEL:
        for j, name in enumerate(task.class_names):
            frame[f"label_{name}"] = task.y[index, j].astype(int)
    else:
        frame["label"] = np.asarray(task.class_names, dtype=object)[task.y[index]]
    return pd.concat([frame, predictor.format_scores(scores)], axis=1)


def _describe_model(config: RunConfig, task: EcgTask) -> str:
    params = config.model.params
    title = {"resnet1d": "1-D ResNet", "ecg_transformer": "ECG transformer"}.get(config.model.name,
                                                                              config.model.name)
    return f"{title} ({len(task.preprocessor.leads)} lead(s), {task.preprocessor.sampling_rate_hz:g} Hz" + (
        f", width {params['width']}" if "width" in params else "") + ")"


def _data_facts(task: EcgTask, path) -> dict[str, Any]:
    rates = sorted({float(r.meta["sampling_rate_hz"]) for r in task.raw.values()})
    durations = [float(r.meta.get("duration_s") or np.shape(r.data)[1] / r.meta["sampling_rate_hz"])
                 for r in task.raw.values()]
    return {"source": str(path), "modality": "ecg", "layout": task.layout, "sha256": task.sha256,
            "n_rows": int(len(task.y)),
            "n_recordings": len(task.raw) + len(task.unusable), "sampling_rates_hz": rates,
            "duration_s": {"min": float(np.min(durations)), "median": float(np.median(durations)),
                           "max": float(np.max(durations))},
            "n_skipped": len(task.skipped), "skipped_files": [f for f, _ in task.skipped][:50],
            "n_unusable": len(task.unusable),
            "unusable": [{"id": i, "reasons": r} for i, r in task.unusable][:100]}


def _unusable_summary(task: EcgTask) -> list[str]:
    counts: dict[str, int] = {}
    for _, reasons in task.unusable:
        for reason in reasons:
            key = re.sub(r"\s*[\d.]+(\s*(s|mV|Hz|%))?", "", reason.split(" from ")[0].split(" (")[0]).strip()
            counts[key] = counts.get(key, 0) + 1
    return [f"{n} recording(s): {reason}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def _warnings(task: EcgTask) -> list[str]:
    warnings = [f"{len(task.skipped)} file(s) could not be read and were skipped (--on-invalid skip); run.json "
                "lists them."] if task.skipped else []
    if task.unusable:
        warnings.append(f"{len(task.unusable)} recording(s) failed the signal check and were not used: "
                        + "; ".join(_unusable_summary(task)) + ". run.json lists them with their reasons.")
    return warnings + task.notes


def _strategy(task: EcgTask) -> str:
    p = task.preprocessor
    unit = (f"windows of {p.window_s:g} s every {p.stride_s:g} s (a recording's probabilities are the mean over "
            "its windows)" if p.unit == "recording" else
            f"one window per beat, {p.before_s:g} s before to {p.after_s:g} s after its R peak")
    return (f"Signal check (flat line, NaN runs, clipping, amplitude, length); band-pass 0.5–40 Hz"
            f"{f' and a {p.powerline_hz:g} Hz notch' if p.powerline_hz else ''}; resampled to "
            f"{p.sampling_rate_hz:g} Hz; divided by the training split's per-lead s.d.; {unit}; ECG augmentation "
            "(scaling, baseline wander, noise, mains interference, time shift) during training only.")


def _strips(predictor: Predictor, task: EcgTask, test_index: np.ndarray, test_scores: np.ndarray,
            folder: Path) -> list[dict[str, Any]]:
    """ECG strips of a few test recordings (one per class where possible) with the prediction and an
    integrated-gradients saliency trace over time."""
    from medai.explain.ecg import draw_strip

    if task.name == "beats" or len(test_index) == 0:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    chosen: list[int] = []
    labels = task.y[test_index] if task.kind is not TaskKind.MULTILABEL else task.y[test_index].argmax(axis=1)
    for k in range(len(task.class_names)):
        candidates = np.flatnonzero(labels == k)
        if len(candidates):
            chosen.append(int(candidates[0]))
    for position in range(len(test_index)):
        if len(chosen) >= N_STRIPS:
            break
        if position not in chosen:
            chosen.append(position)
    examples = []
    for position in chosen[:N_STRIPS]:
        i = test_index[position]
        record = task.records[i]
        entry = draw_strip(predictor, task.signals[record], record_id=str(record), truth=_label_text(task, i),
                           scores=test_scores[position], path=folder / f"{_safe(record)}.png")
        examples.append(entry)
    return examples


#: Test windows whose integrated-gradients time saliency is checked (deletion/insertion, randomisation).
N_CHECKED_WINDOWS = 8


def _check_explanations(predictor: Predictor, task: EcgTask, test_index: np.ndarray, seed: int,
                        n_windows: int = N_CHECKED_WINDOWS) -> dict[str, Any]:
    """``explanations.json`` of an ECG run: the time saliency drawn under the strips, checked on up to
    ``n_windows`` test windows (or beats) drawn at random.

    The map is the signed integrated-gradients attribution (zero baseline = a flat line at the training mean)
    summed over leads: ``(samples,)`` per window of ``(leads, samples)``. Deletion/insertion (RISE) replace the
    most important samples of every lead by the window blurred over time (Gaussian, σ a tenth of the window),
    scoring the explained class's logit, against random orderings; the parameter-randomisation test (Adebayo et
    al. 2018) re-initialises the network from the output down. A single-logit binary model is explained for the
    positive class; multi-class and multi-label ones for each window's most probable class."""
    from medai.explain.faithfulness import faithfulness_report, gradient_attribution, randomisation_test, \
        torch_model_fn

    summary: dict[str, Any] = {"n_important": None, "faithful_better_than_random": None,
                               "randomisation_test_passed": None}
    x, _, _ = _network_inputs(task, test_index)  # (n_windows, leads, samples) float32
    if len(x) == 0:
        return {"method": "integrated_gradients", "n_explained": 0, "summary": summary}
    rng = np.random.default_rng(seed)
    x = x[np.sort(rng.choice(len(x), size=min(n_windows, len(x)), replace=False))]
    model = predictor.model.eval()
    single = predictor.task["out_features"] == 1
    target = None if single else [int(t) for t in predictor.scores(x, recalibrate=False).argmax(axis=1)]

    def time_saliency(net: torch.nn.Module, batch, t) -> np.ndarray:  # (N, leads, samples) → (N, samples)
        return gradient_attribution(net, batch, t, method="integrated_gradients", n_steps=16).sum(axis=1)

    # Logits, not probabilities: a confident model's probability stuck at 1.000 makes every ordering look alike.
    # 10 steps x 6 orderings and 4 randomisation steps: ~5 s for 8 two-lead 5 s windows on one thread (resnet1d).
    faithfulness = faithfulness_report(torch_model_fn(model), x, time_saliency(model, x, target), target,
                                       baseline="blur", steps=10, n_random=6, seed=seed)
    randomisation = randomisation_test(model, time_saliency, x, target, seed=seed, max_steps=4)
    summary.update(faithful_better_than_random=faithfulness["better_than_random"],
                   randomisation_test_passed=randomisation["passed"])
    return {"method": "integrated_gradients", "map": "signed attribution summed over leads, per sample",
            "n_explained": int(len(x)), "faithfulness": faithfulness, "randomisation": randomisation,
            "summary": summary}


def _label_text(task: EcgTask, i: int) -> str:
    if task.kind is TaskKind.MULTILABEL:
        return ";".join(n for n, v in zip(task.class_names, task.y[i]) if v) or "none"
    return task.class_names[int(task.y[i])]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
