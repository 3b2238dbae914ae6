"""Service latency and throughput: `medai serve` on loopback, three models, three inference engines.

Goals (issue 7, 2 CPU cores): tabular risk model p99 < 50 ms at concurrency 8; 28 px image model p50 < 10 ms;
224 px ResNet-18 above the 6.6 requests/s TorchServe reports for ResNet-18 on 4 vCPUs (TorchServe benchmark,
c5.xlarge, batch size 1; see docs/benchmarks.md); a bounded 60-second load test with zero errors.

Models, trained here on real data (their weights do not change latency; their input shapes do):
- tabular: the WDBC diagnosis recipe (MLP, 30 features) — JSON ``{"records": [one record]}``;
- 28 px: a ResNet-18 (stride-2 stem) on BreastMNIST at 28 x 28 (3 epochs) — one PNG upload per request;
- 224 px: a full-width ResNet-18 on BreastMNIST resized to 224 x 224 x 3 (1 epoch) — one PNG upload per request.
Each model is served by `medai serve` with ``--runtime torch | onnx | compiled`` (one uvicorn worker process) and
ONNX with two worker processes. The
load generator is one process per concurrent client, each holding one keep-alive HTTP/1.1 connection
(``http.client``, the request body built once), on the same 2 cores as the server: its CPU use is part of what is
measured, so the numbers are upper bounds of what clients on other machines would see. Requests ask for
no explanation (``explain=false``): explanations cost backward passes and are measured apart.
Per model, engine and concurrency (1, 8, 32): p50/p95/p99 latency of successful requests, requests/s, errors. The
"direct" numbers are the same prediction without HTTP (the Predictor path the endpoint runs, in-process, one at a time):
the difference is the HTTP overhead (plus the audit log, drift record and token check every request pays). Then a
60-second load test at concurrency 8 on the tabular model (ONNX, one worker).

Run: ``python bench/serve_latency.py [--quick]`` (writes bench/results/serve_latency.json).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

import common

NAME = "serve_latency"
ROOT = Path(__file__).resolve().parents[1]
BREASTMNIST = ROOT.parent / "shared" / "data" / "breastmnist" / "breastmnist.npz"
TORCHSERVE_RESNET18_RPS = 6.6
GOALS = {"tabular_p99_ms_c8": 50.0, "image28_p50_ms": 10.0, "resnet224_rps": TORCHSERVE_RESNET18_RPS}
#: (engine, uvicorn worker processes) served in turn.
CONFIGURATIONS = (("torch", 1), ("onnx", 1), ("compiled", 1), ("onnx", 2))
CONCURRENCY = (1, 8, 32)


# ----------------------------------------------------------------------------------------------- models
def train_models(folder: Path, quick: bool) -> dict[str, Path]:
    from dataclasses import replace

    from medai.core.config import load_recipe
    from medai.pipeline import train

    runs = {}
    config = load_recipe(ROOT / "recipes" / "breast-cancer-diagnosis.yaml")
    config = config.replace(training=replace(config.training, max_epochs=60),
                            evaluation=replace(config.evaluation, n_resamples=100))
    runs["tabular"] = train(config, folder / "tabular", progress=False).out
    image = load_recipe(ROOT / "recipes" / "breast-ultrasound.yaml")
    image = image.replace(data=replace(image.data, path=str(BREASTMNIST)),
                          training=replace(image.training, max_epochs=1 if quick else 3),
                          evaluation=replace(image.evaluation, n_resamples=100, explained_images=0))
    runs["image28"] = train(image, folder / "image28", progress=False).out
    big = image.replace(name="resnet18-224", preprocessing=replace(image.preprocessing, image_size=(224, 224),
                                                                   channels=3),
                        model=replace(image.model, name="resnet18", params={}),
                        training=replace(image.training, max_epochs=1))
    runs["resnet224"] = train(big, folder / "resnet224", progress=False).out
    return runs


def payloads(model: str) -> tuple[dict, list[tuple[str, bytes]] | None]:
    """(JSON body, files) of one request for ``model``."""
    if model == "tabular":
        from medai.data.builtin import load_builtin

        frame = load_builtin("wdbc").drop(columns=["diagnosis"]).head(1)
        return {"records": json.loads(frame.to_json(orient="records"))}, None
    from PIL import Image

    with np.load(BREASTMNIST) as archive:
        image = archive["test_images"][0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return {}, [("file", ("case.png", buffer.getvalue(), "image/png"))]


# ----------------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`medai serve` in a subprocess (own process group), stopped by PID."""

    def __init__(self, models: list[Path], runtime: str, state: Path, workers: int = 1) -> None:
        from medai.serve.auth import TokenStore
        from medai.serve.store import database_url, engine

        db = engine(database_url(state))
        _, self.token = TokenStore(db).create("clinician", name="benchmark")
        db.dispose()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = state / f"serve-{runtime}.log"
        command = [sys.executable, "-c", "import sys; from medai.cli import main; sys.exit(main())", "serve",
                   "--models", *map(str, models), "--state", str(state), "--port", str(self.port),
                   "--runtime", runtime, "--workers", str(workers)]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                            env={**os.environ, "OMP_NUM_THREADS": "2"})
        deadline = time.monotonic() + 300  # torch.compile of three models takes a while
        while True:
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("medai serve did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.5)
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def models(self) -> dict[str, dict]:
        listed = requests.get(self.url + "/models", headers=self.headers, timeout=10).json()["models"]
        return {m["id"]: m for m in listed}

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)


def _request(model: str) -> tuple[bytes, str]:
    """(body, content type) of one request for ``model``: JSON records, or a multipart PNG upload."""
    body, files = payloads(model)
    if files is None:
        return json.dumps(body).encode(), "application/json"
    from urllib3 import encode_multipart_formdata

    return encode_multipart_formdata([(field, (name, content, kind)) for field, (name, content, kind) in files])


def _client(args: tuple) -> tuple[list[float], list[str]]:
    """One load-generator process: one keep-alive HTTP/1.1 connection (http.client), requests back to back until
    the shared counter reaches the total or the deadline passes; latency per request, client side."""
    import http.client

    port, path, headers, body, total, stop_at = args
    counter = _COUNTER
    latencies, errors = [], []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while True:
        with counter.get_lock():
            if (total is not None and counter.value >= total) or (stop_at is not None and time.time() >= stop_at):
                break
            counter.value += 1
        began = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - began)
            else:
                errors.append(f"HTTP {response.status}")
        except (OSError, http.client.HTTPException) as exc:
            errors.append(exc.__class__.__name__)
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.close()
    return latencies, errors


def load(server: Server, key: str, model: str, concurrency: int, *, n_requests: int | None = None,
         seconds: float | None = None) -> dict:
    """Send ``model``'s request from ``concurrency`` client processes (one keep-alive connection each) until
    ``n_requests`` are done or ``seconds`` have passed."""
    import multiprocessing

    body, content_type = _request(model)
    headers = {**server.headers, "Content-Type": content_type}
    context = multiprocessing.get_context("spawn")
    counter = context.Value("l", 0)
    stop_at = None if seconds is None else time.time() + seconds
    path = f"/models/{key}/predict?explain=false"
    with context.Pool(concurrency, initializer=_share, initargs=(counter,)) as pool:
        pool.map(_ping, [server.port] * concurrency)  # processes started before the clock starts
        began = time.perf_counter()
        parts = pool.map(_client, [(server.port, path, headers, body, n_requests, stop_at)] * concurrency,
                         chunksize=1)
        wall = time.perf_counter() - began
    return _summary([x for lat, _ in parts for x in lat], [e for _, err in parts for e in err], wall, concurrency)


_COUNTER = None


def _share(counter) -> None:
    """Pool initializer: the requests counter every client process shares (passed at process start)."""
    global _COUNTER
    _COUNTER = counter


def _ping(port: int) -> None:
    socket.create_connection(("127.0.0.1", port), timeout=10).close()


def _summary(latencies: list[float], errors: list[str], wall: float, concurrency: int) -> dict:
    ms = np.asarray(latencies) * 1000
    percentile = (lambda q: float(np.percentile(ms, q))) if len(ms) else (lambda q: None)
    return {"concurrency": concurrency, "n_ok": int(len(ms)), "n_errors": len(errors),
            "errors": sorted(set(errors))[:5], "wall_s": round(wall, 2),
            "requests_per_s": round(len(ms) / wall, 2) if wall > 0 else None,
            "p50_ms": percentile(50), "p95_ms": percentile(95), "p99_ms": percentile(99)}


def direct(run: Path, model_kind: str, body: dict, files, runtime: str, n: int) -> dict:
    """The endpoint's prediction path without HTTP, one request at a time."""
    from medai.serve.models import load_served_model
    from medai.serve.predict import predict_files, predict_json
    from medai.serve.runtime import use_runtime

    model = load_served_model(run / "model")
    model.runtime = use_runtime(model.predictor, runtime)
    uploads = None if files is None else [(name, content) for _, (name, content, _) in files]
    latencies = []
    for i in range(n + 5):
        began = time.perf_counter()
        if uploads is None:
            predict_json(model, body, explain=False)
        else:
            predict_files(model, uploads, explain=False)
        if i >= 5:  # warm-up
            latencies.append(time.perf_counter() - began)
    return _summary(latencies, [], sum(latencies), 1)


# ----------------------------------------------------------------------------------------------- run
def run(quick: bool = False) -> dict:
    if not BREASTMNIST.is_file():
        raise SystemExit(f"{BREASTMNIST} not found (see ../shared/DATA.md).")
    import torch

    torch.set_num_threads(2)
    started = time.perf_counter()
    n_per = {1: 60 if quick else 300, 8: 80 if quick else 800, 32: 96 if quick else 960}
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = train_models(tmp / "runs", quick)
        ids = {}
        for name, folder in runs.items():
            ids[name] = json.loads((folder / "model" / "model_card.json").read_text())["model_details"]["name"]
        configurations = (("torch", 1), ("onnx", 2)) if quick else CONFIGURATIONS
        for engine_name, workers in configurations:
            runtime = engine_name if workers == 1 else f"{engine_name}-{workers}workers"
            state = tmp / f"state-{runtime}"
            server = Server(list(runs.values()), engine_name, state, workers)
            try:
                listed = server.models()
                for name, run_dir in runs.items():
                    body, files = payloads(name)
                    key = listed[ids[name]]["key"]
                    load(server, key, name, 2, n_requests=20)  # warm-up
                    entry = {"engine": listed[ids[name]]["runtime"], "workers": workers,
                             "direct": direct(run_dir, name, body, files, engine_name, 30 if quick else 200)}
                    for c in CONCURRENCY:
                        entry[f"c{c}"] = load(server, key, name, c, n_requests=n_per[c])
                        print(f"  {name:<10} {runtime:<9} c={c:<3} p50 {entry[f'c{c}']['p50_ms']:.1f} ms  p99 "
                              f"{entry[f'c{c}']['p99_ms']:.1f} ms  {entry[f'c{c}']['requests_per_s']} req/s  "
                              f"errors {entry[f'c{c}']['n_errors']}", flush=True)
                    results.setdefault(name, {})[runtime] = entry
                if runtime == ("torch" if quick else "onnx"):
                    results["load_test"] = load(server, listed[ids["tabular"]]["key"], "tabular", 8,
                                                seconds=10 if quick else 60)
                    results["load_test"]["model"] = "tabular"
                    results["load_test"]["seconds"] = 10 if quick else 60
            finally:
                server.stop()
    best = {name: {rt: results[name][rt] for rt in results[name]} for name in runs}
    tab_p99 = min(e["c8"]["p99_ms"] for e in best["tabular"].values())
    img_p50 = min(e["c1"]["p50_ms"] for e in best["image28"].values())
    big_rps = max(max(e[f"c{c}"]["requests_per_s"] for c in CONCURRENCY) for e in best["resnet224"].values())
    table = []
    for name in runs:
        for rt, e in results[name].items():
            c1, c8 = e["c1"], e["c8"]
            table.append(common.row(f"{name} {rt} HTTP c=1", "p50_ms", None,
                                    {"value": c1["p50_ms"], "ci_low": None, "ci_high": None},
                                    note=f"p99 {c1['p99_ms']:.1f} ms; direct p50 {e['direct']['p50_ms']:.2f} ms"))
            table.append(common.row(f"{name} {rt} HTTP c=8", "p99_ms", None,
                                    {"value": c8["p99_ms"], "ci_low": None, "ci_high": None},
                                    note=f"{c8['requests_per_s']} req/s"))
            table.append(common.row(f"{name} {rt} HTTP best", "req_per_s",
                                    None, {"value": max(e[f"c{c}"]["requests_per_s"] for c in CONCURRENCY),
                                           "ci_low": None, "ci_high": None},
                                    published=TORCHSERVE_RESNET18_RPS if name == "resnet224" else None))
    lt = results["load_test"]
    met = {"tabular_p99_ms_c8": tab_p99 < GOALS["tabular_p99_ms_c8"],
           "image28_p50_ms": img_p50 < GOALS["image28_p50_ms"],
           "resnet224_rps": big_rps > GOALS["resnet224_rps"],
           "load_test_zero_errors": lt["n_errors"] == 0}
    return {
        "name": NAME, "title": "medai serve: latency and throughput on loopback (2 cores, client on the same cores)",
        "date": common.today(), "machine": common.machine(), "quick": quick,
        "runtime_s": time.perf_counter() - started,
        "protocol": __doc__.split("Models, trained")[1].split("Run:")[0].strip(),
        "results": results,
        "best": {"tabular_p99_ms_c8": tab_p99, "image28_p50_ms": img_p50, "resnet224_rps": big_rps},
        "goals": {k: {"value": GOALS.get(k, 0), "met": bool(v)} for k, v in met.items()},
        "table": table,
        "goal": {"metric": "all service goals (tabular p99 c8 < 50 ms, 28 px p50 < 10 ms, ResNet-18 224 > 6.6 "
                           "req/s, 60 s load test without errors)", "value": 1, "met": all(met.values())},
    }


if __name__ == "__main__":
    common.run_script(NAME, run, sys.argv[1:])
