"""A real Orthanc PACS for tests: started from a JSON config in a temporary folder, stopped by PID.

Orthanc (Debian ``orthanc``) with its DICOMweb plugin (``orthanc-dicomweb``) is started on free ports of
127.0.0.1. Orthanc cannot bind to loopback only, so the config keeps remote HTTP access off, requires HTTP basic
authentication, and refuses every DICOM peer (no registered modalities; echo, store, find, move and get not
allowed for unknown peers). Storage and index live in the temporary folder; nothing outlives the test.

Use :func:`start_orthanc` / :meth:`OrthancServer.stop` directly, or the module-scoped ``orthanc`` fixture
(import it into a test module: ``from tests.orthanc import orthanc  # noqa: F401``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: Where Debian's orthanc-dicomweb package puts its plugin (``dpkg -L orthanc-dicomweb``).
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
INSTALL_HINT = "apt-get install -y orthanc orthanc-dicomweb"
USER = "medai-test"


@dataclass
class OrthancServer:
    """A running Orthanc: its base URL (``http://127.0.0.1:PORT``), credentials, PID and DICOM port."""

    url: str
    user: str
    password: str = field(repr=False)
    pid: int
    dicom_port: int
    folder: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def log_path(self) -> Path:
        return self.folder / "orthanc.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to the server's process group, SIGKILL if it is still there after ``timeout_s``."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout_s)


def _free_port() -> int:
    # Bind port 0 and hand the number to Orthanc: a small race with other processes, retried in start_orthanc.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def orthanc_config(folder: Path, http_port: int, dicom_port: int, password: str) -> dict:
    """The loopback-safe configuration (see the module docstring)."""
    return {
        "Name": "medai-test",
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "MEDAITEST",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: password},
        "DicomModalities": {},
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowMove": False,
        "DicomAlwaysAllowGet": False,
        "DicomCheckCalledAet": True,
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "StorageCompression": False,
        "SaveJobs": False,
        "HttpThreadsCount": 8,
        "ConcurrentJobs": 1,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Ssl": False,
                     "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
    }


def start_orthanc(tmp_path: str | Path, *, timeout_s: float = 20.0, attempts: int = 3) -> OrthancServer:
    """Start Orthanc with the DICOMweb plugin in ``tmp_path`` and wait until ``/system`` answers (with auth).

    Raises:
        RuntimeError: Orthanc exited or did not answer within ``timeout_s`` (the message holds its log tail).
    """
    import requests

    binary = shutil.which("Orthanc")
    if binary is None or not DICOMWEB_PLUGIN.is_file():
        pytest.skip(f"Orthanc with its DICOMweb plugin is not installed ({INSTALL_HINT})")
    folder = Path(tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    password = os.urandom(12).hex()
    last_error = ""
    for attempt in range(attempts):
        http_port, dicom_port = _free_port(), _free_port()
        config = folder / "orthanc.json"
        config.write_text(json.dumps(orthanc_config(folder, http_port, dicom_port, password), indent=2))
        log = (folder / "orthanc.log").open("ab")
        process = subprocess.Popen([binary, str(config)], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=folder, start_new_session=True)
        log.close()
        server = OrthancServer(f"http://127.0.0.1:{http_port}", USER, password, process.pid, dicom_port, folder,
                               process)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                last_error = f"Orthanc exited with code {process.returncode}"
                break
            try:
                response = requests.get(f"{server.url}/system", auth=(USER, password), timeout=2)
                if response.status_code == 200:
                    return server
                last_error = f"/system answered HTTP {response.status_code}"
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        else:
            last_error = f"Orthanc did not answer on {server.url}/system within {timeout_s:.0f} s"
        tail = server.log_tail()
        server.stop()
        if "address already in use" not in tail.lower() or attempt == attempts - 1:
            raise RuntimeError(f"{last_error}. Config: {config}. Log tail:\n{tail}")
    raise RuntimeError(last_error)  # pragma: no cover - the loop returns or raises


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """One Orthanc per test module (about 0.1 s to start), stopped by PID at the end of the module."""
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        server.stop()
