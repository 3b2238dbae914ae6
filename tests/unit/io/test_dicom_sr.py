"""Classification and segmentation SRs (TID 1500) written with highdicom: content read back, patient/study copied, codes declared,
validated by dciodvfy where installed, and the promised errors."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.io.dicom_seg import write_dicom_seg, write_image_series
from medai.io.dicom_sr import (
    MEDAI_SCHEME,
    read_classification_sr,
    read_segmentation_sr,
    write_classification_sr,
    write_segmentation_sr,
)

MODEL = {"id": "lesion-cxr", "version": "2026-11-26T10:00:00Z", "sha256": "ab12" * 16, "positive_class": "lesion"}


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    return write_image_series(rng.random((3, 16, 16)), tmp_path / "images", spacing_mm=(2.0, 0.5, 0.5),
                              patient_id="SYNTH-1", patient_name="Synthetic^Case")


def _uid(ds) -> str:
    return str(ds.SOPInstanceUID)


def dciodvfy_errors(path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed: apt-get install -y dicom3tools")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def test_binary_multiclass_and_multilabel_predictions_round_trip(images, tmp_path):
    predictions = [
        {"id": _uid(images[0]), "probability": 0.83, "decision": "lesion", "refer": True,
         "refer_reason": "the conformal prediction set is not a single answer"},
        {"id": _uid(images[1]), "probability": {"normal": 0.7, "effusion": 0.2, "pneumothorax": 0.1},
         "decision": "normal", "refer": False},
        {"id": _uid(images[2]), "probability": {"effusion": 0.9, "cardiomegaly enlarged heart": 0.6},
         "decision": ["effusion", "cardiomegaly enlarged heart"], "refer": False},
    ]
    path = tmp_path / "out" / "sr.dcm"
    sr = write_classification_sr(images, predictions, MODEL, out_path=path)
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))  # written atomically
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    read = read_classification_sr(path)
    assert [g["sop_instance_uid"] for g in read] == [_uid(ds) for ds in images]
    assert read[0]["probabilities"] == {"lesion": pytest.approx(0.83)} and read[0]["findings"] == ["lesion"]
    assert read[0]["refer"] is True and "not a single answer" in read[0]["refer_reason"]
    assert read[1]["probabilities"] == pytest.approx({"normal": 0.7, "effusion": 0.2, "pneumothorax": 0.1})
    assert read[1]["findings"] == ["normal"] and read[1]["refer"] is False and read[1]["refer_reason"] is None
    assert read[2]["findings"] == ["effusion", "cardiomegaly enlarged heart"]  # over 16 characters: LongCodeValue
    assert read[0]["algorithm"] == {"name": "lesion-cxr", "version": "2026-11-26T10:00:00Z"}


def test_sr_copies_patient_and_study_and_names_the_model_device(images, tmp_path):
    sr = write_classification_sr(images[:1], [{"id": _uid(images[0]), "probability": 0.2, "decision": "normal"}],
                                 MODEL)
    source = images[0]
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate"):
        assert sr[keyword].value == source[keyword].value, keyword
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID and sr.Modality == "SR"
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    assert sr.DeviceSerialNumber == MODEL["sha256"][:16] and sr.Manufacturer == "medai"
    schemes = [item.CodingSchemeDesignator for item in sr.CodingSchemeIdentificationSequence]
    assert MEDAI_SCHEME in schemes
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    text = str(sr)
    assert "Device" in text and MODEL["sha256"][:16] in text  # device observer context (TID 1004)
    # The device UID is derived from the model's sha256: the same model has the same observer UID.
    again = write_classification_sr(images[:1], [{"id": _uid(images[0]), "probability": 0.9, "decision": "lesion"}],
                                    MODEL)
    uid_of = lambda ds: [line for line in str(ds).splitlines() if "Device Observer UID" in line]  # noqa: E731
    assert uid_of(sr) and uid_of(sr) == uid_of(again)


def test_written_sr_passes_dciodvfy(images, tmp_path):
    path = tmp_path / "sr.dcm"
    write_classification_sr(images, [{"id": _uid(ds), "probability": p, "decision": "lesion" if p > 0.5 else "normal",
                                      "refer": p == 0.5} for ds, p in zip(images, (0.1, 0.5, 0.9))], MODEL,
                            out_path=path)
    assert dciodvfy_errors(path) == []


def test_errors_name_what_is_wrong(images, tmp_path):
    good = {"id": _uid(images[0]), "probability": 0.4, "decision": "normal"}
    with pytest.raises(DataValidationError, match="not the SOPInstanceUID of any source image"):
        write_classification_sr(images, [{**good, "id": "img1"}], MODEL)
    with pytest.raises(InvalidParameterError, match=r"'model' parameter .* non-empty \['id', 'version', 'sha256'\]"):
        write_classification_sr(images, [good], {"id": "m", "version": "1"})
    with pytest.raises(DataValidationError, match=r"outside \[0, 1\]"):
        write_classification_sr(images, [{**good, "probability": 1.5}], MODEL)
    with pytest.raises(DataValidationError, match="Only classification predictions"):
        write_classification_sr(images, [{**good, "probability": None, "value": 4.2}], MODEL)
    with pytest.raises(DataValidationError, match="has no 'decision'"):
        write_classification_sr(images, [{"id": _uid(images[0]), "probability": 0.4}], MODEL)
    with pytest.raises(DataValidationError, match="no predictions"):
        write_classification_sr(images, [], MODEL)
    other = write_image_series(np.ones((4, 4)), tmp_path / "other", spacing_mm=(1.0, 1.0))
    with pytest.raises(DataValidationError, match="belong to 2 studies"):
        write_classification_sr([*images, *other], [good], MODEL)


def test_reading_an_image_as_sr_is_a_clear_error(images):
    with pytest.raises(DataValidationError, match="not a TID 1500 measurement report"):
        read_classification_sr(pydicom.Dataset(images[0]))


def test_segmentation_sr_points_each_area_into_its_seg_frame(images, tmp_path):
    masks = np.zeros((3, 16, 16), dtype=np.uint8)
    masks[0, 2:6, 2:5], masks[2, 8:10, 8:12] = 1, 1
    seg = pydicom.dcmread(write_dicom_seg(masks, tmp_path / "seg.dcm", source_images=images, model_name="unet"))
    predictions = [{"id": _uid(ds), "measurements": {"area_mm2": float(m.sum()) * 0.25}, "refer": i == 1,
                    "refer_reason": "the outline is uncertain" if i == 1 else None}
                   for i, (ds, m) in enumerate(zip(images, masks))]
    write_segmentation_sr(images, predictions, MODEL, [seg], out_path=tmp_path / "sr.dcm")
    groups = {g["sop_instance_uid"]: g for g in read_segmentation_sr(tmp_path / "sr.dcm")}
    frames = seg.pixel_array.reshape(-1, 16, 16)
    for ds, mask, prediction in zip(images, masks, predictions):
        group = groups[_uid(ds)]
        assert group["seg_sop_instance_uid"] == str(seg.SOPInstanceUID)
        assert np.array_equal(frames[group["frame"][0] - 1], mask)
        assert group["area_mm2"] == pytest.approx(prediction["measurements"]["area_mm2"])
        assert group["refer"] is prediction["refer"] and group["refer_reason"] == prediction["refer_reason"]
    assert dciodvfy_errors(tmp_path / "sr.dcm") == []
    with pytest.raises(DataValidationError, match="prediction 1 has no area"):
        write_segmentation_sr(images, [{"id": _uid(images[0]), "probability": 0.5}], MODEL, [seg])
    with pytest.raises(DataValidationError, match="prediction 1 is for no segmented source image"):
        write_segmentation_sr(images, [{"id": "1.2.3", "measurements": {"area_mm2": 1.0}}], MODEL, [seg])
