"""The front door of the EHR readers: recognise a source and read it into patient timelines.

================  ==========================================================================================
source            recognised as
================  ==========================================================================================
``mimic3``        a folder with ADMISSIONS, ICUSTAYS and PATIENTS tables (``.csv``/``.csv.gz``, any case)
``fhir``          a ``.json`` file whose top-level object has a ``resourceType``, an ``.ndjson`` file, or a folder
                  holding such files (searched recursively)
``events``        a ``.csv`` (or ``.csv.gz``) file whose header has ``patient_id, time, code, value, unit``
================  ==========================================================================================
"""

from __future__ import annotations

import gzip
import json
from enum import StrEnum
from pathlib import Path
from typing import Any

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.core.timeline import Timeline
from medai.io.events_csv import EVENT_FILE_COLUMNS, read_event_csv
from medai.io.fhir import FHIR_SUFFIXES, read_fhir
from medai.io.mimic import find_table, read_mimic3

_MIMIC_MARKERS = ("ADMISSIONS", "ICUSTAYS", "PATIENTS")
_PEEK_BYTES = 65_536


class EhrSource(StrEnum):
    """The kinds of EHR input :func:`read_timelines` reads."""

    MIMIC3 = "mimic3"
    FHIR = "fhir"
    EVENTS = "events"


def _looks_like_fhir_json(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            head = stream.read(_PEEK_BYTES)
    except OSError:
        return False
    if path.suffix.lower() == ".ndjson":
        line = head.split(b"\n", 1)[0]
        try:
            return isinstance(json.loads(line), dict) and "resourceType" in json.loads(line)
        except ValueError:
            return b'"resourceType"' in line
    # A Bundle's resourceType may come after a long first field; the key anywhere near the start is enough.
    return head.lstrip().startswith(b"{") and b'"resourceType"' in head


def _csv_header(path: Path) -> list[str]:
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
            line = stream.readline()
    except OSError:
        return []
    return [c.strip().strip('"').lower() for c in line.rstrip("\r\n").split(",")]


def find_ehr_source(path: str | Path) -> str | None:
    """``"mimic3"``, ``"fhir"``, ``"events"`` for a recognised EHR input (see the module docstring), else None."""
    path = Path(path)
    if path.is_dir():
        if all(find_table(path, table) is not None for table in _MIMIC_MARKERS):
            return EhrSource.MIMIC3.value
        for candidate in sorted(path.rglob("*"))[:10_000]:
            if candidate.is_file() and candidate.suffix.lower() in FHIR_SUFFIXES and _looks_like_fhir_json(candidate):
                return EhrSource.FHIR.value
        return None
    if not path.is_file():
        return None
    name = path.name.lower()
    if path.suffix.lower() in FHIR_SUFFIXES:
        return EhrSource.FHIR.value if _looks_like_fhir_json(path) else None
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        header = set(_csv_header(path))
        return EhrSource.EVENTS.value if set(EVENT_FILE_COLUMNS) <= header else None
    return None


def is_ehr_source(path: str | Path) -> bool:
    """True when :func:`find_ehr_source` recognises ``path``."""
    return find_ehr_source(path) is not None


def read_timelines(path: str | Path, *, progress: bool = False, **kwargs: Any) -> list[Timeline]:
    """Read any recognised EHR input into checked patient timelines.

    Args:
        path: a MIMIC-III folder, a FHIR Bundle / NDJSON file or folder, or a flat event CSV.
        progress: a progress bar while streaming MIMIC-III event tables (the other readers are quick).
        **kwargs: passed to the reader: :func:`medai.io.mimic.read_mimic3` (``items``, ``chunksize``,
            ``patients``, ``on_invalid``), :func:`medai.io.fhir.read_fhir` (``on_invalid``),
            :func:`medai.io.events_csv.read_event_csv` (``encounters``, ``on_invalid``).

    Raises:
        InvalidParameterError: ``path`` does not exist; a keyword the chosen reader does not take.
        DataValidationError: ``path`` is not a recognised EHR input, or the reader's own errors.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidParameterError(f"EHR input not found: {path}.")
    source = find_ehr_source(path)
    try:
        if source == EhrSource.MIMIC3:
            timelines = read_mimic3(path, progress=progress, **kwargs)
        elif source == EhrSource.FHIR:
            timelines = read_fhir(path, **kwargs)
        elif source == EhrSource.EVENTS:
            timelines = read_event_csv(path, **kwargs)
        else:
            raise DataValidationError(
                f"{path}: not a recognised EHR input. Expected a MIMIC-III folder (ADMISSIONS, ICUSTAYS, PATIENTS "
                "tables as .csv or .csv.gz), a FHIR Bundle .json / .ndjson file or folder of them, or an event CSV "
                f"with columns {', '.join(EVENT_FILE_COLUMNS)}.")
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise InvalidParameterError(f"read_timelines: the {source} reader does not take that option "
                                        f"({error}).") from None
        raise
    return [timeline.check() for timeline in timelines]
