"""The imaging training workflow behind `medai train --data X.npz|FOLDER|manifest.csv` and image recipes.

One direction, as for tables: images → task (what was detected is printed) → official or patient-level split →
normalisation fitted on train → CNN/ViT trained with augmentation, early stopping on validation loss, bf16 +
channels_last where the CPU has native bf16, DDP under torchrun → thresholds chosen on validation → metrics with
bootstrap CIs beside an in-run baseline (logistic regression on down-sampled pixels) → explanations (Grad-CAM,
integrated gradients, randomisation check) → artefact → report. Everything is written into ``OUT.partial`` and
renamed at the end; under torchrun only rank 0 writes.
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
import torch.nn.functional as F

import medai
from medai.core.config import ModelConfig, OperatingPoint, RunConfig, TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, RunStateError
from medai.core.hashing import sha256_file
from medai.core.outputs import (
    check_run_directory, finish_run_directory, open_run_directory, partial_path, write_json, write_text,
)
from medai.data.images import BatchAugmentation
from medai.data.split import SPLITS, split_indices
from medai.evaluation.evaluate import MetricContext, SplitOutcome, evaluate_split, operating_points
from medai.evaluation.operating_point import choose_threshold
from medai.evaluation.report import write_report
from medai.models import build_model
from medai.models.baselines import BASELINES, check_baselines
from medai.models.cnn import IMAGE_MODELS, resolve_stem
from medai.evaluation.trust import trust_metrics, write_trust_files, write_tripod
from medai.registry.artifact import Artifact, save_artifact
from medai.registry.drift_reference import drift_reference_for
from medai.registry.model_card import build_model_card, render_model_card
from medai.registry.predictor import Predictor
from medai.tasks.imaging import ImageTask, build_image_task, task_summary
from medai.training import distributed
from medai.training.losses import make_loss
from medai.training.trainer import CHECKPOINT_NAME, Trainer
from medai.workflows.finishing import calibrate_and_conform

Progress = Callable[[str], None]

#: Default network for image data when the recipe or command names none.
DEFAULT_IMAGE_MODEL = "resnet18"
#: Side (px) images are down-sampled to for the pixel logistic-regression baseline.
BASELINE_SIDE_2D, BASELINE_SIDE_3D = 32, 16


def bf16_supported() -> bool:
    """bf16 arithmetic in oneDNN on this CPU (AVX512-BF16 or AMX); without it bf16 would be emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amx_supported() -> bool:
    """AMX tiles (Sapphire Rapids and later): where bf16 convolutions are several times faster than fp32."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check()) if check is not None else False


#: Under ``precision: auto`` AMX CPUs use bf16 from this input size (smallest side, px) and for every 3-D input.
BF16_MIN_SIDE_CPU = 64


def resolve_precision(requested: str, device: torch.device, spatial_shape: tuple[int, ...]) -> str:
    """``auto`` → bf16 on CUDA; on CPUs only with AMX and for inputs of at least 64 px or 3-D ones (where the
    project's AMX machines measured 2.4–3.3× faster); fp32 otherwise. Measured on a 2-core Xeon with AVX512-BF16
    but no AMX: bf16 was 0.82× of fp32 at 224 px and 0.7× at 28 px, and bf16 matrix products ran at 87 vs 126
    GFLOP/s — so bf16 without AMX is never chosen automatically. An explicit ``bf16`` is refused on a CPU without
    bf16 instructions at all (it would be emulated, several times slower)."""
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        small_2d = len(spatial_shape) == 2 and min(spatial_shape) < BF16_MIN_SIDE_CPU
        return "bf16" if amx_supported() and not small_2d else "fp32"
    native = device.type == "cuda" and torch.cuda.is_bf16_supported() or device.type == "cpu" and bf16_supported()
    if requested == "bf16" and not native:
        raise InvalidParameterError(
            "training.precision is 'bf16' but this processor has no bf16 instructions (AVX512-BF16/AMX or a "
            "recent GPU); use 'auto' or 'fp32'."
        )
    return requested


def resolve_model(config: RunConfig, task: ImageTask) -> ModelConfig:
    """The model section with everything that depends on the data filled in (saved with the run, so the
    artefact rebuilds the same network): ``spatial_dims``, the stem for the input size, a ViT's image size."""
    name = config.model.name if config.model.name != "mlp" else DEFAULT_IMAGE_MODEL
    if name not in IMAGE_MODELS:
        raise InvalidParameterError(
            f"Model '{name}' does not take images; for image data use one of {', '.join(IMAGE_MODELS)}."
        )
    params = dict(config.model.params)
    spatial = tuple(task.images.shape[2:])
    if name == "vit":
        params.setdefault("image_size", list(spatial))
    else:
        params.setdefault("spatial_dims", task.spatial_dims)
        params["stem"] = resolve_stem(params.get("stem", "auto"), spatial)
    return ModelConfig(name=name, params=params)


# ----------------------------------------------------------------------------------------------------- train
def train_imaging(config: RunConfig, out: Path, *, resume: bool = False, progress: bool = True,
                  announce: Progress = lambda s: None,
                  on_epoch_end: Callable[[int, dict[str, float]], None] | None = None):
    """Run a whole imaging training job into ``out`` (see docs/run-directory.md for the files)."""
    from medai.pipeline import RunResult, _baselines, _check_resume_config, steps

    out = Path(out)
    config = config.replace(training=config.training.resolved("image"))
    torch.use_deterministic_algorithms(True, warn_only=True)
    context = distributed.setup()
    if not context.is_main:
        announce = lambda s: None  # noqa: E731  (one voice: rank 0)
        progress = False
    if context.is_main:
        check_run_directory(out, resume=resume)
    seed = config.training.seed
    task = build_image_task(config.data.path, config.task, config.preprocessing)
    announce(task.describe())
    for note in task.notes:
        announce(f"Note: {note}")
    if config.evaluation.subgroups:  # a named audit column must exist before hours of training, not after
        from medai.evaluation.fairness import group_attributes

        if task.attributes is None:
            raise DataValidationError(
                f"{task.source}: --group/evaluation.subgroups names {', '.join(config.evaluation.subgroups)}, but "
                "these images carry no attributes. Use a CSV manifest path,label[,patient_id] with the attribute "
                "columns beside them (e.g. sex, age, site).")
        group_attributes(task.attributes, tuple(config.evaluation.subgroups))  # names a missing column
    config = config.replace(model=resolve_model(config, task))
    baseline_names = config.baselines if config.baselines is not None else ("logistic_regression",)
    if task.kind is TaskKind.MULTILABEL:
        baseline_names = ()  # scikit-learn's logistic regression is single-output; per-finding fits are not run
    check_baselines(tuple(baseline_names), task.kind)

    split = _split(task, config)
    announce("Split: " + split["strategy"] + " — " + ", ".join(f"{s} {len(split[s])}" for s in SPLITS))
    work = partial_path(out)
    if context.is_main:
        work = open_run_directory(out, resume=resume)
        _check_resume_config(work, config, resume)
    distributed.barrier()

    preprocessor = task.preprocessor.fit(task.images[split["train"]])
    precision = resolve_precision(config.training.precision, context.device, tuple(task.images.shape[2:]))
    augmentation = config.training.augmentation if config.training.augmentation != "auto" else "light"
    out_features = 1 if task.kind is TaskKind.BINARY else len(task.class_names)
    torch.manual_seed(seed)
    model = build_model(config.model.name, int(task.images.shape[1]), out_features, config.model.params)
    n_weights = sum(p.numel() for p in model.parameters())
    announce(f"Model: {_describe_model(config)} ({n_weights:,} weights), seed {seed}; {precision}"
             f"{' + channels_last' if precision == 'bf16' else ''} on {context.device}"
             + (f", {context.world_size} processes ({context.backend})" if context.world_size > 1 else "")
             + f"; augmentation '{augmentation}'")
    y_train = task.y[split["train"]]
    loss = make_loss(task.kind, y_train, out_features, config.training.class_weight)
    batch_size = config.training.batch_size or 64
    trainer = Trainer(
        model, loss, max_epochs=config.training.max_epochs, batch_size=batch_size,
        learning_rate=config.training.learning_rate, weight_decay=config.training.weight_decay,
        patience=config.training.patience, seed=seed, checkpoint_dir=work / "checkpoints",
        checkpoint_every=config.training.checkpoint_every, progress=progress, on_epoch_end=on_epoch_end,
        batch_transform=BatchAugmentation(preprocessor, augmentation, seed), precision=precision,
        channels_last=precision == "bf16", device=context.device, eval_batch_size=256,
        lr_schedule=config.training.lr_schedule,
    )
    tensors = {s: (torch.from_numpy(task.images[split[s]]), torch.from_numpy(_targets(task, split[s])))
               for s in SPLITS}
    can_resume = resume and (work / "checkpoints" / CHECKPOINT_NAME).is_file()
    if resume and not can_resume:
        announce("No checkpoint in the interrupted run: training starts from epoch 0.")
    result = trainer.fit(tensors["train"], tensors["val"], resume=can_resume)
    if not context.is_main:
        distributed.teardown()
        return None
    if result.resumed_from_epoch is not None:
        announce(f"Resumed from epoch {result.resumed_from_epoch}.")
    speed = np.median([row["samples_per_s"] for row in result.history])
    announce(f"Training: {result.epochs_run} epochs ({speed:.0f} images/s), best epoch {result.best_epoch} "
             f"(validation loss {result.best_val_loss:.4f}){', stopped early' if result.stopped_early else ''}")

    # ---- the in-memory artefact scores every split exactly as the saved one will
    model = trainer.model.to("cpu", memory_format=torch.contiguous_format).float()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    task_meta = {**task_summary(task), "in_features": int(task.images.shape[1]), "out_features": out_features,
                 "id_column": None, "time": None, "event": None,
                 "logit_offset": _logit_offset(task, y_train, config)}
    artifact = Artifact(path=Path("model"), config=config, task=task_meta, preprocessor=preprocessor.to_dict(),
                        thresholds={}, weights=state, survival_baseline=None, model_card={}, sha256="")
    predictor = Predictor(artifact)
    scores = {s: predictor.scores(task.images[split[s]]) for s in ("val", "test")}
    artifact.thresholds = _thresholds(task, split, scores["val"], config)
    y, recalibration, conformal_result = calibrate_and_conform(predictor, task, split, scores, config)
    thresholds = artifact.thresholds

    announce(f"Evaluating with {config.evaluation.n_resamples} bootstrap resamples ...")
    outcomes = {s: SplitOutcome(task.kind, scores[s], y=task.y[split[s]]) for s in ("val", "test")}
    metric_context = MetricContext(class_names=task.class_names, threshold=thresholds.get("threshold"),
                                   label_thresholds=thresholds.get("label_thresholds"))
    pixels = {s: _baseline_pixels(task.images[split[s]]) for s in SPLITS} if baseline_names else {}
    n_explained = config.evaluation.explained_images
    n_steps = 3 + (task.kind is TaskKind.BINARY) + len(baseline_names) + bool(n_explained)
    with steps(n_steps, enabled=progress) as step:
        metrics = {}
        for s in ("val", "test"):
            step(f"{s} metrics")
            metrics[s] = evaluate_split(outcomes[s], metric_context, config.evaluation, seed)
        points = None
        if task.kind is TaskKind.BINARY:
            step("operating points")
            points = operating_points(outcomes["val"], outcomes["test"], config.evaluation, seed)
        baselines = _baselines(baseline_names, task, pixels, split, config, seed, {"test": metric_context},
                               announce, step)
        explanations = None
        if n_explained:
            step("explanations")
            explanations, checked = _explain(predictor, task, split["test"], scores["test"], work / "explanations",
                                             seed, n_explained)
            write_json(work / "explanations.json", checked)
        step("fairness audit and lineage")
        metrics["test"].update(trust_metrics(recalibration, conformal_result))
        data_path = Path(config.data.path)
        write_trust_files(work, kind=task.kind, scores=scores, y=y, thresholds=thresholds,
                          class_names=task.class_names, frames=_attribute_frames(task, split),
                          evaluation=config.evaluation, seed=seed, recalibration=recalibration,
                          conformal_result=conformal_result,
                          lineage={"data_files": [data_path] if data_path.is_file() else None,
                                   "data_sha256": None, "config": config.to_dict(),
                                   "split_ids": {s: [str(i) for i in task.ids[split[s]]] for s in SPLITS},
                                   "seeds": {"training": seed, "split": config.split.seed, "bootstrap": seed}})

    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    data_path = Path(config.data.path)
    run = {
        "name": config.name,
        "created": created,
        "medai_version": medai.__version__,
        "seed": seed,
        "task": task_summary(task),
        "data": {"source": str(data_path), "sha256": sha256_file(data_path) if data_path.is_file() else None,
                 "n_rows": int(len(task.y)), "n_skipped": len(task.skipped),
                 "skipped_files": [f for f, _ in task.skipped][:50], "modality": "image"},
        "split": {"strategy": split["strategy"], "seed": config.split.seed,
                  "n": {s: int(len(split[s])) for s in SPLITS}},
        "model": {"name": config.model.name, "description": _describe_model(config), "params": config.model.params,
                  "n_weights": int(n_weights)},
        "training": {"batch_size": batch_size, "precision": precision, "channels_last": precision == "bf16",
                     "augmentation": augmentation, "device": str(context.device),
                     "world_size": context.world_size, "images_per_s": float(speed),
                     "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                     "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
                     "resumed_from_epoch": result.resumed_from_epoch, "history": result.history},
        "operating_point": ({"method": thresholds["method"], "threshold": thresholds["threshold"]}
                            if task.kind is TaskKind.BINARY else None),
        "baselines": {name: _baseline_title(name) for name in baseline_names},
        "explanations": explanations,
        "warnings": _warnings(task) + ([] if n_explained else ["No explanations: evaluation.explained_images is 0."]),
    }
    predictions = pd.concat([_prediction_rows(task, split[s], s, predictor, scores[s]) for s in ("val", "test")],
                            ignore_index=True)
    write_text(work / "predictions.csv", predictions.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "baselines.json", baselines)
    if points is not None:
        write_json(work / "operating_points.json", points)

    strategy = (f"Images resized to {'x'.join(map(str, preprocessor.image_size))} with {preprocessor.channels} "
                f"channel(s), scaled to [0, 1] and normalised by the training split's channel mean and s.d.; "
                f"augmentation '{augmentation}' during training only.")
    card = build_model_card(run, metrics, baselines, {}, strategy, dataclasses.asdict(config.model_card))
    digest = save_artifact(work / "model", state_dict=state, config=config, task=task_meta,
                           preprocessor=preprocessor.to_dict(), thresholds=thresholds,
                           model_card_md=render_model_card(card), model_card=card,
                           recalibration=predictor.artifact.recalibration, conformal=predictor.artifact.conformal,
                           drift_reference=drift_reference_for(predictor, task.images[split["val"]], scores["val"]))
    reloaded = Predictor.load(work / "model")
    if not np.allclose(reloaded.scores(task.images[split["test"]]), scores["test"], rtol=1e-4, atol=1e-5):
        raise RunStateError(f"The saved artefact in {work / 'model'} does not reproduce the evaluated predictions.")
    run["artifact_sha256"] = digest
    write_json(work / "run.json", run)
    write_tripod(work)
    write_report(work)
    final = finish_run_directory(work, out)
    distributed.teardown()
    return RunResult(out=final, kind=task.kind, metrics=metrics, baselines=baselines, run=run)


# ------------------------------------------------------------------------------------------------ evaluate
def evaluate_images(predictor: Predictor, data, out: Path, evaluation, *, announce: Progress = lambda s: None):
    """External validation of an image model on new labelled images (npz: all splits; folder; manifest);
    writes split ``external`` with the model's own preprocessing and thresholds."""
    from medai.pipeline import RunResult

    if data.path is None:
        raise InvalidParameterError("External validation of an image model needs image data (--data FOLDER, "
                                    "manifest.csv or X.npz), not a built-in table.")
    check_run_directory(out)
    meta = predictor.task
    kind = TaskKind(meta["kind"])
    names = meta["class_names"]
    preprocessing = dataclasses.replace(predictor.artifact.config.preprocessing,
                                        image_size=tuple(meta["image_size"]), channels=meta["channels"])
    task_config = dataclasses.replace(predictor.artifact.config.task, positive_class=None,
                                      class_names=tuple(names) if Path(data.path).suffix == ".npz" else None)
    task = build_image_task(data.path, task_config, preprocessing)
    if kind is TaskKind.BINARY:
        task = _align_image_classes(task, names, meta["positive_class"])
    elif task.class_names != names:
        raise DataValidationError(f"{data.path}: classes {task.class_names} differ from the model's {names}.")
    announce(task.describe())
    work = open_run_directory(out)
    index = np.arange(len(task.y))
    scores = predictor.scores(task.images)
    thresholds = predictor.artifact.thresholds
    context = MetricContext(class_names=names, threshold=thresholds.get("threshold"),
                            label_thresholds=thresholds.get("label_thresholds"))
    announce(f"Evaluating on {len(index)} external images with {evaluation.n_resamples} bootstrap resamples ...")
    metrics = {"external": evaluate_split(SplitOutcome(kind, scores, y=task.y), context, evaluation,
                                          predictor.artifact.config.training.seed)}
    run = {
        "name": f"{predictor.artifact.config.name} — external validation",
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "medai_version": medai.__version__,
        "evaluated_model": {"path": str(predictor.artifact.path), "sha256": predictor.artifact.sha256},
        "task": {k: meta.get(k) for k in ("kind", "class_names", "positive_class", "spatial_dims", "channels",
                                          "image_size")},
        "data": {"source": str(data.path), "n_rows": int(len(index)), "n_skipped": len(task.skipped),
                 "skipped_files": [f for f, _ in task.skipped][:50], "modality": "image"},
        "split": {"strategy": "external validation (all images)", "n": {"external": int(len(index))}},
        "model": {"name": predictor.artifact.config.model.name, "params": predictor.artifact.config.model.params},
        "operating_point": ({"method": thresholds["method"], "threshold": thresholds["threshold"]}
                            if kind is TaskKind.BINARY else None),
        "warnings": _warnings(task) + task.notes,
    }
    predictions = _prediction_rows(task, index, "external", predictor, scores)
    write_text(work / "predictions.csv", predictions.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "run.json", run)
    write_report(work)
    final = finish_run_directory(work, out)
    return RunResult(out=final, kind=kind, metrics=metrics, baselines={}, run=run)


def _align_image_classes(task: ImageTask, names: list[str], positive: str) -> ImageTask:
    """Express external binary labels with the model's class order (positive class = index 1)."""
    if sorted(task.class_names) != sorted(names):
        raise DataValidationError(f"{task.source}: classes {sorted(task.class_names)} differ from the model's "
                                  f"{sorted(names)}.")
    if task.class_names != names:
        task.y = 1 - task.y
        task.class_names = list(names)
    task.positive_class = positive
    return task


# ------------------------------------------------------------------------------------------------- helpers
def _split(task: ImageTask, config: RunConfig) -> dict[str, Any]:
    if task.predefined_split is not None:
        result: dict[str, Any] = dict(task.predefined_split)
        result["strategy"] = "official split of the dataset (train/val/test as published)"
        return result
    result = split_indices(task.strata, groups=task.groups, val_fraction=config.split.val_fraction,
                           test_fraction=config.split.test_fraction, seed=config.split.seed)
    what = "rarest finding" if task.kind is TaskKind.MULTILABEL else "class"
    result["strategy"] = (f"by patient, stratified by {what}" if task.groups is not None
                          else f"random, stratified by {what}")
    result["strategy"] += (f"; val {config.split.val_fraction:.0%}, test {config.split.test_fraction:.0%}, "
                           f"seed {config.split.seed}")
    return result


def _targets(task: ImageTask, index: np.ndarray) -> np.ndarray:
    return task.y[index].astype(np.float32 if task.kind is TaskKind.MULTILABEL else np.int64)


def _logit_offset(task: ImageTask, y_train: np.ndarray, config: RunConfig):
    """Undo class reweighting at prediction time (prior correction; see the tabular workflow)."""
    if config.training.class_weight != "balanced":
        return 0.0
    if task.kind is TaskKind.BINARY:
        n_pos = float(y_train.sum())
        return [float(np.log((len(y_train) - n_pos) / max(n_pos, 1.0)))]
    if task.kind is TaskKind.MULTILABEL:
        n_pos = y_train.sum(axis=0)
        return np.log((len(y_train) - n_pos) / np.maximum(n_pos, 1.0)).tolist()
    counts = np.bincount(y_train, minlength=len(task.class_names)).astype(float)
    return np.log(len(y_train) / (len(counts) * np.maximum(counts, 1.0))).tolist()


def _thresholds(task: ImageTask, split, val_scores: np.ndarray, config: RunConfig) -> dict[str, Any]:
    thresholds: dict[str, Any] = {"chosen_on": "val"}
    method = config.evaluation.operating_point
    target = config.evaluation.target_sensitivity
    y_val = task.y[split["val"]]
    if task.kind is TaskKind.BINARY:
        thresholds.update(method=method.value, threshold=float(choose_threshold(
            y_val, val_scores, method=method.value, target_sensitivity=target)),
            target_sensitivity=target if method is OperatingPoint.SENSITIVITY else None)
    elif task.kind is TaskKind.MULTILABEL:
        label_thresholds = []
        for j, name in enumerate(task.class_names):
            if 0 < y_val[:, j].sum() < len(y_val):
                label_thresholds.append(float(choose_threshold(y_val[:, j], val_scores[:, j], method=method.value,
                                                               target_sensitivity=target)))
            else:
                raise DataValidationError(
                    f"{task.source}: finding '{name}' is "
                    f"{'absent from' if y_val[:, j].sum() == 0 else 'in every image of'} the validation split, so "
                    "no threshold can be chosen for it. Use more data or drop the finding."
                )
        thresholds.update(method=method.value, label_thresholds=label_thresholds)
    return thresholds


def _attribute_frames(task: ImageTask, split) -> dict[str, pd.DataFrame] | None:
    """Per split, the subgroup attributes a manifest carries (sex, age, race/ethnicity columns), else None."""
    attributes = getattr(task, "attributes", None)
    if attributes is None or attributes.empty:
        return None
    return {s: attributes.iloc[split[s]].reset_index(drop=True) for s in ("val", "test")}


def _baseline_pixels(images: np.ndarray) -> np.ndarray:
    """Flattened pixels in [0, 1], down-sampled (area) to at most 32 px (2-D) or 16 voxels (3-D) per side."""
    side = BASELINE_SIDE_2D if images.ndim == 4 else BASELINE_SIDE_3D
    tensor = torch.from_numpy(images).float() / 255.0
    if max(images.shape[2:]) > side:
        tensor = F.adaptive_avg_pool2d(tensor, side) if images.ndim == 4 else F.adaptive_avg_pool3d(tensor, side)
    return tensor.reshape(len(images), -1).numpy().astype(np.float64)


def _baseline_title(name: str) -> str:
    return f"{BASELINES.get(name).title} on pixels down-sampled to ≤{BASELINE_SIDE_2D} px"


def _prediction_rows(task: ImageTask, index: np.ndarray, split_name: str, predictor: Predictor,
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


def _describe_model(config: RunConfig) -> str:
    params = config.model.params
    if config.model.name == "vit":
        return (f"ViT ({params.get('depth', 6)} blocks × {params.get('hidden_size', 192)}, patch "
                f"{params.get('patch_size', 4)})")
    dims = params.get("spatial_dims", 2)
    return f"{config.model.name} ({dims}-D, {params.get('stem')} stem)"


def _warnings(task: ImageTask) -> list[str]:
    warnings = []
    if task.skipped:
        warnings.append(f"{len(task.skipped)} file(s) could not be read and were skipped (--on-invalid skip); "
                        "run.json lists them.")
    return warnings


def _explain(predictor: Predictor, task: ImageTask, test_index: np.ndarray, test_scores: np.ndarray,
             folder: Path, seed: int, n_images: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Grad-CAM and integrated-gradients overlays for a few test images with the model-randomisation check
    (``run.json["explanations"]``), and the checked explanations of ``explanations.json``: deletion/insertion
    curves of the integrated-gradients maps of the same images against random pixel orderings (RISE; blurred
    image as the baseline, the explained class's logit as the score) plus the randomisation verdict of the same
    method, under the ``summary`` keys every modality writes."""
    from medai.explain.faithfulness import faithfulness_report, torch_model_fn
    from medai.explain.run import _pick, explain_test_images
    from medai.explain.saliency import SaliencyMethod, integrated_gradients
    from medai.explain.sanity import SENSITIVE_BELOW

    images, y = task.images[test_index], task.y[test_index]
    shown = explain_test_images(predictor, images, y, test_scores, ids=list(task.ids[test_index]),
                                class_names=task.class_names, kind=task.kind, folder=folder, n_images=n_images,
                                seed=seed)
    picks = _pick(task.kind, y, test_scores, n_images)  # the same images and classes as the overlays
    checked: dict[str, Any] = {"method": SaliencyMethod.INTEGRATED_GRADIENTS.value, "n_explained": len(picks),
                               "faithfulness": None,
                               "summary": {"n_important": None, "faithful_better_than_random": None,
                                           "randomisation_test_passed": None}}
    if not picks:
        return shown, checked
    model = predictor.model.eval()
    x = predictor.model_input(images[np.array([p[0] for p in picks])])  # (N, C, *spatial) float32
    targets = [p[1] for p in picks]
    maps = integrated_gradients(model, x, targets, n_steps=16)  # (N, *spatial): signed, summed over channels
    # A single-logit binary model returns (b,) scores: the positive class, which is what _pick explains.
    single = predictor.task["out_features"] == 1
    # Logits, not probabilities: a confident model's probability sits at 1.000 and hides every ordering's effect.
    # 8 steps x 4 random orderings = 360 forward passes for 4 images; measured on one thread with resnet18 (small
    # stem, 4 images): ~4 s at 32 px, ~19 s at 64 px (10 steps x 8 orderings took 8.7 s and 42 s).
    faithfulness = faithfulness_report(torch_model_fn(model), x, maps, None if single else targets, baseline="blur",
                                       steps=8, n_random=4, seed=seed)
    sanity = (shown.get("sanity") or {}).get(SaliencyMethod.INTEGRATED_GRADIENTS.value)
    checked["faithfulness"] = faithfulness
    checked["randomisation"] = sanity
    checked["summary"]["faithful_better_than_random"] = faithfulness["better_than_random"]
    if sanity:  # the verdict rule of faithfulness.randomisation_test, on the image check's fully randomised model
        rho, final = sanity["final"].get("spearman_abs"), sanity["final"]
        checked["summary"]["randomisation_test_passed"] = bool(
            rho < SENSITIVE_BELOW if rho is not None else final.get("n_became_constant") == sanity.get("n_images"))
    return shown, checked

