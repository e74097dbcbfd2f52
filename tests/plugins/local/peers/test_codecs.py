"""The protocol pieces the replays need, as pure functions: MLflow's Content-Type rule and params
check, the V2 binary outputs and BF16, Parquet bodies, the header-less CSV hint."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from deploykit.errors import PayloadError
from deploykit.payload import csv, decode_table, mlflow, v2
from tests.plugins.local.peers.v2wire import bf16_bytes, binary_body, decode_outputs

PARAMS = [{"name": "when", "type": "datetime", "default": "2023-07-01", "shape": None},
          {"name": "k", "type": "integer", "default": 3, "shape": None},
          {"name": "scale", "type": "double", "default": 1.0, "shape": None},
          {"name": "flag", "type": "boolean", "default": False, "shape": None},
          {"name": "tags", "type": "string", "default": ["a"], "shape": [-1]}]


@pytest.mark.parametrize(("content_type", "refused"), [
    ("application/json", None), ("application/json; charset=UTF-8", None), ("text/csv;charset=utf8", None),
    ("", None), ("application/json; something=something", "something"),
    ("application/json; charset=latin-1", "latin-1"), ("text/csv; charset=utf-8; header=present", "header")])
def test_mlflows_content_type_rule(content_type: str, refused: str | None) -> None:
    problem = mlflow.content_type_problem(content_type)
    assert (problem is None) is (refused is None)
    if refused:
        assert refused in problem and content_type in problem


def test_params_that_fit_are_kept_and_undeclared_ones_dropped() -> None:
    sent = {"when": "2024-02-29T12:00:00", "k": 5, "scale": 2, "flag": True, "tags": ["x", "y"], "other": 1}
    assert mlflow.check_params(sent, PARAMS) == {k: v for k, v in sent.items() if k != "other"}
    assert mlflow.check_params({"other": 1}, PARAMS) is None
    assert mlflow.check_params(None, PARAMS) is None
    assert mlflow.check_params({"anything": object()}, None) is None  # no params schema: ignored, as MLflow does


@pytest.mark.parametrize(("params", "named", "expected"), [
    ({"when": "invalid_value1"}, "'when'", "date-time"), ({"k": 1.5}, "'k'", "whole number"),
    ({"k": 2**40}, "'k'", "32 bits"), ({"k": True}, "'k'", "whole number"), ({"scale": "abc"}, "'scale'", "number"),
    ({"flag": 1}, "'flag'", "true or false"), ({"tags": "x"}, "'tags'", "list"), ({"tags": [1]}, "'tags'", "string")])
def test_a_param_that_does_not_fit_is_named(params: dict, named: str, expected: str) -> None:
    with pytest.raises(PayloadError) as info:
        mlflow.check_params(params, PARAMS)
    assert named in str(info.value) and expected in str(info.value)


def test_params_must_be_an_object() -> None:
    with pytest.raises(PayloadError, match="'params' must be an object"):
        mlflow.check_params([1], PARAMS)


def test_model_facts_of_a_file_are_empty(tmp_path) -> None:
    facts = mlflow.model_facts(tmp_path)
    assert (facts.mlflow_version, facts.params) == (None, None)
    (tmp_path / "MLmodel").write_text("mlflow_version: 3.1.0\nsignature:\n  params: '" + json.dumps(PARAMS) + "'\n")
    facts = mlflow.model_facts(tmp_path)
    assert (facts.mlflow_version, facts.params) == ("3.1.0", PARAMS)


def test_binary_outputs_precedence() -> None:
    names = ["predict", "predict_proba"]
    assert v2.binary_outputs({"inputs": []}, names) == set()
    assert v2.binary_outputs({"parameters": {"binary_data_output": True}}, names) == set(names)
    assert v2.binary_outputs({"parameters": {"binary_data_output": True}, "outputs": [
        {"name": "predict_proba", "parameters": {"binary_data": False}}]}, names) == {"predict"}
    assert v2.binary_outputs({"outputs": [{"name": "predict", "parameters": {"binary_data": True}}]}, names) == \
        {"predict"}


def test_binary_response_reads_back_as_kserve_and_triton_read_it() -> None:
    answer = {"model_name": "m", "outputs": [
        {"name": "predict", "shape": [2], "datatype": "BYTES", "data": ["no", "yës"]},
        {"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [0.25, 0.75, 0.5, 0.5]},
        {"name": "n", "shape": [2], "datatype": "INT64", "data": [1, -2]}]}
    request = {"parameters": {"binary_data_output": True},
               "outputs": [{"name": "predict"}, {"name": "predict_proba", "parameters": {"binary_data": False}},
                           {"name": "n"}]}
    body, length = v2.encode_binary_response(answer, request)
    head, values = decode_outputs(body, {"inference-header-content-length": str(length)})
    assert values == {"predict": ["no", "yës"], "predict_proba": [0.25, 0.75, 0.5, 0.5], "n": [1, -2]}
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 4 + 2 + 4 + 4}
    assert "data" not in head["outputs"][0] and "data" in head["outputs"][1]
    assert v2.encode_binary_response(answer, {"inputs": []}) is None


def test_bf16_is_read_from_binary_data_only() -> None:
    values = [[6.8, 2.8], [4.5, -1.25]]
    body, headers = binary_body([{"name": "x", "shape": [2, 2], "datatype": "BF16"}], [bf16_bytes(values)])
    request = v2.decode_binary_request(body, headers["inference-header-content-length"])
    truncated = (np.asarray(values, dtype="<f4").view("<u4") & 0xFFFF0000).view("<f4").reshape(-1)
    assert request["inputs"][0]["data"].tolist() == truncated.tolist()
    assert decode_table(request, ["x0", "x1"], "v2").rows == 2
    with pytest.raises(PayloadError, match="BF16 with JSON data.*binary data"):
        decode_table({"inputs": [{"name": "x", "shape": [2], "datatype": "BF16", "data": [1.0, 2.0]}]}, ["x"], "v2")


def test_parquet_keeps_column_types() -> None:
    frame = pd.DataFrame({"age": [41, 30], "income": [1.5, 2.0], "city": ["Nice", None], "member": [True, False]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    table = decode_table(buffer.getvalue(), None, "parquet")
    assert table.rows == 2
    assert [table.columns[c].tolist() for c in frame.columns] == [[41, 30], [1.5, 2.0], ["Nice", None],
                                                                 [True, False]]
    with pytest.raises(PayloadError, match="not Parquet"):
        decode_table(b'{"a": 1}', None, "parquet")
    with pytest.raises(PayloadError, match="could not be read"):
        decode_table(b"PAR1 and then nothing", None, "parquet")


def test_header_less_csv_hint() -> None:
    names = ["age", "city"]
    assert "the first line was read as the header ('41,Nice')" in csv.missing_header_hint("41,Nice\n30,Lyon\n", names)
    assert csv.missing_header_hint("age,town\n41,Nice\n", names) is None  # a header with a typo is not this case
    assert csv.missing_header_hint("41,Nice\n", []) is None
