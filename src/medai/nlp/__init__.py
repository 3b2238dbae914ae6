"""Clinical NLP for radiology reports: sections, findings with negation and uncertainty, de-identification and
draft reports. See docs/nlp.md."""

from medai.nlp.deid import DeidMode, DeidResult, PhiSpan, PhiType, deidentify, detect_phi, patient_date_shift
from medai.nlp.draft_report import DraftReport, ImagingPrediction, draft_report, read_imaging_predictions
from medai.nlp.entities import Concept, Finding, Status, extract_findings, extract_findings_batch, summarise_findings
from medai.nlp.sections import Report, ReportCollection, Section, read_report, read_reports, split_sections, \
    split_sentences

__all__ = [
    "Concept", "DeidMode", "DeidResult", "DraftReport", "Finding", "ImagingPrediction", "PhiSpan", "PhiType",
    "Report", "ReportCollection", "Section", "Status", "deidentify", "detect_phi", "draft_report",
    "extract_findings", "extract_findings_batch", "patient_date_shift", "read_imaging_predictions", "read_report",
    "read_reports", "split_sections", "split_sentences", "summarise_findings",
]
