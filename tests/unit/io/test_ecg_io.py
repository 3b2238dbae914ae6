"""ECG readers: real PhysioNet records (MIT-BIH 100, PTB s0010_re, CinC 2015 and 2017) from ../shared/data,
pydicom's 12-lead DICOM ECG, heartpy's PPG recordings, generated WFDB / CinC / PTB-XL fixtures, and every kind of
bad input."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")
scipy_io = pytest.importorskip("scipy.io")

from medai.core.errors import DataValidationError, InvalidParameterError  # noqa: E402
from medai.core.records import Modality  # noqa: E402
from medai.io.ecg import (  # noqa: E402
    AAMI_CLASSES,
    SIGNAL_SUFFIXES,
    BeatAnnotations,
    EcgDataset,
    aami_class,
    find_ecg_dataset,
    is_ecg_folder,
    read_beat_annotations,
    read_dicom_ecg,
    read_ecg,
    read_ecgs_for_prediction,
)
from tests.conftest import SHARED_DATA  # noqa: E402
from tests.ecg_fixtures import (  # noqa: E402
    synthetic_ecg,
    write_beats_record,
    write_cinc_folder,
    write_cinc_mat_record,
    write_ptbxl_folder,
    write_wfdb_record,
)

SAMPLES = SHARED_DATA / "ecg_wfdb_samples"
CINC2017 = SHARED_DATA / "cinc2017_af"
TWELVE = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present (real data folder ../shared/data; see DATA.md)")
    return path


def pydicom_ecg() -> str:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("waveform_ecg.dcm", download=False)  # never download in tests
    if path is None:
        pytest.skip("pydicom's waveform_ecg.dcm is not installed")
    return path


def heartpy_file(name: str) -> Path:
    # located without importing heartpy (its import of pkg_resources costs a second)
    spec = importlib.util.find_spec("heartpy")
    if spec is None or spec.origin is None:
        pytest.skip("heartpy is not installed")
    path = Path(spec.origin).parent / "data" / name
    if not path.is_file():
        pytest.skip(f"heartpy does not ship {name}")
    return path


def rewrite_header(hea: Path, record_line: str | None = None, replace: tuple[str, str] | None = None) -> None:
    lines = hea.read_text().splitlines()
    if record_line is not None:
        lines[0] = record_line
    text = "\n".join(lines) + "\n"
    if replace is not None:
        text = text.replace(*replace)
    hea.write_text(text)


@pytest.fixture
def two_lead(tmp_path) -> tuple[Path, np.ndarray]:
    """A 2-lead 500 Hz WFDB record: lead I in mV, lead AVR stored in uV."""
    signal = synthetic_ecg(2, 500.0, 4.0, seed=1)
    stored = signal.copy()
    stored[1] *= 1000.0  # uV
    hea = write_wfdb_record(tmp_path, "rec", stored, 500.0, ["I", "AVR"], units=["mV", "uV"])
    return hea, signal


# ------------------------------------------------------------------------------------------------ real WFDB
def test_mitbih_100_values_in_millivolts():
    path = shared(SAMPLES / "100.hea")
    record = read_ecg(path)
    reference = wfdb.rdrecord(str(SAMPLES / "100"))
    assert record.modality == Modality.ECG and record.id == "100" and record.patient_id is None
    assert record.shape == (2, 650_000) and record.data.dtype == np.float32
    np.testing.assert_allclose(record.data[:, 0], [-0.145, -0.065], atol=1e-6)  # (995 - 1024) / 200 and ...
    np.testing.assert_array_equal(record.data, reference.p_signal.T.astype(np.float32))
    meta = record.meta
    assert meta["sampling_rate_hz"] == 360.0 and meta["sampling_rate_source"] == "header"
    assert meta["lead_names"] == ["MLII", "V5"] and meta["units"] == ["mV", "mV"] and meta["format"] == "wfdb"
    assert meta["n_samples"] == 650_000 and meta["duration_s"] == pytest.approx(650_000 / 360)
    assert meta["adc_gain"] == [200.0, 200.0] and len(meta["header_comments"]) == 3


@pytest.mark.parametrize("given", ["100", "100.dat", "100.hea"])
def test_wfdb_record_by_stem_dat_or_header(given):
    record = read_ecg(shared(SAMPLES / "100.hea").parent / given)
    assert record.id == "100" and record.shape == (2, 650_000)


def test_mitbih_100_beats_and_aami_counts():
    annotations = read_beat_annotations(shared(SAMPLES / "100.atr").with_suffix(""))
    assert isinstance(annotations, BeatAnnotations)
    # 2274 annotations = 2273 beats (N 2239, A 33, V 1) + one rhythm annotation '+' with aux "(N".
    assert len(annotations) == 2274 and annotations.sampling_rate_hz == 360.0
    assert Counter(annotations.symbol) == {"N": 2239, "A": 33, "V": 1, "+": 1}
    assert annotations.beat_counts() == {"N": 2239, "S": 33, "V": 1}
    assert annotations.symbol[0] == "+" and annotations.aami[0] == "" and annotations.aux_note[0] == "(N"
    assert annotations.sample.dtype == np.int64 and annotations.sample[:3].tolist() == [18, 77, 370]
    assert np.all(np.diff(annotations.sample) > 0)


def test_ptb_record_15_leads_normalised_names():
    record = read_ecg(shared(SAMPLES / "s0010_re.hea"))
    assert record.shape == (15, 38_400) and record.meta["sampling_rate_hz"] == 1000.0
    assert record.meta["lead_names"] == TWELVE + ["vx", "vy", "vz"]
    assert record.meta["source_lead_names"][:3] == ["i", "ii", "iii"]
    assert record.meta["units"] == ["mV"] * 15  # no unit in the header: WFDB's default, mV
    reference = wfdb.rdrecord(str(SAMPLES / "s0010_re"))
    np.testing.assert_array_equal(record.data, reference.p_signal.T.astype(np.float32))
    assert any("Myocardial infarction" in c for c in record.meta["header_comments"])  # kept, never printed


def test_cinc2015_mat_record_equals_wfdb_and_keeps_pleth_unit():
    record = read_ecg(shared(SAMPLES / "a103l.mat"))
    reference = wfdb.rdrecord(str(SAMPLES / "a103l"))
    assert record.meta["format"] == "cinc-mat" and record.shape == (3, 82_500)
    assert record.meta["lead_names"] == ["II", "V", "PLETH"] and record.meta["units"] == ["mV", "mV", "NU"]
    np.testing.assert_allclose(record.data, reference.p_signal.T, rtol=1e-6, atol=1e-6)
    assert record.meta["header_comments"] == ["Asystole", "False alarm"]


def test_cinc2015_dat_record_keeps_invalid_samples_as_nan():
    record = read_ecg(shared(SAMPLES / "v102s.hea"))
    reference = wfdb.rdrecord(str(SAMPLES / "v102s"))
    assert record.meta["lead_names"] == ["II", "V", "PLETH", "RESP"]
    assert record.meta["units"] == ["mV", "mV", "NU", "NU"] and record.meta["sampling_rate_hz"] == 250.0
    assert np.isnan(record.data).sum() == 23  # format-212 invalid samples (-2048): NaN, not a reader error
    np.testing.assert_array_equal(np.isnan(record.data), np.isnan(reference.p_signal.T))


def test_cinc2017_header_wfdb_rejects_is_read_with_scipy():
    hea = shared(CINC2017 / "records" / "A00004.hea")
    with pytest.raises(ValueError):  # the date order 2014-05-01 11:05:48 breaks wfdb's header parser
        wfdb.rdrecord(str(hea.with_suffix("")))
    val = scipy_io.loadmat(hea.with_suffix(".mat"))["val"]
    for path in (hea, hea.with_suffix(".mat"), hea.with_suffix("")):
        record = read_ecg(path)
        assert record.id == "A00004" and record.shape == val.shape == (1, 9000)
        assert record.meta["sampling_rate_hz"] == 300.0 and record.meta["format"] == "cinc-mat"
        np.testing.assert_allclose(record.data, val / 1000.0, atol=1e-7)
        assert record.meta["units"] == ["mV"] and record.meta["lead_names"] == ["ECG"]


def test_cinc2017_folder():
    dataset = find_ecg_dataset(shared(CINC2017))
    assert isinstance(dataset, EcgDataset) and dataset.layout == "cinc" and len(dataset.records) == 200
    assert all(p.suffix == ".hea" for p in dataset.records) and dataset.records == sorted(dataset.records)
    assert Counter(dataset.labels.values()) == {"N": 100, "O": 47, "A": 33, "~": 20}
    assert dataset.labels["A00004"] == "A" and dataset.patient_ids is None and dataset.meta["n_unlabelled"] == 0
    record = read_ecg(dataset.records[0])
    assert record.id in dataset.labels
    assert is_ecg_folder(CINC2017) and is_ecg_folder(shared(SAMPLES))


def test_sample_folder_is_a_beats_dataset():
    dataset = find_ecg_dataset(shared(SAMPLES))
    assert dataset.layout == "wfdb-beats" and [p.name for p in dataset.records] == ["100.hea"]
    assert dataset.meta == {"annotation_extension": "atr", "n_unannotated": 3}
    assert dataset.labels is None


def test_cinc_folder_from_copied_real_records(tmp_path):
    source = shared(CINC2017)
    rows = (source / "REFERENCE.csv").read_text().splitlines()[:4]
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    for row in rows:
        record = row.split(",")[0]
        for suffix in (".hea", ".mat"):
            shutil.copy(source / "records" / f"{record}{suffix}", tmp_path / "nested" / "deeper")
    (tmp_path / "REFERENCE.csv").write_text("\r\n".join(rows[:3]) + "\r\n\r\n")  # 4th record unlabelled
    dataset = find_ecg_dataset(tmp_path)
    assert dataset.layout == "cinc" and len(dataset.records) == 3
    assert dataset.labels == dict(row.split(",") for row in rows[:3])
    assert dataset.meta["n_unlabelled"] == 1 and dataset.meta["unlabelled"] == [rows[3].split(",")[0]]


# ------------------------------------------------------------------------------------------------ DICOM
def test_dicom_12_lead_rhythm_group_in_millivolts():
    import pydicom

    path = pydicom_ecg()
    ds = pydicom.dcmread(path)
    record = read_ecg(path)
    assert record.meta["format"] == "dicom-ecg" and record.id == "waveform_ecg"
    assert record.shape == (12, 10_000) and record.meta["sampling_rate_hz"] == 1000.0
    assert record.meta["multiplex_group"] == 0 and record.meta["multiplex_group_label"] == "RHYTHM"
    assert record.meta["n_multiplex_groups"] == 2
    assert record.meta["lead_names"] == TWELVE and record.meta["source_lead_names"][0] == "Lead I (Einthoven)"
    assert record.meta["units"] == ["mV"] * 12
    # waveform_array applies the 1.25 uV sensitivity; medai converts uV -> mV
    np.testing.assert_allclose(record.data, ds.waveform_array(0).T / 1000.0, rtol=1e-6)
    assert 0.5 < np.ptp(record.data[1]) < 5.0 and np.abs(record.data).max() < 5.0  # plausible ECG amplitudes
    assert record.patient_id == str(ds.PatientID)


def test_dicom_median_beat_group_on_request():
    record = read_dicom_ecg(pydicom_ecg(), multiplex_group=1)
    assert record.shape == (12, 1200) and record.meta["multiplex_group_label"] == "MEDIAN BEAT"
    with pytest.raises(InvalidParameterError, match="multiplex_group"):
        read_dicom_ecg(pydicom_ecg(), multiplex_group=2)


def test_dicom_channels_in_millivolts_are_not_rescaled(tmp_path):
    import pydicom

    ds = pydicom.dcmread(pydicom_ecg())
    for group in ds.WaveformSequence:
        for channel in group.ChannelDefinitionSequence:
            channel.ChannelSensitivityUnitsSequence[0].CodeValue = "mV"
            channel.ChannelSensitivity = "0.00125"
    path = tmp_path / "ecg_mv.dcm"
    ds.save_as(path)
    record = read_ecg(path)
    np.testing.assert_allclose(record.data, pydicom.dcmread(path).waveform_array(0).T, rtol=1e-6)
    np.testing.assert_allclose(record.data, read_ecg(pydicom_ecg()).data, rtol=1e-5, atol=1e-7)


def test_dicom_padding_value_becomes_nan(tmp_path):
    import pydicom

    ds = pydicom.dcmread(pydicom_ecg())
    group = ds.WaveformSequence[0]
    raw = np.frombuffer(group.WaveformData, dtype="<i2").copy()  # interleaved (samples, 12 channels)
    raw[12 * 5] = -32768  # sample 5 of lead I
    group.WaveformData = raw.tobytes()
    group.add_new(0x5400100A, "OW", np.int16(-32768).tobytes())  # Waveform Padding Value, VR "OB or OW"
    path = tmp_path / "padded.dcm"
    ds.save_as(path)
    record = read_ecg(path)
    assert np.isnan(record.data[0, 5]) and np.isnan(record.data).sum() == 1


def test_dicom_without_waveform_is_refused():
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm", download=False)
    with pytest.raises(DataValidationError, match="has no WaveformSequence.*12-lead ECG Waveform Storage"):
        read_ecg(ct)


def test_dicom_not_dicom(tmp_path):
    pytest.importorskip("pydicom")
    path = tmp_path / "ecg.dcm"
    path.write_bytes(b"not a dicom file at all")
    with pytest.raises(DataValidationError, match="not a DICOM file"):
        read_ecg(path)


# ------------------------------------------------------------------------------------------------ CSV
def test_heartpy_ppg_headerless_csv_needs_a_rate():
    path = heartpy_file("data.csv")  # one column, no header, 100 Hz (heartpy docs)
    record = read_ecg(path, sampling_rate_hz=100)
    assert record.shape == (1, 2483) and record.meta["format"] == "csv"
    assert record.data[0, :5].tolist() == [530.0, 518.0, 506.0, 494.0, 483.0]
    assert record.meta["units"] == ["unknown"] and record.meta["sampling_rate_source"] == "argument"
    assert record.meta["duration_s"] == pytest.approx(24.83)
    with pytest.raises(DataValidationError, match="no time column.*--sampling-rate"):
        read_ecg(path)


def test_heartpy_ppg_with_millisecond_timer(tmp_path):
    lines = heartpy_file("data2.csv").read_text().splitlines()
    assert lines[0] == "timer,hr"  # heartpy's timer is in ms; medai reads *_ms names as ms
    path = tmp_path / "ppg.csv"
    path.write_text("\n".join(["time_ms,hr"] + lines[1:]) + "\n")
    record = read_ecg(path)
    assert record.shape == (1, 15_000) and record.meta["lead_names"] == ["hr"]
    assert record.meta["sampling_rate_hz"] == pytest.approx(116.988, abs=1e-3)
    assert record.meta["time_column"] == "time_ms" and record.meta["sampling_rate_source"] == "time column"


def test_csv_time_column_units_from_names(tmp_path):
    fs = 250.0
    signal = synthetic_ecg(2, fs, 2.0, seed=3)
    time = np.arange(signal.shape[1]) / fs
    rows = ["time_s,ecg_mv,II (uV),pleth"] + [
        f"{t:.4f},{a:.6f},{b * 1000:.3f},{i}" for i, (t, a, b) in enumerate(zip(time, *signal))
    ]
    path = tmp_path / "signals.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode())  # Windows line endings
    record = read_ecg(path)
    assert record.meta["sampling_rate_hz"] == pytest.approx(fs)
    assert record.meta["lead_names"] == ["ecg", "II", "pleth"]
    assert record.meta["units"] == ["mV", "mV", "unknown"]
    np.testing.assert_allclose(record.data[:2], signal, atol=2e-6)  # uV column converted to mV
    assert record.data[2, :3].tolist() == [0.0, 1.0, 2.0]


def test_csv_iso_timestamps_and_trailing_delimiter(tmp_path):
    path = tmp_path / "stamps.csv"
    lines = ["timestamp;lead_i;"] + [f"2024-01-01T00:00:{i / 100:05.2f};{np.sin(i / 5):.4f};" for i in range(300)]
    path.write_text("\n".join(lines) + "\n\n")
    record = read_ecg(path)
    assert record.shape == (1, 300) and record.meta["sampling_rate_hz"] == pytest.approx(100.0)
    assert record.meta["lead_names"] == ["I"] and record.meta["source_lead_names"] == ["lead_i"]


def test_csv_missing_cells_stay_nan(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("a,b\n1,2\n,4\nNaN,6\n")
    record = read_ecg(path, sampling_rate_hz=10)
    assert np.isnan(record.data[0, 1:]).all() and record.data[1].tolist() == [2.0, 4.0, 6.0]


def test_csv_empty(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n\n")
    with pytest.raises(DataValidationError, match="empty CSV"):
        read_ecg(path, sampling_rate_hz=100)
    path.write_text("time_s,ecg\n")
    with pytest.raises(DataValidationError, match="header row but no samples"):
        read_ecg(path)


def test_csv_non_numeric_column_is_named(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time_s,lead1,lead2\n0.00,1.0,0.5\n0.01,1.1,oops\n0.02,1.2,0.7\n")
    with pytest.raises(DataValidationError, match=r"column 'lead2' is not numeric \(first non-number on line 3\)"):
        read_ecg(path)


def test_csv_irregular_time_column(tmp_path):
    path = tmp_path / "gappy.csv"
    times = [0.0, 0.01, 0.02, 0.05, 0.06, 0.07]
    path.write_text("time,ecg\n" + "".join(f"{t},{i}\n" for i, t in enumerate(times)))
    with pytest.raises(DataValidationError, match="'time' is not uniformly spaced.*--sampling-rate"):
        read_ecg(path)


# ------------------------------------------------------------------------------------------------ generated WFDB
def test_generated_wfdb_round_trip_converts_microvolts(two_lead):
    hea, signal = two_lead
    record = read_ecg(hea)
    assert record.meta["lead_names"] == ["I", "aVR"] and record.meta["source_lead_names"] == ["I", "AVR"]
    assert record.meta["units"] == ["mV", "mV"]
    scale = np.abs(signal).max(axis=1, keepdims=True)
    assert np.abs(record.data - signal).max() < 1e-3 * scale.max()  # 16-bit quantisation only


def test_nan_samples_survive(tmp_path):
    signal = synthetic_ecg(1, 100.0, 2.0, seed=2)
    signal[0, 10:20] = np.nan
    record = read_ecg(write_wfdb_record(tmp_path, "gap", signal, 100.0, ["II"]))
    assert np.isnan(record.data[0]).sum() == 10 and np.isnan(record.data[0, 10:20]).all()


def test_sampling_rate_argument_overrides_header(two_lead, caplog):
    hea, _ = two_lead
    with caplog.at_level(logging.WARNING, logger="medai.io.ecg"):
        record = read_ecg(hea, sampling_rate_hz=250)
    assert record.meta["sampling_rate_hz"] == 250.0 and record.meta["sampling_rate_source"] == "argument"
    assert "500 Hz" in caplog.text


@pytest.mark.parametrize("value", [0, -5, float("nan"), "500", True])
def test_bad_sampling_rate_argument(two_lead, value):
    with pytest.raises(InvalidParameterError, match="'sampling_rate_hz' parameter of read_ecg"):
        read_ecg(two_lead[0], sampling_rate_hz=value)


def test_header_without_frequency(two_lead):
    hea, _ = two_lead
    rewrite_header(hea, record_line="rec 2")  # wfdb alone would assume 250 Hz without a word
    with pytest.raises(DataValidationError, match="gives no sampling frequency.*--sampling-rate"):
        read_ecg(hea)
    record = read_ecg(hea, sampling_rate_hz=500)
    assert record.meta["sampling_rate_hz"] == 500.0 and record.shape == (2, 2000)


def test_header_with_zero_frequency(two_lead):
    hea, _ = two_lead
    rewrite_header(hea, record_line="rec 2 0 2000")
    with pytest.raises(DataValidationError, match=r"non-positive sampling frequency \(0.0\)"):
        read_ecg(hea)


def test_truncated_dat(two_lead):
    hea, _ = two_lead
    dat = hea.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:5000])
    with pytest.raises(DataValidationError, match=r"truncated signal file.*2000 samples x 2 signals.*5000 bytes"):
        read_ecg(hea)


def test_dat_longer_than_header(two_lead):
    hea, _ = two_lead
    rewrite_header(hea, record_line="rec 2 500 1500")
    with pytest.raises(DataValidationError, match="header/data mismatch: the file holds 8000 bytes"):
        read_ecg(hea)


def test_header_declares_more_signals_than_the_dat_holds(two_lead):
    hea, _ = two_lead
    lines = hea.read_text().splitlines()
    lines[0] = "rec 3 500 2000"
    lines.insert(3, lines[2].replace(" AVR", " V1"))
    hea.write_text("\n".join(lines) + "\n")
    expected = "truncated signal file.*2000 samples x 3 signals.*signal or sample count"
    with pytest.raises(DataValidationError, match=expected):
        read_ecg(hea)


def test_header_with_missing_signal_lines(two_lead):
    hea, _ = two_lead
    rewrite_header(hea, record_line="rec 4 500 2000")
    with pytest.raises(DataValidationError, match="declares 4 signals but 2 signal lines follow"):
        read_ecg(hea)


def test_garbage_header(tmp_path):
    hea = tmp_path / "junk.hea"
    hea.write_text("this is not a header\n")
    with pytest.raises(DataValidationError, match="not a valid WFDB header.*number of signals"):
        read_ecg(hea)


def test_missing_signal_file(two_lead):
    hea, _ = two_lead
    hea.with_suffix(".dat").unlink()
    with pytest.raises(DataValidationError, match=r"signal file rec.dat is missing"):
        read_ecg(hea)


@pytest.mark.parametrize("suffix", [".dat", ".mat"])
def test_signal_file_without_header(tmp_path, suffix):
    path = tmp_path / f"lonely{suffix}"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(DataValidationError, match=r"no WFDB header beside it \(expected .*lonely.hea\)"):
        read_ecg(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(InvalidParameterError, match="ECG file not found"):
        read_ecg(tmp_path / "nothing")
    other = tmp_path / "notes.txt"
    other.write_text("1,2,3")
    with pytest.raises(DataValidationError, match=r"unsupported ECG file \(suffix '.txt'\)"):
        read_ecg(other)


def test_multi_segment_header(tmp_path):
    hea = tmp_path / "multi.hea"
    hea.write_text("multi/2 1 125 2000\nmulti_1 1000\nmulti_2 1000\n")
    with pytest.raises(DataValidationError, match="multi-segment WFDB record"):
        read_ecg(hea)


def test_dat_record_with_cinc_date_order_is_read(two_lead):
    hea, signal = two_lead
    rewrite_header(hea, record_line="rec 2 500 2000 2014-05-01 11:05:48")
    with pytest.raises(ValueError):
        wfdb.rdrecord(str(hea.with_suffix("")))
    record = read_ecg(hea)
    assert record.shape == (2, 2000)
    np.testing.assert_allclose(record.data[0], signal[0], atol=1e-3)


def test_patient_data_never_in_messages(tmp_path):
    signal = synthetic_ecg(1, 100.0, 2.0)
    secret = ["age: 81", "Reason for admission: Myocardial infarction", "Name: Jane Example"]
    hea = write_wfdb_record(tmp_path, "p1", signal, 100.0, ["II"], comments=secret)
    hea.with_suffix(".dat").write_bytes(b"\x00" * 10)
    with pytest.raises(DataValidationError) as info:
        read_ecg(hea)
    message = str(info.value)
    assert "truncated" in message
    assert not any(word in message for word in ("age:", "Myocardial", "Jane"))
    rewrite_header(hea, record_line="p1 1")
    with pytest.raises(DataValidationError) as info:
        read_ecg(hea)
    assert not any(word in str(info.value) for word in ("age:", "Myocardial", "Jane"))


# ------------------------------------------------------------------------------------------------ generated .mat
def test_generated_cinc_mat_record(tmp_path):
    signal = synthetic_ecg(1, 300.0, 5.0, seed=4)
    hea = write_cinc_mat_record(tmp_path, "A09999", signal)
    val = scipy_io.loadmat(hea.with_suffix(".mat"))["val"]
    assert val.dtype == np.int16 and val.shape == (1, 1500)
    record = read_ecg(hea.with_suffix(".mat"))
    np.testing.assert_allclose(record.data, val / 1000.0, atol=1e-7)
    # the same file with a WFDB-standard date is read identically by wfdb itself
    rewrite_header(hea, record_line="A09999 1 300 1500 11:05:48 01/05/2014")
    np.testing.assert_allclose(record.data, wfdb.rdrecord(str(hea.with_suffix(""))).p_signal.T, atol=1e-7)


def test_mat_invalid_samples_are_nan(tmp_path):
    hea = write_cinc_mat_record(tmp_path, "inv", np.zeros((1, 100)))
    val = np.zeros((1, 100), dtype=np.int16)
    val[0, 5] = -32768  # WFDB's invalid-sample value for format 16
    scipy_io.savemat(hea.with_suffix(".mat"), {"val": val}, format="4")
    record = read_ecg(hea)
    assert np.isnan(record.data[0, 5]) and np.isnan(record.data).sum() == 1


def test_mat_signal_count_mismatch(tmp_path):
    hea = write_cinc_mat_record(tmp_path, "two", np.zeros((2, 300)), lead_names=("I", "II"))
    scipy_io.savemat(hea.with_suffix(".mat"), {"val": np.zeros((1, 300), dtype=np.int16)}, format="4")
    with pytest.raises(DataValidationError, match="header/data mismatch: 'val' holds 1 signals.*declares 2"):
        read_ecg(hea)


def test_mat_sample_count_mismatch(tmp_path):
    hea = write_cinc_mat_record(tmp_path, "short", np.zeros((1, 300)))
    rewrite_header(hea, replace=("short 1 300 300", "short 1 300 600"))
    with pytest.raises(DataValidationError, match="header/data mismatch: 'val' holds 300 samples.*declares 600"):
        read_ecg(hea)


def test_mat_unreadable_or_without_val(tmp_path):
    hea = write_cinc_mat_record(tmp_path, "broken", np.zeros((1, 300)))
    hea.with_suffix(".mat").write_bytes(b"\x01\x02garbage" * 3)
    with pytest.raises(DataValidationError, match="not a readable MATLAB file"):
        read_ecg(hea)
    scipy_io.savemat(hea.with_suffix(".mat"), {"signal": np.zeros((1, 300), dtype=np.int16)}, format="4")
    with pytest.raises(DataValidationError, match="has no variable 'val'"):
        read_ecg(hea)


# ------------------------------------------------------------------------------------------------ annotations
@pytest.mark.parametrize(
    ("symbols", "expected"),
    [("NLRej", "N"), ("AaJS", "S"), ("VE", "V"), ("F", "F"), ("/fQ", "Q"), ("+~|\"x![]", None)],
)
def test_aami_class(symbols, expected):
    assert all(aami_class(symbol) == expected for symbol in symbols)
    assert expected is None or expected in AAMI_CLASSES


def test_generated_beat_annotations(tmp_path):
    hea, samples, symbols = write_beats_record(tmp_path)
    annotations = read_beat_annotations(hea)
    assert annotations.sample.tolist() == samples.tolist() and annotations.symbol == symbols
    assert annotations.aami[0] == "" and annotations.aami[symbols.index("~")] == ""
    assert annotations.beat_counts() == {"N": 15, "S": 1, "V": 1, "F": 1, "Q": 1}
    assert annotations.aux_note[0] == "(N" and annotations.sampling_rate_hz == 360.0
    assert read_ecg(hea).shape == (2, 7200)


def test_annotation_with_other_extension(tmp_path):
    hea, _, symbols = write_beats_record(tmp_path, name="r2", extension="ecg")
    with pytest.raises(DataValidationError, match=r"no annotation file r2.atr.*other extensions: ecg"):
        read_beat_annotations(hea)
    assert read_beat_annotations(hea, extension="ecg").symbol == symbols
    dataset = find_ecg_dataset(tmp_path)
    assert dataset.layout == "wfdb-beats" and dataset.meta["annotation_extension"] == "ecg"


# ------------------------------------------------------------------------------------------------ CinC folders
def test_generated_cinc_folder_with_header_row_and_crlf(tmp_path):
    write_cinc_folder(tmp_path, reference_header=True, line_ending="\r\n")
    with (tmp_path / "REFERENCE.csv").open("ab") as handle:
        handle.write(b"\r\n   \r\n")  # trailing blank lines
    reference = tmp_path / "REFERENCE.csv"
    reference.write_bytes(reference.read_bytes().replace(b"A00002,A", b"A00002 , A "))  # stray spaces
    dataset = find_ecg_dataset(tmp_path, require_labels=True)
    assert dataset.layout == "cinc" and len(dataset.records) == 8
    assert dataset.labels == {f"A{i + 1:05d}": label for i, label in enumerate("NAO~NAO~")}
    assert dataset.records[0].relative_to(tmp_path) == Path("records/A00001.hea")
    record = read_ecg(dataset.records[1])
    val = scipy_io.loadmat(dataset.records[1].with_suffix(".mat"))["val"]
    np.testing.assert_allclose(record.data, val / 1000.0, atol=1e-7)


def test_cinc_folder_missing_records(tmp_path):
    write_cinc_folder(tmp_path)
    for record in ("A00002", "A00005"):
        for suffix in (".hea", ".mat"):
            (tmp_path / "records" / f"{record}{suffix}").unlink()
    with pytest.raises(DataValidationError,
                       match=r"2 of the 8 records listed in REFERENCE.csv have no signal file: A00002, A00005\."):
        find_ecg_dataset(tmp_path)


def test_cinc_folder_mat_without_header(tmp_path):
    write_cinc_folder(tmp_path)
    (tmp_path / "records" / "A00003.hea").unlink()
    with pytest.raises(DataValidationError, match="1 records have a .mat/.dat file but no .hea header: A00003"):
        find_ecg_dataset(tmp_path)


def test_cinc_reference_malformed_or_conflicting(tmp_path):
    write_cinc_folder(tmp_path)
    reference = tmp_path / "REFERENCE.csv"
    reference.write_text("A00001,N\nA00002,A\nA00003\n")
    with pytest.raises(DataValidationError, match="line 3 is not 'record,label'"):
        find_ecg_dataset(tmp_path)
    reference.write_text("A00001,N\nA00001,A\n")
    with pytest.raises(DataValidationError, match="record A00001 is listed twice with different labels"):
        find_ecg_dataset(tmp_path)


def test_cinc_duplicate_record_files(tmp_path):
    write_cinc_folder(tmp_path)
    shutil.copytree(tmp_path / "records", tmp_path / "copy")
    with pytest.raises(DataValidationError, match="record A00001 has several .hea files"):
        find_ecg_dataset(tmp_path)


# ------------------------------------------------------------------------------------------------ PTB-XL
def test_ptbxl_fixture_superclasses(tmp_path):
    write_ptbxl_folder(tmp_path, n_records=10)
    dataset = find_ecg_dataset(tmp_path, require_labels=True)
    assert dataset.layout == "ptbxl" and len(dataset.records) == 10
    assert dataset.labels["00001_lr"] == ["NORM"] and dataset.labels["00002_lr"] == ["MI"]
    assert dataset.labels["00004_lr"] == ["CD"] and dataset.labels["00005_lr"] == ["HYP"]
    assert dataset.labels["00010_lr"] == ["MI", "STTC"]  # NDT with likelihood 0 counts; LVOLT, SR not diagnostic
    assert dataset.patient_ids["00001_lr"] == "1000" == dataset.patient_ids["00002_lr"]
    assert dataset.meta["strat_fold"]["00010_lr"] == 10 and dataset.meta["ecg_id"]["00003_lr"] == "3"
    assert dataset.meta["label_column"] == "diagnostic_superclass"
    assert dataset.meta["superclass_map"]["IMI"] == "MI" and "SR" not in dataset.meta["superclass_map"]
    assert dataset.meta["scp_codes"]["00001_lr"] == {"NORM": 100.0, "SR": 0.0}
    record = read_ecg(dataset.records[0])
    assert record.id == "00001_lr" and record.shape == (12, 1000)
    assert record.meta["sampling_rate_hz"] == 100.0 and record.meta["lead_names"] == TWELVE
    assert 0.5 < np.abs(record.data).max() < 5.0
    assert is_ecg_folder(tmp_path)


def test_ptbxl_without_statements_keeps_codes(tmp_path):
    write_ptbxl_folder(tmp_path, n_records=6, statements=False)
    dataset = find_ecg_dataset(tmp_path)
    assert dataset.meta["label_column"] == "scp_codes" and dataset.meta["superclass_map"] is None
    assert dataset.labels["00001_lr"] == ["NORM", "SR"] and dataset.labels["00006_lr"] == [
        "ASMI", "LVOLT", "NDT", "SR"]


def test_ptbxl_falls_back_to_500_hz(tmp_path):
    write_ptbxl_folder(tmp_path, n_records=5, write_hr=True, missing_lr=(3,))
    dataset = find_ecg_dataset(tmp_path)
    assert "00003_hr" in dataset.labels and dataset.meta["filename_column"] == {"filename_lr": 4, "filename_hr": 1}
    record = read_ecg(next(p for p in dataset.records if p.stem == "00003_hr"))
    assert record.shape == (12, 5000) and record.meta["sampling_rate_hz"] == 500.0


def test_ptbxl_missing_files(tmp_path):
    write_ptbxl_folder(tmp_path, n_records=5, missing_lr=(2, 4))
    with pytest.raises(DataValidationError, match=r"2 of the 5 ECGs listed in ptbxl_database.csv have no header "
                                                  r"file \(filename_lr or filename_hr \+ .hea\): ecg_id 2, 4\."):
        find_ecg_dataset(tmp_path)


def test_ptbxl_bad_scp_codes_and_missing_columns(tmp_path):
    import pandas as pd

    write_ptbxl_folder(tmp_path, n_records=3)
    database = tmp_path / "ptbxl_database.csv"
    table = pd.read_csv(database)
    table.loc[1, "scp_codes"] = "NORM=100"
    table.to_csv(database, index=False)
    with pytest.raises(DataValidationError, match=r"line 3 \(ecg_id 2\): scp_codes is not a dict literal"):
        find_ecg_dataset(tmp_path)
    table.drop(columns=["scp_codes", "filename_lr", "filename_hr"]).to_csv(database, index=False)
    with pytest.raises(DataValidationError, match="missing column.*scp_codes, filename_lr or filename_hr"):
        find_ecg_dataset(tmp_path)


# ------------------------------------------------------------------------------------------------ other folders
def test_unlabelled_wfdb_folder(tmp_path):
    nested = tmp_path / "a" / "b"
    write_wfdb_record(nested, "x1", synthetic_ecg(1, 100.0, 1.0), 100.0, ["II"])
    write_wfdb_record(tmp_path, "x0", synthetic_ecg(1, 100.0, 1.0), 100.0, ["II"])
    dataset = find_ecg_dataset(tmp_path)
    assert dataset.layout == "wfdb" and [p.name for p in dataset.records] == ["x1.hea", "x0.hea"]
    assert dataset.labels is None and dataset.patient_ids is None and is_ecg_folder(tmp_path)
    with pytest.raises(DataValidationError, match="2 ECG records but no labels.*REFERENCE.csv"):
        find_ecg_dataset(tmp_path, require_labels=True)


def test_folder_without_records(tmp_path):
    with pytest.raises(InvalidParameterError, match="ECG folder not found"):
        find_ecg_dataset(tmp_path / "absent")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    assert not is_ecg_folder(tmp_path) and not is_ecg_folder(tmp_path / "image.png")
    with pytest.raises(DataValidationError, match="no ECG records found"):
        find_ecg_dataset(tmp_path)
    (tmp_path / "A1.mat").write_bytes(b"\x00")
    with pytest.raises(DataValidationError, match="1 .mat/.dat files but no .hea headers"):
        find_ecg_dataset(tmp_path)


def test_records_for_prediction(tmp_path):
    write_cinc_folder(tmp_path / "cinc", labels={"B1": "N", "B2": "A"})
    records = read_ecgs_for_prediction(tmp_path / "cinc")
    assert [r.id for r in records] == ["B1", "B2"] and all(r.label is None for r in records)
    single = read_ecgs_for_prediction(tmp_path / "cinc" / "records" / "B2")
    np.testing.assert_array_equal(single[0].data, records[1].data)
    csv = tmp_path / "plain" / "one.csv"
    csv.parent.mkdir()
    csv.write_text("1\n2\n3\n")
    assert read_ecgs_for_prediction(csv.parent, sampling_rate_hz=50)[0].meta["sampling_rate_hz"] == 50.0
    with pytest.raises(InvalidParameterError, match="Input not found"):
        read_ecgs_for_prediction(tmp_path / "absent")


def test_signal_suffixes_constant():
    assert SIGNAL_SUFFIXES == (".hea", ".mat", ".dat", ".dcm", ".csv")
