"""The sagemaker target: a real-time SageMaker endpoint per deployment name, through boto3.

One deployment name is one endpoint (named like the deployment). Each revision is a model and
an endpoint config named ``{name}-{revision}-{hash8}`` (the hash covers the model's sha256 and
every setting that shapes them), with one fixed production variant (``primary``) so SageMaker's
blue/green guardrails apply to every update, and its ``model.tar.gz`` at
``s3://{bucket}/{prefix}/{name}/{revision}-{hash8}/model.tar.gz``.

- deploy: build the tarball (``packaging``), upload it (SHA-256 checked by S3 and read back),
  ``create_model``, ``create_endpoint_config``, ``create_endpoint``; what fails half-way is removed.
- update: a new model and config (data capture and async settings carried over from the
  serving config), then ``update_endpoint`` with a blue/green ``DeploymentConfig``. Success is
  InService *on the new config*; InService on the old one means SageMaker rolled back.
- rollback: ``update_endpoint`` back to the retained config of that revision.
- Retention: after a successful wait the revisions beyond ``keep_revisions`` lose their model,
  config and S3 object (so does any half-made revision of this name).
- delete: the endpoint, then every model, config and S3 object of the name; "could not find" is gone.
- wait_ready: ``describe_endpoint`` with back-off (up to ``poll_interval``), a timeout,
  progress on each status change, FailureReason and the CloudWatch log group in the error.

Record ids: ``region``, ``endpoint_name``, ``endpoint_arn``, ``model_name``, ``model_arn``,
``config_name``, ``config_arn``, ``model_data_url``, ``image_uri``.

Crash safety: the deterministic names are noted before each create (``context.note``), each ARN
the moment AWS returns it; ``reconcile`` finds a revision's resources by those names (or by the
``{name}-{revision}-`` prefix) and the model's sha256 in its container environment
(``DEPLOYKIT_MODEL_SHA256``). Crash points: ``<action>:uploaded``, ``<action>:model-created``,
``<action>:config-created``, ``<action>:endpoint-created`` / ``update:endpoint-updating``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.deployment import Deployment
from deploykit.errors import DeployKitError, DeploymentError, PayloadError, ScoringError
from deploykit.faults import crash_point
from deploykit.target import TargetContext, wait_until
from deploykit_plugins.sagemaker.capture import CONTENT_TYPES
from deploykit_plugins.sagemaker.images import image_uri as table_image_uri
from deploykit_plugins.sagemaker.session import AwsSession
from deploykit_plugins.sagemaker.settings import SageMakerSettings

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.artifact import Artifact
    from deploykit.operations import PendingOperation
    from deploykit.payload import Predictions

__all__ = ["MAX_BODY_BYTES", "STATUSES", "VARIANT", "SageMakerSettings", "SageMakerTarget", "revision_names"]

#: The one production variant every config has (guardrails need the same name across updates).
VARIANT = "primary"
#: invoke_endpoint's request body limit (6 MB).
MAX_BODY_BYTES = 6 * 1024 * 1024
#: SageMaker endpoint statuses -> deploykit statuses.
STATUSES = {"InService": "ready", "Creating": "pending", "Updating": "pending", "SystemUpdating": "pending",
            "RollingBack": "pending", "Deleting": "stopped", "Failed": "failed", "OutOfService": "stopped",
            "UpdateRollbackFailed": "failed"}
_MOVING = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}
SHA_ENV = "DEPLOYKIT_MODEL_SHA256"
_SUFFIX = {"application/json": ".json", "text/csv": ".csv", "application/x-parquet": ".parquet",
           "application/jsonlines": ".jsonl"}
#: The container environment variable marking a scoring-script bundle (its mode), read back by reconcile.
BUNDLE_ENV = "DEPLOYKIT_BUNDLE"


def revision_names(name: str, revision: int, digest: str) -> str:
    """The model and endpoint-config name of one revision: ``{name}-{revision}-{hash8}``."""
    return f"{name}-{revision}-{digest[:8]}"


def _revision_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(name)}-(\d+)-[0-9a-f]{{8}}$")


def _log_group(endpoint: str) -> str:
    return f"/aws/sagemaker/Endpoints/{endpoint}"


def _bundle_mode(artifact: Artifact) -> str | None:
    """``sync`` or ``async`` for a scoring-script bundle, None for a model."""
    if artifact.flavor != "script":
        return None
    return str(artifact.extra.get("mode") or (artifact.extra.get("bundle") or {}).get("mode") or "sync")


def _output_predictions(output: bytes) -> Predictions:
    """An async script's output file (CSV, Parquet, JSON Lines or JSON) as Predictions: one label per
    output row (a dict of its columns), ``raw`` the file's bytes."""
    import io

    import pandas as pd

    from deploykit.payload import Predictions, jsonable

    try:
        if output.startswith(b"PAR1"):
            frame = pd.read_parquet(io.BytesIO(output))
        elif output.lstrip().startswith((b"[", b"{")):
            text = output.decode("utf-8")
            try:
                frame = pd.DataFrame(json.loads(text))
            except ValueError:
                frame = pd.read_json(io.StringIO(text), lines=True)
        else:
            frame = pd.read_csv(io.BytesIO(output))
    except Exception as exc:
        raise ScoringError(f"the async script's output file ({len(output)} bytes, starting {output[:60]!r}) is not "
                           f"CSV, Parquet or JSON ({type(exc).__name__}: {exc}); write one of those") from None
    return Predictions([jsonable(r) for r in frame.to_dict("records")], None, None, raw=output)


def _script_sklearn_version() -> str:
    """The scikit-learn container for a scoring script: the one of the scikit-learn installed here
    (the script's pickles were most likely written with it), else the newest; ``sagemaker.image_uri``
    picks another."""
    from importlib.metadata import PackageNotFoundError, version

    from deploykit_plugins.sagemaker.images import VERSIONS

    try:
        installed = ".".join(version("scikit-learn").split(".")[:2])
    except PackageNotFoundError:
        installed = ""
    return installed if installed in VERSIONS else max(VERSIONS, key=lambda v: tuple(map(int, v.split("."))))


class SageMakerTarget:
    """Deployer and Scorer for SageMaker real-time endpoints."""

    #: ``score`` on an async bundle sends the rows as the script's input file (async inference), so deploy smoke-tests it
    smokes_async_bundles = True

    def __init__(self, context: TargetContext) -> None:
        self.context = context
        self.settings: SageMakerSettings = context.settings
        self.aws = AwsSession(self.settings)
        #: ``create``, ``update`` or ``rollback``: the prefix of this call's crash points
        self._action = "create"

    # -- small helpers --------------------------------------------------------------------
    @property
    def sm(self) -> Any:
        """The boto3 ``sagemaker`` client."""
        return self.aws.client("sagemaker")

    def _describe_endpoint(self, name: str) -> dict[str, Any] | None:
        return self.aws.call(f"reading endpoint {name!r}", lambda: self.sm.describe_endpoint(EndpointName=name),
                             permission="sagemaker:DescribeEndpoint", missing_ok=True)

    def _describe_config(self, config: str) -> dict[str, Any] | None:
        return self.aws.call(f"reading endpoint config {config!r}",
                             lambda: self.sm.describe_endpoint_config(EndpointConfigName=config),
                             permission="sagemaker:DescribeEndpointConfig", missing_ok=True)

    def _describe_model(self, model: str) -> dict[str, Any] | None:
        return self.aws.call(f"reading model {model!r}", lambda: self.sm.describe_model(ModelName=model),
                             permission="sagemaker:DescribeModel", missing_ok=True)

    def _url(self, endpoint: str) -> str:
        base = self.settings.url_for("sagemaker-runtime") or f"https://runtime.sagemaker.{self.settings.region}.amazonaws.com"
        return f"{base}/endpoints/{endpoint}/invocations"

    def _image(self, artifact: Artifact) -> str:
        from deploykit_plugins.sagemaker.packaging import is_mlflow_model

        if self.settings.image_uri:
            return self.settings.image_uri
        if artifact.flavor == "mlflow" or is_mlflow_model(artifact):
            raise DeploymentError(
                f"{artifact.path.name} is an MLflow model directory; SageMaker serves those through MLflow's pyfunc "
                "serving image, which deploykit cannot pick for you: set sagemaker.image_uri to that image in your "
                "account's ECR (built and pushed by 'mlflow sagemaker build-and-push-container'), or deploy the "
                "model's joblib/pickle file for SageMaker's scikit-learn container")
        if artifact.flavor == "script":
            return table_image_uri(self.settings.region, _script_sklearn_version())
        if artifact.framework not in ("scikit-learn", "sklearn"):
            raise DeploymentError(
                f"{artifact.path.name} holds a {artifact.framework} model, and deploykit picks SageMaker "
                "containers for scikit-learn models only; set sagemaker.image_uri to a container that loads it")
        return table_image_uri(self.settings.region, artifact.framework_version)

    def _check_bundle(self, artifact: Artifact) -> None:
        """Refuse, before anything is created, the bundles SageMaker cannot serve as deploykit packs them."""
        if artifact.flavor != "script":
            return
        bundle = artifact.extra.get("bundle") or {}
        if bundle.get("requirements") and self.settings.network_isolation:
            raise DeploymentError(
                f"the bundle's requirements file {bundle['requirements']!r} is installed by SageMaker's container at "
                "start, which sagemaker.network_isolation forbids (no network); turn network_isolation off, or "
                "drop the requirements (ship pure-Python modules as extra files)")

    def _variant(self, model_name: str) -> dict[str, Any]:
        s = self.settings
        variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": model_name, "InitialVariantWeight": 1.0}
        if s.serverless:
            variant["ServerlessConfig"] = {"MemorySizeInMB": s.memory_mb, "MaxConcurrency": s.max_concurrency}
        else:
            variant.update(InstanceType=s.instance_type, InitialInstanceCount=s.instance_count)
            if s.startup_health_check_timeout:
                variant["ContainerStartupHealthCheckTimeoutInSeconds"] = s.startup_health_check_timeout
        return variant

    def _data_capture(self) -> dict[str, Any] | None:
        capture = self.settings.data_capture
        if capture is None:
            return None
        out: dict[str, Any] = {"EnableCapture": True, "InitialSamplingPercentage": capture.sampling_percentage,
                               "DestinationS3Uri": capture.destination,
                               "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                               "CaptureContentTypeHeader": CONTENT_TYPES}
        if capture.kms_key_id:
            out["KmsKeyId"] = capture.kms_key_id
        return out

    def _async_config(self, carried: dict[str, Any], artifact: Artifact | None = None,
                      name: str = "") -> dict[str, Any] | None:
        """The config's AsyncInferenceConfig: from the settings, else the serving config's (AWS refuses to
        drop it on an update), else for an async scoring script one writing under ``{prefix}/{name}/async-output``."""
        setting = self.settings.async_inference
        if setting is None and carried.get("AsyncInferenceConfig"):
            return dict(carried["AsyncInferenceConfig"])
        if setting is None and artifact is not None and _bundle_mode(artifact) == "async":
            base = "/".join(p for p in (self.settings.bucket, self.settings.prefix, name, "async-output") if p)
            made: dict[str, Any] = {"S3OutputPath": f"s3://{base}", "S3FailurePath": f"s3://{base}/failures"}
            if self.settings.kms_key_id:
                made["KmsKeyId"] = self.settings.kms_key_id
            return {"OutputConfig": made}
        if setting is None:
            return None
        output: dict[str, Any] = {"S3OutputPath": setting.output_path,
                                  "S3FailurePath": setting.failure_path or f"{setting.output_path}/failures"}
        if self.settings.kms_key_id:
            output["KmsKeyId"] = self.settings.kms_key_id
        config: dict[str, Any] = {"OutputConfig": output}
        if setting.max_concurrent_invocations:
            config["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance": setting.max_concurrent_invocations}
        return config

    def _deployment_config(self) -> dict[str, Any]:
        s = self.settings
        routing: dict[str, Any] = {"Type": s.traffic_routing, "WaitIntervalInSeconds": s.wait_interval_seconds}
        if s.traffic_routing == "CANARY":
            routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": s.canary_percent}
        elif s.traffic_routing == "LINEAR":
            routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": s.linear_step_percent}
        config: dict[str, Any] = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing,
                                                            "TerminationWaitInSeconds": 0}}
        if s.rollback_alarms:
            config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in s.rollback_alarms]}
        return config

    def _tags(self, name: str, revision: int) -> list[dict[str, Any]]:
        return self.settings.resource_tags({"deploykit:deployment": name, "deploykit:revision": str(revision)})

    def _key(self, name: str, revision_name: str) -> str:
        revision_dir = revision_name[len(name) + 1:]
        return "/".join(p for p in (self.settings.prefix, name, revision_dir, "model.tar.gz") if p)

    def _plan(self, artifact: Artifact, name: str, revision: int, carried: dict[str, Any]) -> dict[str, Any]:
        """Everything one revision will create, with its deterministic names."""
        image = self._image(artifact)
        s = self.settings
        shaping = {"sha256": artifact.sha256, "image": image, "role": s.role_arn, "variant": self._variant("-"),
                   "vpc": s.vpc_config.model_dump() if s.vpc_config else None, "kms": s.kms_key_id,
                   "isolation": s.network_isolation, "tags": s.tags, "carried": carried,
                   "capture": self._data_capture(), "async": self._async_config(carried, artifact, name)}
        digest = hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()
        resource = revision_names(name, revision, digest)
        return {"resource": resource, "image": image, "bucket": s.bucket, "key": self._key(name, resource),
                "revision": revision, "async": shaping["async"]}

    # -- creating one revision ----------------------------------------------------------------
    def _upload(self, artifact: Artifact, plan: dict[str, Any]) -> str:
        """Build and upload model.tar.gz; S3 checks the SHA-256 on receipt and it is read back after."""
        import tempfile

        from deploykit_plugins.sagemaker.packaging import build_model_tarball, is_bundle

        if is_bundle(artifact):  # it holds the env file: no copy of it is kept under .deploykit/
            with tempfile.TemporaryDirectory(prefix="deploykit-sagemaker-") as scratch:
                return self._upload_tarball(*build_model_tarball(artifact, Path(scratch) / "model.tar.gz"), plan)
        folder = self.context.state_dir / "sagemaker" / plan["resource"]
        return self._upload_tarball(*build_model_tarball(artifact, folder / "model.tar.gz"), plan)

    def _upload_tarball(self, path: Path, sha: str, plan: dict[str, Any]) -> str:
        checksum = base64.b64encode(bytes.fromhex(sha)).decode()
        bucket, key = plan["bucket"], plan["key"]
        uri = f"s3://{bucket}/{key}"
        s3 = self.aws.client("s3")
        extra: dict[str, Any] = {}
        if self.settings.kms_key_id:
            extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self.settings.kms_key_id)
        self.context.progress(f"uploading {path.stat().st_size} bytes to {uri}")
        body = path.read_bytes()
        self.aws.call(f"uploading the model to {uri}", lambda: s3.put_object(
            Bucket=bucket, Key=key, Body=body, ChecksumSHA256=checksum, Metadata={"deploykit-sha256": sha},
            **extra), permission="s3:PutObject")
        head = self.aws.call(f"checking the upload {uri}", lambda: s3.head_object(
            Bucket=bucket, Key=key, ChecksumMode="ENABLED"), permission="s3:GetObject") or {}
        seen = head.get("ChecksumSHA256") or ""
        stored = (head.get("Metadata") or {}).get("deploykit-sha256")
        if head.get("ContentLength") != len(body) or (seen and seen != checksum) or (stored and stored != sha):
            raise DeploymentError(
                f"the upload to {uri} does not match model.tar.gz (size {head.get('ContentLength')} vs {len(body)}, "
                f"sha256 {seen or stored} vs {checksum}); deploy again")
        crash_point(f"{self._action}:uploaded")
        return uri

    def _create_model(self, name: str, plan: dict[str, Any], uri: str, artifact: Artifact) -> str:
        s = self.settings
        model_name = plan["resource"]
        from deploykit_plugins.sagemaker.packaging import is_mlflow_model

        environment: dict[str, str] = {"SAGEMAKER_REGION": s.region, SHA_ENV: artifact.sha256}
        if is_mlflow_model(artifact):  # MLflow's pyfunc serving image reads these (mlflow.sagemaker sets the same)
            environment.update(MLFLOW_DEPLOYMENT_FLAVOR_NAME="python_function", SERVING_ENVIRONMENT="SageMaker")
        else:
            environment.update(SAGEMAKER_PROGRAM="inference.py", SAGEMAKER_SUBMIT_DIRECTORY="/opt/ml/model/code",
                               SAGEMAKER_CONTAINER_LOG_LEVEL="20")
        if artifact.flavor == "script":  # the mode only: the env file's variables stay inside the tarball
            environment[BUNDLE_ENV] = str(_bundle_mode(artifact))
        kwargs: dict[str, Any] = {
            "ModelName": model_name, "ExecutionRoleArn": s.role_arn, "Tags": self._tags(name, plan["revision"]),
            "PrimaryContainer": {"Image": plan["image"], "ModelDataUrl": uri, "Environment": environment},
        }
        if s.vpc_config:
            kwargs["VpcConfig"] = {"Subnets": s.vpc_config.subnets, "SecurityGroupIds": s.vpc_config.security_group_ids}
        if s.network_isolation:
            kwargs["EnableNetworkIsolation"] = True
        existing = self._describe_model(model_name)
        if existing is None:
            created = self.aws.call(f"creating model {model_name!r}", lambda: self.sm.create_model(**kwargs),
                                    permission="sagemaker:CreateModel and iam:PassRole on the execution role")
            arn = str((created or {}).get("ModelArn"))
        else:  # a re-run after a crash: the same deterministic name holds the same model
            arn = str(existing.get("ModelArn"))
        self.context.note(model_arn=arn)
        crash_point(f"{self._action}:model-created")
        return arn

    def _create_config(self, name: str, plan: dict[str, Any], carried: dict[str, Any]) -> str:
        config = plan["resource"]
        kwargs: dict[str, Any] = {"EndpointConfigName": config, "ProductionVariants": [self._variant(config)],
                                  "Tags": self._tags(name, plan["revision"])}
        if self.settings.kms_key_id and not self.settings.serverless:
            kwargs["KmsKeyId"] = self.settings.kms_key_id
        capture = self._data_capture() or carried.get("DataCaptureConfig")
        if capture:
            kwargs["DataCaptureConfig"] = capture
        asynchronous = plan["async"]
        if asynchronous:
            kwargs["AsyncInferenceConfig"] = asynchronous
        if self._describe_config(config) is None:
            self.aws.call(f"creating endpoint config {config!r}", lambda: self.sm.create_endpoint_config(**kwargs),
                          permission="sagemaker:CreateEndpointConfig")
        # AWS: the config may not be readable at once (eventual consistency); read it before using it
        described = wait_until(lambda: self._describe_config(config), timeout=60,
                               what=f"endpoint config {config!r} to be readable", first=0.1, most=2.0)
        arn = str(described.get("EndpointConfigArn"))
        self.context.note(config_arn=arn)
        crash_point(f"{self._action}:config-created")
        return arn

    def _make_revision(self, artifact: Artifact, name: str, revision: int,
                       carried: dict[str, Any]) -> dict[str, Any]:
        """Upload, create the model and the config of one revision; their ids. Removes them on failure."""
        plan = self._plan(artifact, name, revision, carried)
        resource = plan["resource"]
        ids: dict[str, Any] = {"region": self.settings.region, "endpoint_name": name, "model_name": resource,
                               "config_name": resource, "model_data_url": f"s3://{plan['bucket']}/{plan['key']}",
                               "image_uri": plan["image"]}
        asynchronous = plan["async"]
        if asynchronous:
            ids["async_output"] = asynchronous["OutputConfig"]["S3OutputPath"]
        if artifact.flavor == "script":
            ids["bundle"] = str(_bundle_mode(artifact))
        self.context.note(**ids)
        try:
            self._upload(artifact, plan)
            ids["model_arn"] = self._create_model(name, plan, ids["model_data_url"], artifact)
            ids["config_arn"] = self._create_config(name, plan, carried)
        except DeployKitError:
            self._remove_revision(name, resource, ids["model_data_url"])
            raise
        return ids

    def _remove_revision(self, name: str, resource: str, uri: str | None = None) -> None:
        """Delete one revision's config, model and S3 object (each may be gone already)."""
        self.aws.call(f"deleting endpoint config {resource!r}",
                      lambda: self.sm.delete_endpoint_config(EndpointConfigName=resource),
                      permission="sagemaker:DeleteEndpointConfig", missing_ok=True)
        self.aws.call(f"deleting model {resource!r}", lambda: self.sm.delete_model(ModelName=resource),
                      permission="sagemaker:DeleteModel", missing_ok=True)
        if uri is None:
            uri = f"s3://{self.settings.bucket}/{self._key(name, resource)}"
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        s3 = self.aws.client("s3")
        self.aws.call(f"deleting {uri}", lambda: s3.delete_object(Bucket=bucket, Key=key),
                      permission="s3:DeleteObject", missing_ok=True)

    def _delete_key(self, key: str) -> None:
        """Delete one object of the bucket (gone already is fine)."""
        s3 = self.aws.client("s3")
        self.aws.call(f"deleting s3://{self.settings.bucket}/{key}",
                      lambda: s3.delete_object(Bucket=self.settings.bucket, Key=key),
                      permission="s3:DeleteObject", missing_ok=True)

    def _record(self, name: str, ids: dict[str, Any], status: str = "pending") -> Deployment:
        return Deployment(name=name, target="sagemaker", status=status, url=self._url(name), ids=dict(ids))

    def _carried(self, config_name: str | None) -> dict[str, Any]:
        """The serving config's DataCaptureConfig and AsyncInferenceConfig, for the next config."""
        if not config_name:
            return {}
        described = self._describe_config(config_name) or {}
        return {k: described[k] for k in ("DataCaptureConfig", "AsyncInferenceConfig") if described.get(k)}

    # -- Deployer -------------------------------------------------------------------------
    def deploy(self, artifact: Artifact, name: str) -> Deployment:
        """Upload, create model, config and endpoint ``name`` (revision 1); answers while Creating."""
        self._action = "create"
        self._check_bundle(artifact)
        existing = self._describe_endpoint(name)
        if existing is not None:
            raise DeploymentError(
                f"endpoint {name!r} already exists in {self.settings.region} ({existing.get('EndpointStatus')}, "
                f"config {existing.get('EndpointConfigName')}) but metadata.yaml has no record of it; delete it "
                f"('aws sagemaker delete-endpoint --endpoint-name {name}') or deploy under another --name")
        ids = self._make_revision(artifact, name, 1, {})
        ids["endpoint_arn"] = self._create_endpoint(name, ids["config_name"], ids)
        return self._record(name, ids)

    def _create_endpoint(self, name: str, config: str, ids: dict[str, Any], revision: int = 1) -> str:
        try:
            created = self.aws.call(f"creating endpoint {name!r}", lambda: self.sm.create_endpoint(
                EndpointName=name, EndpointConfigName=config, Tags=self._tags(name, revision)),
                permission="sagemaker:CreateEndpoint")
        except DeployKitError:
            if ids:  # a revision made for this endpoint (a rollback's retained revision stays)
                self._remove_revision(name, config, ids.get("model_data_url"))
            raise
        arn = str((created or {}).get("EndpointArn"))
        self.context.note(endpoint_arn=arn)
        crash_point(f"{self._action}:endpoint-created")
        return arn

    def update(self, current: Deployment, artifact: Artifact) -> Deployment:
        """A new model and config, then a blue/green ``update_endpoint`` to it (the old config serves
        until the new fleet is healthy). An endpoint deleted outside deploykit is created again."""
        self._action = "update"
        self._check_bundle(artifact)
        name = current.name
        revision = max(current.revisions) + 1
        endpoint = self._describe_endpoint(name)
        serving = (endpoint or {}).get("EndpointConfigName") or current.ids.get("config_name")
        ids = self._make_revision(artifact, name, revision, self._carried(serving))
        if endpoint is None or endpoint.get("EndpointStatus") == "Failed":
            if endpoint is not None:
                self._delete_endpoint(name)
            self.context.progress(f"endpoint {name!r} is gone from SageMaker; creating it again")
            ids["endpoint_arn"] = self._create_endpoint(name, ids["config_name"], ids, revision)
            return self._record(name, ids)
        self._update_endpoint(name, ids["config_name"], ids)
        ids["endpoint_arn"] = endpoint.get("EndpointArn")
        return self._record(name, ids)

    def _update_endpoint(self, name: str, config: str, ids: dict[str, Any] | None = None) -> None:
        try:
            self.aws.call(f"updating endpoint {name!r} to config {config!r}", lambda: self.sm.update_endpoint(
                EndpointName=name, EndpointConfigName=config, DeploymentConfig=self._deployment_config()),
                permission="sagemaker:UpdateEndpoint")
        except DeployKitError:
            if ids is not None:
                self._remove_revision(name, config, ids.get("model_data_url"))
            raise
        crash_point(f"{self._action}:endpoint-updating")

    def rollback(self, current: Deployment, previous: Deployment) -> Deployment:
        """``update_endpoint`` back to ``previous``'s retained config (no call when SageMaker already
        serves it, as after an update it rolled back itself)."""
        self._action = "rollback"
        name = current.name
        config = previous.ids.get("config_name")
        if not config or self._describe_config(str(config)) is None:
            raise DeploymentError(
                f"revision {previous.revision} of {name!r} has no endpoint config on SageMaker any more "
                f"({config or 'none recorded'}; only the last {self.settings.keep_revisions} revisions are kept, "
                "sagemaker.keep_revisions); deploy that model file again instead")
        ids = {k: v for k, v in previous.ids.items()}
        endpoint = self._describe_endpoint(name)
        self.context.note(config_name=str(config), model_name=str(previous.ids.get("model_name") or config))
        if endpoint is None:
            ids["endpoint_arn"] = self._create_endpoint(name, str(config), {}, previous.revision)
        elif endpoint.get("EndpointConfigName") != config or endpoint.get("EndpointStatus") != "InService":
            self._update_endpoint(name, str(config))
        back = self._record(name, ids)
        back.revision = previous.revision
        if current.status == "ready":  # a rollback asked for: the current revision stays retained
            back.history = [e for e in current.history if e.get("revision") != previous.revision] + [current.snapshot()]
        else:  # the automatic rollback of an update that never served: its revision goes
            back.history = list(previous.history)
        return back

    def wait_ready(self, deployment: Deployment, timeout: float) -> Deployment:
        """Poll ``describe_endpoint`` (back-off up to ``poll_interval``) until it is InService on the
        recorded config; then drop revisions beyond ``keep_revisions``.

        ``Failed`` raises DeploymentError with SageMaker's FailureReason and the log group;
        InService on another config after an update means SageMaker rolled the update back.
        """
        name = deployment.name
        want = deployment.ids.get("config_name")
        seen: list[str] = []

        def check() -> dict[str, Any] | None:
            endpoint = self._describe_endpoint(name)
            if endpoint is None:
                raise DeploymentError(f"endpoint {name!r} disappeared while deploykit waited for it; "
                                      "deploy again to create it")
            status = str(endpoint.get("EndpointStatus"))
            if not seen or seen[-1] != status:
                seen.append(status)
                self.context.progress(f"SageMaker endpoint {name!r}: {status}")
            reason = endpoint.get("FailureReason")
            if status in ("Failed", "UpdateRollbackFailed"):
                raise DeploymentError(
                    f"SageMaker endpoint {name!r} is {status}: {reason or 'no reason given'}; see the CloudWatch "
                    f"log group {_log_group(name)}. Fix the model or the settings and deploy again")
            if status in _MOVING:
                return None
            if status == "InService" and endpoint.get("EndpointConfigName") == want:
                return endpoint
            if status == "InService" and ("Updating" in seen or reason):
                raise DeploymentError(
                    f"SageMaker rolled back the update of endpoint {name!r}: it is InService on config "
                    f"{endpoint.get('EndpointConfigName')} again, not {want} ({reason or 'no reason given'}); see "
                    f"the CloudWatch log group {_log_group(name)}. Fix the model and deploy again")
            return None  # the update has not started yet

        endpoint = wait_until(check, timeout=timeout, what=f"SageMaker endpoint {name!r} on config {want}",
                              progress=None, first=min(0.2, self.settings.poll_interval),
                              most=self.settings.poll_interval)
        deployment.status = "ready"
        deployment.ids["endpoint_arn"] = endpoint.get("EndpointArn") or deployment.ids.get("endpoint_arn")
        self._prune(deployment)
        return deployment

    # -- retention and removal ------------------------------------------------------------------
    def _resources(self, name: str) -> tuple[set[str], set[str]]:
        """(model names, config names) of ``name``'s revisions on SageMaker (``{name}-{rev}-{hash8}``)."""
        pattern = _revision_pattern(name)

        def listed(method: str, key: str, field: str) -> set[str]:
            found: set[str] = set()
            paginator = self.sm.get_paginator(method)
            pages = self.aws.call(f"listing {key} of {name!r}", lambda: list(paginator.paginate(NameContains=name)),
                                  permission=f"sagemaker:{method.title().replace('_', '')}") or []
            for page in pages:
                found.update(str(item[field]) for item in page.get(key, []) if pattern.match(str(item[field])))
            return found

        return (listed("list_models", "Models", "ModelName"),
                listed("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName"))

    def _objects(self, name: str) -> list[str]:
        prefix = "/".join(p for p in (self.settings.prefix, name) if p) + "/"
        s3 = self.aws.client("s3")
        pages = self.aws.call(f"listing s3://{self.settings.bucket}/{prefix}", lambda: list(
            s3.get_paginator("list_objects_v2").paginate(Bucket=self.settings.bucket, Prefix=prefix)),
            permission="s3:ListBucket", missing_ok=True) or []
        return [str(o["Key"]) for page in pages for o in page.get("Contents", [])]

    def _prune(self, deployment: Deployment) -> None:
        """Remove every revision of the name but the serving one and the newest ``keep_revisions - 1``
        of its history; also what a failed or interrupted revision left."""
        name = deployment.name
        keep = {str(deployment.ids.get("config_name"))}
        history = [e.get("ids") or {} for e in sorted(deployment.history, key=lambda e: int(e.get("revision", 0)))]
        for ids in history[::-1][: self.settings.keep_revisions - 1]:
            if ids.get("config_name"):
                keep.add(str(ids["config_name"]))
        models, configs = self._resources(name)
        for resource in sorted((models | configs) - keep):
            self.context.progress(f"removing revision {resource} (sagemaker.keep_revisions = "
                                  f"{self.settings.keep_revisions})")
            self._remove_revision(name, resource)
        kept_dirs = {k[len(name) + 1:] for k in keep}
        for key in self._objects(name):
            if key.endswith("/model.tar.gz") and key.split("/")[-2] not in kept_dirs:  # batch files are not revisions
                self._delete_key(key)

    def _delete_endpoint(self, name: str) -> None:
        gone = self.aws.call(f"deleting endpoint {name!r}", lambda: self.sm.delete_endpoint(EndpointName=name),
                             permission="sagemaker:DeleteEndpoint", missing_ok=True)
        if gone is None:
            return
        wait_until(lambda: True if self._describe_endpoint(name) is None else None, timeout=self.context.timeout,
                   what=f"SageMaker endpoint {name!r} to be deleted", first=0.1, most=self.settings.poll_interval)

    def delete(self, current: Deployment) -> None:
        """Delete the endpoint, then every config, model and S3 object of the name (idempotent)."""
        name = current.name
        self._delete_endpoint(name)
        models, configs = self._resources(name)
        recorded = {str(ids[k]) for ids in [current.ids] + [e.get("ids") or {} for e in current.history]
                    for k in ("model_name", "config_name") if ids.get(k)}
        for resource in sorted(models | configs | recorded):
            self._remove_revision(name, resource)
        for key in self._objects(name):
            self._delete_key(key)

    def get(self, current: Deployment) -> Deployment:
        """The record with its status from one ``describe_endpoint``: ``missing`` when the endpoint
        is gone, ``changed`` when it serves another config than recorded."""
        refreshed = Deployment.from_dict(current.name, current.target, current.to_dict())
        endpoint = self._describe_endpoint(current.name)
        if endpoint is None:
            refreshed.status = "missing"
            return refreshed
        status = str(endpoint.get("EndpointStatus"))
        refreshed.status = STATUSES.get(status, status.lower())
        if refreshed.status == "ready" and endpoint.get("EndpointConfigName") != current.ids.get("config_name"):
            refreshed.status = "changed"
        return refreshed

    def list(self) -> list[Deployment]:
        """Every endpoint in the region, as records built from SageMaker's state."""
        paginator = self.sm.get_paginator("list_endpoints")
        pages = self.aws.call("listing endpoints", lambda: list(paginator.paginate()),
                              permission="sagemaker:ListEndpoints") or []
        out = []
        for page in pages:
            for item in page.get("Endpoints", []):
                status = str(item.get("EndpointStatus"))
                out.append(Deployment(name=str(item["EndpointName"]), target="sagemaker",
                                      status=STATUSES.get(status, status.lower()), url=self._url(item["EndpointName"]),
                                      ids={"endpoint_name": item["EndpointName"], "endpoint_arn": item.get("EndpointArn"),
                                           "region": self.settings.region}))
        return out

    # -- reconcile ------------------------------------------------------------------------------
    def _settled_endpoint(self, name: str) -> dict[str, Any] | None:
        """``describe_endpoint`` once it is no longer Creating/Updating (bounded by the timeout)."""
        def check() -> dict[str, Any] | None:
            endpoint = self._describe_endpoint(name)
            if endpoint is None:
                return {}
            return None if endpoint.get("EndpointStatus") in _MOVING else endpoint

        found = wait_until(check, timeout=self.context.timeout, what=f"SageMaker endpoint {name!r} to settle",
                           progress=self.context.progress, first=0.2, most=self.settings.poll_interval)
        return found or None

    def _serves_model(self, config: str, sha: str | None) -> dict[str, Any] | None:
        """The model behind ``config`` when it holds the model of sha256 ``sha`` (any, if None)."""
        described = self._describe_config(config)
        if described is None:
            return None
        model_name = str(described["ProductionVariants"][0]["ModelName"])
        model = self._describe_model(model_name)
        if model is None:
            return None
        env = (model.get("PrimaryContainer") or {}).get("Environment") or {}
        if sha is not None and env.get(SHA_ENV) not in (None, sha):
            return None
        return {"model": model, "config": described}

    def reconcile(self, operation: PendingOperation, current: Deployment | None) -> Deployment | None:
        """Adopt what an interrupted create/update/rollback made when the endpoint is InService on the
        operation's config and that config's model is the planned one; else remove what it made (the
        endpoint too, for a create) and put ``current``'s config back on the endpoint. Resources are
        found by the noted names or the ``{name}-{revision}-`` prefix. Idempotent."""
        op = operation
        if op.action == "delete":
            return None
        name = op.name
        endpoint = self._settled_endpoint(name)
        arn = (endpoint or {}).get("EndpointArn")
        serving = str((endpoint or {}).get("EndpointConfigName") or "")
        in_service = (endpoint or {}).get("EndpointStatus") == "InService"
        if op.action == "rollback":
            entry = current.revision_entry(op.revision) if current is not None else None
            wanted = str((entry.ids if entry else {}).get("config_name") or op.ids.get("config_name") or "")
            if entry is not None and in_service and serving == wanted:
                return self._record(name, {**entry.ids, "endpoint_arn": arn}, "ready")
            self._put_back(name, current, endpoint)
            return None
        prefix = f"{name}-{op.revision}-"
        models, configs = self._resources(name)
        made = {r for r in models | configs if r.startswith(prefix)}
        if op.ids.get("config_name"):
            made.add(str(op.ids["config_name"]))
        used = {str(ids.get("config_name")) for ids in ([current.ids] + [e.get("ids") or {} for e in current.history]
                                                        if current is not None else [])}
        sha = op.planned.get("model_sha256")
        if in_service and serving in made and self._serves_model(serving, sha) is not None:
            found = self._serves_model(serving, sha) or {}
            model, config = found["model"], found["config"]
            ids = {"region": self.settings.region, "endpoint_name": name, "endpoint_arn": arn,
                   "model_name": model["ModelName"], "model_arn": model.get("ModelArn"), "config_name": serving,
                   "config_arn": config.get("EndpointConfigArn"),
                   "model_data_url": (model.get("PrimaryContainer") or {}).get("ModelDataUrl"),
                   "image_uri": (model.get("PrimaryContainer") or {}).get("Image")}
            bundle = ((model.get("PrimaryContainer") or {}).get("Environment") or {}).get(BUNDLE_ENV)
            if bundle:
                ids["bundle"] = bundle
            for resource in sorted(made - {serving} - used):
                self._remove_revision(name, resource)
            self.context.progress(f"adopted revision {op.revision} of {name!r}: endpoint {name} serves {serving}")
            return self._record(name, ids, "ready")
        self.context.progress(f"removing what the interrupted {op.action} of {name!r} created on SageMaker")
        if op.action == "create" and endpoint is not None and current is None and \
                (serving in made or op.ids.get("endpoint_arn")):  # never an endpoint this operation did not make
            self._delete_endpoint(name)
        elif op.action == "update":
            self._put_back(name, current, endpoint)
        for resource in sorted(made - used):
            self._remove_revision(name, resource)
        for key in self._objects(name):
            if key.split("/")[-2].startswith(f"{op.revision}-") and \
                    not any(key.split("/")[-2] == u[len(name) + 1:] for u in used):
                self._delete_key(key)
        return None

    def _put_back(self, name: str, current: Deployment | None, endpoint: dict[str, Any] | None) -> None:
        """Point the endpoint at ``current``'s config again if an interrupted operation moved it."""
        if current is None or endpoint is None or not current.ids.get("config_name"):
            return
        config = str(current.ids["config_name"])
        if endpoint.get("EndpointConfigName") == config and endpoint.get("EndpointStatus") == "InService":
            return
        if endpoint.get("EndpointStatus") == "Failed" or self._describe_config(config) is None:
            return
        self.context.progress(f"switching endpoint {name!r} back to config {config}")
        self._update_endpoint(name, config)
        self._settled_endpoint(name)

    # -- logged inputs -----------------------------------------------------------------------
    def logged_inputs(self, deployment: Deployment, since: Any = None) -> pd.DataFrame:
        """The requests SageMaker's data capture wrote to S3 for the endpoint, one row per scored row
        with ``__time`` (for ``deploykit drift``); DriftError saying how to turn capture on when it is off."""
        from deploykit.errors import DriftError
        from deploykit_plugins.sagemaker.capture import read_capture

        name = str(deployment.ids.get("endpoint_name") or deployment.name)
        endpoint = self._describe_endpoint(name)
        config = (endpoint or {}).get("DataCaptureConfig") or {}
        destination = config.get("DestinationS3Uri")
        if not destination:
            raise DriftError(f"endpoint {name!r} has no data capture, so it logged no inputs; turn it on with "
                             "'data_capture: {destination: s3://BUCKET/capture}' in the sagemaker: section of "
                             "credentials.yaml, deploy again (--force), and score some requests")
        return read_capture(self.aws.client("s3"), str(destination), name, VARIANT, since=since,
                            columns=deployment.columns or None)

    # -- BatchScorer -----------------------------------------------------------------------
    def score_batch(self, deployment: Deployment, frame: pd.DataFrame, timeout: float) -> Predictions:
        """BatchScorer: score ``frame`` as one SageMaker batch transform job of the deployment's model
        (see ``deploykit_plugins.sagemaker.batch``); wait up to ``timeout``."""
        from deploykit_plugins.sagemaker.batch import score_with_transform_job

        return score_with_transform_job(self, deployment, frame, timeout)

    # -- Scorer ---------------------------------------------------------------------------
    def score(self, deployment: Deployment, frame: pd.DataFrame) -> Predictions:
        """``invoke_endpoint`` with the rows as MLflow ``dataframe_split`` JSON; deploykit's handlers
        in the container answer labels and probabilities."""
        from deploykit.payload import encode

        name = str(deployment.ids.get("endpoint_name") or deployment.name)
        columns = deployment.columns
        if columns and set(columns) == {str(c) for c in frame.columns} and list(frame.columns) != columns:
            frame = frame[columns]
        if deployment.ids.get("bundle") == "async":  # the rows as the script's input file, its output file read back
            output = self.score_file(deployment, frame.to_csv(index=False).encode(), "text/csv", rows=len(frame))
            return _output_predictions(output)
        body = json.dumps(encode(frame, "dataframe_split"), default=str).encode()
        if deployment.ids.get("async_output"):
            return self._score_async(name, body, len(frame), deployment)
        if len(body) > MAX_BODY_BYTES:
            raise PayloadError(
                f"{len(frame)} row(s) make a request of {len(body)} bytes, over SageMaker's invoke_endpoint limit "
                f"of {MAX_BODY_BYTES} bytes (6 MB); score fewer rows per call, or use 'deploykit batch'")
        runtime = self.aws.client("sagemaker-runtime")
        import botocore.exceptions

        try:
            answer = runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json",
                                             Accept="application/json")
        except botocore.exceptions.ClientError as exc:
            raise self._scoring_error(name, exc) from None
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise ScoringError(f"scoring {len(frame)} row(s) on endpoint {name!r} failed ({exc}); "
                               f"see 'deploykit status {deployment.name}'") from None
        raw = answer["Body"].read()
        try:
            decoded = json.loads(raw)
        except ValueError:
            raise ScoringError(f"endpoint {name!r} answered {raw[:200]!r}, which is not JSON; is its container "
                               "running deploykit's inference.py? Deploy again") from None
        return self.predictions(deployment, decoded)

    def predictions(self, deployment: Deployment, decoded: Any) -> Predictions:
        """The container's JSON answer as Predictions: for a scoring script, one label per row holding
        the script's answer (``raw`` the whole body); else any response shape deploykit reads."""
        from deploykit.payload import Predictions

        if not deployment.ids.get("bundle"):
            return Predictions.decode(decoded)
        answers = decoded.get("predictions") if isinstance(decoded, dict) else None
        if not isinstance(answers, list):
            raise ScoringError(f"the scoring script on endpoint {deployment.name!r} answered {str(decoded)[:200]!r} "
                               "instead of deploykit's {'predictions': [...]}; is the endpoint serving deploykit's "
                               "inference.py? Deploy again")
        return Predictions(answers, None, None, raw=decoded)

    def score_file(self, deployment: Deployment, data: bytes, content_type: str, rows: int | None = None) -> bytes:
        """One execution of an async scoring script: ``data`` (the input file's bytes, ``content_type``
        ``text/csv``, ``application/x-parquet``, ``application/jsonlines`` or ``application/json``) goes to
        S3, ``invoke_endpoint_async`` runs ``score(data_path, model_path)`` on it in the container, and
        the output file's bytes are returned (ScoringError with the script's message if it failed)."""
        if deployment.ids.get("bundle") != "async":
            raise ScoringError(f"{deployment.name!r} on sagemaker is not an async scoring script (it is "
                               f"{'a sync script' if deployment.ids.get('bundle') else 'a model'}); score rows with "
                               f"'deploykit score {deployment.name} rows.csv'")
        name = str(deployment.ids.get("endpoint_name") or deployment.name)
        what = f"{rows} row(s)" if rows is not None else f"a {len(data)}-byte file"
        return self._invoke_async(name, data, content_type, what, "*/*")

    def _score_async(self, name: str, body: bytes, rows: int, deployment: Deployment) -> Predictions:
        """``invoke_endpoint_async`` of the rows as JSON; the answer decoded as Predictions."""
        raw = self._invoke_async(name, body, "application/json", f"{rows} row(s)", "application/json")
        try:
            decoded = json.loads(raw)
        except ValueError:
            raise ScoringError(f"the async answer of endpoint {name!r} is not JSON: {raw[:200]!r}") from None
        return self.predictions(deployment, decoded)

    def _invoke_async(self, name: str, body: bytes, content_type: str, what: str, accept: str) -> bytes:
        """``invoke_endpoint_async``: the body goes to S3, the answer is awaited at the output location
        (bounded by ``async_inference.timeout_seconds``); the request's S3 objects are removed after."""
        import uuid

        s3, runtime = self.aws.client("s3"), self.aws.client("sagemaker-runtime")
        bucket = self.settings.bucket
        request = f"{uuid.uuid4().hex}{_SUFFIX.get(content_type, '.input')}"
        key = "/".join(p for p in (self.settings.prefix, name, "async-input", request) if p)
        timeout = self.settings.async_inference.timeout_seconds if self.settings.async_inference else 900.0
        self.aws.call(f"uploading the request to s3://{bucket}/{key}",
                      lambda: s3.put_object(Bucket=bucket, Key=key, Body=body), permission="s3:PutObject",
                      error=ScoringError)
        locations: list[str] = []
        try:
            answer = self.aws.call(f"scoring {what} on async endpoint {name!r}", lambda: runtime.invoke_endpoint_async(
                EndpointName=name, InputLocation=f"s3://{bucket}/{key}", ContentType=content_type,
                Accept=accept, InvocationTimeoutSeconds=min(3600, max(1, int(timeout)))),
                permission="sagemaker:InvokeEndpointAsync", error=ScoringError) or {}
            locations = [str(answer[k]) for k in ("OutputLocation", "FailureLocation") if answer.get(k)]

            def fetch() -> tuple[str, bytes] | None:
                for location in locations:
                    where, _, path = location.removeprefix("s3://").partition("/")
                    got = self.aws.call(f"reading {location}", functools.partial(s3.get_object, Bucket=where, Key=path),
                                        permission="s3:GetObject", missing_ok=True, error=ScoringError)
                    if got is not None:
                        return location, got["Body"].read()
                return None

            location, raw = wait_until(fetch, timeout=timeout, what=f"the async answer of endpoint {name!r} at "
                                       f"{locations[0] if locations else '(no output location)'}", first=0.1,
                                       most=self.settings.poll_interval)
        finally:
            for leftover in [f"s3://{bucket}/{key}", *locations]:
                where, _, path = leftover.removeprefix("s3://").partition("/")
                self.aws.call(f"deleting {leftover}", functools.partial(s3.delete_object, Bucket=where, Key=path),
                              permission="s3:DeleteObject", missing_ok=True, error=ScoringError)
        if len(locations) > 1 and location == locations[1]:
            text = raw.decode(errors="replace")
            try:
                text = str(json.loads(text).get("error") or text)
            except (ValueError, AttributeError):
                pass
            raise ScoringError(f"the model on async endpoint {name!r} refused the request: {text}; see the "
                               f"CloudWatch log group {_log_group(name)}", body=text)
        return raw

    def _scoring_error(self, name: str, exc: Exception) -> DeployKitError:
        from deploykit_plugins.sagemaker.session import error_code

        response: dict[str, Any] = getattr(exc, "response", {}) or {}
        code, message = error_code(exc), str((response.get("Error") or {}).get("Message") or exc)
        if code == "ModelError":
            status = response.get("OriginalStatusCode")
            original = str(response.get("OriginalMessage") or message)
            try:
                original = str(json.loads(original).get("error") or original)
            except (ValueError, AttributeError):
                pass
            return ScoringError(f"the model on endpoint {name!r} refused the request (container status {status}): "
                                f"{original}; see the CloudWatch log group {_log_group(name)}",
                                status=int(status) if status else None, body=original)
        if code in ("ValidationError", "ValidationException") and "not found" in message.lower():
            return ScoringError(f"endpoint {name!r} does not exist on SageMaker ({message}); run 'deploykit "
                                f"status {name}' and deploy again", status=400)
        return self.aws.translate(f"scoring on endpoint {name!r}", exc, permission="sagemaker:InvokeEndpoint",
                                  error=ScoringError)
