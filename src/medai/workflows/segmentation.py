"""The segmentation workflow behind `medai train` for ``task: {kind: segmentation}`` recipes.

One direction: generated phantoms with known truth (or an ``.npz`` of images and masks) → per-image intensity
normalisation → U-Net trained with Dice + cross-entropy (MONAI ``DiceCELoss``), early stopping on validation loss
→ argmax masks → per-case Dice and HD95 with bootstrap CIs, lesion detection (lesion data) or LV volumes and
ejection fraction per subject (cardiac cine) → the same metrics for classical in-run baselines (Otsu's threshold;
a global threshold tuned on the training split) → the trust step (voxel temperature scaling fitted on validation,
conformal risk control of the per-case false-negative rate with referral, subgroup audit of Dice/HD95, checked
explanations; :mod:`medai.evaluation.segmentation_trust`) → a DICOM SEG of one test case → artefact (with
``recalibration.json`` and ``conformal.json``, served by
:class:`medai.registry.segmentation_predictor.SegmentationPredictor`) → report. Everything is written into
``OUT.partial`` and renamed to ``OUT`` at the end (docs/run-directory.md).

Files beyond the common ones: ``ejection_fraction.csv`` (cardiac: one row per subject with truth and predicted
EDV, ESV, EF and ED/ES frames), ``segmentation_example/`` (``image/`` the example image as an MR DICOM series,
``seg.dcm`` its predicted segmentation as DICOM SEG, ``examples.npz`` the test cases drawn in the report).
``predictions.csv`` holds one row per evaluated case: an image (lesion data) or one cine frame of a subject
(cardiac), with its Dice, HD95 and volumes, and the Dice of each baseline (``dice_<baseline>``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

import medai
from medai.core.config import RunConfig, TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, RunStateError, unknown_name
from medai.core.hashing import sha256_file
from medai.core.outputs import check_run_directory, finish_run_directory, open_run_directory, write_json, write_text
from medai.data.phantoms import (
    SEGMENTATION_DATASETS, CardiacCinePhantoms, LesionPhantoms, cine_volumes_ml, ejection_fraction,
    load_segmentation_dataset,
)
from medai.evaluation.fairness import group_attributes
from medai.evaluation.report import write_report
from medai.evaluation.segmentation import (
    compute_dice, compute_hd95, ejection_fraction_metrics, lesion_metrics, otsu_threshold,
)
from medai.evaluation.segmentation_trust import (
    CONFORMAL_ALPHA, MAX_BAND_RATIO, N_ECE_BINS, calibration_histogram, crc_threshold, fit_temperature,
    foreground_probability, referral_report, segmentation_fairness_audit, voxel_ece_report, voxel_sampling_rates,
)
from medai.io.dicom_seg import LESION, LV_BLOOD_POOL, SegmentCoding, read_dicom_seg, write_dicom_seg
from medai.models import MODELS, build_model
from medai.evaluation.trust import write_tripod
from medai.registry.artifact import save_artifact
from medai.registry.lineage import build_lineage
from medai.registry.model_card import build_model_card, render_model_card
from medai.training.trainer import CHECKPOINT_NAME, Trainer

Progress = Callable[[str], None]

SPLITS = ("train", "val", "test")
#: Registered networks that output a class map (``(batch, classes, *spatial)``).
SEGMENTATION_MODELS = ("unet",)
#: In-run classical baselines (see :func:`segment_classical`).
BASELINES = {"otsu": "Otsu threshold", "tuned_threshold": "Tuned global threshold"}
BASELINE_DESCRIPTIONS = {
    "otsu": "Gaussian smoothing (sigma 1 voxel), Otsu's threshold of each image, connected-component clean-up",
    "tuned_threshold": "Gaussian smoothing (sigma 1 voxel), one global threshold with the best Dice on the training "
                       "split, connected-component clean-up",
}
#: Images per forward pass at prediction time.
PREDICT_BATCH = 32
#: Test cases drawn in the report.
N_EXAMPLES = 4


# --------------------------------------------------------------------------------------------------- data
@dataclass
class SegmentationData:
    """The data of a segmentation run.

    Attributes:
        kind: ``lesion`` (each image one case and one subject) or ``cardiac-cine`` (cine stacks; a case is one
            frame's stack of slices, a subject has ``frames`` cases).
        label: the foreground class (class 1; class 0 is the background).
        spatial_dims: dimensionality of the network's input (2 or 3).
        spacing_mm: voxel size of a case, per axis in array order.
        splits: per split, :class:`LesionPhantoms` or :class:`CardiacCinePhantoms`.
        source / sha256 / provenance: where the data came from.
        attributes: per split, ``{name: (cases,) values}`` of per-case attributes for the subgroup audit (sex, age,
            site, ...; ``.npz`` keys ``<split>_attr_<name>``); empty when the data has none (phantoms).
    """

    kind: str
    label: str
    spatial_dims: int
    spacing_mm: tuple[float, ...]
    splits: dict[str, LesionPhantoms | CardiacCinePhantoms]
    source: str
    sha256: str | None
    provenance: dict[str, Any]
    attributes: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)

    def inputs(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs ``(N, 1, *spatial)`` float32 (raw intensities) and masks ``(N, 1, *spatial)`` uint8."""
        part = self.splits[split]
        if self.kind == "cardiac-cine":
            rows, cols = part.images.shape[-2:]
            return part.images.reshape(-1, 1, rows, cols), part.masks.reshape(-1, 1, rows, cols)
        return part.images, part.masks

    def n_subjects(self, split: str) -> int:
        return len(self.splits[split].ids)

    def attribute_frame(self, split: str) -> pd.DataFrame:
        """The split's per-case attributes, one row per case (image), columns named as in the data."""
        return pd.DataFrame(dict(self.attributes.get(split, {})), index=pd.RangeIndex(len(self.splits[split].ids)))


def load_segmentation_data(data_config, *, announce: Progress = lambda s: None) -> SegmentationData:
    """Generate a named phantom dataset (``data: {builtin: NAME}``) or read an ``.npz`` (``data: {path: FILE}``).

    An ``.npz`` holds ``train_images``, ``train_masks``, ``val_images``, ``val_masks``, ``test_images`` and
    ``test_masks``: images ``(N, 1, *spatial)`` or ``(N, *spatial)`` (2-D or 3-D, any real values), masks of the
    same shape with values 0/1; optionally ``spacing_mm`` (one value per spatial axis, default 1), ``label``
    (the name of the foreground) and per-case attributes for the subgroup audit, ``<split>_attr_<name>`` with one
    value per image of the split (e.g. ``test_attr_sex``, ``test_attr_age``). Each image is one case and one subject.

    Raises:
        UnknownNameError: an unknown dataset name (the message lists the names).
        DataValidationError: a missing key, a shape mismatch or a non-binary mask in the ``.npz``.
    """
    if data_config.builtin is not None:
        if data_config.builtin not in SEGMENTATION_DATASETS:
            raise unknown_name("segmentation dataset", data_config.builtin, SEGMENTATION_DATASETS.names())
        info = SEGMENTATION_DATASETS.get(data_config.builtin)
        splits = load_segmentation_dataset(info.name)
        spacing = splits["train"].spacing_mm
        announce(f"Data: generated dataset '{info.name}' — {info.title}; subjects train {info.n['train']}, "
                 f"val {info.n['val']}, test {info.n['test']}")
        provenance = {"builtin": info.name, "title": info.title, "generator": "medai.data.phantoms",
                      "seed": info.seed, "params": info.params, "licence": "generated (no patient data)"}
        return SegmentationData(info.kind, info.label, info.spatial_dims, tuple(spacing), splits,
                                f"builtin:{info.name}", None, provenance)
    path = Path(data_config.path)
    if not path.is_file() or path.suffix.lower() != ".npz":
        raise DataValidationError(
            f"{path}: segmentation data must be a named phantom dataset ({', '.join(SEGMENTATION_DATASETS.names())})"
            " or an .npz file with train_/val_/test_ images and masks."
        )
    with np.load(path, allow_pickle=False) as archive:
        content = {key: archive[key] for key in archive.files}
    splits: dict[str, LesionPhantoms] = {}
    spatial_dims = None
    first = 0
    for split in SPLITS:
        for what in ("images", "masks"):
            if f"{split}_{what}" not in content:
                raise DataValidationError(f"{path}: key '{split}_{what}' is missing; the file needs "
                                          "train_images, train_masks, val_images, val_masks, test_images, test_masks.")
        images = content[f"{split}_images"]
        masks = content[f"{split}_masks"]
        if images.ndim in (3, 4) and images.shape == masks.shape and (images.ndim == 3 or images.shape[1] != 1):
            images, masks = images[:, None], masks[:, None]  # (N, *spatial) → (N, 1, *spatial)
        if images.ndim not in (4, 5) or images.shape[1] != 1 or images.shape != masks.shape:
            raise DataValidationError(
                f"{path}: '{split}_images' {images.shape} and '{split}_masks' {masks.shape} must have the same shape "
                "(N, 1, H, W) or (N, 1, D, H, W) (one channel).")
        values = np.unique(masks)
        if not np.isin(values, (0, 1)).all():
            raise DataValidationError(f"{path}: '{split}_masks' must hold only 0 and 1; found {values[:6].tolist()}.")
        if not np.isfinite(images).all():
            raise DataValidationError(f"{path}: '{split}_images' holds NaN or infinite values.")
        spatial_dims = images.ndim - 2
        counts = np.array([ndimage.label(m[0])[1] for m in masks])
        ids = tuple(f"{split}-{first + i:05d}" for i in range(len(images)))
        first += len(images)
        splits[split] = LesionPhantoms(images.astype(np.float32), masks.astype(np.uint8), ids, counts, ())
    spacing = tuple(float(s) for s in np.atleast_1d(content.get("spacing_mm", np.ones(spatial_dims))))
    if len(spacing) != spatial_dims:
        raise DataValidationError(f"{path}: 'spacing_mm' must have {spatial_dims} values; got {spacing}.")
    splits = {s: dataclasses.replace(p, spacing_mm=spacing) for s, p in splits.items()}
    label = str(content["label"]) if "label" in content else "foreground"
    attributes = _npz_attributes(path, content, {s: len(splits[s].ids) for s in SPLITS})
    announce(f"Data: {path} — images train {len(splits['train'].ids)}, val {len(splits['val'].ids)}, "
             f"test {len(splits['test'].ids)}"
             + (f"; attributes {', '.join(sorted(attributes.get('test', {})))}" if attributes.get("test") else ""))
    return SegmentationData("lesion", label, spatial_dims, spacing, splits, str(path), sha256_file(path), {},
                            attributes)


def _npz_attributes(path: Path, content: dict[str, np.ndarray], n: dict[str, int]) -> dict[str, dict[str, np.ndarray]]:
    """``<split>_attr_<name>`` arrays of an ``.npz``, checked: 1-D, one value per image of the split."""
    attributes: dict[str, dict[str, np.ndarray]] = {}
    for key, values in content.items():
        split, _, name = key.partition("_attr_")
        if not name or split not in SPLITS:
            continue
        if values.ndim != 1 or len(values) != n[split]:
            raise DataValidationError(
                f"{path}: '{key}' must hold one value per {split} image ({n[split]},); got shape {values.shape}. "
                f"Store one label (or number) per image in the order of '{split}_images'.")
        if values.dtype.kind not in "biufUS":
            raise DataValidationError(f"{path}: '{key}' must hold numbers or strings; got dtype {values.dtype}.")
        attributes.setdefault(split, {})[name] = values.astype(str) if values.dtype.kind == "S" else values
    return attributes


def normalise(images: np.ndarray) -> np.ndarray:
    """Per-image z-score over the spatial axes: ``(x - mean) / sd`` of each ``(1, *spatial)`` image (MR
    intensities have no absolute scale). Shape ``(N, 1, *spatial)``, float32."""
    axes = tuple(range(1, images.ndim))
    mean = images.mean(axis=axes, keepdims=True)
    sd = images.std(axis=axes, keepdims=True)
    return ((images - mean) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


# ----------------------------------------------------------------------------------------------- baselines
def _smooth(images: np.ndarray) -> np.ndarray:
    """Gaussian smoothing (sigma 1 voxel) of each ``(1, *spatial)`` image, never across images."""
    sigma = (0, 0) + (1.0,) * (images.ndim - 2)
    return ndimage.gaussian_filter(images.astype(np.float32), sigma=sigma)


def _clean(masks: np.ndarray, kind: str) -> np.ndarray:
    """Connected-component clean-up of thresholded masks ``(N, 1, *spatial)``.

    Lesions: drop components smaller than the smallest lesion drawn (10 pixels / 20 voxels). Cardiac: keep in
    each slice the component nearest the image centre (short-axis images are planned around the LV) and fill its
    holes (the papillary muscles belong to the cavity).
    """
    out = np.zeros_like(masks, dtype=bool)
    min_size = 10 if masks.ndim == 4 else 20
    for i in range(len(masks)):
        labels, n = ndimage.label(masks[i, 0])
        if n == 0:
            continue
        if kind == "cardiac-cine":
            centre = (np.array(labels.shape) - 1) / 2
            centroids = np.array(ndimage.center_of_mass(np.ones_like(labels), labels, range(1, n + 1)))
            nearest = int(np.argmin(((centroids - centre) ** 2).sum(axis=1))) + 1
            out[i, 0] = ndimage.binary_fill_holes(labels == nearest)
        else:
            sizes = ndimage.sum_labels(np.ones_like(labels), labels, range(1, n + 1))
            keep = np.flatnonzero(sizes >= min_size) + 1
            out[i, 0] = np.isin(labels, keep)
    return out.astype(np.uint8)


def segment_classical(images: np.ndarray, kind: str, threshold: float | None = None) -> np.ndarray:
    """A classical segmentation of normalised images ``(N, 1, *spatial)``: Gaussian smoothing, a threshold
    (Otsu's per image when ``threshold`` is None, else the given global one), connected-component clean-up."""
    smooth = _smooth(images)
    if threshold is None:
        cuts = np.array([otsu_threshold(im) for im in smooth]).reshape(-1, *([1] * (images.ndim - 1)))
        return _clean(smooth > cuts, kind)
    return _clean(smooth > threshold, kind)


def tune_threshold(images: np.ndarray, masks: np.ndarray, kind: str, *, max_images: int = 400,
                   seed: int = 0) -> float:
    """The global threshold (on smoothed normalised intensities) with the highest pooled Dice on up to
    ``max_images`` training images (30 candidates between the 50th and 99.9th intensity percentiles)."""
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(images), size=min(max_images, len(images)), replace=False))
    images, truth = images[index], masks[index].astype(bool)
    smooth = _smooth(images)
    best, best_dice = 0.0, -1.0
    for cut in np.quantile(smooth, np.linspace(0.5, 0.999, 30)):
        pred = _clean(smooth > cut, kind).astype(bool)
        dice = 2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1)
        if dice > best_dice:
            best, best_dice = float(cut), float(dice)
    return best


# ---------------------------------------------------------------------------------------------- prediction
@torch.no_grad()
def predict_masks(model: torch.nn.Module, images: np.ndarray, *, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Argmax class maps of normalised images ``(N, 1, *spatial)`` → uint8 ``(N, 1, *spatial)``."""
    model.eval()
    out = np.empty((len(images), 1, *images.shape[2:]), np.uint8)
    for start in range(0, len(images), batch_size):
        logits = model(torch.from_numpy(images[start:start + batch_size]))
        out[start:start + batch_size, 0] = logits.argmax(dim=1).to(torch.uint8).numpy()
    return out


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class SplitEvaluation:
    """Metrics of one split for one method: the table with CIs, a per-case frame, and (cardiac) per subject."""

    metrics: dict[str, Any]
    cases: pd.DataFrame
    subjects: pd.DataFrame | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)


def evaluate_split(data: SegmentationData, split: str, pred: np.ndarray, config: RunConfig,
                   seed: int) -> SplitEvaluation:
    """Evaluate predicted masks ``(N, 1, *spatial)`` (in :meth:`SegmentationData.inputs` order) on ``split``."""
    part = data.splits[split]
    evaluation = config.evaluation
    if data.kind != "cardiac-cine":
        table, per_case = lesion_metrics(part.masks[:, 0], pred[:, 0], spacing_mm=data.spacing_mm,
                                         n_resamples=evaluation.n_resamples, confidence=evaluation.confidence,
                                         seed=seed)
        cases = pd.DataFrame({"id": part.ids, "patient_id": part.ids, "split": split, **per_case})
        return SplitEvaluation(table, cases)

    n_subjects, n_frames = part.masks.shape[:2]
    stacks = pred.reshape(part.masks.shape)
    truth_cases = part.masks.reshape(-1, *part.masks.shape[2:])  # (subjects x frames, slices, rows, cols)
    pred_cases = stacks.reshape(truth_cases.shape)
    dice = compute_dice(truth_cases, pred_cases).reshape(n_subjects, n_frames)
    hd95 = compute_hd95(truth_cases, pred_cases, spacing_mm=data.spacing_mm).reshape(n_subjects, n_frames)
    volume_pred = cine_volumes_ml(stacks, data.spacing_mm)
    predicted = ejection_fraction(volume_pred)
    rows = np.arange(n_subjects)
    es_error = (predicted["es_frame"] - part.es_frame + n_frames // 2) % n_frames - n_frames // 2  # cyclic
    subjects = pd.DataFrame({
        "id": part.ids, "split": split,
        "ed_frame_true": part.ed_frame, "es_frame_true": part.es_frame,
        "edv_true_ml": part.edv_ml, "esv_true_ml": part.esv_ml, "ef_true": part.ef_percent,
        "ed_frame_pred": predicted["ed_frame"], "es_frame_pred": predicted["es_frame"],
        "edv_pred_ml": predicted["edv_ml"], "esv_pred_ml": predicted["esv_ml"], "ef_pred": predicted["ef_percent"],
        "ef_error": predicted["ef_percent"] - part.ef_percent,
        "dice_mean": np.nanmean(dice, axis=1), "dice_ed": dice[rows, part.ed_frame],
        "dice_es": dice[rows, part.es_frame], "hd95_mm_mean": np.nanmean(hd95, axis=1),
    })
    frames = np.tile(np.arange(n_frames), n_subjects)
    subject_of = np.repeat(np.asarray(part.ids), n_frames)
    cases = pd.DataFrame({
        "id": [f"{s}/frame-{t:02d}" for s, t in zip(subject_of, frames)], "patient_id": subject_of,
        "split": split, "frame": frames,
        "is_ed": frames == np.repeat(part.ed_frame, n_frames), "is_es": frames == np.repeat(part.es_frame, n_frames),
        "volume_true_ml": part.volumes_ml.ravel(), "volume_pred_ml": volume_pred.ravel(),
        "dice": dice.ravel(), "hd95_mm": hd95.ravel(),
    })
    defined = np.isfinite(subjects["ef_pred"].to_numpy())
    warnings = []
    if not defined.all():
        warnings.append(f"{split}: {int((~defined).sum())} subject(s) without any predicted cavity in any frame have "
                        "no predicted EF and are left out of the EF metrics.")
    if defined.sum() == 0:
        nan = {"value": None, "ci_low": None, "ci_high": None}
        table = {k: nan for k in ("dice", "dice_ed", "dice_es", "hd95_mm", "ef_mae", "ef_bias", "ef_loa_low",
                                  "ef_loa_high", "ef_pearson_r", "edv_mae_ml", "esv_mae_ml", "es_frame_mae")}
        return SplitEvaluation(table, cases, subjects, warnings)
    kept = subjects[defined]
    table = ejection_fraction_metrics(
        {"dice": kept["dice_mean"], "dice_ed": kept["dice_ed"], "dice_es": kept["dice_es"],
         "hd95_mm": kept["hd95_mm_mean"], "ef_true": kept["ef_true"], "ef_pred": kept["ef_pred"],
         "edv_true": kept["edv_true_ml"], "edv_pred": kept["edv_pred_ml"], "esv_true": kept["esv_true_ml"],
         "esv_pred": kept["esv_pred_ml"], "es_frame_error": es_error[defined]},
        n_resamples=evaluation.n_resamples, confidence=evaluation.confidence, seed=seed)
    return SplitEvaluation(table, cases, subjects, warnings)


# ----------------------------------------------------------------------------------------------------- trust
#: Validation voxels sampled (about) to fit the temperature; half of them foreground when there is that much.
CALIBRATION_VOXELS = 200_000


@torch.no_grad()
def foreground_margins(model: torch.nn.Module, images: np.ndarray, *,
                       batch_size: int = PREDICT_BATCH) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, margin)`` chunk by chunk for normalised images ``(N, 1, *spatial)``: the logit margin
    ``logit_foreground − logit_background`` ``(b, *spatial)`` float32 (> 0 exactly where the argmax is class 1)."""
    model.eval()
    for start in range(0, len(images), batch_size):
        logits = model(torch.from_numpy(images[start:start + batch_size])).float()
        yield start, (logits[:, 1] - logits[:, 0]).numpy()


class ForegroundScore(torch.nn.Module):
    """The explained score of a segmentation network: its mean (recalibrated) foreground probability over the
    image, ``(N, 1)`` for inputs ``(N, 1, *spatial)`` — one number that rises with the predicted structure's size
    and confidence, so image attributions can be checked like a classifier's."""

    def __init__(self, network: torch.nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.network = network
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        probability = torch.sigmoid((logits[:, 1] - logits[:, 0]) / self.temperature)
        return probability.flatten(1).mean(dim=1, keepdim=True)


def _case_layout(data: SegmentationData, split: str) -> tuple[np.ndarray, np.ndarray]:
    """For a split's network inputs, the case of each input and the subject of each case (cine data: an input is a
    slice, a case one frame's stack of slices, a subject ``frames`` cases; lesion data: all three the same)."""
    part = data.splits[split]
    if data.kind == "cardiac-cine":
        n_subjects, n_frames, n_slices = part.masks.shape[:3]
        return (np.arange(n_subjects * n_frames * n_slices) // n_slices,
                np.arange(n_subjects * n_frames) // n_frames)
    n = len(part.images)
    return np.arange(n), np.arange(n)


def _recalibrate(model: torch.nn.Module, x_val: np.ndarray, y_val: np.ndarray, seed: int) -> tuple[dict, list]:
    """Temperature fitted on a stratified sample of validation voxels; also returns per input the margins of its
    truth foreground voxels (what conformal risk control needs)."""
    truth = y_val[:, 0].astype(bool)
    n_foreground = int(truth.sum())
    rate_fg, rate_bg = voxel_sampling_rates(n_foreground, truth.size - n_foreground, max_voxels=CALIBRATION_VOXELS)
    rng = np.random.default_rng(seed)
    z, y, w, foreground = [], [], [], []
    for start, margin in foreground_margins(model, x_val):
        t = truth[start:start + len(margin)]
        drawn = rng.random(margin.shape) < np.where(t, rate_fg, rate_bg)
        z.append(margin[drawn])
        y.append(t[drawn])
        # inverse inclusion probabilities: the weighted NLL estimates that of every validation voxel
        w.append(np.where(t[drawn], 1.0 / max(rate_fg, 1e-12), 1.0 / max(rate_bg, 1e-12)))
        foreground.extend(margin[i][t[i]] for i in range(len(margin)))
    y_all = np.concatenate(y)
    if y_all.size == 0 or y_all.min() == y_all.max():
        fit = {"temperature": 1.0, "nll_before": None, "nll_after": None, "n_voxels": int(y_all.size),
               "n_foreground": int(y_all.sum()), "reason": "the validation voxels hold a single class: no temperature "
                                                             "can be fitted (T = 1)"}
    else:
        fit = {**fit_temperature(np.concatenate(z), y_all, np.concatenate(w)),
               "reason": "temperature scaling of the two class logits (Guo et al. 2017), NLL minimised on a "
                         "stratified sample of validation voxels weighted by inverse inclusion probability"}
    fit.update(sampling={"max_voxels": CALIBRATION_VOXELS, "rate_foreground": rate_fg, "rate_background": rate_bg,
                         "seed": seed})
    return fit, foreground


@dataclass
class SegmentationTrust:
    """What the trust step of a segmentation run produces (see :func:`segmentation_trust`)."""

    recalibration: dict[str, Any]   # trust.json "recalibration" (report)
    recalibration_state: dict[str, Any]  # model/recalibration.json
    conformal: dict[str, Any]       # trust.json "conformal" (report, with metrics)
    conformal_state: dict[str, Any]  # model/conformal.json
    selective_risk: dict[str, Any]
    metrics: dict[str, Any]         # keys added to metrics.json's test split
    warnings: list[str]


def segmentation_trust(model: torch.nn.Module, data: SegmentationData, x: dict[str, np.ndarray],
                       y: dict[str, np.ndarray], pred_test: np.ndarray, config: RunConfig,
                       seed: int) -> SegmentationTrust:
    """Voxel recalibration and conformal risk control fitted on validation, measured on test.

    1. Temperature of the logits on validation voxels (:func:`_recalibrate`); voxel ECE before/after on test with
       CIs over cases (cine data: subjects).
    2. λ̂ of conformal risk control (:func:`medai.evaluation.segmentation_trust.crc_threshold`) on the validation
       cases' recalibrated truth-voxel probabilities. Exchangeable unit: the case; for cine data the subject when
       there are enough validation subjects for the bound (frames of one heart are not exchangeable), else the
       frame with a warning.
    3. Test: per case the conformal mask ``{p ≥ λ̂}``, its FNR, the uncertain band and the referral
       (:func:`medai.evaluation.segmentation_trust.referral_report`).
    """
    evaluation = config.evaluation
    warnings: list[str] = []
    fit, val_foreground = _recalibrate(model, x["val"], y["val"], seed)
    temperature = fit["temperature"]

    # ---- conformal risk control on validation
    val_case, val_subject = _case_layout(data, "val")
    n_val_cases = int(val_subject.shape[0])
    per_case: list[list[np.ndarray]] = [[] for _ in range(n_val_cases)]
    for i, margins in enumerate(val_foreground):
        per_case[val_case[i]].append(margins)
    probabilities = [foreground_probability(np.concatenate(m), temperature) for m in per_case]
    min_units = math.ceil(1.0 / CONFORMAL_ALPHA) - 1
    by_subject = data.kind == "cardiac-cine" and data.n_subjects("val") >= min_units
    if data.kind == "cardiac-cine" and not by_subject:
        warnings.append(f"conformal risk control: {data.n_subjects('val')} validation subject(s) are too few to use "
                        f"the subject as the exchangeable unit (at least {min_units} for alpha = {CONFORMAL_ALPHA}); "
                        "cine frames are used instead, and the frames of one heart are correlated, so the "
                        "finite-sample guarantee is approximate.")
    crc = crc_threshold(probabilities, CONFORMAL_ALPHA, groups=val_subject if by_subject else None)
    unit = "subject" if by_subject else ("cine frame" if data.kind == "cardiac-cine" else "case")
    if not crc["feasible"]:
        warnings.append(f"conformal risk control: {crc['reason']}.")
    lam = crc["lambda"]

    # ---- test: per-case counts and calibration statistics, chunk by chunk
    test_case, test_subject = _case_layout(data, "test")
    n_cases = int(test_subject.shape[0])
    # columns: truth, argmax, conformal, band, truth ∩ argmax, truth missed by conformal, truth missed by argmax
    counts = np.zeros((n_cases, 7))
    hist_before = np.zeros((n_cases, N_ECE_BINS, 3))
    hist_after = np.zeros((n_cases, N_ECE_BINS, 3))
    truth_all = y["test"][:, 0].astype(bool)
    for start, margin in foreground_margins(model, x["test"]):
        before, after = foreground_probability(margin, 1.0), foreground_probability(margin, temperature)
        for i in range(len(margin)):
            c = test_case[start + i]
            truth, argmax = truth_all[start + i], pred_test[start + i, 0].astype(bool)
            conformal = after[i] >= lam
            counts[c] += (truth.sum(), argmax.sum(), conformal.sum(), (conformal & ~argmax).sum(),
                          (truth & argmax).sum(), (truth & ~conformal).sum(), (truth & ~argmax).sum())
            hist_before[c] += calibration_histogram(before[i], truth)
            hist_after[c] += calibration_histogram(after[i], truth)
    groups = test_subject if data.kind == "cardiac-cine" else None  # CIs resample subjects
    boot = {"n_resamples": evaluation.n_resamples, "confidence": evaluation.confidence, "seed": seed}
    ece = voxel_ece_report(hist_before, hist_after, groups=groups, **boot)
    with np.errstate(divide="ignore", invalid="ignore"):
        fnr_conformal = np.where(counts[:, 0] > 0, counts[:, 5] / counts[:, 0], 0.0)
        fnr_argmax = np.where(counts[:, 0] > 0, counts[:, 6] / counts[:, 0], 0.0)
    voxel_ml = float(np.prod(data.spacing_mm)) / 1000.0
    referral = referral_report(fnr_conformal=fnr_conformal, fnr_argmax=fnr_argmax, truth_voxels=counts[:, 0],
                               predicted_voxels=counts[:, 1], conformal_voxels=counts[:, 2],
                               band_voxels=counts[:, 3], intersection_voxels=counts[:, 4], voxel_volume_ml=voxel_ml,
                               alpha=CONFORMAL_ALPHA, groups=groups, **boot)

    resampling = "subject" if groups is not None else "case"
    recalibration_state = {"type": "segmentation_temperature", "method": "temperature", "temperature": temperature,
                           "applies_to": "logit margin (foreground - background); p = sigmoid(margin / T)",
                           "fitted_on": "validation voxels", "n_voxels": fit["n_voxels"],
                           "n_foreground_voxels": fit["n_foreground"], "sampling": fit["sampling"]}
    recalibration = {"kind": TaskKind.SEGMENTATION.value, "applicable": True, "method": "temperature",
                     "reason": fit["reason"], "temperature": temperature, "fitted_on": "validation voxels",
                     "nll_val_before": fit["nll_before"], "nll_val_after": fit["nll_after"],
                     "n_calibration": fit["n_voxels"], "n_test_voxels": int(truth_all.size), "n_bins": N_ECE_BINS,
                     "resampling_unit": resampling, "metrics": ece}
    conformal_state = {
        "type": "segmentation_crc", "method": "conformal risk control (Angelopoulos et al. 2022)",
        "loss": "per-case false-negative rate (truth voxels outside the mask / truth voxels; 0 for an empty truth)",
        "score": "recalibrated foreground probability", "mask": "p >= lambda", "lambda": lam,
        "alpha": CONFORMAL_ALPHA, "target": 1.0 - CONFORMAL_ALPHA, "n_calibration": crc["n"], "unit": unit,
        "feasible": crc["feasible"], "temperature": temperature,
        "referral": {"max_band_ratio": MAX_BAND_RATIO, "rule": referral["referral_rule"]},
    }
    conformal = {"kind": TaskKind.SEGMENTATION.value, "method": conformal_state["method"], "alpha": CONFORMAL_ALPHA,
                 "lambda": lam, "calibration": crc, "unit": unit, "resampling_unit": resampling,
                 "metrics": referral["metrics"], "n_test": referral["n_cases"], "n_referred": referral["n_referred"],
                 "referral_reasons": referral["referral_reasons"], "referral_rule": referral["referral_rule"],
                 "per_case": referral["per_case"]}
    metrics = {k: referral["metrics"][k] for k in ("conformal_target", "conformal_coverage", "abstain_rate")}
    metrics.update({k: ece[k] for k in ("ece_before_recalibration", "ece")})
    return SegmentationTrust(recalibration, recalibration_state, conformal, conformal_state,
                             referral["selective_risk"], metrics, warnings)


def _audit_groups(data: SegmentationData, requested: tuple[str, ...]) -> dict[str, pd.Series]:
    """The test split's grouping variables (defaults: sex, age band, race/ethnicity; plus ``requested``).

    Raises:
        DataValidationError: a requested attribute is not in the data (the message says which key to add).
    """
    frame = data.attribute_frame("test")
    lowered = {str(c).lower() for c in frame.columns}
    missing = [name for name in requested if name not in frame.columns and name.lower() not in lowered]
    if missing:
        where = ("generated phantom datasets carry no per-case attributes" if data.source.startswith("builtin:")
                 else f"add an array 'test_attr_{missing[0]}' (one value per test image) to {data.source}")
        have = ", ".join(map(str, frame.columns)) or "none"
        raise DataValidationError(
            f"evaluation.subgroups / --group names {', '.join(repr(m) for m in missing)} but the segmentation data "
            f"has no such per-case attribute (attributes of the test split: {have}); {where}, or remove the name.")
    return group_attributes(frame, requested) if len(frame.columns) else {}


def segmentation_fairness(data: SegmentationData, evaluation: SplitEvaluation, config: RunConfig,
                          seed: int) -> dict[str, Any]:
    """``fairness.json``: per-case (cine data: per-subject) Dice and HD95 by group on the test split."""
    groups = _audit_groups(data, tuple(config.evaluation.subgroups or ()))
    if data.kind == "cardiac-cine":
        dice, hd95, unit = evaluation.subjects["dice_mean"], evaluation.subjects["hd95_mm_mean"], "subject"
    else:
        dice, hd95, unit = evaluation.cases["dice"], evaluation.cases["hd95_mm"], "case"
    note = None if groups else (
        "No per-case attributes were available: the data has no sex, age or race/ethnicity attribute and none was "
        "named; the audit holds the overall row only. For an .npz add arrays test_attr_<name> (one value per test "
        "image) and name other attributes with evaluation.subgroups / --group.")
    evaluation_config = config.evaluation
    return segmentation_fairness_audit(groups, dice.to_numpy(), hd95.to_numpy(),
                                       min_n=evaluation_config.min_subgroup_n,
                                       n_resamples=evaluation_config.n_resamples,
                                       confidence=evaluation_config.confidence, seed=seed, unit=unit, note=note)


def check_segmentation_explanations(model: torch.nn.Module, x_test: np.ndarray, y_test: np.ndarray,
                                    pred_test: np.ndarray, temperature: float, seed: int,
                                    n_explained: int) -> dict[str, Any]:
    """``explanations.json``: integrated-gradients maps of the mean foreground probability
    (:class:`ForegroundScore`) for a few test inputs holding a structure (truth or prediction), checked with
    deletion/insertion curves against random voxel orderings (RISE; blurred image as the baseline) and the cascading
    parameter-randomisation test (Adebayo et al. 2018), under the ``summary`` keys every modality writes."""
    from medai.explain.faithfulness import faithfulness_report, gradient_attribution, randomisation_test, \
        torch_model_fn

    summary: dict[str, Any] = {"n_important": None, "faithful_better_than_random": None,
                               "randomisation_test_passed": None}
    result: dict[str, Any] = {"method": "integrated_gradients",
                              "score": "mean recalibrated foreground probability over the image",
                              "map": "signed integrated-gradients attribution per voxel (zero baseline, 8 steps)",
                              "n_explained": 0, "summary": summary}
    if n_explained == 0 or len(x_test) == 0:
        return result
    flat = (y_test.reshape(len(y_test), -1).any(axis=1) | pred_test.reshape(len(pred_test), -1).any(axis=1))
    candidates = np.flatnonzero(flat) if flat.any() else np.arange(len(x_test))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(candidates, size=min(n_explained, len(candidates)), replace=False))
    inputs = x_test[pick]
    score = ForegroundScore(model, temperature).eval()

    def attribute(net: torch.nn.Module, batch, target) -> np.ndarray:  # (N, 1, *spatial) → (N, *spatial)
        return gradient_attribution(net, batch, target, method="integrated_gradients", n_steps=8)[:, 0]

    # 8 steps x 4 random orderings: 360 forward passes for 4 images; ~1-2 s on one thread for 64 x 64 inputs.
    faithfulness = faithfulness_report(torch_model_fn(score), inputs, attribute(score, inputs, None), None,
                                       baseline="blur", steps=8, n_random=4, seed=seed)
    randomisation = randomisation_test(score, attribute, inputs, None, seed=seed, max_steps=4)
    model.eval()
    summary.update(faithful_better_than_random=faithfulness["better_than_random"],
                   randomisation_test_passed=randomisation["passed"])
    result.update(n_explained=int(len(pick)), explained_inputs=[int(i) for i in pick], faithfulness=faithfulness,
                  randomisation=randomisation)
    return result


# ----------------------------------------------------------------------------------------------------- train
def train_segmentation(
    config: RunConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    announce: Progress = lambda s: None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
):
    """Run a whole segmentation training job into ``out``; returns a :class:`medai.pipeline.RunResult`.

    Raises:
        InvalidParameterError: the model is not a segmentation network, or an unknown baseline is named.
        UnknownNameError / DataValidationError: see :func:`load_segmentation_data`.
        RunStateError: ``out`` exists, or an interrupted run is there without ``resume``.
    """
    from monai.losses import DiceCELoss

    from medai.pipeline import RunResult, _check_resume_config, steps

    out = Path(out)
    check_run_directory(out, resume=resume)
    config = config.replace(training=config.training.resolved("image"))
    seed = config.training.seed
    torch.use_deterministic_algorithms(True, warn_only=True)
    if config.model.name not in SEGMENTATION_MODELS:
        raise InvalidParameterError(
            f"Model '{config.model.name}' does not output a segmentation; for task kind 'segmentation' use one of "
            f"{', '.join(SEGMENTATION_MODELS)} (model: {{name: unet}})."
        )
    baseline_names = tuple(config.baselines) if config.baselines is not None else tuple(BASELINES)
    for name in baseline_names:
        if name not in BASELINES:
            raise unknown_name("segmentation baseline", name, BASELINES)

    preprocessing = config.preprocessing
    if preprocessing.image_size is not None or preprocessing.channels is not None or preprocessing.window:
        raise InvalidParameterError(
            "The segmentation workflow uses images at their own size and intensity (each image is z-scored); remove "
            "preprocessing.image_size / channels / window from the recipe."
        )
    notes = []
    if config.training.augmentation not in ("auto", "none"):
        notes.append(f"training.augmentation '{config.training.augmentation}' is not applied by the segmentation "
                     "workflow (no augmentation).")
    if config.training.precision == "bf16":
        notes.append("training.precision 'bf16' is not applied by the segmentation workflow (fp32).")

    data = load_segmentation_data(config.data, announce=announce)
    _audit_groups(data, tuple(config.evaluation.subgroups or ()))  # a named attribute that is absent fails now
    params = {**_default_params(config.model.name), **config.model.params}  # resolved: saved with the artefact
    params.setdefault("spatial_dims", data.spatial_dims)
    if params["spatial_dims"] != data.spatial_dims:
        raise InvalidParameterError(
            f"model.spatial_dims is {params['spatial_dims']} but the data's network input is {data.spatial_dims}-D; "
            "remove spatial_dims from the recipe (it is taken from the data) or use matching data."
        )
    config = config.replace(model=dataclasses.replace(config.model, params=params))
    raw = {s: data.inputs(s) for s in SPLITS}
    x = {s: normalise(raw[s][0]) for s in SPLITS}
    y = {s: raw[s][1] for s in SPLITS}
    announce("Task: segmentation of '" + data.label + "' (class 1; 0 = background); network inputs "
             + ", ".join(f"{s} {len(x[s])}" for s in SPLITS) + f" of {'x'.join(map(str, x['train'].shape[2:]))}")
    work = open_run_directory(out, resume=resume)  # only now: invalid input leaves nothing behind
    _check_resume_config(work, config, resume)

    torch.manual_seed(seed)
    model = build_model(config.model.name, 1, 2, config.model.params)
    n_weights = sum(p.numel() for p in model.parameters())
    announce(f"Model: {_describe_model(config)} ({n_weights:,} weights), seed {seed}")
    # Dice over the whole batch (batch=True): stable on images whose truth is empty (lesion-free, apical slices).
    loss = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    batch_size = config.training.batch_size or 16
    trainer = Trainer(
        model, loss, max_epochs=config.training.max_epochs, batch_size=batch_size,
        learning_rate=config.training.learning_rate, weight_decay=config.training.weight_decay,
        patience=config.training.patience, seed=seed, checkpoint_dir=work / "checkpoints",
        checkpoint_every=config.training.checkpoint_every, progress=progress, on_epoch_end=on_epoch_end,
    )
    tensors = {s: (torch.from_numpy(x[s]), torch.from_numpy(y[s].astype(np.float32))) for s in ("train", "val")}
    can_resume = resume and (work / "checkpoints" / CHECKPOINT_NAME).is_file()
    if resume and not can_resume:
        announce("No checkpoint in the interrupted run: training starts from epoch 0.")
    result = trainer.fit(tensors["train"], tensors["val"], resume=can_resume)
    if result.resumed_from_epoch is not None:
        announce(f"Resumed from epoch {result.resumed_from_epoch}.")
    announce(f"Training: {result.epochs_run} epochs, best epoch {result.best_epoch} (validation loss "
             f"{result.best_val_loss:.4f}){', stopped early' if result.stopped_early else ''}")
    model = trainer.model.to("cpu").float()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    # ---- evaluation
    announce(f"Evaluating with {config.evaluation.n_resamples} bootstrap resamples ...")
    n_explained = config.evaluation.explained_images
    with steps(3 + len(baseline_names) + bool(n_explained), enabled=progress) as step:
        pred, evaluations = {}, {}
        for s in ("val", "test"):
            step(f"{s} metrics")
            pred[s] = predict_masks(model, x[s])
            evaluations[s] = evaluate_split(data, s, pred[s], config, seed)
        baseline_pred, baseline_eval, thresholds = {}, {}, {}
        for name in baseline_names:
            step(f"baseline {name}")
            threshold = None
            if name == "tuned_threshold":
                threshold = tune_threshold(x["train"], y["train"], data.kind, seed=seed)
                thresholds[name] = threshold
            baseline_pred[name] = segment_classical(x["test"], data.kind, threshold)
            baseline_eval[name] = evaluate_split(data, "test", baseline_pred[name], config, seed)
            announce(f"Baseline {name}: test Dice {_fmt(baseline_eval[name].metrics.get('dice'))}")
        step("recalibration, conformal masks, referral, fairness audit")
        trust = segmentation_trust(model, data, x, y, pred["test"], config, seed)
        fairness = segmentation_fairness(data, evaluations["test"], config, seed)
        explanations = None
        if n_explained:
            step("explanations")
            explanations = check_segmentation_explanations(model, x["test"], y["test"], pred["test"],
                                                           trust.recalibration["temperature"], seed, n_explained)
    announce(f"Trust: temperature {trust.recalibration['temperature']:.3f}, conformal threshold "
             f"{trust.conformal['lambda']:.4f}, test coverage {_fmt(trust.metrics['conformal_coverage'])} "
             f"(target {1 - CONFORMAL_ALPHA:.2f}), referred {_fmt(trust.metrics['abstain_rate'])}")
    metrics = {s: evaluations[s].metrics for s in ("val", "test")}
    metrics["test"].update(trust.metrics)
    baselines = {name: {"test": baseline_eval[name].metrics} for name in baseline_names}
    warnings = notes + [w for s in ("val", "test") for w in evaluations[s].warnings] + trust.warnings
    warnings += [f"baseline {n}: {w}" for n in baseline_names for w in baseline_eval[n].warnings]

    # ---- files
    cases = pd.concat([evaluations[s].cases for s in ("val", "test")], ignore_index=True)
    for name in baseline_names:
        column = baseline_eval[name].cases["dice"].to_numpy()
        cases[f"dice_{name}"] = np.r_[np.full(len(evaluations["val"].cases), np.nan), column]
    write_text(work / "predictions.csv", cases.to_csv(index=False))
    if data.kind == "cardiac-cine":
        subjects = pd.concat([evaluations[s].subjects for s in ("val", "test")], ignore_index=True)
        for name in baseline_names:
            column = baseline_eval[name].subjects["ef_pred"].to_numpy()
            subjects[f"ef_pred_{name}"] = np.r_[np.full(len(evaluations["val"].subjects), np.nan), column]
        write_text(work / "ejection_fraction.csv", subjects.to_csv(index=False))
    write_json(work / "metrics.json", metrics)
    write_json(work / "baselines.json", baselines)
    example = _write_example(work / "segmentation_example", data, x, raw, pred, baseline_pred, evaluations,
                             config.model.name)

    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = {
        "name": config.name,
        "created": created,
        "medai_version": medai.__version__,
        "seed": seed,
        "task": {"kind": TaskKind.SEGMENTATION.value, "label": data.label, "class_names": ["background", data.label],
                 "data_kind": data.kind, "spatial_dims": data.spatial_dims, "spacing_mm": list(data.spacing_mm),
                 "case": "one image" if data.kind == "lesion" else "one cine frame (stack of short-axis slices)"},
        "data": {"source": data.source, "sha256": data.sha256, "n_rows": sum(data.n_subjects(s) for s in SPLITS),
                 "modality": "image", **data.provenance},
        "split": {"strategy": "fixed split by subject (generated data: disjoint seeds per split)"
                  if data.source.startswith("builtin:") else "predefined in the .npz file (train_/val_/test_ keys)",
                  "seed": None, "n": {s: data.n_subjects(s) for s in SPLITS},
                  "n_images": {s: int(len(x[s])) for s in SPLITS}},
        "model": {"name": config.model.name, "description": _describe_model(config), "params": config.model.params,
                  "n_weights": int(n_weights)},
        "training": {"batch_size": batch_size, "loss": "Dice + cross-entropy (MONAI DiceCELoss, batch Dice)",
                     "augmentation": "none", "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                     "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
                     "resumed_from_epoch": result.resumed_from_epoch, "history": result.history},
        "operating_point": None,
        "metric_definitions": _definitions(data),
        "baselines": {name: BASELINES[name] for name in baseline_names},
        "baseline_descriptions": {name: BASELINE_DESCRIPTIONS[name] for name in baseline_names},
        "baseline_thresholds": thresholds,
        "segmentation_example": example,
        "warnings": warnings,
    }
    preprocessing = ("Each image (each short-axis slice for cine data) is normalised to zero mean and unit SD "
                     "over its pixels; no resampling. Classes: 0 background, 1 " + data.label + " (argmax).")
    card = build_model_card(run, metrics, baselines, {}, preprocessing, dataclasses.asdict(config.model_card))
    card["metrics"]["definitions"] = run["metric_definitions"]
    task_meta = {**run["task"], "in_features": 1, "out_features": 2, "input_size_multiple": model.size_multiple,
                 "id_column": None, "time": None, "event": None}
    digest = save_artifact(work / "model", state_dict=state, config=config, task=task_meta,
                           preprocessor={"intensity": "z-score per image", "spacing_mm": list(data.spacing_mm)},
                           thresholds={"method": "argmax over classes", "chosen_on": None},
                           model_card_md=render_model_card(card), model_card=card,
                           recalibration=trust.recalibration_state, conformal=trust.conformal_state)
    _check_artifact_reproduces(work / "model", config, x["test"][:8], pred["test"][:8])
    run["artifact_sha256"] = digest
    write_json(work / "run.json", run)
    # trust files as for every run (docs/trust.md): subgroup audit, lineage, recalibration and conformal reports,
    # checked explanations, then the TRIPOD+AI checklist decided from them
    write_json(work / "fairness.json", fairness)
    if explanations is not None:
        write_json(work / "explanations.json", explanations)
    write_json(work / "lineage.json", build_lineage(
        data_files=None, data_sha256=data.sha256, config=config.to_dict(),
        split_ids={s: [str(i) for i in data.splits[s].ids] for s in SPLITS},
        seeds={"training": seed, "bootstrap": seed}))
    write_json(work / "trust.json", {"recalibration": trust.recalibration, "conformal": trust.conformal,
                                     "selective_risk": trust.selective_risk})
    write_tripod(work)
    write_report(work)
    final = finish_run_directory(work, out)
    return RunResult(out=final, kind=TaskKind.SEGMENTATION, metrics=metrics, baselines=baselines, run=run)


# ------------------------------------------------------------------------------------------------- helpers
def _default_params(name: str) -> dict[str, Any]:
    """The builder's keyword defaults (lists for tuples), so that the saved configuration is complete."""
    signature = inspect.signature(MODELS.get(name))
    return {k: list(p.default) if isinstance(p.default, tuple) else p.default
            for k, p in signature.parameters.items()
            if k not in ("in_features", "out_features", "spatial_dims") and p.default is not inspect.Parameter.empty}


def _describe_model(config: RunConfig) -> str:
    p = config.model.params
    return (f"U-Net (MONAI) {p.get('spatial_dims')}-D, channels {list(p.get('channels'))}, "
            f"{p.get('num_res_units')} residual unit(s) per block; Dice + cross-entropy loss")


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    low, high = entry.get("ci_low"), entry.get("ci_high")
    ci = f" ({low:.3f}–{high:.3f})" if low is not None and high is not None else ""
    return f"{entry['value']:.3f}{ci}"


def _definitions(data: SegmentationData) -> str:
    common = ("95 % percentile bootstrap CIs. Dice = 2|T∩P|/(|T|+|P|); HD95 = the larger of the two directed 95th "
              "percentiles of the distances between the borders of truth and prediction, in mm (MONAI); the image "
              "diagonal when exactly one of them is empty.")
    if data.kind == "cardiac-cine":
        return (common + " A case is one cine frame (all slices, 3-D Dice/HD95 with the slice spacing); dice and "
                "hd95_mm average all frames of a subject, dice_ed / dice_es the truth end-diastolic / end-systolic "
                "frames. Volumes = voxel count x voxel volume; ED / ES = frames of largest / smallest volume (truth "
                "from the truth masks, prediction from the predicted masks); EF = (EDV − ESV) / EDV x 100. "
                "ef_mae = mean |EF_pred − EF_true| in EF points, ef_bias = mean (EF_pred − EF_true), ef_loa_* = "
                "Bland–Altman limits of agreement (bias ∓ 1.96 SD). Resampling unit: the subject.")
    return (common + " Dice and HD95 average the cases that hold a lesion; lesion_sensitivity = detected truth "
            "lesions (any overlap) / all truth lesions; false_positives_per_case = predicted components touching no "
            "lesion, per case; case_specificity = lesion-free cases with an empty prediction. Resampling unit: the "
            "case, stratified by whether it holds a lesion.")


def _check_artifact_reproduces(model_dir: Path, config: RunConfig, x: np.ndarray, expected: np.ndarray) -> None:
    """Rebuild the network from the saved artefact and check it reproduces the evaluated test masks."""
    from safetensors.torch import load_file

    from medai.registry.artifact import WEIGHTS, verify_manifest

    verify_manifest(model_dir)
    model = build_model(config.model.name, 1, 2, config.model.params)
    model.load_state_dict(load_file(str(model_dir / WEIGHTS)))
    if not np.array_equal(predict_masks(model, x), expected):
        raise RunStateError(f"The saved artefact in {model_dir} does not reproduce the evaluated test masks.")


def _example_views(data: SegmentationData, raw, pred, baseline_pred, evaluations) -> dict[str, Any]:
    """2-D views of a few test cases for the report: best, median and worst Dice (+ a lesion-free case)."""
    cases = evaluations["test"].cases
    # The report draws the strongest classical method when it ran (the tuned threshold), else the first one.
    shown = "tuned_threshold" if "tuned_threshold" in baseline_pred else next(iter(baseline_pred), None)
    baseline = baseline_pred[shown] if shown is not None else None
    images, truths, preds, bases, titles = [], [], [], [], []

    def add(index: int, title: str, slice_index: int | None = None) -> None:
        image, truth, mask = raw["test"][0][index, 0], raw["test"][1][index, 0], pred["test"][index, 0]
        other = baseline[index, 0] if baseline is not None else np.zeros_like(mask)
        if image.ndim == 3:  # a volume: the slice with the most truth (or the middle one)
            k = slice_index if slice_index is not None else (
                int(truth.reshape(len(truth), -1).sum(1).argmax()) if truth.any() else len(truth) // 2)
            image, truth, mask, other = image[k], truth[k], mask[k], other[k]
        images.append(image), truths.append(truth), preds.append(mask), bases.append(other), titles.append(title)

    if data.kind == "cardiac-cine":
        part = data.splits["test"]
        subjects = evaluations["test"].subjects
        n_frames, n_slices = part.masks.shape[1:3]
        order = np.argsort(np.abs(subjects["ef_error"].fillna(np.inf).to_numpy()))
        for rank in dict.fromkeys([order[0], order[len(order) // 2], order[-1]]):
            for phase, frame in (("ED", part.ed_frame[rank]), ("ES", part.es_frame[rank])):
                index = (rank * n_frames + frame) * n_slices + n_slices // 2  # mid-ventricular slice
                error = subjects["ef_error"].iloc[rank]
                add(index, f"{part.ids[rank]} {phase} (frame {frame}), EF error {error:+.1f} points"
                    if np.isfinite(error) else f"{part.ids[rank]} {phase} (frame {frame}), no predicted EF")
    else:
        dice = cases["dice"].to_numpy()
        lesion = np.flatnonzero(np.isfinite(dice))
        if len(lesion):
            order = lesion[np.argsort(dice[lesion])[::-1]]
            for index, what in ((order[0], "best"), (order[len(order) // 2], "median"), (order[-1], "worst")):
                add(int(index), f"{cases['id'].iloc[index]}: {what} Dice {dice[index]:.3f}")
        empty = np.flatnonzero(cases["n_lesions"].to_numpy() == 0)
        if len(empty):
            add(int(empty[0]), f"{cases['id'].iloc[empty[0]]}: no lesion, "
                f"{int(cases['n_false_positives'].iloc[empty[0]])} false positive(s)")
    return {"image": np.stack(images).astype(np.float32), "truth": np.stack(truths).astype(np.uint8),
            "pred": np.stack(preds).astype(np.uint8), "baseline": np.stack(bases).astype(np.uint8),
            "title": np.array(titles), "baseline_name": np.array(shown or "")}


def _write_example(folder: Path, data: SegmentationData, x, raw, pred, baseline_pred, evaluations,
                   model_name: str) -> dict[str, Any]:
    """One test case as an MR DICOM series + its predicted DICOM SEG (read back and checked), and the report's
    example views."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "examples.npz", **_example_views(data, raw, pred, baseline_pred, evaluations))
    part = data.splits["test"]
    segment: SegmentCoding = LESION
    if data.kind == "cardiac-cine":
        subject, frame = 0, int(part.ed_frame[0])
        image = part.images[subject, frame]  # (slices, rows, cols)
        mask = pred["test"].reshape(part.masks.shape)[subject, frame]
        case_id = f"{part.ids[subject]}/frame-{frame:02d} (end-diastole)"
        segment = LV_BLOOD_POOL
    else:
        dice = evaluations["test"].cases["dice"].to_numpy()
        lesion = np.flatnonzero(np.isfinite(dice))
        index = int(lesion[np.argsort(dice[lesion])[len(lesion) // 2]]) if len(lesion) else 0
        image, mask = part.images[index, 0], pred["test"][index, 0]
        case_id = part.ids[index]
        segment = dataclasses.replace(LESION, label=data.label) if data.label != "lesion" else LESION
    seg_path = write_dicom_seg(mask, folder / "seg.dcm", image=image, image_folder=folder / "image",
                               spacing_mm=data.spacing_mm, segment=segment, model_name=model_name,
                               patient_id="PHANTOM" if data.source.startswith("builtin:") else "ANONYMOUS")
    files = sorted((folder / "image").glob("*.dcm"))
    if not np.array_equal(read_dicom_seg(seg_path, files), mask.reshape(-1, *mask.shape[-2:])):
        raise RunStateError(f"{seg_path}: the DICOM SEG does not read back as the predicted mask.")
    return {"case": case_id, "image_series": "segmentation_example/image", "n_slices": len(files),
            "seg": "segmentation_example/seg.dcm", "segment_label": segment.label,
            "predicted_voxels": int(mask.sum()), "spacing_mm": list(data.spacing_mm)}
