"""SegmentationPredictor on a small saved U-Net artefact: normalisation as in training, argmax masks, recalibrated
probabilities, conformal masks, referral, volumes, integrity and shape checks. (That it reproduces a trained run's
test masks is checked end to end in tests/e2e/test_segmentation.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import expit

from medai.core.config import DataConfig, ModelConfig, RunConfig, TaskConfig, TaskKind
from medai.core.errors import ArtifactIntegrityError, DataValidationError, InvalidParameterError
from medai.models import build_model
from medai.registry.artifact import save_artifact
from medai.registry.predictor import Predictor
from medai.registry.segmentation_predictor import SegmentationPredictor
from medai.workflows.segmentation import normalise

PARAMS = {"spatial_dims": 2, "channels": [4, 8], "strides": [2], "num_res_units": 0}
TEMPERATURE, THRESHOLD = 0.7, 0.3


@pytest.fixture
def artefact(tmp_path, one_torch_thread):
    torch.manual_seed(0)
    model = build_model("unet", 1, 2, PARAMS)
    config = RunConfig(data=DataConfig(builtin="lesion-phantoms-2d"), task=TaskConfig(kind=TaskKind.SEGMENTATION),
                       model=ModelConfig(name="unet", params=PARAMS), name="tiny-seg")
    task = {"kind": "segmentation", "label": "lesion", "spatial_dims": 2, "spacing_mm": [0.5, 2.0],
            "in_features": 1, "out_features": 2, "input_size_multiple": model.size_multiple}
    save_artifact(tmp_path / "model", state_dict=model.state_dict(), config=config, task=task,
                  preprocessor={"intensity": "z-score per image", "spacing_mm": [0.5, 2.0]},
                  thresholds={"method": "argmax over classes"}, model_card_md="# card\n",
                  model_card={"model_details": {"name": "tiny-seg", "version": "2026-01-01T00:00:00Z"}},
                  recalibration={"method": "temperature", "temperature": TEMPERATURE,
                                 "fitted_on": "validation voxels"},
                  conformal={"lambda": THRESHOLD, "alpha": 0.1, "referral": {"max_band_ratio": 1.0}})
    return tmp_path, model.eval()


def _images(n: int = 5, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.normal(100.0, 20.0, (n, 1, 16, 16)).astype(np.float32)  # raw intensities, any scale
    images[:, :, 4:9, 5:10] += 80.0
    return images


def test_predictions_follow_the_stored_state(artefact):
    run, model = artefact
    predictor = SegmentationPredictor.load(run)  # a run folder (holding model/) works
    images = _images()
    out = predictor.predict(images)
    assert len(out) == 5 and predictor.kind is TaskKind.SEGMENTATION
    with torch.no_grad():
        logits = model(torch.from_numpy(normalise(images))).numpy()
    margin = logits[:, 1] - logits[:, 0]
    for i, entry in enumerate(out):
        assert entry["mask"].dtype == np.uint8 and entry["mask"].shape == (16, 16)
        assert np.array_equal(entry["mask"], logits[i].argmax(axis=0))
        assert entry["probability"].dtype == np.float32
        assert entry["probability"] == pytest.approx(expit(margin[i] / TEMPERATURE), abs=1e-5)
        assert np.array_equal(entry["conformal_mask"], (entry["probability"] >= THRESHOLD).astype(np.uint8))
        assert entry["volume_ml"] == pytest.approx(entry["mask"].sum() * 0.5 * 2.0 / 1000)
        band = int((entry["conformal_mask"].astype(bool) & ~entry["mask"].astype(bool)).sum())
        predicted = int(entry["mask"].sum())
        expected = (predicted == 0 and band > 0) or (predicted > 0 and band > predicted)
        assert entry["refer"] is expected
        assert (entry["refer_reason"] is None) is (not expected)
        assert entry["model"] == {"id": "tiny-seg", "version": "2026-01-01T00:00:00Z",
                                  "sha256": predictor.artifact.sha256}
    # intensities are z-scored per image: a scaled and shifted copy gives the same masks
    again = predictor.predict(images * 3.0 + 50.0)
    assert all(np.array_equal(a["mask"], b["mask"]) for a, b in zip(out, again))
    # chunking changes the result only by rounding (convolutions may sum in another order for another batch size:
    # why the predictor uses the run's batch size)
    predictor.chunk_size = 2
    for a, b in zip(out, predictor.predict(images)):
        assert b["probability"] == pytest.approx(a["probability"], abs=1e-5)
    assert predictor.predict(images[:1], spacing_mm=(1.0, 1.0))[0]["volume_ml"] == pytest.approx(
        out[0]["mask"].sum() / 1000)
    # a slice of a stack: the slice thickness first
    assert predictor.predict(images[:1], spacing_mm=(10.0, 1.0, 1.0))[0]["volume_ml"] == pytest.approx(
        out[0]["mask"].sum() * 10 / 1000)


def test_input_checks(artefact):
    predictor = SegmentationPredictor.load(artefact[0] / "model")
    with pytest.raises(DataValidationError, match=r"takes images \(N, 1, H, W\).*Add the channel axis"):
        predictor.predict(_images()[:, 0])
    with pytest.raises(DataValidationError, match="multiple of 2"):
        predictor.predict(np.zeros((1, 1, 15, 16), np.float32))
    with pytest.raises(DataValidationError, match="finite"):
        predictor.predict(np.full((1, 1, 16, 16), np.nan, np.float32))
    with pytest.raises(InvalidParameterError, match="'spacing_mm' parameter"):
        predictor.predict(_images(1), spacing_mm=(1.0,))
    with pytest.raises(InvalidParameterError, match="must be 2 or 3 positive voxel sizes"):
        predictor.predict(_images(1), spacing_mm=(1.0, -1.0))


def test_integrity_and_kind_are_checked(artefact):
    run, _ = artefact
    with pytest.raises(InvalidParameterError, match="is a segmentation model"):
        Predictor.load(run)  # the regular Predictor refuses segmentation artefacts
    conformal = run / "model" / "conformal.json"
    conformal.write_text(json.dumps({"lambda": 0.0}))
    with pytest.raises(ArtifactIntegrityError, match="'conformal.json' does not match its sha256"):
        SegmentationPredictor.load(run)


def test_a_classification_artefact_is_refused(tmp_path):
    config = RunConfig(data=DataConfig(builtin="wdbc"), task=TaskConfig(kind=TaskKind.BINARY),
                       model=ModelConfig(name="mlp"))
    save_artifact(tmp_path / "model", state_dict={"w": torch.zeros(1)}, config=config, task={"kind": "binary"},
                  preprocessor={"type": "tabular"}, thresholds={"threshold": 0.5}, model_card_md="# card\n",
                  model_card={})
    with pytest.raises(InvalidParameterError, match="is a binary model, not a segmentation model"):
        SegmentationPredictor.load(tmp_path)
