"""Fixtures for the watsonml target: the Watson emulator, a project folder whose credentials point at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import yaml

from tests.emulators.fixtures import CLIENT_ENV_VARS, watson_client, watson_emulator  # noqa: F401  (pytest fixtures)
from tests.emulators.watson import WatsonEmulator

MODES = ["cpd", "cloud"]


def watson_section(emulator: WatsonEmulator, mode: str, **overrides: Any) -> dict[str, Any]:
    """A ``watsonml`` credentials section for the emulator in ``mode`` (keys as a user writes them)."""
    creds = emulator.credentials(mode)
    if mode == "cloud":
        section = {"url": creds["url"], "apikey": creds["api_key"], "platform_url": creds["platform_url"],
                   "auth_url": creds["auth_url"]}
    else:
        section = {"url": creds["url"], "username": creds["username"], "api_key": creds["api_key"],
                   "version": creds["version"]}
    section.update({"space_id": emulator.space_id, "verify": creds["verify"]})
    section.update(overrides)
    return {k: v for k, v in section.items() if v is not None}


@dataclass
class WatsonProject:
    """A project folder (the cwd) with credentials.yaml pointing at a running emulator."""

    dir: Path
    credentials: Path
    metadata: Path
    emulator: WatsonEmulator
    mode: str

    def write_credentials(self, **overrides: Any) -> None:
        """Rewrite credentials.yaml with the emulator's section, keys overridden (None removes a key)."""
        section = watson_section(self.emulator, self.mode, **overrides)
        self.credentials.write_text(yaml.safe_dump({"watsonml": section}))

    def record(self, name: str = "bank-model") -> dict[str, Any]:
        """The watsonml record of ``name`` as written in metadata.yaml."""
        return yaml.safe_load(self.metadata.read_text())["deployments"][name]["watsonml"]  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def client_process_state() -> Iterator[None]:
    """Fail a test whose Watson calls leak the client's environment variables; restore the CA setting."""
    from ibm_watsonx_ai.libs.repo.swagger_client.configuration import Configuration

    before = {name: os.environ.get(name) for name in CLIENT_ENV_VARS}
    saved_ca = Configuration().ssl_ca_cert
    yield
    after = {name: os.environ.get(name) for name in CLIENT_ENV_VARS}
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    Configuration().ssl_ca_cert = saved_ca
    assert after == before, "the Watson client's environment variables leaked out of the target"


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Each test runs against the emulator as Cloud Pak for Data and as IBM Cloud."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def watson_project(project: Any, watson_emulator: WatsonEmulator, mode: str) -> WatsonProject:
    """The ``project`` folder with a watsonml section for the emulator in ``mode``."""
    proj = WatsonProject(project.dir, project.credentials, project.metadata, watson_emulator, mode)
    proj.write_credentials()
    return proj


@pytest.fixture
def cpd_project(project: Any, watson_emulator: WatsonEmulator) -> WatsonProject:
    """Like ``watson_project`` but Cloud Pak for Data only, for tests of one code path."""
    proj = WatsonProject(project.dir, project.credentials, project.metadata, watson_emulator, "cpd")
    proj.write_credentials()
    return proj


def expected(model: Path, rows: list[dict[str, Any]]) -> tuple[list[Any], list[list[float]]]:
    """What the model file answers in process: labels and class probabilities."""
    fitted = joblib.load(model)
    frame = pd.DataFrame(rows)
    return fitted.predict(frame).tolist(), fitted.predict_proba(frame).tolist()
