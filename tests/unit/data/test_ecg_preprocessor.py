"""The ECG model's preparation: lead choice, signal check, filtering/resampling, RR traces, windows, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError, NotFittedError
from medai.core.records import Modality, Record
from medai.data.ecg_preprocessor import EcgPreprocessor, rr_trace
from medai.data.synthetic_ecg import synthesize_ecg


def _record(signal, rate=300.0, names=("ECG",), rid="r1"):
    return Record(id=rid, modality=Modality.ECG, data=np.asarray(signal, dtype=np.float32),
                  meta={"sampling_rate_hz": rate, "lead_names": list(names), "source": f"{rid}.hea"})


def test_condition_resamples_to_the_model_rate_and_adds_rr_traces():
    ecg = synthesize_ecg("sinus", duration_s=20, sampling_rate_hz=300, seed=1)
    p = EcgPreprocessor(sampling_rate_hz=150, rr_channel=True, leads=["ECG"])
    signal, check, notes = p.condition(_record(ecg.signal))
    assert check.usable and notes == []
    assert signal.shape == (3, 3000) and signal.dtype == np.float32 and p.n_channels == 3
    rr, change = signal[1], signal[2]
    assert np.median(rr) == pytest.approx(60 / 70, abs=0.05)  # the generator's 70 bpm
    assert np.median(change) < 0.05  # sinus: successive RR intervals barely differ


def test_rr_traces_separate_af_from_sinus():
    sinus = synthesize_ecg("sinus", duration_s=30, sampling_rate_hz=150, seed=2).signal[0]
    af = synthesize_ecg("af", duration_s=30, sampling_rate_hz=150, seed=2).signal[0]
    assert rr_trace(af, 150)[1].mean() > 3 * rr_trace(sinus, 150)[1].mean()
    assert not rr_trace(np.zeros(3000), 150).any()  # no beats: zeros, never invented intervals


def test_unusable_recordings_are_refused_with_reasons():
    p = EcgPreprocessor(leads=["ECG"])
    signal, check, _ = p.condition(_record(np.zeros((1, 6000))))
    assert signal is None and not check.usable and any("flat" in r for r in check.reasons)
    with pytest.raises(DataValidationError, match="no sampling rate"):
        p.condition(_record(np.zeros((1, 6000)), rate=None))


def test_a_weak_lead_does_not_make_a_twelve_lead_ecg_unusable_but_a_flat_one_does():
    ecg = synthesize_ecg("sinus", duration_s=12, sampling_rate_hz=500, n_leads=12, seed=3)
    names = ecg.lead_names
    weak = ecg.signal.copy()
    weak[2] = np.random.default_rng(0).normal(0, 0.02, weak.shape[1])  # lead III: noise only
    p = EcgPreprocessor(sampling_rate_hz=100, leads=list(names))
    signal, check, _ = p.condition(_record(weak, 500, names))
    assert signal is not None and signal.shape == (12, 1200)
    flat = ecg.signal.copy()
    flat[4] = 0.0
    signal, check, _ = p.condition(_record(flat, 500, names))
    assert signal is None and any("aVL" in r and "flat" in r for r in check.reasons)


def test_leads_are_picked_by_name_and_missing_leads_are_named():
    ecg = synthesize_ecg("sinus", duration_s=12, sampling_rate_hz=500, n_leads=3, seed=4)
    p = EcgPreprocessor(leads=["II"])
    data, notes = p.select_leads(_record(ecg.signal, 500, ["I", "II", "III"]))
    assert np.array_equal(data[0], ecg.signal[1]) and notes == []
    single = EcgPreprocessor(leads=["ECG"])
    data, notes = single.select_leads(_record(ecg.signal, 500, ["MLII", "V5", "V1"]))
    assert np.array_equal(data[0], ecg.signal[0]) and "first lead" in notes[0]
    twelve = EcgPreprocessor(leads=["I", "V1"])
    with pytest.raises(DataValidationError, match="needs lead\\(s\\) V1"):
        twelve.select_leads(_record(ecg.signal, 500, ["I", "II", "III"]))


def test_windows_are_scaled_by_the_training_sd_and_cover_the_whole_recording():
    p = EcgPreprocessor(sampling_rate_hz=100, window_s=10, stride_s=5, leads=["ECG"])
    with pytest.raises(NotFittedError):
        p.windows(np.zeros((1, 2500), np.float32))
    rng = np.random.default_rng(0)
    p.fit([rng.normal(0, 2.0, (1, 3000)), rng.normal(0, 2.0, (1, 1000))])
    assert p.scale_[0] == pytest.approx(2.0, rel=0.05)
    windows, starts = p.windows(rng.normal(0, 2.0, (1, 2300)).astype(np.float32))
    assert windows.shape == (4, 1, 1000) and starts[-1] + 1000 == 2300  # last window ends with the recording
    assert windows.std() == pytest.approx(1.0, rel=0.1)
    short, _ = p.windows(np.ones((1, 600), np.float32))
    assert short.shape == (1, 1, 1000)  # shorter than a window: one zero-padded window


def test_round_trip_and_parameter_checks():
    p = EcgPreprocessor(sampling_rate_hz=125, window_s=8, stride_s=4, leads=["II"], rr_channel=True, unit="recording")
    p.fit([np.ones((3, 100)) * np.arange(100)])
    again = EcgPreprocessor.from_dict(p.to_dict())
    assert again.to_dict() == p.to_dict() and again.n_channels == 3
    with pytest.raises(InvalidParameterError, match="stride_s"):
        EcgPreprocessor(window_s=5, stride_s=10)
    with pytest.raises(InvalidParameterError, match="unit"):
        EcgPreprocessor(unit="minute")
    with pytest.raises(DataValidationError, match="not ECG"):
        EcgPreprocessor.from_dict({"type": "image"})
