"""`medai serve` through its HTTP API (FastAPI's TestClient, lifespan run): real trained models, tokens with roles,
every modality's input, FHIR output validated with fhir.resources, the audit chain, metrics, bad input."""

from __future__ import annotations

import base64
import io
import json
import sqlite3

import numpy as np
import pytest

from tests.conftest import make_binary_table, make_lesion_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(served_runs, tmp_path_factory):
    from fastapi.testclient import TestClient

    from medai.serve.app import ServiceSettings, create_app
    from medai.serve.auth import TokenStore
    from medai.serve.store import database_url, engine

    state = tmp_path_factory.mktemp("state")
    db = engine(database_url(state))
    tokens = {role: TokenStore(db).create(role, name=f"test {role}")[1] for role in ("clinician", "admin")}
    db.dispose()
    settings = ServiceSettings([served_runs], state=state, max_upload_bytes=12 * 1024 * 1024)
    with TestClient(create_app(settings)) as client:
        yield client, tokens, state


def auth(tokens, role="clinician"):
    return {"Authorization": f"Bearer {tokens[role]}"}


def model_id(client, tokens, kind: str, modality: str) -> str:
    models = client.get("/models", headers=auth(tokens)).json()["models"]
    return next(m["key"] for m in models if m["kind"] == kind and m["modality"] == modality)


def test_health_needs_no_token_but_everything_else_does(service):
    client, tokens, _ = service
    health = client.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "models": 5}
    for path in ("/models", "/metrics", "/cds-services", "/audit"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert "Bearer" in response.json()["detail"]
    assert client.get("/models", headers={"Authorization": "Bearer medai_not-a-real-token-000000000"}).status_code == 401


def test_models_lists_every_verified_model(service):
    client, tokens, _ = service
    models = client.get("/models", headers=auth(tokens)).json()["models"]
    assert {(m["kind"], m["modality"]) for m in models} == {
        ("binary", "tabular"), ("survival", "tabular"), ("binary", "image"), ("binary", "ehr"),
        ("segmentation", "segmentation")}
    for m in models:
        assert len(m["sha256"]) == 64 and m["version"] and m["inputs"]
    binary = next(m for m in models if m["modality"] == "tabular" and m["kind"] == "binary")
    assert 0 < binary["operating_point"]["threshold"] < 1
    card = client.get(f"/models/{binary['key']}", headers=auth(tokens)).json()
    assert card["model_card"]["model_details"]["version"] == binary["version"]
    assert "## " in card["model_card_markdown"]


def test_tabular_prediction_matches_medai_predict(service, served_runs):
    from medai.registry.predictor import Predictor

    client, tokens, _ = service
    key = model_id(client, tokens, "binary", "tabular")
    frame = make_binary_table(n=5, seed=3)
    records = json.loads(frame.drop(columns=["outcome"]).to_json(orient="records"))
    response = client.post(f"/models/{key}/predict", json={"records": records}, headers=auth(tokens))
    assert response.status_code == 200, response.text
    body = response.json()
    expected = Predictor.load(served_runs / "risk").predict(frame)
    assert [p["id"] for p in body["predictions"]] == list(frame["patient"])
    assert np.allclose([p["probability"] for p in body["predictions"]], expected["score"], atol=1e-6)
    assert [p["decision"] for p in body["predictions"]] == list(expected["pred"])
    first = body["predictions"][0]
    assert isinstance(first["refer"], bool) and set(first["prediction_set"]) <= {"no", "yes"}
    assert first["refer"] == (len(first["prediction_set"]) != 1)
    assert first["model"] == body["model"] and len(first["model"]["sha256"]) == 64
    explanation = first["explanation"]
    assert explanation["type"] == "top_features"
    names = {f["name"] for f in explanation["features"]}
    assert names <= {"age", "sex", "sbp", "smoker", "noise"} and "age" in names


def test_survival_prediction_has_risk_and_survival(service):
    client, tokens, _ = service
    key = model_id(client, tokens, "survival", "tabular")
    records = [{"x1": 1.5, "x2": -1.0, "age": 70}, {"x1": -1.5, "x2": 1.0, "age": 50}]
    body = client.post(f"/models/{key}/predict?explain=false", json={"records": records},
                       headers=auth(tokens)).json()
    high, low = body["predictions"]
    assert high["risk"]["log_relative_risk"] > low["risk"]["log_relative_risk"]
    horizon = next(iter(high["risk"]["survival"]))
    assert high["risk"]["survival"][horizon] < low["risk"]["survival"][horizon]
    assert high["decision"] == "high" and low["decision"] == "low"


def test_image_upload_png_and_fhir_output(service, served_runs):
    from fhir.resources.R4B.bundle import Bundle
    from PIL import Image

    client, tokens, _ = service
    key = model_id(client, tokens, "binary", "image")
    images, labels = make_lesion_images(n=4, seed=9)
    files = []
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        files.append(("file", (f"case{i}.png", buffer.getvalue(), "image/png")))
    response = client.post(f"/models/{key}/predict", files=files, headers=auth(tokens))
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["id"] for p in predictions] == [f"case{i}" for i in range(4)]
    png = base64.b64decode(predictions[0]["explanation"]["png_base64"])
    assert predictions[0]["explanation"]["type"] == "heatmap" and png[:8] == b"\x89PNG\r\n\x1a\n"
    fhir = client.post(f"/models/{key}/predict?explain=false", files=files[:1],
                       headers={**auth(tokens), "Accept": "application/fhir+json"})
    assert fhir.status_code == 200 and fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(fhir.json())
    types = sorted({entry.resource.get_resource_type() for entry in bundle.entry})
    assert "DiagnosticReport" in types and "Observation" in types


def _served_segmenter(served_runs):
    from medai.registry.segmentation_predictor import SegmentationPredictor

    return SegmentationPredictor.load(served_runs / "segmentation")


def test_segmentation_uploads_give_mask_area_volume_refer_and_fhir(service, served_runs, tmp_path):
    """PNG (no pixel spacing: measured with the training spacing, and said so), DICOM (its PixelSpacing), an odd
    size (padded for the U-Net, cropped back) and a NIfTI volume (slice by slice): each mask is the model's own."""
    import nibabel as nib
    import pydicom
    from fhir.resources.R4B.bundle import Bundle
    from PIL import Image

    from medai.data.phantoms import make_lesion_phantoms
    from medai.io.dicom_seg import write_image_series

    client, tokens, _ = service
    key = model_id(client, tokens, "segmentation", "segmentation")
    direct = _served_segmenter(served_runs)
    phantoms = make_lesion_phantoms(3, seed=31)
    image = (np.clip(phantoms.images[0, 0], 0, 1) * 255).astype(np.uint8)
    png, odd = io.BytesIO(), io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    Image.fromarray(image[:61, :59]).save(odd, format="PNG")
    (dicom,) = write_image_series(image.astype(float), tmp_path / "dicom", spacing_mm=(0.25, 0.25))
    dicom_path = tmp_path / "image.dcm"
    dicom.save_as(dicom_path, enforce_file_format=True)
    volume = np.stack([phantoms.images[i, 0] for i in range(3)], axis=-1).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([0.5, 0.5, 2.0, 1.0])), tmp_path / "volume.nii.gz")
    files = [("file", ("case.png", png.getvalue(), "image/png")), ("file", ("odd.png", odd.getvalue(), "image/png")),
             ("file", ("ct.dcm", dicom_path.read_bytes(), "application/dicom")),
             ("file", ("volume.nii.gz", (tmp_path / "volume.nii.gz").read_bytes(), "application/gzip"))]
    response = client.post(f"/models/{key}/predict", files=files, headers=auth(tokens))
    assert response.status_code == 200, response.text
    case, small, ct, vol = response.json()["predictions"]

    expected = direct.predict(image[None, None].astype(np.float32))[0]
    mask = np.array(Image.open(io.BytesIO(base64.b64decode(case["mask_png_base64"])))) > 0
    assert np.array_equal(mask, expected["mask"].astype(bool))
    assert case["measurements"]["area_mm2"] == pytest.approx(mask.sum() * 0.5 * 0.5)  # the training spacing
    assert "training data" in case["spacing_source"] and any("no pixel spacing" in w for w in case["warnings"])
    assert case["decision"] == ("lesion" if mask.any() else "none") and case["segment"] == "lesion"
    assert case["refer"] is expected["refer"] and (case["refer_reason"] is None) == (not case["refer"])
    assert case["explanation"]["type"] == "mask_overlay"
    assert base64.b64decode(case["explanation"]["png_base64"])[:8] == b"\x89PNG\r\n\x1a\n"
    small_mask = np.array(Image.open(io.BytesIO(base64.b64decode(small["mask_png_base64"]))))
    assert small_mask.shape == (61, 59)
    # DICOM: 12-bit rescaled grey values (z-scored per image: the same input) and its own 0.25 mm PixelSpacing
    ct_mask = np.array(Image.open(io.BytesIO(base64.b64decode(ct["mask_png_base64"])))) > 0
    assert ct["spacing_mm"] == [0.25, 0.25] and ct["spacing_source"] == "PixelSpacing" and not ct["warnings"]
    assert ct["measurements"]["area_mm2"] == pytest.approx(ct_mask.sum() * 0.0625)
    assert (ct_mask & mask).sum() * 2 / max(ct_mask.sum() + mask.sum(), 1) > 0.95
    per_slice = direct.predict(np.moveaxis(volume, -1, 0)[:, None])
    assert vol["spacing_mm"] == [0.5, 0.5, 2.0] and "mask_png_base64" not in vol
    assert vol["measurements"]["volume_ml"] == pytest.approx(sum(o["mask"].sum() for o in per_slice) * 0.5 / 1000)
    assert "conformal_volume_ml" in vol["measurements"]
    assert pydicom.dcmread(dicom_path).Modality == "MR"

    fhir = client.post(f"/models/{key}/predict?explain=false", files=files[:1],
                       headers={**auth(tokens), "Accept": "application/fhir+json"})
    assert fhir.status_code == 200, fhir.text
    bundle = Bundle.model_validate(fhir.json())
    resources = [entry.resource for entry in bundle.entry]
    report = next(r for r in resources if r.get_resource_type() == "DiagnosticReport")
    area = next(r for r in resources if r.get_resource_type() == "Observation" and r.code.coding[0].code == "42798000")
    assert area.valueQuantity.code == "mm2" and float(area.valueQuantity.value) == pytest.approx(
        case["measurements"]["area_mm2"])
    assert "Area of the segmented lesion" in report.conclusion
    json_body = client.post(f"/models/{key}/predict", json={"records": [{"x": 1}]}, headers=auth(tokens))
    assert json_body.status_code == 415 and "upload a file" in json_body.json()["detail"]


def test_tabular_fhir_output_is_a_risk_assessment(service):
    from fhir.resources.R4B.bundle import Bundle

    client, tokens, _ = service
    key = model_id(client, tokens, "binary", "tabular")
    records = json.loads(make_binary_table(n=2, seed=4).drop(columns=["outcome"]).to_json(orient="records"))
    response = client.post(f"/models/{key}/predict?explain=false", json={"records": records},
                           headers={**auth(tokens), "Accept": "application/fhir+json"})
    bundle = Bundle.model_validate(response.json())
    risks = [e.resource for e in bundle.entry if e.resource.get_resource_type() == "RiskAssessment"]
    plain = client.post(f"/models/{key}/predict?explain=false", json={"records": records},
                        headers=auth(tokens)).json()["predictions"]
    assert len(risks) == 2
    assert float(risks[0].prediction[0].probabilityDecimal) == pytest.approx(plain[0]["probability"], abs=1e-6)


def test_ehr_model_takes_a_fhir_bundle(service, tmp_path):
    from medai.data.synthetic_fhir import write_fhir_bundles

    client, tokens, _ = service
    key = model_id(client, tokens, "binary", "ehr")
    write_fhir_bundles(tmp_path, 3, seed=99)
    bundles = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    response = client.post(f"/models/{key}/predict", content=json.dumps(bundles[0]),
                           headers={**auth(tokens), "Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    for p in response.json()["predictions"]:
        assert 0 <= p["probability"] <= 1 and p["prediction_time"]
        assert p["explanation"]["type"] == "top_features"


def test_roles_audit_chain_and_metrics(service):
    client, tokens, state = service
    key = model_id(client, tokens, "binary", "tabular")
    assert client.get("/audit", headers=auth(tokens)).status_code == 403  # clinician
    assert client.post("/models/x/retire", headers=auth(tokens)).status_code == 403
    records = json.loads(make_binary_table(n=1, seed=5).drop(columns=["outcome"]).to_json(orient="records"))
    client.post(f"/models/{key}/predict?explain=false", json={"records": records}, headers=auth(tokens))
    audit = client.get("/audit", headers=auth(tokens, "admin")).json()
    assert audit["verified"] is True and audit["n_entries"] >= 1
    last = [e for e in audit["entries"] if e["action"] == "predict"][0]
    text = json.dumps(audit)
    assert records[0]["patient"] not in text  # the record id is patient data: never in the log
    assert last["model_sha256"] and len(last["input_sha256"]) == 64
    metrics = client.get("/metrics", headers=auth(tokens)).text
    assert "medai_predictions_total" in metrics
    assert 'medai_http_requests_total{' in metrics and "/models/{model_id}/predict" in metrics  # route, not URL
    # tampering with the stored log is detected by `medai audit verify`
    from medai.cli import main

    db = state / "medai.db"
    with sqlite3.connect(db) as con:
        triggers = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
        for trigger in triggers:
            con.execute(f"DROP TRIGGER {trigger}")
        table = next(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
                     if "audit" in r[0])
        con.execute(f"UPDATE {table} SET status = 500 WHERE seq = (SELECT MIN(seq) FROM {table})")
    assert main(["audit", "verify", "--state", str(state)]) == 1


def test_bad_input_gets_the_right_4xx_and_the_service_keeps_serving(service):
    client, tokens, _ = service
    key = model_id(client, tokens, "binary", "tabular")
    image_key = model_id(client, tokens, "binary", "image")
    url = f"/models/{key}/predict"
    cases = [
        (client.post(url, content=b"a,b\n1,2", headers={**auth(tokens), "Content-Type": "text/csv"}), 415),
        (client.post(url, content=b"{not json", headers={**auth(tokens), "Content-Type": "application/json"}), 422),
        (client.post(url, json={"records": [{"age": 50}]}, headers=auth(tokens)), 422),
        (client.post(url, json={"resourceType": "Bundle"}, headers=auth(tokens)), 415),
        (client.post("/models/no-such-model/predict", json={"records": [{}]}, headers=auth(tokens)), 404),
        (client.post(url, content=b"x" * (13 * 1024 * 1024), headers={**auth(tokens),
                                                                      "Content-Type": "application/json"}), 413),
        (client.post(f"/models/{image_key}/predict", files=[("file", ("x.dcm", b"DICM-not-really", "application/dicom"))],
                     headers=auth(tokens)), 422),
        (client.post(f"/models/{image_key}/predict", files=[("file", ("x.exe", b"MZ", "application/octet-stream"))],
                     headers=auth(tokens)), 415),
        (client.post(url, json={"records": [{}]}), 401),
    ]
    for response, status in cases:
        assert response.status_code == status, (status, response.text)
        assert response.json()["detail"]
    assert client.get("/health").status_code == 200


def test_retire_and_register_are_admin_only_and_remembered(service, served_runs):
    client, tokens, state = service
    key = model_id(client, tokens, "survival", "tabular")
    assert client.post(f"/models/{key}/retire", headers=auth(tokens, "admin")).status_code == 200
    assert client.post(f"/models/{key}/predict", json={"records": [{"x1": 0, "x2": 0, "age": 60}]},
                       headers=auth(tokens)).status_code == 404
    assert key in json.loads((state / "retired.json").read_text())["retired"]
    again = client.post("/models", json={"path": str(served_runs / "survival")}, headers=auth(tokens, "admin"))
    assert again.status_code == 200 and again.json()["registered"][0]["retired"] is True


def test_cds_hooks_discovery_and_patient_view_with_the_trained_ehr_model(service):
    from medai.data.synthetic_fhir import synthesize_fhir_bundles
    from medai.serve.cds_hooks import Card
    from tests.unit.serve.test_cds_hooks import _request

    client, tokens, _ = service
    services = client.get("/cds-services", headers=auth(tokens)).json()["services"]
    ehr_key = model_id(client, tokens, "binary", "ehr")
    assert len(services) == 1 and services[0]["hook"] == "patient-view"  # only EHR models are CDS services
    service_id = services[0]["id"]
    assert ehr_key.startswith(service_id + "@")
    cards = []
    for bundle in synthesize_fhir_bundles(12, seed=5):
        response = client.post(f"/cds-services/{service_id}", json=_request(bundle), headers=auth(tokens))
        assert response.status_code == 200, response.text
        cards += response.json()["cards"]
    assert cards  # some generated patients have an ICU stay of 48 h or more
    for card in cards:
        Card.model_validate(card)
        assert card["indicator"] in ("info", "warning") and service_id in card["source"]["label"] + card["summary"]
    missing = _request(synthesize_fhir_bundles(1, seed=6)[0])
    del missing["prefetch"]
    response = client.post(f"/cds-services/{service_id}", json=missing, headers=auth(tokens))
    assert response.status_code == 412 and "prefetch" in response.json()["detail"]


def test_a_real_dicom_radiograph_upload(service):
    client, tokens, _ = service
    key = model_id(client, tokens, "binary", "image")
    pydicom_data = pytest.importorskip("pydicom.data")
    from pathlib import Path

    dicom = Path(pydicom_data.get_testdata_file("RG1_UNCI.dcm", download=False) or "")
    if not dicom.is_file():
        pytest.skip("pydicom-data's RG1_UNCI.dcm is not installed")
    response = client.post(f"/models/{key}/predict?explain=false", headers=auth(tokens),
                           files=[("file", ("chest.dcm", dicom.read_bytes(), "application/dicom"))])
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["id"] == "chest" and 0 <= prediction["probability"] <= 1
    assert any("resized from 1955x1841" in w for w in prediction["warnings"])  # MONOCHROME1, 12-bit, windowed


def test_monitor_report_reads_what_the_service_recorded(service, served_runs, tmp_path):
    """Predictions served above are recorded per model version (derived features and scores only); labels that
    arrive later feed the calibration part; `medai monitor-report` writes JSON + HTML."""
    from medai.cli import main

    client, tokens, state = service
    key = model_id(client, tokens, "binary", "tabular")
    frame = make_binary_table(n=40, seed=11)
    records = json.loads(frame.drop(columns=["outcome"]).to_json(orient="records"))
    body = client.post(f"/models/{key}/predict?explain=false", json={"records": records}, headers=auth(tokens)).json()
    labels = [{"prediction_id": p["prediction_id"], "label": int(y == "yes")}
              for p, y in zip(body["predictions"], frame["outcome"])]
    assert client.post("/labels", json={"labels": labels}, headers=auth(tokens)).json() == {"recorded": 40}
    assert main(["monitor-report", str(served_runs / "risk"), "--state", str(state), "--out",
                 str(tmp_path / "drift")]) == 0
    report = json.loads((tmp_path / "drift" / "monitor_report.json").read_text())
    assert report["drift_available"] and report["n_live"] >= 40
    assert {f["name"] for f in report["features"]} >= {"age", "sbp", "smoker"}
    assert (tmp_path / "drift" / "monitor_report.html").read_text().count("data:image/png;base64") >= 1
    assert "P0" not in (tmp_path / "drift" / "monitor_report.json").read_text()  # no record ids stored or shown
