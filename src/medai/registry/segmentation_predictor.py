"""The segmentation Predictor: masks, recalibrated probability maps, conformal masks and referral from a verified
segmentation artefact — what the service turns into DICOM SEG (the regular
:class:`~medai.registry.predictor.Predictor` refuses segmentation models).

Everything a prediction needs ships in the artefact and is applied exactly as in the run: the per-image z-score
(:func:`medai.workflows.segmentation.normalise`), the network, the temperature of ``recalibration.json``
(:func:`medai.evaluation.segmentation_trust.foreground_probability`), the conformal threshold λ̂ and the referral
rule of ``conformal.json`` (:func:`medai.evaluation.segmentation_trust.refer_cases`).

One network input is one image ``(1, *spatial)``: a 2-D image (lesion data), one short-axis slice (cine models,
which segment slice by slice) or a volume (3-D models). Referral is decided per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, invalid_parameter
from medai.evaluation.segmentation_trust import MAX_BAND_RATIO, foreground_probability, refer_cases
from medai.models import build_model
from medai.registry.artifact import Artifact, load_artifact

__all__ = ["SegmentationPredictor"]


class SegmentationPredictor:
    """Predictions of a segmentation artefact, one dict per image.

    Attributes:
        artifact: the loaded, integrity-checked artefact.
        kind: :attr:`TaskKind.SEGMENTATION`.
        temperature: the logit temperature (1.0 when the artefact has no ``recalibration.json``).
        threshold: λ̂ of the conformal mask (None when the artefact has no ``conformal.json``).
    """

    #: Images per forward pass: the run's (PREDICT_BATCH), so that served masks are computed as the evaluated ones.
    chunk_size = 32

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.task = artifact.task
        self.kind = TaskKind(self.task.get("kind"))
        if self.kind is not TaskKind.SEGMENTATION:
            raise InvalidParameterError(
                f"{artifact.path} is a {self.kind.value} model, not a segmentation model; load it with "
                "medai.registry.predictor.Predictor.")
        config = artifact.config
        self.spatial_dims = int(self.task["spatial_dims"])
        self.size_multiple = int(self.task.get("input_size_multiple") or 1)
        # A case's voxel size: per spatial axis, and for cine models (2-D slices of a stack) the slice thickness
        # first, so that a slice's voxels have their volume.
        self.spacing_mm = tuple(float(s) for s in artifact.preprocessor.get("spacing_mm") or (1.0,) * self.spatial_dims)
        self.model = build_model(config.model.name, 1, 2, config.model.params)
        self.model.load_state_dict(artifact.weights)
        self.model.eval()
        recalibration = artifact.recalibration or {}
        self.temperature = float(recalibration.get("temperature", 1.0))
        conformal = artifact.conformal or {}
        self.threshold = float(conformal["lambda"]) if "lambda" in conformal else None
        self.max_band_ratio = float((conformal.get("referral") or {}).get("max_band_ratio", MAX_BAND_RATIO))

    @classmethod
    def load(cls, path: str | Path) -> SegmentationPredictor:
        """Verify (sha256 manifest) and load the artefact of a run folder or a ``model/`` folder."""
        return cls(load_artifact(path))

    @property
    def model_id(self) -> dict[str, str]:
        details = self.artifact.model_card.get("model_details") or {}
        return {"id": str(details.get("name") or self.artifact.config.name),
                "version": str(details.get("version") or ""), "sha256": self.artifact.sha256}

    def _check(self, images: Any) -> np.ndarray:
        array = np.asarray(images)
        expected = 2 + self.spatial_dims
        if array.ndim != expected or array.shape[1] != 1 or array.shape[0] == 0:
            layout = "(N, 1, H, W)" if self.spatial_dims == 2 else "(N, 1, D, H, W)"
            raise DataValidationError(
                f"{self.artifact.path}: this {self.spatial_dims}-D segmentation model takes images {layout} (one "
                f"channel, raw intensities); got shape {array.shape}. Add the channel axis (images[:, None]).")
        if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
            raise DataValidationError(f"{self.artifact.path}: images must be finite numbers (no NaN or infinity).")
        bad = [n for n in array.shape[2:] if n % self.size_multiple]
        if bad:
            raise DataValidationError(
                f"{self.artifact.path}: every spatial size must be a multiple of {self.size_multiple} (the U-Net "
                f"downsamples); got {tuple(array.shape[2:])}. Pad or crop the images.")
        return array.astype(np.float32, copy=False)

    @torch.no_grad()
    def predict(self, images: np.ndarray, *, spacing_mm: tuple[float, ...] | None = None) -> list[dict[str, Any]]:
        """Segment images.

        Args:
            images: ``(N, 1, *spatial)`` raw intensities (any scale: each image is z-scored as in training).
            spacing_mm: voxel size in mm per spatial axis, for ``volume_ml``; a 2-D model of stacked slices also
                takes the slice thickness first (``(slice, row, col)``). None: the training data's.

        Returns:
            One dict per image: ``mask`` uint8 ``(*spatial)`` (argmax, 1 = the structure), ``probability`` float32
            ``(*spatial)`` (recalibrated foreground probability), ``conformal_mask`` uint8 (``probability ≥ λ̂``;
            absent without ``conformal.json``), ``refer`` (bool) and ``refer_reason`` (None,
            ``uncertain_band_exceeds_prediction`` or ``possible_missed_structure``), ``band_ratio`` (uncertain band
            / predicted volume; None when infinite), ``volume_ml`` (of the mask), ``conformal_volume_ml`` and
            ``model`` (``id``, ``version``, ``sha256``).

        Raises:
            DataValidationError: wrong shape, non-finite values or a spatial size the network cannot take.
            InvalidParameterError: ``spacing_mm`` not one positive number per spatial axis.
        """
        from medai.workflows.segmentation import normalise

        x = self._check(images)
        spacing = self.spacing_mm if spacing_mm is None else tuple(float(s) for s in spacing_mm)
        sizes = (2, 3) if self.spatial_dims == 2 else (3,)
        if len(spacing) not in sizes or not all(s > 0 for s in spacing):
            raise invalid_parameter("spacing_mm", "SegmentationPredictor.predict",
                                    f"{' or '.join(map(str, sizes))} positive voxel sizes in mm", spacing_mm)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        model = self.model_id
        results: list[dict[str, Any]] = []
        for start in range(0, len(x), self.chunk_size):
            batch = normalise(x[start:start + self.chunk_size])
            logits = self.model(torch.from_numpy(batch)).float()
            masks = logits.argmax(dim=1).to(torch.uint8).numpy()
            probability = foreground_probability((logits[:, 1] - logits[:, 0]).numpy(), self.temperature)
            for mask, p in zip(masks, probability):
                entry: dict[str, Any] = {"mask": mask, "probability": p, "volume_ml": float(mask.sum()) * voxel_ml,
                                         "refer": False, "refer_reason": None, "band_ratio": None}
                if self.threshold is not None:
                    conformal = (p >= self.threshold).astype(np.uint8)
                    band = int((conformal.astype(bool) & ~mask.astype(bool)).sum())
                    referral = refer_cases([int(mask.sum())], [band], max_band_ratio=self.max_band_ratio)
                    ratio = float(referral["band_ratio"][0])
                    entry.update(conformal_mask=conformal, conformal_volume_ml=float(conformal.sum()) * voxel_ml,
                                 refer=bool(referral["refer"][0]), refer_reason=referral["reason"][0],
                                 band_ratio=ratio if np.isfinite(ratio) else None)
                entry["model"] = dict(model)
                results.append(entry)
        return results
