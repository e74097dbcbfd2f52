"""Async jobs from Python: submit a file to a deployment, wait for it, download its result.

    import deploykit
    job = deploykit.submit("bank-model", "customers.csv")
    job.wait(timeout=600)          # the final status document; JobError if it failed
    job.result("scores.csv")       # the output file: the input's columns, prediction, probability_<class>

A target has jobs when it implements :class:`JobTarget` (the local server does: ``/jobs``). A
target without them is a JobError naming it and what to use instead (``deploykit batch``).
Nothing heavy is imported here; a DataFrame is sent as CSV.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from deploykit.errors import JobError, ScoringError

if TYPE_CHECKING:
    from deploykit.deployment import Deployment

__all__ = ["FINISHED", "Job", "JobEndpoint", "JobTarget", "job", "jobs", "submit"]

#: The statuses after which a job does not change any more.
FINISHED = ("succeeded", "failed", "cancelled")
_MEDIA = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet", ".pq": "application/vnd.apache.parquet",
          ".jsonl": "application/x-ndjson", ".ndjson": "application/x-ndjson"}


@dataclass(frozen=True)
class JobEndpoint:
    """Where a deployment's jobs are: the base URL of its ``/jobs`` routes, the bearer token and
    how to trust its TLS certificate (as ``deploykit.http.request_json`` takes it)."""

    url: str
    token: str | None = None
    verify: bool | str = True


@runtime_checkable
class JobTarget(Protocol):
    """A target whose deployments run async jobs."""

    def jobs_endpoint(self, deployment: Deployment) -> JobEndpoint:
        """Where ``deployment``'s jobs are."""


def _endpoint(name: str, target: str | None, credentials: Any, metadata: Any) -> JobEndpoint:
    from deploykit.lifecycle import open_deployment

    deployment, tgt = open_deployment(name, target=target, credentials=credentials, metadata=metadata)
    if not isinstance(tgt, JobTarget):
        raise JobError(f"the {deployment.target} target has no async jobs (deployment {name!r}); score the file "
                       f"with 'deploykit batch {name} INPUT OUTPUT --target {deployment.target}' (deploykit.batch) "
                       "instead, or deploy to the local target, which runs jobs")
    return tgt.jobs_endpoint(deployment)


def _request(endpoint: JobEndpoint, method: str, path: str, *, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
    from deploykit.http import request_json

    # a submit is retried safely only under an id of its own (PUT); POST is sent once
    retries = 0 if method == "POST" else 3
    return request_json(method, endpoint.url.rstrip("/") + path, token=endpoint.token, verify=endpoint.verify,
                        data=data, headers=headers, retries=retries, timeout=600)


def _error(status: int, body: Any, what: str) -> JobError:
    message = body.get("error") if isinstance(body, dict) else body
    job_status = body.get("status") if isinstance(body, dict) else None
    return JobError(f"{what} answered {status}: {message}", status=job_status)


class Job:
    """One async job of a deployment: ``status()``, ``wait()``, ``result(path)``, ``cancel()``."""

    def __init__(self, name: str, job_id: str, endpoint: JobEndpoint, document: dict[str, Any] | None = None) -> None:
        self.name = name
        self.id = job_id
        self.endpoint = endpoint
        #: the job's document as last seen (``GET /jobs/{id}``)
        self.document: dict[str, Any] = document or {"id": job_id}

    def __repr__(self) -> str:
        return f"Job({self.name!r}, {self.id!r}, status={self.document.get('status')!r})"

    def status(self) -> dict[str, Any]:
        """The job's document now: ``status`` (queued, running, succeeded, failed, cancelled),
        timestamps, ``rows_in``/``rows_out``, ``error``. JobError for an unknown (404) or expired (410) job."""
        code, body = _request(self.endpoint, "GET", f"/jobs/{self.id}")
        if code != 200:
            raise _error(code, body, f"job {self.id!r} of {self.name!r}")
        self.document = dict(body)
        return self.document

    def wait(self, timeout: float = 600.0, poll: float = 0.2) -> dict[str, Any]:
        """Wait until the job has finished; its final document. JobError when it failed or was
        cancelled (with its message), or is still not finished after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = min(poll, 0.05)
        while True:
            doc = self.status()
            if doc["status"] in FINISHED:
                break
            if time.monotonic() >= deadline:
                raise JobError(f"job {self.id!r} of {self.name!r} is still {doc['status']} after {timeout:g} s; "
                               "wait longer (wait(timeout=...), --timeout) or cancel it", status=doc["status"])
            time.sleep(delay)
            delay = min(delay * 2, poll, max(0.0, deadline - time.monotonic()))
        if doc["status"] != "succeeded":
            raise JobError(f"job {self.id!r} of {self.name!r} {doc['status']}: {doc.get('error') or 'no reason given'}",
                           status=doc["status"])
        return doc

    def result(self, path: str | Path) -> Path:
        """Download the output file to ``path`` (written whole, then renamed); JobError (409, with
        the status) while the job has not succeeded."""
        from deploykit.files import atomic_write
        from deploykit.http import _pool

        url = f"{self.endpoint.url.rstrip('/')}/jobs/{self.id}/result"
        headers = {"Authorization": f"Bearer {self.endpoint.token}"} if self.endpoint.token else {}
        try:
            resp = _pool(self.endpoint.verify).request("GET", url, headers=headers, timeout=600, retries=3)
        except Exception as exc:
            raise ScoringError(f"{url} did not answer ({exc}); check that the deployment is running "
                               "('deploykit status NAME')") from None
        if resp.status != 200:
            import json

            try:
                body: Any = json.loads(resp.data)
            except ValueError:
                body = resp.data.decode("utf-8", "replace")
            raise _error(resp.status, body, f"the result of job {self.id!r} of {self.name!r}")
        target = Path(path)
        atomic_write(target, resp.data)
        return target

    def cancel(self) -> dict[str, Any]:
        """Cancel the job if it is queued or running (or remove it when it has finished); its
        document after (``{"status": "removed"}`` for a removed one)."""
        code, body = _request(self.endpoint, "DELETE", f"/jobs/{self.id}")
        if code == 204:
            self.document = {"id": self.id, "status": "removed"}
            return self.document
        if code not in (200, 202):
            raise _error(code, body, f"cancelling job {self.id!r} of {self.name!r}")
        self.document = dict(body)
        return self.document


def _payload(data: Any, webhook: str | None) -> tuple[bytes, dict[str, str], str]:
    """The upload and its query string: a file as a multipart form (its name kept: async scripts
    see it as ``inputFileName``; a ``webhook`` field), a DataFrame as CSV (``?webhook=``)."""
    if type(data).__name__ == "DataFrame":
        import urllib.parse

        query = "?" + urllib.parse.urlencode({"webhook": webhook}) if webhook else ""
        return data.to_csv(index=False).encode(), {"Content-Type": "text/csv"}, query
    path = Path(data)
    if not path.is_file():
        raise JobError(f"the job input {str(data)!r} is not a file; pass a CSV, Parquet or JSON Lines file, or a "
                       "pandas DataFrame")
    from urllib3 import encode_multipart_formdata

    fields: dict[str, Any] = {"file": (path.name, path.read_bytes(),
                                       _MEDIA.get(path.suffix.lower(), "application/octet-stream"))}
    if webhook:
        fields["webhook"] = webhook
    body, content_type = encode_multipart_formdata(fields)
    return body, {"Content-Type": content_type}, ""


def submit(name: str, path_or_frame: Any, *, target: str | None = None, job_id: str | None = None,
           webhook: str | None = None, credentials: str | Path | None = None,
           metadata: str | Path | None = None) -> Job:
    """Submit a file (CSV, Parquet, JSON Lines; any file for an async script) or a DataFrame as an
    async job of the deployment ``name``; the :class:`Job`.

    With ``job_id`` the submit is idempotent (``PUT /jobs/{id}``): submitting the same input
    again returns the same job without running it twice, another input under that id is a
    JobError (409). ``webhook`` is a URL the server POSTs the job's document to when it finishes.
    """
    endpoint = _endpoint(name, target, credentials, metadata)
    data, headers, query = _payload(path_or_frame, webhook)
    if job_id is None:
        code, body = _request(endpoint, "POST", "/jobs" + query, data=data, headers=headers)
    else:
        code, body = _request(endpoint, "PUT", f"/jobs/{job_id}" + query, data=data, headers=headers)
    if code not in (200, 202):
        raise _error(code, body, f"submitting a job to {name!r}")
    return Job(name, str(body["id"]), endpoint, body)


def job(name: str, job_id: str, *, target: str | None = None, credentials: str | Path | None = None,
        metadata: str | Path | None = None) -> Job:
    """The job ``job_id`` of the deployment ``name`` (to ask its status, wait, download or cancel)."""
    return Job(name, job_id, _endpoint(name, target, credentials, metadata))


def jobs(name: str, *, target: str | None = None, credentials: str | Path | None = None,
         metadata: str | Path | None = None) -> list[dict[str, Any]]:
    """The documents of the jobs the deployment ``name`` keeps, newest first."""
    endpoint = _endpoint(name, target, credentials, metadata)
    code, body = _request(endpoint, "GET", "/jobs")
    if code != 200:
        raise _error(code, body, f"listing the jobs of {name!r}")
    return list(body["jobs"])
