"""The local server's settings, defined once: the ``local:`` section of credentials.yaml, the
document the server process reads, and the ``deploykit serve`` options are all this model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from deploykit.settings import CertFile, TargetSettings

__all__ = ["LocalSettings", "ServerDocument", "read_document", "write_document"]


class LocalSettings(TargetSettings):
    """The ``local:`` section of credentials.yaml; every key is optional.

    ``verify``/``ca_bundle`` (from ``TargetSettings``) are how deploykit itself trusts the server
    when it scores or checks health over HTTPS; unset, it trusts the server's own ``certfile``
    (a self-signed local certificate)."""

    section: ClassVar[str] = "local"

    host: str = Field("127.0.0.1", description="interface to listen on (0.0.0.0: every interface)")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port on first deploy")
    token: SecretStr | None = Field(None, description="require 'Authorization: Bearer <token>' on every route")
    certfile: CertFile = Field(None, description="TLS certificate (PEM); the server speaks HTTPS; a relative path "
                                                 "is read from the credentials file's folder")
    keyfile: CertFile = Field(None, description="TLS private key (PEM) [default: the certfile]")
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0, description="larger request bodies get 413")
    python: str | None = Field(None, description="interpreter for the server process (default: this one; a "
                                                 "scoring script with requirements runs in its own environment)")
    env_cache: str | None = Field(None, description="folder of the cached environments of scoring scripts' "
                                                    "requirements [default: $XDG_CACHE_HOME/deploykit/envs]")
    workers: int = Field(1, ge=1, le=64, description="serving processes, each with its own SO_REUSEPORT listener")
    batch_wait_ms: float = Field(2.0, ge=0, le=1000,
                                 description="how long concurrent requests may wait to be scored in one "
                                             "predict call; 0 turns micro-batching off")
    max_batch_rows: int = Field(256, ge=1, description="most rows scored in one predict call")
    allow_extra_columns: bool | None = Field(None, description="drop columns the schema does not know instead "
                                                               "of answering 422 (default: the schema's own setting)")
    protect_docs: bool | None = Field(None, description="require the token on /docs, /redoc and /openapi.json too "
                                                        "(default: yes when a token is set)")
    metrics: bool = Field(True, description="serve Prometheus metrics on GET /metrics")
    protect_metrics: bool | None = Field(None, description="require the token on /metrics too "
                                                           "(default: yes when a token is set)")
    log_inputs: bool = Field(False, description="log every scored row (features, prediction, time) to Parquet "
                                                "files under .deploykit/input-logs/<name>/ for 'deploykit drift'; "
                                                "they may hold personal data")
    log_inputs_dir: str | None = Field(None, description="folder of the logged inputs "
                                                         "[default: .deploykit/input-logs/<name>]")
    log_inputs_max_bytes: int = Field(256 * 1024 * 1024, ge=4096, description="size at which the oldest logged "
                                                                              "input files are removed")
    log_max_bytes: int = Field(10 * 1024 * 1024, ge=4096, description="size at which a server log is rotated")
    log_backups: int = Field(3, ge=0, le=100, description="rotated server logs kept (name.log.1, ...)")
    keep_revisions: int = Field(5, ge=1, description="revisions whose kept model files stay in the artifact store "
                                                     "(older ones are pruned after a successful update)")
    keep_warm_s: float = Field(0, ge=0, le=3600, description="seconds a replaced server stays running off the "
                                                             "public port, so a rollback re-joins it warm")
    job_workers: int = Field(1, ge=0, le=64, description="async jobs (POST /jobs) the server runs at once; "
                                                         "0 turns the job routes off")
    job_retention_s: float = Field(24 * 3600, gt=0, description="seconds a finished job's status and files are "
                                                                "kept (then GET answers 410 Gone)")
    max_job_bytes: int = Field(1 << 30, gt=0, description="larger job uploads get 413")
    job_webhook: str | None = Field(None, description="URL that every finished job's document is POSTed to "
                                                      "(a submit's own webhook field wins)")

    @property
    def token_value(self) -> str | None:
        """The bearer token in clear (None when no token is required)."""
        return self.token.get_secret_value() if self.token else None

    @property
    def docs_protected(self) -> bool:
        """True when /docs and /openapi.json need the token."""
        return self.token is not None and self.protect_docs is not False

    @property
    def client_verify(self) -> bool | str:
        """How deploykit checks the server's certificate: ``ca_bundle``/``verify`` when set, else the
        server's own certfile (self-signed), else the system trust store."""
        if self.ca_bundle is not None or self.verify is not True:
            return self.tls_verify
        return self.certfile or True


class ServerDocument(BaseModel):
    """Everything one server process needs, handed over as one JSON document (never argv)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="the model file or folder to serve")
    schema_file: str | None = Field(None, description="schema.json with the input columns")
    name: str = Field("model", description="model name in /health and the V2 routes")
    revision: int = Field(1, ge=1, description="revision reported in /health and the V2 routes")
    reuse_port: bool = Field(False, description="bind with SO_REUSEPORT (a replacement starts beside the old server)")
    public: Literal["bind", "wait"] = Field("bind", description="bind the public port at start, or wait on the "
                                                                "private port until told to join (SIGUSR1)")
    model_sha256: str | None = Field(None, description="the recorded sha256 of the model; the server refuses "
                                                       "to load a file with another digest")
    log_file: str | None = Field(None, description="the server's log, rotated at settings.log_max_bytes")
    state_file: str | None = Field(None, description="where the process writes its pid and ports once it serves")
    settings: LocalSettings = Field(default_factory=LocalSettings, description="the local: settings")


def write_document(path: Path, document: ServerDocument) -> None:
    """Write ``document`` to ``path`` readable by this user only (it may hold the token)."""
    body = document.model_dump(mode="json")
    body["settings"]["token"] = document.settings.token_value
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(body, out)


def read_document(path: Path) -> ServerDocument:
    """Read the document and remove it, so the token does not stay on disk."""
    try:
        return ServerDocument.model_validate_json(path.read_bytes())
    finally:
        path.unlink(missing_ok=True)
