"""Passwords embedded in URLs never reach messages or records: deploykit.http.redact_url / redact_text."""

from __future__ import annotations

import pytest

from deploykit.http import redact_text, redact_url
from deploykit_plugins.mlflow.settings import MlflowSettings


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:s3cret@mlflow.example:5000/api", "https://user:***@mlflow.example:5000/api"),
    ("http://minio:p%40ss@127.0.0.1:9000", "http://minio:***@127.0.0.1:9000"),
    ("https://:token@host", "https://:***@host"),
    ("https://user@host", "https://user@host"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("not a url @ all", "not a url @ all"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_every_url_in_a_message() -> None:
    text = "failed at https://u:pw1@a:5000/x, then http://v:pw2@b (mail me at x@y)"
    assert redact_text(text) == "failed at https://u:***@a:5000/x, then http://v:***@b (mail me at x@y)"


def test_the_tracking_uri_is_shown_without_its_password() -> None:
    settings = MlflowSettings(tracking_uri="https://alice:hunter2@mlflow.example")
    assert settings.shown_uri == "https://alice:***@mlflow.example"
    assert "hunter2" not in settings.shown_uri


def test_relay_certificate_needs_its_key(tmp_path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ValueError, match="relay_keyfile"):
        MlflowSettings(tracking_uri="http://127.0.0.1:5000", relay_certfile=str(cert))
    ok = MlflowSettings(tracking_uri="http://127.0.0.1:5000", relay_certfile=str(cert), relay_keyfile=str(cert))
    assert ok.relay_scheme == "https"
