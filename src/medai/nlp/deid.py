"""Rule-based de-identification of clinical free text (HIPAA Safe Harbor categories that occur in notes).

Detected (:class:`PhiType`): person names (patients, clinicians, relatives), dates in any common format, ages over
89, identifiers (MRN, accession, account, SSN, long digit strings), phone / fax / pager numbers, e-mail addresses,
URLs, street addresses and city–state–ZIP lines, hospitals and other institutions.

How: regular expressions for the shaped types (dates, numbers, e-mail, URL, ZIP), and context plus capitalisation
for the open-ended ones — a name follows a title (Dr., Mrs.), a label ("Patient:", "signed by", "discussed with",
"daughter") or precedes a credential (", MD", ", RN"); an institution ends in a word such as Hospital, Clinic or
Medical Center. A name found once is then removed everywhere else in the same document. This module ships **no
lists of names, streets, cities or hospitals** (only titles, labels, street suffixes and US state codes), so a
name that appears with none of these cues is missed: never rely on it alone before releasing data.

Modes: ``"redact"`` replaces each span by ``[TYPE]``; ``"surrogate"`` by a fake value of the same type,
consistent within a document (the same original → the same surrogate) and reproducible under ``seed``. With
``date_shift_days`` every date is moved by that many days and written in its original format, which keeps
intervals between dates (give each patient its own offset: :func:`patient_date_shift`).

Nothing here logs or puts the original text into messages; :class:`PhiSpan` holds offsets and types only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from medai.core.errors import InvalidParameterError, invalid_parameter


class PhiType(StrEnum):
    NAME = "NAME"
    DATE = "DATE"
    AGE = "AGE"
    ID = "ID"
    PHONE = "PHONE"
    EMAIL = "EMAIL"
    URL = "URL"
    ADDRESS = "ADDRESS"
    INSTITUTION = "INSTITUTION"


class DeidMode(StrEnum):
    REDACT = "redact"
    SURROGATE = "surrogate"


@dataclass(frozen=True)
class PhiSpan:
    """A detected PHI span: ``text[start:end]`` of the *input* text, of type ``type``."""

    start: int
    end: int
    type: str


@dataclass
class DeidResult:
    """The de-identified text and the spans that were replaced (offsets into the input text)."""

    text: str
    spans: list[PhiSpan] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for span in self.spans:
            out[span.type] = out.get(span.type, 0) + 1
        return out


# --------------------------------------------------------------------------------------------------- patterns
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
          r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d\d"
_STATES = ("AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC "
           "ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY").split()
_STATE = "(?:" + "|".join(_STATES) + r"|Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|"\
    r"Florida|Georgia|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|"\
    r"Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|"\
    r"New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|"\
    r"South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming)"
_CAP = r"[A-Z][a-zA-Z'\-]*[a-z][a-zA-Z'\-]*"  # a capitalised word with at least one lower-case letter
_CAP_OR_INITIAL = rf"(?:{_CAP}|[A-Z]\.)"
_STREET_SUFFIX = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
                  r"Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Pike|Row|Alley|Loop)\.?")
_INSTITUTION_WORD = (r"(?:Hospital|Hospitals|Medical Center|Medical Centre|Health Center|Health Centre|Clinic|"
                     r"Clinics|Infirmary|Health System|Healthcare|Health Care|Medical Group|Imaging Center|"
                     r"Cancer Center|Children's|Sanatorium|Hospice|Nursing Home|Rehabilitation Center|"
                     r"Rehab Center|Surgical Center|Surgery Center|Care Center|Medical College|Health Sciences)")

_DATE_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("iso", re.compile(rf"\b({_YEAR})-(0?[1-9]|1[0-2])-(0?[1-9]|[12]\d|3[01])\b")),
    ("us", re.compile(r"\b(0?[1-9]|1[0-2])([/.\-])(0?[1-9]|[12]\d|3[01])\2((?:19|20)?\d\d)\b")),
    ("eu", re.compile(r"\b(1[3-9]|2\d|3[01])([/.\-])(0?[1-9]|1[0-2])\2((?:19|20)?\d\d)\b")),
    ("mdy_text", re.compile(rf"\b({_MONTH})\s+({_DAY}),?\s+({_YEAR})\b")),
    ("dmy_text", re.compile(rf"\b({_DAY})\s+(?:of\s+)?({_MONTH}),?\s+({_YEAR})\b")),
    ("md_text", re.compile(rf"\b({_MONTH})\s+({_DAY})\b(?!\s*(?:mg|cm|mm|ml|%))")),
    ("dm_text", re.compile(rf"\b({_DAY})\s+(?:of\s+)?({_MONTH})\b")),
    ("my_text", re.compile(rf"\b({_MONTH}),?\s+({_YEAR})\b")),
    ("my_num", re.compile(rf"\b(0?[1-9]|1[0-2])/({_YEAR})\b")),
    ("md_num", re.compile(r"(?<![\d/.])\b(0?[1-9]|1[0-2])/(0?[1-9]|[12]\d|3[01])\b(?![/\d])")),
]
_COMPACT_DATE = re.compile(rf"\b({_YEAR})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\b")

_SIMPLE_PATTERNS: list[tuple[PhiType, re.Pattern]] = [
    (PhiType.EMAIL, re.compile(r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+\b")),
    (PhiType.URL, re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+[^\s<>\".,;:)]", re.IGNORECASE)),
    (PhiType.ID, re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),  # SSN
    (PhiType.PHONE, re.compile(
        r"(?<![\w-])(?:\+?1[\s.\-]?)?(?:\(\d{3}\)\s*|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}(?:\s*(?:x|ext\.?)\s*\d{1,5})?\b")),
    (PhiType.ID, re.compile(
        r"(?i:\b(?:MRN|medical\s+record(?:\s+number)?|MR\s*#|record\s*(?:no\.?|number|#)|accession(?:\s+(?:no\.?|number))?"
        r"|acc(?:\.|ession)?\s*#|account(?:\s+(?:no\.?|number))?|acct\.?|patient\s+id|pt\s+id|encounter(?:\s+(?:no\.?|id|number))?"
        r"|visit\s+(?:no\.?|id|number)|CSN|FIN|SSN|social\s+security(?:\s+number)?|ID|health\s+plan(?:\s+(?:no\.?|number|id))?"
        r"|member\s+id|policy(?:\s+(?:no\.?|number))?|license(?:\s+(?:no\.?|number))?|device\s+serial|serial(?:\s+(?:no\.?|number))?))"
        r"\s*(?:#|:|no\.?|number)?\s*:?\s*(?P<value>[A-Z]{0,4}[\-]?\d[\dA-Z\-]{3,})\b")),
    (PhiType.ID, re.compile(r"\b(?=[A-Z\d\-]*\d{5})[A-Z]{0,3}\d[\d\-]{5,}\d\b")),  # long digit strings
    (PhiType.ADDRESS, re.compile(
        rf"\b\d{{1,6}}[ \t]+(?:[NSEW]\.?[ \t]+)?(?:{_CAP}[ \t]+){{0,3}}{_CAP}[ \t]+{_STREET_SUFFIX}(?![A-Za-z])"
        rf"(?:,?[ \t]+(?:Apt|Apartment|Suite|Ste|Unit|#)\.?[ \t]*#?[ \t]*\w+)?")),
    (PhiType.ADDRESS, re.compile(r"\b(?i:P\.?\s?O\.?\s+Box)\s+\d+\b")),
    (PhiType.ADDRESS, re.compile(rf"\b(?:{_CAP}[ \t]+){{0,2}}{_CAP},[ \t]+{_STATE}\.?[ \t]+\d{{5}}(?:-\d{{4}})?\b")),
    # "City, ST" without a ZIP: not the codes that are also credentials or words (MD, PA, ME, OR, IN, OK, HI)
    (PhiType.ADDRESS, re.compile(rf"\b(?:{_CAP}[ \t]+){{0,2}}{_CAP},[ \t]+"
                                 rf"(?:{'|'.join(s for s in _STATES if s not in ('MD', 'PA', 'ME', 'OR', 'IN', 'OK', 'HI'))})\b")),
    (PhiType.ADDRESS, re.compile(r"(?i:\bzip(?:\s+code)?:?\s*)\d{5}(?:-\d{4})?\b")),
    (PhiType.AGE, re.compile(
        r"\b(?:9\d|1[0-1]\d)(?=\s*(?:-|\s)?\s*(?:years?|yrs?|y/?o\b|yo\b|y\.o\.|-year|year-old))", re.IGNORECASE)),
    (PhiType.AGE, re.compile(r"(?i:\b(?:age[ds]?|aged)\s*:?\s*)(?P<value>9\d|1[0-1]\d)\b")),
    (PhiType.INSTITUTION, re.compile(
        rf"\b(?:(?:St\.|Saint|Mount|Mt\.|University[ \t]+of|The)[ \t]+)?(?:{_CAP}(?:[ \t]+|[ \t]*&[ \t]*|[ \t]+of[ \t]+(?:the[ \t]+)?)){{1,4}}"
        rf"{_INSTITUTION_WORD}\b(?:[ \t]+(?:of|at)[ \t]+{_CAP}(?:[ \t]+{_CAP})?)?(?:[ \t]+{_INSTITUTION_WORD}\b)?")),
    (PhiType.INSTITUTION, re.compile(
        rf"\b(?:University|College|Institute)[ \t]+of[ \t]+{_CAP}(?:[ \t]+{_CAP}){{0,3}}")),
]

_TITLES = r"(?:Dr|Drs|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Nurse|Sister|Rev|Fr|Pastor)\.?"
_CREDENTIALS = r"(?:M\.?D\.?|D\.?O\.?|R\.?N\.?|N\.?P\.?|P\.?A\.?(?:-C)?|MBBS|PhD|FRCR|FRCP|CRNA|APRN|DNP|PharmD|LPN|RT|RRT)"
_NAME_LABELS = (r"(?i:patient(?:'s)?(?:\s+name)?|pt(?:\s+name)?|name|signed(?:\s+electronically)?(?:\s+by)?|"
                r"electronically\s+signed\s+by|dictated\s+by|transcribed\s+by|reviewed\s+by|read\s+by|"
                r"interpreted\s+by|attending(?:\s+physician)?|referring(?:\s+(?:physician|provider|doctor|clinician))?|"
                r"ordering(?:\s+(?:physician|provider))?|physician|radiologist|resident|fellow|technologist|"
                r"provider|pcp|primary\s+care(?:\s+physician)?|cc|copy\s+to|discussed\s+with|d/w|spoke\s+(?:with|to)|"
                r"reported\s+to|communicated\s+to|called\s+to|paged|contact(?:ed)?|seen\s+by|seen\s+with|"
                r"consulted|accompanied\s+by|emergency\s+contact|next\s+of\s+kin|dear|thank\s+you\s+for\s+seeing|"
                r"informed|notified|visited\s+by|"
                r"(?:his|her|their|the\s+patient's|pt's)\s+(?:wife|husband|son|daughter|mother|father|brother|"
                r"sister|partner|spouse|friend|caregiver|guardian|niece|nephew|grandson|granddaughter))")
# Name tokens: capitalised words or initials, optionally "Last, First".
# Particles ("de la Fuente", "van Dijk") are allowed before a capitalised word; words are one space apart, so a
# name never runs into the next field of a header ("Name: A B  Medical record number").
_PARTICLE = r"(?:de|la|del|della|der|den|van|von|du|da|di|dos|le|bin|ibn|al|el|ter|ten)"
_NAME_WORD = rf"(?:(?:{_PARTICLE} ){{0,2}}{_CAP})"
_NAME_BODY = (rf"(?:{_NAME_WORD},[ ]{_CAP}(?:[ ]{_CAP_OR_INITIAL})?(?![ ]{_CAP})"
              rf"|{_CAP_OR_INITIAL}(?:[ ](?:{_NAME_WORD}|[A-Z]\.)){{0,3}})")
_NAME_PATTERNS = [
    re.compile(rf"\b{_TITLES}[ ]+(?P<name>{_NAME_BODY})"),
    re.compile(rf"\b{_NAME_LABELS}[ \t]*[:\-]?[ \t]*(?:{_TITLES}[ ]+)?(?P<name>{_NAME_BODY})"),
    re.compile(rf"(?P<name>\b{_CAP}(?:[ ]{_CAP_OR_INITIAL}){{0,2}}(?:[ ]{_NAME_WORD}))\s*,\s*{_CREDENTIALS}\b"),
    # a person who has an age: "A B is a 64-year-old", "A B (91 years old)", "A B, 72 yo"
    re.compile(rf"(?P<name>\b{_CAP}(?:[ ]{_CAP_OR_INITIAL}){{0,2}}(?:[ ]{_NAME_WORD}))(?:,?\s+(?:is|was)\s+an?\s+|"
               r"\s*[(,]\s*(?:aged?\s+)?)(?:\d+|[a-z]+)[\s\-]*(?:years?|yrs?|yo\b|y/o|month|week|day)"),
    re.compile(rf"(?P<name>\b{_CAP}(?:[ ]{_NAME_WORD}){{0,2}})\s+\((?i:wife|husband|son|daughter|mother|father|"
               r"brother|sister|partner|spouse|friend|caregiver|guardian|niece|nephew)\)"),
    # a relative introduced by the relation word ("Son Teodor present", "daughter Ilse at bedside")
    re.compile(rf"\b(?i:wife|husband|son|daughter|mother|father|brother|sister|partner|spouse|caregiver|"
               rf"guardian|niece|nephew|grandson|granddaughter)[ ,:]+(?P<name>{_NAME_BODY})"),
    # the subject of a clinical communication verb ("A B was informed", "A B called")
    re.compile(rf"(?P<name>\b{_CAP}(?:[ ]{_NAME_WORD}){{1,2}})\s+(?:transferred|admitted|presented|presents|"
               r"arrived|reports|reported|states|stated|denies|denied|returned|returns)\b"),
    re.compile(rf"(?P<name>\b{_CAP}(?:[ ]{_NAME_WORD}){{0,2}})\s+(?:was|were|has\s+been)\s+(?:informed|told|"
               r"notified|contacted|called|seen|examined|counseled|counselled|advised|admitted|discharged|"
               r"transferred|instructed|updated)\b"),
]
# Capitalised words that follow a name label but are not names ("Patient Name: Unknown", "seen by Cardiology").
_NOT_NAMES = frozenset("""
the a an and or of in on at to for with by from is was were be been this that these those his her their our
patient pt name unknown none unavailable not no yes male female man woman history clinical indication findings
impression report radiology cardiology neurology oncology surgery medicine emergency department service team
icu er ed or pacu clinic hospital nurse doctor physician radiologist resident fellow attending on call staff
chest heart lung lungs left right bilateral xray ct mri pet us ap pa lateral portable view views exam study
date time today yesterday tomorrow morning evening night am pm monday tuesday wednesday thursday friday saturday
sunday january february march april may june july august september october november december mrn id dob age
sex phone fax email address home work cell comparison technique family mother father son daughter wife husband
medical record records number account accession exam examination service dictation addendum dear sincerely
thank thanks please call contact hello hi regards
""".split())


def _is_name_word(word: str) -> bool:
    return word.strip(".,'-").lower() not in _NOT_NAMES


# ------------------------------------------------------------------------------------------------- detection
def detect_phi(text: str) -> list[PhiSpan]:
    """PHI spans of ``text`` (offsets into ``text``), non-overlapping, sorted by start.

    On overlap the longer span wins; on equal length the type found by the more specific rule (order of
    detection: e-mail, URL, SSN, phone, labelled id, long number, address, age, institution, date, name).
    """
    if not isinstance(text, str):
        raise invalid_parameter("text", "detect_phi", "a str", type(text).__name__)
    found: list[tuple[int, int, PhiType, int]] = []  # start, end, type, priority (lower = more specific)
    priority = 0
    for phi_type, pattern in _SIMPLE_PATTERNS:
        for match in pattern.finditer(text):
            start, end = (match.span("value") if "value" in pattern.groupindex else match.span())
            found.append((start, end, phi_type, priority))
        priority += 1
    for _, span in _find_dates(text):
        found.append((span[0], span[1], PhiType.DATE, priority))
    priority += 1
    for start, end in _find_names(text):
        found.append((start, end, PhiType.NAME, priority))
    # Longest first, then most specific: a street address beats the capitalised words inside it.
    found.sort(key=lambda f: (-(f[1] - f[0]), f[3], f[0]))
    taken: list[tuple[int, int, PhiType]] = []
    for start, end, phi_type, _ in found:
        if end <= start or any(start < e and s < end for s, e, _ in taken):
            continue
        taken.append((start, end, phi_type))
    return [PhiSpan(s, e, str(t)) for s, e, t in sorted(taken)]


def _find_dates(text: str) -> list[tuple[str, tuple[int, int]]]:
    spans: list[tuple[str, tuple[int, int]]] = []
    for kind, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            if kind in ("md_text", "dm_text") and match.group(_month_group(kind)).rstrip(".").lower() == "may":
                continue  # "may" is mostly the verb; "May 3, 2021" is caught by the patterns with a year
            if any(match.start() < e and s < match.end() for _, (s, e) in spans):
                continue
            if kind == "md_num" and not _looks_like_day_month_context(text, match.start()):
                continue
            spans.append((kind, match.span()))
    for match in _COMPACT_DATE.finditer(text):
        if not any(match.start() < e and s < match.end() for _, (s, e) in spans):
            spans.append(("compact", match.span()))
    return spans


def _month_group(kind: str) -> int:
    return 1 if kind in ("md_text", "my_text") else 2


def _looks_like_day_month_context(text: str, start: int) -> bool:
    # "3/4" alone is as often a ratio or a fraction as a date: require a date word just before it
    before = text[max(0, start - 12):start].lower()
    return bool(re.search(r"(on|since|from|until|dated?|of|dos|dob)\s*:?\s*$", before))


def _find_names(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    words: set[str] = set()
    for pattern in _NAME_PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span("name")
            parts = list(re.finditer(r"[A-Za-z][A-Za-z'\-]*\.?", text[start:end]))
            # drop leading non-name words, then stop at the first non-name word ("Jones today" -> "Jones")
            while parts and not _is_name_word(parts[0].group()):
                parts.pop(0)
            good = []
            for part in parts:
                if not _is_name_word(part.group()):
                    break
                good.append(part)
            if not good:
                continue
            s, e = start + good[0].start(), start + good[-1].end()
            if text[e - 1] == "." and len(good[-1].group()) > 2:
                e -= 1
            spans.append((s, e))
            words.update(w.group().strip(".") for w in good if len(w.group().strip(".")) > 1)
    # A name found with a cue is removed everywhere in the document ("Mr. Okafor ... Okafor agreed").
    for word in words:
        if word.lower() in _NOT_NAMES:
            continue
        for match in re.finditer(rf"\b{re.escape(word)}\b", text):
            spans.append(match.span())
    return spans


# ---------------------------------------------------------------------------------------------- replacement
_SURROGATE_FIRST = ("Alex", "Robin", "Casey", "Jordan", "Morgan", "Quinn", "Riley", "Avery", "Rowan", "Sage",
                    "Reese", "Dana", "Emery", "Harper", "Jules", "Kai", "Lane", "Marlo", "Noel", "Parker")
_SURROGATE_LAST = ("Example", "Sample", "Placeholder", "Testcase", "Doe", "Roe", "Moe", "Fakename", "Surrogate",
                   "Notreal", "Pseudonym", "Stand-in", "Dummy", "Mock", "Specimen", "Proxy", "Token", "Alias")
_SURROGATE_CITIES = ("Springfield", "Riverton", "Fairview", "Lakeside", "Greenville", "Centerville")


def patient_date_shift(patient_id: str, secret: str, *, max_days: int = 365) -> int:
    """A per-patient date offset in ``[-max_days, max_days]``, never 0, from a keyed hash (HMAC-SHA256).

    The same patient and secret always give the same offset, so every document of a patient keeps its intervals;
    without the secret the offset cannot be recomputed from the id.
    """
    if not isinstance(max_days, int) or max_days < 1:
        raise invalid_parameter("max_days", "patient_date_shift", "an int >= 1", max_days)
    digest = hmac.new(secret.encode(), str(patient_id).encode(), hashlib.sha256).digest()
    draw = int.from_bytes(digest[:8], "big") % (2 * max_days)
    return draw - max_days if draw < max_days else draw - max_days + 1  # -max_days..-1, 1..max_days


def _shift_date(original: str, kind: str, days: int) -> str | None:
    """The date ``original`` (of pattern ``kind``) moved by ``days``, in the same format; None if unparsable."""
    match = ([p for k, p in _DATE_PATTERNS if k == kind] or [_COMPACT_DATE])[0].fullmatch(original)
    if match is None:
        return None
    try:
        if kind == "iso":
            d = dt.date(int(match[1]), int(match[2]), int(match[3]))
            return (d + dt.timedelta(days)).strftime("%Y-%m-%d")
        if kind in ("us", "eu"):
            month, day = (match[1], match[3]) if kind == "us" else (match[3], match[1])
            year_text = match[4]
            year = int(year_text) + (2000 if len(year_text) == 2 and int(year_text) < 50 else
                                     1900 if len(year_text) == 2 else 0)
            d = dt.date(year, int(month), int(day)) + dt.timedelta(days)
            year_out = f"{d.year % 100:02d}" if len(year_text) == 2 else str(d.year)
            sep = match[2]
            first, second = (d.month, d.day) if kind == "us" else (d.day, d.month)
            width = 2 if (len(match[1]) == 2) else 1
            return f"{first:0{width}d}{sep}{second:0{width}d}{sep}{year_out}"
        if kind == "compact":
            d = dt.date(int(match[1]), int(match[2]), int(match[3])) + dt.timedelta(days)
            return d.strftime("%Y%m%d")
        if kind in ("mdy_text", "dmy_text", "md_text", "dm_text", "my_text", "my_num", "md_num"):
            if kind == "mdy_text":
                month, day, year = match[1], match[2], int(match[3])
            elif kind == "dmy_text":
                day, month, year = match[1], match[2], int(match[3])
            elif kind == "md_text":
                month, day, year = match[1], match[2], 2001  # no year written: any non-leap year
            elif kind == "dm_text":
                day, month, year = match[1], match[2], 2001
            elif kind == "my_text":
                month, day, year = match[1], "15", int(match[2])  # month precision: shift mid-month
            elif kind == "my_num":
                month, day, year = match[1], "15", int(match[2])
            else:
                month, day, year = match[1], match[2], 2001
            month_number = (int(month) if month.isdigit()
                            else next(i + 1 for i, m in enumerate(_MONTHS) if m.startswith(month.rstrip(".").lower()[:3])))
            d = dt.date(year, month_number, int(re.match(r"\d+", day)[0])) + dt.timedelta(days)
            name = _MONTHS[d.month - 1].capitalize()
            if kind == "mdy_text":
                return f"{name} {d.day}, {d.year}"
            if kind == "dmy_text":
                return f"{d.day} {name} {d.year}"
            if kind == "md_text":
                return f"{name} {d.day}"
            if kind == "dm_text":
                return f"{d.day} {name}"
            if kind == "my_text":
                return f"{name} {d.year}"
            if kind == "my_num":
                return f"{d.month:02d}/{d.year}"
            return f"{d.month}/{d.day}"
    except (ValueError, StopIteration):
        return None
    return None


def _date_kind(original: str) -> str:
    for kind, pattern in _DATE_PATTERNS:
        if pattern.fullmatch(original):
            return kind
    return "compact"


class _Surrogates:
    """Consistent fake values within one document: the same original (case-insensitive) → the same value."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.memory: dict[tuple[str, str], str] = {}
        self.words: dict[str, str] = {}

    def get(self, phi_type: str, original: str, make: Callable[[], str]) -> str:
        key = (phi_type, " ".join(original.lower().split()))
        if key not in self.memory:
            self.memory[key] = make()
        return self.memory[key]

    def name(self, original: str) -> str:
        # per word, so that "John Smith", "Mr. Smith" and "SMITH" share the surname's surrogate
        out = []
        for word in re.findall(r"[A-Za-z][A-Za-z'\-]*\.?|,", original):
            if word == ",":
                out[-1] += ","
                continue
            if len(word.rstrip(".")) == 1:
                out.append(word)
                continue
            key = word.rstrip(".").lower()
            if key not in self.words:
                pool = _SURROGATE_LAST if len(self.words) % 2 else _SURROGATE_FIRST
                self.words[key] = self.rng.choice(pool)
            out.append(self.words[key])
        return " ".join(out)

    def digits_like(self, original: str) -> str:
        return "".join(str(self.rng.randrange(10)) if c.isdigit() else
                       chr(ord("A") + self.rng.randrange(26)) if c.isalpha() else c for c in original)


def deidentify(
    text: str,
    *,
    mode: str = "redact",
    date_shift_days: int | None = None,
    seed: int = 0,
) -> DeidResult:
    """De-identify one document.

    Args:
        text: the document.
        mode: ``"redact"`` (``[NAME]``, ``[DATE]``, ...) or ``"surrogate"`` (consistent fake values).
        date_shift_days: move every date by this many days, keeping its format (dates that cannot be parsed
            are redacted). Default: redact mode writes ``[DATE]``; surrogate mode shifts by a random offset in
            [-365, 365] drawn from ``seed``.
        seed: seed of the surrogate values (the same seed and text give the same output).

    Returns:
        :class:`DeidResult` with the new text and the replaced spans (offsets into ``text``).
    """
    owner = "deidentify"
    try:
        mode = DeidMode(mode)
    except ValueError:
        raise invalid_parameter("mode", owner, "'redact' or 'surrogate'", mode) from None
    if date_shift_days is not None and (isinstance(date_shift_days, bool) or not isinstance(date_shift_days, int)):
        raise invalid_parameter("date_shift_days", owner, "an int number of days or None", date_shift_days)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise invalid_parameter("seed", owner, "an int", seed)
    spans = detect_phi(text)
    surrogates = _Surrogates(seed)
    shift = date_shift_days
    if shift is None and mode == DeidMode.SURROGATE:
        shift = random.Random(seed).choice([d for d in range(-365, 366) if d != 0])
    pieces, cursor = [], 0
    for span in spans:
        original = text[span.start:span.end]
        pieces.append(text[cursor:span.start])
        pieces.append(_replacement(span.type, original, mode, shift, surrogates))
        cursor = span.end
    pieces.append(text[cursor:])
    return DeidResult(text="".join(pieces), spans=spans)


def _replacement(phi_type: str, original: str, mode: DeidMode, shift: int | None, surrogates: _Surrogates) -> str:
    if phi_type == PhiType.DATE and shift is not None:
        shifted = _shift_date(original, _date_kind(original), shift)
        return shifted if shifted is not None else "[DATE]"
    if phi_type == PhiType.AGE:
        return "90+" if mode == DeidMode.SURROGATE else "[AGE]"  # Safe Harbor: ages over 89 become one group
    if mode == DeidMode.REDACT:
        return f"[{phi_type}]"
    rng = surrogates.rng
    makers: dict[str, Callable[[], str]] = {
        PhiType.ID: lambda: surrogates.digits_like(original),
        PhiType.PHONE: lambda: f"555-01{rng.randrange(100):02d}",
        PhiType.EMAIL: lambda: f"{rng.choice(_SURROGATE_FIRST).lower()}.{rng.randrange(1000)}@example.org",
        PhiType.URL: lambda: f"https://example.org/{rng.randrange(10**6)}",
        PhiType.ADDRESS: lambda: (f"{rng.randrange(1, 999)} {rng.choice(_SURROGATE_LAST)} Street"
                                  if original[:1].isdigit() else
                                  f"{rng.choice(_SURROGATE_CITIES)}, ZZ 00000"),
        PhiType.INSTITUTION: lambda: f"{rng.choice(_SURROGATE_CITIES)} General Hospital",
        PhiType.DATE: lambda: "[DATE]",
    }
    if phi_type == PhiType.NAME:
        return surrogates.get(phi_type, original, lambda: surrogates.name(original))
    if phi_type not in makers:
        raise InvalidParameterError(f"No surrogate for PHI type {phi_type!r}.")
    return surrogates.get(phi_type, original, makers[phi_type])


# ---------------------------------------------------------------------------------------------- command
def run_deid(
    input_path,
    *,
    out,
    mode: str = "redact",
    date_shift_days: int | None = None,
    seed: int = 0,
    columns: list[str] | None = None,
) -> dict[str, int]:
    """``medai deid``: de-identify a text file, or text columns of a CSV (one document per cell).

    The output is written atomically (temporary file, then rename) and never overwrites an existing file.

    Args:
        input_path: a UTF-8 text file, or a ``.csv`` (with ``columns``).
        out: the output file (same kind as the input).
        mode, date_shift_days, seed: see :func:`deidentify`.
        columns: CSV: the columns to de-identify (other columns are copied unchanged — they must hold no PHI).

    Returns:
        Detected spans per PHI type (counts only).
    """
    import io
    from pathlib import Path

    from medai.core.errors import DataValidationError, RunStateError, unknown_name
    from medai.core.outputs import write_text
    from medai.nlp.sections import _decode

    input_path, out = Path(input_path), Path(out)
    if not input_path.is_file():
        raise DataValidationError(f"Input {input_path} does not exist (or is not a file).")
    if out.exists():
        raise RunStateError(f"Output {out} already exists; de-identified files are never overwritten. Choose "
                            "another --out.")
    if out.resolve() == input_path.resolve():
        raise InvalidParameterError("--out must differ from the input file.")
    content = _decode(input_path, "utf-8")
    counts: dict[str, int] = {}

    def run(text: str) -> str:
        result = deidentify(text, mode=mode, date_shift_days=date_shift_days, seed=seed)
        for key, value in result.counts().items():
            counts[key] = counts.get(key, 0) + value
        return result.text

    if input_path.suffix.lower() == ".csv":
        import pandas as pd

        frame = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False)
        if not columns:
            raise InvalidParameterError(f"{input_path.name} is a CSV: name the text column(s) to de-identify with "
                                        f"--column. Columns: {', '.join(frame.columns)}.")
        for column in columns:
            if column not in frame.columns:
                raise unknown_name(f"column in {input_path.name}", column, frame.columns)
            frame[column] = [run(cell) for cell in frame[column]]
        write_text(out, frame.to_csv(index=False))
    else:
        if columns:
            raise InvalidParameterError("--column applies to CSV input only.")
        write_text(out, run(content))
    return counts


def add_deid_parser(subparsers):
    """Add ``deid`` to an argparse sub-parser collection (``medai deid IN --out OUT``)."""
    from pathlib import Path

    parser = subparsers.add_parser("deid", help="de-identify clinical text (rule-based; review before release)")
    parser.add_argument("input", type=Path, help="a UTF-8 text file, or a CSV with --column")
    parser.add_argument("--out", type=Path, required=True, help="output file (must not exist)")
    parser.add_argument("--mode", choices=[m.value for m in DeidMode], default="redact",
                        help="redact: [NAME], [DATE], ...; surrogate: consistent fake values")
    parser.add_argument("--date-shift-days", type=int, help="move every date by N days, keeping intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the surrogate values")
    parser.add_argument("--column", action="append", dest="columns", help="CSV: a text column to de-identify "
                        "(repeatable)")
    parser.set_defaults(handler=deid_command)
    return parser


def deid_command(args) -> int:
    counts = run_deid(args.input, out=args.out, mode=args.mode, date_shift_days=args.date_shift_days,
                      seed=args.seed, columns=args.columns)
    listed = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    print(f"De-identified text written to {args.out} (spans replaced: {listed}). Rule-based: review before "
          "release.")
    return 0
