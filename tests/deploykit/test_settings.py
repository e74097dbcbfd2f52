"""deploykit.settings: the base every target's section subclasses, and its shared TLS and retries types."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import Field, model_validator

from deploykit.credentials import load_section, validate_section
from deploykit.errors import CredentialsError
from deploykit.settings import CertFile, Retries, TargetSettings, parse_bool


class DemoSettings(TargetSettings):
    """A third-party target's section: it only inherits."""

    section: ClassVar[str] = "demo"
    deprecated_tls_keys: ClassVar[tuple[str, ...]] = ("insecure",)

    url: str = Field(description="where the demo service runs")
    retries: Retries = Field(3, description="retries of each call")
    token: str | None = Field(None, description="a secret")
    certfile: CertFile = Field(None, description="the certificate the demo server presents")

    @model_validator(mode="after")
    def _token_needs_https(self) -> DemoSettings:
        if self.token and not self.url.startswith("https://"):
            raise ValueError("'token' is sent in clear over http://; use an https:// url")
        return self


def _validate(tmp_path: Path, text: str) -> DemoSettings:
    creds = tmp_path / "credentials.yaml"
    creds.write_text(text)
    return validate_section(DemoSettings, load_section("demo", creds, env={}), "demo")  # type: ignore[no-any-return]


def _ca(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def test_defaults_verify_with_the_system_trust_store(tmp_path: Path) -> None:
    settings = _validate(tmp_path, "demo:\n  url: https://x\n")
    assert settings.verify is True and settings.ca_bundle is None and settings.tls_verify is True


def test_every_field_is_documented() -> None:
    assert [name for name, field in TargetSettings.model_fields.items() if not field.description] == []


def test_unknown_key_is_refused_in_the_credentials_style(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as info:
        _validate(tmp_path, "demo:\n  url: https://x\n  verfy: false\n")
    message = str(info.value)
    assert "the demo section is wrong: 'verfy' is not a demo setting (known: ca_bundle, certfile, retries" in message


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("off", False), ("yes", True), ("true", True)])
def test_verify_spellings(tmp_path: Path, value: str, expected: bool) -> None:
    assert _validate(tmp_path, f"demo:\n  url: https://x\n  verify: {value}\n").tls_verify is expected


@pytest.mark.parametrize(("line", "fragment"), [
    ("verify: maybe", "'verify' = 'maybe': Value error, is neither true/false nor an existing file"),
    ("verify: [1]", "'verify' = [1]"),
    ("ca_bundle: nowhere/ca.pem", "'ca_bundle' = 'nowhere/ca.pem': Value error"),
    ("retries: 99", "'retries' = 99: Input should be less than or equal to 20"),
    ("retries: -1", "'retries' = -1: Input should be greater than or equal to 0"),
])
def test_bad_values_are_named(tmp_path: Path, line: str, fragment: str) -> None:
    with pytest.raises(CredentialsError) as info:
        _validate(tmp_path, f"demo:\n  url: https://x\n  {line}\n")
    assert fragment in str(info.value) and str(tmp_path / "credentials.yaml") in str(info.value)


def test_relative_ca_paths_are_read_from_the_credentials_folder(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ca = _ca(tmp_path / "project" / "certs")
    monkeypatch.chdir(_ca(tmp_path / "elsewhere" / "certs").parent.parent)  # a decoy CA beside the cwd
    project = tmp_path / "project"
    settings = _validate(project, "demo:\n  url: https://x\n  ca_bundle: certs/ca.pem\n")
    assert settings.ca_bundle == str(ca) and settings.tls_verify == str(ca)
    settings = _validate(project, "demo:\n  url: https://x\n  verify: certs/ca.pem\n  certfile: certs/ca.pem\n")
    assert settings.verify == str(ca) and settings.certfile == str(ca)
    with pytest.raises(CredentialsError, match=r"'certfile' = 'server.pem': Value error, .* is not an existing file; "
                                               r"give the path of a certificate or key file"):
        _validate(project, "demo:\n  url: https://x\n  certfile: server.pem\n")


def test_without_a_file_relative_paths_are_read_from_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = _ca(tmp_path / "certs")
    monkeypatch.chdir(tmp_path)
    env = {"DEPLOYKIT_DEMO_URL": "https://x", "DEPLOYKIT_DEMO_CA_BUNDLE": "certs/ca.pem"}
    section = load_section("demo", None, env=env)
    assert validate_section(DemoSettings, section, "demo").ca_bundle == str(ca)


def test_verify_false_with_a_ca_bundle_is_a_contradiction(tmp_path: Path) -> None:
    _ca(tmp_path)
    with pytest.raises(CredentialsError, match=r"demo.verify = false turns the TLS check off, but demo.ca_bundle"):
        _validate(tmp_path, "demo:\n  url: https://x\n  verify: false\n  ca_bundle: ca.pem\n")


def test_deprecated_alias_maps_onto_verify_and_warns(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match=r"demo.insecure is deprecated; write demo.verify: false instead"):
        settings = _validate(tmp_path, "demo:\n  url: https://x\n  insecure: true\n")
    assert settings.verify is False and settings.tls_verify is False
    with pytest.warns(DeprecationWarning, match="demo.verify: true"):
        assert _validate(tmp_path, "demo:\n  url: https://x\n  insecure: false\n").verify is True
    with pytest.raises(CredentialsError, match="'insecure' = 'sometimes' is not true or false"), \
            warnings.catch_warnings():
        _validate(tmp_path, "demo:\n  url: https://x\n  insecure: sometimes\n")


def test_cross_key_check_reads_like_every_other_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as info:
        _validate(tmp_path, "demo:\n  url: http://x\n  token: s3cret-value\n")
    message = str(info.value)
    assert message.endswith("the demo section is wrong: 'token' is sent in clear over http://; use an https:// url")
    assert "s3cret-value" not in message and "Value error" not in message


def test_parse_bool() -> None:
    assert parse_bool("No") is False and parse_bool(1) is True and parse_bool("perhaps") is None
