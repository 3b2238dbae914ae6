"""Segmentation in the service: images (uploads or PACS instances) → masks, measurements, referral, an overlay.

One path for ``POST /models/{id}/predict`` (PNG, JPEG, DICOM, NIfTI uploads) and the PACS analysis (each DICOM
instance a record), through :class:`medai.registry.segmentation_predictor.SegmentationPredictor` — the run's
normalisation, network, temperature, conformal threshold and referral rule.

How an input meets the network:

- 2-D models segment a 2-D image as it is and a volume (NIfTI, multi-frame DICOM) slice by slice along its last
  axis (the cine models were trained on slices); 3-D models take a volume and refuse a single 2-D image.
- Colour images are reduced to their mean over channels (the networks read one channel).
- Each spatial size is padded (edge values) up to the network's multiple and the mask cropped back, so any image
  size is accepted and the mask has the input's shape.
- Measurements use the file's own voxel size (DICOM PixelSpacing, NIfTI zooms); a file without one (PNG, JPEG)
  is measured with the training data's voxel size and the prediction says so in ``warnings``. A 2-D image gets
  ``area_mm2``; a volume ``volume_ml``.
- Referral (the run's conformal rule) is decided per uploaded image or volume from its total predicted and
  uncertain-band voxels: ``refer`` when the band is larger than ``max_band_ratio`` × the mask, or when the
  conformal mask finds voxels where the model found none (a possibly missed structure).

The prediction dict (the :mod:`medai.serve` contract, segmentation form): ``id``, ``decision`` (the segment's
label when anything was segmented, else ``"none"``), ``segment``, ``measurements``, ``n_components``
(connected components of the mask), ``refer``, ``refer_reason``, ``band_ratio``, ``spacing_mm`` and
``spacing_source``, ``explanation`` (``mask_overlay``: the image with the mask in red and the conformal mask in
yellow), ``mask_png_base64`` (2-D inputs: the mask itself, 0/255), ``warnings`` and ``model``. The mask array
itself rides along under :data:`MASK_KEY` for the PACS (DICOM SEG); :func:`public` takes it off before a response.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from medai.core.errors import DataValidationError
from medai.evaluation.segmentation_trust import refer_cases
from medai.serve.predict import UnsupportedInputError

__all__ = ["MASK_KEY", "public", "segment_records", "segment_coding"]

#: The key under which a prediction carries its mask array (never sent to a client).
MASK_KEY = "_mask"
REFER_REASONS = {
    "uncertain_band_exceeds_prediction": "the conformal mask's uncertain band is larger than the segmented "
                                         "structure: the outline is uncertain, refer to a clinician",
    "possible_missed_structure": "the conformal mask finds a possible structure where the model segmented none: "
                                 "refer to a clinician",
}


def segment_coding(model):
    """The DICOM segment description of the model's structure (cardiac models: LV blood pool; else lesion)."""
    import dataclasses

    from medai.io.dicom_seg import LESION, LV_BLOOD_POOL

    task = model.predictor.task
    coding = LV_BLOOD_POOL if str(task.get("data_kind", "")).startswith("cardiac") else LESION
    label = str(task.get("label") or coding.label)
    return dataclasses.replace(coding, label=label)


def public(prediction: dict[str, Any]) -> dict[str, Any]:
    """The prediction without its mask array (what a client receives)."""
    return {k: v for k, v in prediction.items() if k != MASK_KEY}


def _layout(record, trained: tuple[float, ...]) -> tuple[np.ndarray, tuple[float, ...], str]:
    """A record's pixels as float32 ``(rows, cols)`` or a volume with its slices on the last axis, its voxel size
    in the same axis order, and where that came from.

    NIfTI data is ``(C, X, Y, Z)`` (slices last already); DICOM multi-frame data is ``(C, F, H, W)`` and spacing
    ``(between slices, row, col)``, both moved to slices last. A single-slice volume is a 2-D image.
    """
    data = np.asarray(record.data, dtype=np.float32)
    if data.ndim not in (3, 4):
        raise DataValidationError(f"Upload {record.id}: expected an image (channels, rows, cols) or a volume; got "
                                  f"{data.ndim} axes.")
    image = data.mean(axis=0) if data.shape[0] > 1 else data[0]  # colour → grey: the networks read one channel
    spacing = record.meta.get("spacing_mm")
    spacing = tuple(float(s) for s in spacing) if spacing is not None and None not in tuple(spacing) else None
    slices_first = bool(record.meta.get("frames")) or "slice_normal" in record.meta  # DICOM multi-frame / series
    if image.ndim == 3 and slices_first:
        image = np.moveaxis(image, 0, -1)
        spacing = (*spacing[1:], spacing[0]) if spacing is not None and len(spacing) == 3 else None
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    dims = image.ndim
    if spacing is not None and len(spacing) >= dims and all(s > 0 for s in spacing):
        return image, spacing[:dims], str(record.meta.get("spacing_source") or "file header")
    fallback = tuple(trained[-dims:]) if len(trained) >= dims else (float(trained[-1]),) * dims
    return image, fallback, "training data (the file has no voxel size)"


def _pad(array: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[slice, ...]]:
    pads = [(0, (-n) % multiple) for n in array.shape]
    crop = tuple(slice(0, n) for n in array.shape)
    return (np.pad(array, pads, mode="edge") if any(after for _, after in pads) else array), crop


def segment_records(model, records: Sequence, *, explain: bool = True) -> list[dict[str, Any]]:
    """Segment each record (an image or a volume); one prediction dict per record, mask under :data:`MASK_KEY`.

    Raises:
        UnsupportedInputError: a 2-D image for a 3-D model.
        DataValidationError: a record without image data.
    """
    predictor = model.predictor
    coding = segment_coding(model)
    laid_out = [_layout(record, predictor.spacing_mm) for record in records]
    if predictor.spatial_dims == 3 and laid_out and all(image.ndim == 2 for image, _, _ in laid_out):
        return _segment_series(model, records, laid_out, coding, explain)
    predictions = []
    for record, (image, spacing, source) in zip(records, laid_out):
        if predictor.spatial_dims == 3 and image.ndim != 3:
            raise UnsupportedInputError(f"Model '{model.id}' segments 3-D volumes; upload a volume (NIfTI or a "
                                        "multi-frame DICOM), not a single 2-D image.")
        mask, conformal = _segment(model, image)
        predictions.append(_prediction(model, record, image, mask, conformal, coding, spacing, source, explain))
    return predictions


def _segment(model, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's mask and conformal mask (None without conformal state) of one image or volume (slices last):
    a 2-D model segments a volume slice by slice."""
    predictor = model.predictor
    by_slice = image.ndim == 3 and predictor.spatial_dims == 2
    slices = np.moveaxis(image, -1, 0) if by_slice else image[None]
    padded = [_pad(s, predictor.size_multiple) for s in slices]
    with model.lock:
        outputs = predictor.predict(np.stack([p for p, _ in padded])[:, None])
    crop = padded[0][1]
    masks = np.stack([o["mask"][crop] for o in outputs])
    conformal = np.stack([o["conformal_mask"][crop] for o in outputs]) if "conformal_mask" in outputs[0] else None
    if by_slice:  # slices back to the last axis
        return np.moveaxis(masks, 0, -1), None if conformal is None else np.moveaxis(conformal, 0, -1)
    return masks[0], None if conformal is None else conformal[0]


def _segment_series(model, records: Sequence, laid_out: list, coding, explain: bool) -> list[dict[str, Any]]:
    """A 3-D model on single-frame DICOM slices (a PACS study): each series is stacked along its slice normal
    (:func:`medai.io.dicom.order_slices`: duplicate or missing slices are refused), segmented as one volume, and
    each slice gets its prediction: its own mask and area, the volume's ``series_volume_ml`` and referral."""
    from medai.io.dicom import order_slices

    series: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        series.setdefault(str(record.meta.get("series_instance_uid") or ""), []).append(i)
    predictions: list[dict[str, Any] | None] = [None] * len(records)
    for uid, members in series.items():
        where = f"series {uid or '(no SeriesInstanceUID)'}"
        geometry = [(records[i].meta.get("position_mm"), records[i].meta.get("orientation")) for i in members]
        if any(position is None or orientation is None or len(orientation) != 6 for position, orientation in geometry):
            raise DataValidationError(f"{where}: a 3-D model needs ImagePositionPatient and ImageOrientationPatient "
                                      "on every slice to stack them into a volume.")
        orientation = np.asarray(geometry[0][1])
        shapes = {laid_out[i][0].shape for i in members}
        if len(shapes) != 1 or any(not np.allclose(o, orientation, atol=1e-4) for _, o in geometry):
            raise DataValidationError(f"{where}: the slices differ in size or orientation; they do not form one "
                                      "volume.")
        normal = np.cross(orientation[:3], orientation[3:])
        order, gap = order_slices([float(np.dot(position, normal)) for position, _ in geometry],
                                  [str(records[i].id) for i in members], where)
        ordered = [members[k] for k in order]
        volume = np.stack([laid_out[i][0] for i in ordered], axis=-1)
        row_col, source = laid_out[ordered[0]][1], laid_out[ordered[0]][2]
        spacing = (*row_col[:2], gap if gap is not None else float(model.predictor.spacing_mm[-1]))
        mask, conformal = _segment(model, volume)
        whole = _prediction(model, records[ordered[0]], volume, mask, conformal, coding, spacing, source, explain)
        voxel_mm2 = float(np.prod(spacing[:2]))
        for k, i in enumerate(ordered):
            area = int(mask[..., k].sum())
            predictions[i] = {
                **{key: value for key, value in whole.items() if key not in (MASK_KEY, "measurements", "id")},
                "id": str(records[i].id), "decision": coding.label if area else "none",
                "measurements": {"area_mm2": area * voxel_mm2,
                                 **{f"series_{key}": value for key, value in whole["measurements"].items()}},
                "slice": k + 1, "n_slices": len(ordered), MASK_KEY: mask[..., k]}
            if k and explain:  # the volume's overlay once, with the series' first slice
                predictions[i]["explanation"] = {"type": "none", "reason": "shown with the series' first slice"}
    return predictions


def _prediction(model, record, image, mask, conformal, coding, spacing, source: str,
                explain: bool) -> dict[str, Any]:
    from scipy import ndimage

    predictor = model.predictor
    volume = image.ndim == 3
    voxel = float(np.prod(spacing))
    n = int(mask.sum())
    warnings = []
    if source.startswith("training data"):
        warnings.append(f"The file has no pixel spacing: measurements assume the training data's "
                        f"{' x '.join(f'{s:g}' for s in spacing)} mm.")
    if volume:
        measurements = {"volume_ml": n * voxel / 1000.0}
    else:
        measurements = {"area_mm2": n * voxel}
    refer, reason, ratio = False, None, None
    if conformal is not None:
        band = int((conformal.astype(bool) & ~mask.astype(bool)).sum())
        key = "volume_ml" if volume else "area_mm2"
        measurements[f"conformal_{key}"] = int(conformal.sum()) * voxel / (1000.0 if volume else 1.0)
        referral = refer_cases([n], [band], max_band_ratio=predictor.max_band_ratio)
        refer = bool(referral["refer"][0])
        reason = REFER_REASONS.get(referral["reason"][0], referral["reason"][0]) if refer else None
        value = float(referral["band_ratio"][0])
        ratio = value if np.isfinite(value) else None
    else:
        warnings.append("The model has no conformal state: 'refer' is never set.")
    prediction: dict[str, Any] = {
        "id": str(record.id), "decision": coding.label if n else "none", "segment": coding.label,
        "measurements": measurements, "n_components": int(ndimage.label(mask)[1]) if n else 0,
        "refer": refer, "refer_reason": reason, "band_ratio": ratio,
        "spacing_mm": list(spacing), "spacing_source": source,
        "explanation": {"type": "none"}, "warnings": warnings, "model": model.ref, MASK_KEY: mask,
    }
    if explain:
        prediction["explanation"] = {
            "type": "mask_overlay", "method": "U-Net mask (red) and conformal mask (yellow, dashed)",
            "explained": coding.label, "png_base64": _overlay(image, mask, conformal, coding.label)}
    if mask.ndim == 2:
        prediction["mask_png_base64"] = _png(mask.astype(np.uint8) * 255)
    return prediction


def _shown_slice(image: np.ndarray, mask: np.ndarray, conformal) -> tuple[np.ndarray, np.ndarray, Any, str]:
    """2-D: itself; a volume: the slice (last axis) with the most mask voxels (the middle one when empty)."""
    if image.ndim == 2:
        return image, mask, conformal, ""
    counts = mask.reshape(-1, mask.shape[-1]).sum(0)
    k = int(np.argmax(counts)) if counts.any() else mask.shape[-1] // 2
    return (image[..., k], mask[..., k], None if conformal is None else conformal[..., k],
            f" (slice {k + 1} of {mask.shape[-1]}, the largest)")


def _overlay(image: np.ndarray, mask: np.ndarray, conformal, label: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown, shown_mask, shown_conformal, where = _shown_slice(image, mask, conformal)
    low, high = np.percentile(shown, [1, 99])
    fig = Figure(figsize=(3.6, 3.9), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(shown, cmap="gray", vmin=low, vmax=high if high > low else low + 1, interpolation="nearest")
    for m, colour, style in ((shown_conformal, "#ffd000", "--"), (shown_mask, "#ff2020", "-")):
        if m is not None and m.any() and not m.all():
            ax.contour(m, levels=[0.5], colors=colour, linewidths=1.2, linestyles=style)
    ax.set_axis_off()
    ax.set_title(f"{label}: red = model, yellow = conformal{where}", fontsize=7)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _png(array: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
