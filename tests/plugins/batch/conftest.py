"""Real parts for the batch engines: an input file, moto's S3 server, a Dask scheduler with two workers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import train_model

from tests.plugins.mlflow.conftest import free_port, start


def bank_frame(n: int, seed: int = 5) -> pd.DataFrame:
    """Bank-marketing rows with an ``id`` column first."""
    frame, _ = train_model.make_data(rows=n, seed=seed)
    frame.insert(0, "id", np.arange(n))
    return frame


@pytest.fixture(scope="session")
def bank_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A 4,000-row CSV input and the frame it holds."""
    frame = bank_frame(4000)
    path = tmp_path_factory.mktemp("input") / "customers.csv"
    frame.to_csv(path, index=False)
    return path, frame


@dataclass
class S3:
    """moto's S3 server, a bucket, and the environment an fsspec/boto client needs."""

    endpoint: str
    bucket: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """``python -m moto.server`` on a free port with an empty bucket ``batch``."""
    import boto3

    folder = tmp_path_factory.mktemp("moto-batch")
    port = free_port()
    server = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                   f"http://127.0.0.1:{port}", "/moto-api/", folder / "moto.log")
    env = {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=server.url, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="batch")
    yield S3(server.url, "batch", env)
    server.stop()


@pytest.fixture
def s3(s3_server: S3, monkeypatch: pytest.MonkeyPatch) -> S3:
    """The moto server with its variables set in this process (and so in the processes it starts)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dask exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"dask did not listen on {port} within {timeout} s: {log.read_text()[-2000:]}")


@dataclass
class DaskCluster:
    """A ``dask scheduler`` and ``dask worker`` processes we started."""

    address: str
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A real scheduler and two single-threaded workers on 127.0.0.1: the ``dask`` CLI run by this
    interpreter (``python -m dask``; the venv's ``bin/dask`` is the base interpreter's script,
    which could not import this worktree's deploykit)."""
    folder = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs, logs = [], []

    def launch(args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = folder / f"{name}.log"
        logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=folder, start_new_session=True)
        procs.append(proc)
        return proc

    try:
        scheduler = launch(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], "scheduler")
        _wait_port(port, scheduler, logs[0])
        for i in range(2):
            launch(["worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                    "--no-dashboard", "--name", f"w{i}"], f"worker-{i}")
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield DaskCluster(address, procs, logs)
    finally:
        for proc in reversed(procs):
            _stop(proc)
