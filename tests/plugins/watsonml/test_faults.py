"""Faults on the Watson side: retries, failed deployments, expired tokens, wrong credentials, bad payloads."""

from __future__ import annotations

import socket

import pytest
import yaml

import deploykit
from deploykit.errors import CredentialsError, DeploymentError, DeploymentTimeout, ScoringError
from tests.plugins.watsonml.conftest import WatsonProject, expected

DEPLOYMENT = r"^/ml/v4/deployments/[0-9a-f-]{36}$"


def _nothing_recorded(project: WatsonProject) -> bool:
    if not project.metadata.exists():
        return True
    return not (yaml.safe_load(project.metadata.read_text()) or {}).get("deployments")


def test_transient_503_while_polling_is_retried(cpd_project: WatsonProject, bank_model) -> None:
    emu = cpd_project.emulator
    emu.fail_next("GET", DEPLOYMENT, 503, times=4)  # the client's own retries give up after 4
    seen: list[str] = []
    dep = deploykit.deploy(bank_model, target="watsonml", name="bank-model", progress=seen.append)
    assert dep.status == "ready"
    assert len(emu.calls("GET", DEPLOYMENT)) >= 5
    assert any("503" in message and "retry 1/" in message for message in seen)


def test_429_is_retried_and_stores_one_model(watson_project: WatsonProject, bank_model) -> None:
    emu = watson_project.emulator
    emu.fail_next("POST", r"^/ml/v4/models$", 429, times=1)  # the client never retries a 429 itself
    dep = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    assert dep.status == "ready"
    assert len(emu.calls("POST", r"^/ml/v4/models$")) == 2
    assert list(emu.models) == [dep.ids["model_uid"]]


def test_endless_429_fails_clearly_and_leaves_nothing(cpd_project: WatsonProject, bank_model) -> None:
    emu = cpd_project.emulator
    cpd_project.write_credentials(max_retries=1)
    emu.fail_next("POST", r"^/ml/v4/models$", 429, times=10)
    with pytest.raises(DeploymentError, match=r"storing model 'bank-model'.*HTTP 429.*rate-limiting after 1 retries"):
        deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    assert emu.models == {} and _nothing_recorded(cpd_project)


def test_failed_deployment_is_reported_and_removed(watson_project: WatsonProject, bank_model) -> None:
    emu = watson_project.emulator
    emu.fail_next_deployment("runtime-25.1-py3.12 could not load scikit_model.pkl")
    with pytest.raises(DeploymentError, match=r"could not start deployment 'bank-model'.*could not load scikit_model\.pkl"):
        deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    assert emu.models == {} and emu.deployments == {}
    assert _nothing_recorded(watson_project)


def test_failed_deployment_whose_cleanup_fails_is_recorded(cpd_project: WatsonProject, bank_model) -> None:
    emu = cpd_project.emulator
    cpd_project.write_credentials(max_retries=0)
    emu.fail_next_deployment("no capacity")
    emu.fail_next("DELETE", DEPLOYMENT, 500, times=4)
    with pytest.raises(DeploymentError, match="recorded in .* with status 'failed'"):
        deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    record = cpd_project.record()
    assert record["status"] == "failed"
    assert set(emu.models) == {record["ids"]["model_uid"]} and set(emu.deployments) == {record["ids"]["deployment_uid"]}

    deploykit.delete("bank-model")  # what the message tells the user to run
    assert emu.models == {} and emu.deployments == {} and _nothing_recorded(cpd_project)


def test_rejected_deployment_request_removes_the_stored_model(cpd_project: WatsonProject, bank_model) -> None:
    emu = cpd_project.emulator
    emu.fail_next("POST", r"^/ml/v4/deployments$", 400,
                  body={"errors": [{"code": "invalid_hardware_spec", "message": "hardware spec XXL is unknown"}],
                        "status_code": 400})
    with pytest.raises(DeploymentError, match=r"creating online deployment 'bank-model'.*hardware spec XXL is unknown"):
        deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    assert len(emu.calls("POST", r"^/ml/v4/models$")) == 1
    assert emu.models == {} and emu.deployments == {}


def test_failed_update_rolls_back_to_the_serving_revision(watson_project: WatsonProject, bank_model, bank_model_v2,
                                                          bank_rows) -> None:
    emu = watson_project.emulator
    first = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    emu.fail_next_deployment("out of memory while loading the model")
    with pytest.raises(DeploymentError, match=r"revision 2 .*out of memory.*rolled back to revision 1"):
        deploykit.deploy(bank_model_v2, target="watsonml", name="bank-model")
    record = watson_project.record()
    assert record["revision"] == 1 and record["ids"]["deployment_uid"] == first.ids["deployment_uid"]
    assert record["ids"]["model_rev"] == "1"
    assert emu.deployments[first.ids["deployment_uid"]].doc["entity"]["asset"]["rev"] == "1"
    probabilities = deploykit.score("bank-model", bank_rows).probabilities
    assert sum(probabilities, []) == pytest.approx(sum(expected(bank_model, bank_rows)[1], []))


def test_expired_token_is_refreshed_mid_deploy(watson_project: WatsonProject, bank_model) -> None:
    emu = watson_project.emulator
    emu.ready_after_polls = 2
    token_route = r"^/icp4d-api/v1/authorize$" if watson_project.mode == "cpd" else r"^/identity/token$"
    expired: list[str] = []

    def expire_once(message: str) -> None:
        if message.startswith("waiting for") and not expired:
            expired.append(message)
            emu.expire_tokens()

    dep = deploykit.deploy(bank_model, target="watsonml", name="bank-model", progress=expire_once)
    assert dep.status == "ready" and expired
    assert len(emu.calls("POST", token_route)) == 2


def test_deploy_timeout_removes_what_it_created(cpd_project: WatsonProject, bank_model) -> None:
    emu = cpd_project.emulator
    emu.ready_after_polls = 10_000
    with pytest.raises(DeploymentTimeout, match="Watson deployment 'bank-model'"):
        deploykit.deploy(bank_model, target="watsonml", name="bank-model", timeout=0.2)
    assert emu.models == {} and emu.deployments == {} and _nothing_recorded(cpd_project)


def test_a_payload_watson_refuses_names_the_problem(cpd_project: WatsonProject, bank_model, bank_rows) -> None:
    deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    rows = [{k: v for k, v in row.items() if k != "age"} for row in bank_rows[:2]]
    with pytest.raises(ScoringError, match=r"scoring 2 row\(s\) on 'bank-model'.*HTTP 400.*missing required fields.*age.*"
                                           r"send rows with the model's columns \(age, job,"):
        deploykit.score("bank-model", rows)


def test_password_login_on_cloud_pak_for_data(cpd_project: WatsonProject, bank_model) -> None:
    emu = cpd_project.emulator
    cpd_project.write_credentials(api_key=None, password=emu.password, bedrock_url=emu.url)
    assert deploykit.deploy(bank_model, target="watsonml", name="bank-model").status == "ready"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BAD_CREDENTIALS = [
    ("cpd", {"api_key": "wrong-key-123"}, ["watsonml.api_key", "'admin'", "rejected"]),
    ("cpd", {"username": "mallory"}, ["watsonml.username = 'mallory'", "rejected"]),
    ("cloud", {"apikey": "wrong-key-123"}, ["watsonml.apikey", "rejected", "Provided API key could not be found"]),
    ("cloud", {"apikey": None}, ["'apikey' is missing"]),
    ("cpd", {"space_id": "00000000-0000-4000-8000-000000000000"},
     ["watsonml.space_id = '00000000-0000-4000-8000-000000000000' does not exist", "'deploykit-test'"]),
    ("cloud", {"space_id": None, "space_name": "no-such-space"}, ["watsonml.space_name = 'no-such-space'", "'deploykit-test'"]),
    ("cpd", {"space_id": None}, ["'space_id' is missing"]),
    ("cpd", {"url": "http://127.0.0.1:9"}, ["'url' = 'http://127.0.0.1:9'", "https://"]),
    ("cpd", {"verify": True}, ["watsonml.verify = True", "CA bundle"]),
    ("cloud", {"verify": "/no/such/ca.pem"}, ["'verify' = '/no/such/ca.pem'", "CA bundle"]),
    ("cpd", {"spaceid": "x"}, ["'spaceid' is not a watsonml setting"]),
    ("cpd", {"version": "4.0"}, ["watsonml.version = '4.0'"]),
]


@pytest.mark.parametrize(("mode", "overrides", "fragments"), BAD_CREDENTIALS,
                         ids=[f"{m}-{'-'.join(o)}" for m, o, _ in BAD_CREDENTIALS])
def test_bad_credentials_name_the_key(project, watson_emulator, bank_model, mode, overrides, fragments) -> None:
    proj = WatsonProject(project.dir, project.credentials, project.metadata, watson_emulator, mode)
    proj.write_credentials(**overrides)
    with pytest.raises(CredentialsError) as info:
        deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert "wrong-key-123" not in message and watson_emulator.api_key not in message
    assert watson_emulator.models == {} and _nothing_recorded(proj)


def test_an_unreachable_url_is_named(project, watson_emulator, bank_model) -> None:
    proj = WatsonProject(project.dir, project.credentials, project.metadata, watson_emulator, "cpd")
    url = f"https://127.0.0.1:{_closed_port()}"
    proj.write_credentials(url=url)
    with pytest.raises(CredentialsError, match=f"watsonml.url = '{url}' cannot be reached"):
        deploykit.deploy(bank_model, target="watsonml", name="bank-model")


def test_failed_update_into_a_new_asset_is_recorded_when_it_cannot_be_removed(cpd_project: WatsonProject, bank_model,
                                                                              bank_model_v2, bank_rows) -> None:
    emu = cpd_project.emulator
    cpd_project.write_credentials(model_type="scikit-learn_1.3")
    first = deploykit.deploy(bank_model, target="watsonml", name="bank-model")
    cpd_project.write_credentials(max_retries=0)  # the new runtime needs a new model asset
    emu.fail_next("PATCH", DEPLOYMENT, 400, body={"errors": [{"code": "bad", "message": "asset patch refused"}]})
    emu.fail_next("DELETE", r"^/(ml/v4/models|v2/assets)/", 500, times=4)
    with pytest.raises(DeploymentError, match="asset patch refused.*recorded with status 'failed'"):
        deploykit.deploy(bank_model_v2, target="watsonml", name="bank-model")
    record = cpd_project.record()
    orphan = record["ids"]["model_uid"]
    assert record["status"] == "failed" and record["revision"] == 2 and orphan != first.ids["model_uid"]
    assert set(emu.models) == {first.ids["model_uid"], orphan}
    assert [entry["ids"]["model_uid"] for entry in record["history"]] == [first.ids["model_uid"]]

    assert deploykit.rollback("bank-model").revision == 1  # the serving revision is still reachable
    probabilities = deploykit.score("bank-model", bank_rows).probabilities
    assert sum(probabilities, []) == pytest.approx(sum(expected(bank_model, bank_rows)[1], []))
    deploykit.delete("bank-model")
    assert emu.models == {} and emu.deployments == {}
