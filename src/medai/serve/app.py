"""The FastAPI application of `medai serve`.

Routes (every one needs a token except ``GET /health`` and the sign-in form; roles in brackets):

  GET  /health                              liveness and the number of models
  GET  /models                     [read]   the served models (id, version, sha256, inputs, operating point, …)
  GET  /models/{id}                [read]   one model and its model card
  POST /models/{id}/predict     [predict]   JSON, FHIR (application/fhir+json) or multipart uploads → predictions;
                                            ``Accept: application/fhir+json`` answers a FHIR Bundle
  POST /models                     [admin]  register a run folder present on the server
  POST /models/{id}/retire         [admin]  stop serving a version
  GET  /cds-services               [read]   CDS Hooks discovery
  POST /cds-services/{service}  [predict]   CDS Hooks ``patient-view``: prefetched FHIR → cards
  GET  /pacs/studies               [read]   studies in the configured PACS (DICOMweb QIDO)
  POST /pacs/studies/{uid}/analyse [predict] run a model on a study and store the result as DICOM SR (+ SEG)
  GET  /pacs/worklist              [read]   PACS studies sorted by predicted risk
  POST /labels                  [predict]   outcomes that became known, for calibration monitoring
  GET  /metrics                    [read]   Prometheus metrics
  GET  /audit                      [admin]  the audit log's newest entries and whether the chain verifies
  GET  /                         (cookie)   the clinicians' page; /login sets an HttpOnly cookie from a token

Every prediction is written to the audit log (who: token id and role; what: model id, version, sha256; the
sha256 of the request body; counts of decisions) — never the request's content. Errors come back as
``{"detail": "…"}`` with the right 4xx status; an error in one request never stops the service.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from medai.core.errors import (
    ArtifactIntegrityError,
    DataValidationError,
    InvalidParameterError,
    MedaiError,
    MissingDependencyError,
    UnknownNameError,
)
from medai.serve.auth import Action, Principal, TokenStore, allowed, parse_bearer
from medai.serve.models import ModelRegistry, ServedModel
from medai.serve.predict import UnsupportedInputError, predict_files, predict_json

log = logging.getLogger("medai.serve")

#: Largest request body accepted (bytes); larger uploads get 413 before being read.
DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
FHIR_JSON = "application/fhir+json"
COOKIE = "medai_token"
#: Files accepted in one multipart request (a WFDB record is 2–3 files).
MAX_FILES = 64
WEB = Path(__file__).parent / "web"


class ServiceSettings:
    """What `medai serve` configures: models, state (tokens, audit, drift, retired models), limits, PACS."""

    def __init__(self, model_paths: list[Path], *, state: Path | None = None, database_url: str | None = None,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, pacs=None, runtime: str = "torch") -> None:
        from medai.serve.store import database_url as resolve_url
        from medai.serve.store import state_dir

        self.model_paths = [Path(p) for p in model_paths]
        self.state = state_dir(state)
        self.database_url = resolve_url(state, database_url)
        self.max_upload_bytes = int(max_upload_bytes)
        self.pacs = pacs
        self.runtime = runtime


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service; models load (and are verified) once, in the lifespan, before the first request."""
    from medai.serve.audit import AuditLog
    from medai.serve.monitoring import DriftMonitor, ServiceMetrics
    from medai.serve.store import engine

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.state.mkdir(parents=True, exist_ok=True)
        db = engine(settings.database_url)
        app.state.registry = ModelRegistry.from_paths(settings.model_paths, state_dir=settings.state)
        if settings.runtime != "torch":
            from medai.serve.runtime import use_runtime

            for model in app.state.registry.all():
                if model.modality in ("text", "segmentation"):
                    model.runtime = {"runtime": "torch", "note": f"{model.modality} models run in PyTorch only"}
                    log.warning("%s: %s models run in PyTorch (--runtime %s not applied)", model.key,
                                model.modality, settings.runtime)
                else:
                    model.runtime = use_runtime(model.predictor, settings.runtime)
        app.state.tokens = TokenStore(db)
        app.state.audit = AuditLog(db)
        app.state.metrics = ServiceMetrics()
        app.state.drift = DriftMonitor(db)
        for model in app.state.registry.all():
            app.state.metrics.model_loaded(model.id, model.version, model.sha256)
        log.info("medai serve: %d model(s) loaded and verified", len(app.state.registry.all()))
        yield
        db.dispose()

    app = FastAPI(title="medai clinical decision support", version=_version(), lifespan=lifespan,
                  description="Predictions with calibrated probabilities, operating points, conformal 'refer' "
                              "flags and explanations; FHIR R4, CDS Hooks and DICOMweb. Research software, not a "
                              "medical device.")
    app.state.settings = settings
    _add_limits(app, settings.max_upload_bytes)
    _add_error_handlers(app)
    _add_routes(app)
    return app


#: Environment variable carrying the settings to each worker process of `medai serve --workers N` (no secrets:
#: the PACS password stays in MEDAI_PACS_PASSWORD).
SETTINGS_ENV = "MEDAI_SERVE_SETTINGS"


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process (`medai serve --workers N`), from :data:`SETTINGS_ENV`."""
    import os

    raw = json.loads(os.environ[SETTINGS_ENV])
    # The workers share the machine's cores: one worker's tensor threads would otherwise spin on cores the others
    # (and the HTTP parsing) need.
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(raw.get("workers", 1))))
    pacs = None
    if raw.get("pacs_url"):
        from medai.serve.pacs import PacsConfig

        pacs = PacsConfig.from_env(raw["pacs_url"])
    return create_app(ServiceSettings([Path(p) for p in raw["model_paths"]], state=Path(raw["state"]),
                                      database_url=raw["database_url"], max_upload_bytes=raw["max_upload_bytes"],
                                      pacs=pacs, runtime=raw["runtime"]))


def _version() -> str:
    import medai

    return medai.__version__


# ----------------------------------------------------------------------------------------------- security
def principal(action: Action):
    """Dependency: the request's token (Bearer header, or the page's cookie) must be valid and allow ``action``."""

    def check(request: Request) -> Principal:
        token = parse_bearer(request.headers.get("authorization")) or request.cookies.get(COOKIE)
        who = request.app.state.tokens.authenticate(token) if token else None
        if who is None:
            raise HTTPException(401, "Missing or invalid token: send 'Authorization: Bearer TOKEN' (create one with "
                                     "`medai token create --role clinician`).",
                                headers={"WWW-Authenticate": "Bearer"})
        if not allowed(who.role, action):
            raise HTTPException(403, f"The {who.role.value} role may not {action.value}; this needs a token with "
                                     f"the {'admin' if action is Action.ADMIN else 'clinician'} role.")
        request.state.principal = who
        return who

    return check


READ, PREDICT, ADMIN = (Depends(principal(a)) for a in (Action.READ, Action.PREDICT, Action.ADMIN))


def _add_limits(app: FastAPI, max_bytes: int) -> None:
    """One pure ASGI middleware (cheaper than an ``@app.middleware`` per request): reject bodies over
    ``max_bytes`` (413) from the Content-Length header or while they stream in, and time every request for the
    Prometheus metrics (labelled by route template, never by the URL: ids in paths stay out of the metrics)."""

    class ServiceMiddleware:
        def __init__(self, inner) -> None:
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            began = time.perf_counter()
            status = [500]

            async def send_and_watch(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                headers = dict(scope.get("headers") or [])
                length = headers.get(b"content-length")
                if length is not None and (not length.isdigit() or int(length) > max_bytes):
                    response = JSONResponse({"detail": f"Request body over the {max_bytes // (1024 * 1024)} MiB "
                                                       "limit (or an invalid Content-Length); send smaller files."},
                                            413)
                    return await response(scope, receive, send_and_watch)
                seen = 0

                async def counted():
                    nonlocal seen
                    message = await receive()
                    if message["type"] == "http.request":
                        seen += len(message.get("body", b""))
                        if seen > max_bytes:
                            raise _TooLarge()
                    return message

                try:
                    return await self.inner(scope, counted, send_and_watch)
                except _TooLarge:
                    response = JSONResponse({"detail": f"Request body over the {max_bytes // (1024 * 1024)} MiB "
                                                       "limit; send smaller files."}, 413)
                    return await response(scope, receive, send_and_watch)
            finally:
                metrics = getattr(scope.get("app").state, "metrics", None) if scope.get("app") else None
                if metrics is not None:
                    route = scope.get("route")
                    metrics.observe_request(getattr(route, "path", "unmatched"), scope.get("method", ""),
                                            status[0], time.perf_counter() - began)

    app.add_middleware(ServiceMiddleware)


class _TooLarge(Exception):
    pass


def _add_error_handlers(app: FastAPI) -> None:
    from medai.serve.fhir_out import FhirOutputError

    status = [(UnknownNameError, 404), (UnsupportedInputError, 415), (DataValidationError, 422),
              (InvalidParameterError, 400), (ArtifactIntegrityError, 409), (MissingDependencyError, 501),
              (FhirOutputError, 500)]

    from medai.serve.pacs import PacsError, StudyNotFoundError

    status = [(StudyNotFoundError, 404), (PacsError, 502)] + status

    @app.exception_handler(MedaiError)
    async def medai_error(request: Request, exc: MedaiError):
        code = getattr(exc, "status_code", None) or next((c for cls, c in status if isinstance(exc, cls)), 400)
        return JSONResponse({"detail": str(exc)}, status_code=code)


# ----------------------------------------------------------------------------------------------- routes
def _add_routes(app: FastAPI) -> None:
    @app.get("/health", tags=["service"])
    def health(request: Request) -> dict[str, Any]:
        """Liveness: no token needed; says how many models are loaded (nothing else)."""
        return {"status": "ok", "models": len(request.app.state.registry.all())}

    @app.get("/models", tags=["models"])
    def list_models(request: Request, who: Principal = READ) -> dict[str, Any]:
        return {"models": [m.info() for m in request.app.state.registry.all()]}

    @app.get("/models/{model_id}", tags=["models"])
    def get_model(model_id: str, request: Request, who: Principal = READ) -> dict[str, Any]:
        model = request.app.state.registry.get(model_id, include_retired=True)
        return {**model.info(), "model_card": model.model_card, "model_card_markdown": model.model_card_md}

    @app.post("/models/{model_id}/predict", tags=["predict"], openapi_extra=_PREDICT_OPENAPI)
    async def predict(model_id: str, request: Request, explain: bool = True, sampling_rate_hz: float | None = None,
                      who: Principal = PREDICT) -> Response:
        """Predictions for the records of the body; ``explain=false`` skips explanations (faster)."""
        model = request.app.state.registry.get(model_id)
        body = await request.body()
        content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        files = await _multipart_files(request) if content_type == "multipart/form-data" else None
        predictions, warnings = await run_in_threadpool(_predict_body, model, body, files, content_type,
                                                        explain, sampling_rate_hz)
        # the audit's input hash: the body, or for uploads the files' own hashes (a multipart boundary is random)
        digest_of = body if files is None else b"".join(hashlib.sha256(c).digest() for _, c in files)
        _after_prediction(request, who, model, digest_of, predictions)
        if FHIR_JSON in (request.headers.get("accept") or ""):
            from medai.serve.fhir_out import prediction_bundle

            subjects = [p.get("patient") for p in predictions] if model.modality == "ehr" else None
            bundle = await run_in_threadpool(prediction_bundle, predictions, _fhir_model(request, model),
                                             subject_ids=subjects)
            return Response(json.dumps(bundle), media_type=FHIR_JSON)
        return JSONResponse({"model": model.ref, "predictions": predictions, "warnings": warnings})

    @app.post("/models", tags=["models"])
    def register(payload: dict[str, Any], request: Request, who: Principal = ADMIN) -> dict[str, Any]:
        """Register every model under a folder on the server (``{"path": "runs/cxr"}``)."""
        path = payload.get("path") if isinstance(payload, dict) else None
        if not isinstance(path, str) or not path:
            raise DataValidationError("Send {\"path\": \"FOLDER\"}: a run folder (or folder of runs) on the server.")
        roots = [p.resolve() for p in request.app.state.settings.model_paths]
        target = Path(path).resolve()
        if not any(target == root or root in target.parents for root in roots):
            # an admin token must not turn the service into a file-system browser
            raise InvalidParameterError(f"Only folders below the service's --models folders can be registered "
                                        f"({', '.join(map(str, roots))}); copy the run there first.")
        added = request.app.state.registry.register(target)
        for model in added:
            request.app.state.metrics.model_loaded(model.id, model.version, model.sha256)
            _audit(request, who, "register_model", model, status=200)
        return {"registered": [m.info() for m in added]}

    @app.post("/models/{model_id}/retire", tags=["models"])
    def retire(model_id: str, request: Request, who: Principal = ADMIN) -> dict[str, Any]:
        model = request.app.state.registry.retire(model_id)
        _audit(request, who, "retire_model", model, status=200)
        return {"retired": model.ref}

    @app.get("/cds-services", tags=["cds-hooks"])
    def cds_discovery(request: Request, who: Principal = READ) -> dict[str, Any]:
        from medai.serve.cds_hooks import discovery, is_cds_model

        infos = [_fhir_model(request, m) for m in request.app.state.registry.all() if not m.retired]
        return discovery([i for i in infos if is_cds_model(i)])

    @app.post("/cds-services/{service_id}", tags=["cds-hooks"])
    async def cds_service(service_id: str, request: Request, who: Principal = PREDICT) -> dict[str, Any]:
        """CDS Hooks ``patient-view``: the body is read as plain JSON (a schema-validation error would echo the
        prefetched patient data back)."""
        from medai.serve.cds_hooks import is_cds_model, patient_view
        from medai.serve.predict import predict_timelines

        body = await request.body()
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataValidationError("The CDS Hooks request body is not valid JSON.") from None
        model = request.app.state.registry.get(service_id)
        info = _fhir_model(request, model)
        if not is_cds_model(info):
            raise UnknownNameError(f"'{service_id}' is not a CDS Hooks service (only EHR models are; see "
                                   "GET /cds-services).")
        result = await run_in_threadpool(patient_view, model.id, payload,
                                         lambda timelines: predict_timelines(model, timelines), model=info)
        cards = result.get("cards", [])
        _audit(request, who, "cds_patient_view", model, status=200, body=body,
               n_records=1, outcome={"cards": len(cards)})
        return result

    @app.post("/labels", tags=["monitoring"])
    def labels(payload: dict[str, Any], request: Request, who: Principal = PREDICT) -> dict[str, Any]:
        """Outcomes that became known: ``{"labels": [{"prediction_id": "…", "label": 1}, …]}``."""
        items = payload.get("labels") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items:
            raise DataValidationError("Send {\"labels\": [{\"prediction_id\": \"…\", \"label\": …}, …]}.")
        n = 0
        for item in items:
            if not isinstance(item, dict) or "prediction_id" not in item or "label" not in item:
                raise DataValidationError("Each label needs 'prediction_id' (from the prediction) and 'label'.")
            n += int(request.app.state.drift.add_label(str(item["prediction_id"]), item["label"]))
        return {"recorded": n}

    @app.get("/metrics", tags=["monitoring"])
    def metrics(request: Request, who: Principal = READ) -> Response:
        content, media_type = request.app.state.metrics.response()
        return Response(content, media_type=media_type)

    @app.get("/audit", tags=["monitoring"])
    def audit(request: Request, limit: int = 50, who: Principal = ADMIN) -> dict[str, Any]:
        log_ = request.app.state.audit
        result = log_.verify()  # linear in the log's length (about 60 µs per entry): an admin page, not a hot path
        return {"verified": result.ok, "n_entries": result.n_entries, "first_bad_seq": result.first_bad_seq,
                "reason": result.reason, "head_hash": result.head_hash,
                "entries": [e.as_dict() for e in log_.entries(limit=max(1, min(limit, 500)))]}

    _add_pacs_routes(app)
    _add_web_routes(app)


_PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "description": "tabular: {\"records\": [{…}]}; "
                                            "text: {\"texts\": [\"…\"]}; ECG: {\"sampling_rate_hz\", \"leads\", "
                                            "\"signal\"}"}},
            FHIR_JSON: {"schema": {"type": "object", "description": "a FHIR R4 Bundle (EHR models)"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        },
    },
}


def _predict_body(model: ServedModel, body: bytes, files: list[tuple[str, bytes]] | None, content_type: str,
                  explain: bool, sampling_rate_hz: float | None):
    if content_type in ("application/json", FHIR_JSON):
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataValidationError("The request body is not valid JSON.") from None
        return predict_json(model, payload, explain=explain)
    if content_type == "multipart/form-data":
        return predict_files(model, files, explain=explain, sampling_rate_hz=sampling_rate_hz)
    raise UnsupportedInputError(f"Content-Type '{content_type or 'none'}' is not accepted: send application/json, "
                                f"{FHIR_JSON} or multipart/form-data (field 'file').")


async def _multipart_files(request: Request) -> list[tuple[str, bytes]]:
    """The uploaded files of a multipart body (field ``file``, one or more; at most :data:`MAX_FILES`)."""
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
    except HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - the multipart parser raises several types for malformed bodies
        raise DataValidationError(f"The multipart body is malformed ({exc.__class__.__name__}); send the files as a "
                                  "normal form upload in the field 'file'.") from None
    try:
        files = [(item.filename or "upload", await item.read()) for item in form.getlist("file")
                 if hasattr(item, "filename")]
    finally:
        await form.close()
    if not files:
        raise DataValidationError("No file in the multipart field 'file'.")
    return files


def _after_prediction(request: Request, who: Principal, model: ServedModel, body: bytes,
                      predictions: list[dict]) -> None:
    decisions: dict[str, int] = {}
    for p in predictions:
        decision = p.get("decision")
        key = ";".join(map(str, decision)) if isinstance(decision, list) else str(decision)
        decisions[key] = decisions.get(key, 0) + 1
    referred = sum(bool(p.get("refer")) for p in predictions)
    state = request.app.state
    # One transaction, one commit: the drift records and the audit entry are written together or not at all.
    with state.audit.transaction() as connection:
        prediction_ids = state.drift.record_predictions(model, predictions, connection=connection)
        _audit(request, who, "predict", model, status=200, body=body, n_records=len(predictions),
               outcome={"decisions": decisions, "referred": referred}, connection=connection)
    for p, pid in zip(predictions, prediction_ids):
        p["prediction_id"] = pid
    state.metrics.predictions(model.id, model.version, decisions, referred)


def _audit(request: Request, who: Principal, action: str, model: ServedModel | None, *, status: int,
           body: bytes | None = None, n_records: int | None = None, outcome: dict | None = None,
           connection=None) -> None:
    request.app.state.audit.append({
        "actor": who.token_id, "role": who.role.value, "action": action,
        "model_id": model.id if model else None, "model_version": model.version if model else None,
        "model_sha256": model.sha256 if model else None,
        "input_sha256": hashlib.sha256(body).hexdigest() if body is not None else None,
        "n_records": n_records, "status": status, "outcome": outcome or {},
    }, connection=connection)


def _fhir_model(request: Request, model: ServedModel):
    """The model as FHIR outputs and CDS cards name it (id, version, sha256, task, card URL)."""
    from medai.serve.fhir_out import ModelInfo

    base = str(request.base_url).rstrip("/")
    return ModelInfo.from_predictor(model.predictor, model_id=model.id, version=model.version,
                                    card_url=f"{base}/models/{model.key}")


# ----------------------------------------------------------------------------------------------- PACS
def _add_pacs_routes(app: FastAPI) -> None:
    def pacs(request: Request):
        configured = request.app.state.settings.pacs
        if configured is None:
            raise HTTPException(404, "No PACS is configured: start `medai serve --pacs-url URL` (DICOMweb root, "
                                     "e.g. http://127.0.0.1:8042/dicom-web) with MEDAI_PACS_USER/MEDAI_PACS_PASSWORD.")
        from medai.serve.pacs import Pacs

        return Pacs(configured)  # a client per request: credentials stay in the config, sessions are not shared

    @app.get("/pacs/studies", tags=["pacs"])
    def studies(request: Request, limit: int = 100, who: Principal = READ) -> dict[str, Any]:
        found = pacs(request).search_studies({}, limit=max(1, min(limit, 500)))
        return {"studies": [s.to_dict() for s in found]}

    @app.post("/pacs/studies/{study_uid}/analyse", tags=["pacs"])
    def analyse(study_uid: str, request: Request, model: str, who: Principal = PREDICT) -> dict[str, Any]:
        """Run an image model on a PACS study and store the result back: a DICOM SR of the classification, or for
        a segmentation model a DICOM SEG per series and an SR of each image's area and referral."""
        from medai.serve.pacs import analyse_served

        served = request.app.state.registry.get(model)
        result = analyse_served(pacs(request), study_uid, served)
        as_dict = result.to_dict()
        _audit(request, who, "pacs_analyse", served, status=200, body=study_uid.encode(),
               n_records=int(as_dict.get("n_images") or 0))
        return as_dict

    @app.get("/pacs/worklist", tags=["pacs"])
    def worklist(request: Request, model: str, limit: int = 20, who: Principal = READ) -> dict[str, Any]:
        """PACS studies scored by an image model, highest predicted risk first (nothing is stored)."""
        from medai.serve.pacs import worklist_served

        served = request.app.state.registry.get(model)
        items = worklist_served(pacs(request), served, limit=max(1, min(limit, 200)))
        return {"model": served.ref, "studies": [i.to_dict() for i in items]}


# ----------------------------------------------------------------------------------------------- web page
def _add_web_routes(app: FastAPI) -> None:
    @app.get("/login", include_in_schema=False)
    def login_page() -> HTMLResponse:
        return HTMLResponse((WEB / "login.html").read_text())

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        from urllib.parse import parse_qs

        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        who = request.app.state.tokens.authenticate(token) if token else None
        if who is None:
            return RedirectResponse("/login?failed=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        if not token or request.app.state.tokens.authenticate(token) is None:
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse((WEB / "index.html").read_text())


# ----------------------------------------------------------------------------------------------- CLI
def add_serve_parser(subparsers):
    """`medai serve`: the service with the web page, on 127.0.0.1 by default."""
    parser = subparsers.add_parser("serve", help="serve models: REST API, FHIR, CDS Hooks, DICOMweb and a web page")
    parser.add_argument("--models", type=Path, nargs="+", default=None,
                        help="run folders, model/ folders or folders of runs (default: runs/)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine "
                        "only; put a TLS reverse proxy in front before opening it to a network)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--state", type=Path, default=None, help="folder for tokens, audit log and drift records "
                        "(default $MEDAI_STATE or ./medai-state)")
    parser.add_argument("--db", default=None, help="database URL instead of the state folder's SQLite file "
                        "(e.g. postgresql+psycopg://user@host/medai)")
    parser.add_argument("--pacs-url", default=None, help="DICOMweb root of the PACS (e.g. "
                        "http://127.0.0.1:8042/dicom-web); credentials from MEDAI_PACS_USER / MEDAI_PACS_PASSWORD")
    parser.add_argument("--runtime", choices=["torch", "onnx", "compiled"], default="torch",
                        help="inference engine: the PyTorch network (default), ONNX Runtime, or torch.compile with "
                        "freezing (+ bf16 on CPUs that support it); checked against PyTorch at start-up")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (each loads every "
                        "model; default 1). More than 1 uses more cores for CPU-bound models")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2 ** 20,
                        help="largest request body accepted (default 50)")
    parser.set_defaults(handler=serve_command)
    return parser


def serve_command(args) -> int:
    import os

    import uvicorn
    from rich.console import Console

    from medai.core.errors import InvalidParameterError

    console = Console(stderr=True)
    models = args.models if args.models is not None else [Path("runs")]
    if args.max_upload_mb <= 0:
        raise InvalidParameterError(f"--max-upload-mb must be positive; got {args.max_upload_mb}.")
    pacs = None
    if args.pacs_url:
        from medai.serve.pacs import PacsConfig

        pacs = PacsConfig.from_env(args.pacs_url)
    settings = ServiceSettings(models, state=args.state, database_url=args.db,
                               max_upload_bytes=int(args.max_upload_mb * 2 ** 20), pacs=pacs, runtime=args.runtime)
    # load once here too so that a bad model stops the command with a clear message before the port opens
    registry = ModelRegistry.from_paths(settings.model_paths, state_dir=settings.state)
    for model in registry.all():
        console.print(f"  {model.id} ({model.kind.value}, {model.modality}) version {model.version} "
                      f"sha256 {model.sha256[:12]}…{' [retired]' if model.retired else ''}")
    console.print(f"[bold]medai serve[/] {len(registry.all())} model(s); web page http://{args.host}:{args.port}/ "
                  f"(sign in with a token from `medai token create --role clinician --state {settings.state}`); "
                  f"API docs http://{args.host}:{args.port}/docs")
    if args.workers < 1:
        raise InvalidParameterError(f"--workers must be at least 1; got {args.workers}.")
    if args.workers == 1:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning", access_log=False)
        return 0
    os.environ[SETTINGS_ENV] = json.dumps({
        "model_paths": [str(p.resolve()) for p in settings.model_paths], "state": str(settings.state.resolve()),
        "database_url": settings.database_url, "max_upload_bytes": settings.max_upload_bytes,
        "pacs_url": args.pacs_url, "runtime": settings.runtime, "workers": args.workers})
    uvicorn.run("medai.serve.app:app_from_environment", factory=True, workers=args.workers, host=args.host,
                port=args.port, log_level="warning", access_log=False)
    return 0
