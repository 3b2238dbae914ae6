"""Generated ECG fixtures in the layouts medai reads: WFDB records (wfdb.wrsamp / wfdb.wrann), CinC challenge
MATLAB records with their non-standard headers, a CinC ``REFERENCE.csv`` folder and a PTB-XL folder.

Signals are simple synthetic beats (sums of Gaussian P, Q, R, S, T waves, numpy only, in mV) whose morphology
differs by class, so that a small model can learn them; they are not physiological simulations. No real patient
data: the header comments written here are invented.

Import from tests: ``from tests.ecg_fixtures import write_ptbxl_folder``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TWELVE_LEADS_PTBXL = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")  # as PTB-XL names them
# Rough projection of the cardiac vector on each lead (sign and size of the QRS), so the leads differ.
_LEAD_GAIN = np.array([0.9, 1.2, 0.4, -0.9, 0.3, 0.8, -0.5, 0.4, 0.9, 1.4, 1.2, 1.0])
# Diagnostic superclass -> the SCP codes written for it in the PTB-XL fixture.
PTBXL_CLASS_CODES = {
    "NORM": {"NORM": 100.0, "SR": 0.0},
    "MI": {"IMI": 100.0, "SR": 0.0},
    "STTC": {"NDT": 100.0, "SR": 0.0},
    "CD": {"CLBBB": 100.0, "SR": 0.0},
    "HYP": {"LVH": 100.0, "SR": 0.0},
}


def synthetic_ecg(n_leads: int = 12, sampling_rate_hz: float = 100.0, duration_s: float = 10.0, seed: int = 0,
                  kind: str = "NORM", heart_rate_bpm: float = 70.0) -> np.ndarray:
    """float64 ``(leads, samples)`` in mV: Gaussian-wave beats with RR jitter, baseline wander and noise.

    ``kind``: "NORM"; "MI" (deep Q waves, inverted T); "STTC" (ST depression, flat T); "CD" (wide QRS);
    "HYP" (tall R); "AF" (irregular RR, no P wave, fibrillatory baseline).
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sampling_rate_hz))
    t = np.arange(n) / sampling_rate_hz
    rr = 60.0 / heart_rate_bpm
    spread = 0.25 if kind == "AF" else 0.03
    beats, current = [], rng.uniform(0.1, rr)
    while current < duration_s + 1.0:
        beats.append(current)
        current += rr * rng.uniform(1 - spread, 1 + spread)
    qrs_width = 0.03 if kind == "CD" else 0.012
    # (offset s, amplitude mV, width s) of P, Q, R, S, T
    waves = {"P": (-0.2, 0.12, 0.025), "Q": (-0.035, -0.08, 0.01), "R": (0.0, 1.0, qrs_width),
             "S": (0.04, -0.25, qrs_width), "T": (0.3, 0.3, 0.06)}
    if kind == "MI":
        waves["Q"] = (-0.035, -0.45, 0.015)
        waves["T"] = (0.3, -0.25, 0.06)
    elif kind == "STTC":
        waves["T"] = (0.3, 0.05, 0.06)
    elif kind == "HYP":
        waves["R"] = (0.0, 2.2, qrs_width)
        waves["S"] = (0.04, -0.6, qrs_width)
    elif kind == "AF":
        waves.pop("P")
    complex_ = np.zeros(n)
    for beat in beats:
        for offset, amplitude, width in waves.values():
            complex_ += amplitude * np.exp(-0.5 * ((t - beat - offset) / width) ** 2)
        if kind == "STTC":
            # smooth step down from 60 ms to 250 ms after the R peak: ST depression
            complex_ -= 0.075 * (np.tanh((t - beat - 0.06) / 0.01) - np.tanh((t - beat - 0.25) / 0.01))
    gains = np.resize(_LEAD_GAIN, n_leads) * rng.uniform(0.9, 1.1, n_leads)
    signal = gains[:, None] * complex_[None, :]
    signal += 0.05 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6.28))[None, :]
    if kind == "AF":
        signal += 0.04 * np.sin(2 * np.pi * 6.0 * t + rng.uniform(0, 6.28))[None, :]
    signal += rng.normal(0, 0.01, signal.shape)
    return signal


def write_wfdb_record(folder: Path, name: str, signal: np.ndarray, sampling_rate_hz: float,
                      lead_names: list[str] | tuple[str, ...], units: list[str] | None = None, fmt: str = "16",
                      comments: list[str] | None = None) -> Path:
    """Write ``signal`` ``(leads, samples)`` (physical units) as WFDB ``name.hea`` + ``name.dat``; return the .hea."""
    import wfdb

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    leads = signal.shape[0]
    wfdb.wrsamp(name, fs=sampling_rate_hz, units=list(units or ["mV"] * leads), sig_name=list(lead_names),
                p_signal=np.asarray(signal, dtype=np.float64).T, fmt=[fmt] * leads, comments=comments or [],
                write_dir=str(folder))
    return folder / f"{name}.hea"


def write_cinc_mat_record(folder: Path, name: str, signal_mv: np.ndarray, sampling_rate_hz: float = 300.0,
                          gain: float = 1000.0, lead_names: tuple[str, ...] = ("ECG",),
                          date: str = "2014-05-01 11:05:48") -> Path:
    """A CinC-challenge MATLAB record: ``name.mat`` (MATLAB v4, int16 ``val`` (leads, samples) = mV x gain) and
    ``name.hea`` with the challenge's date order (``YYYY-MM-DD HH:MM:SS``, which ``wfdb.rdrecord`` rejects).
    Returns the .hea path."""
    import scipy.io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    val = np.atleast_2d(np.round(np.asarray(signal_mv) * gain)).astype(np.int16)
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format="4")  # 20-byte header + 'val\0' = 24-byte offset
    lines = [f"{name} {val.shape[0]} {sampling_rate_hz:g} {val.shape[1]} {date} ".rstrip(" ") + " "]
    for row, lead in zip(val, lead_names):
        checksum = int(np.int16(np.sum(row.astype(np.int64)) & 0xFFFF))
        lines.append(f"{name}.mat 16+24 {gain:g}/mV 16 0 {int(row[0])} {checksum} 0 {lead} ")
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.hea"


def write_cinc_folder(root: Path, labels: dict[str, str] | None = None, sampling_rate_hz: float = 300.0,
                      duration_s: float = 10.0, subfolder: str = "records", reference_header: bool = False,
                      line_ending: str = "\n", seed: int = 0) -> Path:
    """A CinC 2017-style folder: ``REFERENCE.csv`` (``record,label`` rows) + ``subfolder/<record>.mat/.hea``.

    ``labels`` record id -> label (N, A, O, ~); by default 8 records, 2 per label. "A" records have irregular RR
    and no P wave; "~" records are noise.
    """
    root = Path(root)
    if labels is None:
        labels = {f"A{i + 1:05d}": label for i, label in enumerate("NAO~NAO~")}
    for i, (record, label) in enumerate(labels.items()):
        if label == "~":
            signal = np.random.default_rng(seed + i).normal(0, 0.4, int(duration_s * sampling_rate_hz))[None, :]
        else:
            kind = {"A": "AF", "O": "STTC"}.get(label, "NORM")
            signal = synthetic_ecg(1, sampling_rate_hz, duration_s, seed + i, kind=kind)
        write_cinc_mat_record(root / subfolder if subfolder else root, record, signal, sampling_rate_hz)
    rows = (["record,label"] if reference_header else []) + [f"{r},{lab}" for r, lab in labels.items()]
    (root / "REFERENCE.csv").write_bytes((line_ending.join(rows) + line_ending).encode())
    return root


def write_beats_record(folder: Path, name: str = "beats", sampling_rate_hz: float = 360.0, extension: str = "atr",
                       seed: int = 0) -> tuple[Path, np.ndarray, list[str]]:
    """A 2-lead (MLII, V1) 20 s WFDB record with an annotation file: a rhythm annotation ``+`` (aux ``(N``) at
    sample 0, beats ``N`` with one ``A``, one ``V``, one ``F``, one ``/``, a noise annotation ``~``.
    Returns (header path, annotation samples, symbols)."""
    import wfdb

    signal = synthetic_ecg(2, sampling_rate_hz, 20.0, seed)
    header = write_wfdb_record(folder, name, signal, sampling_rate_hz, ["MLII", "V1"])
    beat_samples = np.arange(1, 20) * int(sampling_rate_hz)  # one beat a second
    symbols = ["N"] * len(beat_samples)
    symbols[3], symbols[7], symbols[11], symbols[15] = "A", "V", "F", "/"
    samples = np.concatenate([[0], beat_samples[:10], [beat_samples[9] + 100], beat_samples[10:]]).astype(np.int64)
    symbols = ["+"] + symbols[:10] + ["~"] + symbols[10:]
    aux = ["(N"] + [""] * (len(symbols) - 1)
    wfdb.wrann(name, extension, samples, symbol=symbols, aux_note=aux, fs=sampling_rate_hz, write_dir=str(folder))
    return header, samples, symbols


def write_scp_statements(path: Path) -> Path:
    """A PTB-XL ``scp_statements.csv`` with the codes the fixture uses (columns as in PTB-XL 1.0.3)."""
    import pandas as pd

    rows = {  # code: (description, diagnostic, form, rhythm, diagnostic_class, diagnostic_subclass)
        "NORM": ("normal ECG", 1.0, None, None, "NORM", "NORM"),
        "IMI": ("inferior myocardial infarction", 1.0, None, None, "MI", "IMI"),
        "ASMI": ("anteroseptal myocardial infarction", 1.0, None, None, "MI", "AMI"),
        "NDT": ("non-diagnostic T abnormalities", 1.0, 1.0, None, "STTC", "STTC"),
        "CLBBB": ("complete left bundle branch block", 1.0, None, None, "CD", "CLBBB"),
        "LVH": ("left ventricular hypertrophy", 1.0, None, None, "HYP", "LVH"),
        "LVOLT": ("low QRS voltages in the frontal and horizontal leads", None, 1.0, None, None, None),
        "SR": ("sinus rhythm", None, None, 1.0, None, None),
    }
    table = pd.DataFrame.from_dict(
        rows, orient="index",
        columns=["description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"],
    )
    table.to_csv(path)
    return path


def write_ptbxl_folder(root: Path, n_records: int = 10, seed: int = 0, statements: bool = True,
                       write_hr: bool = False, missing_lr: tuple[int, ...] = ()) -> Path:
    """A small PTB-XL folder: ``ptbxl_database.csv``, ``scp_statements.csv`` (unless ``statements=False``),
    ``records100/00000/<ecg_id>_lr`` (12 leads, 100 Hz, 10 s, 16-bit, 1000 adu/mV as PTB-XL) and, with
    ``write_hr``, ``records500/00000/<ecg_id>_hr`` (500 Hz). ``missing_lr``: ecg_ids written without a 100 Hz
    file (only possible with ``write_hr``, to test the fallback).

    Records cycle through the superclasses NORM, MI, STTC, CD, HYP; the last record (when n_records >= 6) has
    ``{'ASMI': 100.0, 'NDT': 0.0, 'LVOLT': 0.0, 'SR': 0.0}`` -> superclasses MI and STTC (every code counts,
    whatever its likelihood; LVOLT and SR are not diagnostic). Patients: two ECGs each (ids as floats, as
    PTB-XL stores them); strat_fold cycles 1..10.
    """
    import pandas as pd

    root = Path(root)
    classes = list(PTBXL_CLASS_CODES)
    rows = []
    for i in range(n_records):
        ecg_id = i + 1
        kind = classes[i % len(classes)]
        codes = dict(PTBXL_CLASS_CODES[kind])
        if n_records >= 6 and i == n_records - 1:
            kind, codes = "MI", {"ASMI": 100.0, "NDT": 0.0, "LVOLT": 0.0, "SR": 0.0}
        lr = f"records100/00000/{ecg_id:05d}_lr"
        hr = f"records500/00000/{ecg_id:05d}_hr"
        if ecg_id not in missing_lr:
            signal = synthetic_ecg(12, 100.0, 10.0, seed + i, kind=kind)
            _write_ptbxl_signal(root / lr, signal, 100)
        if write_hr:
            signal = synthetic_ecg(12, 500.0, 10.0, seed + i, kind=kind)
            _write_ptbxl_signal(root / hr, signal, 500)
        rows.append({"ecg_id": ecg_id, "patient_id": float(1000 + i // 2), "age": 50.0 + i, "sex": i % 2,
                     "scp_codes": repr(codes), "strat_fold": i % 10 + 1, "filename_lr": lr, "filename_hr": hr})
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    if statements:
        write_scp_statements(root / "scp_statements.csv")
    return root


def _write_ptbxl_signal(stem: Path, signal: np.ndarray, sampling_rate_hz: int) -> None:
    import wfdb

    stem.parent.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(stem.name, fs=sampling_rate_hz, units=["mV"] * 12, sig_name=list(TWELVE_LEADS_PTBXL),
                p_signal=signal.T, fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                write_dir=str(stem.parent))
