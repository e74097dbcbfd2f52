"""The watsonml section on the settings base: ca_bundle (relative to the credentials file) reaches the client."""

from __future__ import annotations

import os
import shutil
import warnings

import pytest
import yaml

import deploykit
from deploykit.credentials import load_section, validate_section
from deploykit.errors import CredentialsError
from deploykit.settings import TargetSettings
from deploykit_plugins.watsonml.settings import WatsonSettings
from tests.plugins.watsonml.conftest import WatsonProject, expected, watson_section


def test_watson_settings_are_target_settings() -> None:
    assert issubclass(WatsonSettings, TargetSettings)
    undocumented = [name for name, field in WatsonSettings.model_fields.items() if not field.description]
    assert undocumented == []


def test_ca_bundle_relative_to_the_credentials_file_reaches_the_client(watson_project: WatsonProject,
                                                                       bank_model, bank_rows,
                                                                       tmp_path_factory) -> None:
    emu = watson_project.emulator
    elsewhere = tmp_path_factory.mktemp("cwd-elsewhere")
    certs = watson_project.dir / "certs"
    certs.mkdir()
    shutil.copy(emu.ca_path, certs / "watson-ca.pem")
    section = watson_section(emu, watson_project.mode, verify=None, ca_bundle="certs/watson-ca.pem")
    watson_project.credentials.write_text(yaml.safe_dump({"watsonml": section}))

    settings = validate_section(WatsonSettings, load_section("watsonml", watson_project.credentials), "watsonml")
    assert settings.verify is True and settings.tls_verify == str(certs / "watson-ca.pem")

    os.chdir(elsewhere)  # the path is read from the credentials file's folder, not the cwd
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # the new spelling never warns
            dep = deploykit.deploy(bank_model, target="watsonml", name="bank-model",
                                   credentials=watson_project.credentials,
                                   metadata=watson_project.metadata)
        assert dep.status == "ready"
        labels, _ = expected(bank_model, bank_rows)
        scored = deploykit.score("bank-model", bank_rows, credentials=watson_project.credentials,
                                 metadata=watson_project.metadata)
        assert scored.labels == labels
        deploykit.delete("bank-model", credentials=watson_project.credentials, metadata=watson_project.metadata)
    finally:
        os.chdir(watson_project.dir)
    assert emu.models == {}


def test_without_ca_bundle_the_emulators_certificate_is_refused(cpd_project: WatsonProject, bank_model) -> None:
    cpd_project.write_credentials(verify=None)
    with pytest.raises(CredentialsError) as info:
        deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    assert "is not trusted with watsonml.verify = True" in str(info.value)
    assert "watsonml.ca_bundle" in str(info.value)


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"ca_bundle": "missing-ca.pem"}, "'ca_bundle' = 'missing-ca.pem'"),
    ({"verify": "maybe"}, "'verify' = 'maybe': Value error, is neither true/false nor an existing file"),
    ({"verify": False, "ca_bundle": "CA"}, "watsonml.verify = false turns the TLS check off"),
])
def test_bad_tls_values_are_named(cpd_project: WatsonProject, changes: dict, fragment: str) -> None:
    if changes.get("ca_bundle") == "CA":
        changes["ca_bundle"] = cpd_project.emulator.ca_path
    section = watson_section(cpd_project.emulator, "cpd", **({"verify": None} | changes))
    cpd_project.credentials.write_text(yaml.safe_dump({"watsonml": section}))
    with pytest.raises(CredentialsError) as info:
        validate_section(WatsonSettings, load_section("watsonml", cpd_project.credentials), "watsonml")
    assert fragment in str(info.value)
    assert cpd_project.emulator.api_key not in str(info.value)
