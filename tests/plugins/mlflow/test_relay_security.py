"""The mlflow target's relay (the deployment's stable endpoint) serving HTTPS and requiring a bearer
token: a real relay process in front of a real HTTP backend, then a real deploy through MLflow with
``relay_certfile``/``relay_keyfile``/``relay_token`` and the CA trusted through ``ca_bundle``.

The certificates are made in the test (a throwaway CA and a server certificate for 127.0.0.1, with
the ``cryptography`` package, as the Watson emulator makes its own)."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import deploykit
from deploykit.artifact import load_artifact
from deploykit.errors import ScoringError
from deploykit.http import request_json
from deploykit_plugins.mlflow import serving
from tests.emulators.watson import _make_certificates
from tests.plugins.mlflow.conftest import MlflowProject
from tests.plugins.mlflow.helpers import serving_servers

TOKEN = "relay-test-token-0123456789abcdef"


@dataclass
class Certs:
    """A throwaway CA and the server certificate and key it signed (for 127.0.0.1 and localhost)."""

    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(*_make_certificates(tmp_path_factory.mktemp("relay-certs")))


class _Echo(BaseHTTPRequestHandler):
    """The backend: answers every request with 200 and what it saw (path, Authorization header, body)."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        data = json.dumps({"path": self.path, "authorization": self.headers.get("Authorization"),
                           "body": body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@dataclass
class Relay:
    """A relay process started by ``serving.start_front`` and where it listens."""

    pid: int
    url: str
    files: serving.ServerFiles
    token_modes: list[int]


@pytest.fixture
def relay(tmp_path: Path, backend: int, certs: Certs, monkeypatch: pytest.MonkeyPatch) -> Iterator[Relay]:
    """The relay on a free port, serving HTTPS with ``certs`` and requiring TOKEN, in front of the echo
    backend. The mode of the token file it is handed is noted as the deployer writes it."""
    modes: list[int] = []
    real_write = serving.atomic_write

    def noting_write(path: Path, data: bytes, **kwargs: Any) -> None:
        real_write(path, data, **kwargs)
        if ".token." in path.name:
            modes.append(stat.S_IMODE(path.stat().st_mode))

    monkeypatch.setattr(serving, "atomic_write", noting_write)
    files = serving.ServerFiles(tmp_path / ".deploykit", "secured")
    serving.write_backend(files.backend_file, backend)
    port = serving.free_port()
    proc = serving.start_front("127.0.0.1", port, files, files.log("front"), certfile=str(certs.cert),
                               keyfile=str(certs.key), token=TOKEN)
    serving.wait_front(files.front_state, proc.pid)
    yield Relay(proc.pid, f"https://127.0.0.1:{port}", files, modes)
    serving.stop(proc.pid, grace=2)
    proc.wait(timeout=10)


def test_the_relay_serves_https_trusted_through_the_ca_bundle(relay: Relay, certs: Certs) -> None:
    status, body = request_json("GET", f"{relay.url}/health", token=TOKEN, verify=str(certs.ca), retries=0)
    assert status == 200 and body["path"] == "/health"
    with pytest.raises(ScoringError, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted without the CA
        request_json("GET", f"{relay.url}/health", token=TOKEN, verify=True, retries=0)
    with pytest.raises(ScoringError):  # plain HTTP to the HTTPS port gets no answer
        request_json("GET", relay.url.replace("https:", "http:") + "/health", token=TOKEN, retries=0)


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN + "x", "bearer-less"], ids=["missing", "wrong",
                                                                                        "longer", "no-scheme"])
def test_a_missing_or_wrong_token_is_401_naming_the_setting(relay: Relay, certs: Certs, token: str | None) -> None:
    headers = {"Authorization": TOKEN} if token == "bearer-less" else None
    status, body = request_json("POST", f"{relay.url}/invocations", {"rows": 1}, token=None if headers else token,
                                headers=headers, verify=str(certs.ca), retries=0)
    assert status == 401
    assert body == {"error_code": "UNAUTHENTICATED", "message": "this endpoint requires Authorization: Bearer "
                                                                "<token> (mlflow.relay_token of the deployment)"}


def test_the_right_token_passes_and_requests_on_one_connection_are_each_checked(relay: Relay, certs: Certs) -> None:
    status, body = request_json("POST", f"{relay.url}/invocations", {"rows": 1}, token=TOKEN, verify=str(certs.ca),
                                retries=0)
    assert status == 200 and body["path"] == "/invocations" and json.loads(body["body"]) == {"rows": 1}
    import http.client
    import ssl

    conn = http.client.HTTPSConnection("127.0.0.1", int(relay.url.rsplit(":", 1)[1]),
                                       context=ssl.create_default_context(cafile=str(certs.ca)), timeout=10)
    try:
        conn.request("GET", "/health", headers={"Authorization": f"Bearer {TOKEN}"})
        first = conn.getresponse()
        assert (first.status, json.loads(first.read())["path"]) == (200, "/health")
        conn.request("GET", "/health")  # the same keep-alive connection, no token: refused
        second = conn.getresponse()
        assert second.status == 401 and b"mlflow.relay_token" in second.read()
    finally:
        conn.close()


def test_the_token_is_handed_over_in_a_0600_file_and_never_on_a_command_line_or_environment(relay: Relay) -> None:
    assert relay.token_modes == [0o600]
    assert not [p for p in relay.files.backend_file.parent.iterdir() if ".token." in p.name]  # read, then removed
    cmdline = Path(f"/proc/{relay.pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{relay.pid}/environ").read_bytes()
    assert TOKEN.encode() not in cmdline and TOKEN.encode() not in environ


def test_a_deploy_with_https_and_a_token_scores_only_with_the_token(mlflow_project: MlflowProject, certs: Certs,
                                                                    bank_model, bank_rows,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    p = mlflow_project
    monkeypatch.setenv("DEPLOYKIT_TEST_RELAY_TOKEN", TOKEN)
    tls = {"relay_certfile": str(certs.cert), "relay_keyfile": str(certs.key), "ca_bundle": str(certs.ca)}
    p.write(**tls, relay_token="${DEPLOYKIT_TEST_RELAY_TOKEN}")
    dep = deploykit.deploy(bank_model, target="mlflow", name=p.name, **p.kwargs())
    assert dep.status == "ready" and dep.url.startswith("https://127.0.0.1:")
    expected = load_artifact(bank_model).predict(pd.DataFrame(bank_rows)).labels
    assert deploykit.score(p.name, bank_rows, **p.kwargs()).labels == expected
    status, body = request_json("GET", f"{dep.url}/health", verify=str(certs.ca), retries=0)
    assert status == 401 and "mlflow.relay_token" in body["message"]
    for pid in [int(dep.ids["front_pid"])] + serving_servers(p.name):
        for part in ("cmdline", "environ"):
            assert TOKEN.encode() not in Path(f"/proc/{pid}/{part}").read_bytes(), f"the token is in {pid}'s {part}"
    assert TOKEN not in p.metadata.read_text()
    p.write(**tls, relay_token="not-the-token")
    with pytest.raises(deploykit.ScoringError, match=r"/invocations answered 401: this endpoint requires "
                                                     r"Authorization: Bearer <token> \(mlflow.relay_token"):
        deploykit.score(p.name, bank_rows, **p.kwargs())
    deploykit.delete(p.name, **p.kwargs())
    assert not serving.alive(int(dep.ids["front_pid"])) and serving_servers(p.name) == []
