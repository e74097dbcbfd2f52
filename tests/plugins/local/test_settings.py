"""The local server's settings are defined once: credentials.yaml's local: section, the document the
server process reads, the app's config and the ``deploykit serve`` options all come from LocalSettings."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

import deploykit
from deploykit_plugins.local.app import ServerConfig
from deploykit_plugins.local.commands import serve_command
from deploykit_plugins.local.settings import LocalSettings, ServerDocument, read_document, write_document


def test_unknown_keys_are_refused_and_every_field_is_described() -> None:
    with pytest.raises(ValidationError, match="max_batch_row"):
        LocalSettings(max_batch_row=3)  # type: ignore[call-arg]
    undocumented = [name for name, info in LocalSettings.model_fields.items() if not info.description]
    assert not undocumented


def test_the_app_config_takes_the_settings_defaults_and_values() -> None:
    defaults = LocalSettings()
    config = ServerConfig()
    assert (config.max_body_bytes, config.batch_wait_ms, config.max_batch_rows, config.allow_extra_columns) == \
        (defaults.max_body_bytes, defaults.batch_wait_ms, defaults.max_batch_rows, defaults.allow_extra_columns)
    mine = ServerConfig.from_settings(LocalSettings(token="s3cret", batch_wait_ms=0, max_batch_rows=9), "bank", 4)
    assert (mine.name, mine.revision, mine.token, mine.batch_wait_ms, mine.max_batch_rows) == ("bank", 4, "s3cret", 0, 9)


def test_the_server_document_is_private_holds_the_token_and_is_removed_once_read(tmp_path: Path) -> None:
    path = tmp_path / "bank-1.settings"
    doc = ServerDocument(model="m.joblib", name="bank", revision=2, state_file="s.json",
                         settings=LocalSettings(token="s3cret", workers=2))
    write_document(path, doc)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = read_document(path)
    assert not path.exists()
    assert back.settings.token_value == "s3cret" and back.settings.workers == 2 and back.revision == 2


def test_a_deployed_server_gets_its_token_from_the_document_not_argv_or_env(project, bank_model,
                                                                            bank_rows) -> None:
    from deploykit.process import cmdline

    project.write_credentials("local:\n  port: 0\n  token: t0ps3cret\n  batch_wait_ms: 0\n")
    dep = deploykit.deploy(bank_model, name="bank")
    pid = int(dep.ids["pid"])
    assert b"t0ps3cret" not in (cmdline(pid) or b"")
    environ = Path(f"/proc/{pid}/environ")
    if environ.exists():
        assert b"t0ps3cret" not in environ.read_bytes()
    assert not list((project.dir / ".deploykit").rglob("*.settings"))  # read, then removed
    assert len(deploykit.score("bank", bank_rows[:2])) == 2  # the token works


def test_serve_has_an_option_for_every_setting() -> None:
    options = {opt for param in serve_command.params for opt in getattr(param, "opts", [])}
    # python and env_cache choose the interpreter a deployed server runs on; serve runs in this one
    missing = [name for name in LocalSettings.model_fields if name not in ("python", "env_cache")
               and f"--{name.replace('_', '-')}" not in options]
    assert not missing
    help_text = CliRunner().invoke(serve_command, ["--help"]).output
    assert "--batch-wait-ms" in help_text and "--allow-extra-columns / --no-allow-extra-columns" in help_text


def test_serve_refuses_a_bad_setting_naming_the_option(bank_model: Path) -> None:
    result = CliRunner().invoke(serve_command, [str(bank_model), "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output


def test_a_deployed_server_gets_a_minimal_environment_without_the_deployers_secrets(project, bank_model,
                                                                                     monkeypatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "d3ployer-s3cret")
    dep = deploykit.deploy(bank_model, name="bank")
    try:
        environ = Path(f"/proc/{int(dep.ids['pid'])}/environ")
        if environ.exists():
            assert b"d3ployer-s3cret" not in environ.read_bytes()
    finally:
        deploykit.delete("bank")


def test_relative_certificate_paths_are_read_from_the_credentials_folder(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "server.pem").write_text("pem")
    settings = LocalSettings.model_validate({"certfile": "certs/server.pem"}, context={"base_dir": tmp_path})
    assert settings.certfile == str((tmp_path / "certs" / "server.pem").resolve())
    assert settings.client_verify == settings.certfile  # a self-signed local cert is trusted by default
