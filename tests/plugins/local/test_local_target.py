"""The local target end to end: real server processes, real HTTP, through the CLI and the library.

TestLocalTarget runs the TargetContract; the other tests are what only a local server has (tokens,
TLS, ports, the foreground server, an update whose new process cannot start)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import httpx
import joblib
import pandas as pd
import pytest
import yaml

import deploykit
from deploykit.errors import DeploymentError
from deploykit.testing import TargetContract


class TestLocalTarget(TargetContract):
    target = "local"
    bad_credentials = "local:\n  port: 70000\n"
    bad_credentials_error = r"the local section is wrong: 'port' = 70000"

    @pytest.fixture
    def contract_models(self, bank_contract_models):
        return bank_contract_models

    def remove_outside_deploykit(self, contract, deployment) -> None:
        import signal

        pid = int(deployment.ids["pid"])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def _use_crashing_interpreter(project, message: str, code: int) -> None:
    """Point local.python at a script that prints ``message`` and exits: a server that dies at start."""
    crash = project.dir / "crash.sh"
    crash.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit {code}\n")
    crash.chmod(0o755)
    project.write_credentials(f"local:\n  python: {crash}\n")


def _expected(model: Path, rows: list[dict]) -> list:
    return joblib.load(model).predict(pd.DataFrame(rows)).tolist()


def test_full_lifecycle_through_the_cli(cli, project, bank_model, bank_model_v2, bank_rows) -> None:
    created = cli("deploy", bank_model, "--name", "bank", "--json")
    assert created.code == 0, created.err
    first = created.json()
    assert (first["action"], first["revision"], first["status"]) == ("created", 1, "ready")
    url, pid1 = first["url"], first["ids"]["pid"]
    assert httpx.get(f"{url}/health").json()["model_sha256"] == first["model_sha256"]

    rows_file = project.dir / "rows.json"
    rows_file.write_text(pd.DataFrame(bank_rows).to_json(orient="records"))
    scored = cli("score", "bank", rows_file, "--json")
    assert scored.code == 0, scored.err
    assert scored.json()["predictions"] == _expected(bank_model, bank_rows)

    again = cli("deploy", bank_model, "--name", "bank", "--json").json()
    assert (again["action"], again["revision"], again["ids"]["pid"]) == ("unchanged", 1, pid1)

    # update while a client keeps scoring: the port never refuses, every request succeeds
    failures: list[str] = []
    done = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=10) as client:
            while not done.is_set():
                try:
                    r = client.post(f"{url}/predict", json=bank_rows[:1])
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        updated = cli("deploy", bank_model_v2, "--name", "bank", "--json")
    finally:
        time.sleep(0.3)
        done.set()
        thread.join()
    assert updated.code == 0, updated.err
    second = updated.json()
    assert (second["action"], second["revision"], second["url"]) == ("updated", 2, url)
    assert failures == []
    assert not _alive(pid1)
    assert cli("score", "bank", rows_file, "--json").json()["predictions"] == _expected(bank_model_v2, bank_rows)

    back = cli("rollback", "bank", "--json")
    assert back.code == 0, back.err
    assert (back.json()["revision"], back.json()["url"]) == (1, url)
    assert cli("score", "bank", rows_file, "--json").json()["predictions"] == _expected(bank_model, bank_rows)
    status = cli("status", "bank", "--json")
    assert status.code == 0 and status.json()["status"] == "ready"

    pid = back.json()["ids"]["pid"]
    gone = cli("delete", "bank", "--json")
    assert gone.code == 0, gone.err
    assert not _alive(pid)
    assert yaml.safe_load(project.metadata.read_text())["deployments"] == {}
    missing = cli("status", "bank")
    assert missing.code == 1 and "no deployment named 'bank'" in missing.err


def test_token_protects_scoring(project, bank_model, bank_rows, monkeypatch) -> None:
    project.write_credentials("local:\n  token: ${TEST_LOCAL_TOKEN}\n")
    monkeypatch.setenv("TEST_LOCAL_TOKEN", "t0ken-value")
    try:
        dep = deploykit.deploy(bank_model, name="bank")
        assert httpx.post(f"{dep.url}/predict", json=bank_rows[:1]).status_code == 401
        wrong = httpx.post(f"{dep.url}/predict", json=bank_rows[:1], headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "bearer token" in wrong.json()["error"]
        ok = httpx.post(f"{dep.url}/predict", json=bank_rows[:1], headers={"Authorization": "Bearer t0ken-value"})
        assert ok.status_code == 200
        assert deploykit.score("bank", bank_rows).labels == _expected(bank_model, bank_rows)
        assert "t0ken-value" not in project.metadata.read_text()
    finally:
        deploykit.delete("bank")


def test_bad_payloads_get_4xx_naming_the_problem(project, bank_model, bank_rows) -> None:
    dep = deploykit.deploy(bank_model, name="bank")
    try:
        bad_json = httpx.post(f"{dep.url}/predict", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
        wrong_key = httpx.post(f"{dep.url}/invocations", json={"rows": bank_rows})
        assert wrong_key.status_code == 400 and "rows" in wrong_key.json()["message"]
        row = dict(bank_rows[0])
        del row["age"]
        missing = httpx.post(f"{dep.url}/predict", json=[row])
        assert missing.status_code == 422 and "column 'age' is missing" in missing.json()["error"]
        cast = httpx.post(f"{dep.url}/predict", json=[{**bank_rows[0], "age": 41.7, "job": 5}])
        problems = {p["column"]: p for p in cast.json()["problems"]}
        assert cast.status_code == 422 and problems["age"]["value"] == 41.7 and problems["job"]["value"] == 5
        no_ctype = httpx.post(f"{dep.url}/predict", content=b'[{"age": 1}]', headers={"Content-Type": ""})
        assert no_ctype.status_code in (415, 422)
    finally:
        deploykit.delete("bank")


def test_port_in_use_is_refused_and_nothing_recorded(project, bank_model) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        project.write_credentials(f"local:\n  port: {port}\n")
        with pytest.raises(DeploymentError, match=f"port {port} on 127.0.0.1 is in use.*local.port"):
            deploykit.deploy(bank_model, name="bank")
    assert not project.metadata.exists() or "bank" not in project.metadata.read_text()


def test_server_dying_during_start_is_reported(project, bank_model) -> None:
    _use_crashing_interpreter(project, "Segmentation fault (simulated)", 139)
    with pytest.raises(DeploymentError, match=r"(?s)exited during start-up.*Segmentation fault \(simulated\)"):
        deploykit.deploy(bank_model, name="bank")
    assert not project.metadata.exists() or "bank" not in project.metadata.read_text()


def test_racing_deploys_are_both_recorded(cli, project, bank_model) -> None:
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-m", "deploykit", "deploy", str(bank_model), "--name", n, "--json"],
                              cwd=project.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in ("alpha", "beta")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    recorded = yaml.safe_load(project.metadata.read_text())["deployments"]
    assert set(recorded) == {"alpha", "beta"}
    for name in ("alpha", "beta"):
        assert cli("delete", name).code == 0


def test_tls(project, bank_model, bank_rows) -> None:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = project.dir / "cert.pem", project.dir / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    project.write_credentials(f"local:\n  certfile: {certfile}\n  keyfile: {keyfile}\n")
    dep = deploykit.deploy(bank_model, name="bank")
    try:
        assert dep.url.startswith("https://127.0.0.1:")
        assert deploykit.score("bank", bank_rows).labels == _expected(bank_model, bank_rows)
        assert httpx.get(f"{dep.url}/health", verify=str(certfile)).status_code == 200
    finally:
        deploykit.delete("bank")


def test_serve_in_the_foreground(project, bank_model, bank_rows) -> None:
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "deploykit", "serve", str(bank_model), "--port", str(port)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        got = httpx.post(f"http://127.0.0.1:{port}/predict", json=bank_rows).json()["predictions"]
        assert got == _expected(bank_model, bank_rows)
        docs = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
        body = docs["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
        assert set(body["example"][0]) == {"age", "job", "marital", "education", "balance", "housing",
                                           "duration", "campaign"}
    finally:
        proc.terminate()
        proc.wait(20)


def test_failed_update_keeps_the_old_revision_serving(project, bank_model, bank_model_v2, bank_rows) -> None:
    dep = deploykit.deploy(bank_model, name="bank")
    try:
        _use_crashing_interpreter(project, "ImportError: simulated broken environment", 1)
        with pytest.raises(DeploymentError, match=r"(?s)revision 2 .*failed.*rolled back to revision 1"):
            deploykit.deploy(bank_model_v2, name="bank")
        recorded = yaml.safe_load(project.metadata.read_text())["deployments"]["bank"]["local"]
        assert (recorded["revision"], recorded["ids"]["pid"], recorded["status"]) == (1, dep.ids["pid"], "ready")
        assert deploykit.score("bank", bank_rows).labels == _expected(bank_model, bank_rows)
    finally:
        project.write_credentials("local:\n  port: 0\n")
        deploykit.delete("bank")
