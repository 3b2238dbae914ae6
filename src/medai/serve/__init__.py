"""The clinical decision support service: one FastAPI app over the same :class:`medai.registry.predictor.Predictor`
that `medai predict` uses.

Modules (data flows top to bottom):

  models.py      the registry the service serves: run ``model/`` folders or a registry folder of runs, each loaded
                 once and integrity-checked against its manifest → :class:`ServedModel` (id, version, sha256)
  predict.py     request payloads (table records, FHIR, image/DICOM upload, ECG, text) → prediction dicts (below)
  segment.py     images and volumes (uploads, PACS instances) → masks, area/volume, referral, overlay
  fhir_out.py    prediction dicts → FHIR R4 (R4B) RiskAssessment / DiagnosticReport + Observation
  cds_hooks.py   CDS Hooks discovery and the ``patient-view`` service (prefetched FHIR → cards)
  pacs.py        DICOMweb (QIDO/WADO/STOW) against a PACS such as Orthanc; results back as DICOM SR / SEG
  auth.py        API tokens with roles (clinician, admin), stored hashed
  audit.py       append-only, hash-chained audit log of every prediction (SQLite, or PostgreSQL by URL)
  monitoring.py  Prometheus metrics and drift (population stability index) per model version
  app.py         the FastAPI application: routes, lifespan, error handling, the web page
  web/           the clinicians' page (static HTML/JS/CSS, no CDN)

The prediction dict — one per input record, the JSON the API returns and every adapter reads::

    {
      "id": "the client's record id (or its position, 1-based)",
      "probability": 0.83,                 # binary: calibrated P(positive class)
                   | {"A": 0.7, "N": 0.2},  # multi-class / multi-label: per class
      "risk": {"log_relative_risk": 0.4, "survival": {"365 days": 0.81}},   # survival models only
      "value": 4.2, "interval": [3.1, 5.3],                                 # regression only
      "measurements": {"area_mm2": 31.5, "conformal_area_mm2": 60.2},      # segmentation only (volumes: volume_ml),
                                           # with "segment", "n_components", "spacing_mm", "mask_png_base64"
      "decision": "pneumonia",             # class at the model's operating point (multi-label: list of findings;
                                           # survival: "high" / "low" risk group; segmentation: the segment's
                                           # label, or "none" when nothing was segmented)
      "prediction_set": ["pneumonia"],     # split-conformal set (absent when the model has no conformal state)
      "refer": false,                      # True = ambiguous/uncertain: refer to a clinician (conformal abstain,
                                           # unusable signal, image preparation problem)
      "refer_reason": null | "…",
      "explanation": {"type": "heatmap" | "saliency_strip" | "top_features" | "token_attributions"
                              | "mask_overlay" | "none",
                      "png_base64": "…",  # heatmap / saliency strip / mask overlay
                      "features": [{"name": "age", "attribution": 0.12}, …],   # top features
                      "tokens": [{"token": "effusion", "attribution": 0.3}, …]},
      "warnings": ["image resized from 512x512 to 28x28", …],
      "model": {"id": "pneumonia-cxr", "version": "2026-11-26T10:00:00Z", "sha256": "…"}
    }

No patient data (names, identifiers beyond the client's own record id, note text, values) is ever logged.
"""
