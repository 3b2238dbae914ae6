"""PACS round trip against a real Orthanc (DICOMweb plugin): STOW → QIDO → WADO → a real medai image model →
DICOM SR (and SEG) stored back and read again; the worklist ranks by predicted risk; clear errors for a wrong
password, an unknown study, an unreachable PACS and a study without images. Skipped where Orthanc is absent."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pydicom
import pytest

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.io.dicom_seg import read_dicom_seg, write_dicom_seg, write_image_series
from medai.io.dicom_sr import read_classification_sr, read_segmentation_sr
from medai.serve.pacs import (
    Pacs,
    PacsConfig,
    PacsError,
    StudyNotFoundError,
    add_pacs_parser,
    analyse_served,
    analyse_study,
    served_model_ref,
    served_predict_fn,
    worklist,
    worklist_served,
)
from tests.conftest import (
    make_lesion_images,
    write_image_recipe,
    write_lesion_folder,
    write_segmentation_npz,
    write_segmentation_recipe,
)
from tests.orthanc import orthanc  # noqa: F401  (the module-scoped fixture)
from tests.unit.io.test_dicom_sr import dciodvfy_errors


def _trained(recipe, out):
    """Train a recipe with one torch thread (the fastest on the shared test cores) and load it as served."""
    import torch

    from medai.cli import main
    from medai.serve.models import load_served_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(recipe), "--out", str(out), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    return load_served_model(out / "model")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real quarter-width ResNet-18 trained for 3 epochs on 32 px lesion images (about 10 s on 2 cores)."""
    root = tmp_path_factory.mktemp("model")
    data = write_lesion_folder(root / "images", n=120)
    return _trained(write_image_recipe(root / "recipe.yaml", data, task={"positive_class": "lesion"},
                                       training={"max_epochs": 3, "patience": 3}), root / "run")


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    """A real small 2-D U-Net trained for 4 epochs on 64 px lesion phantoms (about 10 s on 2 cores)."""
    root = tmp_path_factory.mktemp("segmenter")
    return _trained(write_segmentation_recipe(root / "recipe.yaml", write_segmentation_npz(root / "lesions.npz")),
                    root / "run")


@pytest.fixture(scope="module")
def segmenter3d(tmp_path_factory):
    """A real small 3-D U-Net trained for 3 epochs on 16^3 lesion phantoms (a few seconds on 2 cores)."""
    root = tmp_path_factory.mktemp("segmenter3d")
    data = write_segmentation_npz(root / "volumes.npz", n_train=32, spatial_dims=3)
    return _trained(write_segmentation_recipe(root / "recipe.yaml", data, name="lesion-unet-3d", epochs=3,
                                              channels=(4, 8)), root / "run")


@pytest.fixture(scope="module")
def pacs(orthanc):  # noqa: F811
    return Pacs(PacsConfig(orthanc.dicomweb_url, orthanc.user, orthanc.password, timeout_s=20))


def _study(folder, labels, seed):
    """A study of 32 px grey images with (1) or without (0) a bright lesion, as DICOM MR slices of one series."""
    images, truth = make_lesion_images(n=40, seed=seed)
    chosen = [int(np.flatnonzero(truth == label)[i]) for i, label in enumerate(labels)]
    datasets = write_image_series(images[chosen].astype(float), folder, spacing_mm=(1.0, 0.5, 0.5),
                                  patient_id="SYNTH", patient_name="Synthetic^Study")
    # write_image_series stretches each study's [min, max] to 12 bits; keep the 8-bit grey values instead (x 16),
    # so that a study without lesion is not contrast-stretched into looking like one.
    for ds, index in zip(datasets, chosen):
        ds.PixelData = (images[index].astype("<u2") * 16).tobytes()
    return datasets


@pytest.fixture(scope="module")
def studies(pacs, tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    lesion, normal = _study(root / "lesion", [1, 1], seed=21), _study(root / "normal", [0, 0], seed=22)
    assert pacs.store(lesion) == [str(ds.SOPInstanceUID) for ds in lesion]
    assert pacs.store(normal) == [str(ds.SOPInstanceUID) for ds in normal]
    return {"lesion": lesion, "normal": normal}


def test_config_from_env_hides_the_password():
    config = PacsConfig.from_env(environ={"MEDAI_PACS_URL": "http://127.0.0.1:8042/dicom-web",
                                          "MEDAI_PACS_USER": "reader", "MEDAI_PACS_PASSWORD": "s3cret-pw"})
    assert config.username == "reader" and config.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(config) and "s3cret-pw" not in repr(Pacs(config))
    with pytest.raises(InvalidParameterError, match="No PACS URL: pass --pacs-url or set MEDAI_PACS_URL"):
        PacsConfig.from_env(environ={})
    with pytest.raises(InvalidParameterError, match="embeds credentials") as error:
        PacsConfig("http://reader:s3cret-pw@127.0.0.1:8042/dicom-web")
    assert "s3cret-pw" not in str(error.value)
    with pytest.raises(InvalidParameterError, match="or neither"):
        PacsConfig("http://127.0.0.1:8042/dicom-web", username="reader")


def test_qido_finds_the_studies_and_wado_returns_identical_pixels(pacs, studies):
    found = {s.study_instance_uid: s for s in pacs.search_studies()}
    lesion = studies["lesion"]
    summary = found[str(lesion[0].StudyInstanceUID)]
    assert summary.modalities == ("MR",) and summary.n_instances == 2
    assert summary.description == "medai generated image" and summary.study_date is not None
    assert "SYNTH" not in json.dumps(summary.to_dict())  # no patient ID / name in what medai shows and logs
    only = pacs.search_studies({"StudyInstanceUID": str(lesion[0].StudyInstanceUID)})
    assert [s.study_instance_uid for s in only] == [str(lesion[0].StudyInstanceUID)]
    retrieved = {str(ds.SOPInstanceUID): ds for ds in pacs.retrieve_study_instances(str(lesion[0].StudyInstanceUID))}
    for ds in lesion:
        assert np.array_equal(retrieved[str(ds.SOPInstanceUID)].pixel_array, ds.pixel_array)
    with pytest.raises(InvalidParameterError, match="Unknown QIDO-RS filter 'StudyDat'.*Did you mean 'StudyDate'"):
        pacs.search_studies({"StudyDat": "20260101"})


def test_analyse_study_stores_an_sr_that_reads_back(pacs, studies, served, tmp_path):
    study_uid = str(studies["lesion"][0].StudyInstanceUID)
    result = analyse_study(pacs, study_uid, served_predict_fn(served), model=served_model_ref(served))
    assert result.n_images == 2 and result.skipped == {} and result.stored == [result.sr_sop_instance_uid]
    after = {str(ds.SOPInstanceUID): ds for ds in pacs.retrieve_study_instances(study_uid)}
    sr = after[result.sr_sop_instance_uid]
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    read = {g["sop_instance_uid"]: g for g in read_classification_sr(path)}
    for prediction in result.predictions:
        group = read[prediction["id"]]
        assert group["probabilities"] == {"lesion": pytest.approx(prediction["probability"])}
        assert group["findings"] == [prediction["decision"]] and group["refer"] is prediction["refer"]
        assert group["algorithm"]["name"] == served.id
    assert sr.PatientID == "SYNTH" and sr.StudyInstanceUID == study_uid
    assert result.risk == pytest.approx(max(p["probability"] for p in result.predictions))
    assert dciodvfy_errors(path) == []

    again = analyse_study(pacs, study_uid, served_predict_fn(served), model=served_model_ref(served), store=False)
    assert again.n_images == 2 and again.skipped == {"structured report": 1}  # medai's own SR is not analysed
    assert again.stored == []


def test_segmentation_is_stored_as_seg_and_reads_back(pacs, studies, tmp_path):
    images = studies["normal"]
    study_uid = str(images[0].StudyInstanceUID)
    mask = np.zeros((2, 32, 32), dtype=np.uint8)
    mask[0, 10:20, 12:18] = 1
    path = write_dicom_seg(mask, tmp_path / "seg.dcm", source_images=images, model_name="unet", model_version="1")
    stored = pacs.store([pydicom.dcmread(path)])
    seg = next(ds for ds in pacs.retrieve_study_instances(study_uid) if str(ds.SOPInstanceUID) == stored[0])
    seg.save_as(tmp_path / "back.dcm", enforce_file_format=True)
    assert np.array_equal(read_dicom_seg(tmp_path / "back.dcm", images), mask)
    assert dciodvfy_errors(tmp_path / "back.dcm") == []


def test_a_segmentation_model_stores_a_seg_and_an_sr_of_areas(pacs, studies, segmenter, tmp_path):
    images = studies["lesion"]
    study_uid = str(images[0].StudyInstanceUID)
    result = analyse_served(pacs, study_uid, segmenter)
    assert result.n_images == 2 and len(result.seg_sop_instance_uids) == 1
    assert sorted(result.stored) == sorted([result.sr_sop_instance_uid, *result.seg_sop_instance_uids])
    assert all("_mask" not in p for p in result.predictions) and json.dumps(result.to_dict())
    after = {str(ds.SOPInstanceUID): ds for ds in pacs.retrieve_study_instances(study_uid)}
    seg_path, sr_path = _save(after[result.seg_sop_instance_uids[0]], tmp_path / "seg.dcm"), \
        _save(after[result.sr_sop_instance_uid], tmp_path / "sr.dcm")
    stored_masks = read_dicom_seg(seg_path, images)
    # The stored masks are the model's own on the PACS pixels (z-scored per image, so the x16 storage is moot).
    pixels = np.stack([ds.pixel_array.astype(np.float32) for ds in images])[:, None]
    expected = np.stack([o["mask"] for o in segmenter.predictor.predict(pixels)])
    assert np.array_equal(stored_masks, expected)
    assert after[result.seg_sop_instance_uids[0]].SegmentSequence[0].SegmentLabel == "lesion"
    groups = {g["sop_instance_uid"]: g for g in read_segmentation_sr(sr_path)}
    assert set(groups) == {str(ds.SOPInstanceUID) for ds in images}
    frames = pydicom.dcmread(seg_path).pixel_array.reshape(-1, 32, 32)
    by_id = {p["id"]: p for p in result.predictions}
    for index, ds in enumerate(images):
        group, prediction = groups[str(ds.SOPInstanceUID)], by_id[str(ds.SOPInstanceUID)]
        # the SR's region is the SEG frame holding this image's mask
        assert group["seg_sop_instance_uid"] == result.seg_sop_instance_uids[0] and len(group["frame"]) == 1
        assert np.array_equal(frames[group["frame"][0] - 1], expected[index])
        # PixelSpacing of these images is 0.5 x 0.5 mm: the area is measured with it, not the training spacing
        assert group["area_mm2"] == pytest.approx(expected[index].sum() * 0.25)
        assert prediction["measurements"]["area_mm2"] == pytest.approx(group["area_mm2"])
        assert group["refer"] is prediction["refer"] and (group["refer_reason"] is None) == (not prediction["refer"])
    assert dciodvfy_errors(seg_path) == [] and dciodvfy_errors(sr_path) == []

    again = analyse_served(pacs, study_uid, segmenter, store=False)  # medai's SEG and SR are not segmented again
    assert again.n_images == 2 and again.skipped["segmentation"] == 1 and again.skipped["structured report"] >= 1
    with pytest.raises(InvalidParameterError, match="segmentation model: the worklist ranks studies by a "
                                                    "classification model"):
        worklist_served(pacs, segmenter)


def test_a_3d_model_segments_a_pacs_series_as_one_volume(pacs, segmenter3d, tmp_path):
    """Single-frame slices stored in shuffled order: stacked along the slice normal, segmented as one volume,
    stored as a SEG whose frames are the volume's mask, and an SR of each slice's area."""
    from medai.data.phantoms import make_lesion_phantoms

    volume = make_lesion_phantoms(1, spatial_dims=3, size=16, seed=41).images[0, 0]  # (slices, rows, cols)
    slices = write_image_series(volume.astype(float), tmp_path / "series", spacing_mm=(2.0, 1.0, 1.0),
                                patient_id="SYNTH")
    shuffled = [slices[i] for i in np.random.default_rng(0).permutation(len(slices))]
    pacs.store(shuffled)
    study_uid = str(slices[0].StudyInstanceUID)
    result = analyse_served(pacs, study_uid, segmenter3d)
    assert result.n_images == 16 and len(result.seg_sop_instance_uids) == 1
    retrieved = {str(ds.SOPInstanceUID): ds for ds in pacs.retrieve_study_instances(study_uid)}
    pixels = np.stack([retrieved[str(ds.SOPInstanceUID)].pixel_array.astype(np.float32) for ds in slices])
    expected = segmenter3d.predictor.predict(np.moveaxis(pixels, 0, -1)[None, None])[0]["mask"]  # slices last
    seg_path = _save(retrieved[result.seg_sop_instance_uids[0]], tmp_path / "seg.dcm")
    stored = read_dicom_seg(seg_path, slices)  # (slices, rows, cols) in the series' order
    assert (stored != np.moveaxis(expected, -1, 0)).mean() < 1e-3
    by_id = {p["id"]: p for p in result.predictions}
    first = by_id[str(slices[0].SOPInstanceUID)]
    assert [by_id[str(ds.SOPInstanceUID)]["slice"] for ds in slices] == list(range(1, 17))  # sorted by position
    assert first["measurements"]["series_volume_ml"] == pytest.approx(expected.sum() * 2.0 / 1000)
    assert sum(p["measurements"]["area_mm2"] for p in result.predictions) == pytest.approx(expected.sum() * 1.0)
    assert len({p["refer"] for p in result.predictions}) == 1  # one referral for the volume
    sr_path = _save(retrieved[result.sr_sop_instance_uid], tmp_path / "sr.dcm")
    assert len(read_segmentation_sr(sr_path)) == 16
    assert dciodvfy_errors(seg_path) == [] and dciodvfy_errors(sr_path) == []


def test_worklist_ranks_the_lesion_study_first(pacs, studies, served):
    entries = worklist(pacs, served_predict_fn(served), 10, model=served_model_ref(served))
    order = [e.study.study_instance_uid for e in entries]
    lesion, normal = (str(studies[k][0].StudyInstanceUID) for k in ("lesion", "normal"))
    assert order.index(lesion) < order.index(normal)
    risks = [e.risk for e in entries if e.risk is not None]
    assert risks == sorted(risks, reverse=True)
    assert entries[order.index(lesion)].decision == "lesion" and entries[order.index(normal)].decision == "normal"
    assert entries[order.index(lesion)].risk > 0.5 > entries[order.index(normal)].risk


def test_errors_are_clear(orthanc, pacs, studies, tmp_path):  # noqa: F811
    wrong = Pacs(PacsConfig(orthanc.dicomweb_url, orthanc.user, "not-the-password"))
    with pytest.raises(PacsError, match="refused the credentials \\(HTTP 401\\).*MEDAI_PACS_PASSWORD") as error:
        wrong.search_studies()
    assert "not-the-password" not in str(error.value) and error.value.http_status == 401
    with pytest.raises(StudyNotFoundError, match="has no study 1.2.826.0.1.999.1"):
        pacs.retrieve_study_instances("1.2.826.0.1.999.1")
    with pytest.raises(InvalidParameterError, match="must be a DICOM UID"):
        pacs.retrieve_study_instances("not a uid")
    down = Pacs(PacsConfig(orthanc.url.rsplit(":", 1)[0] + ":9/dicom-web", timeout_s=2))
    with pytest.raises(PacsError, match="is unreachable.*Check MEDAI_PACS_URL"):
        down.search_studies()
    # A study holding only an SR (no image): named with what it holds.
    sr_only = next(ds for ds in pacs.retrieve_study_instances(str(studies["lesion"][0].StudyInstanceUID))
                   if ds.Modality == "SR")
    copy = pydicom.dcmread(_save(sr_only, tmp_path / "copy.dcm"))
    copy.StudyInstanceUID = pydicom.uid.generate_uid()
    copy.SeriesInstanceUID, copy.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    pacs.store([copy])
    with pytest.raises(DataValidationError, match="has no image instance to analyse \\(1 structured report\\)"):
        analyse_study(pacs, str(copy.StudyInstanceUID), lambda records: [], model={})


def _save(ds, path):
    ds.save_as(path, enforce_file_format=True)
    return path


def test_cli_handler_lists_studies_without_the_password(orthanc, studies, monkeypatch, capsys):  # noqa: F811
    parser = argparse.ArgumentParser()
    add_pacs_parser(parser.add_subparsers(dest="command"))
    monkeypatch.setenv("MEDAI_PACS_URL", orthanc.dicomweb_url)
    monkeypatch.setenv("MEDAI_PACS_USER", orthanc.user)
    monkeypatch.setenv("MEDAI_PACS_PASSWORD", orthanc.password)
    args = parser.parse_args(["pacs", "studies", "--filter", "ModalitiesInStudy=MR", "--limit", "10"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    listed = {s["study_instance_uid"] for s in json.loads(out)}
    assert str(studies["normal"][0].StudyInstanceUID) in listed and orthanc.password not in out
    with pytest.raises(InvalidParameterError, match="KEYWORD=VALUE"):
        bad = parser.parse_args(["pacs", "studies", "--filter", "ModalitiesInStudy"])
        bad.handler(bad)
