"""A SageMaker emulator: moto's server for S3 and the model/config calls, fronted by endpoints and a runtime that run models.

    python -m tests.emulators.sagemaker --port 9300        # then point sagemaker.endpoint_url at it

moto's server stores S3 objects and the CreateModel / CreateEndpointConfig parameters well,
but it has no UpdateEndpoint, is InService at once, and answers invoke_endpoint with a canned
body even for endpoints that do not exist (shared/reference/sagemaker.md §4). This front, on
one 127.0.0.1 port for all three services, therefore:

- implements the endpoint control plane itself (JSON 1.1, ``X-Amz-Target: SageMaker.<Op>``):
  CreateEndpoint, DescribeEndpoint, UpdateEndpoint, DeleteEndpoint, ListEndpoints, with the
  status machines ``Creating -> InService | Failed`` and ``Updating -> InService`` (on the new
  config, or back on the old one with a FailureReason when the new fleet never gets healthy);
- implements the runtime (``POST /endpoints/{name}/invocations``): the body goes to the
  endpoint's container, a container 4xx/5xx becomes ``ModelError`` (424) with
  OriginalStatusCode/OriginalMessage, a missing endpoint ``ValidationError``, bodies over 6 MB
  are refused;
- adds what moto lacks on the calls it forwards: a duplicate model or endpoint-config name is a
  ValidationException, an unknown execution role "Could not assume role";
- forwards everything else (S3, models, configs, tags) to a ``moto_server`` subprocess.

For each endpoint revision it downloads ``ModelDataUrl`` from moto's S3, extracts it and starts
``tests/emulators/sagemaker_container.py`` (the container contract: ``/ping``,
``/invocations``, ``code/inference.py``'s handlers, no deploykit importable); during an update
the old container answers until the new one passes ``/ping``. A model whose container
environment sets ``MLFLOW_DEPLOYMENT_FLAVOR_NAME`` (MLflow's pyfunc serving image contract, as
``mlflow.sagemaker`` deploys) runs MLflow's own scoring server on the extracted directory instead,
as that image's ``serve`` entry point does.

Fault knobs (``emulator.faults`` in process, or ``POST /_emulator/faults`` with JSON):
``ping_never_healthy``, ``model_fn_error`` (text), ``bad_tarball``, ``container_5xx`` (count of
invocations), ``throttle`` (count of SageMaker/runtime calls answered ThrottlingException),
``resource_limit`` (CreateEndpoint/UpdateEndpoint answer ResourceLimitExceeded),
``transition_delay`` (seconds a create/update takes at least), ``health_timeout`` (the
4-minute ping window, in seconds), ``deny`` (operation names answered AccessDeniedException),
``access_keys`` (when set, only these access key ids are accepted). ``POST /_emulator/reset``
empties everything.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["ACCOUNT", "ROLE_ARN", "Faults", "SageMakerEmulator"]

ACCOUNT = "123456789012"
#: The execution role the emulator knows (others: "Could not assume role").
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/deploykit-sagemaker"
CONTAINER = Path(__file__).with_name("sagemaker_container.py")
MAX_BODY = 6 * 1024 * 1024
_OWN = {"CreateEndpoint", "DescribeEndpoint", "UpdateEndpoint", "DeleteEndpoint", "ListEndpoints",
        "CreateTransformJob", "DescribeTransformJob", "StopTransformJob"}


@dataclass
class Faults:
    """What the emulator does wrong on purpose (see the module docstring)."""

    ping_never_healthy: bool = False
    model_fn_error: str | None = None
    bad_tarball: bool = False
    container_5xx: int = 0
    throttle: int = 0
    resource_limit: bool = False
    transition_delay: float = 0.0
    health_timeout: float = 60.0
    deny: list[str] = field(default_factory=list)
    access_keys: list[str] | None = None


class ApiError(Exception):
    """An AWS error answer: HTTP status, error code, message, extra body fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Container:
    """One running container process (an endpoint revision's fleet), forked by the container fork server."""

    def __init__(self, pid: int, port: int, folder: Path, log: Path, config: str) -> None:
        self.pid, self.port, self.folder, self.log, self.config = pid, port, folder, log, config

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        with contextlib.suppress(OSError):  # a zombie (its parent has not reaped it yet) is not alive
            return "State:\tZ" not in Path(f"/proc/{self.pid}/status").read_text()
        return True

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def invoke(self, body: bytes, ctype: str, accept: str) -> tuple[int, bytes, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": ctype, "Accept": accept})
            answer = conn.getresponse()
            return answer.status, answer.read(), answer.getheader("Content-Type") or "application/json"
        finally:
            conn.close()

    def log_tail(self, lines: int = 6) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Endpoint:
    """One endpoint's state."""

    name: str
    arn: str
    config: str
    region: str
    status: str = "Creating"
    failure: str | None = None
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
    fleet: Container | None = None
    pending: Container | None = None
    statuses: list[str] = field(default_factory=list)
    variant: str = "primary"
    capture: dict[str, Any] | None = None
    asynchronous: dict[str, Any] | None = None
    deployment_config: dict[str, Any] | None = None
    gone: bool = False

    def set(self, status: str) -> None:
        self.status = status
        self.modified = time.time()
        self.statuses.append(status)


class SageMakerEmulator:
    """The emulator: ``with SageMakerEmulator() as emu: emu.url`` (one URL for sagemaker, runtime and S3)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.faults = Faults()
        self.endpoints: dict[str, Endpoint] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.roles = {ROLE_ARN}
        self.calls: list[str] = []
        self.lock = threading.RLock()
        self.folder = Path(tempfile.mkdtemp(prefix="sagemaker-emulator-"))
        self._moto: subprocess.Popen[bytes] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._clients: dict[str, Any] = {}
        self._zygote: subprocess.Popen[str] | None = None
        self._zygote_lock = threading.Lock()
        self._mlflow_processes: list[subprocess.Popen[bytes]] = []

    # -- process -----------------------------------------------------------------------------
    def __enter__(self) -> SageMakerEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start moto's server (a subprocess) and the front (threads of this process)."""
        self.moto_port = _free_port()
        log = open(self.folder / "moto.log", "wb")
        self._moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                       str(self.moto_port)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.moto_port}/moto-api/", timeout=2):
                    break
            except OSError:
                if self._moto.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {(self.folder / 'moto.log').read_text()}") from None
                time.sleep(0.1)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _front(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="sagemaker-emulator", daemon=True).start()
        threading.Thread(target=self._fork, args=({},), daemon=True).start()  # import the image's libraries now

    @property
    def url(self) -> str:
        """The URL for every service (``sagemaker.endpoint_url``)."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop every container, the front and moto."""
        self.reset(moto=False)
        with self._zygote_lock:
            if self._zygote is not None:
                self._zygote.kill()
                self._zygote.wait(timeout=10)
                self._zygote = None
        for process in self._mlflow_processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._moto is not None:
            self._moto.kill()
            self._moto.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def reset(self, moto: bool = True) -> None:
        """Forget every endpoint (their containers stopped), the faults and, with ``moto``, moto's state."""
        with self.lock:
            for endpoint in self.endpoints.values():
                endpoint.gone = True
                for container in (endpoint.fleet, endpoint.pending):
                    if container is not None:
                        container.stop()
            self.endpoints.clear()
            self._mlflow_processes = [p for p in self._mlflow_processes if p.poll() is None]  # reap the stopped
            self.jobs.clear()
            self.faults = Faults()
            self.roles = {ROLE_ARN}
            self.calls.clear()
        if moto:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.moto_port}/moto-api/reset",
                                                          method="POST"), timeout=10).close()

    def moto(self, service: str, region: str = "us-east-1") -> Any:
        """A boto3 client straight to moto (for the emulator itself and for tests' checks)."""
        key = f"{service}/{region}"
        if key not in self._clients:
            import boto3

            self._clients[key] = boto3.session.Session().client(
                service, region_name=region, endpoint_url=f"http://127.0.0.1:{self.moto_port}",
                aws_access_key_id="emulator", aws_secret_access_key="emulator")
        return self._clients[key]

    def containers(self) -> list[Container]:
        """Every container process running now."""
        with self.lock:
            return [c for e in self.endpoints.values() for c in (e.fleet, e.pending) if c is not None and c.alive()]

    # -- endpoint control plane ------------------------------------------------------------------
    def _arn(self, region: str, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{region}:{ACCOUNT}:{kind}/{name.lower()}"

    def _config(self, region: str, name: str) -> dict[str, Any]:
        try:
            return dict(self.moto("sagemaker", region).describe_endpoint_config(EndpointConfigName=name))
        except Exception:
            raise ApiError(400, "ValidationException", f'Could not find endpoint configuration "'
                                                       f'{self._arn(region, "endpoint-config", name)}".') from None

    def op(self, region: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one of the endpoint operations this front implements."""
        method = getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower())
        with self.lock:
            return method(region, params)  # type: ignore[no-any-return]

    def _find(self, region: str, name: str) -> Endpoint:
        endpoint = self.endpoints.get(name)
        if endpoint is None or endpoint.region != region:
            raise ApiError(400, "ValidationException", f'Could not find endpoint "{self._arn(region, "endpoint", name)}".')
        return endpoint

    def _create_endpoint(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        name, config_name = params["EndpointName"], params["EndpointConfigName"]
        if name in self.endpoints:
            raise ApiError(400, "ValidationException",
                           f'Cannot create already existing endpoint "{self._arn(region, "endpoint", name)}".')
        config = self._config(region, config_name)
        if self.faults.resource_limit:
            raise ApiError(400, "ResourceLimitExceeded", "The account-level service limit 'ml.m5.large for endpoint "
                           "usage' is 0 Instances, with current utilization of 0 Instances and a request delta of 1 "
                           "Instances. Please use AWS Service Quotas to request an increase for this quota.")
        endpoint = Endpoint(name, self._arn(region, "endpoint", name), config_name, region,
                            capture=config.get("DataCaptureConfig"), asynchronous=config.get("AsyncInferenceConfig"))
        endpoint.variant = config["ProductionVariants"][0]["VariantName"]
        endpoint.set("Creating")
        self.endpoints[name] = endpoint
        threading.Thread(target=self._roll_out, args=(endpoint, config_name, False), daemon=True).start()
        return {"EndpointArn": endpoint.arn}

    def _update_endpoint(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._find(region, params["EndpointName"])
        if endpoint.status != "InService":
            raise ApiError(400, "ValidationException", f'Cannot update in-progress endpoint "{endpoint.arn}".')
        config = self._config(region, params["EndpointConfigName"])
        if endpoint.asynchronous and not config.get("AsyncInferenceConfig"):
            raise ApiError(400, "ValidationException", "The AsyncInferenceConfig parameter cannot be removed from "
                                                       "this endpoint.")
        variants = [v["VariantName"] for v in config["ProductionVariants"]]
        deployment = params.get("DeploymentConfig")
        if deployment and endpoint.variant not in variants:
            raise ApiError(400, "ValidationException", "The new endpoint configuration must have the same variant "
                           f"name as the old one for a blue/green deployment: {endpoint.variant} not in {variants}.")
        routing = ((deployment or {}).get("BlueGreenUpdatePolicy") or {}).get("TrafficRoutingConfiguration") or {}
        if routing and routing.get("Type") not in ("ALL_AT_ONCE", "CANARY", "LINEAR"):
            raise ApiError(400, "ValidationException", f"TrafficRoutingConfiguration.Type {routing.get('Type')!r} is "
                                                       "not one of ALL_AT_ONCE, CANARY, LINEAR.")
        if self.faults.resource_limit:
            raise ApiError(400, "ResourceLimitExceeded", "The account-level service limit for endpoint usage is used up.")
        endpoint.failure = None  # SageMaker drops an earlier FailureReason when a new update starts
        endpoint.deployment_config = deployment
        endpoint.set("Updating")
        threading.Thread(target=self._roll_out, args=(endpoint, params["EndpointConfigName"], True), daemon=True).start()
        return {"EndpointArn": endpoint.arn}

    def _delete_endpoint(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._find(region, params["EndpointName"])
        endpoint.gone = True
        del self.endpoints[endpoint.name]
        for container in (endpoint.fleet, endpoint.pending):
            if container is not None:
                container.stop()
        return {}

    def _describe_endpoint(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._find(region, params["EndpointName"])
        out: dict[str, Any] = {
            "EndpointName": endpoint.name, "EndpointArn": endpoint.arn, "EndpointConfigName": endpoint.config,
            "EndpointStatus": endpoint.status, "CreationTime": endpoint.created, "LastModifiedTime": endpoint.modified,
        }
        if endpoint.fleet is not None:
            out["ProductionVariants"] = [{"VariantName": endpoint.variant, "CurrentWeight": 1.0, "DesiredWeight": 1.0,
                                          "CurrentInstanceCount": 1, "DesiredInstanceCount": 1}]
        if endpoint.failure:
            out["FailureReason"] = endpoint.failure
        if endpoint.capture:
            out["DataCaptureConfig"] = {
                "EnableCapture": bool(endpoint.capture.get("EnableCapture", True)), "CaptureStatus": "Started",
                "CurrentSamplingPercentage": int(endpoint.capture.get("InitialSamplingPercentage", 100)),
                "DestinationS3Uri": endpoint.capture.get("DestinationS3Uri", "")}
        if endpoint.deployment_config:
            out["LastDeploymentConfig"] = endpoint.deployment_config
        return out

    def _list_endpoints(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        contains = params.get("NameContains") or ""
        return {"Endpoints": [
            {"EndpointName": e.name, "EndpointArn": e.arn, "CreationTime": e.created, "LastModifiedTime": e.modified,
             "EndpointStatus": e.status}
            for e in sorted(self.endpoints.values(), key=lambda e: e.name) if e.region == region and contains in e.name]}

    # -- rolling out a revision ----------------------------------------------------------------------
    def _roll_out(self, endpoint: Endpoint, config_name: str, update: bool) -> None:
        started = time.monotonic()
        container, reason = None, None
        try:
            container = self._start_container(endpoint, config_name)
            with self.lock:
                endpoint.pending = container
            reason = self._await_health(container)
        except ApiError as exc:
            reason = exc.message
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        rest = self.faults.transition_delay - (time.monotonic() - started)
        if rest > 0:
            time.sleep(rest)
        with self.lock:
            endpoint.pending = None
            if endpoint.gone:
                if container is not None:
                    container.stop()
                return
            if reason is None:
                old, endpoint.fleet, endpoint.config = endpoint.fleet, container, config_name
                with contextlib.suppress(ApiError):
                    serving = self._config(endpoint.region, config_name)
                    endpoint.capture = serving.get("DataCaptureConfig")
                    endpoint.asynchronous = serving.get("AsyncInferenceConfig")
                endpoint.set("InService")
                if old is not None:
                    old.stop()
                return
            if container is not None:
                container.stop()
            if update:  # the old fleet keeps serving: InService on the old config, with the reason
                endpoint.failure = f"Failed to update endpoint to config {config_name}: {reason}"
                endpoint.set("InService")
            else:
                endpoint.failure = reason
                endpoint.set("Failed")

    def _start_container(self, endpoint: Endpoint, config_name: str) -> Container:
        config = self._config(endpoint.region, config_name)
        return self._start_model(endpoint, config_name, config)

    def _start_model(self, endpoint: Endpoint, config_name: str, config: dict[str, Any]) -> Container:
        model_name = config["ProductionVariants"][0]["ModelName"]
        try:
            model = self.moto("sagemaker", endpoint.region).describe_model(ModelName=model_name)
        except Exception:
            raise ApiError(400, "ValidationException", f"Could not find model {model_name}.") from None
        container = model["PrimaryContainer"]
        url = str(container.get("ModelDataUrl") or "")
        bucket, _, key = url.removeprefix("s3://").partition("/")
        try:
            data = self.moto("s3", endpoint.region).get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise ApiError(400, "ValidationException", f"Failed to download model data from {url}: {exc}. Please "
                           "ensure that the object exists and the execution role can read it.") from None
        if self.faults.bad_tarball:
            data = data[: len(data) // 3]
        folder = Path(tempfile.mkdtemp(prefix=f"{config_name}-", dir=self.folder))
        model_dir, log = folder / "model", folder / "container.log"
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                tar.extractall(model_dir, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise ApiError(400, "ValidationException", f"Failed to extract model data archive from URL {url}. "
                           f"Please ensure that the object located at the URL is a valid tar.gz archive ({exc}).") from None
        env = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
        if self.faults.ping_never_healthy:
            env["DKEMU_PING_NEVER"] = "1"
        if self.faults.model_fn_error:
            env["DKEMU_MODEL_FN_ERROR"] = self.faults.model_fn_error
        if env.get("MLFLOW_DEPLOYMENT_FLAVOR_NAME"):
            return self._start_mlflow(model_dir, folder, log, config_name, env)
        answer = self._fork({"model_dir": str(model_dir), "env": env, "log": str(log)})
        found = re.match(r"^PID (\d+) PORT (\d+)$", answer)
        if found is None or found.group(2) == "0":
            raise ApiError(400, "ValidationException", f"The container did not start: {answer} {log.read_text()[-500:]}")
        return Container(int(found.group(1)), int(found.group(2)), folder, log, config_name)

    def _start_mlflow(self, model_dir: Path, folder: Path, log: Path, config_name: str,
                      env: dict[str, str]) -> Container:
        """MLflow's pyfunc serving image: its ``serve`` entry point runs MLflow's scoring server (uvicorn,
        ``/ping`` and ``/invocations``) on the model directory at ``/opt/ml/model``; so does this."""
        port = _free_port()
        child = {k: v for k, v in os.environ.items() if not k.startswith(("DKEMU_", "DEPLOYKIT_CRASH"))}
        child.update(env, __pyfunc_model_path__=str(model_dir))  # mlflow.pyfunc.scoring_server._SERVER_MODEL_PATH
        with open(log, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
                                        "--workers", "1", "mlflow.pyfunc.scoring_server.app:app"],
                                       stdout=out, stderr=subprocess.STDOUT, env=child, cwd=folder,
                                       start_new_session=True)
        self._mlflow_processes.append(process)  # reaped when the emulator stops
        return Container(process.pid, port, folder, log, config_name)

    def _fork(self, request: dict[str, Any]) -> str:
        """Ask the container fork server for one container process (it is started on first use)."""
        with self._zygote_lock:
            if self._zygote is None or self._zygote.poll() is not None:
                env = {k: v for k, v in os.environ.items() if not k.startswith(("DKEMU_", "DEPLOYKIT_CRASH"))}
                with open(self.folder / "zygote.log", "w") as err:
                    self._zygote = subprocess.Popen([sys.executable, "-I", str(CONTAINER)], stdin=subprocess.PIPE,
                                                    stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                                    cwd=self.folder)
                assert self._zygote.stdout is not None
                ready = self._zygote.stdout.readline()
                if not ready.startswith("READY"):
                    raise ApiError(400, "ValidationException", "the container image did not start: "
                                   f"{(self.folder / 'zygote.log').read_text()[-500:]}")
            if not request:
                return ""
            assert self._zygote.stdin is not None and self._zygote.stdout is not None
            self._zygote.stdin.write(json.dumps(request) + "\n")
            self._zygote.stdin.flush()
            return self._zygote.stdout.readline().strip()

    def _await_health(self, container: Container) -> str | None:
        deadline = time.monotonic() + self.faults.health_timeout
        while time.monotonic() < deadline:
            if not container.alive():
                return ("The primary container for production variant primary did not pass the ping health check. "
                        f"Please check CloudWatch logs for this endpoint. Container log: {container.log_tail()}")
            if container.healthy():
                return None
            time.sleep(0.1)
        return ("The primary container for production variant primary did not pass the ping health check within "
                f"{self.faults.health_timeout:.0f} s. Please check CloudWatch logs for this endpoint.")

    # -- batch transform ------------------------------------------------------------------------------
    def _create_transform_job(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TransformJobName"]
        if name in self.jobs:
            raise ApiError(400, "ValidationException", f"Job name must be unique within an AWS account and region, "
                                                       f"and a job with this name already exists ({name}).")
        try:
            self.moto("sagemaker", region).describe_model(ModelName=params["ModelName"])
        except Exception:
            raise ApiError(400, "ValidationException", f"Could not find model \"{self._arn(region, 'model', params['ModelName'])}\".") from None
        job = {"TransformJobName": name, "TransformJobArn": self._arn(region, "transform-job", name),
               "TransformJobStatus": "InProgress", "ModelName": params["ModelName"], "CreationTime": time.time(),
               "TransformInput": params["TransformInput"], "TransformOutput": params.get("TransformOutput"),
               "TransformResources": params["TransformResources"], "BatchStrategy": params.get("BatchStrategy"),
               "MaxPayloadInMB": params.get("MaxPayloadInMB", 6), "region": region}
        self.jobs[name] = job
        threading.Thread(target=self._run_job, args=(job,), daemon=True).start()
        return {"TransformJobArn": job["TransformJobArn"]}

    def _describe_transform_job(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(params["TransformJobName"])
        if job is None or job["region"] != region:
            raise ApiError(400, "ValidationException", f"Could not find requested job with name "
                                                       f"{params['TransformJobName']}")
        return {k: v for k, v in job.items() if k not in ("region", "stop")}

    def _stop_transform_job(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(params["TransformJobName"])
        if job is None:
            raise ApiError(400, "ValidationException", f"Could not find requested job with name "
                                                       f"{params['TransformJobName']}")
        if job["TransformJobStatus"] == "InProgress":
            job["stop"] = True
            job["TransformJobStatus"] = "Stopping"
        return {}

    def _run_job(self, job: dict[str, Any]) -> None:
        """Score every object under the input prefix through a container; write ``<key>.out`` (SplitType None)."""
        region, started = job["region"], time.monotonic()
        s3, container = self.moto("s3", region), None
        job["TransformStartTime"] = time.time()
        try:
            source = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
            bucket, _, prefix = source.removeprefix("s3://").partition("/")
            out_bucket, _, out_prefix = job["TransformOutput"]["S3OutputPath"].removeprefix("s3://").partition("/")
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
            shadow = Endpoint(job["TransformJobName"], job["TransformJobArn"], "", region)
            config = {"ProductionVariants": [{"ModelName": job["ModelName"]}]}
            container = self._start_model(shadow, job["ModelName"], config)
            reason = self._await_health(container)
            if reason is not None:
                raise ApiError(400, "ClientError", reason)
            ctype = job["TransformInput"].get("ContentType") or "application/json"
            accept = job["TransformOutput"].get("Accept") or "application/json"
            for key in keys:
                if job.get("stop"):
                    break
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                if len(body) > int(job.get("MaxPayloadInMB") or 6) * 1024 * 1024:
                    raise ApiError(400, "ClientError", f"{key} is over MaxPayloadInMB with SplitType None")
                status, answer, _ = container.invoke(body, ctype, accept)
                if status != 200:
                    raise ApiError(400, "ClientError", f"ClientError: See job logs for more information. The "
                                   f"container answered {status} for s3://{bucket}/{key}: {answer[:300]!r}")
                relative = key[len(prefix):].lstrip("/")
                s3.put_object(Bucket=out_bucket, Key=f"{out_prefix.rstrip('/')}/{relative}.out".lstrip("/"), Body=answer)
            rest = self.faults.transition_delay - (time.monotonic() - started)
            if rest > 0:
                time.sleep(rest)
            job["TransformJobStatus"] = "Stopped" if job.get("stop") else "Completed"
        except ApiError as exc:
            job["TransformJobStatus"], job["FailureReason"] = "Failed", exc.message
        except Exception as exc:
            job["TransformJobStatus"], job["FailureReason"] = "Failed", f"{type(exc).__name__}: {exc}"
        finally:
            job["TransformEndTime"] = time.time()
            if container is not None:
                container.stop()

    # -- runtime ---------------------------------------------------------------------------------------
    def invoke(self, region: str, name: str, body: bytes, ctype: str, accept: str) -> tuple[int, bytes, dict[str, str]]:
        """``POST /endpoints/{name}/invocations``."""
        with self.lock:
            endpoint = self.endpoints.get(name)
            fleet = endpoint.fleet if endpoint is not None and endpoint.region == region else None
            if self.faults.container_5xx > 0 and fleet is not None:
                self.faults.container_5xx -= 1
                fleet, forced = None, True
            else:
                forced = False
        if endpoint is None:
            raise ApiError(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")
        if endpoint.asynchronous:
            raise ApiError(400, "ValidationError", f"Endpoint {name} is an asynchronous endpoint; use "
                                                   "InvokeEndpointAsync.")
        if len(body) > MAX_BODY:
            raise ApiError(400, "ValidationError", f"Request body is {len(body)} bytes, over the limit of {MAX_BODY} bytes.")
        if forced:
            status, answer = 500, b'{"error": "emulated container failure (container_5xx fault)"}'
        elif fleet is None:
            raise ApiError(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} is not ready "
                                                   f"(status {endpoint.status}).")
        else:
            status, answer, out_type = fleet.invoke(body, ctype, accept)
            if status == 200:
                if endpoint.capture and endpoint.capture.get("EnableCapture", True):
                    self._capture(endpoint, body, ctype, answer, out_type)
                return 200, answer, {"Content-Type": out_type, "x-Amzn-Invoked-Production-Variant": endpoint.variant}
        kind = "client" if status < 500 else "server"
        text = answer.decode(errors="replace")
        raise ApiError(424, "ModelError", f'Received {kind} error ({status}) from primary with message "{text}". See '
                       f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
                       f"group=/aws/sagemaker/Endpoints/{name} in account {ACCOUNT} for more information.",
                       OriginalStatusCode=status, OriginalMessage=text, ErrorCode=f"{kind.upper()}_ERROR_FROM_MODEL",
                       LogStreamArn=f"arn:aws:logs:{region}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{name}")

    def _capture(self, endpoint: Endpoint, body: bytes, ctype: str, answer: bytes, out_type: str) -> None:
        """Data capture as SageMaker writes it: a sampled request (and answer) as one JSON Lines object
        under ``{destination}/{endpoint}/{variant}/yyyy/mm/dd/hh/``; the content types the config lists
        in CaptureContentTypeHeader as text (``JSON``/``CSV``), anything else base64."""
        config = endpoint.capture or {}
        if random.uniform(0, 100) >= float(config.get("InitialSamplingPercentage", 100)):
            return
        header = config.get("CaptureContentTypeHeader") or {}

        def captured(data: bytes, kind: str, mode: str) -> dict[str, Any]:
            base = kind.split(";")[0].strip()
            encoding = "JSON" if base in header.get("JsonContentTypes", []) else \
                "CSV" if base in header.get("CsvContentTypes", []) else "BASE64"
            text = base64.b64encode(data).decode() if encoding == "BASE64" else data.decode("utf-8", "replace")
            return {"observedContentType": kind, "mode": mode, "data": text, "encoding": encoding}

        modes = {str(o.get("CaptureMode")) for o in config.get("CaptureOptions") or [{"CaptureMode": "Input"}]}
        record: dict[str, Any] = {"captureData": {}, "eventVersion": "0", "eventMetadata": {
            "eventId": str(uuid.uuid4()), "inferenceTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
        if "Input" in modes:
            record["captureData"]["endpointInput"] = captured(body, ctype, "INPUT")
        if "Output" in modes:
            record["captureData"]["endpointOutput"] = captured(answer, out_type, "OUTPUT")
        bucket, _, prefix = str(config.get("DestinationS3Uri", "")).removeprefix("s3://").partition("/")
        key = "/".join(p for p in (prefix.strip("/"), endpoint.name, endpoint.variant,
                                   time.strftime("%Y/%m/%d/%H", time.gmtime()), f"{uuid.uuid4()}.jsonl") if p)
        self.moto("s3", endpoint.region).put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode() + b"\n")

    def invoke_async(self, region: str, name: str, headers: Any) -> tuple[int, bytes, dict[str, str]]:
        """``POST /endpoints/{name}/async-invocations``: 202 at once; the answer is written to S3 later."""
        with self.lock:
            endpoint = self.endpoints.get(name)
        if endpoint is None or endpoint.region != region:
            raise ApiError(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")
        if not endpoint.asynchronous:
            raise ApiError(400, "ValidationError", f"Endpoint {name} is not configured for asynchronous inference "
                                                   "(no AsyncInferenceConfig).")
        source = headers.get("X-Amzn-SageMaker-InputLocation") or ""
        if not source.startswith("s3://"):
            raise ApiError(400, "ValidationError", f"InputLocation {source!r} is not an S3 URI.")
        inference = headers.get("X-Amzn-SageMaker-Inference-Id") or str(uuid.uuid4())
        output = endpoint.asynchronous["OutputConfig"]
        out = f"{output['S3OutputPath'].rstrip('/')}/{inference}.out"
        failed = f"{(output.get('S3FailurePath') or output['S3OutputPath']).rstrip('/')}/{inference}-error.out"
        ctype = headers.get("X-Amzn-SageMaker-Content-Type") or "application/json"
        accept = headers.get("X-Amzn-SageMaker-Accept") or "application/json"
        threading.Thread(target=self._answer_async, args=(endpoint, source, out, failed, ctype, accept),
                         daemon=True).start()
        return 202, json.dumps({"InferenceId": inference}).encode(), {
            "Content-Type": "application/json", "X-Amzn-SageMaker-OutputLocation": out,
            "X-Amzn-SageMaker-FailureLocation": failed}

    def _answer_async(self, endpoint: Endpoint, source: str, out: str, failed: str, ctype: str, accept: str) -> None:
        s3 = self.moto("s3", endpoint.region)

        def put(location: str, body: bytes) -> None:
            bucket, _, key = location.removeprefix("s3://").partition("/")
            s3.put_object(Bucket=bucket, Key=key, Body=body)

        try:
            bucket, _, key = source.removeprefix("s3://").partition("/")
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            deadline = time.monotonic() + 60
            while endpoint.fleet is None and not endpoint.gone and time.monotonic() < deadline:
                time.sleep(0.05)  # queued until the endpoint serves, as SageMaker's queue holds it
            if endpoint.fleet is None:
                raise RuntimeError(f"endpoint {endpoint.name} has no serving fleet")
            status, answer, _ = endpoint.fleet.invoke(body, ctype, accept)
        except Exception as exc:
            put(failed, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
            return
        put(out if status == 200 else failed, answer)

    # -- checks on the calls forwarded to moto -----------------------------------------------------------
    def precheck(self, region: str, op: str, params: dict[str, Any]) -> None:
        """ValidationExceptions real SageMaker gives and moto does not."""
        sm = self.moto("sagemaker", region)
        if op == "CreateModel":
            if params.get("ExecutionRoleArn") not in self.roles:
                raise ApiError(400, "ValidationException", f"Could not assume role {params.get('ExecutionRoleArn')}. "
                               "Please ensure that the role exists and allows principal 'sagemaker.amazonaws.com' to "
                               "assume the role.")
            if self._exists(lambda: sm.describe_model(ModelName=params["ModelName"])):
                raise ApiError(400, "ValidationException", "Cannot create already existing model "
                               f'"{self._arn(region, "model", params["ModelName"])}".')
        if op == "CreateEndpointConfig" and self._exists(
                lambda: sm.describe_endpoint_config(EndpointConfigName=params["EndpointConfigName"])):
            raise ApiError(400, "ValidationException", "Cannot create already existing endpoint configuration "
                           f'"{self._arn(region, "endpoint-config", params["EndpointConfigName"])}".')

    @staticmethod
    def _exists(describe: Any) -> bool:
        try:
            describe()
        except Exception:
            return False
        return True


def _front(emu: SageMakerEmulator) -> type[BaseHTTPRequestHandler]:
    class Front(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any, ctype: str = "application/x-amz-json-1.1") -> None:
            self._send(status, json.dumps(data).encode(), {"Content-Type": ctype})

        def _error(self, exc: ApiError, rest: bool) -> None:
            body = {"__type": exc.code, "message": exc.message, "Message": exc.message, **exc.extra}
            headers = {"Content-Type": "application/json" if rest else "application/x-amz-json-1.1",
                       "x-amzn-ErrorType": exc.code}
            self._send(exc.status, json.dumps(body).encode(), headers)

        def _auth(self) -> tuple[str, str]:
            found = re.search(r"Credential=([^/]+)/\d+/([^/]+)/", self.headers.get("Authorization") or "")
            return (found.group(1), found.group(2)) if found else ("", "us-east-1")

        def do_GET(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_HEAD(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.startswith("/_emulator/"):
                self._control(body)
                return
            key, region = self._auth()
            target = self.headers.get("X-Amz-Target") or ""
            runtime = re.match(r"^/endpoints/([^/]+)/(invocations|async-invocations)$", self.path.split("?")[0])
            rest = runtime is not None
            try:
                if emu.faults.access_keys is not None and key not in emu.faults.access_keys:
                    if not target and not rest:
                        self._send(403, b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InvalidAccessKeyId"
                                        b"</Code><Message>The AWS Access Key Id you provided does not exist in our "
                                        b"records.</Message></Error>", {"Content-Type": "application/xml"})
                        return
                    raise ApiError(400 if target else 403, "UnrecognizedClientException",
                                   "The security token included in the request is invalid.")
                if target.startswith("SageMaker.") or rest:
                    op = target.removeprefix("SageMaker.") if target else (
                        "InvokeEndpointAsync" if runtime.group(2) == "async-invocations" else "InvokeEndpoint")  # type: ignore[union-attr]
                    emu.calls.append(op)
                    with emu.lock:
                        throttled = emu.faults.throttle > 0
                        if throttled:
                            emu.faults.throttle -= 1
                    if throttled:
                        raise ApiError(400, "ThrottlingException", "Rate exceeded")
                    if op in emu.faults.deny:
                        raise ApiError(400, "AccessDeniedException", f"User: arn:aws:iam::{ACCOUNT}:user/deploykit is "
                                       f"not authorized to perform: sagemaker:{op} because no identity-based policy "
                                       "allows the sagemaker:" + op + " action")
                if rest and runtime.group(2) == "async-invocations":  # type: ignore[union-attr]
                    status, answer, headers = emu.invoke_async(region, runtime.group(1), self.headers)  # type: ignore[union-attr]
                    self._send(status, answer, headers)
                    return
                if rest:
                    status, answer, headers = emu.invoke(region, runtime.group(1), body,  # type: ignore[union-attr]
                                                         self.headers.get("Content-Type") or "application/json",
                                                         self.headers.get("Accept") or "application/json")
                    self._send(status, answer, headers)
                    return
                if target.startswith("SageMaker."):
                    op = target.removeprefix("SageMaker.")
                    params = json.loads(body or b"{}")
                    if op in _OWN:
                        self._json(200, emu.op(region, op, params))
                        return
                    emu.precheck(region, op, params)
                self._forward(body)
            except ApiError as exc:
                self._error(exc, rest)

        def _forward(self, body: bytes) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", emu.moto_port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                             headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                passed = {k: v for k, v in answer.getheaders()
                          if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date")}
                self.send_response(answer.status)
                for k, v in passed.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else
                                                       answer.getheader("Content-Length") or 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            finally:
                conn.close()

        def _control(self, body: bytes) -> None:
            path = self.path.split("?")[0]
            if path == "/_emulator/faults" and self.command == "POST":
                with emu.lock:
                    for key, value in json.loads(body or b"{}").items():
                        if not hasattr(emu.faults, key):
                            self._json(400, {"error": f"unknown fault {key!r}; known: {sorted(asdict(emu.faults))}"},
                                       "application/json")
                            return
                        setattr(emu.faults, key, value)
                self._json(200, asdict(emu.faults), "application/json")
            elif path == "/_emulator/reset" and self.command == "POST":
                emu.reset()
                self._json(200, {}, "application/json")
            elif path == "/_emulator/state":
                with emu.lock:
                    state = {n: {"status": e.status, "config": e.config, "failure": e.failure, "statuses": e.statuses}
                             for n, e in emu.endpoints.items()}
                self._json(200, {"endpoints": state, "faults": asdict(emu.faults)}, "application/json")
            else:
                self._json(404, {"error": "use POST /_emulator/faults, POST /_emulator/reset or GET /_emulator/state"},
                           "application/json")

    return Front


def main() -> None:
    """Run the emulator until interrupted; print the settings that point deploykit at it."""
    parser = argparse.ArgumentParser(description="SageMaker emulator (moto + endpoints that run models)")
    parser.add_argument("--port", type=int, default=9300)
    args = parser.parse_args()
    with SageMakerEmulator(args.port) as emu:
        emu.moto("s3").create_bucket(Bucket="deploykit-models")
        print(f"SageMaker emulator on {emu.url} (sagemaker, sagemaker-runtime and s3)\n"
              "credentials.yaml:\n  sagemaker:\n    region: us-east-1\n"
              f"    role_arn: {ROLE_ARN}\n    bucket: deploykit-models\n    endpoint_url: {emu.url}\n"
              "    poll_interval: 1\n"
              "and any AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (e.g. testing / testing)", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
