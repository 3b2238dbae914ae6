"""Radiology reports: sections, sentences and reading reports from text files and CSV tables.

A report is split into sections at known headers ("FINDINGS:", "IMPRESSION:", "Clinical history:", ...; see
:data:`SECTION_HEADERS`) — a header counts only when it is one of those names followed by a colon, at the start of
a line or written in capitals, so "Note: ..." or "ratio: 0.5" never start a section. Text before the first header
is :attr:`Section.OTHER`. Sentences come from medSpaCy's PyRuSH splitter (rule-based, no model download).

Reading CSV tables (:func:`read_reports`): either one column holds the whole report (``text=``, split at headers)
or one column per section (``findings`` / ``impression`` / ... detected by name, or given as ``section_columns``).
Errors name the file, the column and the row numbers — never the note text.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from medai.core.errors import (
    DataValidationError, InvalidParameterError, MissingDependencyError, invalid_parameter, unknown_name,
)

logger = logging.getLogger(__name__)

_LISTED = 10  # row numbers named in an error message before "..."


class Section(StrEnum):
    """Sections of a radiology report, in reading order."""

    INDICATION = "indication"
    COMPARISON = "comparison"
    TECHNIQUE = "technique"
    FINDINGS = "findings"
    IMPRESSION = "impression"
    OTHER = "other"  # text before the first header, or a report without headers


class OnInvalid(StrEnum):
    RAISE = "raise"
    SKIP = "skip"


#: Header names (lower case, without the colon) and the section they open.
SECTION_HEADERS: dict[str, Section] = {
    "indication": Section.INDICATION, "indications": Section.INDICATION,
    "clinical indication": Section.INDICATION, "history": Section.INDICATION,
    "clinical history": Section.INDICATION, "clinical information": Section.INDICATION,
    "reason for exam": Section.INDICATION, "reason for examination": Section.INDICATION,
    "reason for study": Section.INDICATION, "clinical details": Section.INDICATION,
    "comparison": Section.COMPARISON, "comparisons": Section.COMPARISON, "prior studies": Section.COMPARISON,
    "technique": Section.TECHNIQUE, "examination": Section.TECHNIQUE, "exam": Section.TECHNIQUE,
    "procedure": Section.TECHNIQUE, "views": Section.TECHNIQUE,
    "findings": Section.FINDINGS, "finding": Section.FINDINGS, "report": Section.FINDINGS,
    "impression": Section.IMPRESSION, "impressions": Section.IMPRESSION, "conclusion": Section.IMPRESSION,
    "conclusions": Section.IMPRESSION, "summary": Section.IMPRESSION, "opinion": Section.IMPRESSION,
}

_HEADER_NAMES = "|".join(sorted((re.escape(h).replace(r"\ ", r"\s+") for h in SECTION_HEADERS),
                                key=len, reverse=True))
# A header at the start of a line (any case) or, mid-line, in capitals ("... FINDINGS: ..."): reports pasted
# from a RIS often lose their line breaks, but a mid-sentence "history:" in lower case is prose.
_HEADER = re.compile(
    rf"(?:^[ \t]*(?P<line>{_HEADER_NAMES})[ \t]*:)|(?:(?<![A-Za-z])(?P<caps>{_HEADER_NAMES})[ \t]*:)",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Report:
    """One radiology report.

    Attributes:
        id: the report's id (the CSV id column, the file name, or ``row-<n>``).
        sections: section → text, in reading order; only sections that have text.
        source: the file the report was read from, or None.
    """

    id: str
    sections: dict[Section, str]
    source: str | None = None

    @classmethod
    def from_text(cls, text: str, id: str = "report", source: str | None = None) -> Report:
        """Split ``text`` at its section headers (see :func:`split_sections`)."""
        return cls(id=id, sections=split_sections(text), source=source)

    @property
    def text(self) -> str:
        """The report written back with one ``HEADER:`` line per section (OTHER without header)."""
        parts = []
        for section, body in self.sections.items():
            parts.append(body if section == Section.OTHER else f"{section.value.upper()}: {body}")
        return "\n".join(parts)

    def is_empty(self) -> bool:
        return not any(body.strip() for body in self.sections.values())


@dataclass
class ReportCollection:
    """The reports read from one file and what was skipped (``on_invalid="skip"``).

    Attributes:
        reports: the reports with text, in file order.
        source: the file read.
        skipped_rows: 1-based data-row numbers (header excluded) of reports skipped because they had no text.
    """

    reports: list[Report]
    source: str
    skipped_rows: list[int] = field(default_factory=list)

    def __iter__(self) -> Iterator[Report]:
        return iter(self.reports)

    def __len__(self) -> int:
        return len(self.reports)

    def __getitem__(self, index: int) -> Report:
        return self.reports[index]

    def by_id(self, report_id: str) -> Report:
        for report in self.reports:
            if report.id == str(report_id):
                return report
        raise unknown_name(f"report id in {self.source}", str(report_id), [r.id for r in self.reports[:200]])


def split_sections(text: str) -> dict[Section, str]:
    """Split a report into sections at its headers.

    Args:
        text: the report text.

    Returns:
        Section → text (stripped; repeated sections joined with a space), in the order sections first appear;
        sections with no text are left out. A report without headers is one ``OTHER`` section.
    """
    if not isinstance(text, str):
        raise invalid_parameter("text", "split_sections", "a str", type(text).__name__)
    sections: dict[Section, list[str]] = {}
    current, start = Section.OTHER, 0
    for match in _HEADER.finditer(text):
        if match.group("line") is None and not match.group("caps").isupper():
            continue
        sections.setdefault(current, []).append(text[start:match.start()])
        header = re.sub(r"\s+", " ", (match.group("line") or match.group("caps")).lower())
        current, start = SECTION_HEADERS[header], match.end()
    sections.setdefault(current, []).append(text[start:])
    joined = {s: " ".join(p.strip() for p in parts if p.strip()) for s, parts in sections.items()}
    return {s: body for s, body in joined.items() if body}


@lru_cache(maxsize=1)
def _sentence_pipeline():
    try:
        import spacy
        from medspacy.sentence_splitting import PyRuSHSentencizer  # noqa: F401  (registers the factory)
    except ImportError:
        raise MissingDependencyError("Sentence splitting needs medspacy: pip install 'medspacy>=1.3'") from None
    nlp = spacy.blank("en")
    nlp.add_pipe("medspacy_pyrush")
    return nlp


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence boundaries of ``text`` by PyRuSH (medSpaCy's rule-based splitter).

    Returns:
        ``[(start, end), ...]`` character offsets into ``text`` of each sentence, whitespace trimmed.
    """
    doc = _sentence_pipeline()(text)
    spans = []
    for sentence in doc.sents:
        body = sentence.text
        start = sentence.start_char + (len(body) - len(body.lstrip()))
        end = sentence.start_char + len(body.rstrip())
        if end > start:
            spans.append((start, end))
    return spans


# ------------------------------------------------------------------------------------------------- reading
def _decode(path: Path, encoding: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DataValidationError(
            f"{path} is not valid {encoding}: byte 0x{data[error.start]:02x} at byte offset {error.start} cannot be "
            f"decoded. Re-save the file as UTF-8 (e.g. `iconv -f cp1252 -t utf-8 {path.name} > fixed.csv`), or "
            "pass the file's real encoding (encoding='cp1252' / 'latin-1')."
        ) from None
    except LookupError:
        raise invalid_parameter("encoding", "read_reports", "a Python codec name such as 'utf-8'", encoding) from None


def read_report(path: str | Path, *, id: str | None = None, encoding: str = "utf-8") -> Report:
    """Read one report from a text file (sections split at headers).

    Args:
        path: a UTF-8 text file.
        id: the report id (default: the file name without suffix).
        encoding: the file's text encoding.

    Raises:
        DataValidationError: the file is missing, not decodable with ``encoding``, or has no text.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"Report file {path} does not exist (or is not a file).")
    report = Report.from_text(_decode(path, encoding), id=id or path.stem, source=str(path))
    if report.is_empty():
        raise DataValidationError(f"Report file {path} has no text. Check that it is the right file.")
    return report


def read_reports(
    path: str | Path,
    *,
    text: str | None = None,
    section_columns: Mapping[str, str] | None = None,
    id: str | None = None,
    on_invalid: str = "raise",
    encoding: str = "utf-8",
) -> ReportCollection:
    """Read reports from a CSV table.

    Args:
        path: a CSV file (UTF-8 by default).
        text: the column holding whole reports (split at their headers). Exclusive with ``section_columns``.
        section_columns: section name → column, e.g. ``{"findings": "findings", "impression": "impression"}``.
            When neither ``text`` nor ``section_columns`` is given, columns named like a section (``indication``,
            ``comparison``, ``technique``, ``findings``, ``impression``, case-insensitive) are used.
        id: the report id column; default ``id``, ``uid``, ``report_id`` or ``note_id`` when present, else
            ``row-<n>`` (1-based data row).
        on_invalid: a report with no text in any used column: ``"raise"`` (default) or ``"skip"`` (counted in
            :attr:`ReportCollection.skipped_rows` and logged as a count).
        encoding: the file's text encoding.

    Raises:
        DataValidationError: missing or undecodable file, no usable column, duplicate ids, empty reports with
            ``on_invalid="raise"``.
        UnknownNameError: a named column is not in the file.
        InvalidParameterError: both ``text`` and ``section_columns``, an unknown section name or ``on_invalid``.
    """
    import pandas as pd

    owner = "read_reports"
    path = Path(path)
    try:
        on_invalid = OnInvalid(on_invalid)
    except ValueError:
        raise invalid_parameter("on_invalid", owner, "'raise' or 'skip'", on_invalid) from None
    if text is not None and section_columns is not None:
        raise InvalidParameterError(f"{owner}: give either 'text' (one column with whole reports) or "
                                    "'section_columns' (one column per section), not both.")
    if not path.is_file():
        raise DataValidationError(f"Report table {path} does not exist (or is not a file).")
    content = _decode(path, encoding)
    try:
        frame = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        # pandas' message names line numbers and counts only, never cell content
        raise DataValidationError(f"{path} is not a readable CSV table ({error}). Check the delimiter and "
                                  "quoting.") from None
    columns = list(frame.columns)

    def need(column: str) -> str:
        if column not in frame.columns:
            raise unknown_name(f"column in {path.name}", column, columns)
        return column

    if text is not None:
        used = {None: need(text)}
    elif section_columns is not None:
        used = {}
        for name, column in section_columns.items():
            try:
                used[Section(str(name).lower())] = need(column)
            except ValueError:
                raise invalid_parameter("section_columns", owner, f"keys among {[s.value for s in Section]}",
                                        name) from None
    else:
        lowered = {c.lower(): c for c in columns}
        used = {s: lowered[s.value] for s in Section if s.value in lowered}
        if not used:
            raise DataValidationError(
                f"{path} has no report column: expected a column per section ({', '.join(s.value for s in Section)})"
                f" or pass text=COLUMN for a column with whole reports. Columns: {', '.join(columns)}."
            )
    if id is not None:
        id_column = need(id)
    else:
        id_column = next((c for c in columns if c.lower() in ("id", "uid", "report_id", "note_id")), None)
    ids = (frame[id_column].astype(str).tolist() if id_column is not None
           else [f"row-{i + 1}" for i in range(len(frame))])
    duplicated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if duplicated:
        rows = [n + 1 for n, i in enumerate(ids) if i in set(duplicated)]
        raise DataValidationError(f"Column '{id_column}' of {path} has repeated ids (data rows "
                                  f"{_rows(rows)}); report ids must be unique. Fix the ids or pass another id=.")

    reports, empty = [], []
    for n in range(len(frame)):
        if None in used:
            report = Report.from_text(frame.iat[n, columns.index(used[None])], id=ids[n], source=str(path))
        else:
            sections = {}
            for section, column in used.items():
                body = " ".join(frame.iat[n, columns.index(column)].split())
                if body:
                    sections[section] = body
            report = Report(id=ids[n], sections=sections, source=str(path))
        if report.is_empty():
            empty.append(n + 1)
        else:
            reports.append(report)
    if empty and on_invalid == OnInvalid.RAISE:
        raise DataValidationError(
            f"{len(empty)} of {len(frame)} reports in {path} have no text in column(s) "
            f"{', '.join(repr(c) for c in used.values())} (data rows {_rows(empty)}). Fill them, or pass "
            "on_invalid='skip' (--on-invalid skip) to leave them out and count them."
        )
    if empty:
        logger.warning("%s: skipped %d of %d reports with no text.", path.name, len(empty), len(frame))
    return ReportCollection(reports=reports, source=str(path), skipped_rows=empty)


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_LISTED])
    return shown + (", ..." if len(rows) > _LISTED else "")
