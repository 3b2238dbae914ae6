"""Classification results as a DICOM Structured Report (TID 1500 Measurement Report) written with highdicom.

A PACS stores and shows DICOM objects, not JSON: a prediction goes back into the patient's study as a
Comprehensive 3D SR whose content tree follows DICOM PS3.16 TID 1500 "Measurement Report":

- observer context: a **device** observer (DCM 121007) — the model: name = model id, manufacturer "medai",
  model name = "<id> <version>", serial number = the first 16 hex digits of the artefact's sha256, and a UID
  derived from the full sha256 (the same model always has the same device UID);
- procedure reported: SCT 363679005 "Imaging procedure";
- one TID 1501 "Measurements and qualitative evaluations" group per source image, which
  - references the image by SOP class and instance UID (source image for measurement group),
  - names the algorithm (model id, version, family DCM 123110 "Artificial Intelligence", manufacturer medai),
  - holds the decision as qualitative evaluations named DCM 121071 "Finding" whose values are the model's class
    codes (one per present finding for multi-label models; value ``99MEDAI none`` when none is present),
  - holds one numeric measurement per class probability (unit UCUM "1"), named ``99MEDAI p-<class>`` "Probability
    of <class>" (binary models: the positive class only),
  - holds the referral flag as a qualitative evaluation ``99MEDAI refer`` "Refer to clinician" = SCT 373066001
    "Yes" / SCT 373067005 "No", and the referral reason as a DCM 121106 "Comment" text item.

Class names of a model have no standard code, so they are coded in the private scheme ``99MEDAI`` (PS3.16 8.2:
private schemes start with "99"), declared in the SR's Coding Scheme Identification Sequence. The SR copies the
patient and study modules of the source images (standard for an object of the same study) and adds no other patient
data; CompletionFlag is COMPLETE and VerificationFlag UNVERIFIED (no clinician has signed it).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import medai
from medai.core.errors import DataValidationError, InvalidParameterError

__all__ = ["MEDAI_SCHEME", "read_classification_sr", "read_segmentation_sr", "write_classification_sr",
           "write_segmentation_sr"]

#: The private coding scheme of model class names (PS3.16 8.2: designators beginning "99" are private).
MEDAI_SCHEME = "99MEDAI"
_SERIES_NUMBER = 900
_MODEL_KEYS = ("id", "version", "sha256")


def _hd():
    import highdicom as hd

    return hd


def _codes():
    from pydicom.sr.codedict import codes

    return codes


def _class_code(name: str):
    return _hd().sr.CodedConcept(str(name), MEDAI_SCHEME, str(name))


def _probability_code(name: str):
    return _hd().sr.CodedConcept(f"p-{name}", MEDAI_SCHEME, f"Probability of {name}")


def _refer_code():
    return _hd().sr.CodedConcept("refer", MEDAI_SCHEME, "Refer to clinician")


def _none_code():
    return _hd().sr.CodedConcept("none", MEDAI_SCHEME, "No finding")


def _check_model(model: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(model, Mapping) or any(not str(model.get(key) or "") for key in _MODEL_KEYS):
        got = sorted(model) if isinstance(model, Mapping) else type(model).__name__
        raise InvalidParameterError(
            f"The 'model' parameter of write_classification_sr must be the prediction's model dict with non-empty "
            f"{list(_MODEL_KEYS)} (optionally 'positive_class'). Got keys {got} instead."
        )
    return {key: str(model[key]) for key in (*_MODEL_KEYS, "positive_class") if model.get(key) is not None}


def _probabilities(prediction: Mapping[str, Any], positive_class: str, where: str) -> dict[str, float]:
    value = prediction.get("probability")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        pairs = {positive_class: float(value)}
    elif isinstance(value, Mapping) and value:
        pairs = {str(k): float(v) for k, v in value.items()}
    else:
        raise DataValidationError(
            f"{where}: 'probability' must be a number (binary) or a non-empty {{class: probability}} mapping "
            f"(multi-class, multi-label); got {type(value).__name__}. Only classification predictions go into a "
            "classification SR."
        )
    for name, p in pairs.items():
        if not 0.0 <= p <= 1.0:
            raise DataValidationError(f"{where}: the probability of '{name}' is outside [0, 1]; a classification "
                                      "SR stores calibrated probabilities.")
    return pairs


def _group(prediction: Mapping[str, Any], source, model: dict[str, str], index: int):
    hd, codes = _hd(), _codes()
    where = f"prediction {index + 1} (id {prediction.get('id')!s})"
    positive = model.get("positive_class", "positive")
    probabilities = _probabilities(prediction, positive, where)
    decision = prediction.get("decision")
    findings = [decision] if isinstance(decision, str) else list(decision or [])
    if not findings and not isinstance(decision, list):
        raise DataValidationError(f"{where}: has no 'decision' (the class at the model's operating point).")
    evaluations = [hd.sr.QualitativeEvaluation(codes.DCM.Finding, _class_code(f)) for f in findings] or [
        hd.sr.QualitativeEvaluation(codes.DCM.Finding, _none_code())]
    refer_evaluation, reason = _refer_items(prediction)
    evaluations.append(refer_evaluation)
    measurements = [hd.sr.Measurement(name=_probability_code(name), value=p, unit=codes.UCUM.NoUnits)
                    for name, p in probabilities.items()]
    algorithm = hd.sr.AlgorithmIdentification(name=model["id"], version=model["version"],
                                              family=codes.cid7162.ArtificialIntelligence, manufacturer="medai")
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        # The identifier is the group's position: record ids may be client identifiers, kept out of the PACS.
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"medai prediction {index + 1}"),
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup(str(source.SOPClassUID), str(source.SOPInstanceUID))],
    )
    _add_comment(group, reason)
    return group


def _device_uid(sha256: str) -> str:
    from pydicom.uid import generate_uid

    # generate_uid with entropy sources is deterministic: one model artefact, one device UID.
    return generate_uid(prefix=None, entropy_srcs=["medai-model", sha256])


def write_classification_sr(
    source_datasets: Sequence,
    predictions: Sequence[Mapping[str, Any]],
    model: Mapping[str, Any],
    *,
    out_path: str | Path | None = None,
    series_number: int = _SERIES_NUMBER,
):
    """Write image classification predictions as a TID 1500 Comprehensive 3D SR (see the module docstring).

    Args:
        source_datasets: the classified images (``pydicom.Dataset``), all of one study.
        predictions: prediction dicts (``medai.serve`` contract), one per classified image; each ``id`` must be
            the SOPInstanceUID of one of ``source_datasets`` (what :func:`medai.io.dicom.read_dicom` uses as
            record id). Binary ``probability`` is P(positive class); multi-class / multi-label a class mapping.
        model: the prediction's ``model`` dict: ``id``, ``version``, ``sha256`` and, for binary models,
            ``positive_class`` (the class the probability is about; "positive" when absent).
        out_path: also write the SR there (temporary file + rename: never half-written).
        series_number: Series Number of the SR (a new series of the source study).

    Returns:
        The SR (``highdicom.sr.Comprehensive3DSR``, a ``pydicom.Dataset``).

    Raises:
        InvalidParameterError: ``model`` lacks ``id``, ``version`` or ``sha256``.
        DataValidationError: no predictions; a prediction id that is no source image; a prediction without
            probability or decision, or with a probability outside [0, 1]; source images of several studies.
    """
    model = _check_model(model)
    if not predictions:
        raise DataValidationError("write_classification_sr: no predictions to report; give one per image.")
    by_uid = {str(ds.SOPInstanceUID): ds for ds in source_datasets}
    studies = {str(ds.StudyInstanceUID) for ds in source_datasets}
    if len(studies) != 1:
        raise DataValidationError(f"write_classification_sr: the source images belong to {len(studies)} studies; "
                                  "an SR reports on one study — write one SR per study.")
    groups = []
    for index, prediction in enumerate(predictions):
        source = by_uid.get(str(prediction.get("id")))
        if source is None:
            raise DataValidationError(
                f"write_classification_sr: prediction {index + 1} has id {prediction.get('id')!s}, which is not the "
                "SOPInstanceUID of any source image. Predict on records read from the source images "
                "(read_dicom uses the SOPInstanceUID as record id).")
        groups.append(_group(prediction, source, model, index))
    return _report(list(by_uid.values()), groups, model, out_path=out_path, series_number=series_number)


def _report(evidence: list, groups: list, model: dict[str, str], *, out_path, series_number: int):
    """The TID 1500 SR around measurement groups: the model as device observer, the source study's modules."""
    hd, codes = _hd(), _codes()
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_device_uid(model["sha256"]), name=model["id"][:64], manufacturer_name="medai",
        model_name=f"{model['id']} {model['version']}"[:64], serial_number=model["sha256"][:16])
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=codes.DCM.Device,
                                                      observer_identifying_attributes=device))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=codes.SCT.ImagingProcedure,
                                     imaging_measurements=groups)
    first = evidence[0]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=hd.UID(),
        series_number=int(series_number),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medai",
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=f"medai {model['id']}"[:64],
        manufacturer_model_name=f"medai {model['id']}"[:64],
        software_versions=medai.__version__,
        device_serial_number=model["sha256"][:16],
        coding_schemes=[hd.coding_schemes.CodingSchemeIdentificationItem(
            designator=MEDAI_SCHEME, name="medai model classes", responsible_organization="medai")],
    )
    if "AccessionNumber" in first and "AccessionNumber" not in sr:
        sr.AccessionNumber = first.AccessionNumber
    if out_path is not None:
        from medai.io.dicom_seg import _save_atomic

        _save_atomic(sr, Path(out_path))
    return sr


def _refer_items(prediction: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The referral evaluation (SCT Yes / No) and its reason (None when not referred)."""
    codes = _codes()
    refer = bool(prediction.get("refer", False))
    evaluation = _hd().sr.QualitativeEvaluation(_refer_code(), codes.SCT.Yes if refer else codes.SCT.No)
    reason = prediction.get("refer_reason")
    return evaluation, (str(reason)[:1024] if refer and reason else None)


def _add_comment(group, text: str | None) -> None:
    if text:
        # TID 1501 / 1410 have no referral row; a Comment text item keeps the reason readable in any SR viewer.
        hd, codes = _hd(), _codes()
        group[0].ContentSequence.append(hd.sr.TextContentItem(
            name=codes.DCM.Comment, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))


def _seg_frames(segs: Sequence) -> dict[str, tuple[Any, int]]:
    """SOPInstanceUID of each segmented source image → (its SEG, the SEG frame number derived from it)."""
    frames = {}
    for seg in segs:
        for number, item in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
            for derivation in item.get("DerivationImageSequence", []):
                for source in derivation.get("SourceImageSequence", []):
                    frames[str(source.ReferencedSOPInstanceUID)] = (seg, number)
    return frames


def _frame_reference_only(group) -> None:
    """Drop Referenced Segment Number where a Referenced Frame Number is given: in an SR IMAGE reference the
    segment number is only for references without frame numbers (a SEG frame belongs to exactly one segment).
    highdicom 0.28 writes both, which dciodvfy reports as an error."""
    for item in group[0].ContentSequence:
        if item.ValueType == "IMAGE":
            for reference in item.ReferencedSOPSequence:
                if "ReferencedFrameNumber" in reference and "ReferencedSegmentNumber" in reference:
                    del reference.ReferencedSegmentNumber


def write_segmentation_sr(
    source_datasets: Sequence,
    predictions: Sequence[Mapping[str, Any]],
    model: Mapping[str, Any],
    segmentations: Sequence,
    *,
    out_path: str | Path | None = None,
    series_number: int = _SERIES_NUMBER,
):
    """Write segmentation measurements as a TID 1500 SR whose groups point into the DICOM SEG.

    One TID 1410 "Planar ROI measurements" group per segmented image: the ROI is the SEG frame derived from that
    image (segment 1), the finding type the segment's property type, the measurement its area (SCT 42798000,
    UCUM mm2; ``measurements.area_mm2`` of the prediction), plus the referral evaluation and reason as in
    :func:`write_classification_sr`.

    Args:
        source_datasets: the segmented images, all of one study.
        predictions: segmentation prediction dicts (:mod:`medai.serve.segment`), ``id`` = SOPInstanceUID.
        model: ``id``, ``version``, ``sha256``.
        segmentations: the SEG datasets written from these predictions' masks (``write_dicom_seg``).

    Raises:
        InvalidParameterError: ``model`` lacks ``id``, ``version`` or ``sha256``.
        DataValidationError: no predictions; a prediction without area or without a SEG frame of its image.
    """
    hd, codes = _hd(), _codes()
    model = _check_model(model)
    if not predictions:
        raise DataValidationError("write_segmentation_sr: no predictions to report; give one per image.")
    by_uid = {str(ds.SOPInstanceUID): ds for ds in source_datasets}
    frames = _seg_frames(segmentations)
    algorithm = hd.sr.AlgorithmIdentification(name=model["id"], version=model["version"],
                                              family=codes.cid7162.ArtificialIntelligence, manufacturer="medai")
    groups = []
    for index, prediction in enumerate(predictions):
        uid = str(prediction.get("id"))
        area = (prediction.get("measurements") or {}).get("area_mm2")
        if uid not in by_uid or uid not in frames:
            raise DataValidationError(f"write_segmentation_sr: prediction {index + 1} is for no segmented source "
                                      "image (its id must be the SOPInstanceUID of an image in a SEG).")
        if not isinstance(area, numbers.Real) or area < 0:
            raise DataValidationError(f"write_segmentation_sr: prediction {index + 1} has no area (measurements."
                                      "area_mm2); only 2-D image segmentations go into this SR.")
        seg, frame = frames[uid]
        refer, reason = _refer_items(prediction)
        segment = seg.SegmentSequence[0]
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"medai segmentation {index + 1}"),
            # built from the UIDs: highdicom's from_segmentation looks for the segment number per frame, which a
            # one-segment SEG keeps in its shared functional groups
            referenced_segment=hd.sr.ReferencedSegmentationFrame(
                sop_class_uid=str(seg.SOPClassUID), sop_instance_uid=str(seg.SOPInstanceUID), frame_number=frame,
                segment_number=1, source_image=hd.sr.SourceImageForSegmentation(
                    str(by_uid[uid].SOPClassUID), str(by_uid[uid].SOPInstanceUID))),
            finding_type=hd.sr.CodedConcept.from_dataset(segment.SegmentedPropertyTypeCodeSequence[0]),
            algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=codes.SCT.Area, value=float(area),
                                            unit=codes.UCUM.SquareMillimeter)],
            qualitative_evaluations=[refer],
        )
        _add_comment(group, reason)
        _frame_reference_only(group)
        groups.append(group)
    # evidence: the images and the SEGs the groups point into (Current Requested Procedure Evidence Sequence)
    return _report([*by_uid.values(), *segmentations], groups, model, out_path=out_path, series_number=series_number)


def read_segmentation_sr(dataset) -> list[dict[str, Any]]:
    """Read back what :func:`write_segmentation_sr` wrote: one dict per group with ``sop_instance_uid`` (the
    segmented image), ``seg_sop_instance_uid`` and ``frame`` (the SEG frame), ``area_mm2``, ``refer`` and
    ``refer_reason``."""
    import pydicom

    codes = _codes()
    ds = dataset if isinstance(dataset, pydicom.Dataset) else pydicom.dcmread(dataset)
    out = []
    for group in _groups(ds, "get_planar_roi_measurement_groups"):
        reference = group.referenced_segmentation_frame
        area, refer, reason = None, False, None
        for item in group[0].ContentSequence:
            key = _code_key(item.ConceptNameCodeSequence[0])
            if item.ValueType == "NUM" and key == ("SCT", codes.SCT.Area.value):
                area = float(item.MeasuredValueSequence[0].NumericValue)
            elif item.ValueType == "CODE" and key == (MEDAI_SCHEME, "refer"):
                refer = _code_key(item.ConceptCodeSequence[0]) == ("SCT", codes.SCT.Yes.value)
            elif item.ValueType == "TEXT" and key == ("DCM", codes.DCM.Comment.value):
                reason = str(item.TextValue)
        out.append({"sop_instance_uid": reference.source_image_for_segmentation.referenced_sop_instance_uid,
                    "seg_sop_instance_uid": reference.referenced_sop_instance_uid,
                    "frame": list(reference.referenced_frame_numbers or []), "area_mm2": area, "refer": refer,
                    "refer_reason": reason})
    return out


def _groups(ds, getter: str) -> list:
    hd = _hd()
    try:
        return list(getattr(hd.sr.Comprehensive3DSR.from_dataset(ds, copy=True).content, getter)())
    except (AttributeError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise DataValidationError(
            f"SR {getattr(ds, 'SOPInstanceUID', '(no SOPInstanceUID)')}: not a TID 1500 measurement report "
            f"readable by highdicom ({exc.__class__.__name__}). Expected an SR written by medai."
        ) from None


def _code_key(code) -> tuple[str, str]:
    """(scheme, value) of a code item; long values (over 16 characters) are in LongCodeValue."""
    value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue")
    return str(code.CodingSchemeDesignator), str(value)


def read_classification_sr(dataset) -> list[dict[str, Any]]:
    """Read back what :func:`write_classification_sr` wrote (a ``pydicom.Dataset`` or a file path).

    Returns:
        One dict per measurement group: ``sop_instance_uid`` (the classified image), ``findings`` (class names of
        the Finding evaluations; ``[]`` for "none"), ``probabilities`` ``{class: probability}``, ``refer`` (bool),
        ``refer_reason`` (str or None), ``algorithm`` ``{"name", "version"}``.

    Raises:
        DataValidationError: not a TID 1500 measurement report SR.
    """
    import pydicom

    codes = _codes()
    ds = dataset if isinstance(dataset, pydicom.Dataset) else pydicom.dcmread(dataset)
    groups = _groups(ds, "get_image_measurement_groups")
    out = []
    for group in groups:
        # Read the group's items directly: highdicom files the first "Finding" item as the group's finding type
        # and not among its qualitative evaluations.
        findings, probabilities, refer, reason, texts = [], {}, False, None, {}
        for item in group[0].ContentSequence:
            key = _code_key(item.ConceptNameCodeSequence[0])
            if item.ValueType == "CODE":
                value = item.ConceptCodeSequence[0]
                if key == ("DCM", codes.DCM.Finding.value) and _code_key(value)[0] == MEDAI_SCHEME:
                    if _code_key(value)[1] != "none":
                        findings.append(str(value.CodeMeaning))
                elif key == (MEDAI_SCHEME, "refer"):
                    refer = _code_key(value) == ("SCT", codes.SCT.Yes.value)
            elif item.ValueType == "NUM" and key[0] == MEDAI_SCHEME and key[1].startswith("p-"):
                probabilities[key[1][2:]] = float(item.MeasuredValueSequence[0].NumericValue)
            elif item.ValueType == "TEXT":
                texts[key] = str(item.TextValue)
                if key == ("DCM", codes.DCM.Comment.value):
                    reason = str(item.TextValue)
        sources = group.source_images
        out.append({
            "sop_instance_uid": sources[0].referenced_sop_instance_uid if sources else None,
            "findings": findings,
            "probabilities": probabilities,
            "refer": refer,
            "refer_reason": reason,
            "algorithm": {"name": texts.get(("DCM", codes.DCM.AlgorithmName.value)),
                          "version": texts.get(("DCM", codes.DCM.AlgorithmVersion.value))},
        })
    return out
