"""The deploykit exception tree: every failure a user can meet, rooted at DeployKitError.

    DeployKitError
    ├── ArtifactError            model file missing, unreadable or not a model
    ├── CredentialsError         credentials file missing, bad YAML, missing key, unset ${ENV}
    ├── MetadataError            metadata.yaml unreadable or corrupt (never overwritten)
    ├── FileWriteError           a file could not be written (read-only or full disk); also an OSError
    ├── TargetError              a target cannot be used
    │   ├── UnknownTargetError       nobody registered that name
    │   └── TargetUnavailableError   registered, but its SDK (extra) is not installed
    ├── PluginError              a plugin is broken: a misspelt hook implementation, a missing dependency
    ├── InvalidNameError         a deployment name no target accepts, or that would escape .deploykit/
    ├── NotDeployedError         no record for that name (and target) in metadata.yaml
    ├── PendingOperationError    an interrupted operation on that deployment blocks the command
    ├── DeploymentError          create/update/rollback/delete failed on the target
    │   ├── DeploymentTimeout        not ready within the timeout
    │   └── SmokeTestError           deployed, but the example row did not score
    ├── PayloadError             a scoring payload could not be decoded or encoded
    │   └── SchemaError              the payload does not fit the model's input schema
    ├── ScoringError             the endpoint answered a scoring request with an error
    ├── BatchError               a batch run cannot start or finish: input missing, output folder
    │                            in use, engine unknown or unavailable, cluster unreachable
    ├── JobError                 an async job cannot be submitted (the target has no jobs), failed,
    │                            was cancelled, expired, or has no result yet
    └── DriftError               drift cannot be computed: no reference profile, no logged inputs,
                                 a reference file without the schema's columns

Every message names the thing that failed, the value seen, and the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:
    from deploykit.deployment import Deployment

__all__ = [
    "ArtifactError",
    "BatchError",
    "CredentialsError",
    "DeployKitError",
    "DeploymentError",
    "DeploymentTimeout",
    "DriftError",
    "FileWriteError",
    "InvalidNameError",
    "JobError",
    "MetadataError",
    "NotDeployedError",
    "PayloadError",
    "PendingOperationError",
    "PluginError",
    "Problem",
    "SchemaError",
    "ScoringError",
    "SmokeTestError",
    "TargetError",
    "TargetUnavailableError",
    "UnknownTargetError",
]


class DeployKitError(Exception):
    """Base of every error deploykit raises on purpose; ``str(err)`` is the user message."""


class ArtifactError(DeployKitError):
    """The model file is missing, unreadable, or does not hold a model."""


class CredentialsError(DeployKitError):
    """The credentials file or a credentials value is missing or wrong."""


class MetadataError(DeployKitError):
    """metadata.yaml cannot be read or written; it is left untouched."""


class FileWriteError(DeployKitError, OSError):
    """A file could not be written (read-only or full filesystem, no permission); nothing was changed.

    Also an ``OSError`` with the ``errno`` of the cause; ``str(err)`` is the user message.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class TargetError(DeployKitError):
    """A target cannot be used."""


class UnknownTargetError(TargetError):
    """No installed plugin registered a target of that name."""


class TargetUnavailableError(TargetError):
    """The target is registered but its SDK is missing; the message names the extra."""


class PluginError(DeployKitError):
    """A plugin cannot be loaded: a hook implementation no hook matches, or a dependency it lacks."""


class InvalidNameError(DeployKitError):
    """A deployment name breaks the rule every target accepts (see ``deploykit.names``)."""


class NotDeployedError(DeployKitError):
    """metadata.yaml has no deployment of that name (on that target)."""


class PendingOperationError(DeployKitError):
    """A pending operation on the deployment blocks the command: its process still runs (or runs
    on another host, so it cannot be told), or removing what it created failed.

    ``operation`` is the ``deploykit.operations.PendingOperation`` in the way.
    """

    def __init__(self, message: str, *, operation: Any = None) -> None:
        super().__init__(message)
        self.operation = operation


class DeploymentError(DeployKitError):
    """A deploy, update, rollback or delete failed on the target.

    ``deployment`` is set when something was created remotely before the failure, so the
    caller can record it instead of orphaning it.
    """

    def __init__(self, message: str, *, deployment: Deployment | None = None) -> None:
        super().__init__(message)
        self.deployment = deployment


class DeploymentTimeout(DeploymentError):
    """The deployment did not become ready within the timeout."""


class SmokeTestError(DeploymentError):
    """The deployment is up but scoring its example row failed."""


class PayloadError(DeployKitError):
    """A scoring payload has a shape or value deploykit cannot decode or encode."""


class Problem(TypedDict):
    """One offending field of a payload, as ``SchemaError.problems`` lists it.

    ``column`` and ``row`` say where (None when the problem is not about one row, or, for a
    ``more problems`` entry, not about one column); ``value`` is the value seen (long text and
    large containers clipped to a short text); ``expected`` the column type; ``error`` a short
    code such as ``wrong type``; ``message`` the sentence with the fix. Entries whose ``error``
    is ``more rows`` or ``more problems`` stand for ``count`` further problems not listed.
    """

    column: str | None
    row: int | None
    value: Any
    expected: str | None
    error: str
    message: str
    count: NotRequired[int]


class SchemaError(PayloadError):
    """The payload does not fit the model's input schema.

    ``problems`` lists the offending fields as ``Problem`` dicts (at most
    ``deploykit.schema.MAX_PROBLEMS`` of them, then one entry counting the rest), so a server
    can answer them all at once; the message names the first few and counts the rest.
    """

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems: list[Problem] = problems or []


class ScoringError(DeployKitError):
    """The deployment answered a scoring request with an error."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class BatchError(DeployKitError):
    """A batch run cannot start or finish: its input, output folder, engine or cluster is wrong."""


class JobError(DeployKitError):
    """An async job cannot be submitted (its target has no jobs), failed, was cancelled, expired,
    or has no result yet; ``status`` is the job's status when the server said it."""

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class DriftError(DeployKitError):
    """Drift cannot be computed: the reference profile or the logged inputs are missing or unusable."""
