"""What an ECG model does to a recording before its network sees it — fitted on the training split and stored in
the artefact (``preprocessor.json``, ``type: ecg``), so training, `medai predict`, `medai evaluate` and
`medai monitor` prepare signals the same way.

One recording ``(leads, samples)`` in mV at any rate and length →

1. **leads**: the model's leads picked by name (spelled as :func:`medai.io.ecg.normalise_lead_name` does:
   ``AVR`` = ``aVR``); a single-lead model takes the first lead unless ``leads`` names one;
2. **check** (:func:`medai.data.ecg.check_signal` at the recording's own rate): flat lines, NaN runs, clipping,
   implausible amplitude or rate, too short → the recording is *unusable* and gets no rhythm prediction;
3. **condition**: NaN gaps up to 50 ms interpolated, band-pass 0.5–40 Hz and a notch at the mains frequency
   (:func:`medai.data.ecg.clean`), resampled to ``sampling_rate_hz``;
4. **windows** of ``window_s`` every ``stride_s`` (the last one aligned to the end; a shorter recording is
   zero-padded to one window), divided by the training split's per-lead s.d. (amplitude stays informative:
   one scale for all recordings, not a per-recording z-score). A recording's prediction is the mean of its
   windows' class probabilities.

Beat models (``unit: beat``) see instead one window per heartbeat, from ``before_s`` before its R peak to
``after_s`` after it: long enough (2 s by default) to hold the neighbouring beats, so the network sees the RR
intervals that tell a premature beat from a normal one (de Chazal et al. 2004 used them as explicit features).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medai.core.errors import DataValidationError, NotFittedError, invalid_parameter
from medai.core.records import Record
from medai.data import ecg as signal_processing
from medai.io.ecg import normalise_lead_name

#: Interpolated NaN gaps (seconds); longer gaps are left to the signal check.
MAX_GAP_S = 0.05
#: What one network input is: a window of a recording, or one heartbeat with its neighbours.
UNITS = ("recording", "beat")


@dataclass
class EcgPreprocessor:
    """Lead selection, quality check, filtering, resampling and windowing of ECG recordings.

    Args:
        sampling_rate_hz: rate the network works at.
        window_s: window length the network sees (s).
        stride_s: step between windows of a longer recording (s).
        powerline_hz: mains frequency to notch (50 or 60; None: only the 40 Hz low-pass).
        leads: the model's leads in order (names as normalised by :func:`normalise_lead_name`); fitted from the
            training data when None.
        min_duration_s: recordings shorter than this are unusable.
        unit: ``recording`` (windows) or ``beat`` (one window per heartbeat).
        before_s, after_s: a beat window's extent around its R peak.
        rr_channel: add the RR-interval traces (:func:`rr_trace`) as two more input channels.
    """

    sampling_rate_hz: float = 150.0
    window_s: float = 10.0
    stride_s: float = 5.0
    powerline_hz: float | None = 50.0
    leads: list[str] | None = None
    min_duration_s: float = 5.0
    unit: str = "recording"
    before_s: float = 1.0
    after_s: float = 1.0
    rr_channel: bool = False
    scale_: list[float] | None = None
    type: str = field(default="ecg", init=False)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise invalid_parameter("unit", "EcgPreprocessor", f"one of {list(UNITS)}", self.unit)
        if self.stride_s > self.window_s:
            raise invalid_parameter("stride_s", "EcgPreprocessor", f"at most window_s ({self.window_s})",
                                    self.stride_s)

    @property
    def n_channels(self) -> int:
        """Network input channels: the leads, plus the two RR traces (:func:`rr_trace`) when ``rr_channel``."""
        return len(self.leads or []) + 2 * int(self.rr_channel)

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sampling_rate_hz))

    @property
    def stride_samples(self) -> int:
        return max(1, int(round(self.stride_s * self.sampling_rate_hz)))

    # -------------------------------------------------------------------------------------------- leads
    def select_leads(self, record: Record) -> tuple[np.ndarray, list[str]]:
        """The model's leads ``(len(leads), samples)`` of ``record`` and a note when a lead was chosen."""
        data = np.asarray(record.data, dtype=np.float64)
        if data.ndim != 2:
            raise DataValidationError(f"{_source(record)}: an ECG must be (leads, samples); got shape {data.shape}.")
        names = [normalise_lead_name(n) for n in record.meta.get("lead_names") or
                 [f"lead{i + 1}" for i in range(len(data))]]
        wanted = self.leads
        if wanted is None:
            return data, []
        if len(wanted) == 1 and wanted[0] not in names:
            note = ([] if len(data) == 1 else
                    [f"the model takes one lead; the first lead ('{names[0]}') of {len(data)} was used"])
            return data[:1], note
        missing = [lead for lead in wanted if lead not in names]
        if missing:
            raise DataValidationError(
                f"{_source(record)}: the model needs lead(s) {', '.join(missing)}; this recording has "
                f"{', '.join(names)}. Record those leads, or train a model on the leads you have."
            )
        return data[[names.index(lead) for lead in wanted]], []

    def _names(self, record: Record, data: np.ndarray) -> list[str]:
        names = record.meta.get("lead_names") or []
        if self.leads is not None and len(self.leads) == len(data) and len(names) != len(data):
            return list(self.leads)
        picked = [normalise_lead_name(n) for n in names]
        if self.leads is not None and all(lead in picked for lead in self.leads) and len(self.leads) == len(data):
            return list(self.leads)
        return picked[:len(data)] if len(picked) >= len(data) else [f"lead {i + 1}" for i in range(len(data))]

    # ------------------------------------------------------------------------------------- condition
    def condition(self, record: Record) -> tuple[np.ndarray | None, signal_processing.SignalCheck, list[str]]:
        """Check, filter and resample one recording: ``(leads, samples)`` float32 at ``sampling_rate_hz``, or
        None when the check finds the signal unusable (the check says why), and notes on lead choice."""
        rate = record.meta.get("sampling_rate_hz")
        if rate is None or not np.isfinite(rate) or rate <= 0:
            raise DataValidationError(f"{_source(record)}: no sampling rate is known for this recording; pass "
                                      "--sampling-rate HZ (or give the file a time column).")
        data, notes = self.select_leads(record)
        check = signal_processing.check_signal(data, float(rate), min_duration_s=self.min_duration_s,
                                               source=_source(record), lead_names=self._names(record, data))
        check = _tolerate_weak_leads(check, len(data))
        if not check.usable:
            return None, check, notes
        filled = signal_processing.interpolate_short_gaps(data, max(1, int(MAX_GAP_S * rate)))
        filtered = signal_processing.clean(filled, float(rate), powerline_hz=self.powerline_hz)
        resampled = np.nan_to_num(signal_processing.resample(filtered, float(rate), self.sampling_rate_hz))
        if self.rr_channel:
            resampled = np.concatenate([resampled, rr_trace(resampled[0], self.sampling_rate_hz)])
        return resampled.astype(np.float32), check, notes

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, signals: list[np.ndarray], lead_names: list[str] | None = None) -> EcgPreprocessor:
        """Learn the per-lead amplitude scale from conditioned training signals (the leads, when not given, from
        ``lead_names``)."""
        if not signals:
            raise DataValidationError("No usable training recording to fit the ECG preprocessing on.")
        if self.leads is None and lead_names is not None:
            self.leads = [normalise_lead_name(n) for n in lead_names]
        stacked = np.concatenate([np.asarray(s, dtype=np.float64) for s in signals], axis=1)
        scale = stacked.std(axis=1)
        self.scale_ = [float(v) if v > 1e-6 else 1.0 for v in scale]
        return self

    def _check_fitted(self) -> None:
        if self.scale_ is None:
            raise NotFittedError("This EcgPreprocessor is not fitted yet; call fit() on training signals first.")

    # ------------------------------------------------------------------------------------ windows
    def windows(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled windows ``(n_windows, leads, window_samples)`` float32 of a conditioned signal and their start
        samples."""
        self._check_fitted()
        windows, starts = signal_processing.sliding_windows(signal, self.window_samples, self.stride_samples)
        scale = np.asarray(self.scale_, dtype=np.float32)[None, :, None]
        return (windows / scale).astype(np.float32), starts

    def beat_windows(self, signal: np.ndarray, r_peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled beat windows ``(n_beats, leads, before + after samples)`` around ``r_peaks`` (samples at
        ``sampling_rate_hz``), and the R peaks kept (beats too near either end are dropped)."""
        self._check_fitted()
        beats, kept = signal_processing.segment_beats(signal, r_peaks, self.sampling_rate_hz,
                                                      before_s=self.before_s, after_s=self.after_s)
        if beats.ndim == 2:  # one lead: (n_beats, window) → (n_beats, 1, window)
            beats = beats[:, None, :]
        scale = np.asarray(self.scale_, dtype=np.float32)[None, :, None]
        return (beats / scale).astype(np.float32), kept

    def model_windows(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the network scores for a conditioned recording: its windows (recording models) or its detected
        beats (beat models, R peaks found on the first lead); and the window starts / R-peak samples."""
        if self.unit == "recording":
            return self.windows(signal)
        peaks = signal_processing.detect_r_peaks(signal[0], self.sampling_rate_hz)
        return self.beat_windows(signal, peaks)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Model input from windows that :meth:`windows` already scaled (identity; kept for the Predictor)."""
        return x.float()

    # ---------------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"type": "ecg", "sampling_rate_hz": self.sampling_rate_hz, "window_s": self.window_s,
                "stride_s": self.stride_s, "powerline_hz": self.powerline_hz, "leads": self.leads,
                "min_duration_s": self.min_duration_s, "unit": self.unit, "before_s": self.before_s,
                "after_s": self.after_s, "rr_channel": self.rr_channel, "scale": self.scale_}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> EcgPreprocessor:
        if state.get("type") != "ecg":
            raise DataValidationError(f"preprocessor.json describes a '{state.get('type')}' preprocessor, not ECG.")
        fitted = cls(sampling_rate_hz=state["sampling_rate_hz"], window_s=state["window_s"],
                     stride_s=state["stride_s"], powerline_hz=state["powerline_hz"], leads=state["leads"],
                     min_duration_s=state["min_duration_s"], unit=state["unit"], before_s=state["before_s"],
                     after_s=state["after_s"], rr_channel=state["rr_channel"])
        fitted.scale_ = list(state["scale"])
        return fitted


def rr_trace(lead: np.ndarray, sampling_rate_hz: float) -> np.ndarray:
    """Two rhythm traces of a conditioned lead ``(samples,)``, ``(2, samples)``: at every sample, the length (s)
    of the RR interval it lies in, and the absolute change (s) from the previous RR interval (R peaks by
    :func:`medai.data.ecg.detect_r_peaks`; the first and last intervals extend to the edges); zeros when fewer
    than two beats are found. Irregularly irregular RR is the defining feature of atrial fibrillation; the mean
    of the second trace over a window is the mean absolute successive RR difference, which the network's
    average pooling reads directly — a rhythm it cannot learn from a few hundred recordings alone (expert
    features beside deep ones, as in Hong et al., ENCASE, CinC 2017)."""
    peaks = signal_processing.detect_r_peaks(lead, sampling_rate_hz)
    traces = np.zeros((2, len(lead)), dtype=np.float32)
    if len(peaks) < 2:
        return traces
    rr = np.diff(peaks) / sampling_rate_hz
    change = np.abs(np.diff(rr, prepend=rr[0]))
    interval = np.clip(np.searchsorted(peaks, np.arange(len(lead)), side="right") - 1, 0, len(rr) - 1)
    traces[0], traces[1] = rr[interval], change[interval]
    return traces


def _tolerate_weak_leads(check: signal_processing.SignalCheck, n_leads: int) -> signal_processing.SignalCheck:
    """A multi-lead recording stays usable when the only problem is poor quality in fewer than half its leads:
    a near-isoelectric lead (often III or aVL, whose axis is perpendicular to the heart's) scores as "no
    recognisable heartbeats" on a perfectly good ECG. Flat lines, gaps and clipping in any lead still count."""
    if check.usable or n_leads < 2:
        return check
    weak = [r for r in check.reasons if r.startswith("poor signal quality")]
    if len(weak) == len(check.reasons) and len(weak) < n_leads / 2:
        return dataclasses.replace(check, usable=True, reasons=())
    return check


def _source(record: Record) -> str:
    return str(record.meta.get("source", record.id))
