"""Drive IBM's real ibm-watsonx-ai APIClient against the Watson ML emulator in CPD and Cloud modes."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from ibm_watsonx_ai import APIClient, Credentials
from ibm_watsonx_ai.wml_client_error import WMLClientError
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tests.emulators.fixtures import watson_client, watson_emulator  # noqa: F401  (pytest fixtures)
from tests.emulators.watson import WatsonEmulator

MODES = ["cpd", "cloud"]
FIELDS = ["age", "income", "tenure", "score"]
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    features, _ = make_classification(n_samples=120, n_features=4, n_informative=3, n_redundant=0, random_state=7)
    return pd.DataFrame(features, columns=FIELDS)


def _fit(frame: pd.DataFrame, C: float, flip: bool = False) -> Pipeline:
    _, labels = make_classification(n_samples=120, n_features=4, n_informative=3, n_redundant=0, random_state=7)
    labels = 1 - labels if flip else labels
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=C))]).fit(frame, labels)


@pytest.fixture(scope="module")
def pipeline_v1(frame: pd.DataFrame) -> Pipeline:
    return _fit(frame, C=1.0)


@pytest.fixture(scope="module")
def pipeline_v2(frame: pd.DataFrame) -> Pipeline:
    # Flipped labels make every prediction differ from v1, so a test can tell which revision answered.
    return _fit(frame, C=0.5, flip=True)


def _payload(rows: pd.DataFrame) -> dict[str, Any]:
    return {"input_data": [{"fields": list(rows.columns), "values": rows.values.tolist()}]}


def _assert_matches(result: dict[str, Any], pipeline: Pipeline, rows: pd.DataFrame) -> None:
    (block,) = result["predictions"]
    assert block["fields"] == ["prediction", "probability"]
    labels = [value[0] for value in block["values"]]
    probabilities = [value[1] for value in block["values"]]
    assert labels == pipeline.predict(rows).tolist()
    assert all(isinstance(label, int) for label in labels)
    expected = pipeline.predict_proba(rows)
    assert [len(p) for p in probabilities] == [expected.shape[1]] * len(rows)
    assert sum(probabilities, []) == pytest.approx(expected.ravel().tolist())


def _store(client: APIClient, pipeline: Pipeline, name: str = "churn") -> str:
    names = client.repository.ModelMetaNames
    details = client.repository.store_model(pipeline, meta_props={
        names.NAME: name,
        names.TYPE: "scikit-learn_1.3",
        names.SOFTWARE_SPEC_ID: client.software_specifications.get_id_by_name("runtime-24.1-py3.11"),
    })
    return client.repository.get_model_id(details)


def _deploy(client: APIClient, model_id: str, rev: str | None = None, batch: bool = False) -> str:
    names = client.deployments.ConfigurationMetaNames
    meta: dict[str, Any] = {names.NAME: "churn-online"}
    if batch:
        meta |= {names.BATCH: {}, names.HARDWARE_SPEC: {"name": "S"}}
    else:
        meta[names.ONLINE] = {}
    created = client.deployments.create(model_id, meta, rev_id=rev, background_mode=True)
    assert created["entity"]["status"]["state"] == "initializing"
    return client.deployments.get_id(created)


def _poll(client: APIClient, deployment_id: str, timeout: float = 20.0) -> tuple[dict[str, Any], list[str]]:
    """Poll get_details like a caller with its own timeout would; return final details and the states seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        details = client.deployments.get_details(deployment_id)
        seen.append(details["entity"]["status"]["state"])
        if seen[-1] not in {"initializing", "updating"}:
            return details, seen
        time.sleep(0.05)
    raise AssertionError(f"deployment {deployment_id} still in progress: {seen}")


@pytest.mark.parametrize("mode", MODES)
def test_full_lifecycle_with_revisions(mode: str, watson_emulator: WatsonEmulator, watson_client: Callable[..., APIClient],
                                       frame: pd.DataFrame, pipeline_v1: Pipeline, pipeline_v2: Pipeline) -> None:
    emulator = watson_emulator
    client = watson_client(mode)
    assert client.default_space_id == emulator.space_id
    assert client.software_specifications.get_id_by_name("runtime-24.1-py3.11") == \
        emulator.software_specs["runtime-24.1-py3.11"]

    model_id = _store(client, pipeline_v1)
    uuid.UUID(model_id)
    assert emulator.models[model_id].latest.pickle_bytes
    assert client.repository.create_model_revision(model_id)["metadata"]["rev"] == "1"
    client.repository.update_model(model_id, {client.repository.ModelMetaNames.NAME: "churn-v2"}, pipeline_v2)
    assert client.repository.create_model_revision(model_id)["metadata"]["rev"] == "2"

    deployment_id = _deploy(client, model_id, rev="1")
    details, _ = _poll(client, deployment_id)
    assert details["entity"]["status"]["state"] == "ready"
    assert details["entity"]["asset"] == {"id": model_id, "rev": "1"}
    assert client.deployments.get_scoring_href(details) == \
        f"{emulator.url}/ml/v4/deployments/{deployment_id}/predictions"
    rows = frame.iloc[:7]
    _assert_matches(client.deployments.score(deployment_id, _payload(rows)), pipeline_v1, rows)

    names = client.deployments.ConfigurationMetaNames
    updated = client.deployments.update(deployment_id, {names.ASSET: {"id": model_id, "rev": "2"}},
                                        background_mode=True)
    assert updated["entity"]["status"]["state"] == "updating"
    details, _ = _poll(client, deployment_id)
    assert details["entity"]["asset"] == {"id": model_id, "rev": "2"}
    assert "failure" not in details["entity"]["status"]
    _assert_matches(client.deployments.score(deployment_id, _payload(rows)), pipeline_v2, rows)

    with pytest.raises(WMLClientError, match="existing deployments"):
        client.repository.delete(model_id)
    assert client.deployments.delete(deployment_id) == "SUCCESS"
    assert client.repository.delete(model_id) == "SUCCESS"
    assert emulator.models == {} and emulator.deployments == {}

    token_calls = emulator.calls("POST", r"^/identity/token$")
    cpd_calls = emulator.calls("POST", r"^/icp4d-api/v1/authorize$")
    assert (len(cpd_calls), len(token_calls) > 0) == ((1, False) if mode == "cpd" else (0, True))
    assert emulator.calls("PATCH", r"^/ml/v4/deployments/") and emulator.calls("DELETE", r"^/v2/assets/")


@pytest.mark.parametrize("mode", MODES)
def test_wrong_credentials_are_rejected(mode: str, watson_emulator: WatsonEmulator,
                                        watson_client: Callable[..., APIClient]) -> None:
    with pytest.raises(WMLClientError):
        watson_client(mode, api_key="not-the-key")
    path, status = ("/icp4d-api/v1/authorize", 401) if mode == "cpd" else ("/identity/token", 400)
    assert watson_emulator.calls("POST", f"^{path}$")
    with httpx.Client(verify=ssl.create_default_context(cafile=watson_emulator.ca_path)) as http:
        if mode == "cpd":
            response = http.post(watson_emulator.url + path, json={"username": "admin", "api_key": "nope"})
        else:
            response = http.post(watson_emulator.url + path,
                                 data={"apikey": "nope", "grant_type": "urn:ibm:params:oauth:grant-type:apikey"})
    assert response.status_code == status
    assert response.json()


def test_cpd_password_login_uses_bedrock_flow(watson_emulator: WatsonEmulator,
                                              watson_client: Callable[..., APIClient]) -> None:
    client = watson_client("cpd", api_key=None, password="test-password", bedrock_url=watson_emulator.url)
    assert client.software_specifications.get_id_by_name("runtime-25.1-py3.12")
    assert watson_emulator.calls("POST", r"^/idprovider/v1/auth/identitytoken$")
    assert watson_emulator.calls("GET", r"^/v1/preauth/validateAuth$")
    assert not watson_emulator.calls("POST", r"^/icp4d-api/v1/authorize$")


def test_unknown_space_and_space_paging(watson_emulator: WatsonEmulator,
                                        watson_client: Callable[..., APIClient]) -> None:
    client = watson_client("cpd")
    with pytest.raises(WMLClientError, match="does not exist"):
        client.set.default_space(str(uuid.uuid4()))
    extra = {watson_emulator.add_space(f"space-{i}") for i in range(4)}
    client.set.default_space(watson_emulator.space_id)
    spaces = client.spaces.get_details(limit=2, get_all=True)["resources"]
    assert {s["metadata"]["id"] for s in spaces} == extra | {watson_emulator.space_id}
    assert len(watson_emulator.calls("GET", r"^/v2/spaces$")) == 3
    assert "deploykit-test" in {s["entity"]["name"] for s in spaces}


def test_injected_503_once_is_absorbed_by_client_retry(watson_emulator: WatsonEmulator,
                                                       watson_client: Callable[..., APIClient],
                                                       pipeline_v1: Pipeline) -> None:
    client = watson_client("cpd")
    model_id = _store(client, pipeline_v1)
    watson_emulator.fail_next("POST", r"^/ml/v4/deployments$", 503)
    deployment_id = _deploy(client, model_id)
    # The client's transport retries 401/5xx three times with back-off, so one 503 is invisible to callers.
    assert len(watson_emulator.calls("POST", r"^/ml/v4/deployments$")) == 2
    assert list(watson_emulator.deployments) == [deployment_id]


def test_persistent_503_surfaces_and_other_faults_pass_through(watson_emulator: WatsonEmulator,
                                                               watson_client: Callable[..., APIClient],
                                                               frame: pd.DataFrame, pipeline_v1: Pipeline) -> None:
    client = watson_client("cpd")
    model_id = _store(client, pipeline_v1)
    watson_emulator.fail_next("POST", r"^/ml/v4/deployments$", 503, times=4)
    with pytest.raises(WMLClientError, match="503"):
        _deploy(client, model_id)
    assert len(watson_emulator.calls("POST", r"^/ml/v4/deployments$")) == 4
    assert watson_emulator.deployments == {}

    deployment_id = _deploy(client, model_id)
    _poll(client, deployment_id)
    watson_emulator.fail_next("*", r"/predictions$", 400, body={"errors": [{"code": "x", "message": "custom boom"}]})
    with pytest.raises(WMLClientError, match="custom boom"):
        client.deployments.score(deployment_id, _payload(frame.iloc[:2]))
    _assert_matches(client.deployments.score(deployment_id, _payload(frame.iloc[:2])), pipeline_v1, frame.iloc[:2])


def test_failed_deployment_shows_its_error(watson_emulator: WatsonEmulator, watson_client: Callable[..., APIClient],
                                           frame: pd.DataFrame, pipeline_v1: Pipeline) -> None:
    client = watson_client("cloud")
    model_id = _store(client, pipeline_v1)
    watson_emulator.deployment_outcome = "failed"
    watson_emulator.deployment_failure_message = "Image pull failed for runtime-24.1-py3.11"
    deployment_id = _deploy(client, model_id)
    details, _ = _poll(client, deployment_id)
    assert details["entity"]["status"]["state"] == "failed"
    errors = details["entity"]["status"]["failure"]["errors"]
    assert errors[0]["message"] == "Image pull failed for runtime-24.1-py3.11"
    with pytest.raises(WMLClientError, match="409"):
        client.deployments.score(deployment_id, _payload(frame.iloc[:2]))
    # The knob is one-shot: the next deployment succeeds.
    assert _poll(client, _deploy(client, model_id))[0]["entity"]["status"]["state"] == "ready"


def test_failed_deployment_raises_in_clients_own_wait_loop(watson_emulator: WatsonEmulator,
                                                           watson_client: Callable[..., APIClient],
                                                           pipeline_v1: Pipeline) -> None:
    client = watson_client("cpd")
    model_id = _store(client, pipeline_v1)
    watson_emulator.fail_next_deployment("Out of memory while loading model")
    names = client.deployments.ConfigurationMetaNames
    started = time.monotonic()
    with pytest.raises(WMLClientError, match="Out of memory while loading model"):
        client.deployments.create(model_id, {names.NAME: "sync", names.ONLINE: {}})
    assert time.monotonic() - started >= 5  # the client's fixed sleep before its first poll


def test_failed_asset_update_reverts_to_previous_asset(watson_emulator: WatsonEmulator,
                                                       watson_client: Callable[..., APIClient],
                                                       frame: pd.DataFrame, pipeline_v1: Pipeline,
                                                       pipeline_v2: Pipeline) -> None:
    client = watson_client("cpd")
    model_id = _store(client, pipeline_v1)
    client.repository.create_model_revision(model_id)
    client.repository.update_model(model_id, {client.repository.ModelMetaNames.NAME: "churn-v2"}, pipeline_v2)
    client.repository.create_model_revision(model_id)
    deployment_id = _deploy(client, model_id, rev="1")
    _poll(client, deployment_id)

    watson_emulator.deployment_outcome = "failed"
    watson_emulator.deployment_failure_message = "revision 2 failed health check"
    names = client.deployments.ConfigurationMetaNames
    client.deployments.update(deployment_id, {names.ASSET: {"id": model_id, "rev": "2"}}, background_mode=True)
    details, seen = _poll(client, deployment_id)
    # IBM documents that a failed asset patch rolls back and keeps serving, with the failure recorded.
    assert seen[-1] == "ready" and details["entity"]["asset"] == {"id": model_id, "rev": "1"}
    assert details["entity"]["status"]["failure"]["errors"][0]["message"] == "revision 2 failed health check"
    _assert_matches(client.deployments.score(deployment_id, _payload(frame.iloc[:3])), pipeline_v1, frame.iloc[:3])


def test_ready_after_n_polls(watson_emulator: WatsonEmulator, watson_client: Callable[..., APIClient],
                             frame: pd.DataFrame, pipeline_v1: Pipeline) -> None:
    client = watson_client("cloud")
    model_id = _store(client, pipeline_v1)
    watson_emulator.ready_after_polls = 3
    deployment_id = _deploy(client, model_id)
    with pytest.raises(WMLClientError, match="not ready"):
        client.deployments.score(deployment_id, _payload(frame.iloc[:2]))
    _, seen = _poll(client, deployment_id)
    assert seen == ["initializing"] * 3 + ["ready"]
    _assert_matches(client.deployments.score(deployment_id, _payload(frame.iloc[:2])), pipeline_v1, frame.iloc[:2])


@pytest.mark.parametrize("mode", MODES)
def test_short_lived_tokens_are_refreshed_by_client(mode: str, watson_emulator: WatsonEmulator,
                                                    watson_client: Callable[..., APIClient]) -> None:
    watson_emulator.token_ttl = 2
    client = watson_client(mode)
    token_path = r"^/icp4d-api/v1/authorize$" if mode == "cpd" else r"^/identity/token$"
    before = len(watson_emulator.calls("POST", token_path))
    time.sleep(2.2)  # every token issued so far is now past its exp
    for _ in range(3):
        client.software_specifications.get_id_by_name("runtime-25.1-py3.12")
    # With under 3 minutes of lifetime the client refreshes before every call.
    assert len(watson_emulator.calls("POST", token_path)) >= before + 3


def test_expired_token_is_rejected_with_401(watson_emulator: WatsonEmulator,
                                            watson_client: Callable[..., APIClient]) -> None:
    client = watson_client("cloud")
    client.software_specifications.get_id_by_name("runtime-24.1-py3.11")
    watson_emulator.expire_tokens()
    with pytest.raises(WMLClientError, match="401") as failure:
        client.software_specifications.get_id_by_name("runtime-24.1-py3.11")
    assert "expired" in str(failure.value)
    # Long-lived tokens are not re-checked by the client: its transport just retries the 401 three times.
    assert len(watson_emulator.calls("GET", r"^/v2/software_specifications$")) == 1 + 4
    assert watson_client("cloud").software_specifications.get_id_by_name("runtime-24.1-py3.11")


def test_raw_protocol_errors(watson_emulator: WatsonEmulator, watson_client: Callable[..., APIClient],
                             monkeypatch: pytest.MonkeyPatch, pipeline_v1: Pipeline, frame: pd.DataFrame) -> None:
    url = watson_emulator.url
    client = watson_client("cpd")
    token = client.token
    with httpx.Client(verify=ssl.create_default_context(cafile=watson_emulator.ca_path), base_url=url) as http:
        unauthorized = http.get("/ml/v4/deployments", params={"space_id": watson_emulator.space_id})
        assert unauthorized.status_code == 401
        assert unauthorized.json()["errors"][0]["code"] and unauthorized.json()["trace"]
        forged = http.get("/v2/spaces", headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
        assert forged.status_code == 401

        zen = base64.b64encode(b"admin:test-api-key").decode()
        assert http.get("/v2/spaces", headers={"Authorization": f"ZenApiKey {zen}"}).status_code == 200

        auth = {"Authorization": f"Bearer {token}"}
        assert http.get("/ml/v4/nothing-here", headers=auth).json()["errors"][0]["code"] == "not_found"
        missing = http.get(f"/ml/v4/deployments/{uuid.uuid4()}", headers=auth,
                           params={"space_id": watson_emulator.space_id})
        assert missing.status_code == 404

        model_id = _store(client, pipeline_v1)
        deployment_id = _deploy(client, model_id)
        _poll(client, deployment_id)
        scoring = f"/ml/v4/deployments/{deployment_id}/predictions"
        assert http.post(scoring, headers=auth, content=b"{not json").status_code == 400
        assert http.post(scoring, headers=auth, json={"rows": []}).status_code == 400
        ragged = http.post(scoring, headers=auth, json={"input_data": [{"fields": FIELDS, "values": [[1, 2]]}]})
        assert ragged.status_code == 400 and "4 values" in ragged.json()["errors"][0]["message"]
        assert http.post(f"/ml/v4/deployments/{uuid.uuid4()}/predictions", headers=auth,
                         json=_payload(frame.iloc[:1])).status_code == 404

        def explode(request: Any) -> Any:
            raise RuntimeError("kaboom")

        monkeypatch.setattr(watson_emulator, "_list_sw_specs", explode)
        crashed = http.get("/v2/software_specifications", headers=auth)
        assert crashed.status_code == 500 and "kaboom" in crashed.json()["errors"][0]["message"]
        assert http.get("/ml/wml_services/v2/version").json()["version"] == "5.1.0"

    with pytest.raises(WMLClientError, match="missing required fields"):
        client.deployments.score(deployment_id, _payload(frame[["age", "income"]].iloc[:2]))


def test_batch_deployment_job(watson_emulator: WatsonEmulator, watson_client: Callable[..., APIClient],
                              frame: pd.DataFrame, pipeline_v1: Pipeline) -> None:
    client = watson_client("cloud")
    model_id = _store(client, pipeline_v1)
    deployment_id = _deploy(client, model_id, batch=True)
    details, _ = _poll(client, deployment_id)
    assert "batch" in details["entity"] and details["entity"]["hardware_spec"]["name"] == "S"
    rows = frame.iloc[:10]
    job = client.deployments.create_job(deployment_id, {
        client.deployments.ScoringMetaNames.INPUT_DATA: [{"fields": FIELDS, "values": rows.values.tolist()}],
    })
    assert job["entity"]["scoring"]["status"]["state"] == "queued"
    job_id = client.deployments.get_job_id(job)
    states = [client.deployments.get_job_status(job_id)["state"] for _ in range(2)]
    assert states == ["running", "completed"]
    scoring = client.deployments.get_job_details(job_id)["entity"]["scoring"]
    _assert_matches({"predictions": scoring["predictions"]}, pipeline_v1, rows)
    with pytest.raises(WMLClientError, match="batch"):
        client.deployments.score(deployment_id, _payload(rows))


def test_cloud_mode_upload_ignores_verify_without_swagger_ca(watson_emulator: WatsonEmulator,
                                                             watson_client: Callable[..., APIClient],
                                                             pipeline_v1: Pipeline) -> None:
    from ibm_watsonx_ai.libs.repo.swagger_client.configuration import Configuration

    os.environ.pop("DEPLOYMENT_PLATFORM", None)
    Configuration().ssl_ca_cert = None
    client = APIClient(Credentials(**watson_emulator.credentials("cloud")))
    client.set.default_space(watson_emulator.space_id)
    with pytest.raises(WMLClientError, match="CERTIFICATE_VERIFY_FAILED"):
        _store(client, pipeline_v1)
    assert watson_emulator.models == {}


def test_reset_empties_state_but_keeps_space_and_tokens(watson_emulator: WatsonEmulator,
                                                        watson_client: Callable[..., APIClient],
                                                        pipeline_v1: Pipeline) -> None:
    client = watson_client("cpd")
    model_id = _store(client, pipeline_v1)
    _deploy(client, model_id)
    watson_emulator.ready_after_polls = 5
    watson_emulator.fail_next("GET", ".", 500, times=10)
    space_id = watson_emulator.space_id
    watson_emulator.reset()
    assert watson_emulator.models == {} and watson_emulator.deployments == {} and watson_emulator.requests == []
    assert watson_emulator.ready_after_polls == 0 and list(watson_emulator.spaces) == [space_id]
    assert _store(client, pipeline_v1) in watson_emulator.models


def test_standalone_entry_point_prints_connection_details() -> None:
    process = subprocess.Popen([sys.executable, "-m", "tests.emulators.watson", "--port", "0"], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(lines)
        assert "https://127.0.0.1:" in text and "ca.pem" in text
        assert "username: \"admin\"" in text and "auth_url:" in text and "platform_url:" in text
        url = next(line.split()[-1] for line in lines if line.startswith("Watson ML emulator listening"))
        ca = next(line.split()[-1] for line in lines if line.startswith("CA bundle"))
        with httpx.Client(verify=ssl.create_default_context(cafile=ca)) as http:
            assert http.get(url + "/ml/wml_services/v2/version").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


# ----- deployable Python functions with a package extension on a custom software specification -----

FUNCTION_CODE = '''\
def gen(factor=3):
    import os

    from emu_pkg import scale

    def score(payload):
        block = payload["input_data"][0]
        if block["values"] and block["values"][0][0] == "boom":
            raise ValueError("boom is not a number")
        return {"predictions": [{"fields": ["scaled", "pid"],
                                 "values": [[scale(row[0], factor), os.getpid()] for row in block["values"]]}]}

    return score


score = gen()
'''


def _sdist(folder: Path, setup: str = "") -> Path:
    """A pip_zip package extension: a source distribution of the package emu_pkg."""
    import zipfile

    archive = folder / "emu_pkg-1.0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("emu_pkg-1.0/setup.py", setup or "from setuptools import setup\n"
                    "setup(name='emu_pkg', version='1.0', packages=['emu_pkg'])\n")
        zf.writestr("emu_pkg-1.0/emu_pkg/__init__.py", "def scale(x, factor):\n    return x * factor\n")
    return archive


def _function_on_custom_spec(client: APIClient, tmp_path: Path, setup: str = "") -> tuple[str, str, str]:
    """(package extension id, software spec id, function id) stored through the real client."""
    import gzip

    pe_names = client.package_extensions.ConfigurationMetaNames
    ext = client.package_extensions.store({pe_names.NAME: "emu-pkg", pe_names.TYPE: "pip_zip"},
                                          str(_sdist(tmp_path, setup)))
    ext_id = client.package_extensions.get_id(ext)
    sw_names = client.software_specifications.ConfigurationMetaNames
    spec = client.software_specifications.store({
        sw_names.NAME: "emu-spec", sw_names.BASE_SOFTWARE_SPECIFICATION: {
            "guid": client.software_specifications.get_id_by_name("runtime-25.1-py3.12")}})
    spec_id = client.software_specifications.get_id(spec)
    assert client.software_specifications.add_package_extension(spec_id, ext_id) == "SUCCESS"
    code = tmp_path / "function.py.gz"
    code.write_bytes(gzip.compress(FUNCTION_CODE.encode()))
    fn_names = client.repository.FunctionMetaNames
    stored = client.repository.store_function(str(code), {fn_names.NAME: "scaler", fn_names.SOFTWARE_SPEC_ID: spec_id,
                                                          fn_names.TAGS: ["emu"]})
    return ext_id, spec_id, stored["metadata"]["id"]


@pytest.mark.parametrize("mode", MODES)
def test_python_function_runs_in_its_own_process_with_its_package_extension(
        mode: str, watson_emulator: WatsonEmulator, watson_client: Callable[..., APIClient], tmp_path: Path) -> None:
    emulator = watson_emulator
    client = watson_client(mode)
    ext_id, spec_id, function_id = _function_on_custom_spec(client, tmp_path)
    assert emulator.package_extensions[ext_id].complete
    spec = client.software_specifications.get_details(spec_id)
    assert [e["metadata"]["asset_id"] for e in spec["entity"]["software_specification"]["package_extensions"]] == [ext_id]
    assert client.repository.create_function_revision(function_id)["metadata"]["rev"] == "1"

    deployment_id = _deploy(client, function_id, rev="1")
    details, _ = _poll(client, deployment_id, timeout=120)
    assert details["entity"]["status"]["state"] == "ready", details["entity"]["status"]
    assert details["entity"]["deployed_asset_type"] == "function"
    result = client.deployments.score(deployment_id, {"input_data": [{"fields": ["x"], "values": [[2], [5]]}]})
    (block,) = result["predictions"]
    assert [row[0] for row in block["values"]] == [6, 15]  # the generator's default, the extension's code
    assert {row[1] for row in block["values"]} != {os.getpid()}  # scored in another process

    with pytest.raises(WMLClientError) as raised:
        client.deployments.score(deployment_id, {"input_data": [{"fields": ["x"], "values": [["boom"]]}]})
    assert "ValueError: boom is not a number" in str(raised.value)
    assert "400" in str(raised.value)
    again = client.deployments.score(deployment_id, {"input_data": [{"fields": ["x"], "values": [[1]]}]})
    assert again["predictions"][0]["values"][0][0] == 3

    batch_id = _deploy(client, function_id, rev="1", batch=True)
    assert _poll(client, batch_id, timeout=120)[0]["entity"]["status"]["state"] == "ready"
    job = client.deployments.create_job(batch_id, {client.deployments.ScoringMetaNames.INPUT_DATA: [
        {"fields": ["x"], "values": [[4]]}]})
    job_id = job["metadata"]["id"]
    deadline = time.monotonic() + 60
    while (state := client.deployments.get_job_details(job_id)["entity"]["scoring"]["status"]["state"]) not in \
            ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state == "completed"
    assert client.deployments.get_job_details(job_id)["entity"]["scoring"]["predictions"][0]["values"][0][0] == 12

    for dep in (deployment_id, batch_id):
        client.deployments.delete(dep)
    client.repository.delete(function_id)
    client.software_specifications.delete(spec_id)
    client.package_extensions.delete(ext_id)
    assert not (emulator.functions or emulator.custom_software_specs or emulator.package_extensions
                or emulator.deployments)


def test_a_package_extension_that_does_not_install_fails_the_deployment(
        watson_emulator: WatsonEmulator, watson_client: Callable[..., APIClient], tmp_path: Path) -> None:
    client = watson_client("cpd")
    _, _, function_id = _function_on_custom_spec(client, tmp_path, setup="raise SystemExit('setup.py is broken')\n")
    deployment_id = _deploy(client, function_id)
    details, _ = _poll(client, deployment_id, timeout=120)
    status = details["entity"]["status"]
    assert status["state"] == "failed"
    assert "installing the package extension" in status["failure"]["errors"][0]["message"]


def test_a_cloud_upload_url_needs_its_signature(watson_emulator: WatsonEmulator,
                                                watson_client: Callable[..., APIClient]) -> None:
    client = watson_client("cloud")
    names = client.package_extensions.ConfigurationMetaNames
    response = client.httpx_client.post(url=client._href_definitions.get_pkg_extns_href(), params=client._params(),
                                        headers=client._get_headers(),
                                        json={names.NAME: "unsigned", names.TYPE: "pip_zip"})
    href = response.json()["entity"]["package_extension"]["href"]
    assert href.startswith(watson_emulator.url) and "signature=" in href
    forged = httpx.put(href.split("&signature=")[0] + "&signature=0", content=b"zip", verify=watson_emulator.ca_path)
    assert forged.status_code == 403
    assert httpx.put(href, content=b"zip", verify=watson_emulator.ca_path).status_code == 201
