"""SageMaker data capture read back as logged inputs, for ``deploykit drift``.

An endpoint config with ``DataCaptureConfig`` makes SageMaker write the requests (and answers)
it samples to S3 as JSON Lines, under
``{DestinationS3Uri}/{endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl``; each line is one request::

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "...", "encoding": "JSON"},
                     "endpointOutput": {...}},
     "eventMetadata": {"eventId": "...", "inferenceTime": "2026-12-01T17:25:49Z"},
     "eventVersion": "0"}

``encoding`` is ``JSON`` or ``CSV`` for the content types the config lists in
``CaptureContentTypeHeader`` (deploykit lists ``application/json`` and ``text/csv``), else
``BASE64``. :func:`read_capture` decodes every captured request with deploykit's codecs (so a
request in any payload shape counts) into one row per scored row, with the inference time in
``__time``: the same table the local server's logged inputs give.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deploykit.errors import DriftError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CONTENT_TYPES", "capture_location", "decode_record", "read_capture"]

#: What deploykit asks SageMaker to capture as readable text rather than base64.
CONTENT_TYPES = {"JsonContentTypes": ["application/json"], "CsvContentTypes": ["text/csv"]}
_TIME = "__time"


def capture_location(destination: str, endpoint: str, variant: str) -> tuple[str, str]:
    """The (bucket, key prefix) under which SageMaker writes ``endpoint``'s captured requests."""
    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    return bucket, "/".join(p for p in (prefix.strip("/"), endpoint, variant) if p) + "/"


def decode_record(line: dict[str, Any], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of one captured request (``captureData.endpointInput``), decoded as any payload deploykit reads."""
    from deploykit import payload
    from deploykit.plugins import load_formats

    load_formats()
    captured = line["captureData"]["endpointInput"]
    data, encoding = captured["data"], str(captured.get("encoding", "BASE64")).upper()
    kind = str(captured.get("observedContentType", "application/json")).split(";")[0].strip().lower()
    text = base64.b64decode(data).decode("utf-8") if encoding == "BASE64" else str(data)
    if encoding == "CSV" or (encoding == "BASE64" and kind == "text/csv"):
        first = text.split("\n", 1)[0].strip().split(",")
        if columns and first != list(columns):  # SageMaker's CSV requests have no header line
            text = ",".join(columns) + "\n" + text
        return payload.decode(text, columns)
    return payload.decode(json.loads(text), columns)


def read_capture(s3: Any, destination: str, endpoint: str, variant: str, *, since: Any = None,
                 columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every request SageMaker captured for ``endpoint`` (``s3`` a boto3 S3 client), one row per
    scored row plus ``__time`` (the inference time, UTC); from ``since`` (a date or time) on.

    DriftError when nothing was captured (saying how to turn capture on), or when a capture
    line cannot be read (naming the object)."""
    import pandas as pd

    bucket, prefix = capture_location(destination, endpoint, variant)
    start = pd.Timestamp(since, tz="UTC") if since is not None else None
    frames: list[pd.DataFrame] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith(".jsonl"):
                continue
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode("utf-8")
            for number, text in enumerate(body.splitlines(), 1):
                if not text.strip():
                    continue
                try:
                    line = json.loads(text)
                    rows = decode_record(line, columns)
                    when = pd.Timestamp(line["eventMetadata"]["inferenceTime"])
                    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
                except Exception as exc:
                    raise DriftError(f"the capture file s3://{bucket}/{item['Key']} line {number} is not a SageMaker "
                                     f"capture record deploykit can read ({type(exc).__name__}: {exc}); remove that "
                                     "object or pass --since to read only newer ones") from None
                if start is not None and when < start:
                    continue
                rows[_TIME] = when
                frames.append(rows)
    if not frames:
        raise DriftError(f"SageMaker captured no requests of endpoint {endpoint!r} under s3://{bucket}/{prefix}"
                         + (f" since {since}" if since is not None else "") + "; turn capture on with "
                         "'data_capture: {destination: s3://BUCKET/capture}' in the sagemaker: section of "
                         "credentials.yaml, deploy again, and score some requests")
    return pd.concat(frames, ignore_index=True)

