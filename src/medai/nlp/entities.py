"""Chest radiograph findings in report text, with negation, uncertainty and history (medSpaCy target rules + ConText).

Pipeline (built once, no model download): ``spacy.blank("en")`` → PyRuSH sentences → medSpaCy ``TargetMatcher``
with the rules of :data:`TARGET_RULES` → ConText (Harkema et al., J Biomed Inform 2009) with medSpaCy's default
English rules, minus the few that misread radiology phrasing, plus :data:`RADIOLOGY_CONTEXT_RULES`.

Matching is on lower-cased tokens with regular expressions, which stand in for lemmas (the blank pipeline has no
lemmatiser): ``effusions?`` matches "effusion" and "effusions". The IU-style ``XXXX`` de-identification
placeholder is an ordinary token: it neither matches a concept nor stops a negation scope ("No XXXX
pneumothorax" is negated).

Attribute meaning on :class:`Finding`:
    negated: stated absent now ("no", "without", "clear of", "negative for", "not seen", "has resolved",
        "no longer seen"; "no change in the effusion" and "has not resolved" are pseudo-negations: not negated).
    uncertain: hedged ("possible", "likely", "may represent", "versus", "cannot be excluded", "unlikely",
        "questionable", "borderline") or hypothetical ("evaluate for", "rule out" — requests in an indication).
    historical: a past history ("history of pneumonia").

Implicit mentions: "heart size is normal", "cardiomediastinal silhouette within normal limits" and "the heart is
not enlarged" are negated mentions of cardiomegaly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from medai.core.errors import InvalidParameterError, MissingDependencyError, invalid_parameter
from medai.nlp.sections import Report, Section, split_sections


class Concept(StrEnum):
    """Chest radiograph findings that :func:`extract_findings` recognises."""

    CARDIOMEGALY = "cardiomegaly"
    PLEURAL_EFFUSION = "pleural_effusion"
    PNEUMOTHORAX = "pneumothorax"
    OPACITY = "opacity"  # opacity, airspace disease, consolidation
    PNEUMONIA = "pneumonia"  # pneumonia, infiltrate
    ATELECTASIS = "atelectasis"
    EDEMA = "edema"
    NODULE = "nodule"  # nodule, mass, nodular opacity
    GRANULOMA = "granuloma"  # granuloma, calcified granuloma, granulomatous disease
    EMPHYSEMA = "emphysema"  # emphysema, hyperinflation, COPD
    FRACTURE = "fracture"
    SCOLIOSIS = "scoliosis"
    HERNIA = "hernia"


class Status(StrEnum):
    """A concept's status in one report (:func:`summarise_findings`)."""

    PRESENT = "present"
    ABSENT = "absent"
    UNCERTAIN = "uncertain"


#: Display names, e.g. for draft reports.
CONCEPT_DISPLAY: dict[Concept, str] = {
    Concept.CARDIOMEGALY: "Cardiomegaly", Concept.PLEURAL_EFFUSION: "Pleural effusion",
    Concept.PNEUMOTHORAX: "Pneumothorax", Concept.OPACITY: "Lung opacity / consolidation",
    Concept.PNEUMONIA: "Pneumonia / infiltrate", Concept.ATELECTASIS: "Atelectasis",
    Concept.EDEMA: "Pulmonary edema", Concept.NODULE: "Nodule / mass", Concept.GRANULOMA: "Granuloma",
    Concept.EMPHYSEMA: "Emphysema / hyperinflation", Concept.FRACTURE: "Fracture", Concept.SCOLIOSIS: "Scoliosis",
    Concept.HERNIA: "Hiatal hernia",
}

_EXCLUDED = "_not_a_finding"  # matched only so that the longest match wins over a concept's shorter rule
_SEVERITY = (r"mild(ly)?|moderate(ly)?|marked(ly)?|severe(ly)?|slight(ly)?|minimal(ly)?|massive(ly)?|"
             r"significant(ly)?|borderline|somewhat|stably|again|still")
_HEART = r"heart|cardiac|cardiomediastinal"
_HEART_PART = r"size|silhouette|shadow|contours?|sillouette"
_AND_MEDIASTINUM = ("~and", r"~mediastin(um|al)", r"~size|contours?|silhouette|width")
_BE = r"~is|are|appears?|remains|was|otherwise"


def _tokens(*tokens: str) -> list[dict[str, Any]]:
    """A spaCy Matcher pattern: each token a regex on the lower-cased text; a leading ``~`` makes it optional."""
    pattern = []
    for token in tokens:
        optional = token.startswith("~")
        regex = token[1:] if optional else token
        entry: dict[str, Any] = {"LOWER": {"REGEX": f"^(?:{regex})$"}}
        if optional:
            entry["OP"] = "?"
        pattern.append(entry)
    return pattern


#: (concept, literal, pattern, attributes): the target rules. A literal without pattern matches itself.
TARGET_RULES: tuple[tuple[str, str, list[dict[str, Any]], dict[str, Any] | None], ...] = (
    (Concept.CARDIOMEGALY, "cardiomegaly", _tokens("cardiomegaly"), None),
    (Concept.CARDIOMEGALY, "cardiac enlargement", _tokens(r"cardiac|heart", "enlargement"), None),
    (Concept.CARDIOMEGALY, "enlarged heart", _tokens("enlarged", r"heart|cardiac|cardiomediastinal",
                                                     r"~silhouette|shadow|size|contours?"), None),
    (Concept.CARDIOMEGALY, "enlargement of the cardiac silhouette",
     _tokens("enlargement", "of", "the", r"heart|cardiac", r"silhouette|shadow"), None),
    (Concept.CARDIOMEGALY, "heart is enlarged",
     _tokens(_HEART, f"~{_HEART_PART}", _BE, f"~{_SEVERITY}", "enlarged"), None),
    # Implicit negated mentions: a normal heart is the radiologist's "no cardiomegaly".
    (Concept.CARDIOMEGALY, "heart is not enlarged",
     _tokens(_HEART, f"~{_HEART_PART}", _BE, "not", "enlarged"), {"is_negated": True}),
    (Concept.CARDIOMEGALY, "heart size is normal",
     _tokens(_HEART, f"~{_HEART_PART}", *_AND_MEDIASTINUM, _BE, "~stable", "~and", r"normal|unremarkable"),
     {"is_negated": True}),
    (Concept.CARDIOMEGALY, "heart size within normal limits",
     _tokens(_HEART, f"~{_HEART_PART}", *_AND_MEDIASTINUM, _BE, "~stable", "~and", "within", "normal", "limits"),
     {"is_negated": True}),
    (Concept.CARDIOMEGALY, "normal heart size",
     _tokens("normal", "~-", r"~sized?", _HEART, _HEART_PART), {"is_negated": True}),
    (Concept.PLEURAL_EFFUSION, "pleural effusion", _tokens(r"~pleural|parapneumonic", r"effusions?"), None),
    (Concept.PLEURAL_EFFUSION, "pleural fluid", _tokens("pleural", "fluid"), None),
    (_EXCLUDED, "pericardial effusion", _tokens("pericardial", r"effusions?"), None),
    (Concept.PNEUMOTHORAX, "pneumothorax", _tokens(r"(hydro)?pneumothora(x|ces)|ptx"), None),
    (Concept.OPACITY, "opacity", _tokens(r"opacit(y|ies)|opacifications?|opacified"), None),
    (Concept.OPACITY, "airspace disease",
     _tokens(r"air|airspace", "~-", "~space", r"disease|opacit(y|ies)|consolidations?|process"), None),
    (Concept.OPACITY, "consolidation", _tokens(r"consolidations?|consolidative"), None),
    (Concept.PNEUMONIA, "pneumonia", _tokens(r"(broncho)?pneumonias?"), None),
    (Concept.PNEUMONIA, "infiltrate", _tokens(r"infiltrates?|infiltration")
     , None),
    (Concept.ATELECTASIS, "atelectasis", _tokens(r"atelectas(is|es)|atelectatic"), None),
    (Concept.EDEMA, "pulmonary edema", _tokens(r"~pulmonary|interstitial|alveolar", r"o?edema"), None),
    (Concept.NODULE, "nodule", _tokens(r"(micro)?nodules?|masses|mass|nodularity"), None),
    (Concept.NODULE, "nodular opacity", _tokens("nodular", r"opacit(y|ies)|densit(y|ies)"), None),
    (_EXCLUDED, "mass effect", _tokens("mass", "effect"), None),
    (Concept.GRANULOMA, "granuloma", _tokens(r"~calcified", r"granulomas?|granulomata"), None),
    (Concept.GRANULOMA, "granulomatous disease",
     _tokens("granulomatous", r"~disease|changes?|process|sequelae"), None),
    (Concept.EMPHYSEMA, "emphysema", _tokens(r"emphysema|emphysematous", r"~changes?"), None),
    (Concept.EMPHYSEMA, "hyperinflation",
     _tokens(r"hyper(inflation|inflated|expanded|expansion|aeration|aerated|lucency|lucent)"), None),
    (Concept.EMPHYSEMA, "copd", _tokens("copd"), None),
    (Concept.EMPHYSEMA, "chronic obstructive pulmonary disease",
     _tokens("chronic", "obstructive", r"pulmonary|lung|airway", "disease"), None),
    (Concept.FRACTURE, "fracture", _tokens(r"fractures?|fractured|fx"), None),
    (Concept.SCOLIOSIS, "scoliosis",
     _tokens(r"(dextro|levo|roto)?scoliosis|scoliotic|dextrocurvature|levocurvature"), None),
    (Concept.HERNIA, "hiatal hernia", _tokens(r"~hiatal|hiatus", r"hernias?"), None),
)

_NEG, _POSSIBLE, _HYPO, _HIST = "NEGATED_EXISTENCE", "POSSIBLE_EXISTENCE", "HYPOTHETICAL", "HISTORICAL"

#: (literal, category, direction, pattern or None, max_scope or None): radiology ConText rules added to medSpaCy's.
RADIOLOGY_CONTEXT_RULES: tuple[tuple[str, str, str, list[dict[str, Any]] | None, int | None], ...] = (
    # negation written after the finding
    ("is not seen", _NEG, "BACKWARD",
     _tokens(r"~is|are|was|were", r"~now", "not", r"~be|been", r"~clearly|definitely",
             r"seen|identified|visuali[sz]ed|demonstrated|evident|present|appreciated|noted|detected|visible"), None),
    ("is no longer seen", _NEG, "BACKWARD",
     _tokens(r"~is|are|has|have", "no", "longer", r"~be|been",
             r"seen|present|visuali[sz]ed|identified|evident|appreciated|demonstrated|visible"), None),
    ("is absent", _NEG, "BACKWARD", _tokens(r"~is|are|now", "absent"), None),
    ("has resolved", _NEG, "BIDIRECTIONAL", _tokens(r"~has|have|now|since", r"~completely|nearly", "resolved"),
     None),
    ("resolution of", _NEG, "FORWARD", _tokens(r"~interval|complete", "resolution", "of"), None),
    ("no evidence of", _NEG, "FORWARD", _tokens("no", r"~longer|new|other", "~any", r"~radiographic|definite",
                                             "evidence", r"~of|for"), None),
    # uncertainty before the finding
    ("may represent", _POSSIBLE, "FORWARD",
     _tokens(r"may|might|could|can|would", "~possibly",
             r"represent|reflect|be|indicate|include|suggest|relate|correspond"), None),
    ("possible", _POSSIBLE, "FORWARD",
     _tokens(r"possible|possibly|probable|probably|likely|questionable|suspected|suspect|equivocal|borderline"
             r"|presumed|presumably|suggestive|suggests|suggesting|poss"), None),
    ("question of", _POSSIBLE, "FORWARD", _tokens(r"question|questioned", r"of|for"), None),
    ("suspicious for", _POSSIBLE, "FORWARD",
     _tokens(r"suspicious|concerning|concern|worrisome|worry", r"for|about|of"), None),
    ("cannot exclude", _POSSIBLE, "FORWARD",
     _tokens(r"cannot|not|unable|can't", r"~to|be", r"exclude|excluding|rule"), None),
    ("cannot be excluded", _POSSIBLE, "BACKWARD",
     _tokens(r"cannot|can't|could|can", r"~not", "be", r"~entirely|completely|definitely", r"excluded|ruled"), None),
    ("is not excluded", _POSSIBLE, "BACKWARD",
     _tokens(r"~is|are|was|were", "not", r"~been|be", r"~entirely|completely|definitely", "excluded"), None),
    ("unlikely", _POSSIBLE, "BACKWARD", _tokens(r"~is|are|less|more|most|felt", r"unlikely|likely|possible"), None),
    ("versus", _POSSIBLE, "BIDIRECTIONAL", _tokens(r"versus|vs\.?"), 2),
    # requests (indications) are hypothetical
    ("evaluate for", _HYPO, "FORWARD",
     _tokens(r"evaluate|eval|evaluation|assess|assessment|check", r"~for|of"), None),
    ("to exclude", _HYPO, "FORWARD", _tokens("to", r"exclude|evaluate|assess"), None),
    # pseudo-negations: they consume the "no"/"not" inside them and modify nothing
    ("no change in", "PSEUDO", "PSEUDO",
     _tokens("no", r"~significant|interval|appreciable|substantial",
             r"change|changes|increase|decrease|progression|worsening|improvement", r"in|of|to"), None),
    ("not only", "PSEUDO", "PSEUDO", _tokens("not", "only"), None),
    ("no evidence that", "PSEUDO", "PSEUDO", _tokens("no", "evidence", "that"), None),
    ("has not resolved", "PSEUDO", "PSEUDO",
     _tokens(r"~has|have|is|are", "not", r"resolved|changed|improved|cleared|decreased"), None),
    # scope ends
    (";", _NEG, "TERMINATE", None, None),
)

#: medSpaCy default rules left out: they misread radiology phrasing ("resolved" forward only; "unlikely" as a
#: certain negation; "evaluate for", "to exclude" and "test for" as negations of what is being looked for; the
#: default "possible" rule is replaced by :data:`RADIOLOGY_CONTEXT_RULES`' broader one).
DROPPED_DEFAULT_CONTEXT_RULES = frozenset({"resolved", "unlikely", "evaluate for", "to exclude", "test for",
                                           "possible", "return"})

#: Sections whose mentions count in :func:`summarise_findings` (indication and comparison describe the question
#: or other studies, not this image).
SUMMARY_SECTIONS = (Section.IMPRESSION, Section.FINDINGS, Section.OTHER)


@dataclass(frozen=True)
class Finding:
    """One mention of a concept in a report.

    Attributes:
        concept: the :class:`Concept` value.
        text: the matched words (report text: keep it out of logs).
        section: the :class:`~medai.nlp.sections.Section` value the mention is in.
        sentence_index: 0-based sentence number within the section.
        start, end: character offsets of the mention within the section text.
        negated, uncertain, historical: see the module docstring.
    """

    concept: str
    text: str
    section: str
    sentence_index: int
    start: int
    end: int
    negated: bool
    uncertain: bool
    historical: bool

    @property
    def status(self) -> Status:
        """Negated → absent (even if also hedged: "no definite"), hedged → uncertain, else present."""
        if self.negated:
            return Status.ABSENT
        return Status.UNCERTAIN if self.uncertain else Status.PRESENT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=1)
def build_pipeline():
    """The medSpaCy pipeline (cached): PyRuSH sentences, target matcher, ConText with radiology rules."""
    try:
        import spacy
        from medspacy.context import ConTextRule
        from medspacy.target_matcher import TargetRule
        import medspacy  # noqa: F401  (registers the medspacy_* factories)
    except ImportError:
        raise MissingDependencyError("Finding extraction needs medspacy: pip install 'medspacy>=1.3'") from None
    import json
    from pathlib import Path

    nlp = spacy.blank("en")
    nlp.add_pipe("medspacy_pyrush")
    matcher = nlp.add_pipe("medspacy_target_matcher")
    matcher.add([TargetRule(literal, str(concept), pattern=pattern, attributes=attributes)
                 for concept, literal, pattern, attributes in TARGET_RULES])
    context = nlp.add_pipe("medspacy_context", config={"rules": None})
    defaults = Path(__import__("medspacy").__file__).resolve().parents[1] / "resources" / "en" / "context_rules.json"
    rules = [ConTextRule.from_dict(r) for r in json.loads(defaults.read_text())["context_rules"]
             if r["literal"] not in DROPPED_DEFAULT_CONTEXT_RULES]
    rules += [ConTextRule(literal, category, pattern=pattern, direction=direction, max_scope=max_scope)
              for literal, category, direction, pattern, max_scope in RADIOLOGY_CONTEXT_RULES]
    context.add(rules)
    return nlp


def _findings_of_doc(doc, section: str) -> list[Finding]:
    sentence_of = {}
    for index, sentence in enumerate(doc.sents):
        sentence_of[sentence.start] = index
    starts = sorted(sentence_of)
    found = []
    for ent in doc.ents:
        if ent.label_ == _EXCLUDED:
            continue
        sentence_index = max(i for s, i in sentence_of.items() if s <= ent.start) if starts else 0
        found.append(Finding(
            concept=ent.label_, text=ent.text, section=str(section), sentence_index=sentence_index,
            start=ent.start_char, end=ent.end_char, negated=bool(ent._.is_negated),
            uncertain=bool(ent._.is_uncertain or ent._.is_hypothetical), historical=bool(ent._.is_historical),
        ))
    return found


def extract_findings(report: Report | str) -> list[Finding]:
    """Mentions of chest radiograph findings in a report.

    Args:
        report: a :class:`~medai.nlp.sections.Report`, or report text (split at its section headers).

    Returns:
        The mentions, in section and text order.
    """
    return extract_findings_batch([report])[0]


def extract_findings_batch(reports: Iterable[Report | str], *, batch_size: int = 64) -> list[list[Finding]]:
    """:func:`extract_findings` for many reports (one ``nlp.pipe`` pass, faster than one call per report)."""
    items: list[tuple[int, str, str]] = []
    reports = list(reports)
    for n, report in enumerate(reports):
        if isinstance(report, str):
            sections = split_sections(report)
        elif isinstance(report, Report):
            sections = report.sections
        else:
            raise invalid_parameter("report", "extract_findings", "a Report or a str", type(report).__name__)
        items.extend((n, str(section), body) for section, body in sections.items())
    nlp = build_pipeline()
    results: list[list[Finding]] = [[] for _ in reports]
    for (n, section, _), doc in zip(items, nlp.pipe((body for _, _, body in items), batch_size=batch_size)):
        results[n].extend(_findings_of_doc(doc, section))
    return results


_RANK = {Status.PRESENT: 2, Status.UNCERTAIN: 1, Status.ABSENT: 0}


def summarise_findings(findings: Sequence[Finding]) -> dict[str, str]:
    """One status per concept for a report.

    Rules (in this order):

    1. Only mentions in the impression, the findings or unlabelled text count, and not historical ones
       ("history of pneumonia" in the indication is the question asked, not this image's finding).
    2. Within one section a positive mention beats an uncertain one, which beats a negated one: reports often
       negate one side and assert the other ("no right effusion. small left effusion") — the patient has an
       effusion.
    3. The impression wins over the findings on conflict (it is the radiologist's conclusion); unlabelled text
       counts only when neither section mentions the concept.

    Returns:
        ``{concept: "present" | "absent" | "uncertain"}`` for the concepts mentioned; concepts never mentioned
        are left out (unknown, not absent).
    """
    by_section: dict[str, dict[str, Status]] = {}
    for finding in findings:
        if not isinstance(finding, Finding):
            raise invalid_parameter("findings", "summarise_findings", "a sequence of Finding",
                                    type(finding).__name__)
        if finding.historical or finding.section not in SUMMARY_SECTIONS:
            continue
        statuses = by_section.setdefault(finding.section, {})
        current = statuses.get(finding.concept)
        if current is None or _RANK[finding.status] > _RANK[current]:
            statuses[finding.concept] = finding.status
    summary: dict[str, str] = {}
    for section in reversed(SUMMARY_SECTIONS):  # later (higher-priority) sections overwrite
        for concept, status in by_section.get(section, {}).items():
            summary[concept] = str(status)
    return {c.value: summary[c.value] for c in Concept if c.value in summary}


def check_summary(summary: Mapping[str, str], owner: str = "summary") -> dict[str, Status]:
    """Validate a ``{concept: status}`` mapping (as from :func:`summarise_findings`)."""
    if not isinstance(summary, Mapping):
        raise invalid_parameter("findings_summary", owner, "a mapping {concept: status}", type(summary).__name__)
    checked = {}
    for concept, status in summary.items():
        try:
            checked[str(concept)] = Status(status)
        except ValueError:
            raise InvalidParameterError(
                f"The status of '{concept}' in {owner} must be one of {', '.join(s.value for s in Status)}. "
                f"Got {status!r} instead."
            ) from None
    return checked
