"""A stand-in for SageMaker's scikit-learn serving container, run by the SageMaker emulator per endpoint revision.

    echo '{"model_dir": "DIR", "env": {}}' | python tests/emulators/sagemaker_container.py   (prints "PORT <n>", serves)

It honours the container contract (shared/reference/sagemaker.md §1.4, §3): the model tarball is
already extracted into ``model_dir`` (SageMaker's ``/opt/ml/model``); ``SAGEMAKER_PROGRAM`` names
the handler module in ``SAGEMAKER_SUBMIT_DIRECTORY`` (``/opt/ml/model/code`` maps to
``DIR/code``); ``model_fn`` runs once at start; ``GET /ping`` answers 200 once the model is
loaded; ``POST /invocations`` runs ``input_fn`` -> ``predict_fn`` -> ``output_fn`` (the toolkit's
defaults where a handler is missing: JSON or CSV cast to float32, ``model.predict``). An
exception's ``status_code`` attribute is the HTTP status (else 500), as the inference toolkit's
errors do.

Like the real image it has scikit-learn, numpy, pandas and joblib but no deploykit: importing
``deploykit`` or ``deploykit_plugins`` here raises ImportError, so what the tarball needs must be
inside it. Faults (set by the emulator): ``DKEMU_PING_NEVER=1`` (the model loads, /ping never
answers 200), ``DKEMU_MODEL_FN_ERROR=<message>`` (model_fn raises; the process exits).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _NoDeploykit:
    """A meta-path finder that makes deploykit unimportable, as it is in the real container."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in ("deploykit", "deploykit_plugins"):
            raise ImportError(f"No module named {name!r} (the SageMaker container has no deploykit)")
        return None


class Handlers:
    """The user module's handlers, with the toolkit's defaults for the ones it lacks."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def model_fn(self, model_dir: str) -> Any:
        fn = getattr(self.module, "model_fn", None)
        if fn is None:
            raise NotImplementedError("Please provide a model_fn implementation")
        return fn(model_dir)

    def input_fn(self, body: bytes, content_type: str) -> Any:
        fn = getattr(self.module, "input_fn", None)
        if fn is not None:
            return fn(body, content_type)
        import numpy as np

        if content_type.startswith("text/csv"):
            rows = [line.split(",") for line in body.decode().splitlines() if line.strip()]
            return np.array(rows).astype(np.float32)
        return np.array(json.loads(body)).astype(np.float32)

    def predict_fn(self, data: Any, model: Any) -> Any:
        fn = getattr(self.module, "predict_fn", None)
        return fn(data, model) if fn is not None else model.predict(data)

    def output_fn(self, prediction: Any, accept: str) -> Any:
        fn = getattr(self.module, "output_fn", None)
        if fn is not None:
            return fn(prediction, accept)
        return json.dumps(prediction.tolist()), "application/json"


class Container:
    """The loaded model and its handlers; ``ready`` once model_fn returned."""

    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir
        self.ready = threading.Event()
        self.model: Any = None
        self.handlers: Handlers | None = None
        self.ping_never = os.environ.get("DKEMU_PING_NEVER") == "1"

    def load(self) -> None:
        code_dir = os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY", "/opt/ml/model/code")
        code_dir = code_dir.replace("/opt/ml/model", self.model_dir, 1)
        program = os.environ.get("SAGEMAKER_PROGRAM", "inference.py")
        sys.path.insert(0, code_dir)
        spec = importlib.util.spec_from_file_location(program.removesuffix(".py"), os.path.join(code_dir, program))
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {program} from {code_dir}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.handlers = Handlers(module)
        failure = os.environ.get("DKEMU_MODEL_FN_ERROR")
        if failure:
            raise RuntimeError(failure)
        self.model = self.handlers.model_fn(self.model_dir)
        self.ready.set()

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[int, bytes, str]:
        assert self.handlers is not None
        try:
            data = self.handlers.input_fn(body, content_type)
            prediction = self.handlers.predict_fn(data, self.model)
            out = self.handlers.output_fn(prediction, accept)
        except Exception as exc:  # noqa: BLE001  (the container answers every failure)
            status = int(getattr(exc, "status_code", 500) or 500)
            text = exc.body() if callable(getattr(exc, "body", None)) else json.dumps({"error": str(exc)})
            sys.stderr.write(f"invocation failed ({status}): {exc}\n")
            sys.stderr.flush()
            return status, str(text).encode(), "application/json"
        answer, ctype = out if isinstance(out, tuple) else (out, accept or "application/json")
        return 200, answer.encode() if isinstance(answer, str) else bytes(answer), ctype


def _handler(container: Container) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path != "/ping":
                self._send(404, b"{}")
            elif container.ready.is_set() and not container.ping_never:
                self._send(200, b"")
            else:
                self._send(503, b"")

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/invocations":
                self._send(404, b"{}")
                return
            if not container.ready.is_set():
                self._send(503, b'{"error": "the model is not loaded yet"}')
                return
            status, answer, ctype = container.invoke(body, self.headers.get("Content-Type") or "application/json",
                                                     self.headers.get("Accept") or "application/json")
            self._send(status, answer, ctype)

    return Handler


def main() -> None:
    """Import the image's libraries, read the revision's settings, bind a port, print it, load the model, serve.

    The first stdin line is JSON ``{"model_dir": ..., "env": {...}}`` (the container's
    ``Environment``): the emulator starts a process ahead of time, while the libraries import
    (``WARM`` is printed then), and hands it the next revision, so a revision does not wait for
    pandas and scikit-learn to import on a busy machine.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sys.meta_path.insert(0, _NoDeploykit())
    import joblib  # noqa: F401  (what the real image has installed, imported ahead of time)
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import sklearn.pipeline  # noqa: F401

    print("WARM", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return
    revision = json.loads(line)
    os.environ.update({str(k): str(v) for k, v in revision.get("env", {}).items()})
    container = Container(revision["model_dir"])
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(container))
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        container.load()
    except BaseException:  # noqa: BLE001  (a worker that cannot boot: the log says why, the process ends)
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    threading.Event().wait()


if __name__ == "__main__":
    main()
