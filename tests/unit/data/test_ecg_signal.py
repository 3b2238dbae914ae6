"""ECG signal processing: resampling, filtering, R peaks (MIT-BIH), beats, checks, features, windows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.data.ecg import (
    FEATURE_NAMES, HRV_FEATURE_NAMES, QUALITY_THRESHOLD, RR_FEATURE_NAMES, SignalCheck, check_signal, clean,
    detect_r_peaks, fit_length, hrv_features, interpolate_short_gaps, record_features, resample, rr_features,
    segment_beats, signal_quality, sliding_windows,
)
from medai.data.synthetic_ecg import synthesize_ecg

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
MITBIH_100 = SHARED_DATA / "ecg_wfdb_samples" / "100"
CINC_A00004 = SHARED_DATA / "cinc2017_af" / "records" / "A00004.mat"
FS = 300.0


@pytest.fixture(scope="module")
def sinus():
    return synthesize_ecg("sinus", duration_s=30, sampling_rate_hz=FS, seed=3)


def _band_power(x: np.ndarray, fs: float, lo: float, hi: float) -> float:
    f, p = sps.welch(x, fs=fs, nperseg=int(8 * fs))
    return float(p[(f >= lo) & (f <= hi)].sum())


# ------------------------------------------------------------------------------------------------ resample
def test_resample_keeps_duration_and_frequency():
    t = np.arange(int(5 * 360)) / 360
    x = np.sin(2 * np.pi * 10 * t)
    y = resample(x, 360, 300)
    assert y.shape == (1500,)
    f, p = sps.periodogram(y, fs=300)
    assert f[np.argmax(p)] == pytest.approx(10.0, abs=0.25)
    # amplitude kept (away from the edges), two leads resampled alike
    assert np.abs(y[100:-100]).max() == pytest.approx(1.0, abs=0.02)
    two = resample(np.vstack([x, 2 * x]), 360, 500)
    assert two.shape == (2, 2500)
    np.testing.assert_allclose(two[1], 2 * two[0], atol=1e-9)


def test_resample_refuses_nan_and_bad_rates():
    x = np.ones(1000)
    x[10] = np.nan
    with pytest.raises(DataValidationError, match="NaN.*interpolate_short_gaps"):
        resample(x, 500, 250)
    with pytest.raises(InvalidParameterError, match="'to_hz' parameter of resample"):
        resample(np.ones(100), 500, 0)
    with pytest.raises(DataValidationError, match=r"shape \(2, 3, 4\)"):
        resample(np.ones((2, 3, 4)), 500, 250)


# ------------------------------------------------------------------------------------------------ clean
def test_clean_removes_baseline_wander_and_mains_but_keeps_the_qrs_band(sinus):
    x = sinus.signal[0].astype(float)
    t = np.arange(x.size) / FS
    dirty = x + 1.0 * np.sin(2 * np.pi * 0.2 * t) + 0.3 * np.sin(2 * np.pi * 50 * t)
    y = clean(dirty, FS)
    assert _band_power(y, FS, 0.1, 0.3) < 0.01 * _band_power(dirty, FS, 0.1, 0.3)  # wander: > 20 dB down
    assert _band_power(y, FS, 49, 51) < 0.001 * _band_power(dirty, FS, 49, 51)  # mains: > 30 dB down
    qrs_band = _band_power(x, FS, 5, 25)
    assert _band_power(y, FS, 5, 25) == pytest.approx(qrs_band, rel=0.15)
    # 60 Hz mains on a two-lead array
    dirty60 = np.vstack([x, -x]) + 0.3 * np.sin(2 * np.pi * 60 * t)
    y60 = clean(dirty60, FS, powerline_hz=60)
    assert y60.shape == (2, x.size)
    assert _band_power(y60[1], FS, 59, 61) < 0.001 * _band_power(dirty60[1], FS, 59, 61)


def test_clean_validates_the_band():
    with pytest.raises(InvalidParameterError, match="below Nyquist"):
        clean(np.zeros(1000), 60.0, band_hz=(0.5, 40.0))
    with pytest.raises(InvalidParameterError, match="low < high"):
        clean(np.zeros(1000), 300.0, band_hz=(10.0, 5.0))
    with pytest.raises(DataValidationError, match="NaN"):
        clean(np.full(1000, np.nan), 300.0)


# ------------------------------------------------------------------------------------------------ R peaks
@pytest.mark.skipif(not MITBIH_100.with_suffix(".dat").exists(), reason="MIT-BIH record 100 not present")
def test_r_peaks_on_mitbih_100_reach_99_percent_sensitivity_and_positive_predictivity():
    import wfdb
    from wfdb import processing

    record = wfdb.rdrecord(str(MITBIH_100))
    annotation = wfdb.rdann(str(MITBIH_100), "atr")
    lead = record.p_signal[:, record.sig_name.index("MLII")]
    beat_symbols = set("NLRBAaJSVrFejnE/fQ?")
    reference = np.array([s for s, sym in zip(annotation.sample, annotation.symbol) if sym in beat_symbols])
    peaks = detect_r_peaks(lead, record.fs)
    assert peaks.dtype == np.int64
    comparison = processing.compare_annotations(reference, peaks, int(0.15 * record.fs))
    assert comparison.sensitivity > 0.99
    assert comparison.positive_predictivity > 0.99


def test_detect_r_peaks_flat_lead_gives_no_peaks_and_two_d_is_refused():
    assert detect_r_peaks(np.zeros(3000), FS).size == 0
    with pytest.raises(DataValidationError, match=r"one lead \(samples,\).*signal\[0\]"):
        detect_r_peaks(np.zeros((2, 3000)), FS)


# ------------------------------------------------------------------------------------------------ beats
def test_segment_beats_shapes_and_edges():
    x = np.arange(1000, dtype=float)
    peaks = np.array([10, 100, 500, 990])
    beats, kept = segment_beats(x, peaks, 100.0, before_s=0.2, after_s=0.3)
    assert kept.tolist() == [100, 500]  # 10 too close to the start, 990 to the end
    assert beats.shape == (2, 50)
    np.testing.assert_array_equal(beats[0], np.arange(80, 130))
    multi, kept2 = segment_beats(np.vstack([x, -x]), peaks, 100.0, before_s=0.2, after_s=0.3)
    assert multi.shape == (2, 2, 50) and kept2.tolist() == [100, 500]
    np.testing.assert_array_equal(multi[1, 1], -np.arange(480, 530))
    empty, none_kept = segment_beats(x, np.array([], dtype=np.int64), 100.0)
    assert empty.shape == (0, 70) and none_kept.size == 0
    with pytest.raises(DataValidationError, match="strictly increasing"):
        segment_beats(x, np.array([500, 100]), 100.0)


# ------------------------------------------------------------------------------------------------ RR / HRV
def test_rr_features_values_on_known_series():
    regular = rr_features(np.arange(0, 30_000, 300), 300.0)  # RR exactly 1 s
    assert list(regular) == list(RR_FEATURE_NAMES)
    assert regular["rr_mean_s"] == pytest.approx(1.0) and regular["hr_mean_bpm"] == pytest.approx(60.0)
    assert regular["rr_sd_s"] == 0 and regular["rr_rmssd_s"] == 0 and regular["rr_pnn50"] == 0
    assert regular["rr_turning_point_ratio"] == 0
    # alternating 0.8 / 1.2 s: every interval is a turning point (1.5 x the random expectation)
    alternating = np.cumsum(np.r_[0, np.tile([240, 360], 20)])
    feats = rr_features(alternating, 300.0)
    assert feats["rr_turning_point_ratio"] == pytest.approx(1.5)
    assert feats["rr_pnn50"] == 1.0
    assert feats["rr_rmssd_s"] == pytest.approx(0.4)
    assert feats["rr_frac_short_long"] == pytest.approx(0.5, abs=0.03)


def test_hrv_and_record_features_have_the_fixed_keys_and_nan_for_three_beats():
    three = np.array([100, 400, 700])
    feats = hrv_features(three, FS)
    assert tuple(feats) == HRV_FEATURE_NAMES
    assert feats["HRV_MeanNN"] == pytest.approx(1000.0)  # neurokit2 reports ms
    assert feats["rr_mean_s"] == pytest.approx(1.0)
    for key in ("rr_sampen", "rr_cosen", "rr_shannon_entropy", "HRV_SD1", "HRV_DFA_alpha1"):
        assert math.isnan(feats[key]), key
    assert all(math.isnan(v) for k, v in hrv_features(np.array([5]), FS).items() if k != "rr_count")
    constant = hrv_features(np.arange(0, 30_000, 300), FS)  # neurokit2 cannot do nonlinear HRV on this
    assert tuple(constant) == HRV_FEATURE_NAMES and constant["HRV_SDNN"] == 0 and math.isnan(constant["HRV_SD1"])

    short = synthesize_ecg("sinus", duration_s=3.0, sampling_rate_hz=FS, heart_rate_bpm=60, seed=1)
    assert len(short.r_peaks) == 3
    rec = record_features(short.signal, FS)
    assert tuple(rec) == FEATURE_NAMES
    assert math.isnan(rec["rr_sampen"]) and math.isnan(rec["HRV_SD1"])
    assert rec["duration_s"] == pytest.approx(3.0)
    assert all(isinstance(v, float) for v in rec.values())
    flat = record_features(np.zeros(3000), FS)
    assert tuple(flat) == FEATURE_NAMES and flat["signal_quality"] == 0.0 and math.isnan(flat["rr_mean_s"])


def test_record_features_from_a_sinus_record(sinus):
    feats = record_features(sinus.signal, FS)
    assert feats["hr_mean_bpm"] == pytest.approx(70, abs=3)
    assert feats["rr_count"] == len(sinus.r_peaks) - 1
    assert feats["signal_quality"] > 0.8
    assert 0.6 < feats["qrs_amplitude_mv"] < 1.2  # lead I R wave about 0.85 mV
    assert feats["beat_corr_median"] > 0.95
    assert feats["qrs_width_s"] < 0.12


# ------------------------------------------------------------------------------------------------ checks
def test_check_signal_accepts_a_clean_synthetic_record(sinus):
    check = check_signal(sinus.signal, FS, source="syn-1")
    assert isinstance(check, SignalCheck)
    assert check.usable, check.reasons
    assert check.reasons == ()
    assert check.details["source"] == "syn-1" and check.details["quality"][0] > QUALITY_THRESHOLD


@pytest.mark.skipif(not CINC_A00004.exists(), reason="CinC 2017 record A00004 not present")
def test_check_signal_accepts_the_real_cinc_af_record():
    from scipy.io import loadmat

    x = loadmat(str(CINC_A00004))["val"][0] / 1000.0
    check = check_signal(x, 300.0, source="A00004")
    assert check.usable, check.reasons
    assert signal_quality(x, 300.0) > 0.8


def test_check_signal_flags_a_flat_lead_and_a_flat_stretch(sinus):
    x = sinus.signal.astype(float).copy()
    x[0, int(12 * FS) : int(18.5 * FS)] = 0.37  # electrode off, any constant value
    check = check_signal(x, FS, lead_names=["II"])
    assert not check.usable
    assert "flat line from 12.0 s to 18.5 s (II)" in check.reasons
    whole = check_signal(np.vstack([sinus.signal[0], np.zeros(sinus.signal.shape[1])]), FS)
    assert not whole.usable and whole.reasons == ("flat line over the whole record (lead 1)",)


def test_check_signal_flags_long_nan_runs_but_accepts_short_gaps(sinus):
    x = sinus.signal[0].astype(float).copy()
    x[1000:1010] = np.nan  # 33 ms gap: fine
    short = check_signal(x, FS)
    assert short.usable, short.reasons
    assert short.details["longest_nan_run_s"][0] == pytest.approx(10 / FS)
    x[3000:3600] = np.nan  # 2 s gap
    check = check_signal(x, FS)
    assert not check.usable
    assert any(r.startswith("missing samples (NaN) from 10.0 s to 12.0 s") for r in check.reasons)
    scattered = sinus.signal[0].astype(float).copy()
    scattered[::10] = np.nan  # 10 % missing in single-sample gaps
    assert any("% of samples missing (NaN)" in r for r in check_signal(scattered, FS).reasons)


def test_check_signal_flags_clipping(sinus):
    clipped = np.clip(sinus.signal[0].astype(float), -1.0, 0.5)
    check = check_signal(clipped, FS)
    assert not check.usable
    assert any(r.startswith("clipping:") and "upper rail" in r for r in check.reasons)
    assert check_signal(sinus.signal, FS).details["clipped_fraction"][0] < 0.01


def test_check_signal_flags_too_short_bad_rate_amplitude_and_noise(sinus):
    short = check_signal(sinus.signal[:, : int(3 * FS)], FS, min_duration_s=5.0)
    assert not short.usable and any(r.startswith("too short: 3.0 s") for r in short.reasons)
    slow = check_signal(np.random.default_rng(0).normal(size=(1, 400)), 20.0)
    assert not slow.usable and any("implausible sampling rate 20 Hz" in r for r in slow.reasons)
    huge = check_signal(sinus.signal * 40, FS)
    assert any(r.startswith("implausible amplitude: peak-to-peak") for r in huge.reasons)
    tiny = check_signal(sinus.signal * 0.02, FS)
    assert any(r.startswith("implausible amplitude") for r in tiny.reasons)
    noise = synthesize_ecg("noise", duration_s=30, sampling_rate_hz=FS, seed=2)
    check = check_signal(noise.signal, FS)
    assert not check.usable and any(r.startswith("poor signal quality") for r in check.reasons)
    white = check_signal(np.random.default_rng(1).normal(0, 0.3, size=9000), FS)
    assert not white.usable and any(r.startswith("poor signal quality") for r in white.reasons)


def test_check_signal_raises_only_for_wrong_types():
    with pytest.raises(DataValidationError, match="record-7: check_signal expects a numeric ECG array"):
        check_signal(["a", "b"], FS, source="record-7")
    with pytest.raises(DataValidationError, match=r"looks like \(samples, leads\). Pass signal.T"):
        check_signal(np.zeros((3000, 2)), FS)
    with pytest.raises(InvalidParameterError, match="'sampling_rate_hz' parameter of check_signal"):
        check_signal(np.zeros(3000), "300")


# ------------------------------------------------------------------------------------------------ lengths
def test_fit_length_crops_and_pads():
    x = np.arange(10, dtype=np.float32)[None, :]
    np.testing.assert_array_equal(fit_length(x, 4, mode="center"), [[3, 4, 5, 6]])
    np.testing.assert_array_equal(fit_length(x, 4, mode="start"), [[0, 1, 2, 3]])
    padded = fit_length(x, 13, mode="center")
    assert padded.shape == (1, 13) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[0, :1], [0]) and np.testing.assert_array_equal(padded[0, 1:11], x[0])
    np.testing.assert_array_equal(fit_length(x, 12, mode="start")[0], np.r_[x[0], 0, 0])
    a = fit_length(x, 5, mode="random", rng=np.random.default_rng(4))
    b = fit_length(x, 5, mode="random", rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert np.all(np.diff(a[0]) == 1)  # a contiguous crop
    assert fit_length(np.arange(3.0), 3).shape == (3,)
    with pytest.raises(InvalidParameterError, match="'rng' parameter of fit_length"):
        fit_length(x, 5, mode="random")
    with pytest.raises(InvalidParameterError, match="'mode' parameter of fit_length"):
        fit_length(x, 5, mode="middle")


def test_sliding_windows_cover_the_tail_and_pad_short_records():
    x = np.vstack([np.arange(10.0), -np.arange(10.0)])
    windows, starts = sliding_windows(x, 4, 3)
    assert starts.tolist() == [0, 3, 6]  # 6 + 4 == 10: the tail is covered exactly
    assert windows.shape == (3, 2, 4)
    np.testing.assert_array_equal(windows[2, 1], [-6, -7, -8, -9])
    windows, starts = sliding_windows(x, 4, 4)
    assert starts.tolist() == [0, 4, 6]  # last window aligned to the end
    np.testing.assert_array_equal(windows[-1, 0], [6, 7, 8, 9])
    short, s = sliding_windows(x[:, :3], 5, 2)
    assert short.shape == (1, 2, 5) and s.tolist() == [0]
    np.testing.assert_array_equal(short[0, 0], [0, 1, 2, 0, 0])
    one, _ = sliding_windows(np.arange(10.0), 5, 5)
    assert one.shape == (2, 5)
    with pytest.raises(InvalidParameterError, match="'stride_samples' parameter of sliding_windows"):
        sliding_windows(x, 4, 0)


def test_interpolate_short_gaps_fills_short_and_keeps_long():
    x = np.arange(20, dtype=float)
    x[[3, 4]] = np.nan
    x[10:16] = np.nan
    y = interpolate_short_gaps(x, 3)
    np.testing.assert_allclose(y[3:5], [3.0, 4.0])  # linear between neighbours
    assert np.isnan(y[10:16]).all()
    assert np.isnan(x[3])  # input untouched
    edge = interpolate_short_gaps(np.array([[np.nan, 1.0, 2.0, np.nan]]), 1)
    np.testing.assert_array_equal(edge, [[1.0, 1.0, 2.0, 2.0]])
    with pytest.raises(InvalidParameterError, match="'max_gap_samples' parameter"):
        interpolate_short_gaps(x, -1)
