"""Open Inference Protocol V2 expectations, replayed against ``deploykit serve``.

Sources, read from kserve/kserve (the requests and checks are ours):
- ``docs/predict-api/v2/required_api.md`` (spec): the required endpoints, the JSON and error
  objects, ``id``, requested outputs, nested and flat data, the datatypes table.
- ``python/kserve/test/test_server.py`` ``TestV2Endpoints`` (kserve test): list models, parameters,
  FP16 in and out, binary outputs (``binary_data_output``, per-output ``binary_data``, precedence).
- ``python/kserve/kserve/errors.py`` and ``protocol/infer_type.py``: 404/400 ``{"error"}``.
- ``test/e2e/predictor/test_sklearn.py`` with ``test/e2e/data/iris_input_v2*.json`` (e2e).
- tritonclient (C*): the real ``tritonclient.http`` client, binary in and out.

Models: ``iris`` (KServe's e2e rows are class 1) and ``mixed`` (age long, income double, city
string, member boolean) for the datatypes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.plugins.local.peers.cases import Request, V2Case
from tests.plugins.local.peers.models import IRIS_COLUMNS, IRIS_ROWS, mixed_rows
from tests.plugins.local.peers.v2wire import HEADER, bf16_bytes, binary_body, decode_outputs

SPEC = "required_api.md"
SERVER_TEST = "kserve test_server.py TestV2Endpoints"
E2E = "kserve e2e test_sklearn.py"
ERRORS = "kserve errors.py / infer_type.py"
ROWS = mixed_rows(3)
IRIS = "/v2/models/iris"
MIXED = "/v2/models/mixed"
E2E_INPUT = {"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": IRIS_ROWS}
LENIENT = ("the spec lets a server coerce each element to the required type; an FP16 value sent as a JSON "
           "number is exact in FP64, so deploykit scores it")


def get(path: str) -> Request:
    return Request("GET", path, content_type=None)


def infer(path: str, body: Any, content_type: str = "application/json") -> Request:
    return Request("POST", path + "/infer", body, content_type)


def columns(**override: tuple[str, list[Any]]) -> list[dict[str, Any]]:
    """The mixed rows as one V2 tensor per column, with some columns' (datatype, data) replaced
    (or dropped, with ``None``)."""
    kinds = {"age": "INT64", "income": "FP64", "city": "BYTES", "member": "BOOL"}
    out = []
    for name, kind in kinds.items():
        datatype, data = override.get(name, (kind, [r[name] for r in ROWS]))
        if datatype is not None:
            out.append({"name": name, "shape": [len(data)], "datatype": datatype, "data": data})
    return out


def mixed(**override: Any) -> Request:
    return infer(MIXED, {"inputs": columns(**override)})


def binary(path: str, datatype: str, raw: bytes, **extra: Any) -> Request:
    body, headers = binary_body([{"name": "input-0", "shape": [2, 4], "datatype": datatype}], [raw], **extra)
    return Request("POST", path + "/infer", body, None, tuple(headers.items()))


# -- checks: each gets the live response and what the models answer in process (``want``) -------

def _show(r: Any) -> str:
    return f"{r.status_code} {r.headers.get('content-type')} {r.content[:300]!r}"


def status(code: int) -> Any:
    def check(r: Any, want: dict[str, Any]) -> None:
        assert r.status_code == code, _show(r)
    return check


def error(*codes: int) -> Any:
    """A failed request: one of ``codes`` and the spec's ``{"error": string}`` object."""
    def check(r: Any, want: dict[str, Any]) -> None:
        assert r.status_code in codes, _show(r)
        assert isinstance(r.json().get("error"), str), _show(r)
    return check


def predicts(model: str, binary: bool | None = False, name: str = "predict", only: list[str] | None = None,
             extra: Any = None) -> Any:
    """200 with output ``name`` equal to the in-process labels of ``model``; ``binary``: True if
    it must come as binary data, False as JSON ``data``, None either way."""
    def check(r: Any, want: dict[str, Any]) -> None:
        assert r.status_code == 200, _show(r)
        head, values = decode_outputs(r.content, r.headers)
        assert values[name] == want[model], (values, want[model])
        out = next(o for o in head["outputs"] if o["name"] == name)
        if binary is not None:
            assert ("binary_data_size" in (out.get("parameters") or {})) is binary, head
            assert (HEADER in r.headers) is (binary or any("binary_data_size" in (o.get("parameters") or {})
                                                           for o in head["outputs"])), dict(r.headers)
        if only is not None:
            assert [o["name"] for o in head["outputs"]] == only, head
        if extra is not None:
            extra(r, head, values, want)
    return check


def _metadata(r: Any, want: dict[str, Any]) -> None:
    assert r.status_code == 200, _show(r)
    body = r.json()
    assert body["name"] == "iris" and isinstance(body["platform"], str), body
    for tensor in body["inputs"] + body["outputs"]:
        assert set(tensor) >= {"name", "datatype", "shape"}, tensor
    assert [t["name"] for t in body["inputs"]] == IRIS_COLUMNS, body


def _server_metadata(r: Any, want: dict[str, Any]) -> None:
    assert r.status_code == 200, _show(r)
    body = r.json()
    assert isinstance(body["name"], str) and isinstance(body["version"], str), body
    assert isinstance(body["extensions"], list), body


def _json_type(r: Any, head: Any, values: Any, want: Any) -> None:
    assert r.headers["content-type"] == "application/json", dict(r.headers)
    assert head["model_name"] == "iris", head


def _id(r: Any, head: Any, values: Any, want: Any) -> None:
    assert head["id"] == "42", head


def _proba_json(r: Any, head: Any, values: Any, want: Any) -> None:
    proba = next(o for o in head["outputs"] if o["name"] == "predict_proba")
    assert "binary_data_size" not in (proba.get("parameters") or {}) and len(proba["data"]) == 6, head


def _proba_binary(r: Any, head: Any, values: Any, want: Any) -> None:
    assert [round(v, 9) for v in values["predict_proba"]] == [round(v, 9) for v in want["iris_proba"]]


def _list_models(r: Any, want: dict[str, Any]) -> None:
    assert r.status_code == 200, _show(r)
    assert r.json() == {"models": ["iris"]}, r.json()


# -- tritonclient ---------------------------------------------------------------------------------

def _triton_inputs(binary: bool) -> list[Any]:
    import numpy as np
    import tritonclient.http as httpclient

    inputs = []
    for name, kind in (("age", "INT64"), ("income", "FP64"), ("city", "BYTES"), ("member", "BOOL")):
        values = np.array([[r[name]] for r in ROWS], dtype=object if kind == "BYTES" else None)
        tensor = httpclient.InferInput(name, list(values.shape), kind)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def triton_binary_outputs(host: str) -> Any:
    """tritonclient, binary inputs and ``InferRequestedOutput(name, binary_data=True)``."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(host)
    outputs = [httpclient.InferRequestedOutput("predict", binary_data=True),
               httpclient.InferRequestedOutput("predict_proba", binary_data=True)]
    return client.infer("mixed", _triton_inputs(True), outputs=outputs, request_id="r1")


def triton_default(host: str) -> Any:
    """tritonclient with no outputs named: it asks for every output as binary data."""
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(host).infer("mixed", _triton_inputs(True))


def _triton_check(r: Any, want: dict[str, Any]) -> None:
    labels = [v.decode() if isinstance(v, bytes) else v for v in r.as_numpy("predict").reshape(-1).tolist()]
    assert labels == want["mixed"], labels
    assert r.as_numpy("predict_proba").tolist() == want["mixed_proba"]
    for name in ("predict", "predict_proba"):
        assert "binary_data_size" in (r.get_output(name).get("parameters") or {}), r.get_response()


CASES: list[V2Case] = [
    # -- health and metadata -------------------------------------------------------------------------
    V2Case("V01", "GET /v2/health/live", SPEC, get("/v2/health/live"), "200", status(200)),
    V2Case("V02", "GET /v2/health/ready", SPEC, get("/v2/health/ready"), "200", status(200)),
    V2Case("V03", "model ready", SPEC, get(f"{IRIS}/ready"), "200", status(200)),
    V2Case("V04", "model ready, with a version", SPEC, get(f"{IRIS}/versions/1/ready"), "200", status(200)),
    V2Case("V05", "GET /v2 server metadata", SPEC, get("/v2"), "200 `{name, version, extensions}`",
           _server_metadata),
    V2Case("V06", "model metadata", SPEC, get(IRIS), "200 `{name, platform, inputs, outputs}` of tensors",
           _metadata),
    V2Case("V07", "model metadata, with a version", SPEC, get(f"{IRIS}/versions/1"), "200, as V06", _metadata),
    V2Case("V08", "metadata of an unknown model", ERRORS, get("/v2/models/nope"), '404 `{"error"}`', error(404)),
    V2Case("V09", "readiness of an unknown model", ERRORS, get("/v2/models/nope/ready"), '404 `{"error"}`',
           error(404)),
    V2Case("V10", "metadata of an unknown version", ERRORS, get(f"{IRIS}/versions/9"), '404 `{"error"}`',
           error(404)),
    V2Case("V11", "infer on an unknown model", ERRORS, infer("/v2/models/nope", {"inputs": [E2E_INPUT]}),
           '404 `{"error"}`', error(404)),
    V2Case("V12", "infer on an unknown version", ERRORS, infer(f"{IRIS}/versions/9", {"inputs": [E2E_INPUT]}),
           '404 `{"error"}`', error(404)),
    V2Case("V13", "GET /v2/models lists the models", f"{SERVER_TEST} test_list_models_v2", get("/v2/models"),
           '200 `{"models": [...]}`', _list_models),
    # -- inference -----------------------------------------------------------------------------------
    V2Case("V14", "e2e iris tensor `[2, 4]` FP32, nested data", f"{E2E} iris_input_v2.json; test_infer_v2",
           infer(IRIS, {"inputs": [E2E_INPUT]}), "200 application/json, outputs[0] `[1, 1]`",
           predicts("iris", extra=_json_type)),
    V2Case("V15", "e2e `outputs: [{name: output-0, binary_data: true}]`", f"{E2E} iris_input_v2_binary.json",
           infer(IRIS, {"inputs": [E2E_INPUT], "outputs": [{"name": "output-0", "parameters": {"binary_data": True}}]}),
           "200, outputs[0] `[1, 1]`", predicts("iris", binary=None), ours="400 naming `predict`, `predict_proba`",
           check_ours=error(400),
           deliberate="output names follow MLServer, KServe's V2 sklearn runtime (`predict`, `predict_proba`); "
                      "`output-0` is KServe's own sklearnserver's name; an unknown output is a 400 naming the real ones"),
    V2Case("V16", "e2e `parameters.binary_data_output: true`", f"{E2E} iris_input_v2_all_binary.json; "
           f"{SERVER_TEST} test_all_output_as_binary_data",
           infer(IRIS, {"inputs": [E2E_INPUT], "parameters": {"binary_data_output": True}}),
           "200, every output binary (`binary_data_size`, `Inference-Header-Content-Length`), outputs[0] `[1, 1]`",
           predicts("iris", binary=True, extra=_proba_binary)),
    V2Case("V17", "flat data for a `[2, 4]` tensor", SPEC,
           infer(IRIS, {"inputs": [dict(E2E_INPUT, data=[v for row in IRIS_ROWS for v in row])]}),
           "200, `[1, 1]`", predicts("iris")),
    V2Case("V18", "`id` is echoed", SPEC, infer(IRIS, {"id": "42", "inputs": [E2E_INPUT]}), '200 with `id: "42"`',
           predicts("iris", extra=_id)),
    V2Case("V19", "one `[n, 1]` tensor per column, nested data", SPEC,
           infer(IRIS, {"inputs": [{"name": c, "shape": [2, 1], "datatype": "FP32",
                                    "data": [[row[i]] for row in IRIS_ROWS]} for i, c in enumerate(IRIS_COLUMNS)]}),
           "200, `[1, 1]`", predicts("iris")),
    V2Case("V20", "column tensors with `parameters.content_type: pd`", f"{E2E} sklearn_mixed_v2.json",
           infer(IRIS, {"parameters": {"content_type": "pd"},
                        "inputs": [{"name": c, "shape": [2], "datatype": "FP32", "data": [row[i] for row in IRIS_ROWS]}
                                   for i, c in enumerate(IRIS_COLUMNS)]}),
           "200, `[1, 1]`", predicts("iris")),
    V2Case("V21", "request and per-input `parameters`", f"{SERVER_TEST} test_infer_parameters_v2",
           infer(IRIS, {"id": "42", "parameters": {"test-str": "dummy", "test-bool": True, "test-int": 100,
                                                    "test-float": 1.3},
                        "inputs": [dict(E2E_INPUT, parameters={"test-str": "dummy", "test-int": 100})]}),
           "200, `[1, 1]`", predicts("iris", extra=_id)),
    V2Case("V22", "requested outputs: only `predict`", SPEC,
           infer(IRIS, {"inputs": [E2E_INPUT], "outputs": [{"name": "predict"}]}), "200 with only that output",
           predicts("iris", only=["predict"])),
    V2Case("V23", "per-output `binary_data: true`", f"{SERVER_TEST} test_fp16_output_as_binary_data",
           infer(IRIS, {"inputs": [E2E_INPUT], "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]}),
           "200, that output binary with `binary_data_size`, `Inference-Header-Content-Length`",
           predicts("iris", binary=True, only=["predict"])),
    V2Case("V24", "`binary_data_output` with a per-output `binary_data: false`",
           f"{SERVER_TEST} test_binary_data_parameter_precedence",
           infer(IRIS, {"inputs": [E2E_INPUT], "parameters": {"binary_data_output": True},
                        "outputs": [{"name": "predict", "parameters": {"binary_data": True}},
                                    {"name": "predict_proba", "parameters": {"binary_data": False}}]}),
           "200, the per-output setting wins: `predict` binary, `predict_proba` JSON",
           predicts("iris", binary=True, extra=_proba_json)),
    V2Case("V25", "an unknown requested output", ERRORS,
           infer(IRIS, {"inputs": [E2E_INPUT], "outputs": [{"name": "nope"}]}), '400 `{"error"}`', error(400)),
    # -- datatypes (the spec's table) --------------------------------------------------------------
    *[V2Case(f"D{i:02d}", f"{kind} into the long column `age`", f"{SPEC} datatypes",
             mixed(age=(kind, [r["age"] for r in ROWS])), "200", predicts("mixed"), model="mixed")
      for i, kind in enumerate(["INT8", "INT16", "INT32", "UINT8", "UINT16", "UINT32", "UINT64"], start=1)],
    V2Case("D08", "FP32 into the double column `income`", f"{SPEC} datatypes",
           mixed(income=("FP32", [r["income"] for r in ROWS])), "200", predicts("mixed"), model="mixed"),
    V2Case("D09", "INT64 into the double column `income`", f"{SPEC} datatypes",
           mixed(income=("INT64", [int(r["income"]) for r in ROWS])), "200",
           predicts("mixed_int_income"), model="mixed"),
    V2Case("D10", "BOOL and BYTES columns", f"{SPEC} datatypes", mixed(), "200", predicts("mixed"), model="mixed"),
    V2Case("D11", "FP16 as JSON numbers", f"{SERVER_TEST} test_fp16_input_not_binary_data",
           infer(IRIS, {"inputs": [dict(E2E_INPUT, datatype="FP16")]}), "400 (KServe refuses FP16 in JSON)",
           error(400), ours="200, `[1, 1]`", check_ours=predicts("iris"), deliberate=LENIENT),
    V2Case("D12", "FP16 as binary data", f"{SERVER_TEST} test_fp16_input_as_binary_data",
           binary(IRIS, "FP16", np.asarray(IRIS_ROWS, dtype="<f2").tobytes()), "200, `[1, 1]`",
           predicts("iris")),
    V2Case("D13", "BF16 as JSON numbers", f"{SPEC} tensor data; {ERRORS} (no BF16 dtype)",
           infer(IRIS, {"inputs": [dict(E2E_INPUT, datatype="BF16")]}), '400 `{"error"}`', error(400)),
    V2Case("D14", "BF16 as binary data", f"{SPEC} datatypes table", binary(IRIS, "BF16", bf16_bytes(IRIS_ROWS)),
           "200, `[1, 1]`", predicts("iris")),
    V2Case("D15", "FP32 as binary data, output as binary", f"{SERVER_TEST} test_fp16_input_as_binary_data",
           binary(IRIS, "FP32", np.asarray(IRIS_ROWS, dtype="<f4").tobytes(),
                  parameters={"binary_data_output": True}),
           "200, binary outputs, `[1, 1]`", predicts("iris", binary=True)),
    # -- errors: the spec's error object -------------------------------------------------------------
    V2Case("E01", "malformed JSON", SPEC, infer(IRIS, "{not json"), '400 `{"error"}`', error(400)),
    V2Case("E02", "`{}`", SPEC, infer(IRIS, {}), '400 `{"error"}`', error(400)),
    V2Case("E03", "an input without `datatype`", SPEC,
           infer(IRIS, {"inputs": [{k: v for k, v in E2E_INPUT.items() if k != "datatype"}]}), '400 `{"error"}`',
           error(400)),
    V2Case("E04", "datatype `FP8`", SPEC, infer(IRIS, {"inputs": [dict(E2E_INPUT, datatype="FP8")]}),
           '400 `{"error"}`', error(400)),
    V2Case("E05", "shape `[2, 4]` with 7 values", SPEC,
           infer(IRIS, {"inputs": [dict(E2E_INPUT, data=[1.0] * 7)]}), '400 `{"error"}`', error(400)),
    V2Case("E06", '`"a"` in an INT64 tensor', SPEC, mixed(age=("INT64", ["a", 1, 2])), '400 `{"error"}`',
           error(400), model="mixed"),
    V2Case("E07", "`-1` in a UINT8 tensor", SPEC, mixed(age=("UINT8", [-1, 1, 2])), '400 `{"error"}`', error(400),
           model="mixed"),
    V2Case("E08", "ragged column tensors", SPEC, mixed(income=("FP64", [1.0, 2.0])), '400 `{"error"}`',
           error(400), model="mixed"),
    V2Case("E09", "a missing column tensor", SPEC, mixed(income=(None, [])), 'a 4xx `{"error"}`',
           error(400, 422), model="mixed"),
    V2Case("E10", "an extra tensor", SPEC,
           infer(MIXED, {"inputs": [*columns(), {"name": "extra", "shape": [3], "datatype": "INT64",
                                                 "data": [1, 2, 3]}]}),
           'coerce or a 4xx `{"error"}` (the spec lets the server choose); deploykit: 422', error(400, 422),
           model="mixed"),
    V2Case("E11", "`41.7` in FP64 for the long column", SPEC, mixed(age=("FP64", [41.7, 30, 50])),
           'coerce or a 4xx `{"error"}`; deploykit: 422 (no silent cast)', error(400, 422), model="mixed"),
    V2Case("E12", '`"41"` in BYTES for the long column', SPEC, mixed(age=("BYTES", ["41", "30", "50"])),
           'coerce or a 4xx `{"error"}`; deploykit: 422', error(400, 422), model="mixed"),
    V2Case("E13", "INT64 `0`/`1` for the boolean column", SPEC, mixed(member=("INT64", [0, 1, 0])),
           'coerce or a 4xx `{"error"}`; deploykit: 422', error(400, 422), model="mixed"),
    # -- the real tritonclient -------------------------------------------------------------------------
    V2Case("C01", "tritonclient: binary inputs, `InferRequestedOutput(name, binary_data=True)`, `as_numpy`",
           "tritonclient.http", triton_binary_outputs, "both outputs binary; `as_numpy` equals the labels",
           _triton_check, model="mixed"),
    V2Case("C02", "tritonclient with no outputs named (it sets `binary_data_output`)", "tritonclient.http",
           triton_default, "every output binary; `as_numpy` equals the labels", _triton_check, model="mixed"),
]

EXPECTATIONS = len(CASES)
MET = sum(case.meets for case in CASES)
