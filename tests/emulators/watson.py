"""HTTPS emulator of the IBM Watson Machine Learning REST API, faithful enough for the real ibm-watsonx-ai client."""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import re
import shutil
import signal
import socket
import ssl
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.emulators.watson_functions import FunctionError, FunctionRuntime, Loading

log = logging.getLogger(__name__)

DEFAULT_SPACE_NAME = "deploykit-test"
SOFTWARE_SPECS = ("runtime-24.1-py3.11", "runtime-25.1-py3.12")
HARDWARE_SPECS = ("XXS", "XS", "S", "M", "L", "XL")
IN_PROGRESS = {"initializing", "updating"}


class LoggedRequest(NamedTuple):
    method: str
    path: str
    query: dict[str, str]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise ApiError(400, "invalid_request_body", f"Request body is not valid JSON: {exc}") from exc


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"


class ApiError(Exception):
    """Raised by a route to answer with a Watson-style error document."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Snapshot:
    """Model content frozen at one revision (or the mutable latest content)."""

    doc: dict[str, Any]
    archive: bytes | None = None
    pickle_bytes: bytes | None = None


@dataclass
class StoredModel:
    latest: Snapshot
    revisions: dict[str, Snapshot] = field(default_factory=dict)


@dataclass
class StoredDeployment:
    doc: dict[str, Any]
    polls_left: int = 0
    outcome: str = "ready"
    failure_message: str = ""
    previous_asset: dict[str, Any] | None = None
    #: a deployed function being installed and imported in its own process
    loading: Loading | None = None


@dataclass
class StoredPackageExtension:
    doc: dict[str, Any]
    filename: str = ""
    content: bytes | None = None
    complete: bool = False


@dataclass
class StoredJob:
    doc: dict[str, Any]
    step: int = 0


@dataclass
class FaultRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    body: Any


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _error_doc(status: int, code: str, message: str) -> bytes:
    return json.dumps({
        "trace": uuid.uuid4().hex,
        "errors": [{"code": code, "message": message}],
        "status_code": status,
    }).encode()


def _json(status: int, doc: Any) -> Response:
    return Response(status, json.dumps(doc).encode())


def _to_plain(value: Any) -> Any:
    """Turn numpy scalars and arrays into JSON-native values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return value


def _tag_filter(query: str | None) -> Callable[[list[str]], bool]:
    """The ``tag.value`` filter of a list call: one tag, or tags joined by ``,``/`` or `` (any
    matches) or `` and `` (all must), as IBM's API documents for ``GET /ml/v4/models`` and
    ``/ml/v4/deployments``."""
    if not query:
        return lambda tags: True
    if " and " in query:
        every = [t.strip() for t in query.split(" and ") if t.strip()]
        return lambda tags: all(t in tags for t in every)
    anyof = [t.strip() for t in re.split(r",| or ", query) if t.strip()]
    return lambda tags: any(t in tags for t in anyof)


def _apply_json_patch(doc: dict[str, Any], ops: Any) -> list[str]:
    """Apply RFC 6902 add/replace/remove ops in place; return the top-level keys touched."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise ApiError(400, "invalid_patch", "The request body must be a JSON Patch array.")
    touched = []
    for op in ops:
        kind, path = op.get("op"), op.get("path")
        if kind not in {"add", "replace", "remove"} or not isinstance(path, str) or not path.startswith("/"):
            raise ApiError(400, "invalid_patch", f"Unsupported patch operation: {op}")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
        parent = doc
        for part in parts[:-1]:
            parent = parent.setdefault(part, {})
        if kind == "remove":
            parent.pop(parts[-1], None)
        else:
            if "value" not in op:
                raise ApiError(400, "invalid_patch", f"Patch operation without value: {op}")
            parent[parts[-1]] = op["value"]
        touched.append(parts[0])
    return touched


def _extract_pickle(archive: bytes) -> bytes:
    """Find the serialized estimator inside the tar.gz the client uploads."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            for member in members:
                if member.name.endswith((".pkl", ".pickle", ".joblib")):
                    return tar.extractfile(member).read()  # type: ignore[union-attr]
    except tarfile.TarError as exc:
        raise ApiError(400, "invalid_content", f"Model content is not a valid tar.gz archive: {exc}") from exc
    raise ApiError(400, "invalid_content", "No .pkl/.pickle/.joblib file found in the model archive.")


def _make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """Create a throwaway CA and a server certificate for 127.0.0.1/localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deploykit Watson emulator test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_path, cert_path, key_path


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive connections of clients that are never closed must not block stop().
    block_on_close = False

    def __init__(self, address: tuple[str, int], emulator: WatsonEmulator, context: ssl.SSLContext) -> None:
        self.emulator = emulator
        self.context = context
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a stalled client cannot block accept().
        request.settimeout(60)
        # headers and body go out in two sends; without NODELAY each response waits ~40 ms on delayed ACK
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        with self.connections_lock:
            self.connections.add(tls)
        try:
            super().finish_request(tls, client_address)
        finally:
            with self.connections_lock:
                self.connections.discard(tls)
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self.connections_lock:
            for conn in list(self.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "WatsonMLEmulator/1.0"
    server: _TLSServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _dispatch_command(self) -> None:
        self._dispatch(self.command)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch_command

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        emulator = self.server.emulator
        try:
            body = self._read_body()
        except ValueError:
            self._send(Response(400, _error_doc(400, "bad_request", "Malformed request body framing")))
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        # The client builds paging URLs as base + "/" + href, so "//v2/..." must route like "/v2/...".
        path = re.sub(r"/{2,}", "/", parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request(method, path, query, {k.lower(): v for k, v in self.headers.items()}, body)
        try:
            response = emulator._handle(request)
        except Exception as exc:
            log.exception("emulator handler failed for %s %s", method, path)
            response = Response(500, _error_doc(500, "internal_error", f"{type(exc).__name__}: {exc}"))
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.status != 204:
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.status != 204 and response.body:
            self.wfile.write(response.body)


class WatsonEmulator:
    """In-process Watson Machine Learning service for CPD (username + api_key) and Cloud (IAM api key) clients.

    Knobs, all safe to change while serving: `token_ttl` (seconds, for tokens issued afterwards);
    `ready_after_polls` (a created or updated deployment answers its in-progress state to that many
    GETs of /ml/v4/deployments/{id}, then its outcome); `deployment_outcome`/`deployment_failure_message`
    or `fail_next_deployment()` (one-shot); `fail_next()`; `expire_tokens()`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "admin",
        api_key: str = "test-api-key",
        password: str = "test-password",
        token_ttl: int = 3600,
        ready_after_polls: int = 0,
        cpd_version: str = "5.1.0",
        space_name: str = DEFAULT_SPACE_NAME,
    ) -> None:
        self.host, self.port = host, port
        self.username, self.api_key, self.password = username, api_key, password
        self.cpd_version = cpd_version
        self.space_name = space_name
        self._defaults = {"token_ttl": token_ttl, "ready_after_polls": ready_after_polls}
        # Stable across reset() so a credentials.yaml written once stays valid for a whole session.
        self.space_id = str(uuid.uuid4())
        self.url = ""
        self.ca_path = ""
        self._lock = threading.RLock()
        self._cache_lock = threading.Lock()
        self._secret = uuid.uuid4().bytes
        self._issued: set[str] = set()
        self._expired: set[str] = set()
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._runtime: FunctionRuntime | None = None
        self._tmpdir: str | None = None
        self.software_specs = {name: str(uuid.uuid4()) for name in SOFTWARE_SPECS}
        self.hardware_specs = {name: str(uuid.uuid4()) for name in HARDWARE_SPECS}
        self._routes: list[tuple[str, re.Pattern[str], str, bool]] = [
            (m, re.compile(f"^{p}$"), name, auth) for m, p, name, auth in [
                ("GET", r"/ml/wml_services/v2/version", "_version", False),
                ("POST", r"/icp4d-api/v1/authorize", "_cpd_authorize", False),
                ("POST", r"/idprovider/v1/auth/identitytoken", "_cpd_identity_token", False),
                ("GET", r"/v1/preauth/validateAuth", "_cpd_validate_auth", False),
                ("POST", r"/identity/token", "_iam_token", False),
                ("GET", r"/v2/spaces", "_list_spaces", True),
                ("GET", r"/v2/spaces/(?P<id>[^/]+)", "_get_space", True),
                ("GET", r"/v2/software_specifications", "_list_sw_specs", True),
                ("GET", r"/v2/software_specifications/(?P<id>[^/]+)", "_get_sw_spec", True),
                ("GET", r"/v2/hardware_specifications", "_list_hw_specs", True),
                ("GET", r"/v2/hardware_specifications/(?P<id>[^/]+)", "_get_hw_spec", True),
                ("GET", r"/ml/v4/instances/(?P<id>[^/]+)", "_get_instance", True),
                ("POST", r"/ml/v4/models", "_create_model", True),
                ("GET", r"/ml/v4/models", "_list_models", True),
                ("GET", r"/ml/v4/models/(?P<id>[^/]+)", "_get_model", True),
                ("PATCH", r"/ml/v4/models/(?P<id>[^/]+)", "_patch_model", True),
                ("DELETE", r"/ml/v4/models/(?P<id>[^/]+)", "_delete_model", True),
                ("PUT", r"/ml/v4/models/(?P<id>[^/]+)/content", "_put_model_content", True),
                ("GET", r"/ml/v4/models/(?P<id>[^/]+)/download", "_download_model", True),
                ("POST", r"/ml/v4/models/(?P<id>[^/]+)/revisions", "_create_revision", True),
                ("GET", r"/ml/v4/models/(?P<id>[^/]+)/revisions", "_list_revisions", True),
                ("GET", r"/v2/assets/(?P<id>[^/]+)", "_get_asset", True),
                ("DELETE", r"/v2/assets/(?P<id>[^/]+)", "_delete_asset", True),
                ("POST", r"/ml/v4/functions", "_create_function", True),
                ("GET", r"/ml/v4/functions", "_list_functions", True),
                ("GET", r"/ml/v4/functions/(?P<id>[^/]+)", "_get_function", True),
                ("PATCH", r"/ml/v4/functions/(?P<id>[^/]+)", "_patch_function", True),
                ("DELETE", r"/ml/v4/functions/(?P<id>[^/]+)", "_delete_function", True),
                ("PUT", r"/ml/v4/functions/(?P<id>[^/]+)/code", "_put_function_code", True),
                ("POST", r"/ml/v4/functions/(?P<id>[^/]+)/revisions", "_create_function_revision", True),
                ("GET", r"/ml/v4/functions/(?P<id>[^/]+)/revisions", "_list_function_revisions", True),
                ("POST", r"/v2/software_specifications", "_create_sw_spec", True),
                ("DELETE", r"/v2/software_specifications/(?P<id>[^/]+)", "_delete_sw_spec", True),
                ("PUT", r"/v2/software_specifications/(?P<id>[^/]+)/package_extensions/(?P<ext>[^/]+)",
                 "_add_sw_spec_extension", True),
                ("DELETE", r"/v2/software_specifications/(?P<id>[^/]+)/package_extensions/(?P<ext>[^/]+)",
                 "_remove_sw_spec_extension", True),
                ("POST", r"/v2/package_extensions", "_create_pkg_extn", True),
                ("GET", r"/v2/package_extensions", "_list_pkg_extns", True),
                ("GET", r"/v2/package_extensions/(?P<id>[^/]+)", "_get_pkg_extn", True),
                ("DELETE", r"/v2/package_extensions/(?P<id>[^/]+)", "_delete_pkg_extn", True),
                ("POST", r"/v2/package_extensions/(?P<id>[^/]+)/upload_complete", "_pkg_extn_uploaded", True),
                # a pre-signed upload URL: the client sends no Authorization header to it
                ("PUT", r"/v2/asset_files/package_extension/(?P<file>[^/]+)", "_upload_pkg_extn", False),
                ("POST", r"/ml/v4/deployments", "_create_deployment", True),
                ("GET", r"/ml/v4/deployments", "_list_deployments", True),
                ("GET", r"/ml/v4/deployments/(?P<id>[^/]+)", "_get_deployment", True),
                ("PATCH", r"/ml/v4/deployments/(?P<id>[^/]+)", "_patch_deployment", True),
                ("DELETE", r"/ml/v4/deployments/(?P<id>[^/]+)", "_delete_deployment", True),
                ("POST", r"/ml/v4/deployments/(?P<id>[^/]+)/predictions", "_score", True),
                ("POST", r"/ml/v4/deployment_jobs", "_create_job", True),
                ("GET", r"/ml/v4/deployment_jobs", "_list_jobs", True),
                ("GET", r"/ml/v4/deployment_jobs/(?P<id>[^/]+)", "_get_job", True),
                ("DELETE", r"/ml/v4/deployment_jobs/(?P<id>[^/]+)", "_delete_job", True),
            ]
        ]
        self.reset()

    # ----- lifecycle -----

    def start(self) -> WatsonEmulator:
        self._tmpdir = tempfile.mkdtemp(prefix="watson-emulator-")
        ca_path, cert_path, key_path = _make_certificates(Path(self._tmpdir))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self._server = _TLSServer((self.host, self.port), self, context)
        self.port = self._server.server_address[1]
        self.url = f"https://{self.host}:{self.port}"
        self.ca_path = str(ca_path)
        self._runtime = FunctionRuntime()
        self._thread = threading.Thread(target=self._server.serve_forever, name="watson-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> WatsonEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget models, deployments, jobs, extra spaces, faults and the request log; restore the knobs.

        Issued tokens stay valid, so clients built before a reset keep working.
        """
        with self._lock:
            self._models: dict[str, StoredModel] = {}
            self._functions: dict[str, StoredModel] = {}
            self._package_extensions: dict[str, StoredPackageExtension] = {}
            self._custom_specs: dict[str, dict[str, Any]] = {}
            self._deployments: dict[str, StoredDeployment] = {}
            self._jobs: dict[str, StoredJob] = {}
            self._spaces: dict[str, dict[str, Any]] = {}
            self._requests: list[LoggedRequest] = []
            self._faults: list[FaultRule] = []
            self.token_ttl: int = self._defaults["token_ttl"]
            self.ready_after_polls: int = self._defaults["ready_after_polls"]
            self.deployment_outcome = "ready"
            self.deployment_failure_message = "Deployment failed: injected by the emulator"
            self.add_space(self.space_name, space_id=self.space_id)
        with self._cache_lock:
            self._loaded: dict[tuple[str, str], Any] = {}
        if self._runtime is not None:
            self._runtime.stop()

    # ----- knobs and inspection -----

    def credentials(self, mode: str = "cpd") -> dict[str, str]:
        """Keyword arguments for ibm_watsonx_ai.Credentials that work against this emulator."""
        if mode == "cpd":
            return {"url": self.url, "username": self.username, "api_key": self.api_key,
                    "version": ".".join(self.cpd_version.split(".")[:2]), "verify": self.ca_path}
        if mode == "cloud":
            return {"url": self.url, "api_key": self.api_key, "platform_url": self.url,
                    "auth_url": f"{self.url}/identity/token", "verify": self.ca_path}
        raise ValueError(f"unknown mode {mode!r}; expected 'cpd' or 'cloud'")

    def add_space(self, name: str, space_id: str | None = None) -> str:
        space_id = space_id or str(uuid.uuid4())
        created = _now()
        with self._lock:
            self._spaces[space_id] = {
                "metadata": {"id": space_id, "url": f"/v2/spaces/{space_id}", "created_at": created,
                             "updated_at": created, "creator_id": self.username},
                "entity": {"name": name, "description": "", "type": "cpd", "stage": {"production": False},
                           "status": {"state": "active"}, "scope": {"bss_account_id": "emulator"},
                           "compute": [{"name": "emulator-wml", "guid": "00000000-0000-0000-0000-000000000001",
                                        "type": "machine_learning", "crn": "crn:v1:emulator"}]},
            }
        return space_id

    def fail_next(self, method: str, path_regex: str, status: int, times: int = 1, body: Any = None) -> None:
        """Answer the next `times` requests whose method and path match with `status` (method "*" = any)."""
        with self._lock:
            self._faults.append(FaultRule(method.upper(), re.compile(path_regex), status, times, body))

    def fail_next_deployment(self, message: str) -> None:
        """Make the next created or asset-updated deployment fail with `message`."""
        with self._lock:
            self.deployment_outcome = "failed"
            self.deployment_failure_message = message

    def expire_tokens(self) -> None:
        """Treat every token issued so far as expired, as if the clock jumped past their exp."""
        with self._lock:
            self._expired |= self._issued
            self._issued = set()

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def models(self) -> dict[str, StoredModel]:
        with self._lock:
            return dict(self._models)

    @property
    def functions(self) -> dict[str, StoredModel]:
        """Stored Python functions (``latest.archive`` is the gz'd code), by id."""
        with self._lock:
            return dict(self._functions)

    @property
    def package_extensions(self) -> dict[str, StoredPackageExtension]:
        with self._lock:
            return dict(self._package_extensions)

    @property
    def custom_software_specs(self) -> dict[str, dict[str, Any]]:
        """Software specifications stored in the space (derived from a base one), by id."""
        with self._lock:
            return dict(self._custom_specs)

    def stored_documents(self) -> list[dict[str, Any]]:
        """Every metadata document the emulator holds (assets, revisions, specs, extensions, deployments,
        jobs): what a search for a leaked value must cover."""
        with self._lock:
            docs = [s.doc for m in [*self._models.values(), *self._functions.values()]
                    for s in [m.latest, *m.revisions.values()]]
            docs += [e.doc for e in self._package_extensions.values()] + list(self._custom_specs.values())
            docs += [d.doc for d in self._deployments.values()] + [j.doc for j in self._jobs.values()]
            return copy.deepcopy(docs)

    @property
    def deployments(self) -> dict[str, StoredDeployment]:
        with self._lock:
            return dict(self._deployments)

    @property
    def jobs(self) -> dict[str, StoredJob]:
        with self._lock:
            return dict(self._jobs)

    @property
    def spaces(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._spaces)

    def calls(self, method: str, path_regex: str) -> list[LoggedRequest]:
        """Logged requests matching a method and a path regex, in arrival order."""
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method.upper() and pattern.search(r.path)]

    # ----- dispatch -----

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self._requests.append(LoggedRequest(request.method, request.path, dict(request.query)))
            for rule in self._faults:
                if rule.times > 0 and rule.method in ("*", request.method) and rule.pattern.search(request.path):
                    rule.times -= 1
                    return self._fault_response(rule, request.path)
        allowed = False
        for method, pattern, name, needs_auth in self._routes:
            match = pattern.match(request.path)
            if not match:
                continue
            if method != request.method:
                allowed = True
                continue
            request.params = match.groupdict()
            try:
                if needs_auth:
                    self._authenticate(request)
                return getattr(self, name)(request)
            except ApiError as exc:
                return Response(exc.status, _error_doc(exc.status, exc.code, exc.message))
        if allowed:
            return Response(405, _error_doc(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}"))
        return Response(404, _error_doc(404, "not_found", f"No route for {request.method} {request.path}"))

    @staticmethod
    def _fault_response(rule: FaultRule, path: str) -> Response:
        if rule.body is None:
            return Response(rule.status, _error_doc(rule.status, "injected_fault",
                                                    f"Injected fault {rule.status} for {path}"))
        if isinstance(rule.body, (bytes, str)):
            raw = rule.body.encode() if isinstance(rule.body, str) else rule.body
            return Response(rule.status, raw, "text/plain")
        return _json(rule.status, rule.body)

    # ----- tokens -----

    def _issue_token(self, subject: str, realm: str) -> tuple[str, int]:
        now = int(time.time())
        jti = uuid.uuid4().hex
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "watson-emulator"}).encode())
        payload = _b64url(json.dumps({
            "sub": subject, "username": subject, "iam_id": f"IBMid-{subject}", "realm": realm,
            "iss": "watson-emulator", "iat": now, "exp": now + int(self.token_ttl), "jti": jti,
        }).encode())
        signature = _b64url(hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        with self._lock:
            self._issued.add(jti)
        return f"{header}.{payload}.{signature}", now + int(self.token_ttl)

    def _authenticate(self, request: Request) -> None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "zenapikey":
            try:
                user, _, key = base64.b64decode(credential + "==").decode(errors="replace").partition(":")
            except ValueError:
                user, key = "", ""
            if user == self.username and key == self.api_key:
                return
            raise ApiError(401, "authentication_failed", "Invalid ZenApiKey credentials.")
        if scheme.lower() != "bearer" or not credential:
            raise ApiError(401, "authorization_rejected", "Authorization header with a Bearer token is required.")
        try:
            header, payload, signature = credential.split(".")
            expected = _b64url(hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
            claims = json.loads(_b64url_decode(payload))
        except ValueError:
            raise ApiError(401, "authentication_failed", "Failed to authenticate the token: malformed JWT.") from None
        if not hmac.compare_digest(signature, expected):
            raise ApiError(401, "authentication_failed", "Failed to authenticate the token: unknown signature.")
        with self._lock:
            jti = claims.get("jti")
            if jti in self._expired or claims.get("exp", 0) <= time.time():
                raise ApiError(401, "token_expired", "The provided token has expired.")
            if jti not in self._issued:
                raise ApiError(401, "authentication_failed", "Failed to authenticate the token: unknown token.")

    def _version(self, request: Request) -> Response:
        return _json(200, {"version": self.cpd_version, "build": "emulator"})

    def _cpd_authorize(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or "username" not in body:
            return _json(400, {"_messageCode_": "400", "message": "username and api_key or password are required"})
        good_secret = ("api_key" in body and body["api_key"] == self.api_key) or \
                      ("password" in body and body["password"] == self.password)
        if body["username"] != self.username or not good_secret:
            return _json(401, {"_messageCode_": "401", "message": "Invalid username or password"})
        token, _ = self._issue_token(self.username, "cpd")
        return _json(200, {"_messageCode_": "200", "message": "Success", "token": token})

    def _cpd_identity_token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
        if form.get("username") != self.username or form.get("password") != self.password:
            return _json(401, {"error": "invalid_grant", "error_description": "Invalid username or password"})
        token, _ = self._issue_token(self.username, "iam-cpd")
        return _json(200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl})

    def _cpd_validate_auth(self, request: Request) -> Response:
        iam_token = request.headers.get("iam-token", "")
        try:
            self._authenticate(Request("GET", "", {}, {"authorization": f"Bearer {iam_token}"}, b""))
        except ApiError as exc:
            return _json(401, {"_messageCode_": "401", "message": exc.message})
        token, _ = self._issue_token(request.headers.get("username", self.username), "cpd")
        return _json(200, {"accessToken": token})

    def _iam_token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
        if form.get("grant_type") != "urn:ibm:params:oauth:grant-type:apikey":
            return _json(400, {"errorCode": "BXNIM0109E", "errorMessage": "Property missing or empty: grant_type",
                               "context": {"requestId": uuid.uuid4().hex}})
        if form.get("apikey") != self.api_key:
            return _json(400, {"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found.",
                               "context": {"requestId": uuid.uuid4().hex}})
        token, exp = self._issue_token("iam-user", "iam")
        return _json(200, {"access_token": token, "refresh_token": "not_supported", "token_type": "Bearer",
                           "expires_in": self.token_ttl, "expiration": exp, "scope": "ibm openid"})

    # ----- spaces, specs -----

    def _check_space(self, space_id: str | None, required: bool = True) -> str | None:
        if space_id is None:
            if required:
                raise ApiError(400, "missing_space_id", "Either space_id or project_id has to be provided.")
            return None
        with self._lock:
            if space_id not in self._spaces:
                raise ApiError(404, "space_not_found", f"Space with id '{space_id}' does not exist.")
        return space_id

    @staticmethod
    def _paged(request: Request, items: list[dict[str, Any]], base: str, key: str = "resources") -> Response:
        """Spaces-style paging: an opaque `start` offset and a `next.href` while more remain."""
        limit = max(1, min(int(request.query.get("limit", 100) or 100), 1000))
        start = int(request.query.get("start", 0) or 0)
        page = items[start:start + limit]
        doc: dict[str, Any] = {"total_count": len(items), "limit": limit,
                               "first": {"href": f"{base}?{urlencode({'limit': limit})}"}, key: page}
        if start + limit < len(items):
            query = {k: v for k, v in request.query.items() if k != "start"} | {"start": start + limit}
            doc["next"] = {"href": f"{base}?{urlencode(query)}"}
        return _json(200, doc)

    def _list_spaces(self, request: Request) -> Response:
        with self._lock:
            items = copy.deepcopy(list(self._spaces.values()))
        return self._paged(request, items, "/v2/spaces")

    def _get_space(self, request: Request) -> Response:
        with self._lock:
            space = self._spaces.get(request.params["id"])
            if space is None:
                raise ApiError(404, "does_not_exist", f"Space with id '{request.params['id']}' does not exist.")
            return _json(200, space)

    def _sw_spec_doc(self, name: str) -> dict[str, Any]:
        python = name.rsplit("-py", 1)[-1]
        spec_id = self.software_specs[name]
        return {
            "metadata": {"name": name, "asset_id": spec_id, "asset_type": "software_specification",
                         "href": f"/v2/software_specifications/{spec_id}", "created_at": "2025-01-01T00:00:00.000Z",
                         "description": f"Emulated {name}", "life_cycle": {"supported": {}}},
            "entity": {"software_specification": {
                "type": "base", "display_name": name, "package_extensions": [],
                "software_configuration": {"platform": {"name": "python", "version": python}}}},
        }

    def _list_sw_specs(self, request: Request) -> Response:
        names = [n for n in self.software_specs if request.query.get("name") in (None, n)]
        docs = [self._sw_spec_doc(n) for n in names]
        with self._lock:
            docs += [copy.deepcopy(d) for d in self._custom_specs.values()
                     if request.query.get("name") in (None, d["metadata"]["name"])
                     and d["metadata"]["space_id"] == request.query.get("space_id", d["metadata"]["space_id"])]
        return _json(200, {"total_results": len(docs), "resources": docs})

    def _get_sw_spec(self, request: Request) -> Response:
        for name, spec_id in self.software_specs.items():
            if spec_id == request.params["id"]:
                return _json(200, self._sw_spec_doc(name))
        with self._lock:
            return _json(200, self._custom_spec(request.params["id"]))

    def _custom_spec(self, spec_id: str) -> dict[str, Any]:
        doc = self._custom_specs.get(spec_id)
        if doc is None:
            if spec_id in self.software_specs.values():
                raise ApiError(400, "base_software_specification",
                               f"Software specification '{spec_id}' is a base specification and cannot be changed.")
            raise ApiError(404, "does_not_exist", f"Software specification '{spec_id}' does not exist.")
        return doc

    def _spec_name(self, spec: dict[str, Any]) -> str | None:
        """The name of a base or custom software specification given as ``{id}`` or ``{name}``."""
        for name, spec_id in self.software_specs.items():
            if spec_id == spec.get("id") or name == spec.get("name"):
                return name
        for spec_id, doc in self._custom_specs.items():
            if spec_id == spec.get("id") or doc["metadata"]["name"] == spec.get("name"):
                return str(doc["metadata"]["name"])
        return None

    def _create_sw_spec(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not body.get("name"):
            raise ApiError(400, "missing_field", "Field 'name' is required.")
        space_id = self._check_space(request.query.get("space_id") or body.get("space_id"))
        base = body.get("base_software_specification") or {}
        base_id = base.get("guid") or base.get("id")
        base_name = next((n for n, i in self.software_specs.items() if i == base_id or n == base.get("name")), None)
        if base_name is None:
            raise ApiError(400, "invalid_base_software_specification",
                           f"Base software specification {base} does not exist; derive from a base specification.")
        spec_id, created = str(uuid.uuid4()), _now()
        with self._lock:
            if any(d["metadata"]["name"] == body["name"] and d["metadata"]["space_id"] == space_id
                   for d in self._custom_specs.values()):
                raise ApiError(409, "software_specification_exists",
                               f"A software specification named '{body['name']}' already exists in the space.")
            extensions = [self._extension_entry(e.get("guid") or e.get("id") or (e.get("metadata") or {}).get("asset_id"))
                          for e in body.get("package_extensions") or []]
            doc = {
                "metadata": {"name": body["name"], "asset_id": spec_id, "asset_type": "software_specification",
                             "href": f"/v2/software_specifications/{spec_id}", "created_at": created,
                             "description": body.get("description", ""), "space_id": space_id},
                "entity": {"software_specification": {
                    "type": "derived", "display_name": body["name"], "package_extensions": extensions,
                    "base_software_specification": {"guid": self.software_specs[base_name], "name": base_name},
                    "software_configuration": copy.deepcopy(self._sw_spec_doc(base_name)["entity"][
                        "software_specification"]["software_configuration"])}},
            }
            self._custom_specs[spec_id] = doc
            return _json(201, doc)

    def _extension_entry(self, ext_id: Any) -> dict[str, Any]:
        ext = self._package_extensions.get(str(ext_id))
        if ext is None:
            raise ApiError(404, "package_extension_not_found", f"Package extension '{ext_id}' does not exist.")
        if not ext.complete:
            raise ApiError(400, "package_extension_not_uploaded",
                           f"Package extension '{ext_id}' has no uploaded content yet; upload it and mark it complete.")
        return {"metadata": {k: ext.doc["metadata"][k] for k in ("asset_id", "name", "asset_type")},
                "entity": copy.deepcopy(ext.doc["entity"])}

    def _delete_sw_spec(self, request: Request) -> Response:
        with self._lock:
            self._custom_spec(request.params["id"])
            del self._custom_specs[request.params["id"]]
        return Response(204)

    def _add_sw_spec_extension(self, request: Request) -> Response:
        with self._lock:
            spec = self._custom_spec(request.params["id"])["entity"]["software_specification"]
            entry = self._extension_entry(request.params["ext"])
            if all(e["metadata"]["asset_id"] != request.params["ext"] for e in spec["package_extensions"]):
                spec["package_extensions"].append(entry)
        return Response(204)

    def _remove_sw_spec_extension(self, request: Request) -> Response:
        with self._lock:
            spec = self._custom_spec(request.params["id"])["entity"]["software_specification"]
            kept = [e for e in spec["package_extensions"] if e["metadata"]["asset_id"] != request.params["ext"]]
            if len(kept) == len(spec["package_extensions"]):
                raise ApiError(404, "package_extension_not_found",
                               f"Package extension '{request.params['ext']}' is not part of this specification.")
            spec["package_extensions"] = kept
        return Response(204)

    # ----- package extensions -----

    @staticmethod
    def _realm(request: Request) -> str:
        """``iam`` for an IBM Cloud token, ``cpd`` otherwise (the request is authenticated already)."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return "cpd"
        try:
            return str(json.loads(_b64url_decode(credential.split(".")[1])).get("realm", "cpd"))
        except (ValueError, IndexError):
            return "cpd"

    def _create_pkg_extn(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not body.get("name") or not body.get("type"):
            raise ApiError(400, "missing_field", "Fields 'name' and 'type' are required.")
        if body["type"] not in ("pip_zip", "conda_yml"):
            raise ApiError(400, "invalid_type", f"Package extension type '{body['type']}' is not one of pip_zip, conda_yml.")
        space_id = self._check_space(request.query.get("space_id") or body.get("space_id"))
        ext_id, created = str(uuid.uuid4()), _now()
        suffix = ".zip" if body["type"] == "pip_zip" else ".yml"
        upload = f"/v2/asset_files/package_extension/{ext_id}{suffix}?space_id={space_id}"
        if self._realm(request) == "iam":  # IBM Cloud answers a pre-signed object-storage URL
            upload = f"{self.url}{upload}&signature={hmac.new(self._secret, ext_id.encode(), hashlib.sha256).hexdigest()}"
        doc = {"metadata": {"asset_id": ext_id, "name": body["name"], "description": body.get("description", ""),
                            "asset_type": "package_extension", "space_id": space_id, "created_at": created},
               "entity": {"package_extension": {"type": body["type"], "href": upload,
                                                "object_key": f"package_extension/{ext_id}{suffix}",
                                                "status": "pending"}}}
        with self._lock:
            self._package_extensions[ext_id] = StoredPackageExtension(doc)
        return _json(201, doc)

    def _pkg_extn(self, ext_id: str) -> StoredPackageExtension:
        ext = self._package_extensions.get(ext_id)
        if ext is None:
            raise ApiError(404, "package_extension_not_found", f"Package extension '{ext_id}' does not exist.")
        return ext

    def _upload_pkg_extn(self, request: Request) -> Response:
        ext_id = request.params["file"].rsplit(".", 1)[0]
        content_type = request.headers.get("content-type", "")
        filename, content = f"{ext_id}.zip", request.body
        if content_type.startswith("multipart/form-data"):
            import email.parser
            import email.policy

            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
            part = next((p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "file"),
                        None)
            if part is None:
                raise ApiError(400, "missing_file", "The multipart upload has no 'file' part.")
            filename = part.get_filename() or filename
            content = part.get_payload(decode=True) or b""
        with self._lock:
            ext = self._pkg_extn(ext_id)
            if self._realm_of_upload(ext) == "iam" and request.query.get("signature") != hmac.new(
                    self._secret, ext_id.encode(), hashlib.sha256).hexdigest():
                raise ApiError(403, "signature_mismatch", "The pre-signed URL's signature does not match.")
            if not content:
                raise ApiError(400, "empty_content", "The uploaded package extension is empty.")
            ext.filename, ext.content = Path(filename).name, content
            ext.doc["entity"]["package_extension"]["status"] = "uploaded"
        return _json(201, {"status": "uploaded"})

    @staticmethod
    def _realm_of_upload(ext: StoredPackageExtension) -> str:
        return "iam" if "signature=" in ext.doc["entity"]["package_extension"]["href"] else "cpd"

    def _pkg_extn_uploaded(self, request: Request) -> Response:
        with self._lock:
            ext = self._pkg_extn(request.params["id"])
            if ext.content is None:
                raise ApiError(400, "upload_not_found", "No content was uploaded for this package extension.")
            ext.complete = True
            ext.doc["entity"]["package_extension"]["status"] = "completed"
        return Response(204)

    def _get_pkg_extn(self, request: Request) -> Response:
        with self._lock:
            return _json(200, self._pkg_extn(request.params["id"]).doc)

    def _list_pkg_extns(self, request: Request) -> Response:
        space_id = self._check_space(request.query.get("space_id"))
        with self._lock:
            docs = [copy.deepcopy(e.doc) for e in self._package_extensions.values()
                    if e.doc["metadata"]["space_id"] == space_id
                    and request.query.get("name") in (None, e.doc["metadata"]["name"])]
        return _json(200, {"total_results": len(docs), "resources": docs})

    def _delete_pkg_extn(self, request: Request) -> Response:
        with self._lock:
            self._pkg_extn(request.params["id"])
            del self._package_extensions[request.params["id"]]
        if self._runtime is not None:
            self._runtime.forget_extension(request.params["id"])
        return Response(204)

    def _hw_spec_doc(self, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "asset_id": self.hardware_specs[name], "asset_type": "hardware_specification"},
                "entity": {"hardware_specification": {"nodes": {"cpu": {"units": "1"}, "mem": {"size": "4Gi"}}}}}

    def _list_hw_specs(self, request: Request) -> Response:
        names = [n for n in self.hardware_specs if request.query.get("name") in (None, n)]
        return _json(200, {"total_results": len(names), "resources": [self._hw_spec_doc(n) for n in names]})

    def _get_hw_spec(self, request: Request) -> Response:
        for name, spec_id in self.hardware_specs.items():
            if spec_id == request.params["id"]:
                return _json(200, self._hw_spec_doc(name))
        raise ApiError(404, "does_not_exist", f"Hardware specification '{request.params['id']}' does not exist.")

    def _get_instance(self, request: Request) -> Response:
        return _json(200, {"metadata": {"id": request.params["id"]},
                           "entity": {"plan": {"name": "v2-standard"}, "status": "active"}})

    # ----- models -----

    def _model(self, model_id: str) -> StoredModel:
        model = self._models.get(model_id)
        if model is None:
            raise ApiError(404, "model_not_found", f"Model with id '{model_id}' does not exist.")
        return model

    def _snapshot(self, model_id: str, rev: str | None) -> Snapshot:
        model = self._model(model_id)
        if rev is None:
            return model.latest
        if rev not in model.revisions:
            raise ApiError(404, "revision_not_found", f"Revision '{rev}' of model '{model_id}' does not exist.")
        return model.revisions[rev]

    def _create_model(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not body.get("name") or not body.get("type"):
            raise ApiError(400, "missing_field", "Fields 'name' and 'type' are required.")
        space_id = self._check_space(body.get("space_id") or request.query.get("space_id"))
        spec = body.get("software_spec") or {}
        spec_name = next((n for n, i in self.software_specs.items() if i == spec.get("id") or n == spec.get("name")), None)
        if spec and spec_name is None:
            raise ApiError(400, "invalid_software_spec", f"Software specification {spec} does not exist.")
        model_id, created = str(uuid.uuid4()), _now()
        entity = {k: v for k, v in body.items() if k not in {"name", "description", "tags", "space_id", "project_id"}}
        if spec_name:
            entity["software_spec"] = {"id": self.software_specs[spec_name], "name": spec_name}
        doc = {
            "metadata": {"id": model_id, "name": body["name"], "description": body.get("description", ""),
                         "tags": body.get("tags", []), "space_id": space_id, "created_at": created,
                         "modified_at": created, "owner": self.username},
            "entity": entity,
        }
        with self._lock:
            self._models[model_id] = StoredModel(Snapshot(doc))
        return _json(201, doc)

    def _list_models(self, request: Request) -> Response:
        space_id = self._check_space(request.query.get("space_id"))
        wanted = _tag_filter(request.query.get("tag.value"))
        with self._lock:
            items = [copy.deepcopy(m.latest.doc) for m in self._models.values()
                     if m.latest.doc["metadata"]["space_id"] == space_id
                     and wanted(m.latest.doc["metadata"].get("tags") or [])]
        return _json(200, {"resources": items, "total_count": len(items), "limit": len(items),
                           "first": {"href": "/ml/v4/models"}})

    def _get_model(self, request: Request) -> Response:
        with self._lock:
            return _json(200, self._snapshot(request.params["id"], request.query.get("rev")).doc)

    def _patch_model(self, request: Request) -> Response:
        ops = request.json()
        with self._lock:
            model = self._model(request.params["id"])
            doc = copy.deepcopy(model.latest.doc)
            metadata_ops, entity_ops = [], []
            for op in ops if isinstance(ops, list) else [ops]:
                top = str(op.get("path", "")).lstrip("/").split("/")[0] if isinstance(op, dict) else ""
                (metadata_ops if top in {"name", "description", "tags"} else entity_ops).append(op)
            _apply_json_patch(doc["metadata"], metadata_ops)
            _apply_json_patch(doc["entity"], entity_ops)
            doc["metadata"]["modified_at"] = _now()
            model.latest.doc = doc
            return _json(200, doc)

    def _delete_model(self, request: Request) -> Response:
        with self._lock:
            if self._models.pop(request.params["id"], None) is None:
                raise ApiError(404, "asset_not_found", f"Asset with id '{request.params['id']}' does not exist.")
        with self._cache_lock:
            self._loaded = {k: v for k, v in self._loaded.items() if k[0] != request.params["id"]}
        return Response(204)

    def _put_model_content(self, request: Request) -> Response:
        if not request.body:
            raise ApiError(400, "missing_content", "The request body with the model content is empty.")
        pickle_bytes = _extract_pickle(request.body)
        model_id = request.params["id"]
        with self._lock:
            model = self._model(model_id)
            model.latest.archive, model.latest.pickle_bytes = request.body, pickle_bytes
            model.latest.doc["entity"]["content_import_state"] = "completed"
            model.latest.doc["metadata"]["modified_at"] = _now()
        with self._cache_lock:
            self._loaded.pop((model_id, ""), None)
        return _json(201, {"attachment_id": str(uuid.uuid4()), "content_format": request.query.get("content_format", "native"),
                           "persisted": True})

    def _download_model(self, request: Request) -> Response:
        with self._lock:
            snapshot = self._snapshot(request.params["id"], request.query.get("rev"))
            if snapshot.archive is None:
                raise ApiError(404, "content_not_found", "The model has no content.")
            return Response(200, snapshot.archive, "application/gzip")

    def _create_revision(self, request: Request) -> Response:
        body = request.json() or {}
        with self._lock:
            model = self._model(request.params["id"])
            rev = str(len(model.revisions) + 1)
            doc = copy.deepcopy(model.latest.doc)
            doc["metadata"]["rev"] = rev
            doc["metadata"]["commit_info"] = {"committed_at": _now(), "commit_message": body.get("commit_message", "")}
            model.revisions[rev] = Snapshot(doc, model.latest.archive, model.latest.pickle_bytes)
            return _json(201, doc)

    def _list_revisions(self, request: Request) -> Response:
        with self._lock:
            model = self._model(request.params["id"])
            items = [copy.deepcopy(s.doc) for s in model.revisions.values()]
        return _json(200, {"resources": items, "total_count": len(items), "limit": len(items),
                           "first": {"href": f"/ml/v4/models/{request.params['id']}/revisions"}})

    def _get_asset(self, request: Request) -> Response:
        with self._lock:
            kind = "wml_function" if request.params["id"] in self._functions else "wml_model"
            stored = self._functions[request.params["id"]] if kind == "wml_function" else self._model(request.params["id"])
            doc = stored.latest.doc
            meta = doc["metadata"]
            return _json(200, {
                "metadata": {"asset_id": meta["id"], "asset_type": kind, "name": meta["name"],
                             "space_id": meta["space_id"], "created_at": meta["created_at"],
                             "usage": {"last_updated_at": meta["modified_at"]}},
                "entity": {kind: copy.deepcopy(doc["entity"])},
                "href": f"/v2/assets/{meta['id']}?space_id={meta['space_id']}",
            })

    def _delete_asset(self, request: Request) -> Response:
        with self._lock:
            if request.params["id"] in self._functions:
                return self._delete_function(request)
        return self._delete_model(request)

    # ----- functions -----

    def _function(self, function_id: str) -> StoredModel:
        function = self._functions.get(function_id)
        if function is None:
            raise ApiError(404, "function_not_found", f"Function with id '{function_id}' does not exist.")
        return function

    def _function_snapshot(self, function_id: str, rev: str | None) -> Snapshot:
        function = self._function(function_id)
        if rev is None:
            return function.latest
        if rev not in function.revisions:
            raise ApiError(404, "revision_not_found", f"Revision '{rev}' of function '{function_id}' does not exist.")
        return function.revisions[rev]

    def _create_function(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not body.get("name"):
            raise ApiError(400, "missing_field", "Field 'name' is required.")
        space_id = self._check_space(body.get("space_id") or request.query.get("space_id"))
        spec = body.get("software_spec") or {}
        with self._lock:
            spec_name = self._spec_name(spec) if spec else None
            if spec and spec_name is None:
                raise ApiError(400, "invalid_software_spec", f"Software specification {spec} does not exist.")
            function_id, created = str(uuid.uuid4()), _now()
            entity = {k: v for k, v in body.items() if k not in {"name", "description", "tags", "space_id", "project_id"}}
            entity.setdefault("type", "python")
            if spec_name:
                entity["software_spec"] = {"id": spec.get("id") or self._spec_id(spec_name), "name": spec_name}
            doc = {"metadata": {"id": function_id, "name": body["name"], "description": body.get("description", ""),
                                "tags": body.get("tags", []), "space_id": space_id, "created_at": created,
                                "modified_at": created, "owner": self.username,
                                "href": f"/ml/v4/functions/{function_id}"},
                   "entity": entity}
            self._functions[function_id] = StoredModel(Snapshot(doc))
        return _json(201, doc)

    def _spec_id(self, name: str) -> str:
        if name in self.software_specs:
            return self.software_specs[name]
        return next(i for i, d in self._custom_specs.items() if d["metadata"]["name"] == name)

    def _list_functions(self, request: Request) -> Response:
        space_id = self._check_space(request.query.get("space_id"))
        wanted = _tag_filter(request.query.get("tag.value"))
        with self._lock:
            items = [copy.deepcopy(f.latest.doc) for f in self._functions.values()
                     if f.latest.doc["metadata"]["space_id"] == space_id
                     and wanted(f.latest.doc["metadata"].get("tags") or [])]
        return _json(200, {"resources": items, "total_count": len(items), "limit": len(items),
                           "first": {"href": "/ml/v4/functions"}})

    def _get_function(self, request: Request) -> Response:
        with self._lock:
            return _json(200, self._function_snapshot(request.params["id"], request.query.get("rev")).doc)

    def _patch_function(self, request: Request) -> Response:
        ops = request.json()
        with self._lock:
            function = self._function(request.params["id"])
            doc = copy.deepcopy(function.latest.doc)
            metadata_ops, entity_ops = [], []
            for op in ops if isinstance(ops, list) else [ops]:
                top = str(op.get("path", "")).lstrip("/").split("/")[0] if isinstance(op, dict) else ""
                (metadata_ops if top in {"name", "description", "tags"} else entity_ops).append(op)
            _apply_json_patch(doc["metadata"], metadata_ops)
            _apply_json_patch(doc["entity"], entity_ops)
            doc["metadata"]["modified_at"] = _now()
            function.latest.doc = doc
            return _json(200, doc)

    def _delete_function(self, request: Request) -> Response:
        with self._lock:
            if self._functions.pop(request.params["id"], None) is None:
                raise ApiError(404, "asset_not_found", f"Asset with id '{request.params['id']}' does not exist.")
        return Response(204)

    def _put_function_code(self, request: Request) -> Response:
        if not request.body:
            raise ApiError(400, "missing_content", "The request body with the function's code is empty.")
        with self._lock:
            function = self._function(request.params["id"])
            function.latest.archive = request.body
            function.latest.doc["entity"]["content_import_state"] = "completed"
            function.latest.doc["metadata"]["modified_at"] = _now()
        return _json(201, {"attachment_id": str(uuid.uuid4()), "content_format": "native", "persisted": True})

    def _create_function_revision(self, request: Request) -> Response:
        body = request.json() or {}
        with self._lock:
            function = self._function(request.params["id"])
            rev = str(len(function.revisions) + 1)
            doc = copy.deepcopy(function.latest.doc)
            doc["metadata"]["rev"] = rev
            doc["metadata"]["commit_info"] = {"committed_at": _now(), "commit_message": body.get("commit_message", "")}
            function.revisions[rev] = Snapshot(doc, function.latest.archive)
            return _json(201, doc)

    def _list_function_revisions(self, request: Request) -> Response:
        with self._lock:
            function = self._function(request.params["id"])
            items = [copy.deepcopy(s.doc) for s in function.revisions.values()]
        return _json(200, {"resources": items, "total_count": len(items), "limit": len(items),
                           "first": {"href": f"/ml/v4/functions/{request.params['id']}/revisions"}})

    # ----- deployments -----

    def _deployment(self, deployment_id: str) -> StoredDeployment:
        deployment = self._deployments.get(deployment_id)
        if deployment is None:
            raise ApiError(404, "deployment_not_found", f"Deployment with id '{deployment_id}' does not exist. "
                                                        "Re-try with a valid deployment id.")
        return deployment

    def _validate_asset(self, asset: Any) -> dict[str, Any]:
        if not isinstance(asset, dict) or not asset.get("id"):
            raise ApiError(400, "invalid_asset", "Field 'asset' with an 'id' is required.")
        rev = asset.get("rev")
        if asset["id"] in self._functions:
            snapshot = self._function_snapshot(asset["id"], str(rev) if rev is not None else None)
            if snapshot.archive is None:
                raise ApiError(400, "function_content_missing", f"Function '{asset['id']}' has no code to deploy.")
        else:
            snapshot = self._snapshot(asset["id"], str(rev) if rev is not None else None)
            if snapshot.pickle_bytes is None:
                raise ApiError(400, "model_content_missing", f"Model '{asset['id']}' has no content to deploy.")
        return {"id": asset["id"], **({"rev": str(rev)} if rev is not None else {})}

    def _asset_type(self, asset: dict[str, Any]) -> str:
        return "function" if asset["id"] in self._functions else "model"

    def _function_key(self, deployment_id: str, asset: dict[str, Any]) -> tuple[str, str, str]:
        return deployment_id, str(asset["id"]), str(asset.get("rev") or "")

    def _begin_load(self, deployment_id: str, deployment: StoredDeployment) -> None:
        """Build the function's software specification and load its code, in the background (as the
        service does while a deployment initializes); a failure fails the deployment with its message."""
        asset = deployment.doc["entity"]["asset"]
        if self._asset_type(asset) != "function":
            deployment.loading = None
            return
        snapshot = self._function_snapshot(asset["id"], asset.get("rev"))
        spec = snapshot.doc["entity"].get("software_spec") or {}
        extensions: list[tuple[str, str, bytes]] = []
        loading = Loading()
        custom = self._custom_specs.get(str(spec.get("id")))
        for entry in (custom or {}).get("entity", {}).get("software_specification", {}).get("package_extensions", []):
            ext = self._package_extensions.get(entry["metadata"]["asset_id"])
            if ext is None or ext.content is None:
                loading.error = (f"package extension {entry['metadata']['asset_id']} of software specification "
                                 f"{spec.get('name')} no longer exists")
                loading.done.set()
                deployment.loading = loading
                return
            extensions.append((entry["metadata"]["asset_id"], ext.filename, ext.content))
        assert self._runtime is not None and snapshot.archive is not None
        deployment.loading = self._runtime.load(self._function_key(deployment_id, asset), snapshot.archive, extensions)

    def _start_transition(self, deployment: StoredDeployment, state: str) -> None:
        """Begin an initializing/updating phase whose outcome was fixed by the fault knobs at request time."""
        deployment.doc["entity"]["status"]["state"] = state
        deployment.polls_left = max(0, int(self.ready_after_polls))
        deployment.outcome = self.deployment_outcome
        deployment.failure_message = self.deployment_failure_message
        self.deployment_outcome = "ready"

    def _advance(self, deployment: StoredDeployment) -> None:
        status = deployment.doc["entity"]["status"]
        if status["state"] not in IN_PROGRESS:
            return
        loading = deployment.loading
        if loading is not None:
            if not loading.done.is_set():
                return  # still installing the package extensions or importing the function
            deployment.loading = None
            if loading.error and deployment.outcome == "ready":
                deployment.outcome = "failed"
                deployment.failure_message = f"Deployment of the Python function failed: {loading.error}"
        if deployment.polls_left > 0:
            deployment.polls_left -= 1
            return
        if deployment.outcome == "ready":
            status["state"] = "ready"
            status.pop("failure", None)
            if self._runtime is not None:
                asset = deployment.doc["entity"]["asset"]
                self._runtime.keep_only(deployment.doc["metadata"]["id"], self._function_key(
                    deployment.doc["metadata"]["id"], asset) if self._asset_type(asset) == "function" else None)
            return
        failure = {"errors": [{"code": "deployment_failed", "message": deployment.failure_message}]}
        if status["state"] == "updating" and deployment.previous_asset is not None:
            # IBM's API docs: a failed asset patch reverts to the previous asset and keeps serving it.
            deployment.doc["entity"]["asset"] = deployment.previous_asset
            deployment.doc["entity"]["deployed_asset_type"] = self._asset_type(deployment.previous_asset)
            status["state"] = "ready"
        else:
            status["state"] = "failed"
        status["failure"] = failure

    def _create_deployment(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not body.get("name"):
            raise ApiError(400, "missing_field", "Field 'name' is required.")
        if ("online" in body) == ("batch" in body):
            raise ApiError(400, "invalid_deployment_type", "Exactly one of 'online' or 'batch' must be given.")
        space_id = self._check_space(body.get("space_id") or request.query.get("space_id"))
        deployment_id, created = str(uuid.uuid4()), _now()
        hw = body.get("hardware_spec") or {"name": "S"}
        hw_name = hw.get("name") or next((n for n, i in self.hardware_specs.items() if i == hw.get("id")), "S")
        with self._lock:
            asset = self._validate_asset(body.get("asset"))
            entity = {k: v for k, v in body.items() if k not in {"space_id", "project_id"}}
            status: dict[str, Any] = {"state": "initializing"}
            if "online" in body:
                status["online_url"] = {"url": f"{self.url}/ml/v4/deployments/{deployment_id}/predictions"}
                status["serving_urls"] = [status["online_url"]["url"]]
            entity.update({
                "asset": asset, "space_id": space_id, "deployed_asset_type": self._asset_type(asset), "status": status,
                "hardware_spec": {"id": self.hardware_specs.get(hw_name, hw.get("id")), "name": hw_name,
                                  "num_nodes": hw.get("num_nodes", 1)},
                "custom": body.get("custom", {}), "description": body.get("description", ""),
                "tags": body.get("tags", []),
            })
            doc = {"metadata": {"id": deployment_id, "name": body["name"], "space_id": space_id,
                                "tags": list(body.get("tags", [])),
                                "created_at": created, "modified_at": created, "owner": self.username},
                   "entity": entity}
            deployment = StoredDeployment(doc)
            self._start_transition(deployment, "initializing")
            self._begin_load(deployment_id, deployment)
            self._deployments[deployment_id] = deployment
            return _json(202, doc)

    def _list_deployments(self, request: Request) -> Response:
        space_id = self._check_space(request.query.get("space_id"))
        asset_id = request.query.get("asset_id")
        name = request.query.get("name")
        wanted = _tag_filter(request.query.get("tag.value"))
        with self._lock:
            items = [copy.deepcopy(d.doc) for d in self._deployments.values()
                     if d.doc["metadata"]["space_id"] == space_id
                     and asset_id in (None, d.doc["entity"]["asset"]["id"])
                     and name in (None, d.doc["metadata"]["name"])
                     and wanted(d.doc["metadata"].get("tags") or [])]
        return _json(200, {"resources": items, "total_count": len(items), "limit": len(items),
                           "first": {"href": "/ml/v4/deployments"}})

    def _get_deployment(self, request: Request) -> Response:
        with self._lock:
            deployment = self._deployment(request.params["id"])
            self._advance(deployment)
            return _json(200, deployment.doc)

    def _patch_deployment(self, request: Request) -> Response:
        ops = request.json()
        with self._lock:
            deployment = self._deployment(request.params["id"])
            if deployment.doc["entity"]["status"]["state"] in IN_PROGRESS:
                raise ApiError(409, "deployment_in_progress", "The deployment is being created or updated; retry later.")
            entity = copy.deepcopy(deployment.doc["entity"])
            touched = _apply_json_patch(entity, ops)
            if "asset" in touched:
                entity["asset"] = self._validate_asset(entity.get("asset"))
                entity["deployed_asset_type"] = self._asset_type(entity["asset"])
            for key in ("name", "description", "tags"):
                if key in touched:
                    deployment.doc["metadata"][key] = entity.get(key)
            previous_asset = deployment.doc["entity"]["asset"]
            deployment.doc["entity"] = entity
            deployment.doc["metadata"]["modified_at"] = _now()
            if "asset" in touched or "hardware_spec" in touched:
                deployment.previous_asset = previous_asset
                self._start_transition(deployment, "updating")
                self._begin_load(request.params["id"], deployment)
                return _json(202, deployment.doc)
            return _json(200, deployment.doc)

    def _delete_deployment(self, request: Request) -> Response:
        with self._lock:
            self._deployment(request.params["id"])
            del self._deployments[request.params["id"]]
        if self._runtime is not None:
            self._runtime.keep_only(request.params["id"], None)
        return Response(204)

    # ----- scoring -----

    def _load_estimator(self, model_id: str, rev: str | None) -> Any:
        import joblib

        key = (model_id, rev or "")
        with self._cache_lock:
            if key in self._loaded:
                return self._loaded[key]
        with self._lock:
            pickle_bytes = self._snapshot(model_id, rev).pickle_bytes
        if pickle_bytes is None:
            raise ApiError(400, "model_content_missing", f"Model '{model_id}' has no content.")
        estimator = joblib.load(io.BytesIO(pickle_bytes))
        with self._cache_lock:
            self._loaded[key] = estimator
        return estimator

    def _predict(self, asset: dict[str, Any], input_data: Any) -> list[dict[str, Any]]:
        import pandas as pd

        if not isinstance(input_data, list) or not input_data:
            raise ApiError(400, "invalid_input_data", "'input_data' must be a non-empty array.")
        estimator = self._load_estimator(asset["id"], asset.get("rev"))
        expected = [str(f) for f in getattr(estimator, "feature_names_in_", [])]
        predictions = []
        for index, block in enumerate(input_data):
            if not isinstance(block, dict) or not isinstance(block.get("values"), list):
                raise ApiError(400, "invalid_input_data", f"input_data[{index}] must be an object with a 'values' array.")
            values = block["values"]
            fields = block.get("fields") or expected
            width = len(fields) if fields else len(values[0]) if values and isinstance(values[0], list) else 0
            if not values or not all(isinstance(row, list) and len(row) == width for row in values):
                raise ApiError(400, "invalid_input_data",
                               f"input_data[{index}].values must be a non-empty array of rows with {width} values each.")
            missing = [f for f in expected if f not in fields]
            if missing:
                raise ApiError(400, "missing_fields", f"input_data[{index}] is missing required fields: {missing}.")
            # Estimators fitted on bare arrays have no feature names; give them positional columns.
            frame = pd.DataFrame(values, columns=fields or None)
            if expected:
                frame = frame[expected]
            try:
                labels = estimator.predict(frame)
                probabilities = estimator.predict_proba(frame) if hasattr(estimator, "predict_proba") else None
            except Exception as exc:
                raise ApiError(400, "scoring_failed", f"Scoring failed: {type(exc).__name__}: {exc}") from exc
            if probabilities is None:
                predictions.append({"fields": ["prediction"], "values": [[_to_plain(label)] for label in labels]})
            else:
                predictions.append({"fields": ["prediction", "probability"],
                                    "values": [[_to_plain(label), _to_plain(p)] for label, p in zip(labels, probabilities)]})
        return predictions

    def _score(self, request: Request) -> Response:
        with self._lock:
            deployment = self._deployment(request.params["id"])
            entity = copy.deepcopy(deployment.doc["entity"])
        if "online" not in entity:
            raise ApiError(400, "invalid_deployment_type", "Online scoring is not available for a batch deployment.")
        if entity["status"]["state"] != "ready":
            raise ApiError(409, "deployment_not_ready",
                           f"Deployment '{request.params['id']}' is not ready (state: {entity['status']['state']}).")
        body = request.json()
        if not isinstance(body, dict) or "input_data" not in body:
            raise ApiError(400, "missing_input_data", "The request body must contain 'input_data'.")
        if entity.get("deployed_asset_type") == "function":
            return _json(200, self._run_function(request.params["id"], entity["asset"], body))
        return _json(200, {"predictions": self._predict(entity["asset"], body["input_data"])})

    def _run_function(self, deployment_id: str, asset: dict[str, Any], payload: dict[str, Any]) -> Any:
        """``score(payload)`` of the deployed function, run in its own process; Watson's error when it raises."""
        assert self._runtime is not None
        try:
            result = self._runtime.score(self._function_key(deployment_id, asset), payload)
        except FunctionError as exc:
            raise ApiError(400, "function_scoring_failed", f"Error in the deployed Python function: {exc.message}") from None
        if not isinstance(result, dict) or not isinstance(result.get("predictions"), list):
            raise ApiError(500, "invalid_function_output",
                           "The deployed Python function must return an object with a 'predictions' array, got "
                           f"{type(result).__name__}.")
        return result

    # ----- batch jobs -----

    def _create_job(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("deployment"), dict):
            raise ApiError(400, "missing_field", "Field 'deployment' with an 'id' is required.")
        space_id = self._check_space(body.get("space_id") or request.query.get("space_id"))
        scoring = body.get("scoring")
        if not isinstance(scoring, dict) or not isinstance(scoring.get("input_data"), list):
            raise ApiError(400, "missing_input_data", "Field 'scoring.input_data' is required.")
        job_id, created = str(uuid.uuid4()), _now()
        with self._lock:
            deployment = self._deployment(body["deployment"]["id"])
            if "batch" not in deployment.doc["entity"]:
                raise ApiError(400, "invalid_deployment_type", "Jobs can only run on a batch deployment.")
            doc = {"metadata": {"id": job_id, "name": body.get("name", f"job_{job_id}"), "space_id": space_id,
                                "created_at": created},
                   "entity": {"deployment": {"id": body["deployment"]["id"]}, "platform_job": {"job_id": job_id},
                              "scoring": {"input_data": scoring["input_data"], "status": {"state": "queued"}}}}
            self._jobs[job_id] = StoredJob(doc)
            return _json(202, doc)

    def _advance_job(self, job: StoredJob) -> None:
        scoring = job.doc["entity"]["scoring"]
        if scoring["status"]["state"] not in ("queued", "running"):
            return
        job.step += 1
        if job.step == 1:
            scoring["status"] = {"state": "running", "running_at": _now()}
            return
        deployment = self._deployments.get(job.doc["entity"]["deployment"]["id"])
        try:
            if deployment is None:
                raise ApiError(404, "deployment_not_found", "The job's deployment was deleted.")
            asset = deployment.doc["entity"]["asset"]
            if deployment.doc["entity"].get("deployed_asset_type") == "function":
                result = self._run_function(deployment.doc["metadata"]["id"], asset,
                                            {"input_data": scoring["input_data"]})
                scoring["predictions"] = result["predictions"]
            else:
                scoring["predictions"] = self._predict(asset, scoring["input_data"])
            scoring["status"] = {"state": "completed", "running_at": scoring["status"].get("running_at"),
                                 "completed_at": _now()}
        except ApiError as exc:
            scoring["status"] = {"state": "failed", "completed_at": _now(),
                                 "failure": {"trace": uuid.uuid4().hex,
                                             "errors": [{"code": exc.code, "message": exc.message}]}}

    def _list_jobs(self, request: Request) -> Response:
        space_id = self._check_space(request.query.get("space_id"))
        with self._lock:
            items = [copy.deepcopy(j.doc) for j in self._jobs.values() if j.doc["metadata"]["space_id"] == space_id]
        return _json(200, {"resources": items, "total_count": len(items), "limit": len(items)})

    def _get_job(self, request: Request) -> Response:
        with self._lock:
            job = self._jobs.get(request.params["id"])
            if job is None:
                raise ApiError(404, "job_not_found", f"Deployment job with id '{request.params['id']}' does not exist.")
            self._advance_job(job)
            return _json(200, job.doc)

    def _delete_job(self, request: Request) -> Response:
        with self._lock:
            job = self._jobs.get(request.params["id"])
            if job is None:
                raise ApiError(404, "job_not_found", f"Deployment job with id '{request.params['id']}' does not exist.")
            if request.query.get("hard_delete") == "true":
                del self._jobs[request.params["id"]]
            elif job.doc["entity"]["scoring"]["status"]["state"] in ("queued", "running"):
                job.doc["entity"]["scoring"]["status"] = {"state": "canceled", "completed_at": _now()}
        return Response(204)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Watson Machine Learning emulator over HTTPS.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-after-polls", type=int, default=0)
    parser.add_argument("--token-ttl", type=int, default=3600)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    emulator = WatsonEmulator(args.host, args.port, ready_after_polls=args.ready_after_polls, token_ttl=args.token_ttl)
    with emulator:
        cpd, cloud = emulator.credentials("cpd"), emulator.credentials("cloud")
        print(f"Watson ML emulator listening on {emulator.url}")
        print(f"CA bundle (pass as verify): {emulator.ca_path}")
        print(f"Space '{emulator.space_name}': {emulator.space_id}")
        print("\n# credentials.yaml, Cloud Pak for Data mode")
        print("\n".join(f"{k}: {json.dumps(v)}" for k, v in cpd.items()))
        print(f"space_id: {json.dumps(emulator.space_id)}")
        print("\n# credentials.yaml, IBM Cloud mode. The client's model-upload sub-client ignores `verify` here:\n"
              "# also set ibm_watsonx_ai.libs.repo.swagger_client.configuration.Configuration().ssl_ca_cert to the CA.")
        print("\n".join(f"{k}: {json.dumps(v)}" for k, v in cloud.items()))
        print(f"space_id: {json.dumps(emulator.space_id)}")
        print("\nCtrl-C to stop.", flush=True)
        stop = threading.Event()
        # SIGTERM must unwind the `with` block too, or the temporary CA directory is left behind.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
