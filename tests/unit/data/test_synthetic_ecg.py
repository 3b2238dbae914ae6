"""Synthetic ECG generator: truth agrees with detection, rhythms have their defining properties, WFDB round trip."""

from __future__ import annotations

import time

import numpy as np
import pytest
from wfdb import processing

from medai.core.errors import InvalidParameterError
from medai.data.ecg import check_signal, detect_r_peaks, record_features, rr_features, segment_beats
from medai.data.synthetic_ecg import LEAD_NAMES, RHYTHMS, SyntheticEcg, synthesize_ecg, write_wfdb

FS = 300.0


def _match(truth: np.ndarray, detected: np.ndarray, fs: float, n_samples: int, tolerance_s: float = 0.05):
    """Se/+P over beats at least 0.1 s from either edge: an R peak a few ms from the edge of a record cannot be
    told from the S wave of a beat cut by it (the detector keeps only full-height edge peaks)."""
    edge = int(0.1 * fs)

    def interior(peaks):
        return peaks[(peaks >= edge) & (peaks < n_samples - edge)]

    return processing.compare_annotations(interior(truth), interior(detected), int(tolerance_s * fs))


@pytest.mark.parametrize("rhythm", ["sinus", "af", "tachycardia", "bradycardia", "pvc"])
def test_detected_r_peaks_match_the_generator_truth(rhythm):
    for seed in (0, 1, 2):
        ecg = synthesize_ecg(rhythm, duration_s=30, sampling_rate_hz=FS, noise_mv=0.02, baseline_wander_mv=0.2,
                             seed=seed)
        detected = detect_r_peaks(ecg.signal[0], FS)
        comparison = _match(ecg.r_peaks, detected, FS, ecg.signal.shape[1])
        assert comparison.sensitivity >= 0.99, (rhythm, seed)
        assert comparison.positive_predictivity >= 0.99, (rhythm, seed)
        # the peak sits on the truth sample (within 2 samples) for normal beats
        normal = ecg.r_peaks[np.array(ecg.beat_symbols) == "N"]
        nearest = detected[np.abs(detected[None, :] - normal[:, None]).argmin(axis=1)]
        assert np.median(np.abs(nearest - normal)) <= 2


def test_other_rates_and_many_leads_are_detected_too():
    ecg = synthesize_ecg("sinus", duration_s=20, sampling_rate_hz=500.0, n_leads=12, seed=4)
    assert ecg.signal.shape == (12, 10_000) and ecg.signal.dtype == np.float32
    assert ecg.lead_names == list(LEAD_NAMES)
    comparison = _match(ecg.r_peaks, detect_r_peaks(ecg.signal[1], 500.0), 500.0, ecg.signal.shape[1])
    assert comparison.sensitivity >= 0.99 and comparison.positive_predictivity >= 0.99


def test_heart_rates_follow_the_rhythm():
    for rhythm, bpm in (("sinus", 70), ("tachycardia", 130), ("bradycardia", 45), ("af", 90)):
        ecg = synthesize_ecg(rhythm, duration_s=60, sampling_rate_hz=FS, seed=2)
        assert rr_features(ecg.r_peaks, FS)["hr_mean_bpm"] == pytest.approx(bpm, rel=0.08), rhythm
    assert rr_features(synthesize_ecg("sinus", heart_rate_bpm=100, seed=1).r_peaks, FS)["hr_mean_bpm"] == \
        pytest.approx(100, rel=0.05)


def test_af_is_irregularly_irregular_and_sinus_is_regular():
    cv_af, cv_sinus, cosen_af, cosen_sinus, tpr_af = [], [], [], [], []
    for seed in range(4):
        af = rr_features(detect_r_peaks(synthesize_ecg("af", seed=seed).signal[0], FS), FS)
        sinus = rr_features(detect_r_peaks(synthesize_ecg("sinus", seed=seed).signal[0], FS), FS)
        cv_af.append(af["rr_cv"])
        cv_sinus.append(sinus["rr_cv"])
        cosen_af.append(af["rr_cosen"])
        cosen_sinus.append(sinus["rr_cosen"])
        tpr_af.append(af["rr_turning_point_ratio"])
    assert min(cv_af) > 0.15 and max(cv_sinus) < 0.06
    assert min(cv_af) > 3 * max(cv_sinus)
    assert min(cosen_af) > -1.4 > max(cosen_sinus)  # Lake & Moorman's AF threshold
    assert 0.75 < np.mean(tpr_af) < 1.25  # no pattern: about the random expectation


def test_af_has_no_p_waves_but_f_waves_and_sinus_has_p_waves():
    for seed in range(3):
        af = record_features(synthesize_ecg("af", seed=seed).signal, FS)
        sinus = record_features(synthesize_ecg("sinus", seed=seed).signal, FS)
        assert sinus["p_wave_ratio"] > 0.15 and af["p_wave_ratio"] < 0.08
        assert sinus["p_wave_ratio"] > 3 * af["p_wave_ratio"]
        assert sinus["p_wave_consistency"] > 0.8 > af["p_wave_consistency"]
        assert af["atrial_residual_af_band"] > 2 * sinus["atrial_residual_af_band"]
    # f-waves: the spectrum of the AF record between beats peaks in 4-9 Hz
    ecg = synthesize_ecg("af", noise_mv=0.0, seed=5)
    no_qrs = ecg.signal[0].astype(float).copy()
    for r in ecg.r_peaks:  # blank QRS-T (R - 0.15 s .. R + 0.5 s), keep the atrial activity in between
        no_qrs[max(r - 45, 0) : r + 150] = 0.0
    spectrum = np.abs(np.fft.rfft(no_qrs)) ** 2
    freqs = np.fft.rfftfreq(no_qrs.size, 1 / FS)
    in_band = spectrum[(freqs >= 4) & (freqs <= 9)].sum()
    assert in_band > 0.5 * spectrum[(freqs >= 1) & (freqs <= 40)].sum()


def test_pvcs_are_annotated_premature_wide_and_followed_by_a_compensatory_pause():
    ecg = synthesize_ecg("pvc", duration_s=60, sampling_rate_hz=FS, pvc_fraction=0.2, seed=3)
    symbols = np.array(ecg.beat_symbols)
    assert set(symbols) == {"N", "V"}
    assert (symbols == "V").sum() == round(0.2 * len(symbols))
    assert not np.any((symbols[1:] == "V") & (symbols[:-1] == "V"))  # never two in a row
    assert symbols[0] == "N" and symbols[-1] == "N"
    rr = np.diff(ecg.r_peaks) / FS
    sinus_rr = np.median(rr)
    for i in np.flatnonzero(symbols == "V"):
        before, after = rr[i - 1], rr[i]
        assert before < 0.75 * sinus_rr  # premature
        assert after > 1.2 * sinus_rr  # pause
        assert before + after == pytest.approx(2 * sinus_rr, rel=0.12)  # fully compensatory
    beats, kept = segment_beats(ecg.signal[0], ecg.r_peaks, FS, before_s=0.15, after_s=0.15)
    kept_symbols = symbols[np.isin(ecg.r_peaks, kept)]

    def width_s(beat):  # time the beat spends above half its peak (QRS width proxy)
        return np.sum(beat > 0.5 * beat.max()) / FS

    widths_v = [width_s(b) for b, s in zip(beats, kept_symbols) if s == "V"]
    widths_n = [width_s(b) for b, s in zip(beats, kept_symbols) if s == "N"]
    assert np.median(widths_v) > 1.5 * np.median(widths_n)
    # no P wave before a PVC: at 45 bpm the previous T wave has ended when the PR window of a PVC opens
    slow = synthesize_ecg("pvc", duration_s=60, heart_rate_bpm=45, noise_mv=0.0, pvc_fraction=0.2, seed=3)

    def p_window_range(r):
        return np.ptp(slow.signal[0, r - int(0.32 * FS) : r - int(0.19 * FS)])

    p_v = [p_window_range(r) for r, s in zip(slow.r_peaks, slow.beat_symbols) if s == "V"]
    p_n = [p_window_range(r) for r, s in zip(slow.r_peaks, slow.beat_symbols) if s == "N" and r > FS]
    assert np.median(p_n) > 3 * np.median(p_v)
    none = synthesize_ecg("pvc", pvc_fraction=0.0, seed=3)
    assert set(none.beat_symbols) == {"N"}


def test_generation_is_deterministic_under_a_seed_and_fast():
    for rhythm in RHYTHMS:
        a = synthesize_ecg(rhythm, seed=11, baseline_wander_mv=0.2, n_leads=2)
        b = synthesize_ecg(rhythm, seed=11, baseline_wander_mv=0.2, n_leads=2)
        assert isinstance(a, SyntheticEcg) and a.rhythm == rhythm
        np.testing.assert_array_equal(a.signal, b.signal)
        np.testing.assert_array_equal(a.r_peaks, b.r_peaks)
        assert a.beat_symbols == b.beat_symbols
        if rhythm != "flat":
            assert not np.array_equal(a.signal, synthesize_ecg(rhythm, seed=12, n_leads=2).signal)
    start = time.perf_counter()
    for seed in range(20):
        synthesize_ecg("sinus", seed=seed)
        synthesize_ecg("af", seed=seed)
    assert (time.perf_counter() - start) / 40 < 0.25  # about 5 ms each once the template is cached


def test_noise_wander_and_leads():
    quiet = synthesize_ecg("sinus", noise_mv=0.0, seed=1)
    noisy = synthesize_ecg("sinus", noise_mv=0.05, seed=1)
    assert np.std(noisy.signal - quiet.signal) == pytest.approx(0.05, rel=0.05)
    wander = synthesize_ecg("sinus", noise_mv=0.0, baseline_wander_mv=0.3, seed=1)
    drift = wander.signal[0] - quiet.signal[0]
    assert np.ptp(drift) == pytest.approx(0.6, rel=0.05)
    spectrum = np.abs(np.fft.rfft(drift))
    assert 0.15 <= np.fft.rfftfreq(drift.size, 1 / FS)[spectrum.argmax()] <= 0.3
    twelve = synthesize_ecg("sinus", n_leads=12, noise_mv=0.0, seed=1)
    r = twelve.r_peaks[3]
    at_r = dict(zip(twelve.lead_names, twelve.signal[:, r]))
    assert at_r["II"] > at_r["I"] > 0 and at_r["aVR"] < 0 and at_r["V1"] < 0 < at_r["V5"]
    np.testing.assert_allclose(twelve.signal[2], twelve.signal[1] - twelve.signal[0], atol=1e-5)  # III = II - I


def test_flat_and_noise_records_fail_the_signal_check():
    flat = synthesize_ecg("flat", duration_s=20, seed=0)
    assert flat.r_peaks.size == 0 and not np.any(flat.signal)
    assert check_signal(flat.signal, FS).reasons == ("flat line over the whole record (lead 0)",)
    stretch = synthesize_ecg("flat", duration_s=30, flat_span_s=(10.0, 14.0), seed=0)
    assert not np.any(stretch.signal[0, 3000:4200]) and np.any(stretch.signal[0, :3000])
    assert not np.any((stretch.r_peaks >= 3000) & (stretch.r_peaks < 4200)) and stretch.r_peaks.size > 20
    assert check_signal(stretch.signal, FS).reasons == ("flat line from 10.0 s to 14.0 s (lead 0)",)
    for seed in range(3):
        noise = synthesize_ecg("noise", seed=seed)
        assert noise.r_peaks.size == 0 and noise.beat_symbols == []
        check = check_signal(noise.signal, FS)
        assert not check.usable and check.reasons[0].startswith("poor signal quality")


def test_invalid_parameters_are_refused():
    with pytest.raises(InvalidParameterError, match="'rhythm' parameter of synthesize_ecg"):
        synthesize_ecg("vfib")
    with pytest.raises(InvalidParameterError, match="'n_leads' parameter"):
        synthesize_ecg(n_leads=13)
    with pytest.raises(InvalidParameterError, match="'pvc_fraction' parameter"):
        synthesize_ecg("pvc", pvc_fraction=0.5)
    with pytest.raises(InvalidParameterError, match="'flat_span_s' parameter"):
        synthesize_ecg("sinus", flat_span_s=(1.0, 2.0))
    with pytest.raises(InvalidParameterError, match="'sampling_rate_hz' parameter"):
        synthesize_ecg(sampling_rate_hz=20.0)


@pytest.mark.parametrize("rhythm, aux", [("af", "(AFIB"), ("pvc", "(N")])
def test_write_wfdb_round_trip(tmp_path, rhythm, aux):
    import wfdb

    ecg = synthesize_ecg(rhythm, duration_s=12, n_leads=3, seed=5, pvc_fraction=0.2)
    header = write_wfdb(ecg, tmp_path / "out", "syn_01")
    assert header == tmp_path / "out" / "syn_01.hea" and header.exists()
    record = wfdb.rdrecord(str(tmp_path / "out" / "syn_01"))
    assert record.fs == FS and record.sig_name == ecg.lead_names and record.units == ["mV"] * 3
    np.testing.assert_allclose(record.p_signal.T, ecg.signal, atol=2e-3)  # 16-bit quantisation
    annotation = wfdb.rdann(str(tmp_path / "out" / "syn_01"), "atr")
    beats = [(s, sym) for s, sym in zip(annotation.sample, annotation.symbol) if sym != "+"]
    assert [s for s, _ in beats] == ecg.r_peaks.tolist()
    assert [sym for _, sym in beats] == ecg.beat_symbols
    assert annotation.symbol[0] == "+" and annotation.aux_note[0] == aux
    write_wfdb(ecg, tmp_path, "plain", with_annotations=False)
    assert not (tmp_path / "plain.atr").exists()
    with pytest.raises(InvalidParameterError, match="'record_name' parameter of write_wfdb"):
        write_wfdb(ecg, tmp_path, "bad name")
