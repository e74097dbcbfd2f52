"""credentials.yaml: sections, ${ENV} interpolation, env-only mode, clear errors, secrets hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploykit.credentials import load_section, validate_section
from deploykit.errors import CredentialsError
from deploykit_plugins.local.target import LocalSettings


def test_section_with_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "c.yaml"
    creds.write_text("local:\n  port: ${PORT:-8123}\n  token: ${TOKEN}\n")
    monkeypatch.setenv("TOKEN", "s3cret")
    section = load_section("local", creds)
    settings = validate_section(LocalSettings, section, "local")
    assert settings.port == 8123
    assert settings.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_unset_env_var_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    creds = tmp_path / "c.yaml"
    creds.write_text("local:\n  token: ${NOPE_TOKEN}\n")
    with pytest.raises(CredentialsError, match=r"local.token refers to \$\{NOPE_TOKEN\}.*export NOPE_TOKEN"):
        load_section("local", creds)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="does not exist; copy credentials.example.yaml"):
        load_section("local", tmp_path / "absent.yaml")


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    creds = tmp_path / "c.yaml"
    creds.write_text("local:\n  port: 1\n bad: [\n")
    with pytest.raises(CredentialsError, match="not valid YAML at line"):
        load_section("local", creds)


def test_wrong_key_and_wrong_type(tmp_path: Path) -> None:
    creds = tmp_path / "c.yaml"
    creds.write_text("local:\n  prot: 80\n  port: eighty\n")
    with pytest.raises(CredentialsError) as err:
        validate_section(LocalSettings, load_section("local", creds), "local")
    assert "'prot' is not a local setting" in str(err.value)
    assert "'port' = 'eighty'" in str(err.value)


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    creds = tmp_path / "c.yaml"
    creds.write_text("local:\n  token: [not, a, string]\n")
    with pytest.raises(CredentialsError) as err:
        validate_section(LocalSettings, load_section("local", creds), "local")
    assert "'token' = <hidden>" in str(err.value)
    assert "'not'" not in str(err.value)


def test_env_only_mode_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./credentials.yaml here
    section = load_section("local", None, env={"DEPLOYKIT_LOCAL_PORT": "9001"})
    assert validate_section(LocalSettings, section, "local").port == 9001
    assert section["__source__"] == "environment"


def test_legacy_flat_watson_layout(tmp_path: Path) -> None:
    creds = tmp_path / "c.yaml"
    creds.write_text("url: https://us-south.ml.cloud.ibm.com\napikey: k\nspace_id: s\n")
    section = load_section("watsonml", creds, env={})
    assert section["apikey"] == "k" and section["space_id"] == "s"


def test_missing_required_key_names_env_var() -> None:
    from pydantic import BaseModel

    class Needs(BaseModel):
        apikey: str

    with pytest.raises(CredentialsError, match=r"'apikey' is missing \(set watsonml.apikey or DEPLOYKIT_WATSONML_APIKEY\)"):
        validate_section(Needs, {"__source__": "c.yaml"}, "watsonml")


def test_cross_key_check_does_not_echo_the_section() -> None:
    from pydantic import BaseModel, model_validator

    class Pair(BaseModel):
        apikey: str | None = None
        password: str | None = None

        @model_validator(mode="after")
        def one_of(self) -> Pair:
            if not (self.apikey or self.password):
                raise ValueError("set apikey or password")
            return self

    with pytest.raises(CredentialsError) as err:
        validate_section(Pair, {"__source__": "c.yaml", "apikey": "", "token": "s3cret-value"}, "watsonml")
    assert "set apikey or password" in str(err.value)
    assert "s3cret-value" not in str(err.value)


def test_non_utf8_file_names_the_byte_and_the_fix(tmp_path: Path) -> None:
    creds = tmp_path / "c.yaml"
    creds.write_bytes("local:\n  token: caf\xe9\n".encode("latin-1"))
    with pytest.raises(CredentialsError) as info:
        load_section("local", creds)
    message = str(info.value)
    assert str(creds) in message and "is not UTF-8: byte 0xe9 at offset 19 (line 2)" in message
    assert "save the file as UTF-8" in message


def test_folder_given_as_credentials_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="is a folder, not a file"):
        load_section("local", tmp_path)


def test_non_utf8_credentials_through_the_cli(cli, project, bank_model) -> None:
    (project.dir / "bad.yaml").write_bytes(b"local:\n  port: 0\n  token: \xff\xfe\n")
    result = cli("deploy", bank_model, "--credentials", "bad.yaml")
    assert result.code == 1 and "Traceback" not in result.err
    assert "credentials file 'bad.yaml' is not UTF-8: byte 0xff at offset 26 (line 3)" in result.err
    result = cli("deploy", bank_model, "--credentials", "bad.yaml", "--json")
    assert result.code == 1 and "Traceback" not in result.err
    body = json.loads(result.out)
    assert body["type"] == "CredentialsError" and "save the file as UTF-8" in body["error"]
    assert not project.metadata.exists() or "bank-model" not in project.metadata.read_text()


def test_unreadable_credentials_through_the_cli(cli, project, bank_model) -> None:
    (project.dir / "loop.yaml").symlink_to("loop.yaml")  # unreadable even for root: ELOOP
    result = cli("deploy", bank_model, "--credentials", "loop.yaml", "--json")
    assert result.code == 1 and "Traceback" not in result.err
    body = json.loads(result.out)
    assert body["type"] == "CredentialsError"
    assert "credentials file 'loop.yaml' cannot be read (Too many levels of symbolic links)" in body["error"]
    assert "may read it" in body["error"]
