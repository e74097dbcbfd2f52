"""The two servers every replay talks to, on the same MLflow model directory: ``deploykit serve``
and MLflow's own ``mlflow models serve``, each a real process on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.plugins.mlflow.conftest import Server, free_port, start


def _env() -> dict[str, str]:
    # `mlflow models serve` execs a bare `uvicorn`: the venv's bin must come first on PATH.
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def start_deploykit(model_dir: Path, log: Path) -> Server:
    """``python -m deploykit serve MODEL_DIR --port P``, ready once /health answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "deploykit", "serve", str(model_dir), "--port", str(port)]
    return start(cmd, f"http://127.0.0.1:{port}", "/health", log, _env())


def start_mlflow(model_dir: Path, log: Path) -> Server:
    """``mlflow models serve -m MODEL_DIR --env-manager local``, ready once /ping answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir), "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    return start(cmd, f"http://127.0.0.1:{port}", "/ping", log, _env())
