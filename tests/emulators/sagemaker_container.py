"""A stand-in for SageMaker's scikit-learn serving container, run by the SageMaker emulator per endpoint revision.

    echo '{"model_dir": "DIR", "env": {}, "log": "c.log"}' | python tests/emulators/sagemaker_container.py
    # -> "PID <pid> PORT <port>": a container process serving DIR (a fork server: one line, one container)

It honours the container contract (shared/reference/sagemaker.md §1.4, §3): the model tarball is
already extracted into ``model_dir`` (SageMaker's ``/opt/ml/model``); ``SAGEMAKER_PROGRAM`` names
the handler module in ``SAGEMAKER_SUBMIT_DIRECTORY`` (``/opt/ml/model/code`` maps to
``DIR/code``); ``model_fn`` runs once at start; ``GET /ping`` answers 200 once the model is
loaded; ``POST /invocations`` runs ``input_fn`` -> ``predict_fn`` -> ``output_fn`` (the toolkit's
defaults where a handler is missing: JSON or CSV cast to float32, ``model.predict``). An
exception's ``status_code`` attribute is the HTTP status (else 500), as the inference toolkit's
errors do.

``code/requirements.txt`` is pip-installed at start, as the image does (into a folder beside
the model directory, put on ``sys.path``); a requirement this interpreter already satisfies is
skipped (logged as such), so tests need the network only for a package the test venv lacks.

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
import signal
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


def install_requirements(code_dir: str, target: str) -> list[str]:
    """``pip install -r code/requirements.txt`` as the image does at start, into ``target`` (put on
    sys.path); a requirement whose distribution is already installed here in a version that
    satisfies it is skipped, so tests need no network for what the test venv has. Returns the
    requirements installed; a pip failure raises with pip's message (the container does not start)."""
    path = os.path.join(code_dir, "requirements.txt")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        lines = [line.split("#")[0].strip() for line in handle]
    missing = [line for line in lines if line and not line.startswith("-") and not _satisfied(line)]
    options = [line for line in lines if line.startswith("-")]
    for line in lines:
        if line and line not in missing and line not in options:
            sys.stderr.write(f"requirements.txt: {line} is installed already (skipped)\n")
    if not missing:
        return []
    import subprocess

    sys.stderr.write(f"requirements.txt: installing {missing}\n")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--target", target, *options, *missing], capture_output=True, text=True, check=False)
    sys.stderr.write(done.stdout + done.stderr)
    sys.stderr.flush()
    if done.returncode != 0:
        raise RuntimeError(f"pip install -r requirements.txt failed: {done.stderr.strip()[-800:]}")
    sys.path.insert(0, target)
    return missing


def _satisfied(line: str) -> bool:
    """Whether the requirement ``line`` is met by a distribution installed in this interpreter."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # no packaging: only a bare name can be checked
        import re

        name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]
        try:
            return bool(version(name)) and name == line
        except PackageNotFoundError:
            return False
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return False
    try:
        installed = version(requirement.name)
    except PackageNotFoundError:
        return False
    return requirement.specifier.contains(installed, prereleases=True)


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
        install_requirements(code_dir, os.path.join(os.path.dirname(self.model_dir), "site-packages"))
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
        except Exception as exc:
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

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != "/ping":
                self._send(404, b"{}")
            elif container.ready.is_set() and not container.ping_never:
                self._send(200, b"")
            else:
                self._send(503, b"")

        def do_POST(self) -> None:
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


def serve(model_dir: str, env: dict[str, str], port: int = 0, announce: Any = None) -> None:
    """Be one container: apply the revision's ``Environment``, bind, announce the port, load, serve forever."""
    os.environ.update({str(k): str(v) for k, v in env.items()})
    container = Container(model_dir)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(container))
    (announce or (lambda p: print(f"PORT {p}", flush=True)))(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        container.load()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    threading.Event().wait()


def _fork_one(request: dict[str, Any]) -> str:
    """Fork a container process for ``request`` (``model_dir``, ``env``, ``log``); ``PID <pid> PORT <port>``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the container: its own process, stderr to its log
        try:
            os.close(read_end)
            os.setsid()
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            sys.stdin = open(0, closefd=False)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)

            def announce(port: int) -> None:
                os.write(write_end, f"{port}\n".encode())
                os.close(write_end)

            serve(request["model_dir"], request.get("env") or {}, 0, announce)
        finally:
            os._exit(1)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        port = reader.readline().strip()
    return f"PID {pid} PORT {port or 0}"


def main() -> None:
    """A fork server of containers: import the image's libraries once, then fork one process per revision.

    Each stdin line is JSON ``{"model_dir": ..., "env": {...}, "log": ...}``; the answer line is
    ``PID <pid> PORT <port>``. A revision thus gets its own process at once instead of waiting
    for pandas and scikit-learn to import on a busy machine; the children are reaped by the
    kernel (SIGCHLD ignored) and killed by the emulator by pid.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    sys.meta_path.insert(0, _NoDeploykit())
    import joblib  # noqa: F401  (what the real image has installed, imported once in the fork server)
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import sklearn.compose
    import sklearn.linear_model
    import sklearn.pipeline
    import sklearn.preprocessing  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip():
            print(_fork_one(json.loads(line)), flush=True)


if __name__ == "__main__":
    main()
