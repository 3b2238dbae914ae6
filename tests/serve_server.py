"""A real `medai serve` process for tests: free port on 127.0.0.1, own process group, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(models: Path, state: Path, *extra: str, env: dict[str, str] | None = None):
    """Yield ``(url, {"clinician": token, "admin": token})`` of a `medai serve` over ``models``."""
    from medai.serve.auth import TokenStore
    from medai.serve.store import database_url, engine

    db = engine(database_url(state))
    tokens = {role: TokenStore(db).create(role, name=f"test {role}")[1] for role in ("clinician", "admin")}
    db.dispose()
    port = free_port()
    log = state / "serve.log"
    command = [sys.executable, "-c", "import sys; from medai.cli import main; sys.exit(main())", "serve",
               "--models", str(models), "--state", str(state), "--port", str(port), *extra]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("medai serve did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.3)
        yield url, tokens
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
