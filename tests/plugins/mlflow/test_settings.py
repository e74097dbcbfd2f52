"""The mlflow section on the settings base: verify/ca_bundle, the deprecated TLS keys, a minimal server environment."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploykit.credentials import load_section, validate_section
from deploykit.errors import CredentialsError, DeploymentError
from deploykit.settings import TargetSettings
from deploykit_plugins.mlflow.settings import MlflowSettings, ensure_reachable, server_environment
from tests.emulators.fixtures import watson_emulator  # noqa: F401  (pytest fixture: a self-signed HTTPS server)
from tests.emulators.watson import WatsonEmulator


def _settings(tmp_path: Path, text: str) -> MlflowSettings:
    creds = tmp_path / "credentials.yaml"
    creds.write_text("mlflow:\n  tracking_uri: https://mlflow.internal:5000\n" + text)
    return validate_section(MlflowSettings, load_section("mlflow", creds, env={}), "mlflow")  # type: ignore[no-any-return]


def test_mlflow_settings_are_target_settings() -> None:
    assert issubclass(MlflowSettings, TargetSettings)
    assert [name for name, field in MlflowSettings.model_fields.items() if not field.description] == []


@pytest.mark.parametrize("old", ["insecure_tls", "s3_ignore_tls"])
def test_deprecated_tls_keys_still_work_as_verify_false(tmp_path: Path, old: str) -> None:
    with pytest.warns(DeprecationWarning, match=rf"mlflow.{old} is deprecated; write mlflow.verify: false instead"):
        settings = _settings(tmp_path, f"  {old}: true\n")
    assert settings.verify is False
    env = settings.environment()
    assert env["MLFLOW_TRACKING_INSECURE_TLS"] == "true" and env["MLFLOW_S3_IGNORE_TLS"] == "true"


def test_deprecated_key_against_verify_is_named(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="mlflow.insecure_tls: true skips TLS verification, but mlflow.verify"), \
            pytest.warns(DeprecationWarning):
        _settings(tmp_path, "  insecure_tls: true\n  verify: true\n")


def test_relative_ca_bundle_reaches_mlflow_and_boto3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.chdir("/")
    env = _settings(tmp_path, "  ca_bundle: certs/ca.pem\n").environment()
    ca = str(tmp_path / "certs" / "ca.pem")
    assert env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == ca and env["AWS_CA_BUNDLE"] == ca
    assert "MLFLOW_TRACKING_INSECURE_TLS" not in env


def test_bad_tls_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"'verify' = 'sometimes': Value error, is neither true/false"):
        _settings(tmp_path, "  verify: sometimes\n")
    with pytest.raises(CredentialsError, match=r"'request_retries' = 50"):
        _settings(tmp_path, "  request_retries: 50\n")


def test_scoring_server_gets_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBM_CLOUD_API_KEY", "shell-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shell-secret")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "shell-secret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = server_environment(MlflowSettings(tracking_uri="http://mlflow:5000", token="from-settings"))
    assert "shell-secret" not in env.values()
    assert env["MLFLOW_TRACKING_TOKEN"] == "from-settings" and env["LANG"] == "C.UTF-8"
    assert env["HOME"] == __import__("os").environ["HOME"] and env["PYTHONUNBUFFERED"] == "1"


def test_ca_bundle_reaches_the_http_client(watson_emulator: WatsonEmulator, tmp_path: Path) -> None:
    shutil.copy(watson_emulator.ca_path, tmp_path / "ca.pem")
    creds = tmp_path / "credentials.yaml"
    creds.write_text(f"mlflow:\n  tracking_uri: {watson_emulator.url}\n")
    untrusted = validate_section(MlflowSettings, load_section("mlflow", creds, env={}), "mlflow")
    with pytest.raises(DeploymentError, match="did not answer"):
        ensure_reachable(untrusted)  # a self-signed certificate: refused without the CA
    creds.write_text(f"mlflow:\n  tracking_uri: {watson_emulator.url}\n  ca_bundle: ca.pem\n")
    ensure_reachable(validate_section(MlflowSettings, load_section("mlflow", creds, env={}), "mlflow"))
