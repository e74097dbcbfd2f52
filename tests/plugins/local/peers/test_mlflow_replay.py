"""MLflow's scoring-server cases against ``deploykit serve`` and ``mlflow models serve`` on the same
model directory: the same status, error code and predictions, except the deliberate differences
recorded (with their reasons) in ``cases_mlflow``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.plugins.local.peers.cases import Answer, MlflowCase, Request
from tests.plugins.local.peers.cases_mlflow import CASES, RECORDS, ROWS, post
from tests.plugins.local.peers.conftest import PeerServers


def send(url: str, request: Request) -> httpx.Response:
    return httpx.request(request.method, url + request.path, content=request.content(),
                         headers=request.all_headers(), timeout=60)


def answer(response: httpx.Response) -> Answer:
    """The status, and the error_code of an MLflow JSON error body."""
    code = None
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        code = body.get("error_code") if isinstance(body, dict) else None
    return Answer(response.status_code, code)


def predictions(response: httpx.Response) -> Any:
    return response.json()["predictions"]


def _client_call(url: str, what: str) -> tuple[Answer, Any]:
    """Run one ``ScoringServerClient`` method unchanged against ``url``: (200, its result) or raise."""
    import pandas as pd
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    host, port = url.rsplit("//", 1)[1].split(":")
    client = ScoringServerClient(host, int(port))
    if what == "wait_server_ready":
        client.wait_server_ready(timeout=20)
        return Answer(200), None
    if what == "invoke":
        return Answer(200), client.invoke(pd.DataFrame(ROWS)).get_predictions(predictions_format="ndarray").tolist()
    return Answer(200), client.get_version()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_mlflow_case(case: MlflowCase, peers: PeerServers) -> None:
    mlflow_url, ours_url = peers.url("mlflow", case.model), peers.url("deploykit", case.model)
    if case.client is not None:
        (theirs, their_result), (ours, our_result) = _client_call(mlflow_url, case.client), \
            _client_call(ours_url, case.client)
        assert (theirs, ours) == (case.mlflow, case.deploykit)
        assert our_result == their_result
        return
    assert case.request is not None
    their_response, our_response = send(mlflow_url, case.request), send(ours_url, case.request)
    # The recorded peer answer is the live one: the table in docs/protocols.md cannot go stale.
    assert answer(their_response) == case.mlflow, their_response.text[:500]
    assert answer(our_response) == case.deploykit, our_response.text[:500]
    if case.deploykit != case.mlflow or (case.asserted and not _meets(case.deploykit, case.asserted)):
        assert case.deliberate, f"{case.id}: deploykit answers {case.deploykit}, the peer {case.mlflow}; " \
                                "a difference must be recorded as deliberate, with the reason"
    if case.deploykit.status == 200:
        reference = their_response if case.mlflow.status == 200 else send(mlflow_url, case.same_predictions_as)
        if case.compare_body:
            assert our_response.text == reference.text
        elif case.request.path == "/invocations":
            assert predictions(our_response) == predictions(reference)


def _meets(ours: Answer, asserted: Answer) -> bool:
    return ours.status == asserted.status and (asserted.error_code is None or ours.error_code == asserted.error_code)


def test_every_case_mlflows_tests_assert_passes_or_is_deliberate() -> None:
    asserted = [c for c in CASES if c.asserted is not None]
    passed = [c for c in asserted if _meets(c.deploykit, c.asserted)]
    assert all(c.deliberate for c in asserted if c not in passed)
    assert len(asserted) >= 25 and len(passed) >= len(asserted) - 4


def test_params_are_checked_and_reach_a_pyfunc_model(peers: PeerServers) -> None:
    url = peers.url("deploykit", "echo")
    doubled = httpx.post(f"{url}/invocations", json={"dataframe_records": [{"x": 1}, {"x": 2}],
                                                     "params": {"scale": 2.0}})
    assert doubled.json() == {"predictions": [2.0, 4.0]}
    bad = httpx.post(f"{url}/invocations", json={"dataframe_records": [{"x": 1}], "params": {"scale": "abc"}})
    assert bad.status_code == 400
    body = bad.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'scale'" in body["message"] and "'abc'" in body["message"] and "double" in body["message"]


def test_a_bad_datetime_param_is_a_400_naming_it(peers: PeerServers) -> None:
    response = send(peers.url("deploykit", "mixed"),
                    post({"dataframe_records": ROWS, "params": {"param1": "invalid_value1"}}))
    assert response.status_code == 400
    assert "'param1'" in response.json()["message"] and "datetime" in response.json()["message"]


def test_scoring_server_client_runs_unchanged_with_params(peers: PeerServers) -> None:
    import pandas as pd
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    host, port = peers.url("deploykit", "echo").rsplit("//", 1)[1].split(":")
    client = ScoringServerClient(host, int(port))
    client.wait_server_ready(timeout=20)
    result = client.invoke(pd.DataFrame({"x": [1, 5]}), params={"scale": 3.0})
    assert result.get_predictions(predictions_format="ndarray").tolist() == [3.0, 15.0]
    assert client.get_version() == __import__("mlflow").__version__


def test_records_body_scores_the_same_on_both(peers: PeerServers) -> None:
    ours = send(peers.url("deploykit", "mixed"), post(RECORDS))
    theirs = send(peers.url("mlflow", "mixed"), post(RECORDS))
    assert predictions(ours) == predictions(theirs)
