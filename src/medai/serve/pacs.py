"""DICOMweb against a PACS (Orthanc with its DICOMweb plugin, or any QIDO-RS / WADO-RS / STOW-RS server): find
studies, retrieve their images, run a model, and store the result back into the study as a DICOM SR (and a SEG
for segmentations).

Flow of :func:`analyse_study`: WADO-RS retrieves every instance of the study → medai's own SR/SEG objects and
other non-image instances are skipped (so analysing a study twice never analyses medai's output) → each image is
read by :func:`medai.io.dicom.read_dicom` (record id = SOPInstanceUID) → ``predict_fn(records)`` gives prediction
dicts (the :mod:`medai.serve` contract) → :func:`medai.io.dicom_sr.write_classification_sr` writes one TID 1500
SR for the study (plus one SEG per series from ``segment_fn``) → STOW-RS stores them in the study.

:func:`worklist` ranks the studies a QIDO-RS search returns by predicted risk (highest first), for the clinicians'
page. Only DICOMweb is spoken: no DIMSE (C-FIND / C-MOVE / C-STORE).

Security: credentials come from the environment (``MEDAI_PACS_URL``, ``MEDAI_PACS_USER``,
``MEDAI_PACS_PASSWORD``) or the caller; the password is never part of a repr, message or log line, and messages name
studies by StudyInstanceUID only — never by patient name, patient ID or accession number.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import numbers
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from medai.core.errors import DataValidationError, InvalidParameterError, MedaiError, closest, invalid_parameter

__all__ = [
    "Pacs", "PacsConfig", "PacsError", "StudyNotFoundError", "StudyResult", "StudySummary", "WorklistEntry",
    "add_pacs_parser", "analyse_served", "analyse_study", "prediction_risk", "served_model_ref", "served_predict_fn",
    "worklist", "worklist_served",
]

logger = logging.getLogger(__name__)

ENV_URL, ENV_USER, ENV_PASSWORD = "MEDAI_PACS_URL", "MEDAI_PACS_USER", "MEDAI_PACS_PASSWORD"
_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: The QIDO-RS attributes medai asks for: no patient name, patient ID or accession number.
STUDY_FIELDS = ("StudyInstanceUID", "StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
                "StudyDescription")

PredictFn = Callable[[list], list[dict[str, Any]]]


class PacsError(MedaiError, ConnectionError):
    """The PACS could not be reached, refused the credentials, or answered with an HTTP error.

    Attributes:
        http_status: the PACS's HTTP status (None when it did not answer).
    """

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class StudyNotFoundError(PacsError, LookupError):
    """The PACS has no study with the requested StudyInstanceUID (HTTP 404)."""


def _safe_url(url: str) -> str:
    """The URL without user:password@ (never echo credentials embedded in a URL)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class PacsConfig:
    """Where the PACS's DICOMweb root is and how to log in.

    Attributes:
        url: the DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web`` (Orthanc's default root).
        username / password: HTTP basic authentication (None = no authentication). The password is left out of
            ``repr``.
        timeout_s: seconds to wait for each HTTP answer.
        max_attempts: tries per request (retried with 0.4, 0.8, ... s back-off on connection errors and HTTP
            408/429/503/504).
    """

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        parts = urlsplit(str(self.url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid_parameter("url", "PacsConfig", "an http(s) URL of the DICOMweb root (e.g. "
                                    "http://127.0.0.1:8042/dicom-web)", _safe_url(str(self.url)))
        if parts.username or parts.password:
            raise InvalidParameterError(f"PacsConfig: the URL {_safe_url(self.url)} embeds credentials; give them "
                                        f"as username/password ({ENV_USER} / {ENV_PASSWORD}) instead.")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise invalid_parameter("max_attempts", "PacsConfig", "an integer >= 1", self.max_attempts)
        if not self.timeout_s > 0:
            raise invalid_parameter("timeout_s", "PacsConfig", "a positive number of seconds", self.timeout_s)
        if (self.username is None) != (self.password is None):
            raise InvalidParameterError(f"PacsConfig: give both a user name and a password ({ENV_USER} and "
                                        f"{ENV_PASSWORD}), or neither.")

    @classmethod
    def from_env(cls, url: str | None = None, username: str | None = None, password: str | None = None,
                 timeout_s: float | None = None, environ: Mapping[str, str] | None = None) -> PacsConfig:
        """Arguments first (the CLI's flags), then ``MEDAI_PACS_URL`` / ``MEDAI_PACS_USER`` /
        ``MEDAI_PACS_PASSWORD``.

        Raises:
            InvalidParameterError: no URL given or set; a user without a password.
        """
        environ = os.environ if environ is None else environ
        url = url or environ.get(ENV_URL)
        if not url:
            raise InvalidParameterError(f"No PACS URL: pass --pacs-url or set {ENV_URL} (the DICOMweb root, e.g. "
                                        "http://127.0.0.1:8042/dicom-web).")
        return cls(url=url, username=username or environ.get(ENV_USER) or None,
                   password=password or environ.get(ENV_PASSWORD) or None,
                   timeout_s=float(timeout_s) if timeout_s is not None else 30.0)


@dataclass(frozen=True)
class StudySummary:
    """The few study attributes medai shows and logs: no patient name, patient ID or accession number.

    Attributes:
        study_instance_uid: the study's UID.
        study_date: ``YYYY-MM-DD`` or None.
        modalities: ModalitiesInStudy (e.g. ``("CR", "SR")``).
        n_instances: NumberOfStudyRelatedInstances, when the PACS gives it.
        description: StudyDescription (free text written by the modality or the PACS).
    """

    study_instance_uid: str
    study_date: str | None
    modalities: tuple[str, ...]
    n_instances: int | None
    description: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "modalities": list(self.modalities)}


def _summary(item: Mapping[str, Any]) -> StudySummary:
    import pydicom

    ds = pydicom.Dataset.from_json(dict(item))
    date = str(ds.get("StudyDate", "") or "")
    modalities = ds.get("ModalitiesInStudy", [])
    modalities = (modalities,) if isinstance(modalities, str) else tuple(str(m) for m in modalities)
    count = ds.get("NumberOfStudyRelatedInstances")
    return StudySummary(
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        study_date=f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 and date.isdigit() else None,
        modalities=modalities,
        n_instances=int(count) if count not in (None, "") else None,
        description=str(ds.get("StudyDescription", "")) or None,
    )


class Pacs:
    """A DICOMweb client (``dicomweb_client.api.DICOMwebClient`` over a requests session with basic auth) whose
    errors are medai's: :class:`PacsError` (unreachable, refused, HTTP error) and :class:`StudyNotFoundError`."""

    def __init__(self, config: PacsConfig) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        self.config = config
        session = requests.Session()
        if config.username is not None:
            session.auth = (config.username, config.password)
        self._session = session
        self._client = DICOMwebClient(url=config.url.rstrip("/"), session=session, timeout=config.timeout_s)
        # dicomweb_client retries every failed request (connection errors included) up to 5 times with
        # 2-16 s back-off: 30 s before an unreachable PACS is reported. A few short retries cover a busy PACS.
        self._client.set_http_retry_params(retry=config.max_attempts > 1, max_attempts=config.max_attempts,
                                           wait_exponential_multiplier=200)

    def __repr__(self) -> str:
        return f"Pacs({_safe_url(self.config.url)!r})"

    def _call(self, action: str, function: Callable, *args, study_uid: str | None = None, **kwargs):
        import requests

        where = _safe_url(self.config.url)
        try:
            return function(*args, **kwargs)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise PacsError(
                    f"The PACS at {where} refused the credentials (HTTP {status}) for {action}. Check "
                    f"{ENV_USER} / {ENV_PASSWORD} (or --pacs-user) and that the user may use DICOMweb.",
                    status) from None
            if status == 404 and study_uid is not None:
                raise StudyNotFoundError(
                    f"The PACS at {where} has no study {study_uid} (HTTP 404 for {action}). Search the studies "
                    "first (`medai pacs studies`) and pass a StudyInstanceUID it lists.", status) from None
            raise PacsError(f"The PACS at {where} answered HTTP {status} to {action}. Check that the URL is its "
                            "DICOMweb root (Orthanc: http://HOST:8042/dicom-web) and the PACS log.", status) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PacsError(
                f"The PACS at {where} is unreachable for {action} ({exc.__class__.__name__}). Check {ENV_URL} and "
                f"that the server runs and accepts connections from this machine (timeout {self.config.timeout_s:g} "
                "s).") from None

    def search_studies(self, filters: Mapping[str, str] | None = None, *, limit: int | None = None,
                       ) -> list[StudySummary]:
        """QIDO-RS study search.

        Args:
            filters: DICOM keywords → values as QIDO-RS takes them (``{"StudyDate": "20260101-20261231",
                "ModalitiesInStudy": "CR"}``).
            limit: the most studies to return (None = what the PACS gives).

        Raises:
            InvalidParameterError: a filter key that is not a DICOM keyword.
            PacsError: unreachable, refused or HTTP error.
        """
        from pydicom.datadict import keyword_dict, tag_for_keyword

        for key in filters or {}:
            if tag_for_keyword(str(key)) is None:
                raise InvalidParameterError(f"Unknown QIDO-RS filter '{key}': filters are DICOM keywords such as "
                                            f"StudyDate, ModalitiesInStudy, StudyInstanceUID."
                                            f"{closest(str(key), keyword_dict)}")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise invalid_parameter("limit", "Pacs.search_studies", "a positive integer or None", limit)
        found = self._call("a study search (QIDO-RS)", self._client.search_for_studies,
                           fields=list(STUDY_FIELDS), search_filters=dict(filters or {}), limit=limit)
        return [_summary(item) for item in found]

    def retrieve_study_instances(self, study_uid: str) -> list:
        """WADO-RS: every instance of the study as ``pydicom.Dataset`` (with pixel data).

        Raises:
            StudyNotFoundError: the PACS has no such study.
            PacsError: unreachable, refused or HTTP error.
        """
        _check_uid(study_uid, "study_uid", "Pacs.retrieve_study_instances")
        import pydicom

        try:
            datasets = self._call("a study retrieval (WADO-RS)", self._client.retrieve_study, study_uid,
                                  study_uid=study_uid)
        except pydicom.errors.InvalidDicomError:
            # Instances stored without the Part 10 preamble (e.g. sent by a STOW client that wrote them "like
            # the original") come back that way; dicomweb_client then refuses them. Read such parts leniently.
            datasets = self._call("a study retrieval (WADO-RS)", self._retrieve_lenient, study_uid,
                                  study_uid=study_uid)
        if not datasets:  # some servers answer an empty multipart body instead of 404
            raise StudyNotFoundError(f"The PACS at {_safe_url(self.config.url)} returned no instance for study "
                                     f"{study_uid}. Check the StudyInstanceUID.", 404)
        return list(datasets)

    def _retrieve_lenient(self, study_uid: str) -> list:
        import io
        import re

        import pydicom

        url = f"{self.config.url.rstrip('/')}/studies/{study_uid}"
        response = self._session.get(
            url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
            timeout=self.config.timeout_s)
        response.raise_for_status()
        match = re.search(r'boundary="?([^";]+)"?', response.headers.get("Content-Type", ""))
        if match is None:
            raise PacsError(f"The PACS at {_safe_url(self.config.url)} answered the retrieval of study {study_uid} "
                            "without a multipart boundary; expected multipart/related DICOM.")
        datasets = []
        for part in response.content.split(b"--" + match.group(1).encode())[1:]:
            if part.startswith(b"--"):
                break  # the closing delimiter
            _, _, body = part.partition(b"\r\n\r\n")
            datasets.append(pydicom.dcmread(io.BytesIO(body.removesuffix(b"\r\n")), force=True))
        return datasets

    def store(self, datasets: Sequence) -> list[str]:
        """STOW-RS: store ``datasets`` (all of one study); returns the SOPInstanceUIDs the PACS accepted.

        Raises:
            PacsError: unreachable, refused, HTTP error, or the PACS rejected some instances (the failed SOP
                instance UIDs are named).
        """
        if not datasets:
            return []
        studies = {str(ds.StudyInstanceUID) for ds in datasets}
        if len(studies) != 1:
            raise DataValidationError(f"Pacs.store: the datasets belong to {len(studies)} studies; STOW-RS one "
                                      "study at a time.")
        response = self._call("storing instances (STOW-RS)", self._client.store_instances,
                              [_part10(ds) for ds in datasets], study_instance_uid=studies.pop())
        failed = [str(item.get("ReferencedSOPInstanceUID", "?")) for item in response.get("FailedSOPSequence", [])]
        if failed:
            raise PacsError(f"The PACS at {_safe_url(self.config.url)} rejected {len(failed)} instance(s): "
                            f"{', '.join(failed[:5])}. See the PACS log for the reason.")
        return [str(item.ReferencedSOPInstanceUID) for item in response.get("ReferencedSOPSequence", [])]


def _part10(ds):
    """The dataset as a DICOM Part 10 file (preamble, 'DICM', file meta), re-read.

    dicomweb_client writes each dataset "like the original": one made in memory (highdicom's SR and SEG, generated
    images) would be sent without preamble, stored so by Orthanc, and then refused by dicomweb_client's own WADO-RS
    reader.
    """
    import io

    import pydicom

    with io.BytesIO() as buffer:
        ds.save_as(buffer, enforce_file_format=True)
        return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _check_uid(uid: str, name: str, owner: str) -> None:
    import re

    if not isinstance(uid, str) or len(uid) > 64 or re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+", uid) is None:
        raise invalid_parameter(name, owner, "a DICOM UID (digits and dots, at most 64 characters)", uid)


# ------------------------------------------------------------------------------------------------ analysis
def _is_medai_output_or_non_image(ds) -> str | None:
    """Why an instance is not analysed (None = it is an image to analyse)."""
    from highdicom.sr import SOP_CLASS_UIDS as SR_CLASSES

    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class in SR_CLASSES:
        return "structured report"
    if sop_class == _SEG_STORAGE:
        return "segmentation"
    if "PixelData" not in ds:
        return "no pixel data"
    return None


def _records(images: Sequence) -> list:
    """Datasets → medai records through the file reader (one code path for files and PACS instances)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from medai.io.dicom import read_dicom

    records = []
    with tempfile.TemporaryDirectory(prefix="medai-pacs-") as folder:
        for i, ds in enumerate(images):
            path = Path(folder) / f"instance-{i}.dcm"
            if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
                ds = ds.copy()
                ds.file_meta = FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(path, enforce_file_format=True)
            record = read_dicom(path)
            # The temporary path is gone after this block; say where the image came from instead.
            records.append(dataclasses.replace(record, meta={**record.meta, "source": f"dicomweb:{record.id}"}))
    return records


@dataclass
class StudyResult:
    """What :func:`analyse_study` did.

    Attributes:
        study_instance_uid: the study.
        predictions: one prediction dict per analysed image (``id`` = its SOPInstanceUID).
        n_images: images analysed; ``skipped``: ``{reason: count}`` of instances not analysed.
        sr_sop_instance_uid / seg_sop_instance_uids: the objects written (stored unless ``store=False``).
        stored: the SOPInstanceUIDs the PACS accepted.
        risk: the study's risk (the highest image risk, see :func:`prediction_risk`); decision of that image;
        refer: True when any image is to be referred.
    """

    study_instance_uid: str
    predictions: list[dict[str, Any]]
    n_images: int
    skipped: dict[str, int]
    sr_sop_instance_uid: str | None
    seg_sop_instance_uids: list[str]
    stored: list[str]
    risk: float | None
    decision: Any
    refer: bool
    sr: Any = field(default=None, repr=False)
    segs: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("sr", "segs")}


def prediction_risk(prediction: Mapping[str, Any], negative_class: str | None = None) -> float | None:
    """One number to rank by: binary P(positive class); multi-class / multi-label the highest probability among
    classes other than ``negative_class`` (all classes when None); None when the prediction has no probability
    (an unusable image)."""
    value = prediction.get("probability")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Mapping):
        values = [float(v) for k, v in value.items() if k != negative_class and v is not None]
        return max(values) if values else None
    return None


def _check_predictions(predictions: Any, records: Sequence, study_uid: str) -> list[dict[str, Any]]:
    ids = [record.id for record in records]
    if not isinstance(predictions, list) or len(predictions) != len(records):
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise DataValidationError(f"Study {study_uid}: predict_fn must return one prediction dict per record "
                                  f"({len(records)}); got {got}.")
    unknown = [str(p.get("id")) for p in predictions if str(p.get("id")) not in ids]
    if unknown:
        raise DataValidationError(f"Study {study_uid}: predict_fn returned ids that are no record id "
                                  f"(SOPInstanceUID): {unknown[:3]}. Keep each record's id in its prediction.")
    return predictions


def analyse_study(
    pacs: Pacs,
    study_uid: str,
    predict_fn: PredictFn,
    *,
    model: Mapping[str, Any],
    segment_fn: Callable[[list], Sequence] | None = None,
    segment=None,
    store: bool = True,
) -> StudyResult:
    """Retrieve a study, predict on its images, write the result as an SR (and SEG), and store it back.

    Args:
        pacs: the PACS.
        study_uid: StudyInstanceUID.
        predict_fn: ``records → prediction dicts`` (one per record, ``id`` kept), e.g. :func:`served_predict_fn`.
        model: the model dict of the predictions (``id``, ``version``, ``sha256``, and ``positive_class`` for
            binary models; :func:`served_model_ref`).
        segment_fn: optional ``records → masks``, one binary ``(rows, cols)`` mask per record; written as one
            DICOM SEG per source series. Segmentation predictions (:mod:`medai.serve.segment`, as from
            :func:`served_predict_fn` of a segmentation model) carry their masks themselves: then the SEGs are
            written from those, and the SR holds each image's area and referral, pointing into its SEG frame
            (:func:`medai.io.dicom_sr.write_segmentation_sr`) instead of class probabilities.
        segment: the :class:`medai.io.dicom_seg.SegmentCoding` of the SEG (default: a lesion).
        store: False = write the objects but do not STOW them (a preview; the worklist uses it).

    Returns:
        :class:`StudyResult`.

    Raises:
        StudyNotFoundError / PacsError: see :class:`Pacs`.
        DataValidationError: the study has no image to analyse (only SR, SEG or other non-image objects: the
            counts are named); ``predict_fn`` broke the contract; a mask does not fit its image.
    """
    from medai.io.dicom_sr import write_classification_sr, write_segmentation_sr
    from medai.serve.segment import MASK_KEY, public

    datasets = pacs.retrieve_study_instances(study_uid)
    images, skipped = [], {}
    for ds in datasets:
        reason = _is_medai_output_or_non_image(ds)
        if reason is None:
            images.append(ds)
        else:
            skipped[reason] = skipped.get(reason, 0) + 1
    if not images:
        listed = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        raise DataValidationError(f"Study {study_uid} has no image instance to analyse ({listed}). medai analyses "
                                  "image objects; structured reports and segmentations (medai's own included) are "
                                  "skipped.")
    records = _records(images)
    predictions = _check_predictions(predict_fn(records), records, study_uid)
    if predictions and all(MASK_KEY in p for p in predictions):
        masks = [p[MASK_KEY] for p in predictions]
        predictions = [public(p) for p in predictions]
        segs = _segmentations(images, records, lambda _: masks, model, segment)
        sr = write_segmentation_sr(images, predictions, model, segs)
    else:
        scored = [p for p in predictions if p.get("probability") is not None]
        sr = write_classification_sr(images, scored, model) if scored else None
        segs = _segmentations(images, records, segment_fn, model, segment) if segment_fn is not None else []
    objects = ([sr] if sr is not None else []) + segs
    stored = pacs.store(objects) if store and objects else []
    negative = (model.get("negative_class") if isinstance(model, Mapping) else None)
    risks = [(prediction_risk(p, negative), p) for p in predictions]
    ranked = [(r, p) for r, p in risks if r is not None]
    top = max(ranked, key=lambda pair: pair[0]) if ranked else (None, {})
    if not ranked and segs:  # a segmentation: the study's finding is the structure when any image has it
        found = [p for p in predictions if p.get("decision") not in (None, "none")]
        top = (None, found[0] if found else {"decision": "none"})
    logger.info("analysed study %s: %d image(s), %d skipped, stored %d object(s)", study_uid, len(images),
                sum(skipped.values()), len(stored))
    return StudyResult(
        study_instance_uid=study_uid, predictions=predictions, n_images=len(images), skipped=skipped,
        sr_sop_instance_uid=str(sr.SOPInstanceUID) if sr is not None else None,
        seg_sop_instance_uids=[str(s.SOPInstanceUID) for s in segs], stored=stored, risk=top[0],
        decision=top[1].get("decision"), refer=any(bool(p.get("refer")) for p in predictions), sr=sr, segs=segs)


def _segmentations(images: Sequence, records: Sequence, segment_fn: Callable, model: Mapping[str, Any],
                   segment=None) -> list:
    """One SEG per source series from ``segment_fn``'s per-image masks."""
    import numpy as np
    import pydicom

    from medai.io.dicom_seg import LESION, write_dicom_seg

    masks = list(segment_fn(list(records)))
    if len(masks) != len(images):
        raise DataValidationError(f"segment_fn must return one mask per image ({len(images)}); got {len(masks)}.")
    by_series: dict[str, list[int]] = {}
    for i, ds in enumerate(images):
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append(i)
    segs = []
    with tempfile.TemporaryDirectory(prefix="medai-seg-") as folder:
        for n, indices in enumerate(by_series.values()):
            mask = np.stack([np.asarray(masks[i]).reshape(np.asarray(masks[i]).shape[-2:]) for i in indices])
            path = write_dicom_seg(mask.astype(np.uint8), Path(folder) / f"seg-{n}.dcm",
                                   source_images=[images[i] for i in indices], segment=segment or LESION,
                                   model_name=str(model.get("id", "model")), model_version=str(model.get("version")),
                                   series_description=f"medai {model.get('id', 'model')}"[:64])
            segs.append(pydicom.dcmread(path))
    return segs


@dataclass
class WorklistEntry:
    """One study of the worklist: its summary, risk (None when it could not be scored), decision, referral."""

    study: StudySummary
    risk: float | None
    decision: Any
    refer: bool
    n_images: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.study.to_dict(), "risk": self.risk, "decision": self.decision, "refer": self.refer,
                "n_images": self.n_images, "error": self.error}


def worklist(pacs: Pacs, predict_fn: PredictFn, limit: int = 20, *, model: Mapping[str, Any],
             filters: Mapping[str, str] | None = None, store: bool = False) -> list[WorklistEntry]:
    """The studies a QIDO-RS search returns, each scored by ``predict_fn``, sorted by risk (highest first).

    Studies that cannot be scored (no image instance, unusable images) come last with the reason in ``error``
    — they still need a reader. Ties keep the PACS's order.

    Args:
        limit: the most studies to score (each study is retrieved and predicted on: keep it small).
        store: also store each study's SR (False: the worklist only reads).
    """
    entries = []
    for study in pacs.search_studies(filters, limit=limit):
        try:
            result = analyse_study(pacs, study.study_instance_uid, predict_fn, model=model, store=store)
        except DataValidationError as exc:
            entries.append(WorklistEntry(study, None, None, True, 0, error=str(exc)))
            continue
        entries.append(WorklistEntry(study, result.risk, result.decision, result.refer, result.n_images))
    entries.sort(key=lambda e: (e.risk is None, -(e.risk or 0.0)))
    return entries


# ------------------------------------------------------------------------------------------------ served models
def served_model_ref(model) -> dict[str, str]:
    """The SR's model dict for a :class:`medai.serve.models.ServedModel`: its ``ref`` plus, for binary models,
    ``positive_class`` / ``negative_class`` (the probability is P(class_names[1]))."""
    ref = dict(model.ref)
    names = list(model.predictor.task.get("class_names") or [])
    if str(model.kind) == "binary" and len(names) == 2:
        ref.update(negative_class=str(names[0]), positive_class=str(names[1]))
    return ref


def analyse_served(pacs: Pacs, study_uid: str, model, *, store: bool = True) -> StudyResult:
    """:func:`analyse_study` with a served model: classification → SR; segmentation → SEG + SR of areas."""
    segment = None
    if model.modality == "segmentation":
        from medai.serve.segment import segment_coding

        segment = segment_coding(model)
    return analyse_study(pacs, study_uid, served_predict_fn(model), model=served_model_ref(model), segment=segment,
                         store=store)


def worklist_served(pacs: Pacs, model, limit: int = 20, *,
                    filters: Mapping[str, str] | None = None) -> list[WorklistEntry]:
    """:func:`worklist` ranked by a served classification model."""
    if model.modality == "segmentation":
        raise InvalidParameterError(f"Model '{model.id}' is a segmentation model: the worklist ranks studies by a "
                                    "classification model's predicted risk. Analyse studies one by one with it "
                                    "instead (POST /pacs/studies/{uid}/analyse, medai pacs analyse).")
    return worklist(pacs, served_predict_fn(model), limit, model=served_model_ref(model), filters=filters)


def served_predict_fn(model) -> PredictFn:
    """``records → prediction dicts`` for an image classification or segmentation
    :class:`medai.serve.models.ServedModel`, the same path as the API (:func:`medai.serve.predict.to_prediction`;
    :func:`medai.serve.segment.segment_records`, masks kept for the SEG)."""
    from medai.serve.predict import to_prediction

    if model.modality == "segmentation":
        from medai.serve.segment import segment_records

        return lambda records: segment_records(model, records, explain=False)
    if model.modality != "image" or str(model.kind) not in ("binary", "multiclass", "multilabel"):
        raise InvalidParameterError(f"Model '{model.id}' is a {model.kind} {model.modality} model; PACS analysis "
                                    "takes image classification and segmentation models.")

    def predict(records: list) -> list[dict[str, Any]]:
        with model.lock:
            frame, notes = model.predictor.predict_records(records)
        predictions = [to_prediction(model, row) for row in frame.to_dict(orient="records")]
        for prediction, record_notes in zip(predictions, notes, strict=True):
            prediction["warnings"] = list(record_notes)
        return predictions

    return predict


# ------------------------------------------------------------------------------------------------ CLI
def add_pacs_parser(subparsers) -> argparse.ArgumentParser:
    """``medai pacs studies | analyse STUDY_UID | worklist`` (credentials from flags or MEDAI_PACS_*)."""
    parser = subparsers.add_parser("pacs", help="query a PACS over DICOMweb, analyse studies, store DICOM SR back")
    parser.add_argument("--pacs-url", help=f"DICOMweb root (default: ${ENV_URL})")
    parser.add_argument("--pacs-user", help=f"HTTP basic user (default: ${ENV_USER}); the password is read from "
                                            f"${ENV_PASSWORD} only, never from the command line")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP answer (default 30)")
    actions = parser.add_subparsers(dest="pacs_action", required=True)
    studies = actions.add_parser("studies", help="list studies (UID, date, modalities, instances, description)")
    studies.add_argument("--filter", action="append", default=[], metavar="KEYWORD=VALUE",
                         help="QIDO-RS filter, e.g. StudyDate=20260101-20261231 (repeatable)")
    studies.add_argument("--limit", type=int, default=50)
    analyse = actions.add_parser("analyse", help="predict on a study's images and store an SR (and a SEG for "
                                                 "segmentation models) back")
    analyse.add_argument("study_uid")
    analyse.add_argument("--model", required=True, type=Path, help="a run folder or its model/ folder")
    analyse.add_argument("--no-store", action="store_true", help="do not store the SR in the PACS")
    analyse.add_argument("--out", type=Path, help="also write the SR to this file")
    ranked = actions.add_parser("worklist", help="studies sorted by predicted risk")
    ranked.add_argument("--model", required=True, type=Path)
    ranked.add_argument("--filter", action="append", default=[], metavar="KEYWORD=VALUE")
    ranked.add_argument("--limit", type=int, default=20)
    parser.set_defaults(handler=run_pacs_command)
    return parser


def _filters(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise invalid_parameter("--filter", "medai pacs", "KEYWORD=VALUE (e.g. ModalitiesInStudy=CR)", item)
        out[key.strip()] = value.strip()
    return out


def _load_model(path: Path):
    from medai.serve.models import load_served_model

    model_dir = path / "model" if (path / "model").is_dir() else path
    if not model_dir.is_dir():
        raise InvalidParameterError(f"--model {path}: not a run folder or model/ folder.")
    return load_served_model(model_dir)


def run_pacs_command(args: argparse.Namespace) -> int:
    """The handler of ``medai pacs``: prints JSON on stdout; errors propagate to the CLI's one-line handler."""
    config = PacsConfig.from_env(url=args.pacs_url, username=args.pacs_user, timeout_s=args.timeout)
    pacs = Pacs(config)
    if args.pacs_action == "studies":
        out: Any = [s.to_dict() for s in pacs.search_studies(_filters(args.filter), limit=args.limit)]
    elif args.pacs_action == "analyse":
        model = _load_model(args.model)
        result = analyse_served(pacs, args.study_uid, model, store=not args.no_store)
        if args.out is not None and result.sr is not None:
            from medai.io.dicom_seg import _save_atomic

            _save_atomic(result.sr, args.out)
        out = result.to_dict()
    else:
        model = _load_model(args.model)
        out = [e.to_dict() for e in worklist_served(pacs, model, args.limit, filters=_filters(args.filter))]
    json.dump(out, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0
