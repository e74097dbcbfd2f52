"""deploykit's inference handlers for SageMaker's scikit-learn container, shipped as ``code/inference.py``.

The container (sagemaker-scikit-learn, or the emulator's stand-in) imports this file and calls
``model_fn(model_dir)`` once, then ``input_fn`` -> ``predict_fn`` -> ``output_fn`` per request.
Its own defaults cast JSON and CSV to float32 and have no ``model_fn``, so string columns,
CSV headers and record JSON fail there; these handlers accept every payload deploykit knows
(records, MLflow's four shapes, CSV with a header, Watson ``input_data``, V2) and enforce the
model's schema exactly as deploykit's local server does, answering labels and probabilities in
deploykit's response shape.

The container has scikit-learn, numpy, pandas and joblib, but not deploykit: the codecs and the
schema check are deploykit's own modules, vendored beside this file as the package ``_dkserve``
when the tarball is built (``deploykit_plugins.sagemaker.packaging``). Nothing here imports
``deploykit``, and nothing is installed at container start (network isolation works).

A scoring-script bundle (``deploykit.json`` has a ``bundle`` manifest) is served by deploykit's
own ``ScriptModel`` (vendored as ``_dkserve.bundle``): ``model_fn`` sets ``modelFileName`` and
the env file's variables in this process and imports the script from ``bundle/``; ``predict_fn``
calls ``score(data, base_path)`` with each row as JSON text (Neomaril's contract) and answers
``{"predictions": [the script's answer per row]}``. A JSON object that is not a table (or
Neomaril's ``{"Input": {...}}``, unwrapped) is one request: its answer is returned as it is.
Only the bundle's ``code/requirements.txt`` is installed at start, by the container.

An async bundle (file in, file out) is served through SageMaker async inference: each request
body is the input file, written into a fresh job folder as ``input.csv`` (``.parquet``,
``.jsonl``, ``.json`` by Content-Type); ``score(data_path, model_path)`` runs there with
``inputFileName`` set (one execution at a time: the variable is per process) and the file it
returns, which must be inside the job folder, is the answer.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

_CODE = os.path.dirname(os.path.abspath(__file__))
if _CODE not in sys.path:
    sys.path.insert(0, _CODE)

#: The manifest deploykit writes beside the model: the model file's name, its sha256, its classes.
MANIFEST = "deploykit.json"
_JSON = ("application/json", "application/jsonlines", "")
_CSV = ("text/csv", "application/csv")
#: An async script's input file name by the request's Content-Type, and its output's type by suffix.
_INPUT_FILES = {"text/csv": "input.csv", "application/csv": "input.csv", "application/x-parquet": "input.parquet",
                "application/vnd.apache.parquet": "input.parquet", "application/jsonlines": "input.jsonl",
                "application/x-ndjson": "input.jsonl", "application/json": "input.json", "": "input.csv"}
_OUTPUT_TYPES = {".csv": "text/csv", ".parquet": "application/x-parquet", ".jsonl": "application/jsonlines",
                 ".json": "application/json"}
#: Set by model_fn for an async bundle: input_fn then keeps the body as the input file's bytes.
_RAW_INPUT: list[bool] = []


class InferenceError(Exception):
    """A request the handlers refuse: ``status_code`` is the HTTP status the container answers with,
    ``str(err)`` the message (naming what was wrong and the fix), ``problems`` the schema problems."""

    def __init__(self, status_code: int, message: str, problems: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.problems = problems or []

    def body(self) -> str:
        """The error as deploykit's error body (JSON text)."""
        return json.dumps({"error": str(self), "problems": self.problems}, default=str)


class Served:
    """What ``model_fn`` returns: the model, its schema, the scorer and the manifest."""

    def __init__(self, model: Any, schema: Any, manifest: dict[str, Any]) -> None:
        from _dkserve.inference import ModelScorer

        self.model = model
        self.schema = schema
        self.manifest = manifest
        self.flavor = "joblib"
        self.classes = manifest.get("classes")
        self.columns = schema.names or None
        self.types = {c.name: c.type for c in schema.columns} or None
        self.scorer = ModelScorer(self)  # duck-types the Artifact it reads


class ScriptServed:
    """What ``model_fn`` returns for a scoring-script bundle: deploykit's ScriptModel, loaded."""

    def __init__(self, script: Any, manifest: dict[str, Any]) -> None:
        self.script = script
        self.manifest = manifest
        self.lock: Any = None


class ScriptFile:
    """An async script's output file: its bytes and content type."""

    def __init__(self, data: bytes, content_type: str) -> None:
        self.data = data
        self.content_type = content_type


class ScriptAnswer:
    """The script's answers: one per row (``rows``), or one request's answer as it is (``single``)."""

    def __init__(self, answers: list[Any], single: bool) -> None:
        self.answers = answers
        self.single = single

    def encode(self, protocol: str) -> Any:
        """The response body: the answer itself for one request, ``{"predictions": [...]}`` for rows."""
        return self.answers[0] if self.single else {"predictions": self.answers}


def model_fn(model_dir: str) -> Served | ScriptServed:
    """Load the model file and schema deploykit packed into ``model_dir`` (``/opt/ml/model``), or
    the scoring script of a bundle (its environment set, its module imported)."""
    import joblib
    from _dkserve.schema import Schema

    with open(os.path.join(model_dir, MANIFEST), encoding="utf-8") as handle:
        manifest = json.load(handle)
    if manifest.get("bundle"):
        import threading
        from pathlib import Path

        from _dkserve.bundle import ScriptModel

        folder = Path(model_dir) / manifest.get("bundle_dir", "bundle")
        served = ScriptServed(ScriptModel(folder, manifest["bundle"]).load(), manifest)
        if served.script.mode == "async":
            _RAW_INPUT[:] = [True]
            served.lock = threading.Lock()
        return served
    model = joblib.load(os.path.join(model_dir, manifest["model_file"]))
    schema = Schema.read(os.path.join(model_dir, "schema.json"))
    return Served(model, schema, manifest)


def input_fn(request_body: Any, request_content_type: str | None) -> tuple[str, Any]:
    """The request as ``("csv", text)`` or ``("json", parsed)``; 415 for another Content-Type."""
    ctype = (request_content_type or "").split(";")[0].strip().lower()
    if _RAW_INPUT:
        if ctype not in _INPUT_FILES:
            raise InferenceError(415, f"Content-Type {ctype!r} is not an input file type of the async script; send "
                                      "text/csv, application/x-parquet, application/jsonlines or application/json")
        body = request_body if isinstance(request_body, (bytes, bytearray)) else str(request_body).encode()
        return "file", (bytes(body), _INPUT_FILES[ctype])
    if isinstance(request_body, (bytes, bytearray)):
        try:
            request_body = bytes(request_body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InferenceError(400, f"the request body is not UTF-8 ({exc}); send UTF-8 JSON or CSV") from None
    if ctype in _CSV:
        return "csv", request_body
    if ctype not in _JSON and not ctype.endswith("+json"):
        raise InferenceError(415, f"Content-Type {ctype!r} is not supported; send application/json or text/csv")
    if not str(request_body).strip():
        raise InferenceError(400, "the request body is empty; send rows as JSON, e.g. [{\"column\": value}]")
    try:
        return "json", json.loads(request_body)
    except ValueError as exc:
        raise InferenceError(400, f"the request body is not valid JSON ({exc}); send rows as JSON or CSV "
                                  "with a header") from None


def _one_request(obj: Any) -> Any:
    """The JSON of one Neomaril request when ``obj`` is one (an object that is no table payload,
    or ``{"Input": {...}}``); None for rows."""
    from _dkserve import payload
    from _dkserve.errors import PayloadError

    if not isinstance(obj, dict):
        return None
    if set(obj) == {"Input"} and isinstance(obj["Input"], dict):
        return obj["Input"]
    try:
        return obj if payload.detect_format(obj) == "records" else None
    except PayloadError:
        return obj


def _score_script(input_data: tuple[str, Any], model: ScriptServed) -> ScriptAnswer:
    """Call the script per row (each row's JSON text) or once for one request."""
    from _dkserve import payload
    from _dkserve.bundle import ScriptFailure
    from _dkserve.errors import PayloadError

    kind, obj = input_data
    single = _one_request(obj) if kind == "json" else None
    if single is not None:
        texts = [json.dumps(payload.jsonable(single))]
    else:
        try:
            table = payload.decode_table(obj, None, "csv" if kind == "csv" else None)
        except PayloadError as exc:
            raise InferenceError(400, str(exc)) from None
        if table.rows == 0:
            raise InferenceError(400, "the payload has no rows; send at least one row")
        names = list(table.columns)
        texts = [json.dumps(payload.jsonable({n: table.columns[n][i] for n in names})) for i in range(table.rows)]
    answers = []
    for text in texts:
        try:
            answers.append(model.script.score_sync(text))
        except ScriptFailure as exc:
            sys.stderr.write(exc.traceback)
            sys.stderr.flush()
            raise InferenceError(422 if exc.bad_input else 500, f"the scoring script failed: {exc.message}") from None
    return ScriptAnswer(answers, single is not None)


def _run_async(file: tuple[bytes, str], model: ScriptServed) -> ScriptFile:
    """One async execution in a fresh job folder; the output file the script wrote there."""
    import shutil
    import tempfile

    from _dkserve.bundle import ScriptFailure

    data, name = file
    folder = os.path.realpath(tempfile.mkdtemp(prefix="dkjob-"))
    try:
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(data)
        with model.lock:
            try:
                output = model.script.score_async(folder, name)
            except ScriptFailure as exc:
                sys.stderr.write(exc.traceback)
                sys.stderr.flush()
                raise InferenceError(422 if exc.bad_input else 500,
                                     f"the scoring script failed: {exc.message}") from None
        path = os.path.realpath(str(output))
        if os.path.commonpath([path, folder]) != folder:
            raise InferenceError(500, f"the async script returned {str(output)!r}, outside its job folder "
                                      f"(data_path {folder + os.sep!r}); write the output file into data_path and "
                                      "return its path")
        with open(path, "rb") as handle:
            content = handle.read()
        return ScriptFile(content, _OUTPUT_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def predict_fn(input_data: tuple[str, Any], model: Served | ScriptServed) -> Any:
    """Decode the payload, check it against the schema (422 listing every problem), score it;
    for a bundle, call its script (a failure is 422 for bad input, else 500, with its message)."""
    import pandas as pd
    from _dkserve import payload
    from _dkserve.errors import PayloadError, SchemaError

    if isinstance(model, ScriptServed):
        if input_data[0] == "file":
            return _run_async(input_data[1], model)
        return _score_script(input_data, model)
    kind, obj = input_data
    try:
        table = payload.decode_table(obj, model.columns, "csv" if kind == "csv" else None, types=model.types)
        if table.rows == 0:
            raise InferenceError(400, "the payload has no rows; send at least one row")
        if model.schema.columns:
            columns = model.schema.check(table)
        else:
            columns = {k: payload.column_array(v) for k, v in table.columns.items()}
    except SchemaError as exc:
        raise InferenceError(422, str(exc), list(exc.problems)) from None
    except PayloadError as exc:
        raise InferenceError(400, str(exc)) from None
    try:
        return model.scorer(pd.DataFrame(columns, copy=False), want_proba=True)
    except Exception as exc:
        raise InferenceError(422, f"the model rejected the input: {type(exc).__name__}: {exc}; check the values "
                                  "against the model's training data (e.g. categories it has never seen)") from None


def output_fn(prediction: Any, accept: str | None) -> tuple[str | bytes, str]:
    """``(body, content type)``: deploykit's JSON response, or CSV when ``Accept: text/csv``."""
    want = (accept or "application/json").split(";")[0].strip().lower()
    if isinstance(prediction, ScriptFile):  # an async script's output file, whatever was asked
        return prediction.data, prediction.content_type
    if want in ("application/json", "*/*", ""):
        return json.dumps(prediction.encode("deploykit")), "application/json"
    if isinstance(prediction, ScriptAnswer):
        raise InferenceError(406, f"Accept {want!r} is not supported for a scoring script, which answers JSON; "
                                  "ask for application/json")
    if want in _CSV:
        return prediction.encode("csv"), "text/csv"
    raise InferenceError(406, f"Accept {want!r} is not supported; ask for application/json or text/csv")
