"""A generated PHI test set: synthetic clinical notes and radiology reports with inserted PHI and gold spans.

Every note is fiction written from templates in this module; no real note or person is in it. Each template is
a realistic note layout (radiology report header, clinic note, discharge summary, telephone message, referral
letter) with slots for every PHI type of :class:`medai.nlp.deid.PhiType`; the slot values are recorded as gold
spans while the text is assembled.

**Keeping the evaluation honest (not circular).** The names, streets, cities and hospitals below exist only in
this module. The de-identifier (:mod:`medai.nlp.deid`) ships no name, street, city or hospital list at all: it must
find them from context and shape (titles, labels, credentials, street suffixes, institution words, state codes),
so recall measured here is recall on values it has never seen. Its surrogate-value lists are used only to write
replacements, never to detect. ``tests/unit/nlp/test_deid.py`` checks that none of this module's names appears in
the de-identifier's source. Templates were written to look like real notes, including cues the de-identifier
does not know (a relative named without a relation word, a hospital without an institution word, names with
lower-case particles), so some misses are expected and counted.

Scoring (:func:`score_deid`): tokens are runs of letters/digits. A gold token counts as found when any predicted
span covers it, whatever the predicted type (a name redacted as ``[ID]`` is still hidden); precision is the share
of predicted tokens that are inside a gold span. A gold span counts as found (span recall) only when all of its
tokens are covered.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from medai.core.errors import invalid_parameter
from medai.nlp.deid import PhiSpan, PhiType

_FIRST = ("Amara", "Bjorn", "Chidi", "Dolores", "Esteban", "Farida", "Goran", "Hiroshi", "Ingrid", "Jamal",
          "Kalani", "Lucia", "Mateo", "Nadia", "Oluwaseun", "Priya", "Quentin", "Rasmus", "Sofia", "Tariq", "Ulla",
          "Valentina", "Wen", "Ximena", "Yusuf", "Zofia", "Aurelio", "Beatriz", "Cormac", "Dagny", "Eitan",
          "Fiorella", "Gunnar", "Halima", "Ignacio", "Jovana", "Kwame", "Leilani", "Mireille", "Nnamdi", "Orla",
          "Pavel", "Rosalind", "Soren", "Thandiwe", "Umberto", "Vesna", "Wilhelmina", "Yasmin", "Zeynep")
_LAST = ("Okonkwo", "Lindqvist", "Haddad", "Castellanos", "Nakamura", "Petrovic", "O'Sullivan", "Abernathy",
         "McAllister", "Szymanski", "Oyelaran", "Thorsen", "Villanueva", "Kowalczyk", "Achterberg", "Mbeki-Dlamini",
         "Fairweather", "Quintero", "Rasmussen", "Delacroix", "Yamamoto", "Ivanova", "Brennan", "Adeyemi",
         "Halvorsen", "Whitcombe", "Zielinski", "Ferreira", "Gallagher", "Nwosu", "Pemberton", "Sandoval",
         "Trevelyan", "Underhill", "Vasquez", "Winterbottom", "Esposito", "Kaczmarek", "Lindgren", "Moreau",
         "de la Cruz", "van Houten")
_STREET_NAMES = ("Larkspur", "Quarry Hill", "Willowbrook", "Tamarack", "Juniper Ridge", "Old Mill", "Chestnut",
                 "Harbor View", "Bramble", "Foxglove", "Cobblestone", "Meadowlark", "Sycamore Bend", "Ironwood")
_STREET_SUFFIXES = ("Street", "St.", "Avenue", "Ave", "Road", "Rd", "Lane", "Drive", "Court", "Boulevard", "Way")
_CITIES = (("Bloomington", "IN"), ("Carmel", "IN"), ("Muncie", "IN"), ("Terre Haute", "IN"), ("Fort Wayne", "IN"),
           ("Dayton", "OH"), ("Peoria", "IL"), ("Lexington", "KY"), ("Grand Rapids", "MI"), ("Ann Arbor", "MI"),
           ("Madison", "WI"), ("Champaign", "IL"))
_HOSPITALS = ("Whitfield Memorial Hospital", "Crestview Regional Medical Center", "St. Brigid's Hospital",
              "Lakeshore Community Hospital", "Northgate Children's Hospital", "Harmon Valley Clinic",
              "Eastbrook Health System", "Riverside Imaging Center", "Sacred Heart Infirmary",
              "Pinecrest Rehabilitation Center", "Ashford General", "Bellamy County Hospital")
_DOMAINS = ("mailbox.net", "inbox-mail.com", "postbox.org", "letters.example.com")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                "November", "December")

# Each template: text with {slot} markers. Slots: pname (patient "First Last"), plf ("Last, First"), pfirst,
# plast, dr (clinician "First Last"), dr2, drlast, relname (relative first name), date, date2, age (over 89),
# mrn, acc, ssn, phone, fax, email, url, street, city (City, ST ZIP), hospital.
TEMPLATES: tuple[str, ...] = (
    "RADIOLOGY REPORT\nPatient: {plf}   MRN: {mrn}   DOB: {date}\nAccession #: {acc}   Exam date: {date2}\n"
    "Referring physician: Dr. {dr}\nEXAM: Chest, 2 views.\nINDICATION: {age}-year-old with cough.\n"
    "COMPARISON: None.\nFINDINGS: The heart size is normal. No focal consolidation, pleural effusion or "
    "pneumothorax.\nIMPRESSION: No acute cardiopulmonary process.\nElectronically signed by {dr2}, MD on {date2}.",

    "{hospital}\nDepartment of Radiology\nName: {pname}  Medical record number: {mrn}\nDate of service: {date}\n"
    "Portable AP chest. Small left pleural effusion, new since the study of {date2}. Findings were discussed with "
    "Dr. {drlast} by telephone at the time of dictation.\nRead by: {dr}, MD",

    "Clinic note — {date}\n{pname} is a {age} year old woman seen for follow-up of heart failure. She lives at "
    "{street}, {city} with her daughter {relname}, who can be reached at {phone}. Weight stable. Lungs clear. "
    "Plan: continue furosemide; chest x-ray at {hospital} next week.\n{dr}, MD",

    "DISCHARGE SUMMARY\nPatient: {pname}\nSSN: {ssn}   Account number: {acc}\nAdmitted: {date}   Discharged: {date2}"
    "\nAttending: Dr. {dr}\nHospital course: admitted with right lower lobe pneumonia, treated with ceftriaxone. "
    "Follow-up with Dr. {drlast} in two weeks. Questions: call {phone} or fax {fax}.",

    "Telephone encounter {date}: Mr. {plast} called about his chest x-ray results. Spoke with {pfirst} and "
    "reviewed that there is no pneumonia. His wife {relname} {plast} asked for a copy to be sent to {email}. "
    "Callback number {phone}. — {dr}, RN",

    "Referral letter\n{date}\nDear Dr. {drlast},\nThank you for seeing {pname} (MRN {mrn}), aged {age}, of "
    "{street}, {city}. Chest CT at {hospital} on {date2} showed a 9 mm right upper lobe nodule. Images are "
    "available at {url}.\nSincerely,\n{dr}, MD\n{hospital}",

    "ED note. Pt {pname}, {age} yo, brought by EMS from {street}, {city}. Fell at home on {date}. CXR: no "
    "pneumothorax, left 7th rib fracture. Discussed with {relname} (daughter) at bedside. Pt ID: {mrn}. "
    "Seen with Dr. {dr}.",

    "Chest radiograph {date}\nOrdering provider: {dr}\nClinical history: {age}-year-old man, shortness of breath."
    "\nFindings: Cardiomegaly with mild pulmonary edema. No pneumothorax.\nReported to {dr2} at 14:20 on {date}."
    "\nAcc: {acc}",

    "Patient portal message sent {date} to {email}: Dear {pfirst}, your chest x-ray from {date2} was normal. "
    "Please call the {hospital} radiology desk at {phone} with questions. Directions: {url}",

    "Transfer note. {pname} transferred from {hospital} on {date} for further care. Home address {street}, "
    "{city}. Emergency contact: {relname} {plast}, {phone}. Insurance member ID: {acc}. PCP: Dr. {dr}.",

    "Radiology addendum ({date}): Prior outside images from {hospital} dated {date2} were reviewed. The nodule is "
    "unchanged. {pfirst} {plast} was informed by {dr}, MD. Contact {email} for the outside report.",

    "Home health visit {date}. {pfirst} {plast} ({age} years old) was seen at {street}. Son {relname} present. "
    "Oxygen saturation 94% on room air. Will update Dr. {drlast} at {phone}.",
)

_SLOT_TYPES: dict[str, PhiType] = {
    "pname": PhiType.NAME, "plf": PhiType.NAME, "pfirst": PhiType.NAME, "plast": PhiType.NAME, "dr": PhiType.NAME,
    "dr2": PhiType.NAME, "drlast": PhiType.NAME, "relname": PhiType.NAME, "date": PhiType.DATE,
    "date2": PhiType.DATE, "age": PhiType.AGE, "mrn": PhiType.ID, "acc": PhiType.ID, "ssn": PhiType.ID,
    "phone": PhiType.PHONE, "fax": PhiType.PHONE, "email": PhiType.EMAIL, "url": PhiType.URL,
    "street": PhiType.ADDRESS, "city": PhiType.ADDRESS, "hospital": PhiType.INSTITUTION,
}


@dataclass(frozen=True)
class PhiNote:
    """A generated note: its text and gold PHI spans (offsets into ``text``)."""

    text: str
    spans: tuple[PhiSpan, ...]
    template: int


def _date(rng: random.Random) -> str:
    year, month, day = rng.randint(1995, 2024), rng.randint(1, 12), rng.randint(1, 28)
    style = rng.randrange(7)
    if style == 0:
        return f"{month:02d}/{day:02d}/{year}"
    if style == 1:
        return f"{year}-{month:02d}-{day:02d}"
    if style == 2:
        return f"{_MONTH_NAMES[month - 1]} {day}, {year}"
    if style == 3:
        return f"{day} {_MONTH_NAMES[month - 1][:3]} {year}"
    if style == 4:
        return f"{month}/{day}/{year % 100:02d}"
    if style == 5:
        return f"{_MONTH_NAMES[month - 1]} {day}"
    return f"{month}-{day}-{year}"


def _phone(rng: random.Random) -> str:
    area, mid, last = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    style = rng.randrange(3)
    return (f"({area}) {mid}-{last:04d}" if style == 0 else f"{area}-{mid}-{last:04d}" if style == 1
            else f"{area}.{mid}.{last:04d}")


def _values(rng: random.Random) -> dict[str, Callable[[], str]]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    dr_first, dr_last = rng.choice(_FIRST), rng.choice(_LAST)
    dr2 = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    relative = rng.choice(_FIRST)
    hospital = rng.choice(_HOSPITALS)
    city, state = rng.choice(_CITIES)
    zip_code = f"{rng.randint(10000, 99999)}"
    street = f"{rng.randint(1, 9999)} {rng.choice(_STREET_NAMES)} {rng.choice(_STREET_SUFFIXES)}"
    if rng.random() < 0.25:
        street += f", Apt {rng.randint(1, 40)}"
    user = f"{first.lower()}.{re.sub(r'[^a-z]', '', last.lower())}{rng.randint(1, 99)}"
    site = re.sub(r"[^a-z]", "", hospital.lower())[:14]
    return {
        "pname": lambda: f"{first} {last}", "plf": lambda: f"{last}, {first}", "pfirst": lambda: first,
        "plast": lambda: last, "dr": lambda: f"{dr_first} {dr_last}", "dr2": lambda: dr2, "drlast": lambda: dr_last,
        "relname": lambda: relative, "date": lambda: _date(rng), "date2": lambda: _date(rng),
        "age": lambda: str(rng.randint(90, 104)),
        "mrn": lambda: (f"{rng.randint(1000000, 99999999)}" if rng.random() < 0.7
                        else f"{rng.choice('ABEHKMZ')}{rng.randint(100000, 9999999)}"),
        "acc": lambda: f"{rng.choice(['RA', 'CX', 'ACC', ''])}{rng.randint(10000000, 99999999)}",
        "ssn": lambda: f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        "phone": lambda: _phone(rng), "fax": lambda: _phone(rng),
        "email": lambda: f"{user}@{rng.choice(_DOMAINS)}",
        "url": lambda: f"https://portal.{site}.org/images/{rng.randint(100000, 999999)}",
        "street": lambda: street, "city": lambda: f"{city}, {state} {zip_code}", "hospital": lambda: hospital,
    }


def generate_phi_corpus(n_notes: int, *, seed: int = 0) -> list[PhiNote]:
    """``n_notes`` synthetic notes with gold PHI spans, cycling through :data:`TEMPLATES` (reproducible).

    Within a note the patient's, clinicians' and relative's names, the address and the hospital stay the same
    wherever they recur; dates, phone numbers and ids are drawn per slot.
    """
    if isinstance(n_notes, bool) or not isinstance(n_notes, int) or n_notes < 1:
        raise invalid_parameter("n_notes", "generate_phi_corpus", "an int >= 1", n_notes)
    rng = random.Random(seed)
    notes = []
    for index in range(n_notes):
        template = index % len(TEMPLATES)
        values = _values(rng)
        parts, spans, cursor = [], [], 0
        for piece in re.split(r"(\{[a-z0-9]+\})", TEMPLATES[template]):
            if piece.startswith("{") and piece.endswith("}"):
                slot = piece[1:-1]
                value = values[slot]()
                spans.append(PhiSpan(cursor, cursor + len(value), str(_SLOT_TYPES[slot])))
                parts.append(value)
                cursor += len(value)
            else:
                parts.append(piece)
                cursor += len(piece)
        notes.append(PhiNote(text="".join(parts), spans=tuple(spans), template=template))
    return notes


@dataclass
class DeidScore:
    """Token-level recall (per gold type) and precision (per predicted type), and span-level recall."""

    token_recall: dict[str, float]
    token_precision: dict[str, float]
    span_recall: dict[str, float]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


_TOKEN = re.compile(r"[A-Za-z0-9]+")


def note_token_outcomes(text: str, gold: Sequence[PhiSpan], predicted: Sequence[PhiSpan]):
    """Per token of ``text``: (gold type or None, predicted type or None)."""
    out = []
    for token in _TOKEN.finditer(text):
        s, e = token.span()
        gold_type = next((g.type for g in gold if g.start < e and s < g.end), None)
        pred_type = next((p.type for p in predicted if p.start < e and s < p.end), None)
        out.append((gold_type, pred_type))
    return out


def score_deid(notes: Sequence[PhiNote], detect: Callable[[str], Sequence[PhiSpan]]) -> DeidScore:
    """Score a detector (``text → spans``, e.g. :func:`medai.nlp.deid.detect_phi`) on generated notes."""
    gold_tokens: dict[str, list[int]] = {}  # type -> [found, total]
    pred_tokens: dict[str, list[int]] = {}  # type -> [inside gold, total]
    span_hits: dict[str, list[int]] = {}
    for note in notes:
        predicted = list(detect(note.text))
        for gold_type, pred_type in note_token_outcomes(note.text, note.spans, predicted):
            if gold_type is not None:
                entry = gold_tokens.setdefault(gold_type, [0, 0])
                entry[0] += pred_type is not None
                entry[1] += 1
            if pred_type is not None:
                entry = pred_tokens.setdefault(pred_type, [0, 0])
                entry[0] += gold_type is not None
                entry[1] += 1
        for span in note.spans:
            tokens = [t.span() for t in _TOKEN.finditer(note.text, span.start, span.end)]
            covered = all(any(p.start < e and s < p.end for p in predicted) for s, e in tokens)
            entry = span_hits.setdefault(span.type, [0, 0])
            entry[0] += covered
            entry[1] += 1

    def ratio(table: dict[str, list[int]]) -> dict[str, float]:
        out = {k: v[0] / v[1] for k, v in sorted(table.items()) if v[1]}
        total = [sum(v[0] for v in table.values()), sum(v[1] for v in table.values())]
        out["ALL"] = total[0] / total[1] if total[1] else float("nan")
        return out

    return DeidScore(token_recall=ratio(gold_tokens), token_precision=ratio(pred_tokens),
                     span_recall=ratio(span_hits),
                     counts={"gold_tokens": {k: v[1] for k, v in gold_tokens.items()},
                             "predicted_tokens": {k: v[1] for k, v in pred_tokens.items()},
                             "gold_spans": {k: v[1] for k, v in span_hits.items()}})
