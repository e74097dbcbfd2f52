"""The ``mlflow:`` credentials section, and the MLflow client environment it stands for.

    mlflow:
      tracking_uri: http://mlflow.internal:5000
      token: ${MLFLOW_TRACKING_TOKEN}          # or username + password
      alias: production                        # the alias deploy points at the new version
      s3_endpoint_url: http://minio:9000       # artifact store settings, when it is S3
      aws_access_key_id: ${AWS_ACCESS_KEY_ID}
      aws_secret_access_key: ${AWS_SECRET_ACCESS_KEY}
      verify: true                             # TLS of tracking server and S3: true, false or a CA bundle
      ca_bundle: certs/private-ca.pem          # a private CA to trust (relative to this file)

``insecure_tls: true`` and ``s3_ignore_tls: true`` (older spellings) still work: they mean
``verify: false`` and warn.

MLflow reads its connection settings from environment variables and module globals, so
``connected(settings)`` sets them for the duration of one operation and restores them after;
the scoring server process gets the same variables and a minimal environment besides
(``server_environment``), never the deploying shell's other keys.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from deploykit.errors import ArtifactError, CredentialsError, DeploymentError
from deploykit.process import child_environment, scoped_environ
from deploykit.settings import Retries, TargetSettings

__all__ = ["MlflowSettings", "connected", "ensure_reachable", "server_environment", "settings_for_loading"]


class MlflowSettings(TargetSettings):
    """The ``mlflow:`` section of credentials.yaml; only ``tracking_uri`` is required.

    ``verify`` / ``ca_bundle`` (from ``TargetSettings``) cover the tracking server, the registry
    and an S3 artifact store alike.
    """

    section: ClassVar[str] = "mlflow"
    deprecated_tls_keys: ClassVar[tuple[str, ...]] = ("insecure_tls", "s3_ignore_tls")

    tracking_uri: str = Field(description="MLflow tracking server, e.g. http://127.0.0.1:5000")
    registry_uri: str | None = Field(None, description="model registry, when it is not the tracking server")
    token: SecretStr | None = Field(None, description="bearer token (MLFLOW_TRACKING_TOKEN)")
    username: str | None = Field(None, description="basic-auth user (MLFLOW_TRACKING_USERNAME)")
    password: SecretStr | None = Field(None, description="basic-auth password (MLFLOW_TRACKING_PASSWORD)")
    experiment: str = Field("deploykit", description="experiment that holds the runs deploykit logs")
    registered_model: str | None = Field(None, description="registered model name (default: the deployment name)")
    alias: str = Field("production", description="alias moved to the served version")
    stage: Literal["Staging", "Production"] | None = Field(
        None, description="use the deprecated stages instead of an alias (servers without aliases)")
    take_over_alias: bool = Field(False, description="allow deploying when the alias points at a version "
                                                     "this project did not deploy")
    delete_versions: bool = Field(False, description="delete also removes the versions deploykit registered")
    serialization_format: Literal["cloudpickle", "pickle", "skops"] = Field(
        "cloudpickle", description="how the sklearn flavor stores the model")
    skops_trusted_types: list[str] | None = Field(
        None, description="with skops: the types to trust (default: the ones the model holds)")
    infer_pip_requirements: bool = Field(
        False, description="let MLflow infer requirements (loads the model in a subprocess, ~3 s)")
    host: str = Field("127.0.0.1", description="interface the scoring endpoint listens on")
    port: int = Field(0, ge=0, le=65535, description="scoring endpoint port; 0 picks a free one on first deploy")
    workers: int = Field(1, ge=1, le=64, description="scoring server worker processes")
    server_timeout: int = Field(60, ge=1, description="scoring request timeout in seconds")
    env_manager: Literal["local", "virtualenv", "uv", "conda"] = Field(
        "local", description="environment of the scoring server (local: this Python)")
    s3_endpoint_url: str | None = Field(None, description="S3 API endpoint (MLFLOW_S3_ENDPOINT_URL), e.g. MinIO")
    aws_access_key_id: SecretStr | None = Field(None, description="S3 access key id (AWS_ACCESS_KEY_ID)")
    aws_secret_access_key: SecretStr | None = Field(None, description="S3 secret key (AWS_SECRET_ACCESS_KEY)")
    aws_session_token: SecretStr | None = Field(None, description="S3 session token (AWS_SESSION_TOKEN)")
    aws_region: str | None = Field(None, description="S3 region (AWS_DEFAULT_REGION)")
    request_retries: Retries = Field(3, description="retries of each MLflow REST call")
    request_timeout: int = Field(30, ge=1, description="timeout of each MLflow REST call, in seconds")

    @field_validator("stage", mode="before")
    @classmethod
    def _stage_title(cls, value: Any) -> Any:
        return value.strip().title() if isinstance(value, str) else value

    @field_validator("tracking_uri", "registry_uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value:
            raise ValueError("is empty; give the tracking server's URL, e.g. http://127.0.0.1:5000")
        return value

    @property
    def registry(self) -> str:
        """The registry URI in effect (the tracking URI unless ``registry_uri`` is set)."""
        return self.registry_uri or self.tracking_uri

    @property
    def pointer(self) -> str:
        """What deploy moves, for messages: ``alias 'production'`` or ``stage 'Production'``."""
        return f"stage {self.stage!r}" if self.stage else f"alias {self.alias!r}"

    def environment(self) -> dict[str, str]:
        """The MLflow, boto3 and retry environment variables these settings stand for."""
        env = {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_REGISTRY_URI": self.registry,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.request_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.request_timeout),
        }
        secrets = {
            "MLFLOW_TRACKING_TOKEN": self.token,
            "MLFLOW_TRACKING_PASSWORD": self.password,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_SESSION_TOKEN": self.aws_session_token,
        }
        env.update({k: v.get_secret_value() for k, v in secrets.items() if v is not None})
        plain = {
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_DEFAULT_REGION": self.aws_region,
        }
        env.update({k: v for k, v in plain.items() if v})
        trust = self.tls_verify
        if trust is False:
            env["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
            env["MLFLOW_S3_IGNORE_TLS"] = "true"
        elif isinstance(trust, str):
            env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = trust
            env["AWS_CA_BUNDLE"] = trust
        return env


#: What an ``env_manager`` other than ``local`` needs to build the model's environment.
_ENV_MANAGER_PREFIXES = {"virtualenv": ("PYENV", "PIP_", "VIRTUALENV_"), "uv": ("UV_", "PIP_"),
                         "conda": ("CONDA", "MAMBA", "PIP_")}


def server_environment(settings: MlflowSettings) -> dict[str, str]:
    """The environment of an ``mlflow models serve`` process: a minimal one (``child_environment``),
    the settings' variables, and a PATH that starts with this interpreter's bin folder, because
    MLflow execs a bare ``uvicorn``."""
    env = child_environment(settings.environment(),
                            keep_prefixes=_ENV_MANAGER_PREFIXES.get(settings.env_manager, ()))
    bindir = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bindir]:
        env["PATH"] = bindir + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def connected(settings: MlflowSettings) -> Iterator[Any]:
    """Point the MLflow client at these settings for the block; yields an ``MlflowClient``.

    Environment variables and MLflow's tracking/registry URI globals are restored on exit, and
    MLflow's INFO chatter is muted (deploykit reports progress itself).
    """
    import mlflow
    from mlflow.tracking import _model_registry, _tracking_service

    env = settings.environment()
    env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # stdout may carry --json output
    tracking_mod = _tracking_service.utils
    registry_mod = _model_registry.utils
    saved_uris = (getattr(tracking_mod, "_tracking_uri", None), getattr(registry_mod, "_registry_uri", None))
    log = logging.getLogger("mlflow")
    saved_level = log.level
    with scoped_environ(env):
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.registry)
        log.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                # advice meant for hand-written MLflow code (type hints, stage deprecation): deploykit's docs cover it
                warnings.filterwarnings("ignore", message=r"(?s).*type hint", category=UserWarning)
                warnings.filterwarnings("ignore", category=FutureWarning)
                yield mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry)
        finally:
            log.setLevel(saved_level)
            tracking_mod._tracking_uri, registry_mod._registry_uri = saved_uris


def ensure_reachable(settings: MlflowSettings, error: type[Exception] = DeploymentError) -> None:
    """Fail fast, with the fix, when an HTTP tracking server does not answer (MLflow itself would
    retry for minutes). Non-HTTP URIs (sqlite:, file:, databricks) are not checked here."""
    if not settings.tracking_uri.startswith(("http://", "https://")):
        return
    import urllib3

    url = settings.tracking_uri + "/health"
    trust = settings.tls_verify
    pool = urllib3.PoolManager(cert_reqs="CERT_NONE" if trust is False else "CERT_REQUIRED",
                               ca_certs=trust if isinstance(trust, str) else None)
    try:
        pool.request("GET", url, timeout=urllib3.Timeout(connect=5, read=15), retries=urllib3.Retry(1, backoff_factor=0.2))
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise error(
            f"the MLflow tracking server at {settings.tracking_uri} did not answer ({_short_reason(reason)}); "
            "start it (mlflow server --backend-store-uri ... --host ... --port ...) or fix mlflow.tracking_uri "
            "in credentials.yaml (or DEPLOYKIT_MLFLOW_TRACKING_URI)"
        ) from None


def _short_reason(reason: Any) -> str:
    text = str(reason)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if marker in text:
            return marker.lower()
    return text[:160]


def settings_for_loading(credentials: str | Path | None = None) -> MlflowSettings:
    """Settings to read a ``models:/`` or ``runs:/`` URI with, whatever target it is deployed to.

    The ``mlflow:`` section of the credentials (``credentials`` or ./credentials.yaml, plus
    ``DEPLOYKIT_MLFLOW_*`` variables) if it names a tracking server, else ``MLFLOW_TRACKING_URI``.
    """
    from deploykit.credentials import load_section, validate_section

    try:
        section = load_section("mlflow", credentials)
    except CredentialsError:
        if credentials is not None:
            raise
        section = {"__source__": "environment"}
    if not section.get("tracking_uri") and os.environ.get("MLFLOW_TRACKING_URI"):
        section["tracking_uri"] = os.environ["MLFLOW_TRACKING_URI"]
    if not section.get("tracking_uri"):
        raise ArtifactError(
            "a models:/ or runs:/ URI is read from an MLflow tracking server, but none is configured; "
            "set mlflow.tracking_uri in credentials.yaml, or DEPLOYKIT_MLFLOW_TRACKING_URI or MLFLOW_TRACKING_URI"
        )
    return validate_section(MlflowSettings, section, "mlflow")  # type: ignore[no-any-return]
