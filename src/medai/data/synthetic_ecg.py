"""Synthetic ECG records with known truth (R-peak positions, beat labels, rhythm), for tests without patient data.

The beat morphology comes from neurokit2's ECGSYN (McSharry et al. 2003, "A dynamical model for generating
synthetic electrocardiogram signals", IEEE TBME 50(3)): one beat at 60 bpm is simulated once per process at
1000 Hz (``nk.ecg_simulate(method="ecgsyn", heart_rate_std=0)``), baseline-corrected and split with smooth masks
at the PR and ST segments into a P, a QRS and a T component. Records are then built by placing these components
at R-peak times drawn per rhythm, so the truth is exact: the R peak of every beat lies on an integer sample.

* ``sinus``: regular RR with respiratory sinus arrhythmia (4 % at about 0.25 Hz) and 1.5 % random variation;
  P waves before every QRS. Default 70 bpm. ``tachycardia`` (130 bpm) and ``bradycardia`` (45 bpm) are the same
  at other rates.
* ``af``: irregularly irregular RR (independent log-normal intervals, coefficient of variation about 0.22,
  at least 0.28 s apart), no P waves, and fibrillatory f-waves: a frequency-modulated oscillation whose
  instantaneous frequency wanders inside 4–9 Hz, about 0.05 mV. Default 90 bpm. Beats are ``'N'``; the rhythm
  is ``'af'`` (written as the MIT-BIH rhythm annotation ``(AFIB``).
* ``pvc``: sinus rhythm in which ``pvc_fraction`` of the beats (never two in a row, never the first or last)
  are premature ventricular complexes: coupled at 0.6 of the RR interval, no P wave, QRS widened 1.8x and 1.4x
  taller, discordant (inverted) T wave, followed by a full compensatory pause. Annotated ``'V'``.
* ``flat``: a lead-off flat line (exactly 0 mV, no noise: a disconnected electrode gives a constant value); with
  ``flat_span_s=(start, end)`` a sinus record that is flat only in that stretch.
* ``noise``: electrode-motion artefact (0.5–5 Hz, about 0.4 mV) plus muscle noise (20–100 Hz, about 0.15 mV),
  no QRS complexes; ``r_peaks`` is empty.

Wave timing follows the heart rate: the T component is time-scaled by ``sqrt(RR)`` (Bazett's QT-RR relation)
and the P offset by ``RR ** 0.25`` (the PR interval shortens only slightly with rate), both at the record's mean
RR. Leads (up to the 12 standard leads, in the order I, II, III, aVR, aVL, aVF, V1–V6) scale the P, QRS and T
components with per-lead gains; the limb leads obey Einthoven's and Goldberger's relations (III = II - I,
aVR = -(I + II) / 2, ...), V1–V2 have a negative QRS (rS pattern). Gaussian noise (``noise_mv``, standard
deviation) and a baseline wander sinusoid (0.15–0.3 Hz, amplitude ``baseline_wander_mv``) are added per lead.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import neurokit2 as nk
import numpy as np
from scipy import signal as sps

from medai.core.errors import invalid_parameter

__all__ = ["RHYTHMS", "LEAD_NAMES", "SyntheticEcg", "synthesize_ecg", "write_wfdb"]

RHYTHMS = ("sinus", "af", "pvc", "tachycardia", "bradycardia", "flat", "noise")
LEAD_NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

_DEFAULT_HEART_RATE_BPM = {"sinus": 70.0, "af": 90.0, "pvc": 70.0, "tachycardia": 130.0, "bradycardia": 45.0,
                           "flat": 70.0, "noise": 70.0}
# MIT-BIH rhythm annotation strings (aux_note of a '+' annotation).
_RHYTHM_AUX = {"sinus": "(N", "af": "(AFIB", "pvc": "(N", "tachycardia": "(SVTA", "bradycardia": "(SBR"}

_TEMPLATE_HZ = 1000.0
# P, QRS, T gains of leads I and II relative to the ECGSYN beat; the other limb leads follow from these two.
_GAIN_I = np.array([0.6, 0.7, 0.6])
_GAIN_II = np.array([1.0, 1.0, 1.0])
_GAIN_PRECORDIAL = np.array([
    [0.5, -0.8, -0.2],  # V1: rS, flat/inverted T
    [0.6, -0.9, 0.9],  # V2
    [0.5, 0.6, 1.0],  # V3: transition
    [0.5, 1.3, 1.0],  # V4
    [0.5, 1.2, 0.8],  # V5
    [0.5, 1.0, 0.6],  # V6
])
_AF_RR_CV = 0.22
_MIN_RR_S = 0.28


@dataclass(frozen=True)
class SyntheticEcg:
    """A synthetic ECG record and its truth.

    Attributes:
        signal: float32 ``(leads, samples)`` in mV.
        sampling_rate_hz: samples per second.
        r_peaks: int64 ``(beats,)`` sample index of every R peak inside the record (empty for ``flat`` and
            ``noise``).
        beat_symbols: one MIT-BIH beat symbol per R peak: ``'N'`` normal (also the conducted beats of AF),
            ``'V'`` premature ventricular complex.
        rhythm: one of :data:`RHYTHMS`.
        lead_names: one name per row of ``signal``.
    """

    signal: np.ndarray
    sampling_rate_hz: float
    r_peaks: np.ndarray
    beat_symbols: list[str]
    rhythm: str
    lead_names: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Record length in seconds."""
        return self.signal.shape[-1] / self.sampling_rate_hz


def synthesize_ecg(
    rhythm: str = "sinus",
    *,
    duration_s: float = 30.0,
    sampling_rate_hz: float = 300.0,
    heart_rate_bpm: float | None = None,
    n_leads: int = 1,
    noise_mv: float = 0.01,
    baseline_wander_mv: float = 0.0,
    pvc_fraction: float = 0.15,
    flat_span_s: tuple[float, float] | None = None,
    seed: int = 0,
) -> SyntheticEcg:
    """Generate one synthetic ECG record (see the module docstring for each rhythm).

    Args:
        rhythm: one of :data:`RHYTHMS`.
        duration_s: record length in seconds (1 to 3600).
        sampling_rate_hz: 50 to 10000 Hz.
        heart_rate_bpm: mean heart rate (20 to 250 bpm); ``None`` takes the rhythm's default (sinus 70,
            af 90, pvc 70, tachycardia 130, bradycardia 45).
        n_leads: 1 to 12 leads, the first ``n_leads`` of :data:`LEAD_NAMES`.
        noise_mv: standard deviation of the added Gaussian noise in mV (not added to flat stretches).
        baseline_wander_mv: amplitude of the baseline wander sinusoid in mV (0 = none).
        pvc_fraction: for ``pvc``, the fraction of beats that are PVCs (0 to 0.4; rounded to whole beats; PVCs
            are never adjacent, so very short records may hold fewer).
        flat_span_s: for ``flat``, ``(start, end)`` in seconds of the flat stretch inside a sinus record;
            ``None`` makes the whole record flat.
        seed: seed of ``numpy.random.default_rng``; the same arguments give the same record.

    Returns:
        :class:`SyntheticEcg`.
    """
    owner = "synthesize_ecg"
    if rhythm not in RHYTHMS:
        raise invalid_parameter("rhythm", owner, f"one of {RHYTHMS}", rhythm)
    if not 1.0 <= float(duration_s) <= 3600.0:
        raise invalid_parameter("duration_s", owner, "a duration in [1, 3600] seconds", duration_s)
    if not 50.0 <= float(sampling_rate_hz) <= 10_000.0:
        raise invalid_parameter("sampling_rate_hz", owner, "a rate in [50, 10000] Hz", sampling_rate_hz)
    if heart_rate_bpm is not None and not 20.0 <= float(heart_rate_bpm) <= 250.0:
        raise invalid_parameter("heart_rate_bpm", owner, "None or a rate in [20, 250] bpm", heart_rate_bpm)
    if not isinstance(n_leads, int) or not 1 <= n_leads <= len(LEAD_NAMES):
        raise invalid_parameter("n_leads", owner, "an integer in [1, 12]", n_leads)
    if float(noise_mv) < 0 or float(baseline_wander_mv) < 0:
        raise invalid_parameter("noise_mv/baseline_wander_mv", owner, "non-negative amplitudes in mV",
                                (noise_mv, baseline_wander_mv))
    if not 0.0 <= float(pvc_fraction) <= 0.4:
        raise invalid_parameter("pvc_fraction", owner, "a fraction in [0, 0.4]", pvc_fraction)
    if flat_span_s is not None:
        if rhythm != "flat":
            raise invalid_parameter("flat_span_s", owner, "None unless rhythm='flat'", flat_span_s)
        if len(flat_span_s) != 2 or not 0.0 <= flat_span_s[0] < flat_span_s[1] <= duration_s:
            raise invalid_parameter("flat_span_s", owner, f"(start, end) seconds with 0 <= start < end <= "
                                    f"{duration_s}", flat_span_s)

    fs = float(sampling_rate_hz)
    n_samples = int(round(duration_s * fs))
    rng = np.random.default_rng(seed)
    gains = _lead_gains()[:n_leads]  # (leads, 3)
    lead_names = list(LEAD_NAMES[:n_leads])
    hr = float(heart_rate_bpm) if heart_rate_bpm is not None else _DEFAULT_HEART_RATE_BPM[rhythm]
    rr_mean_s = 60.0 / hr

    if rhythm == "flat" and flat_span_s is None:
        return SyntheticEcg(np.zeros((n_leads, n_samples), np.float32), fs, np.zeros(0, np.int64), [],
                            rhythm, lead_names)
    if rhythm == "noise":
        sig = _motion_and_muscle_noise(rng, n_leads, n_samples, fs)
        sig += _noise_and_wander(rng, n_leads, n_samples, fs, noise_mv, baseline_wander_mv)
        return SyntheticEcg(sig.astype(np.float32), fs, np.zeros(0, np.int64), [], rhythm, lead_names)

    # R-peak times (s), starting before 0 so that the record opens mid-rhythm.
    if rhythm == "af":
        r_times = _af_times(rng, rr_mean_s, duration_s)
    else:
        r_times = _sinus_times(rng, rr_mean_s, duration_s)
    is_pvc = np.zeros(len(r_times), bool)
    if rhythm == "pvc":
        is_pvc = _choose_pvcs(rng, r_times, duration_s, pvc_fraction)
        previous = np.r_[r_times[0] - rr_mean_s, r_times[:-1]]
        r_times = np.where(is_pvc, previous + 0.6 * (r_times - previous), r_times)

    comps = _components_at(fs, rr_mean_s)
    sig = np.zeros((n_leads, n_samples))
    r_samples = np.round(r_times * fs).astype(np.int64)
    for r, pvc in zip(r_samples, is_pvc):
        if pvc:
            _add(sig, comps["pvc"], r, gains[:, 1:2])
        else:
            if rhythm != "af":
                _add(sig, comps["p"], r, gains[:, 0:1])
            _add(sig, comps["qrs"], r, gains[:, 1:2])
            _add(sig, comps["t"], r, gains[:, 2:3])
    if rhythm == "af":
        sig += _f_waves(rng, n_samples, fs) * np.abs(gains[:, 0:1])

    inside = (r_samples >= 0) & (r_samples < n_samples)
    r_peaks = r_samples[inside]
    symbols = ["V" if v else "N" for v in is_pvc[inside]]
    sig += _noise_and_wander(rng, n_leads, n_samples, fs, noise_mv, baseline_wander_mv)
    if rhythm == "flat":  # flat stretch inside a sinus record
        start, stop = int(round(flat_span_s[0] * fs)), int(round(flat_span_s[1] * fs))
        sig[:, start:stop] = 0.0
        keep = (r_peaks < start) | (r_peaks >= stop)
        r_peaks = r_peaks[keep]
        symbols = [s for s, k in zip(symbols, keep) if k]
    return SyntheticEcg(sig.astype(np.float32), fs, r_peaks, symbols, rhythm, lead_names)


def write_wfdb(ecg: SyntheticEcg, folder: str | Path, record_name: str, *, with_annotations: bool = True) -> Path:
    """Write a synthetic record as WFDB files (``.hea`` + ``.dat``, format 16, and an ``atr`` annotation file).

    The annotation file holds one MIT-BIH beat annotation per R peak (``'N'``/``'V'``) and, first, a rhythm
    annotation ``'+'`` at sample 0 whose aux note names the rhythm (``(N``, ``(AFIB``, ``(SVTA``, ``(SBR``); flat
    and noise records have no beats and no rhythm annotation.

    Args:
        ecg: the record.
        folder: output folder (created if missing).
        record_name: WFDB record name (letters, digits, ``_`` and ``-``).
        with_annotations: also write ``<record_name>.atr``.

    Returns:
        Path of the ``.hea`` file.
    """
    import wfdb  # imported here: only writers need it

    if not isinstance(record_name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", record_name):
        raise invalid_parameter("record_name", "write_wfdb", "a name of letters, digits, '_' or '-'", record_name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p_signal = np.ascontiguousarray(ecg.signal.T, dtype=np.float64)
    wfdb.wrsamp(record_name, fs=ecg.sampling_rate_hz, units=["mV"] * p_signal.shape[1],
                sig_name=list(ecg.lead_names), p_signal=p_signal, fmt=["16"] * p_signal.shape[1],
                comments=[f"synthetic rhythm: {ecg.rhythm}"], write_dir=str(folder))
    if with_annotations and len(ecg.r_peaks):
        samples = np.asarray(ecg.r_peaks, np.int64)
        symbols = list(ecg.beat_symbols)
        aux = [""] * len(symbols)
        if ecg.rhythm in _RHYTHM_AUX:
            samples = np.r_[0, samples]
            symbols = ["+", *symbols]
            aux = [_RHYTHM_AUX[ecg.rhythm], *aux]
        wfdb.wrann(record_name, "atr", samples, symbol=symbols, aux_note=aux, fs=ecg.sampling_rate_hz,
                   write_dir=str(folder))
    return folder / f"{record_name}.hea"


# ------------------------------------------------------------------------------------------------ beat templates
@functools.lru_cache(maxsize=1)
def _ecgsyn_beat() -> tuple[np.ndarray, int]:
    """One ECGSYN beat at 60 bpm, 1000 Hz, baseline 0, from R - 500 ms to R + 500 ms; returns (beat, R index)."""
    x = nk.ecg_simulate(duration=8, sampling_rate=int(_TEMPLATE_HZ), noise=0, heart_rate=60, heart_rate_std=0,
                        method="ecgsyn", random_state=0)
    r = 5500 + int(np.argmax(x[5500:6500]))  # a beat well after the integrator's start transient
    beat = np.asarray(x[r - 500 : r + 500], np.float64)
    # The TP segment (both ends) is the isoelectric line; remove it as a straight line, then taper to exactly 0.
    left, right = beat[:40].mean(), beat[-40:].mean()
    beat = beat - np.linspace(left, right, beat.size)
    beat *= sps.windows.tukey(beat.size, alpha=0.1)
    return beat, 500


def _smooth_step(t_ms: np.ndarray, at_ms: float, width_ms: float = 20.0) -> np.ndarray:
    """0 before ``at_ms - width/2``, 1 after ``at_ms + width/2``, raised-cosine in between."""
    u = np.clip((t_ms - at_ms) / width_ms + 0.5, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


@functools.lru_cache(maxsize=32)
def _components_at(fs: float, rr_mean_s: float) -> dict[str, tuple[np.ndarray, int]]:
    """P, QRS, T and PVC waveforms sampled at ``fs``: name -> (waveform, index of the R peak within it)."""
    beat, r_idx = _ecgsyn_beat()
    t_ms = (np.arange(beat.size) - r_idx) * 1000.0 / _TEMPLATE_HZ
    after_pr = _smooth_step(t_ms, -85.0)  # PR segment of the 60 bpm ECGSYN beat
    after_st = _smooth_step(t_ms, 90.0)  # ST segment
    p, t = beat * (1 - after_pr), beat * after_st
    qrs = beat - p - t
    p_scale, t_scale = rr_mean_s**0.25, rr_mean_s**0.5

    def sample(wave: np.ndarray, scale: float, lo_ms: float, hi_ms: float) -> tuple[np.ndarray, int]:
        lo, hi = int(np.floor(lo_ms * fs / 1000)), int(np.ceil(hi_ms * fs / 1000))
        tq = np.arange(lo, hi + 1) * 1000.0 / fs / scale  # query times on the 60 bpm template
        return np.interp(tq, t_ms, wave, left=0.0, right=0.0), -lo

    width_pvc = 1.8
    pvc_t = -1.3 * t  # discordant T wave
    comps = {
        "p": sample(p, p_scale, -500 * p_scale, 0),
        "qrs": sample(qrs, 1.0, -150, 150),
        "t": sample(t, t_scale, 0, 500 * t_scale),
    }
    qrs_w, r_w = sample(1.4 * qrs, width_pvc, -150 * width_pvc, 150 * width_pvc)
    t_w, r_t = sample(pvc_t, t_scale * 1.15, 0, 500 * t_scale * 1.15)
    lo = r_w
    hi = max(qrs_w.size - r_w, t_w.size - r_t)
    pvc = np.zeros(lo + hi)
    pvc[lo - r_w : lo - r_w + qrs_w.size] += qrs_w
    pvc[lo - r_t : lo - r_t + t_w.size] += t_w
    comps["pvc"] = (pvc, lo)
    return comps


def _add(sig: np.ndarray, comp: tuple[np.ndarray, int], r: int, gain: np.ndarray) -> None:
    """Add ``gain * waveform`` with its R index at sample ``r`` (clipped at the record's edges)."""
    wave, r_idx = comp
    start = r - r_idx
    a, b = max(start, 0), min(start + wave.size, sig.shape[1])
    if a < b:
        sig[:, a:b] += gain * wave[a - start : b - start]


def _lead_gains() -> np.ndarray:
    """(12, 3) P/QRS/T gains in :data:`LEAD_NAMES` order; limb leads from I and II (Einthoven, Goldberger)."""
    g1, g2 = _GAIN_I, _GAIN_II
    limb = [g1, g2, g2 - g1, -(g1 + g2) / 2, g1 - g2 / 2, g2 - g1 / 2]
    return np.vstack([*limb, _GAIN_PRECORDIAL])


# ------------------------------------------------------------------------------------------------ rhythms
def _sinus_times(rng: np.random.Generator, rr_mean_s: float, duration_s: float) -> np.ndarray:
    """R times (s) of a sinus rhythm: respiratory sinus arrhythmia plus small random variation."""
    f_resp, phase = rng.uniform(0.2, 0.3), rng.uniform(0, 2 * np.pi)
    t, times = -1.5 * rr_mean_s, []
    while t < duration_s + rr_mean_s:
        times.append(t)
        rr = rr_mean_s * (1 + 0.04 * np.sin(2 * np.pi * f_resp * t + phase) + 0.015 * rng.standard_normal())
        t += max(rr, _MIN_RR_S)
    return np.asarray(times)


def _af_times(rng: np.random.Generator, rr_mean_s: float, duration_s: float) -> np.ndarray:
    """R times (s) of AF: independent log-normal RR intervals (no pattern), never closer than 0.28 s."""
    sigma = np.sqrt(np.log(1 + _AF_RR_CV**2))
    t, times = -1.5 * rr_mean_s, []
    while t < duration_s + rr_mean_s:
        times.append(t)
        t += max(rr_mean_s * rng.lognormal(-sigma**2 / 2, sigma), _MIN_RR_S)
    return np.asarray(times)


def _choose_pvcs(rng: np.random.Generator, r_times: np.ndarray, duration_s: float, fraction: float) -> np.ndarray:
    """Mark round(fraction x beats in the record) beats as PVCs, uniformly among the placements where no two
    are adjacent and neither the first nor the last beat inside the record is one."""
    inside = np.flatnonzero((r_times >= 0) & (r_times < duration_s))
    candidates = inside[1:-1]
    m = candidates.size
    n_pvc = min(int(round(fraction * inside.size)), (m + 1) // 2)
    is_pvc = np.zeros(r_times.size, bool)
    if n_pvc > 0:
        # k non-adjacent positions among m <-> k increasing slots among m - k + 1, shifted by their rank
        slots = np.sort(rng.choice(m - n_pvc + 1, size=n_pvc, replace=False))
        is_pvc[candidates[slots + np.arange(n_pvc)]] = True
    return is_pvc


def _f_waves(rng: np.random.Generator, n_samples: int, fs: float) -> np.ndarray:
    """Fibrillatory waves (mV): frequency wandering inside 4–9 Hz, amplitude about 0.05 mV, with a harmonic."""
    f0 = rng.uniform(5.5, 7.0)
    # slow (< 0.5 Hz) wander of the instantaneous frequency and amplitude: low-passed Gaussian noise
    sos = sps.butter(2, 0.5, btype="lowpass", fs=fs, output="sos")
    wander = sps.sosfiltfilt(sos, rng.standard_normal((2, n_samples)), axis=-1)
    wander /= np.maximum(wander.std(axis=-1, keepdims=True), 1e-12)
    f_inst = np.clip(f0 + 0.8 * wander[0], 4.0, 9.0)
    phase = 2 * np.pi * np.cumsum(f_inst) / fs + rng.uniform(0, 2 * np.pi)
    amp = 0.08 * (1 + 0.25 * np.tanh(wander[1]))
    return amp * (np.sin(phase) + 0.3 * np.sin(2 * phase + 0.5))


def _motion_and_muscle_noise(rng: np.random.Generator, n_leads: int, n_samples: int, fs: float) -> np.ndarray:
    """Electrode-motion artefact (0.5–5 Hz, sd 0.4 mV) plus muscle noise (20–100 Hz, sd 0.15 mV)."""
    nyq = fs / 2
    motion = sps.sosfiltfilt(sps.butter(2, [0.5, min(5.0, 0.9 * nyq)], btype="bandpass", fs=fs, output="sos"),
                             rng.standard_normal((n_leads, n_samples)), axis=-1)
    muscle = sps.sosfiltfilt(sps.butter(2, [min(20.0, 0.4 * nyq), min(100.0, 0.9 * nyq)], btype="bandpass",
                                        fs=fs, output="sos"), rng.standard_normal((n_leads, n_samples)), axis=-1)
    motion *= 0.4 / np.maximum(motion.std(axis=-1, keepdims=True), 1e-12)
    muscle *= 0.15 / np.maximum(muscle.std(axis=-1, keepdims=True), 1e-12)
    return motion + muscle


def _noise_and_wander(rng: np.random.Generator, n_leads: int, n_samples: int, fs: float, noise_mv: float,
                      wander_mv: float) -> np.ndarray:
    """Gaussian noise (sd ``noise_mv``) plus a 0.15–0.3 Hz baseline sinusoid of amplitude ``wander_mv``."""
    t = np.arange(n_samples) / fs
    out = noise_mv * rng.standard_normal((n_leads, n_samples))
    f = rng.uniform(0.15, 0.3, size=(n_leads, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n_leads, 1))
    return out + wander_mv * np.sin(2 * np.pi * f * t + phase)
