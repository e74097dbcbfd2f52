"""Pytest fixtures that run the Watson ML emulator and build real ibm-watsonx-ai clients against it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.emulators.watson import WatsonEmulator

# The client writes these into os.environ and never removes them; a CPD client leaves
# DEPLOYMENT_PLATFORM=private behind, which silently turns off TLS checks for later Cloud clients.
CLIENT_ENV_VARS = ("WX_CLIENT_VERIFY_REQUESTS", "DEPLOYMENT_PLATFORM", "DEPLOYMENT_PRIVATE")


@pytest.fixture
def watson_emulator() -> Iterator[WatsonEmulator]:
    """A fresh emulator per test (start-up is ~20 ms: two EC keys and a socket)."""
    with WatsonEmulator() as emulator:
        yield emulator


def make_watson_client(emulator: WatsonEmulator, mode: str = "cpd", *, set_space: bool = True,
                       **overrides: Any) -> Any:
    """A real APIClient for `mode` ("cpd" or "cloud"), with the emulator's CA passed as verify."""
    from ibm_watsonx_ai import APIClient, Credentials
    from ibm_watsonx_ai.libs.repo.swagger_client.configuration import Configuration

    if mode == "cloud":
        # The model-upload sub-client (urllib3 via swagger) ignores `verify` in Cloud mode and
        # trusts only its process-global Configuration, which defaults to certifi.
        os.environ.pop("DEPLOYMENT_PLATFORM", None)
        os.environ.pop("DEPLOYMENT_PRIVATE", None)
        Configuration().ssl_ca_cert = emulator.ca_path
    client = APIClient(Credentials(**(emulator.credentials(mode) | overrides)))
    if set_space:
        client.set.default_space(emulator.space_id)
    return client


@pytest.fixture
def watson_client(watson_emulator: WatsonEmulator) -> Iterator[Callable[..., Any]]:
    """Factory fixture: watson_client("cpd"|"cloud", **credential_overrides) -> APIClient; restores process state."""
    from ibm_watsonx_ai.libs.repo.swagger_client.configuration import Configuration

    saved_env = {name: os.environ.get(name) for name in CLIENT_ENV_VARS}
    saved_ca = Configuration().ssl_ca_cert
    try:
        yield lambda mode="cpd", **overrides: make_watson_client(watson_emulator, mode, **overrides)
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        Configuration().ssl_ca_cert = saved_ca
