"""The V2 binary tensor extension as KServe's and Triton's clients read and write it (our own
code, written from KServe's ``InferRequest.to_rest`` / ``InferResponse.from_bytes`` semantics):
a JSON header, then each binary tensor's raw bytes in order, the header's length in
``Inference-Header-Content-Length``, each binary tensor's byte size in ``parameters.binary_data_size``;
BYTES elements are a 4-byte little-endian length and the bytes."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

HEADER = "inference-header-content-length"
NUMPY = {"BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
         "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64, "FP16": np.float16,
         "FP32": np.float32, "FP64": np.float64}


def bf16_bytes(values: Any) -> bytes:
    """float32 values as BF16 (the upper half of each float32, little-endian)."""
    as_int = np.asarray(values, dtype="<f4").view("<u4")
    return (as_int >> 16).astype("<u2").tobytes()


def binary_body(inputs: list[dict[str, Any]], raw: list[bytes], **extra: Any) -> tuple[bytes, dict[str, str]]:
    """A request body with binary inputs; each input dict lacks ``data`` and gets its
    ``binary_data_size`` from ``raw``; returns (body, headers)."""
    tensors = [dict(t, parameters={**t.get("parameters", {}), "binary_data_size": len(r)})
               for t, r in zip(inputs, raw)]
    header = json.dumps({"inputs": tensors, **extra}).encode()
    return header + b"".join(raw), {HEADER: str(len(header)), "content-type": "application/octet-stream"}


def decode_outputs(content: bytes, headers: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(the JSON header, output name -> flat values), reading binary outputs where announced."""
    length = headers.get(HEADER)
    split = int(length) if length is not None else len(content)
    head = json.loads(content[:split])
    offset, values = split, {}
    for out in head.get("outputs", []):
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is None:
            values[out["name"]] = np.asarray(out["data"], dtype=object).reshape(-1).tolist()
            continue
        chunk = content[offset:offset + size]
        offset += size
        if out["datatype"] == "BYTES":
            items, i = [], 0
            while i < len(chunk):
                (n,) = struct.unpack_from("<I", chunk, i)
                items.append(chunk[i + 4:i + 4 + n].decode())
                i += 4 + n
            values[out["name"]] = items
        else:
            values[out["name"]] = np.frombuffer(chunk, dtype=NUMPY[out["datatype"]]).tolist()
    if offset != len(content):
        raise AssertionError(f"{len(content) - offset} bytes after the last announced binary output")
    return head, values
