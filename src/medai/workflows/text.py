"""The text workflow behind `medai train --data reports.csv --text COL --label COL`, and external validation of
text models (`medai evaluate RUN --data reports.csv`).

One direction, as for tables and ECGs: table → text task (text columns joined under section headers, binary /
multi-class / multi-label outcome; :mod:`medai.tasks.text`) → patient-level stratified split → MiniLM encoder
(frozen: its embeddings are computed once; fine-tuned: the frozen layers' token states are computed once and the
last layers train on them) + head trained with early stopping on validation loss → thresholds on validation →
metrics with bootstrap CIs beside an in-run TF-IDF + logistic-regression baseline → artefact → report.

No report text is ever written: predictions.csv holds ids, splits, labels and scores; the report lists the ids of
misclassified test reports, never their text. Everything is written into ``OUT.partial`` and renamed at the end.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

import medai
from medai.core.config import ModelConfig, RunConfig, TaskConfig, TaskKind
from medai.core.errors import InvalidParameterError, RunStateError
from medai.core.hashing import sha256_file
from medai.core.outputs import check_run_directory, finish_run_directory, open_run_directory, write_json, write_text
from medai.data.split import SPLITS, split_indices
from medai.evaluation.evaluate import MetricContext, SplitOutcome, evaluate_split, operating_points
from medai.evaluation.operating_point import choose_threshold
from medai.evaluation.report import write_report
from medai.evaluation.trust import trust_metrics, write_trust_files, write_tripod
from medai.explain.text import check_text_explanations
from medai.io.tabular import read_table
from medai.models import build_model
from medai.models import text as text_models
from medai.models.baselines import BASELINES, TEXT_BASELINES, TfidfLogistic
from medai.registry.artifact import Artifact, save_artifact
from medai.registry.drift_reference import drift_reference_for
from medai.registry.model_card import build_model_card, render_model_card
from medai.registry.predictor import Predictor
from medai.tasks.text import TextTask, build_text_task, drop_sparse_findings, task_summary
from medai.training.losses import make_loss
from medai.training.trainer import CHECKPOINT_NAME, Trainer
from medai.workflows.finishing import calibrate_and_conform

Progress = Callable[[str], None]

#: The text networks and the default one.
TEXT_MODELS = ("minilm",)
DEFAULT_TEXT_MODEL = "minilm"
#: Defaults of the model parameters when the recipe gives none. Frozen: a whole IU run takes ~2-3 minutes on 2
#: CPU cores; fine-tuning two layers costs ~1-2 minutes per epoch there (measured; docs/text.md).
DEFAULT_PARAMS = {"finetune": False, "tuned_layers": 2, "max_tokens": 256}
#: (max_epochs, patience) when unset: a frozen encoder trains only a linear head (cheap epochs); fine-tuning
#: costs ~10-40 s per epoch on 2 CPU cores for 3,000 reports and converges in a few epochs.
EPOCHS = {False: (200, 20), True: (12, 3)}
#: Fine-tuned encoder layers learn this fraction of the head's learning rate (large steps would wreck the
#: pretrained weights; the freshly initialised head needs large ones).
ENCODER_LR_FACTOR = 0.1
#: Misclassified test report ids listed in the report (ids only, never text).
N_ERROR_EXAMPLES = 10
#: The report lists TF-IDF terms only if they occur in at least this many training reports, so that a rare
#: string (a name that escaped de-identification) can never appear in it.
MIN_TERM_REPORTS = 10


def resolve_model(config: RunConfig) -> ModelConfig:
    name = config.model.name if config.model.name != "mlp" else DEFAULT_TEXT_MODEL
    if name not in TEXT_MODELS:
        raise InvalidParameterError(
            f"Model '{name}' does not read text; for --text use one of {', '.join(TEXT_MODELS)}.")
    return ModelConfig(name=name, params={**DEFAULT_PARAMS, **config.model.params})


def load_text_table(data) -> tuple[pd.DataFrame, str, str]:
    if data.path is None:
        raise InvalidParameterError("Text classification reads a CSV/Parquet file (--data FILE), not a built-in "
                                    "dataset.")
    path = Path(data.path)
    return read_table(path), str(path), sha256_file(path)


# ----------------------------------------------------------------------------------------------------- train
def train_text(config: RunConfig, out: Path, *, resume: bool = False, progress: bool = True,
               announce: Progress = lambda s: None,
               on_epoch_end: Callable[[int, dict[str, float]], None] | None = None):
    """Run a whole text-classification job into ``out`` (see docs/run-directory.md and docs/text.md)."""
    from medai.pipeline import RunResult, _check_resume_config, steps

    out = Path(out)
    torch.use_deterministic_algorithms(True, warn_only=True)
    check_run_directory(out, resume=resume)
    config = config.replace(model=resolve_model(config))
    finetune = bool(config.model.params.get("finetune"))
    epochs, patience = EPOCHS[finetune]
    config = config.replace(training=dataclasses.replace(
        config.training, max_epochs=config.training.max_epochs or epochs,
        patience=config.training.patience or patience))
    seed = config.training.seed
    frame, source, data_sha = load_text_table(config.data)
    task = build_text_task(frame, config.task, source)
    baseline_names = tuple(config.baselines) if config.baselines is not None else TEXT_BASELINES
    check_text_baselines(baseline_names, task.kind)

    split = split_text(task, config)
    task = drop_sparse_findings(task, split)
    announce(task.describe())
    for note in task.warnings:
        announce(f"Note: {note}")
    announce("Split: " + split["strategy"] + " — " + ", ".join(f"{s} {len(split[s])}" for s in SPLITS))
    work = open_run_directory(out, resume=resume)  # only now: invalid input leaves nothing behind
    _check_resume_config(work, config, resume)

    fitted = fit_text(task, split, config, work / "checkpoints", resume=resume, progress=progress,
                      announce=announce, on_epoch_end=on_epoch_end)
    predictor, scores, result = fitted.predictor, fitted.scores, fitted.result
    y, recalibration, conformal_result = calibrate_and_conform(predictor, task, split, scores, config)
    thresholds = predictor.artifact.thresholds

    announce(f"Evaluating with {config.evaluation.n_resamples} bootstrap resamples ...")
    outcomes = {s: SplitOutcome(task.kind, scores[s], y=task.y[split[s]]) for s in ("val", "test")}
    context = MetricContext(class_names=task.class_names, threshold=thresholds.get("threshold"),
                            label_thresholds=thresholds.get("label_thresholds"))
    with steps(2 + (task.kind is TaskKind.BINARY) + len(baseline_names), enabled=progress) as step:
        metrics = {}
        for s in ("val", "test"):
            step(f"{s} metrics")
            metrics[s] = evaluate_split(outcomes[s], context, config.evaluation, seed)
        points = None
        if task.kind is TaskKind.BINARY:
            step("operating points")
            points = operating_points(outcomes["val"], outcomes["test"], config.evaluation, seed)
        baselines, fitted_baselines = {}, {}
        for name in baseline_names:
            step(f"baseline {name}")
            baselines[name], fitted_baselines[name] = evaluate_text_baseline(name, task, split, config, context)
            announce(f"Baseline {name}: test AUROC {_fmt(baselines[name]['test'].get('auroc'))}")
        # Words are written out only if the report already lists them (common TF-IDF terms): never a rare string.
        terms = text_insights(task, split["test"], scores["test"], thresholds, fitted_baselines)["top_terms"]
        write_json(work / "explanations.json", check_text_explanations(
            predictor, list(task.texts[split["test"]]), task.kind, seed=seed,
            vocabulary={word for ranked in terms.values() for term, _ in ranked for word in term.split()}))
        metrics["test"].update(trust_metrics(recalibration, conformal_result))
        write_trust_files(work, kind=task.kind, scores=scores, y=y, thresholds=thresholds,
                          class_names=task.class_names, frames=None, evaluation=config.evaluation, seed=seed,
                          recalibration=recalibration, conformal_result=conformal_result,
                          lineage={"data_files": None, "data_sha256": data_sha, "config": config.to_dict(),
                                   "split_ids": {s: [str(i) for i in task.ids[split[s]]] for s in SPLITS},
                                   "seeds": {"training": seed, "split": config.split.seed, "bootstrap": seed}})

    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = {
        "name": config.name,
        "created": created,
        "medai_version": medai.__version__,
        "seed": seed,
        "task": task_summary(task),
        "data": {"source": source, "sha256": data_sha, "modality": "text", "n_rows": int(len(frame)),
                 "n_used": int(len(task.y)), "n_skipped": task.n_skipped,
                 "text_columns": list(task.preprocessor.columns), "iu_reports": task.is_iu},
        "split": {"strategy": split["strategy"], "seed": config.split.seed,
                  "n": {s: int(len(split[s])) for s in SPLITS}},
        "model": {"name": config.model.name, "description": describe_model(config),
                  "params": config.model.params, "n_weights": fitted.n_weights,
                  "encoder": predictor.preprocessor.encoder},
        "training": {"batch_size": fitted.batch_size, "precision": "fp32", "device": "cpu",
                     "encoder_cache_seconds": round(fitted.cache_seconds, 1), "reports_per_s": fitted.speed,
                     "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                     "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
                     "resumed_from_epoch": result.resumed_from_epoch, "history": result.history},
        "operating_point": ({"method": thresholds["method"], "threshold": thresholds["threshold"]}
                            if task.kind is TaskKind.BINARY else None),
        "baselines": {name: BASELINES.get(name).title for name in baseline_names},
        "text": text_insights(task, split["test"], scores["test"], thresholds, fitted_baselines),
        "warnings": task.warnings,
    }
    predictions = pd.concat([prediction_rows(task, split[s], s, predictor, scores[s]) for s in ("val", "test")],
                            ignore_index=True)
    write_text(work / "predictions.csv", predictions.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "baselines.json", baselines)
    if points is not None:
        write_json(work / "operating_points.json", points)

    card = build_model_card(run, metrics, baselines, {}, strategy(config, task), dataclasses.asdict(config.model_card))
    digest = save_artifact(work / "model", state_dict=predictor.artifact.weights, config=config,
                           task=predictor.task, preprocessor=predictor.preprocessor.to_dict(), thresholds=thresholds,
                           model_card_md=render_model_card(card), model_card=card,
                           recalibration=predictor.artifact.recalibration, conformal=predictor.artifact.conformal,
                           drift_reference=drift_reference_for(predictor, task.texts[split["val"]], scores["val"]))
    reloaded = Predictor.load(work / "model")
    test_texts = task.texts[split["test"]]
    if not np.allclose(reloaded.scores(test_texts), scores["test"], rtol=1e-4, atol=1e-5):
        raise RunStateError(f"The saved artefact in {work / 'model'} does not reproduce the evaluated predictions.")
    run["artifact_sha256"] = digest
    write_json(work / "run.json", run)
    write_tripod(work)
    write_report(work)
    final = finish_run_directory(work, out)
    return RunResult(out=final, kind=task.kind, metrics=metrics, baselines=baselines, run=run)


def check_text_baselines(names: tuple[str, ...], kind: TaskKind) -> None:
    for name in names:
        baseline = BASELINES.get(name)  # unknown names raise with "did you mean"
        if name not in TEXT_BASELINES:
            raise InvalidParameterError(
                f"Baseline '{name}' reads a feature table, not text; text runs take {', '.join(TEXT_BASELINES)}.")
        if kind not in baseline.kinds:
            raise InvalidParameterError(f"Baseline '{name}' does not apply to a {kind.value} task.")


def split_text(task: TextTask, config: RunConfig) -> dict[str, Any]:
    """Stratified train/val/test split, grouped by patient when a patient id column is given."""
    result: dict[str, Any] = split_indices(task.strata, groups=task.groups, val_fraction=config.split.val_fraction,
                                           test_fraction=config.split.test_fraction, seed=config.split.seed)
    what = "rarest finding present" if task.kind is TaskKind.MULTILABEL else "class"
    unit = (f"by patient ('{task.patient_id_column}')" if task.groups is not None else
            "by report (each report its own patient)" if task.is_iu else "random by report")
    result["strategy"] = (f"{unit}, stratified by {what}; val {config.split.val_fraction:.0%}, test "
                          f"{config.split.test_fraction:.0%}, seed {config.split.seed}")
    return result


@dataclasses.dataclass
class FittedText:
    """A trained text model (in-memory artefact with thresholds) and its validation/test scores."""

    predictor: Predictor
    scores: dict[str, np.ndarray]
    result: Any
    n_weights: int
    batch_size: int
    speed: float
    cache_seconds: float
    cache: dict[str, Any] | None = None  # the frozen encoder's output for train and val (reusable across seeds)


class _TunedPart(nn.Module):
    """What the Trainer optimises when fine-tuning: the tuned layers and head of ``model``, fed with cached
    frozen-layer token states packed as ``(b, T, H + 1)`` (the last channel is the attention mask)."""

    def __init__(self, model: text_models.MiniLMClassifier) -> None:
        super().__init__()
        self.tuned, self.head = model.tuned, model.head  # the same parameters: training updates ``model``
        self._model = (model,)

    def forward(self, packed: Tensor) -> Tensor:
        hidden, mask = packed[..., :-1], packed[..., -1].long()
        return self.head(self._model[0].pooled(hidden, mask))


def fit_text(task: TextTask, split: dict[str, Any], config: RunConfig, checkpoint_dir: Path | None, *,
             resume: bool = False, progress: bool = True, announce: Progress = lambda s: None,
             on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
             cache: dict[str, Any] | None = None) -> FittedText:
    """Train the text network on train (early stopping on val), choose thresholds on val and score val and test
    with the in-memory artefact. Used by :func:`train_text` and by bench/iu_reports.py.

    ``cache``: :attr:`FittedText.cache` of an earlier fit on the same task, split and model parameters (another
    seed): the frozen encoder's output does not depend on the seed, so it is not computed again.
    """
    from medai.workflows.imaging import _logit_offset, _thresholds

    seed = config.training.seed
    params = dict(config.model.params)
    finetune = bool(params.get("finetune"))
    out_features = 1 if task.kind is TaskKind.BINARY else len(task.class_names)
    identity = text_models.encoder_identity()
    torch.manual_seed(seed)
    model = build_model(config.model.name, 384, out_features, params)
    n_weights = sum(p.numel() for p in model.parameters())
    started = time.perf_counter()
    if cache is None:
        cache = {s: model.cache_inputs(task.texts[split[s]]) for s in ("train", "val")}
    cache_seconds = time.perf_counter() - started
    announce(f"Model: {describe_model(config)} — {n_weights:,} trained weights, seed {seed}; encoder pass over "
             f"{len(split['train']) + len(split['val'])} reports in {cache_seconds:.0f} s")
    y = {s: task.y[split[s]] for s in SPLITS}
    target_type = torch.float32 if task.kind is TaskKind.MULTILABEL else torch.int64
    targets = {s: torch.as_tensor(y[s]).to(target_type) for s in ("train", "val")}
    loss = make_loss(task.kind, y["train"], out_features, config.training.class_weight)
    batch_size = config.training.batch_size or (32 if finetune else 64)
    common = dict(max_epochs=config.training.max_epochs, batch_size=batch_size,
                  learning_rate=config.training.learning_rate, weight_decay=config.training.weight_decay,
                  patience=config.training.patience, seed=seed, checkpoint_dir=checkpoint_dir,
                  checkpoint_every=config.training.checkpoint_every, progress=progress, on_epoch_end=on_epoch_end,
                  precision="fp32", eval_batch_size=128, lr_schedule=config.training.lr_schedule)
    if finetune:
        states = list(cache["train"]) + list(cache["val"])
        n_train = len(cache["train"])

        def pack(index: Tensor, *_: Any) -> Tensor:  # global row indices → padded cached states + mask channel
            hidden, mask = text_models.pad_states([states[int(i)] for i in index])
            return torch.cat([hidden, mask.unsqueeze(-1).float()], dim=-1)

        trainer = Trainer(_TunedPart(model), loss, batch_transform=pack, **common)
        head_lr = config.training.learning_rate
        trainer.optimizer = torch.optim.AdamW(
            [{"params": list(model.tuned.parameters()), "lr": head_lr * ENCODER_LR_FACTOR},
             {"params": list(model.head.parameters()), "lr": head_lr}], weight_decay=config.training.weight_decay)
        if trainer.scheduler is not None:
            trainer.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(trainer.optimizer,
                                                                           T_max=config.training.max_epochs)
        tensors = {"train": (torch.arange(n_train), targets["train"]),
                   "val": (torch.arange(n_train, len(states)), targets["val"])}
    else:
        trainer = Trainer(model.head, loss, **common)
        tensors = {s: (cache[s], targets[s]) for s in ("train", "val")}
    can_resume = resume and checkpoint_dir is not None and (checkpoint_dir / CHECKPOINT_NAME).is_file()
    if resume and not can_resume:
        announce("No checkpoint in the interrupted run: training starts from epoch 0.")
    result = trainer.fit(tensors["train"], tensors["val"], resume=can_resume)
    del tensors
    if result.resumed_from_epoch is not None:
        announce(f"Resumed from epoch {result.resumed_from_epoch}.")
    speed = float(np.median([row["samples_per_s"] for row in result.history])) if result.history else 0.0
    announce(f"Training: {result.epochs_run} epochs ({speed:.0f} reports/s), best epoch {result.best_epoch} "
             f"(validation loss {result.best_val_loss:.4f}){', stopped early' if result.stopped_early else ''}")

    model.eval()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    meta = {**task_summary(task), "in_features": 384, "out_features": out_features,
            "logit_offset": _logit_offset(task, y["train"], config)}
    preprocessor = dataclasses.replace(task.preprocessor, encoder=identity,
                                       max_tokens=int(params.get("max_tokens", 256)))
    artifact = Artifact(path=Path("model"), config=config, task=meta, preprocessor=preprocessor.to_dict(),
                        thresholds={}, weights=state, survival_baseline=None, model_card={}, sha256="")
    predictor = Predictor(artifact)
    scores = {s: predictor.scores(task.texts[split[s]]) for s in ("val", "test")}
    artifact.thresholds = _thresholds(task, split, scores["val"], config)
    return FittedText(predictor, scores, result, int(n_weights), batch_size, speed, cache_seconds, cache)


def evaluate_text_baseline(name: str, task: TextTask, split: dict[str, Any], config: RunConfig,
                           context: MetricContext) -> tuple[dict[str, Any], TfidfLogistic]:
    """Fit the TF-IDF baseline on train (C chosen on val), its own thresholds on val, metrics on test."""
    seed = config.training.seed
    baseline = TfidfLogistic(task.kind, seed).fit(task.texts[split["train"]], task.y[split["train"]],
                                                  task.texts[split["val"]], task.y[split["val"]])
    val_scores = baseline.scores(task.texts[split["val"]])
    ctx = dataclasses.replace(context)
    method, target = config.evaluation.operating_point.value, config.evaluation.target_sensitivity
    y_val = task.y[split["val"]]
    if task.kind is TaskKind.BINARY:  # the baseline gets its own operating point, chosen the same way
        ctx.threshold = choose_threshold(y_val, val_scores, method=method, target_sensitivity=target)
    elif task.kind is TaskKind.MULTILABEL:
        ctx.label_thresholds = [float(choose_threshold(y_val[:, j], val_scores[:, j], method=method,
                                                       target_sensitivity=target)) for j in range(y_val.shape[1])]
    outcome = SplitOutcome(task.kind, baseline.scores(task.texts[split["test"]]), y=task.y[split["test"]])
    table = {"test": evaluate_split(outcome, ctx, config.evaluation, seed), "C": baseline.C_}
    return table, baseline


def text_insights(task: TextTask, test_index: np.ndarray, test_scores: np.ndarray, thresholds: dict[str, Any],
                  baselines: dict[str, TfidfLogistic]) -> dict[str, Any]:
    """For the report: the TF-IDF baseline's most weighted terms per class (common terms only), and the ids of
    misclassified test reports — never their text."""
    insights: dict[str, Any] = {"top_terms": {}, "errors": {}}
    baseline = baselines.get("tfidf_logistic")
    if baseline is not None:
        frequent = baseline.document_frequency_ >= MIN_TERM_REPORTS
        names = ([task.positive_class] if task.kind is TaskKind.BINARY else list(task.class_names))
        for k, terms in baseline.top_terms(n=10, mask=frequent).items():
            insights["top_terms"][str(names[k])] = [[t, round(w, 3)] for t, w in terms]
    ids = task.ids[test_index]
    if task.kind is TaskKind.BINARY:
        pred = test_scores >= thresholds["threshold"]
        truth = task.y[test_index] == 1
        insights["errors"][str(task.positive_class)] = _errors(ids, truth, pred, test_scores)
    elif task.kind is TaskKind.MULTILABEL:
        for j, name in enumerate(task.class_names):
            pred = test_scores[:, j] >= thresholds["label_thresholds"][j]
            insights["errors"][name] = _errors(ids, task.y[test_index, j] == 1, pred, test_scores[:, j])
    return insights


def _errors(ids, truth, pred, score) -> dict[str, Any]:
    fp = np.flatnonzero(pred & ~truth)
    fn = np.flatnonzero(~pred & truth)
    fp = fp[np.argsort(-score[fp])][:N_ERROR_EXAMPLES]  # the most confident mistakes first
    fn = fn[np.argsort(score[fn])][:N_ERROR_EXAMPLES]
    return {"n_false_positive": int((pred & ~truth).sum()), "n_false_negative": int((~pred & truth).sum()),
            "false_positive_ids": [str(ids[i]) for i in fp], "false_negative_ids": [str(ids[i]) for i in fn]}


# ------------------------------------------------------------------------------------------------ evaluate
def evaluate_text(predictor: Predictor, data, out: Path, evaluation, *, announce: Progress = lambda s: None):
    """External validation of a text model on a new labelled table with the training text and label columns;
    writes split ``external``."""
    from medai.pipeline import RunResult

    out = Path(out)
    check_run_directory(out)
    frame, source, data_sha = load_text_table(data)
    meta = predictor.task
    config = predictor.artifact.config
    kind = TaskKind(meta["kind"])
    id_column = meta.get("id_column") if meta.get("id_column") in frame.columns else None
    task_config = TaskConfig(kind=kind, label=meta["label"], text=",".join(meta["text_columns"]), id=id_column,
                             positive_class=config.task.positive_class if kind is TaskKind.BINARY else None,
                             on_invalid=config.task.on_invalid)
    task = build_text_task(frame, task_config, source, class_names=list(meta["class_names"]))
    announce(task.describe())
    work = open_run_directory(out)
    index = np.arange(len(task.y))
    scores = predictor.scores(task.texts)
    thresholds = predictor.artifact.thresholds
    context = MetricContext(class_names=list(meta["class_names"]), threshold=thresholds.get("threshold"),
                            label_thresholds=thresholds.get("label_thresholds"))
    announce(f"Evaluating on {len(index)} external reports with {evaluation.n_resamples} bootstrap resamples ...")
    outcome = SplitOutcome(kind, scores, y=task.y)
    metrics = {"external": evaluate_split(outcome, context, evaluation, config.training.seed)}
    run = {
        "name": f"{config.name} — external validation",
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "medai_version": medai.__version__,
        "seed": config.training.seed,
        "evaluated_model": {"path": str(predictor.artifact.path), "sha256": predictor.artifact.sha256},
        "task": {k: meta.get(k) for k in ("kind", "label", "text_columns", "class_names", "positive_class")},
        "data": {"source": source, "sha256": data_sha, "modality": "text", "n_rows": int(len(frame)),
                 "n_used": int(len(index)), "n_skipped": task.n_skipped},
        "split": {"strategy": "external validation (all reports)", "n": {"external": int(len(index))}},
        "model": {"name": config.model.name, "description": describe_model(config), "params": config.model.params},
        "operating_point": ({"method": thresholds["method"], "threshold": thresholds["threshold"]}
                            if kind is TaskKind.BINARY else None),
        "text": text_insights(task, index, scores, thresholds, {}),
        "warnings": task.warnings,
    }
    rows = prediction_rows(task, index, "external", predictor, scores)
    write_text(work / "predictions.csv", rows.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "run.json", run)
    write_report(work)
    final = finish_run_directory(work, out)
    return RunResult(out=final, kind=kind, metrics=metrics, baselines={}, run=run)


# ------------------------------------------------------------------------------------------------- predict
def predict_table(predictor: Predictor, frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Predictions for every row of a table with the model's text columns. A row without text gets ``pred`` =
    ``no text`` and no score — never a guess."""
    frame = frame.reset_index(drop=True)
    texts, empty = predictor.preprocessor.texts(frame, source)
    id_column = predictor.task.get("id_column")
    ids = (frame[id_column].astype(str).to_numpy(dtype=object) if id_column and id_column in frame.columns
           else np.array([str(i + 1) for i in range(len(frame))], dtype=object))
    scored = predictor.predict_texts(texts[~empty], ids[~empty])
    if not empty.any():
        return scored, []
    blank = pd.DataFrame({"id": ids[empty], "pred": "no text"})
    rows = pd.concat([scored, blank], ignore_index=True)
    rows.index = np.concatenate([np.flatnonzero(~empty), np.flatnonzero(empty)])
    warnings = [f"{int(empty.sum())} row(s) have no text in {', '.join(predictor.preprocessor.columns)}: "
                "no prediction is given for them (pred 'no text')."]
    return rows.sort_index().reset_index(drop=True), warnings


# ------------------------------------------------------------------------------------------------- helpers
def prediction_rows(task: TextTask, index: np.ndarray, split_name: str, predictor: Predictor,
                    scores: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"id": task.ids[index], "split": split_name})
    if task.groups is not None:
        frame.insert(1, "patient_id", task.groups[index])
    if task.kind is TaskKind.MULTILABEL:
        for j, name in enumerate(task.class_names):
            frame[f"label_{name}"] = task.y[index, j].astype(int)
    else:
        frame["label"] = np.asarray(task.class_names, dtype=object)[task.y[index]]
    return pd.concat([frame, predictor.format_scores(scores)], axis=1)


def describe_model(config: RunConfig) -> str:
    params = config.model.params
    how = (f"last {params.get('tuned_layers', 2)} of 6 layers fine-tuned" if params.get("finetune")
           else "frozen encoder")
    return (f"all-MiniLM-L6-v2 sentence encoder ({how}, mean pooling, ≤{params.get('max_tokens', 256)} word "
            "pieces) + linear head")


def strategy(config: RunConfig, task: TextTask) -> str:
    columns = task.preprocessor.columns
    joined = (f"text columns {', '.join(columns)} joined under section headers" if len(columns) > 1
              else f"text column {columns[0]}")
    return (f"Text: {joined}; WordPiece tokens (lower-cased), truncated to "
            f"{config.model.params.get('max_tokens', 256)}; no other preprocessing. Reports with no text or no "
            "known label are " + ("left out and counted." if config.task.on_invalid == "skip" else "refused."))


def _fmt(entry: dict | None) -> str:
    from medai.pipeline import _fmt as fmt

    return fmt(entry)
