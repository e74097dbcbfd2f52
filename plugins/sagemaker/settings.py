"""The ``sagemaker:`` credentials section: where to deploy, on what, and how boto3 reaches AWS.

    sagemaker:
      region: eu-west-1
      role_arn: arn:aws:iam::123456789012:role/deploykit-sagemaker   # the endpoint's execution role
      bucket: my-models                  # model.tar.gz goes to s3://bucket/prefix/<name>/...
      prefix: deploykit
      instance_type: ml.m5.large         # or serverless: memory_mb: 2048, max_concurrency: 5
      instance_count: 1
      data_capture: {destination: s3://my-models/capture, sampling_percentage: 20}
      tags: {team: risk}
      profile: prod                      # optional: a profile of ~/.aws/config
      endpoint_url: http://127.0.0.1:9300    # tests and the emulator: every service at one URL

AWS credentials are never read from this section: boto3's own chain finds them (environment,
``profile``, the instance or task role), so nothing secret ever reaches metadata.yaml.
"""

from __future__ import annotations

import functools
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deploykit.settings import Retries, TargetSettings

__all__ = ["AsyncInference", "DataCapture", "SageMakerSettings", "VpcConfig", "known_instance_types"]

_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
SERVICES = ("sagemaker", "sagemaker-runtime", "s3")


@functools.lru_cache(maxsize=2)
def known_instance_types(shape: str = "ProductionVariantInstanceType") -> frozenset[str]:
    """The instance types botocore's SageMaker model lists for endpoints (``TransformInstanceType``: for
    batch transform); empty if botocore is missing."""
    try:
        from deploykit_plugins.sagemaker.session import botocore_session

        model = botocore_session().get_service_model("sagemaker")
    except ImportError:
        return frozenset()
    return frozenset(model.shape_for(shape).enum)


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VpcConfig(_Part):
    """The VPC the model's containers run in."""

    subnets: list[str] = Field(min_length=1, description="subnet ids, e.g. [subnet-0abc]")
    security_group_ids: list[str] = Field(min_length=1, description="security group ids, e.g. [sg-0abc]")


class DataCapture(_Part):
    """Endpoint data capture: requests and responses copied to S3."""

    destination: str = Field(description="s3://bucket/prefix the captured data goes to")
    sampling_percentage: int = Field(100, ge=0, le=100, description="share of requests captured")
    kms_key_id: str | None = Field(None, description="KMS key for the captured objects")

    @field_validator("destination")
    @classmethod
    def _s3(cls, value: str) -> str:
        if not value.startswith("s3://") or len(value) < 8:
            raise ValueError("must be an S3 URI such as s3://my-bucket/capture")
        return value


class AsyncInference(_Part):
    """Asynchronous inference: requests go through S3 (``invoke_endpoint_async``), answers are read from S3."""

    output_path: str = Field(description="s3://bucket/prefix SageMaker writes the answers to")
    failure_path: str | None = Field(None, description="s3://bucket/prefix for failed requests "
                                                       "(default: <output_path>/failures)")
    max_concurrent_invocations: int | None = Field(None, ge=1, le=1000,
                                                   description="concurrent requests per instance")
    timeout_seconds: float = Field(900.0, gt=0, le=3600, description="how long a score waits for the answer")

    @field_validator("output_path", "failure_path")
    @classmethod
    def _s3(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("s3://") or len(value) < 8):
            raise ValueError("must be an S3 URI such as s3://my-bucket/async")
        return value.rstrip("/") if value else value


class SageMakerSettings(TargetSettings):
    """Validated ``sagemaker`` settings (AWS credentials come from boto3's chain, never from here)."""

    section: ClassVar[str] = "sagemaker"

    region: str = Field(description="AWS region of the endpoint and the bucket, e.g. eu-west-1")
    role_arn: str = Field(description="IAM execution role SageMaker assumes (arn:aws:iam::<account>:role/<name>)")
    bucket: str = Field(description="S3 bucket for model.tar.gz, in the same region")
    prefix: str = Field("deploykit", description="key prefix inside the bucket")
    instance_type: str = Field("ml.m5.large", description="endpoint instance type, e.g. ml.m5.large")
    batch_instance_type: str = Field("ml.m5.large", description="instance type of batch transform jobs")
    instance_count: int = Field(1, ge=1, le=100, description="instances behind the endpoint")
    memory_mb: int | None = Field(None, description="serverless: memory per worker, 1024-6144 in steps of 1024")
    max_concurrency: int | None = Field(None, ge=1, le=200, description="serverless: concurrent invocations")
    image_uri: str | None = Field(None, description="container image to use instead of the scikit-learn table's")
    vpc_config: VpcConfig | None = Field(None, description="run the containers in this VPC")
    kms_key_id: str | None = Field(None, description="KMS key for the endpoint's storage and the S3 upload")
    network_isolation: bool = Field(False, description="run the container without network access")
    tags: dict[str, str] = Field(default_factory=dict, description="tags on every resource deploykit creates")
    data_capture: DataCapture | None = Field(None, description="capture requests/responses to S3")
    async_inference: AsyncInference | None = Field(None, description="serve asynchronously through S3 "
                                                                     "(AsyncInferenceConfig)")
    traffic_routing: Literal["ALL_AT_ONCE", "CANARY", "LINEAR"] = Field(
        "ALL_AT_ONCE", description="blue/green traffic shifting of an update")
    canary_percent: int = Field(10, ge=1, le=50, description="CANARY: share of capacity shifted first")
    linear_step_percent: int = Field(10, ge=10, le=50, description="LINEAR: share of capacity per step")
    wait_interval_seconds: int = Field(0, ge=0, le=3600, description="seconds between traffic-shifting steps")
    rollback_alarms: list[str] = Field(default_factory=list, max_length=10,
                                       description="CloudWatch alarms that roll an update back automatically")
    startup_health_check_timeout: int | None = Field(None, ge=60, le=3600,
                                                     description="seconds the container may take to pass /ping")
    keep_revisions: int = Field(2, ge=1, le=20, description="revisions whose model and config are kept for rollback")
    poll_interval: float = Field(10.0, gt=0, le=60, description="longest pause between status polls, in seconds")
    profile: str | None = Field(None, description="a profile of ~/.aws/config for boto3 (default: its chain)")
    endpoint_url: str | None = Field(None, description="one URL for every service (the emulator, a VPC endpoint)")
    endpoint_urls: dict[Literal["sagemaker", "sagemaker-runtime", "s3"], str] = Field(
        default_factory=dict, description="URL per service: sagemaker, sagemaker-runtime, s3")
    max_retries: Retries = Field(5, description="retries of a throttled or unavailable call")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        value = value.strip()
        if not _REGION.match(value):
            raise ValueError("is not an AWS region name; write one such as us-east-1 or eu-west-1")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str) -> str:
        value = value.strip()
        if not _ROLE.match(value):
            raise ValueError("is not an IAM role ARN; write arn:aws:iam::<12-digit account>:role/<role name> "
                             "(the role SageMaker assumes to read the model from S3)")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        value = value.strip().removeprefix("s3://").rstrip("/")
        if not _BUCKET.match(value):
            raise ValueError("is not an S3 bucket name (3-63 lower-case letters, digits, dots, hyphens); write "
                             "the bucket only, the key prefix goes to sagemaker.prefix")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        known = known_instance_types()
        if known and value not in known:
            close = sorted(t for t in known if t.split(".")[1:2] == value.split(".")[1:2])[:6]
            hint = f" (known {value.split('.')[1]} sizes: {', '.join(close)})" if close else ""
            raise ValueError(f"is not an instance type SageMaker endpoints know{hint}; write one such as "
                             "ml.m5.large")
        return value

    @field_validator("batch_instance_type")
    @classmethod
    def _batch_instance_type(cls, value: str) -> str:
        known = known_instance_types("TransformInstanceType")
        if known and value not in known:
            raise ValueError("is not an instance type SageMaker batch transform knows; write one such as ml.m5.large")
        return value

    @field_validator("memory_mb")
    @classmethod
    def _memory(cls, value: int | None) -> int | None:
        if value is not None and (value not in range(1024, 6145, 1024)):
            raise ValueError("must be 1024, 2048, 3072, 4096, 5120 or 6144 (serverless memory in MB)")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _serverless(self) -> SageMakerSettings:
        if (self.memory_mb is None) != (self.max_concurrency is None):
            raise ValueError("serverless needs both sagemaker.memory_mb and sagemaker.max_concurrency; set both, "
                             "or neither for instances (instance_type, instance_count)")
        return self

    @property
    def serverless(self) -> bool:
        """Whether the endpoint is serverless (memory_mb + max_concurrency) rather than on instances."""
        return self.memory_mb is not None

    def url_for(self, service: str) -> str | None:
        """The endpoint URL boto3 uses for ``service`` (None: AWS's own)."""
        return self.endpoint_urls.get(service) or self.endpoint_url  # type: ignore[call-overload]

    def resource_tags(self, extra: dict[str, str]) -> list[dict[str, Any]]:
        """The user's tags plus deploykit's, in the ``[{Key, Value}]`` form SageMaker takes."""
        merged = {**self.tags, **extra}
        return [{"Key": k, "Value": v} for k, v in merged.items()]
