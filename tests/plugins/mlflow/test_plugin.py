"""The mlflow plugin registers like any target, costs nothing until used, and keeps its settings honest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deploykit_plugins.mlflow.settings import MlflowSettings, server_environment


def test_registering_and_loading_the_target_imports_neither_mlflow_nor_boto3():
    code = ("import sys, deploykit\n"
            "from deploykit.plugins import get_registry\n"
            "info = get_registry().info('mlflow')\n"
            "assert info.load().__name__ == 'MlflowTarget' and info.settings_model().__name__ == 'MlflowSettings'\n"
            "print(sorted(m for m in ('mlflow', 'boto3') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_scoring_server_environment_finds_uvicorn_and_carries_the_settings(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    settings = MlflowSettings(tracking_uri="http://mlflow:5000/", token="s3cret", s3_endpoint_url="http://minio:9000",
                              aws_access_key_id="AKIA", aws_secret_access_key="key")
    env = server_environment(settings)
    bindir = str(Path(sys.executable).parent)
    assert env["PATH"].split(os.pathsep)[0] == bindir and (Path(bindir) / "uvicorn").exists()
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["MLFLOW_TRACKING_TOKEN"] == "s3cret"
    assert (env["MLFLOW_S3_ENDPOINT_URL"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == \
        ("http://minio:9000", "AKIA", "key")
    assert "s3cret" not in repr(settings)  # secrets stay hidden in messages and logs
