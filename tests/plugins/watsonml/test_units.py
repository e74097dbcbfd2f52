"""Pure logic of the watsonml target: runtime mapping, settings checks, retry and error parsing."""

from __future__ import annotations

import email.utils
import subprocess
import sys
from pathlib import Path

import pytest

from deploykit.artifact import Artifact
from deploykit.credentials import validate_section
from deploykit.errors import CredentialsError, DeploymentError
from deploykit.schema import Schema
from deploykit_plugins.watsonml.client import http_status, parse_retry_after, watson_reason
from deploykit_plugins.watsonml.runtime import resolve_runtime
from deploykit_plugins.watsonml.settings import WatsonSettings

BASE = {"url": "https://us-south.ml.cloud.ibm.com", "apikey": "s3cret-key", "space_id": "6f1e0000-0000-4000-8000-000000000001"}


def _artifact(framework: str, version: str | None) -> Artifact:
    return Artifact(Path("m.joblib"), "0" * 64, object(), framework, version, Schema([]))


@pytest.mark.parametrize(("version", "model_type", "spec"), [
    ("1.3.2", "scikit-learn_1.3", "runtime-24.1-py3.11"),
    ("1.1.3", "scikit-learn_1.3", "runtime-24.1-py3.11"),  # older pickles load in a newer runtime
    ("1.5.1", "scikit-learn_1.6", "runtime-25.1-py3.12"),
    ("1.6.1", "scikit-learn_1.6", "runtime-25.1-py3.12"),
    ("1.9.1", "scikit-learn_1.6", "runtime-25.1-py3.12"),  # newer than every runtime: the newest, with a note
])
def test_scikit_learn_versions_map_to_the_nearest_runtime(version: str, model_type: str, spec: str) -> None:
    runtime = resolve_runtime(_artifact("scikit-learn", version))
    assert (runtime.model_type, runtime.software_spec) == (model_type, spec)
    assert ("may not load" in runtime.note) == (version == "1.9.1")


def test_overrides_win_and_fill_in_the_other_half() -> None:
    sk = _artifact("scikit-learn", "1.6.1")
    assert resolve_runtime(sk, model_type="scikit-learn_1.3").software_spec == "runtime-24.1-py3.11"
    assert resolve_runtime(sk, software_spec="runtime-24.1-py3.11").model_type == "scikit-learn_1.3"
    both = resolve_runtime(_artifact("xgboost", "2.1.0"), "xgboost_2.1", "runtime-25.1-py3.12")
    assert (both.model_type, both.software_spec) == ("xgboost_2.1", "runtime-25.1-py3.12")


def test_an_unmapped_framework_asks_for_the_overrides() -> None:
    with pytest.raises(DeploymentError, match="xgboost 2.1.0 model.*watsonml.model_type and watsonml.software_spec"):
        resolve_runtime(_artifact("xgboost", "2.1.0"))


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("86400") == 60.0  # capped
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 5, usegmt=True), now=now) == pytest.approx(5.0)
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


def test_status_and_reason_from_client_errors() -> None:
    text = ('deployment deletion failed. Reason: {"trace": "t", "errors": [{"code": "deployment_not_found", '
            '"message": "Deployment with id \'x\' does not exist."}], "status_code": 404}')
    error = RuntimeError(text)
    assert http_status(error) == 404
    assert watson_reason(error) == ("Deployment with id 'x' does not exist.", "deployment_not_found")
    iam = RuntimeError('Attempt failed. Error: {"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."}')
    assert watson_reason(iam) == ("Provided API key could not be found.", "BXNIM0415E")
    assert http_status(RuntimeError("no status here")) is None


def _validate(**changes: object) -> WatsonSettings:
    section = {k: v for k, v in (BASE | changes).items() if v is not None}
    return validate_section(WatsonSettings, section | {"__source__": "credentials.yaml"}, "watsonml")  # type: ignore[no-any-return]


def test_settings_accept_both_platforms_and_yaml_types() -> None:
    cloud = _validate()
    assert cloud.secret_key() == "s3cret-key" and cloud.verify is True
    cpd = _validate(apikey=None, username="admin", api_key="k", version=5.1, verify="false")
    assert cpd.version == "5.1" and cpd.verify is False


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"url": "http://wml.example.com"}, "'url' = 'http://wml.example.com': Value error, must start with https://"),
    ({"verify": "/missing/ca.pem"}, "'verify' = '/missing/ca.pem'"),
    ({"space": "x"}, "'space' is not a watsonml setting"),
    ({"max_retries": -1}, "'max_retries' = -1"),
])
def test_settings_errors_name_the_key_and_value(changes: dict, fragment: str) -> None:
    with pytest.raises(CredentialsError) as info:
        _validate(**changes)
    assert fragment in str(info.value) and "s3cret-key" not in str(info.value)


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"apikey": None}, "'apikey' is missing"),
    ({"apikey": None, "password": "pw"}, "'password' needs 'username'"),
    ({"apikey": None, "username": "admin"}, "username = 'admin' selects Cloud Pak for Data, which also needs 'api_key'"),
    ({"api_key": "other"}, "both 'apikey' and 'api_key' are set"),
    ({"space_id": None}, "'space_id' is missing"),
    ({"space_name": "s"}, "both space_id"),
])
def test_cross_key_checks_name_the_keys(changes: dict, fragment: str) -> None:
    with pytest.raises(CredentialsError, match=fragment.replace("(", r"\(")) as info:
        _validate(**changes)
    assert "s3cret-key" not in str(info.value) and "other" not in str(info.value)


def test_importing_deploykit_and_registering_the_target_stay_cheap() -> None:
    code = ("import sys, deploykit\n"
            "from deploykit.plugins import get_registry\n"
            "assert 'watsonml' in get_registry().names()\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('ibm_watsonx_ai', 'pandas'))\n"
            "print(heavy)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
