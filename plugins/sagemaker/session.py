"""boto3 clients for the sagemaker target, and one ``call`` that turns AWS errors into deploykit's.

boto3 is imported here, on first use of the target, never when deploykit or the plugin loads.
Credentials come from boto3's own chain (environment, ``sagemaker.profile``, the instance or task
role); deploykit never reads, prints or stores them. Throttled and unavailable calls are retried
by botocore's *standard* retry mode (``sagemaker.max_retries`` times, with jittered back-off).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from deploykit.errors import CredentialsError, DeployKitError, DeploymentError
from deploykit_plugins.sagemaker.settings import SageMakerSettings

__all__ = ["AwsSession", "botocore_session", "error_code", "is_missing"]

_LOADER: Any = None


def botocore_session() -> Any:
    """A new botocore session (credentials resolved afresh) sharing one process-wide data loader, so
    SageMaker's large service model is parsed once per process, not once per target."""
    global _LOADER
    import botocore.loaders
    import botocore.session

    if _LOADER is None:
        _LOADER = botocore.loaders.create_loader()
    session = botocore.session.Session()
    session.register_component("data_loader", _LOADER)
    return session

T = TypeVar("T")

_BAD_KEYS = {"UnrecognizedClientException", "InvalidClientTokenId", "InvalidAccessKeyId", "SignatureDoesNotMatch",
             "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException", "IncompleteSignature"}
_DENIED = {"AccessDeniedException", "AccessDenied"}
_THROTTLED = {"ThrottlingException", "Throttling", "SlowDown", "TooManyRequestsException"}
_MISSING_WORDS = ("could not find", "does not exist", "not found", "nosuchkey", "no such")


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError (``""`` for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or "")


def _message(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Message") or exc)


def is_missing(exc: Exception) -> bool:
    """Whether a ClientError says the thing asked for does not exist ("Could not find endpoint ...")."""
    code = error_code(exc)
    if code in ("NoSuchKey", "NoSuchBucket", "404", "ResourceNotFound"):
        return True
    return code in ("ValidationException", "ValidationError") and any(w in _message(exc).lower() for w in _MISSING_WORDS)


class AwsSession:
    """The boto3 session and its three clients (sagemaker, sagemaker-runtime, s3), made on first use."""

    def __init__(self, settings: SageMakerSettings) -> None:
        self.settings = settings
        self._session: Any = None
        self._clients: dict[str, Any] = {}

    def _boto_session(self) -> Any:
        if self._session is None:
            import boto3
            import botocore.exceptions

            try:
                self._session = boto3.session.Session(botocore_session=botocore_session(),
                                                      profile_name=self.settings.profile,
                                                      region_name=self.settings.region)
            except botocore.exceptions.ProfileNotFound:
                raise CredentialsError(
                    f"sagemaker.profile = {self.settings.profile!r} is not a profile in ~/.aws/config or "
                    "~/.aws/credentials; fix the name or remove sagemaker.profile to use boto3's default chain"
                ) from None
        return self._session

    def client(self, service: str) -> Any:
        """The boto3 client for ``service`` (``sagemaker``, ``sagemaker-runtime`` or ``s3``)."""
        if service not in self._clients:
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": self.settings.max_retries},  # retries, not calls
                            connect_timeout=10, read_timeout=70, s3={"addressing_style": "path"},
                            user_agent_extra="deploykit")
            self._clients[service] = self._boto_session().client(
                service, region_name=self.settings.region, endpoint_url=self.settings.url_for(service),
                verify=self.settings.tls_verify, config=config)
        return self._clients[service]

    def _who(self) -> str:
        try:
            creds = self._boto_session().get_credentials()
        except DeployKitError:
            raise
        except Exception:
            return "the credentials boto3 found"
        if creds is None:
            return "no credentials"
        key = str(creds.access_key or "")
        shown = f"{key[:4]}...{key[-4:]}" if len(key) > 8 else "(short key)"
        return f"access key {shown} (from boto3's {getattr(creds, 'method', 'chain')})"

    def call(self, what: str, fn: Callable[[], T], *, permission: str | None = None, missing_ok: bool = False,
             error: type[DeployKitError] = DeploymentError) -> T | None:
        """Run ``fn`` (one AWS call, described by ``what``); map its errors to deploykit's.

        ``missing_ok``: a "could not find" answer returns None (a delete of something gone).
        ``permission`` (``sagemaker:CreateModel``) is named when AWS denies the call.
        """
        import botocore.exceptions

        try:
            return fn()
        except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
            raise CredentialsError(
                f"{what}: boto3 found no AWS credentials (it reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE or sagemaker.profile, ~/.aws/credentials, then the instance or task role); set one "
                "of them - deploykit never stores AWS keys") from None
        except botocore.exceptions.EndpointConnectionError as exc:
            raise error(f"{what}: cannot reach AWS at {exc.kwargs.get('endpoint_url')} ({exc}); check "
                        "sagemaker.region, sagemaker.endpoint_url and the network") from None
        except botocore.exceptions.ClientError as exc:
            if missing_ok and is_missing(exc):
                return None
            raise self.translate(what, exc, permission=permission, error=error) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise error(f"{what}: boto3 failed ({type(exc).__name__}: {exc})") from None

    def translate(self, what: str, exc: Exception, *, permission: str | None = None,
                  error: type[DeployKitError] = DeploymentError) -> DeployKitError:
        """The deploykit error for the botocore ClientError ``exc`` raised while ``what`` ran."""
        code, message = error_code(exc), _message(exc)
        if code in _BAD_KEYS:
            return CredentialsError(
                f"{what}: AWS refused {self._who()} ({code}: {message}); fix the AWS credentials "
                f"(environment, sagemaker.profile or the role) for region {self.settings.region!r}")
        if code in _DENIED:
            needed = permission or "the permission for this call"
            return error(f"{what}: AWS denied {needed} to {self._who()} ({message}); grant {needed} "
                         "to the caller's IAM user or role (see docs/sagemaker.md, IAM)")
        if "assume role" in message.lower() or "assume the role" in message.lower():
            return CredentialsError(
                f"{what}: SageMaker cannot assume sagemaker.role_arn = {self.settings.role_arn!r} ({message}); "
                "give the ARN of an existing role whose trust policy allows sagemaker.amazonaws.com")
        if code in _THROTTLED:
            return error(f"{what}: AWS kept throttling the call after {self.settings.max_retries} retries "
                         f"({message}); try again later or raise sagemaker.max_retries")
        if code == "ResourceLimitExceeded":
            return error(f"{what}: an AWS quota is used up ({message}); delete unused endpoints, pick another "
                         "instance type or count, or ask for a higher quota in Service Quotas")
        return error(f"{what}: AWS answered {code or 'an error'}: {message}")
