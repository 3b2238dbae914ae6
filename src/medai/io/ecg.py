"""ECG and other physiological-signal readers: WFDB records (``.hea`` + ``.dat``), WFDB MATLAB records as used by
the PhysioNet/CinC challenges (``.hea`` + ``.mat``), DICOM waveforms (12-lead ECG and other waveform SOP
classes), CSV files; beat annotations (MIT-BIH ``.atr``) with their ANSI/AAMI EC57 classes; and the folder
layouts labelled ECG data comes in (CinC ``REFERENCE.csv``, PTB-XL ``ptbxl_database.csv``, WFDB records with
beat annotations).

Every reader returns a ``Modality.ECG`` :class:`~medai.core.records.Record`: ``data`` float32 ``(leads, samples)``,
``meta["sampling_rate_hz"]``. Channels in a voltage unit are converted to millivolts; other channels (PLETH, RESP,
blood pressure) keep their unit, stated per lead in ``meta["units"]``. Invalid samples stay NaN (WFDB marks them
with the format's most negative value); NaN runs, flat lines and clipping are left to the signal-quality checks.

Lead names are normalised to ``I, II, III, aVR, aVL, aVF, V1 … V6`` where recognisable ("Lead I (Einthoven)",
"AVR", "v1", "MDC_ECG_LEAD_I"); other names (``MLII``, ``PLETH``, ``vx``) are kept, and the names as stored are in
``meta["source_lead_names"]``.

Header comments (PTB puts age, sex and the diagnosis there) are kept in ``meta["header_comments"]`` and never
appear in messages or logs.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medai.core.errors import DataValidationError, InvalidParameterError, MissingDependencyError, invalid_parameter
from medai.core.records import Modality, Record

logger = logging.getLogger(__name__)

SIGNAL_SUFFIXES = (".hea", ".mat", ".dat", ".dcm", ".csv")
AAMI_CLASSES = ("N", "S", "V", "F", "Q")
STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# ANSI/AAMI EC57:1998 grouping of the MIT-BIH beat labels (as in de Chazal et al., IEEE TBME 2004):
# N normal and bundle-branch-block beats and escape beats, S supraventricular ectopic, V ventricular ectopic,
# F fusion of ventricular and normal, Q paced, fusion of paced and normal, unclassifiable.
_AAMI_BY_SYMBOL = {
    symbol: aami
    for aami, symbols in {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}.items()
    for symbol in symbols
}
_MV_PER_UNIT = {"v": 1000.0, "mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "nv": 1e-6}
# Bits per sample of the WFDB storage formats whose size is fixed (the FLAC formats 508/516/524 are not).
_FORMAT_BITS = {"8": 8.0, "16": 16.0, "24": 24.0, "32": 32.0, "61": 16.0, "80": 8.0, "160": 16.0, "212": 12.0,
                "310": 32.0 / 3.0, "311": 32.0 / 3.0}
_TIME_COLUMNS = ("time", "time_s", "t", "timestamp", "seconds", "time_sec")
_TIME_COLUMNS_MS = ("time_ms", "t_ms", "timestamp_ms")
# A unit at the end of a CSV column name: "ecg_mv", "II (uV)", "lead2 [mV]".
_CSV_UNIT = re.compile(
    r"^(?P<base>.*?\S)(?:[ _\-]+(?P<unit>mv|uv|µv|μv|v)|\s*[(\[](?P<bracketed>mv|uv|µv|μv|v)[)\]])$", re.IGNORECASE
)
_ANNOTATION_EXTENSIONS = ("atr", "ari", "ecg")  # reference beat annotations of the PhysioNet beat databases
_REFERENCE_HEADER_FIELDS = ("record", "record_id", "recording", "id", "name", "filename", "file")
_MAX_SCAN_DEPTH = 4
_MAX_SCAN_ENTRIES = 20_000
_LISTED = 5  # ids named in an error message before "..."


# ------------------------------------------------------------------------------------------------ helpers
def _wfdb():
    try:
        import wfdb
    except ImportError:
        raise MissingDependencyError("Reading WFDB records needs wfdb: pip install wfdb") from None
    return wfdb


def normalise_lead_name(name: str) -> str:
    """``'Lead I (Einthoven)'``, ``'AVR'``, ``'v1'``, ``'MDC_ECG_LEAD_aVF'`` -> the standard spelling; else as given."""
    text = str(name).strip()
    core = re.sub(r"\s*\([^)]*\)\s*$", "", text)
    core = re.sub(r"^(?:mdc_ecg_lead|lead)[\s_\-]*", "", core, flags=re.IGNORECASE)
    return {lead.lower(): lead for lead in STANDARD_LEADS}.get(core.lower(), text)


def _to_millivolts(data: np.ndarray, units: list[str]) -> list[str]:
    """Scale rows of ``data`` (leads, samples) in a voltage unit to mV in place; return the units after."""
    out = []
    for row, unit in enumerate(units):
        factor = _MV_PER_UNIT.get(str(unit).strip().lower())
        if factor is None:
            out.append(str(unit))
            continue
        if factor != 1.0:
            data[row] *= np.float32(factor)
        out.append("mV")
    return out


def _check_rate(sampling_rate_hz: float | None, owner: str) -> float | None:
    if sampling_rate_hz is None:
        return None
    if isinstance(sampling_rate_hz, bool) or not isinstance(sampling_rate_hz, int | float | np.number) or not (
        math.isfinite(float(sampling_rate_hz)) and float(sampling_rate_hz) > 0
    ):
        raise invalid_parameter("sampling_rate_hz", owner, "a positive number of samples per second or None",
                                sampling_rate_hz)
    return float(sampling_rate_hz)


def _choose_rate(path: Path, stated: float | None, given: float | None, where: str) -> tuple[float, str]:
    """The sampling rate to use and where it came from; ``given`` (the caller's) wins over the file's."""
    if given is not None:
        if stated is not None and stated > 0 and abs(stated - given) > 1e-3 * given:
            logger.warning("%s: the %s says %g Hz; using sampling_rate_hz=%g as passed.", path, where, stated, given)
        return given, "argument"
    if stated is None or not (math.isfinite(stated) and stated > 0):
        what = ("gives no sampling frequency" if stated is None
                else f"gives a non-positive sampling frequency ({stated})")
        raise DataValidationError(
            f"{path}: the {where} {what}. Pass the rate: sampling_rate_hz=... (CLI: --sampling-rate HZ), or fix the "
            "file."
        )
    return float(stated), where


def _record(path: Path, data: np.ndarray, rate: float, rate_source: str, names: list[str], units: list[str],
            fmt: str, patient_id: str | None = None, **extra: Any) -> Record:
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise DataValidationError(
            f"{path}: holds no samples (shape {data.shape} as (leads, samples)). Expected at least one lead with "
            "samples; the file may be empty or cut short."
        )
    units = _to_millivolts(data, units)
    meta = {
        "source": str(path),
        "format": fmt,
        "sampling_rate_hz": float(rate),
        "sampling_rate_source": rate_source,
        "lead_names": [normalise_lead_name(n) for n in names],
        "source_lead_names": [str(n) for n in names],
        "units": units,
        "n_samples": int(data.shape[1]),
        "duration_s": float(data.shape[1] / rate),
        **extra,
    }
    stem = path.name[: -len(path.suffix)] if path.suffix.lower() in SIGNAL_SUFFIXES else path.name
    return Record(id=stem, modality=Modality.ECG, data=data, patient_id=patient_id, meta=meta)


# ------------------------------------------------------------------------------------------------ read_ecg
def read_ecg(path: str | Path, *, sampling_rate_hz: float | None = None) -> Record:
    """Read one ECG (or other physiological signal) record.

    Dispatch by suffix: a WFDB record given as its ``.hea``, ``.dat`` or ``.mat`` file or as the record path
    without suffix (``.../100``); ``.dcm`` DICOM waveform (:func:`read_dicom_ecg`); ``.csv`` (columns = channels,
    optional time column). WFDB ``.dat`` records are read by ``wfdb.rdrecord``; WFDB MATLAB records (format
    ``16+24``, the CinC challenge layout: variable ``val``, one row per signal) by ``scipy.io.loadmat`` with the
    gains and baselines of the header, which is parsed here so that headers ``wfdb`` rejects (CinC 2017 writes
    the date as ``2014-05-01``) still work.

    Args:
        path: the record file (or the WFDB record path without suffix).
        sampling_rate_hz: samples per second; overrides the file's rate (a warning is logged when they differ)
            and supplies it where the file has none (a headerless CSV, a WFDB header without frequency).

    Returns:
        ``Modality.ECG`` record, ``id`` = file stem, ``data`` float32 ``(leads, samples)``; voltage channels in
        mV. ``meta``: ``source``, ``format`` ("wfdb", "cinc-mat", "dicom-ecg", "csv"), ``sampling_rate_hz``,
        ``sampling_rate_source``, ``lead_names``, ``source_lead_names``, ``units`` (per lead; "unknown" when the
        file does not say), ``n_samples``, ``duration_s``; WFDB adds ``header_comments`` (may hold patient data:
        never print them) and ``adc_gain``; DICOM adds the SOP identity and the multiplex group read.

    Raises:
        InvalidParameterError: the file does not exist; a sampling rate that is not a positive number.
        DataValidationError: unreadable or inconsistent data (the message names the file and the fix): a
            header without sampling frequency (and no ``sampling_rate_hz``), a truncated ``.dat``, a header whose
            signal or sample count differs from the data, a ``.mat``/``.dat`` without ``.hea``, a DICOM without
            waveform, an empty CSV or a non-numeric CSV column, an unsupported suffix.
    """
    path = Path(path)
    given = _check_rate(sampling_rate_hz, "read_ecg")
    suffix = path.suffix.lower()
    if suffix == ".dcm":
        return read_dicom_ecg(path, sampling_rate_hz=given)
    if suffix == ".csv":
        return _read_csv(path, given)
    header = _header_path(path)
    if header is None:
        if not path.exists():
            raise InvalidParameterError(
                f"ECG file not found: {path}. Pass a WFDB record (.hea, or the record path without suffix), a "
                f"DICOM waveform (.dcm) or a CSV file."
            )
        if suffix in (".mat", ".dat"):
            raise DataValidationError(
                f"{path}: no WFDB header beside it (expected {_sibling_header(path)}). A {suffix} file holds only "
                "samples; the header gives the sampling rate, gains and lead names. Put the .hea file next to it."
            )
        raise DataValidationError(
            f"{path}: unsupported ECG file (suffix '{suffix or 'none'}'). Expected one of "
            f"{', '.join(SIGNAL_SUFFIXES)} (a WFDB record needs its .hea header)."
        )
    return _read_wfdb(header, given)


def _sibling_header(path: Path) -> Path:
    if path.suffix.lower() in (".hea", ".dat", ".mat"):
        return path.with_suffix(".hea")
    return path.parent / (path.name + ".hea")


def _header_path(path: Path) -> Path | None:
    """The WFDB header of ``path``: the header itself, a signal file's sibling, or the record path + ``.hea``."""
    suffix = path.suffix.lower()
    if suffix == ".hea":
        return path if path.is_file() else None
    candidates = []
    if suffix in (".dat", ".mat") or (suffix and path.is_file()):
        candidates.append(path.with_suffix(".hea"))
    else:  # a record path without suffix (WFDB record names may not hold dots, but tolerate them)
        candidates.append(path.parent / (path.name + ".hea"))
    return next((c for c in candidates if c.is_file()), None)


# ------------------------------------------------------------------------------------------------ WFDB header
@dataclass
class _Signal:
    file_name: str
    fmt: str
    samples_per_frame: int
    skew: int
    byte_offset: int
    gain: float
    baseline: int
    units: str
    adc_zero: int
    description: str


@dataclass
class _Header:
    path: Path
    record_name: str
    n_segments: int | None
    n_signals: int
    fs: float | None
    sig_len: int | None
    datetime_tokens: list[str]
    signals: list[_Signal]
    comments: list[str]
    record_line: str


def _header_error(path: Path, line_number: int, what: str) -> DataValidationError:
    return DataValidationError(
        f"{path}: not a valid WFDB header (line {line_number}: {what}). Expected a record line "
        "'NAME N_SIGNALS FS N_SAMPLES' followed by one line per signal 'FILE FORMAT GAIN/UNITS ADC_RES ADC_ZERO "
        "INITIAL CHECKSUM BLOCK DESCRIPTION'. Re-copy the record or fix the header."
    )


def _parse_header(path: Path) -> _Header:
    """Parse a WFDB header (PhysioNet's "header(5)" format) without judging the base date/time."""
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise DataValidationError(f"{path}: the header could not be read ({exc.__class__.__name__}).") from None
    comments, lines = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            comments.append(line[1:].strip())
        else:
            lines.append((number, line))
    if not lines:
        raise _header_error(path, 1, "no record line")
    number, record_line = lines[0]
    tokens = record_line.split()
    if len(tokens) < 2:
        raise _header_error(path, number, "the record line needs at least a name and the number of signals")
    name, _, segments = tokens[0].partition("/")
    try:
        n_segments = int(segments) if segments else None
        n_signals = int(tokens[1])
    except ValueError:
        raise _header_error(path, number, "the number of signals (or segments) is not an integer") from None
    fs = None
    if len(tokens) > 2:
        match = re.match(r"^([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)", tokens[2])
        if match is None:
            raise _header_error(path, number, "the sampling frequency is not a number")
        fs = float(match.group(1))
    sig_len = None
    if len(tokens) > 3:
        try:
            sig_len = int(tokens[3])
        except ValueError:
            raise _header_error(path, number, "the number of samples is not an integer") from None
    signals = []
    if n_segments is None:
        signal_lines = lines[1:]
        if len(signal_lines) < n_signals:
            raise _header_error(
                path, number,
                f"the record line declares {n_signals} signals but {len(signal_lines)} signal lines follow",
            )
        for number, line in signal_lines[:n_signals]:
            signals.append(_parse_signal_line(path, number, line))
    return _Header(path, name, n_segments, n_signals, fs, sig_len, tokens[4:], signals, comments, record_line)


def _parse_signal_line(path: Path, number: int, line: str) -> _Signal:
    tokens = line.split()
    if len(tokens) < 2:
        raise _header_error(path, number, "a signal line needs at least the file name and the format")
    match = re.match(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$", tokens[1])
    if match is None:
        raise _header_error(path, number, "the storage format is not a WFDB format such as 16, 212 or 16+24")
    fmt, spf, skew, offset = match.groups()
    gain, baseline, units = 200.0, None, "mV"  # WFDB defaults (header(5)): 200 adu per mV
    if len(tokens) > 2:
        gain_match = re.match(r"^([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)(?:\((-?\d+)\))?(?:/(\S+))?$", tokens[2])
        if gain_match is None:
            raise _header_error(path, number, "the ADC gain is not of the form GAIN[(BASELINE)][/UNITS]")
        gain = float(gain_match.group(1))
        baseline = int(gain_match.group(2)) if gain_match.group(2) is not None else None
        units = gain_match.group(3) or "mV"
    try:
        adc_zero = int(tokens[4]) if len(tokens) > 4 else 0
    except ValueError:
        raise _header_error(path, number, "the ADC zero is not an integer") from None
    return _Signal(
        file_name=tokens[0], fmt=fmt, samples_per_frame=int(spf or 1), skew=int(skew or 0),
        byte_offset=int(offset or 0), gain=gain, baseline=adc_zero if baseline is None else baseline, units=units,
        adc_zero=adc_zero, description=" ".join(tokens[8:]),
    )


def _wfdb_accepts_datetime(tokens: list[str]) -> bool:
    """True when the base time/date tokens have WFDB's form ``HH:MM:SS[.fff] [DD/MM/YYYY]`` (what wfdb parses)."""
    if not tokens:
        return True
    if len(tokens) > 2 or not re.fullmatch(r"\d{1,2}:\d{1,2}(?::\d{1,2}(?:\.\d{1,6})?)?", tokens[0]):
        return False
    return len(tokens) == 1 or re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", tokens[1]) is not None


# ------------------------------------------------------------------------------------------------ WFDB data
def _read_wfdb(hea: Path, given: float | None) -> Record:
    header = _parse_header(hea)
    if header.n_segments is not None:
        raise DataValidationError(
            f"{hea}: a multi-segment WFDB record ({header.n_segments} segments); medai reads single-segment records. "
            "Read its segments one by one (their own .hea files) or merge them with wfdb first."
        )
    if header.n_signals <= 0 or not header.signals:
        raise DataValidationError(f"{hea}: the header declares no signals. Expected at least one signal line.")
    rate, rate_source = _choose_rate(hea, header.fs, given, "header")
    files = list(dict.fromkeys(signal.file_name for signal in header.signals))
    for file_name in files:
        if not (hea.parent / file_name).is_file():
            raise DataValidationError(
                f"{hea}: its signal file {file_name} is missing (expected {hea.parent / file_name}). Copy the whole "
                "record (header and signal files) into the folder."
            )
    is_mat = [file_name.lower().endswith(".mat") for file_name in files]
    if all(is_mat):
        data, units = _read_mat_signals(header)
        fmt = "cinc-mat"
    elif any(is_mat):
        raise DataValidationError(
            f"{hea}: mixes MATLAB (.mat) and binary signal files; medai reads records stored in one kind only."
        )
    else:
        _check_dat_sizes(header)
        data, units = _read_dat_signals(header)
        fmt = "wfdb"
    names = [signal.description or f"signal{i}" for i, signal in enumerate(header.signals)]
    return _record(hea, data, rate, rate_source, names, units, fmt,
                   header_comments=list(header.comments),
                   adc_gain=[signal.gain for signal in header.signals])


def _read_mat_signals(header: _Header) -> tuple[np.ndarray, list[str]]:
    """WFDB MATLAB records: ``val`` (signals, samples) of digital values; physical = (val - baseline) / gain."""
    try:
        import scipy.io
    except ImportError:
        raise MissingDependencyError("Reading .mat ECG records needs scipy: pip install scipy") from None
    hea = header.path
    rows, units = [], []
    for file_name in dict.fromkeys(signal.file_name for signal in header.signals):
        signals = [signal for signal in header.signals if signal.file_name == file_name]
        path = hea.parent / file_name
        try:
            content = scipy.io.loadmat(path, variable_names=["val"])
        except (ValueError, OSError, TypeError, NotImplementedError, EOFError, KeyError, IndexError) as exc:
            raise DataValidationError(
                f"{path}: not a readable MATLAB file ({exc.__class__.__name__}). Expected the WFDB/CinC layout: a "
                "variable 'val' with one row per signal. The file may be truncated; re-copy it."
            ) from None
        if "val" not in content:
            raise DataValidationError(
                f"{path}: has no variable 'val'. WFDB/CinC MATLAB records store the samples as 'val' (signals, "
                "samples)."
            )
        val = np.atleast_2d(np.asarray(content["val"]))
        if val.ndim != 2 or val.shape[0] != len(signals):
            raise DataValidationError(
                f"{path}: header/data mismatch: 'val' holds {val.shape[0]} signals (shape {val.shape}), the header "
                f"{hea.name} declares {len(signals)} in this file. Fix the header's signal lines or re-copy the record."
            )
        if header.sig_len is not None and val.shape[1] != header.sig_len:
            raise DataValidationError(
                f"{path}: header/data mismatch: 'val' holds {val.shape[1]} samples per signal, the header {hea.name} "
                f"declares {header.sig_len}. Fix the sample count in the header or re-copy the record."
            )
        for row, signal in zip(val, signals):
            if signal.samples_per_frame != 1:
                raise DataValidationError(
                    f"{hea}: signal '{signal.description}' has {signal.samples_per_frame} samples per frame in a .mat "
                    "file; medai reads MATLAB records with one sample per frame."
                )
            values = row.astype(np.float64)
            bits = _FORMAT_BITS.get(signal.fmt)
            if bits is not None and np.issubdtype(row.dtype, np.integer):
                # WFDB marks invalid samples with the format's most negative value (-32768 for format 16).
                values[row == -(2 ** (int(round(bits)) - 1))] = np.nan
            gain = signal.gain if signal.gain != 0 else 200.0  # header(5): gain 0 = uncalibrated, 200 assumed
            rows.append((values - signal.baseline) / gain)
            units.append(signal.units)
    # Signals are listed in header order; rebuild that order when a record spreads them over several files.
    order = []
    for file_name in dict.fromkeys(signal.file_name for signal in header.signals):
        order.extend(i for i, signal in enumerate(header.signals) if signal.file_name == file_name)
    if len({len(row) for row in rows}) > 1:
        raise DataValidationError(
            f"{hea}: header/data mismatch: its .mat files hold signals of different lengths "
            f"({sorted({len(row) for row in rows})} samples). Expected one length for the whole record."
        )
    data = np.empty((len(rows), len(rows[0])), dtype=np.float32)
    out_units = [""] * len(rows)
    for position, index in enumerate(order):
        data[index] = rows[position]
        out_units[index] = units[position]
    return data, out_units


def _check_dat_sizes(header: _Header) -> None:
    """Compare each signal file's size with what the header's sample count needs (wfdb does not say clearly)."""
    if header.sig_len is None:
        return  # header(5) allows it: the length then follows from the file size
    hea = header.path
    for file_name in dict.fromkeys(signal.file_name for signal in header.signals):
        signals = [s for s in header.signals if s.file_name == file_name and s.fmt != "0"]
        if not signals or any(s.fmt not in _FORMAT_BITS for s in signals):
            continue  # null signals hold no bytes; FLAC formats have no fixed size
        bits_per_frame = sum(_FORMAT_BITS[s.fmt] * s.samples_per_frame for s in signals)
        frames = header.sig_len + max(s.skew for s in signals)
        offset = signals[0].byte_offset
        needed = offset + frames * bits_per_frame / 8.0
        actual = (hea.parent / file_name).stat().st_size
        per_signal = f"{header.sig_len} samples x {len(signals)} signals in format {signals[0].fmt}"
        if actual < math.floor(needed):
            present = max(0, int((actual - offset) * 8 // bits_per_frame))
            raise DataValidationError(
                f"{hea.parent / file_name}: truncated signal file: the header {hea.name} declares {per_signal} "
                f"({math.ceil(needed)} bytes) but the file holds {actual} bytes (about {present} samples). Re-copy the "
                "record; if the file is complete, the header's signal or sample count is wrong."
            )
        if actual > math.ceil(needed) + 4:  # a few bytes of padding end 212/310/311 files
            raise DataValidationError(
                f"{hea.parent / file_name}: header/data mismatch: the file holds {actual} bytes, more than the "
                f"{math.ceil(needed)} bytes of the {per_signal} the header {hea.name} declares. Fix the header's "
                "signal or sample count, or re-copy the record."
            )


def _read_dat_signals(header: _Header) -> tuple[np.ndarray, list[str]]:
    wfdb = _wfdb()
    hea = header.path
    with _wfdb_readable(header) as record_path:
        try:
            record = wfdb.rdrecord(str(record_path), physical=True)
        except (ValueError, IndexError, OSError, EOFError, KeyError, TypeError, AttributeError) as exc:
            detail = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise DataValidationError(
                f"{hea}: wfdb could not read the record ({exc.__class__.__name__}: {detail}). The header or its "
                "signal files may be corrupt; re-copy the record."
            ) from None
    signal = record.p_signal
    if signal is None or signal.ndim != 2:
        raise DataValidationError(f"{hea}: wfdb returned no samples. Expected {header.n_signals} signals.")
    if header.sig_len is not None and signal.shape[0] != header.sig_len:
        raise DataValidationError(
            f"{hea}: truncated record: wfdb read {signal.shape[0]} samples, the header declares {header.sig_len}. "
            "Re-copy the record or fix the header's sample count."
        )
    units = list(record.units) if record.units else [s.units for s in header.signals]
    return signal.T.astype(np.float32), units


@contextlib.contextmanager
def _wfdb_readable(header: _Header) -> Iterator[Path]:
    """A record path wfdb can read: the record itself, or, when wfdb would reject the base date/time of the
    header (CinC 2017 writes ``2014-05-01 11:05:48`` where WFDB expects ``11:05:48 01/05/2014``), a temporary
    copy of the header without them beside links to the signal files."""
    hea = header.path
    if _wfdb_accepts_datetime(header.datetime_tokens):
        yield hea.with_suffix("")
        return
    with tempfile.TemporaryDirectory(prefix="medai-wfdb-") as tmp:
        folder = Path(tmp)
        lines = hea.read_bytes().decode("latin-1").splitlines()
        record_index = next(i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith("#"))
        lines[record_index] = " ".join(header.record_line.split()[:4])
        (folder / hea.name).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
        for file_name in dict.fromkeys(signal.file_name for signal in header.signals):
            target = folder / file_name
            try:
                os.symlink((hea.parent / file_name).resolve(), target)
            except OSError:  # no symlinks (some Windows accounts): copy instead
                shutil.copyfile(hea.parent / file_name, target)
        yield folder / hea.stem


# ------------------------------------------------------------------------------------------------ DICOM
def read_dicom_ecg(path: str | Path, *, multiplex_group: int | None = None,
                   sampling_rate_hz: float | None = None) -> Record:
    """Read a DICOM waveform object (12-lead ECG, general ECG, ambulatory ECG, hemodynamic, ... SOP classes).

    Sample values are scaled by ``pydicom``'s ``waveform_array`` (raw x Channel Sensitivity x Correction Factor
    + Channel Baseline, PS3.3 C.10.9.1.4) and then converted from the Channel Sensitivity Units (``uV`` in most
    carts) to mV; samples equal to Waveform Padding Value become NaN.

    Args:
        path: the ``.dcm`` file.
        multiplex_group: index into WaveformSequence; by default the group with the most samples among those
            with ECG channels (the rhythm strip rather than the median beat).
        sampling_rate_hz: overrides the group's Sampling Frequency.

    Returns:
        ``Modality.ECG`` record; ``patient_id`` = PatientID when present. ``meta`` adds ``sop_class_uid``,
        ``sop_instance_uid``, ``multiplex_group``, ``multiplex_group_label``, ``n_multiplex_groups``.

    Raises:
        InvalidParameterError: the file does not exist; ``multiplex_group`` out of range.
        DataValidationError: not DICOM, no WaveformSequence, no ECG channel, undecodable waveform data.
    """
    path = Path(path)
    given = _check_rate(sampling_rate_hz, "read_dicom_ecg")
    try:
        import pydicom
        from pydicom.waveforms import multiplex_array
    except ImportError:
        raise MissingDependencyError("Reading DICOM ECG needs pydicom: pip install pydicom") from None
    if not path.is_file():
        raise InvalidParameterError(f"DICOM file not found: {path}.")
    try:
        ds = pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError:
        raise DataValidationError(
            f"{path}: not a DICOM file (no 'DICM' marker after the 128-byte preamble). Expected a DICOM waveform "
            "object such as 12-lead ECG Waveform Storage."
        ) from None
    except (EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DataValidationError(
            f"{path}: corrupt or truncated DICOM file ({exc.__class__.__name__} while parsing the header)."
        ) from None
    sop_class = ds.get("SOPClassUID")
    sop_name = getattr(sop_class, "name", str(sop_class)) if sop_class is not None else "unknown"
    groups = ds.get("WaveformSequence")
    if not groups:
        raise DataValidationError(
            f"{path}: has no WaveformSequence (SOP class {sop_name}, Modality {ds.get('Modality', 'unknown')}). "
            "Expected a DICOM waveform object such as 12-lead ECG Waveform Storage; images and reports hold no ECG."
        )
    described = [_dicom_channels(group) for group in groups]
    with_ecg = [i for i, (names, units) in enumerate(described)
                if any(_is_ecg_channel(n, u) for n, u in zip(names, units))]
    if multiplex_group is None:
        if not with_ecg:
            raise DataValidationError(
                f"{path}: none of its {len(groups)} waveform multiplex groups has an ECG channel (a channel in volts "
                "or named as an ECG lead). Pass multiplex_group= to read another waveform."
            )
        index = max(with_ecg, key=lambda i: (int(groups[i].get("NumberOfWaveformSamples", 0) or 0), -i))
    else:
        if isinstance(multiplex_group, bool) or not isinstance(multiplex_group, int) or not (
            0 <= multiplex_group < len(groups)
        ):
            raise invalid_parameter("multiplex_group", "read_dicom_ecg", f"an integer in [0, {len(groups) - 1}]",
                                    multiplex_group)
        index = multiplex_group
    group = groups[index]
    try:
        values = np.asarray(ds.waveform_array(index), dtype=np.float64)  # (samples, channels)
        raw = np.asarray(multiplex_array(ds, index, as_raw=True))
    except (ValueError, EOFError, OSError, IndexError, TypeError, AttributeError, KeyError) as exc:
        raise DataValidationError(
            f"{path}: the waveform data of multiplex group {index} could not be decoded ({exc.__class__.__name__}). "
            "The file may be truncated or corrupt."
        ) from None
    padding = group.get("WaveformPaddingValue")
    if padding is not None:
        pad = np.frombuffer(padding, dtype=raw.dtype)[0] if isinstance(padding, bytes) else padding
        values[raw == pad] = np.nan
    names, units = described[index]
    stated = float(group.SamplingFrequency) if "SamplingFrequency" in group else None
    rate, rate_source = _choose_rate(path, stated, given, "header")
    patient = str(ds.get("PatientID", "") or "").strip() or None
    return _record(
        path, values.T.copy(), rate, rate_source, names, units,
        "dicom-ecg", patient_id=patient,
        sop_class_uid=str(sop_class) if sop_class is not None else None,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")) or None,
        multiplex_group=index, multiplex_group_label=str(group.get("MultiplexGroupLabel", "")),
        n_multiplex_groups=len(groups),
    )


def _dicom_channels(group) -> tuple[list[str], list[str]]:
    """Per channel of a multiplex group: name (label, else source code meaning) and sensitivity unit."""
    names, units = [], []
    for i, channel in enumerate(group.get("ChannelDefinitionSequence", []) or []):
        name = str(channel.get("ChannelLabel", "") or "")
        source = channel.get("ChannelSourceSequence")
        if not name and source:
            name = str(source[0].get("CodeMeaning", "") or source[0].get("CodeValue", "") or "")
        names.append(name or f"channel{i}")
        unit_item = channel.get("ChannelSensitivityUnitsSequence")
        has_sensitivity = "ChannelSensitivity" in channel and channel.ChannelSensitivity not in (None, "")
        unit = str(unit_item[0].get("CodeValue", "") or "") if unit_item else ""
        # without a sensitivity the values are raw ADC units, whatever the units sequence says
        units.append(unit if has_sensitivity and unit else "unknown")
    count = int(group.get("NumberOfWaveformChannels", len(names)) or len(names))
    while len(names) < count:
        names.append(f"channel{len(names)}")
        units.append("unknown")
    return names, units


def _is_ecg_channel(name: str, unit: str) -> bool:
    return str(unit).strip().lower() in _MV_PER_UNIT or normalise_lead_name(name) in STANDARD_LEADS


# ------------------------------------------------------------------------------------------------ CSV
def _read_csv(path: Path, given: float | None) -> Record:
    import pandas as pd

    if not path.is_file():
        raise InvalidParameterError(f"ECG file not found: {path}.")
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            first = next((line for line in handle if line.strip()), "")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataValidationError(
            f"{path}: could not be read as a UTF-8 text file ({exc.__class__.__name__})."
        ) from None
    if not first:
        raise DataValidationError(
            f"{path}: empty CSV. Expected one column per channel (optionally a time column), one row per sample."
        )
    delimiter = max([",", ";", "\t"], key=first.count) if any(d in first for d in ",;\t") else ","
    try:
        table = pd.read_csv(path, sep=delimiter, header=None, dtype=str, skip_blank_lines=True,
                            encoding="utf-8-sig", keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataValidationError(
            f"{path}: could not be parsed as CSV ({exc.__class__.__name__}). Expected one column per channel, one "
            "row per sample, the same number of fields on every row."
        ) from None
    table = table.apply(lambda column: column.str.strip())
    first_row = table.iloc[0].tolist()
    has_header = not all(_is_number(cell) for cell in first_row if cell != "")
    if has_header:
        names = [cell if cell else f"column{i}" for i, cell in enumerate(first_row)]
        unnamed = [cell == "" for cell in first_row]
        table = table.iloc[1:].reset_index(drop=True)
        data_start = 2  # file line of the first sample (blank lines aside), for messages
    else:
        names = [f"ch{i}" for i in range(table.shape[1])]
        unnamed = [True] * table.shape[1]
        data_start = 1
    if table.shape[0] == 0:
        raise DataValidationError(f"{path}: the CSV has a header row but no samples. Expected one row per sample.")
    table.columns = range(table.shape[1])
    # a delimiter at the end of every line makes an empty, unnamed last column: not a channel
    keep = [i for i in range(table.shape[1]) if not (unnamed[i] and (table[i] == "").all())]
    time_columns = [i for i in keep if names[i].strip().lower() in _TIME_COLUMNS + _TIME_COLUMNS_MS]
    if len(time_columns) > 1:
        listed = ", ".join(f"'{names[i]}'" for i in time_columns)
        raise DataValidationError(f"{path}: several time columns ({listed}). Keep one time column.")
    stated, time_name = None, None
    if time_columns:
        time_index = time_columns[0]
        time_name = names[time_index]
        stated = _rate_from_time(path, time_name, table[time_index])
        keep.remove(time_index)
    if not keep:
        raise DataValidationError(
            f"{path}: no signal columns besides the time column. Expected one column per channel."
        )
    values = np.empty((len(keep), table.shape[0]), dtype=np.float32)
    for row, index in enumerate(keep):
        column = table[index]
        numeric = pd.to_numeric(column.replace("", np.nan), errors="coerce")
        bad = numeric.isna() & (column != "") & ~column.str.lower().isin(["nan", "na", "null", "none"])
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + data_start
            raise DataValidationError(
                f"{path}: column '{names[index]}' is not numeric (first non-number on line {line}). Every signal "
                "column must hold numbers (empty cells are read as missing); drop or fix that column."
            )
        values[row] = numeric.to_numpy(dtype=np.float64)
    lead_names, units = [], []
    for index in keep:
        match = _CSV_UNIT.match(names[index])
        if match:
            lead_names.append(match.group("base").strip())
            units.append((match.group("unit") or match.group("bracketed")))
        else:
            lead_names.append(names[index])
            units.append("unknown")
    units = [u if u == "unknown" else {"mv": "mV", "uv": "uV", "µv": "uV", "μv": "uV", "v": "V"}[u.lower()]
             for u in units]
    if stated is None and given is None:
        raise DataValidationError(
            f"{path}: the CSV has no time column ({', '.join(_TIME_COLUMNS + _TIME_COLUMNS_MS)}), so its sampling rate "
            "is unknown. Pass it: sampling_rate_hz=... (CLI: --sampling-rate HZ), or add a time column."
        )
    rate, rate_source = _choose_rate(path, stated, given, "time column")
    return _record(path, values, rate, rate_source, lead_names, units, "csv", time_column=time_name,
                   has_header=has_header)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rate_from_time(path: Path, name: str, column) -> float:
    """Samples per second from a time column (seconds, or ms for *_ms names, or ISO date-times)."""
    import pandas as pd

    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        seconds = numeric.to_numpy(dtype=np.float64)
        if name.strip().lower() in _TIME_COLUMNS_MS:
            seconds = seconds / 1000.0
    else:
        try:
            stamps = pd.to_datetime(column, format="ISO8601")
        except (ValueError, TypeError):
            raise DataValidationError(
                f"{path}: the time column '{name}' holds values that are neither numbers (seconds; ms for *_ms "
                "names) nor ISO date-times. Fix the column, or drop it and pass --sampling-rate."
            ) from None
        seconds = (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy(dtype=np.float64)
    if seconds.size < 2:
        raise DataValidationError(f"{path}: the time column '{name}' has fewer than two samples; no rate follows.")
    steps = np.diff(seconds)
    period = (seconds[-1] - seconds[0]) / (seconds.size - 1)
    residual = np.abs(seconds - (seconds[0] + period * np.arange(seconds.size)))
    # Tolerates timestamps rounded to coarser units (ms at 360 Hz) but not gaps, reversals or drift.
    if not (period > 0 and steps.min() >= 0.5 * period and steps.max() <= 1.5 * period
            and residual.max() <= 0.25 * period):
        raise DataValidationError(
            f"{path}: the time column '{name}' is not uniformly spaced (steps from {steps.min():.6g} to "
            f"{steps.max():.6g} s, mean {period:.6g} s). medai needs a fixed sampling rate: resample the signal first, "
            "or drop the time column and pass --sampling-rate."
        )
    return float(1.0 / period)


# ------------------------------------------------------------------------------------------------ annotations
def aami_class(symbol: str) -> str | None:
    """The ANSI/AAMI EC57 class of a MIT-BIH beat symbol.

    ``N, L, R, e, j`` -> "N" (normal, bundle branch block, escape); ``A, a, J, S`` -> "S" (supraventricular
    ectopic); ``V, E`` -> "V" (ventricular ectopic); ``F`` -> "F" (fusion); ``/, f, Q`` -> "Q" (paced, paced
    fusion, unclassifiable). Non-beat annotations (``+`` rhythm change, ``~`` noise, ``|`` artefact, ``"``
    comment, ...) and beat codes outside EC57's table (``B``, ``r``, ``n``, ``?``) -> None.
    """
    return _AAMI_BY_SYMBOL.get(symbol)


@dataclass(frozen=True)
class BeatAnnotations:
    """Annotations of one WFDB record.

    Attributes:
        sample: int64 ``(n,)``, sample index of each annotation (at ``sampling_rate_hz``).
        symbol: the annotation codes as stored (``N``, ``V``, ``+``, ...).
        aami: per annotation the EC57 class (see :func:`aami_class`), "" for non-beat annotations.
        sampling_rate_hz: the rate ``sample`` counts in.
        aux_note: per annotation the auxiliary text (rhythm changes such as ``(AFIB``), "" when none.
    """

    sample: np.ndarray
    symbol: list[str]
    aami: list[str]
    sampling_rate_hz: float
    aux_note: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.symbol)

    def beat_counts(self) -> Counter:
        """How many beats fall in each AAMI class (non-beat annotations are not counted)."""
        return Counter(c for c in self.aami if c)


def read_beat_annotations(record_path: str | Path, extension: str = "atr") -> BeatAnnotations:
    """Read the annotation file ``RECORD.<extension>`` of a WFDB record with ``wfdb.rdann``.

    Args:
        record_path: the record's ``.hea``/``.dat``/``.mat`` file, its annotation file, or the path without suffix.
        extension: the annotator name: ``atr`` for reference annotations (MIT-BIH), ``qrs``/``ecg``/... for others.

    Raises:
        InvalidParameterError: ``extension`` is empty.
        DataValidationError: the annotation file is missing or unreadable, or no sampling rate is known for it.
    """
    wfdb = _wfdb()
    extension = str(extension).lstrip(".")
    if not extension:
        raise invalid_parameter("extension", "read_beat_annotations", "an annotator name such as 'atr'", extension)
    path = Path(record_path)
    stem = path.with_suffix("") if path.suffix.lower() in (".hea", ".dat", ".mat", "." + extension.lower()) else path
    annotation = stem.parent / f"{stem.name}.{extension}"
    if not annotation.is_file():
        others = sorted(p.suffix.lstrip(".") for p in stem.parent.glob(f"{stem.name}.*")
                        if p.suffix.lower() not in (".hea", ".dat", ".mat", ".csv", ".dcm", ".xyz"))
        hint = f" Files of this record with other extensions: {', '.join(others)}; pass extension=..." if others else ""
        raise DataValidationError(
            f"{stem}: no annotation file {annotation.name} (expected {annotation}).{hint}"
        )
    try:
        ann = wfdb.rdann(str(stem), extension)
    except (ValueError, IndexError, OSError, EOFError, KeyError, TypeError, AttributeError) as exc:
        raise DataValidationError(
            f"{annotation}: not a readable WFDB annotation file ({exc.__class__.__name__}). Re-copy it."
        ) from None
    rate = float(ann.fs) if ann.fs else None
    if rate is None and _sibling_header(stem).is_file():
        rate = _parse_header(_sibling_header(stem)).fs
    if not rate or rate <= 0:
        raise DataValidationError(
            f"{annotation}: the annotation file states no sampling rate and no header gives one. Put the record's "
            ".hea beside it."
        )
    symbols = [str(s) for s in ann.symbol]
    aux = [str(a or "").rstrip("\x00") for a in (ann.aux_note or [""] * len(symbols))]
    return BeatAnnotations(
        sample=np.asarray(ann.sample, dtype=np.int64),
        symbol=symbols,
        aami=[aami_class(s) or "" for s in symbols],
        sampling_rate_hz=rate,
        aux_note=aux,
    )


# ------------------------------------------------------------------------------------------------ folders
@dataclass(frozen=True)
class EcgDataset:
    """What an ECG folder holds, found by :func:`find_ecg_dataset` (nothing is read yet).

    Attributes:
        root: the folder.
        layout: "cinc" (``REFERENCE.csv``: record,label), "ptbxl" (``ptbxl_database.csv``), "wfdb-beats" (WFDB
            records with annotation files, labels per beat), "wfdb" (signal files without labels).
        records: one path per record (``.hea``, ``.dcm`` or ``.csv``), sorted.
        labels: record id (file stem) -> label: a str for cinc; a sorted list of str for ptbxl (diagnostic
            superclasses NORM/MI/STTC/CD/HYP when ``scp_statements.csv`` is there, else the SCP codes); None for
            the wfdb layouts.
        patient_ids: record id -> patient id (ptbxl); None when unknown.
        meta: layout facts: cinc ``reference``, ``n_unlabelled`` and ``unlabelled`` (files without a label,
            ignored); ptbxl ``label_column``, ``strat_fold``, ``ecg_id``, ``scp_codes``, ``superclass_map``,
            ``filename_column``; wfdb-beats ``annotation_extension``, ``n_unannotated``.
    """

    root: Path
    layout: str
    records: list[Path]
    labels: dict[str, object] | None
    patient_ids: dict[str, str] | None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def record_id(self, path: Path) -> str:
        """The id of a record file (its stem), the key of :attr:`labels`."""
        return _record_id(path)


def _record_id(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def _walk(folder: Path, max_depth: int | None = None, max_entries: int | None = None) -> Iterator[Path]:
    """Files under ``folder`` (hidden files and folders skipped), breadth limited by depth and count."""
    seen = 0
    for current, dirs, files in os.walk(folder):
        depth = len(Path(current).relative_to(folder).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if max_depth is not None and depth >= max_depth:
            dirs[:] = []
        for name in sorted(files):
            seen += 1
            if max_entries is not None and seen > max_entries:
                return
            if not name.startswith("."):
                yield Path(current) / name


def is_ecg_folder(folder: str | Path) -> bool:
    """Cheap check (used to route ``medai train --data FOLDER``): ``REFERENCE.csv`` or ``ptbxl_database.csv`` in
    the folder, or a ``.hea`` header within 4 folder levels (among the first 20,000 files looked at)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if (folder / "REFERENCE.csv").is_file() or (folder / "ptbxl_database.csv").is_file():
        return True
    return any(p.suffix.lower() == ".hea" for p in _walk(folder, _MAX_SCAN_DEPTH, _MAX_SCAN_ENTRIES))


def find_ecg_dataset(folder: str | Path, *, require_labels: bool = False) -> EcgDataset:
    """Find the ECG records of a folder and their labels.

    Layouts, tried in this order:

    * ``ptbxl``: ``ptbxl_database.csv`` (PTB-XL, Wagner et al., Sci Data 2020): ``ecg_id``, ``patient_id``,
      ``scp_codes`` (a dict literal code -> likelihood), ``strat_fold``, ``filename_lr`` (100 Hz) /
      ``filename_hr`` (500 Hz), paths relative to the folder without suffix; the 100 Hz file is used when present.
      With ``scp_statements.csv`` the codes are mapped to the diagnostic superclasses as in PTB-XL's
      ``example_physionet.py`` (every code of the record whatever its likelihood, statements with
      ``diagnostic == 1``); without it the labels are the codes.
    * ``cinc``: ``REFERENCE.csv`` (``record,label`` rows, no header or a ``record,label`` header) with the record
      files beside it or in any subfolder; files without a row are ignored (counted in ``meta``).
    * ``wfdb-beats``: WFDB headers with a sibling annotation file (``.atr``, else ``.ari``, ``.ecg``).
    * ``wfdb``: WFDB headers without labels; without headers, ``.dcm`` and ``.csv`` files.

    Args:
        folder: the dataset folder.
        require_labels: raise unless the folder has labels (cinc, ptbxl, or per-beat annotations).

    Raises:
        InvalidParameterError: the folder does not exist.
        DataValidationError: no records; labelled records without a signal file (names the first few and the
            count); a malformed ``REFERENCE.csv`` or ``ptbxl_database.csv``; no labels with ``require_labels``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InvalidParameterError(f"ECG folder not found: {root}. Pass a folder of ECG records.")
    if (root / "ptbxl_database.csv").is_file():
        return _find_ptbxl(root)
    if (root / "REFERENCE.csv").is_file():
        return _find_cinc(root)
    headers, others = [], []
    for path in _walk(root):
        suffix = path.suffix.lower()
        if suffix == ".hea":
            headers.append(path)
        elif suffix in (".dcm", ".csv"):
            others.append(path)
    for extension in _ANNOTATION_EXTENSIONS:
        annotated = [h for h in headers if h.with_suffix("." + extension).is_file()]
        if annotated:
            return EcgDataset(root=root, layout="wfdb-beats", records=sorted(annotated), labels=None,
                              patient_ids=None,
                              meta={"annotation_extension": extension, "n_unannotated": len(headers) - len(annotated)})
    records = sorted(headers) if headers else sorted(others)
    if not records:
        mats = sum(1 for p in _walk(root, _MAX_SCAN_DEPTH, _MAX_SCAN_ENTRIES) if p.suffix.lower() in (".mat", ".dat"))
        hint = f" It holds {mats} .mat/.dat files but no .hea headers: copy the headers too." if mats else ""
        raise DataValidationError(
            f"{root}: no ECG records found (expected WFDB .hea headers, .dcm or .csv files, a REFERENCE.csv or a "
            f"ptbxl_database.csv).{hint}"
        )
    if require_labels:
        raise DataValidationError(
            f"{root}: {len(records)} ECG records but no labels. Expected a REFERENCE.csv (record,label rows, CinC "
            "layout), a ptbxl_database.csv (PTB-XL layout) or beat annotation files (.atr) beside the .hea headers."
        )
    return EcgDataset(root=root, layout="wfdb", records=records, labels=None, patient_ids=None, meta={})


def read_ecgs_for_prediction(path: str | Path, *, sampling_rate_hz: float | None = None) -> list[Record]:
    """The recordings to predict for: one record file (see :func:`read_ecg`) or every record of a folder (any
    layout of :func:`find_ecg_dataset`; labels, if any, are not used), in sorted order.

    Args:
        path: a record file or a folder of records.
        sampling_rate_hz: passed to :func:`read_ecg` for every record (needed for CSV files without time column).

    Raises:
        InvalidParameterError: the path does not exist; a bad ``sampling_rate_hz``.
        DataValidationError: an unreadable record (the message names it), or a folder without records.
    """
    path = Path(path)
    _check_rate(sampling_rate_hz, "read_ecgs_for_prediction")
    if not path.exists() and _header_path(path) is None:
        raise InvalidParameterError(
            f"Input not found: {path}. Pass an ECG record (.hea/.mat/.dat, .dcm, .csv) or a folder of them."
        )
    if not path.is_dir():
        return [read_ecg(path, sampling_rate_hz=sampling_rate_hz)]
    dataset = find_ecg_dataset(path)
    return [read_ecg(record, sampling_rate_hz=sampling_rate_hz) for record in dataset.records]


def _listed(ids: list[str]) -> str:
    return ", ".join(ids[:_LISTED]) + (", ..." if len(ids) > _LISTED else "")


def _read_reference(path: Path) -> dict[str, str]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{path}: could not be read as UTF-8 text ({exc.__class__.__name__}).") from None
    labels: dict[str, str] = {}
    rows = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    for position, (number, line) in enumerate(rows):
        fields = [f.strip().strip('"') for f in re.split(r"[,;\t]", line)]
        if position == 0 and fields[0].lower() in _REFERENCE_HEADER_FIELDS:
            continue
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise DataValidationError(
                f"{path}: line {number} is not 'record,label' (expected two fields, e.g. 'A00001,N')."
            )
        record = fields[0]
        if Path(record).suffix.lower() in SIGNAL_SUFFIXES:
            record = Path(record).stem
        if record in labels and labels[record] != fields[1]:
            raise DataValidationError(
                f"{path}: record {record} is listed twice with different labels (line {number}). Keep one row per "
                "record."
            )
        labels[record] = fields[1]
    if not labels:
        raise DataValidationError(f"{path}: no 'record,label' rows. Expected one row per record, e.g. 'A00001,N'.")
    return labels


def _find_cinc(root: Path) -> EcgDataset:
    reference = root / "REFERENCE.csv"
    labels = _read_reference(reference)
    preference = {".hea": 0, ".dcm": 1, ".csv": 2, ".mat": 3, ".dat": 4}
    by_id: dict[str, list[Path]] = {}
    for path in _walk(root):
        if path.suffix.lower() in preference and path != reference:
            by_id.setdefault(_record_id(path), []).append(path)
    records, missing, headerless = [], [], []
    for record_id in labels:
        files = by_id.get(record_id)
        if not files:
            missing.append(record_id)
            continue
        best = min(files, key=lambda p: preference[p.suffix.lower()])
        twins = [p for p in files if p.suffix.lower() == best.suffix.lower() and p != best]
        if twins:
            raise DataValidationError(
                f"{root}: record {record_id} has several {best.suffix} files ({best.relative_to(root)}, "
                f"{twins[0].relative_to(root)}). Keep one copy of each record."
            )
        if best.suffix.lower() in (".mat", ".dat"):
            headerless.append(record_id)
        records.append(best)
    if missing:
        raise DataValidationError(
            f"{root}: {len(missing)} of the {len(labels)} records listed in REFERENCE.csv have no signal file: "
            f"{_listed(missing)}. Put their files (.hea + .mat/.dat, .dcm or .csv) in the folder or a subfolder, or "
            "remove their rows."
        )
    if headerless:
        raise DataValidationError(
            f"{root}: {len(headerless)} records have a .mat/.dat file but no .hea header: {_listed(headerless)}. The "
            "header gives the sampling rate and gain; copy the .hea files too."
        )
    unlabelled = sorted(set(by_id) - set(labels))
    unlabelled = [r for r in unlabelled if any(p.suffix.lower() in (".hea", ".dcm") for p in by_id[r])]
    return EcgDataset(
        root=root, layout="cinc", records=sorted(records),
        labels={_record_id(p): labels[_record_id(p)] for p in sorted(records)}, patient_ids=None,
        meta={"reference": str(reference), "label_column": "label", "n_unlabelled": len(unlabelled),
              "unlabelled": unlabelled, "classes": sorted(set(labels.values()))},
    )


def _superclass_map(path: Path) -> dict[str, str] | None:
    import pandas as pd

    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, index_col=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataValidationError(f"{path}: could not be parsed as CSV ({exc.__class__.__name__}).") from None
    missing = [c for c in ("diagnostic", "diagnostic_class") if c not in table.columns]
    if missing:
        raise DataValidationError(
            f"{path}: missing column(s) {', '.join(missing)}. Expected PTB-XL's scp_statements.csv (index = SCP code, "
            "columns diagnostic and diagnostic_class)."
        )
    diagnostic = table[pd.to_numeric(table["diagnostic"], errors="coerce") == 1]
    return {str(code).strip(): str(cls).strip() for code, cls in diagnostic["diagnostic_class"].items()
            if isinstance(cls, str) and cls.strip()}


def _find_ptbxl(root: Path) -> EcgDataset:
    import pandas as pd

    database = root / "ptbxl_database.csv"
    try:
        table = pd.read_csv(database)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataValidationError(f"{database}: could not be parsed as CSV ({exc.__class__.__name__}).") from None
    table.columns = [str(c).strip() for c in table.columns]
    needed = ["ecg_id", "scp_codes"]
    missing = [c for c in needed if c not in table.columns]
    if missing or not ({"filename_lr", "filename_hr"} & set(table.columns)):
        missing += [] if {"filename_lr", "filename_hr"} & set(table.columns) else ["filename_lr or filename_hr"]
        raise DataValidationError(
            f"{database}: missing column(s) {', '.join(missing)}. Expected PTB-XL's ptbxl_database.csv with ecg_id, "
            "patient_id, scp_codes, strat_fold, filename_lr, filename_hr."
        )
    superclasses = _superclass_map(root / "scp_statements.csv")
    records, labels, patients, folds, ecg_ids, codes, used, missing_ids = [], {}, {}, {}, {}, {}, Counter(), []
    for row_number, row in enumerate(table.itertuples(index=False), start=2):
        row = row._asdict()
        path, column = None, None
        for column in ("filename_lr", "filename_hr"):
            name = row.get(column)
            if isinstance(name, str) and name.strip():
                candidate = root / (name.strip() + ".hea")
                if candidate.is_file():
                    path = candidate
                    break
        if path is None:
            missing_ids.append(str(_as_id(row["ecg_id"])))
            continue
        try:
            scp = ast.literal_eval(str(row["scp_codes"]))
            if not isinstance(scp, dict):
                raise ValueError
            scp = {str(k): float(v) for k, v in scp.items()}
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise DataValidationError(
                f"{database}: line {row_number} (ecg_id {row['ecg_id']}): scp_codes is not a dict literal such as "
                "\"{'NORM': 100.0, 'SR': 0.0}\"."
            ) from None
        kept = [code for code, likelihood in scp.items() if likelihood >= 0]
        record_id = _record_id(path)
        if superclasses is None:
            labels[record_id] = sorted(set(kept))
        else:
            labels[record_id] = sorted({superclasses[c] for c in kept if c in superclasses})
        records.append(path)
        used[column] += 1
        codes[record_id] = scp
        ecg_ids[record_id] = _as_id(row["ecg_id"])
        patient = _as_id(row.get("patient_id"))
        if patient is not None:
            patients[record_id] = patient
        fold = row.get("strat_fold")
        if fold is not None and not (isinstance(fold, float) and math.isnan(fold)):
            folds[record_id] = int(fold)
    if missing_ids:
        raise DataValidationError(
            f"{root}: {len(missing_ids)} of the {len(table)} ECGs listed in ptbxl_database.csv have no header file "
            f"(filename_lr or filename_hr + .hea): ecg_id {_listed(missing_ids)}. Download or copy records100/ (or "
            "records500/), or remove their rows."
        )
    if not records:
        raise DataValidationError(f"{database}: no rows. Expected one row per ECG.")
    return EcgDataset(
        root=root, layout="ptbxl", records=sorted(records), labels=labels, patient_ids=patients or None,
        meta={"label_column": "diagnostic_superclass" if superclasses is not None else "scp_codes",
              "superclass_map": superclasses, "strat_fold": folds, "ecg_id": ecg_ids, "scp_codes": codes,
              "filename_column": dict(used),
              "n_without_label": sum(1 for v in labels.values() if not v)},
    )


def _as_id(value: Any) -> str | None:
    """PTB-XL stores ids as floats (``15709.0``); ids are compared as strings without the ``.0``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None
