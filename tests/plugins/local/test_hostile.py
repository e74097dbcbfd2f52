"""Hostile request bodies through a real server: every one a 4xx naming the problem, never a 500 or a silent cast."""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import pytest

V2 = "/v2/models/bank/infer"
WATSON = "/ml/v4/deployments/bank/predictions"


def _v2(rows: list[dict]) -> dict:
    return {"inputs": [{"name": c, "shape": [len(rows)],
                        "datatype": "INT64" if type(rows[0][c]) is int else "FP64" if type(rows[0][c]) is float
                        else "BYTES", "data": [r[c] for r in rows]} for c in rows[0]]}


def _post(url: str, path: str, body: bytes | str, **headers: str) -> httpx.Response:
    return httpx.post(url + path, content=body, headers={"content-type": "application/json", **headers}, timeout=30)


@pytest.mark.parametrize("parameters", [[1], "columns"])
def test_v2_parameters_that_are_not_an_object_are_400(server: str, rows: list[dict], parameters: object) -> None:
    for tensors in (_v2(rows[:1])["inputs"][:1], _v2(rows)["inputs"]):
        tensors[0]["parameters"] = parameters
        response = _post(server, V2, json.dumps({"inputs": tensors}))
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith("V2 input 'age': 'parameters' must be an object")


def test_v2_deep_data_is_400_not_a_recursion_error(server: str) -> None:
    deep = "[" * 1000 + "1" + "]" * 1000
    response = _post(server, V2, '{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": ' + deep + '}]}')
    assert response.status_code == 400
    assert "'data' is nested more than 32 lists deep" in response.json()["error"]


def test_every_gzip_member_is_decompressed(server: str, rows: list[dict]) -> None:
    body = json.dumps(rows).encode()
    two = gzip.compress(body[:10]) + gzip.compress(body[10:])
    whole = _post(server, "/predict", body).json()
    response = _post(server, "/predict", two, **{"content-encoding": "gzip"})
    assert response.status_code == 200
    assert response.json() == whole
    truncated = _post(server, "/predict", gzip.compress(body)[:-12], **{"content-encoding": "gzip"})
    assert truncated.status_code == 400
    assert "the gzip body is truncated" in truncated.json()["error"]
    trailing = _post(server, "/predict", zlib.compress(body) + b"junk", **{"content-encoding": "deflate"})
    assert trailing.status_code == 400
    assert "the deflate body has 4 bytes after the end of its stream" in trailing.json()["error"]


def test_gzip_members_together_keep_the_size_limit(artifact: object) -> None:
    from deploykit.testing.servers import running
    from deploykit_plugins.local.app import ServerConfig, create_app

    with running(create_app(artifact, ServerConfig(name="bank", max_body_bytes=1000))) as url:  # type: ignore[arg-type]
        member = gzip.compress(b" " * 600)
        response = _post(url, "/predict", member + member, **{"content-encoding": "gzip"})
        assert response.status_code == 413
        assert "decompressed body is over the limit of 1000 bytes" in response.json()["error"]


@pytest.mark.parametrize(("text", "error"), [
    ("1e-400", "got '1e-400' (not a whole number: it only rounds to 0.0 as a 64-bit float)"),
    ("1.0000000000000001", "got '1.0000000000000001' (not a whole number: it only rounds to 1.0"),
    ("-9223372036854775809", "got -9223372036854775809 (outside the 64-bit integer range)"),
])
def test_numbers_that_only_round_to_an_integer_are_422(server: str, rows: list[dict], text: str, error: str) -> None:
    age = str(rows[0]["age"])
    records = json.dumps(rows[:1]).replace(f'"age": {age}', f'"age": {text}')
    split = json.dumps({"dataframe_split": {"columns": list(rows[0]), "data": [list(rows[0].values())]}}) \
        .replace(f"[[{age},", f"[[{text},")
    tensor = _v2(rows[:1])
    tensor["inputs"][0]["datatype"] = "FP64"
    v2 = json.dumps(tensor).replace(f"[{age}]", f"[{text}]")
    for path, body, key in (("/predict", records, "error"), ("/invocations", split, "message"), (V2, v2, "error")):
        assert text in body
        response = _post(server, path, body)
        if path == V2 and text.startswith("-9"):  # an FP64 tensor of a 64-bit-overflowing integer
            assert response.status_code in (400, 422), response.text
            continue
        assert response.status_code == 422, (path, response.text)
        assert error in response.json()[key], (path, response.text)


def test_a_repeated_key_is_400(server: str, rows: list[dict]) -> None:
    body = json.dumps(rows[:1])[:-2] + ', "age": 3}]'
    response = _post(server, "/predict", body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("the JSON body repeats the key 'age' in one object")
    # colons inside strings (times) do not make a body suspect of anything
    assert _post(server, "/predict", json.dumps([dict(rows[0], job="12:00:00")])).status_code == 200


def test_invalid_utf8_in_binary_bytes_is_400_naming_the_offset(server: str) -> None:
    from deploykit.payload import decode_v2_binary

    raw = len(b"ok").to_bytes(4, "little") + b"ok" + (2).to_bytes(4, "little") + b"\xff\xfe"
    header = json.dumps({"inputs": [{"name": "job", "shape": [2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    body = header + raw
    with pytest.raises(Exception, match=r"BYTES element 1 is not valid UTF-8 \(byte 0xff at body offset "
                                        rf"{len(header) + 10}"):
        decode_v2_binary(body, len(header))
    response = httpx.post(server + V2, content=body, headers={"inference-header-content-length": str(len(header))})
    assert response.status_code == 400
    assert "V2 input 'job': BYTES element 1 is not valid UTF-8" in response.json()["error"]


def test_siblings_are_4xx_naming_the_problem(server: str, rows: list[dict]) -> None:
    r0 = rows[0]
    cases: list[tuple[str, bytes | str, dict[str, str], int, str]] = [
        ("/predict", json.dumps([r0]).replace(f'"age": {r0["age"]}', '"age": NaN'), {}, 400, "not valid JSON"),
        ("/predict", json.dumps([r0]).replace(f'"age": {r0["age"]}', '"age": Infinity'), {}, 400, "not valid JSON"),
        ("/predict", "[" * 2000 + "]" * 2000, {}, 400, "not valid JSON"),
        ("/predict", json.dumps({f"c{i}": [1] for i in range(3000)}), {}, 422, "more problems"),
        ("/predict", "age,job\n1,a\x00b\n", {"content-type": "text/csv"}, 400, "holds a NUL character at line 2"),
        ("/predict", "age,job\n1,a\n2\n", {"content-type": "text/csv"}, 400, "the row on line 3 has 1 fields"),
        ("/predict", "age,job\n1,a,3\n", {"content-type": "text/csv"}, 400, "the row on line 2 has 3 fields"),
        (WATSON, json.dumps({"input_data": [{"fields": list(r0), "values": [list(r0.values()), [1]]}]}), {}, 400,
         "input_data[0].values[1] has 1 values; expected 8"),
        (V2, json.dumps({"inputs": [{"name": "age", "shape": [2], "datatype": "INT64", "data": [1]}]}), {}, 400,
         "shape [2] needs 2 values, got 1"),
        (V2, json.dumps({"inputs": [{"name": "age", "shape": [-1], "datatype": "INT64", "data": [1]}]}), {}, 400,
         "non-negative sizes"),
        (V2, json.dumps({"inputs": [{"name": "age", "shape": [2**62, 2**62], "datatype": "INT64", "data": [1]}]}), {},
         400, "needs"),
        (V2, json.dumps({"inputs": [{"name": "job", "shape": [1], "datatype": "INT64", "data": ["x"]}]}), {}, 400,
         "is INT64 but holds 'x'"),
        (V2, json.dumps({"inputs": [{"name": "age", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3],
                                     "parameters": {"columns": "abc"}}]}), {}, 400, "parameters.columns must be a list"),
        ("/predict", json.dumps([r0]), {"content-encoding": "zstd"}, 415, "Content-Encoding 'zstd' is not supported"),
    ]
    for path, body, headers, status, text in cases:
        response = _post(server, path, body, **headers)
        assert response.status_code == status, (path, body[:80], response.text[:300])
        assert text in response.text, (path, body[:80], response.text[:300])
