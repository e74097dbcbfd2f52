"""One authenticated ibm-watsonx-ai APIClient: built on first use, its side effects contained, its calls retried.

The client changes process state: it writes ``WX_CLIENT_VERIFY_REQUESTS``, ``DEPLOYMENT_PLATFORM``
and ``DEPLOYMENT_PRIVATE`` into ``os.environ`` (a CPD client's ``DEPLOYMENT_PLATFORM=private`` turns
TLS checks off for every later client of its upload sub-client), prints to stdout, warns, and its
upload sub-client trusts a process-global CA setting. Every call made through ``WatsonSession.call``
runs with the client's own values in place and the process's values put back afterwards, the
calling thread's stdout captured (other threads print as usual), and ``verify`` always passed
explicitly. Environment variables are process-wide, so run Watson calls from one thread at a time.

Retries on top of the client's own (it retries 401 and 5xx three times, 429 never):
a 429 is retried up to ``max_retries`` times, honouring ``Retry-After``; a 5xx or a dropped
connection is retried the same way for idempotent calls only; a 401 (an expired or revoked
token, which the client never refreshes) rebuilds the client once.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import json
import logging
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from deploykit.errors import CredentialsError, DeployKitError, DeploymentError, ScoringError
from deploykit.process import scoped_environ

__all__ = ["CLIENT_ENV_VARS", "HttpFailure", "WatsonCallError", "WatsonSession", "http_status", "parse_retry_after",
           "watson_reason"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Environment variables the client writes; restored after each call.
CLIENT_ENV_VARS = ("WX_CLIENT_VERIFY_REQUESTS", "DEPLOYMENT_PLATFORM", "DEPLOYMENT_PRIVATE")
#: Statuses worth another try of an idempotent call once the client's own retries gave up.
TRANSIENT = frozenset({500, 502, 503, 504, 520, 521, 524})
#: The longest Retry-After deploykit honours; a longer one is capped (the caller's timeout still applies).
MAX_RETRY_AFTER = 60.0
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

# The client logs every error it raises at WARNING; with no logging configured Python's last-resort
# handler would print them to stderr next to deploykit's own message. A NullHandler silences that
# fallback only: an application that configures logging still receives the records.
logging.getLogger("ibm_watsonx_ai").addHandler(logging.NullHandler())


class WatsonCallError(DeploymentError):
    """A Watson API call failed; ``status`` is the HTTP status and ``code`` Watson's error code, when known."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class HttpFailure(Exception):
    """A non-2xx answer to a request deploykit sent through the client's own HTTP session."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"Status code: {response.status_code}, body: {response.text[:500]}")
        self.response = response


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a client exception: its response, else a ``"status_code": N`` in its text."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    text = str(exc)
    if text.startswith("Artifact with artifact_id: ") and text.endswith("does not exist."):
        return 404  # repository.delete turns Watson's 404 into this message, without the status
    match = re.search(r'"status_code"\s*:\s*(\d{3})', text) or re.search(r"Status code:\s*(\d{3})", text)
    if match:
        return int(match.group(1))
    match = re.search(r'"_messageCode_"\s*:\s*"(\d{3})"', text)
    return int(match.group(1)) if match else None


def watson_reason(exc: BaseException) -> tuple[str, str | None]:
    """Watson's own error message and code from a client exception (first error only), else its first line."""
    response = getattr(exc, "response", None)
    text = getattr(response, "text", None) or str(exc)
    start = text.find("{")
    if start >= 0:
        with contextlib.suppress(ValueError):
            doc, _ = json.JSONDecoder().raw_decode(text[start:])
            if isinstance(doc, dict):
                errors = doc.get("errors")
                if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                    return str(errors[0].get("message") or errors[0]), errors[0].get("code")
                for key in ("errorMessage", "error_description", "message"):
                    if doc.get(key):
                        return str(doc[key]), doc.get("errorCode") or doc.get("error")
    first = str(exc).strip().splitlines()
    return (first[0] if first else type(exc).__name__), None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), capped; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    return parse_retry_after(headers.get("Retry-After")) if headers is not None else None


def _connection_problem(exc: BaseException) -> BaseException | None:
    """The network-level cause (refused, timed out, TLS) inside a client exception, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        module = type(seen).__module__
        if module.startswith(("httpx", "httpcore", "ssl", "requests.exceptions", "urllib3")) or \
                isinstance(seen, (ConnectionError, TimeoutError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_problem(exc: BaseException) -> bool:
    text = str(exc) + str(exc.__cause__ or "")
    return "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text


class WatsonSession:
    """The APIClient for one ``watsonml`` credentials section, connected to its deployment space.

    ``call(what, fn)`` runs ``fn(client)`` contained and retried, and turns failures into
    deploykit errors that say what failed, the value seen and the fix.
    """

    def __init__(self, settings: Any, progress: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.progress = progress or (lambda message: None)
        self.sleep = sleep
        self._client: Any = None
        self._env: dict[str, str | None] = {}
        self._space_id: str | None = None
        self._spec_ids: dict[str, str] = {}

    # -- connection ----------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """``cloud`` (an IAM API key, no username) or ``cpd`` (Cloud Pak for Data: a username)."""
        return "cpd" if self.settings.username else "cloud"

    @property
    def verify(self) -> bool | str:
        """The ``verify`` value passed to every client: True, False or a CA bundle path (``ca_bundle`` wins)."""
        return self.settings.tls_verify  # type: ignore[no-any-return]

    def _credentials(self) -> Any:
        from ibm_watsonx_ai import Credentials

        s = self.settings
        kwargs: dict[str, Any] = {"url": s.url, "verify": self.verify}
        key = s.secret_key()
        if key is not None:
            kwargs["api_key"] = key
        if self.mode == "cpd":
            kwargs["username"] = s.username
            if s.password is not None and key is None:
                kwargs["password"] = s.password.get_secret_value()
            for name in ("version", "bedrock_url", "instance_id"):
                if getattr(s, name):
                    kwargs[name] = getattr(s, name)
        else:
            for name in ("auth_url", "platform_url"):
                if getattr(s, name):
                    kwargs[name] = getattr(s, name)
        return Credentials(**kwargs)

    @property
    def client(self) -> Any:
        """The connected APIClient (built, authenticated and pointed at the space on first use)."""
        if self._client is None:
            self._connect()
        return self._client

    @property
    def space_id(self) -> str:
        """The deployment space every call works in (resolved from ``space_name`` if that was given)."""
        if self._space_id is None:
            self._connect()
        assert self._space_id is not None
        return self._space_id

    def _connect(self) -> None:
        from ibm_watsonx_ai import APIClient

        self._env = {name: None for name in CLIENT_ENV_VARS}
        with self._contained():
            try:
                client = APIClient(self._credentials())
            except Exception as exc:  # the client raises WMLClientError, OSError and httpx errors
                raise self._connect_error(exc) from None
            space_id = self._resolve_space(client)
            try:
                client.set.default_space(space_id)
            except Exception as exc:
                raise self._space_error(client, exc) from None
        self._client, self._space_id = client, space_id

    def _resolve_space(self, client: Any) -> str:
        s = self.settings
        wanted = s.space_id if s.space_id and _UUID.match(s.space_id) else None
        if wanted:
            return wanted  # type: ignore[no-any-return]
        name = s.space_name or s.space_id
        spaces = self._spaces(client)
        matches = [sid for sid, sname in spaces if sname == name]
        key = "space_name" if s.space_name else "space_id"
        if len(matches) == 1:
            if key == "space_id":
                self.progress(f"watsonml.space_id {name!r} is not an id; using space {name!r} = {matches[0]}")
            return matches[0]
        visible = ", ".join(f"{n!r} ({i})" for i, n in spaces) or "none"
        if not matches:
            raise CredentialsError(
                f"watsonml.{key} = {name!r}: no deployment space of that name on {s.url} "
                f"(spaces these credentials can see: {visible}); set watsonml.space_id to one of those ids"
            )
        raise CredentialsError(
            f"watsonml.{key} = {name!r}: {len(matches)} spaces have that name ({', '.join(matches)}); "
            "set watsonml.space_id to the one you mean"
        )

    def _spaces(self, client: Any) -> list[tuple[str, str]]:
        try:
            details = client.spaces.get_details(limit=200, get_all=True)
        except Exception as exc:
            reason, _ = watson_reason(exc)
            raise CredentialsError(f"listing the deployment spaces on {self.settings.url} failed ({reason}); "
                                   "set watsonml.space_id to the space's id instead of a name") from None
        return [(r["metadata"]["id"], r.get("entity", {}).get("name", "")) for r in details.get("resources", [])]

    def _space_error(self, client: Any, exc: BaseException) -> DeployKitError:
        reason, _ = watson_reason(exc)
        text = str(exc) + reason
        if "does not exist" in text or "not found" in text.lower() or http_status(exc) == 404:
            try:
                visible = ", ".join(f"{n!r} ({i})" for i, n in self._spaces(client)) or "none"
            except DeployKitError:
                visible = "unknown (listing them failed too)"
            return CredentialsError(
                f"watsonml.space_id = {self.settings.space_id!r} does not exist on {self.settings.url} "
                f"(spaces these credentials can see: {visible}); set watsonml.space_id to one of those ids "
                "or watsonml.space_name to a space's name"
            )
        return CredentialsError(
            f"watsonml.space_id = {self.settings.space_id!r} could not be opened on {self.settings.url} ({reason}); "
            "check that these credentials are a member of that space"
        )

    def _connect_error(self, exc: BaseException) -> DeployKitError:
        s = self.settings
        reason, _ = watson_reason(exc)
        text = str(exc)
        if _tls_problem(exc):
            return CredentialsError(
                f"the TLS certificate of watsonml.url = {s.url!r} is not trusted with watsonml.verify = {s.verify!r}"
                + (f" and watsonml.ca_bundle = {s.ca_bundle!r}" if s.ca_bundle else "")
                + "; set watsonml.ca_bundle to the path of the CA bundle (PEM) that signed it, or watsonml.verify "
                "to false to skip the check (not for production)"
            )
        if "must start with `https://`" in text or "invalid_url" in text:
            return CredentialsError(f"watsonml.url = {s.url!r} must start with https://; the client refuses plain http")
        if "not supported yet" in text and "version" in text:
            return CredentialsError(
                f"watsonml.version = {s.version!r} is not a Cloud Pak for Data version this ibm-watsonx-ai supports "
                f"({reason}); set watsonml.version to your CPD release (e.g. 5.1), or remove it to detect it"
            )
        if type(exc).__name__ in ("InvalidCredentialsError", "AuthenticationError") or "authenticat" in text.lower():
            if self.mode == "cloud":
                field = "apikey" if s.apikey is not None else "api_key"
                where = s.auth_url or "the IBM Cloud IAM service"
                return CredentialsError(
                    f"watsonml.{field} was rejected by {where} ({reason}); create a new API key at "
                    "https://cloud.ibm.com/iam/apikeys and set watsonml.apikey (or DEPLOYKIT_WATSONML_APIKEY)"
                )
            secret = "api_key" if s.secret_key() is not None else "password"
            return CredentialsError(
                f"Cloud Pak for Data at {s.url} rejected watsonml.username = {s.username!r} with its "
                f"watsonml.{secret} ({reason}); check both (an API key is generated under Profile and settings "
                "> API key in CPD)"
            )
        if _connection_problem(exc) is not None or "URL is invalid" in text:
            problem = _connection_problem(exc)
            detail = f"{type(problem).__name__}: {problem}" if problem is not None else reason
            return CredentialsError(
                f"watsonml.url = {s.url!r} cannot be reached ({detail}); check the URL, the port and your network"
            )
        return CredentialsError(f"connecting to Watson ML at watsonml.url = {s.url!r} failed ({reason}); "
                                "check the watsonml credentials")

    # -- containment -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _contained(self) -> Iterator[None]:
        from ibm_watsonx_ai.libs.repo.swagger_client.configuration import Configuration

        config = Configuration()  # type: ignore[no-untyped-call]
        saved_ca, saved_verify = config.ssl_ca_cert, config.verify_ssl
        config.ssl_ca_cert = self.verify if isinstance(self.verify, str) else None
        config.verify_ssl = self.verify is not False
        out = io.StringIO()
        client_view: dict[str, str | None] = {}
        try:
            with scoped_environ({name: self._env.get(name) for name in CLIENT_ENV_VARS}) as client_view, \
                    warnings.catch_warnings(), contextlib.redirect_stdout(_ThisThreadTo(out, sys.stdout)):
                warnings.filterwarnings("ignore", module=r"ibm_watsonx_ai")
                # httpx deprecates verify=<path>, which the client passes on for a CA bundle
                warnings.filterwarnings("ignore", message=r"`verify=<str>` is deprecated", category=DeprecationWarning)
                yield
        finally:
            self._env = dict(client_view)  # the client's view, for next time
            config.ssl_ca_cert, config.verify_ssl = saved_ca, saved_verify
            if out.getvalue().strip():
                log.debug("ibm-watsonx-ai printed: %s", out.getvalue().strip())

    # -- calls -----------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[[Any], T], *, idempotent: bool = True,
             error: type[DeployKitError] = DeploymentError, missing_ok: bool = False, hint: str | None = None) -> T:
        """Run ``fn(client)`` contained; retry 429 (and 5xx when ``idempotent``); re-authenticate once on 401.

        Failures raise ``error`` (a WatsonCallError for DeploymentError) saying ``what`` failed,
        Watson's reason, the HTTP status and what to do (``hint`` for a 400/409/422, when the
        caller knows better). ``missing_ok`` returns None on a 404.
        """
        attempt, reauthenticated = 0, False
        while True:
            client = self.client
            try:
                with self._contained():
                    return fn(client)
            except DeployKitError:
                raise
            except Exception as exc:
                status = http_status(exc)
                if status == 404 and missing_ok:
                    return None  # type: ignore[return-value]
                if status == 401 and not reauthenticated:
                    reauthenticated = True
                    self.progress(f"Watson rejected the token while {what}; signing in again")
                    self._client = None
                    continue
                network = status is None and _connection_problem(exc) is not None
                retryable = status == 429 or (idempotent and (status in TRANSIENT or network))
                if retryable and attempt < self.settings.max_retries:
                    wait = _retry_after(exc) if status == 429 else None
                    wait = wait if wait is not None else min(0.5 * 2 ** attempt, 8.0)
                    attempt += 1
                    self.progress(f"Watson answered {status or 'no response'} while {what}; "
                                  f"retry {attempt}/{self.settings.max_retries} in {wait:.1f} s")
                    self.sleep(wait)
                    continue
                raise self._call_error(what, exc, status, attempt, error, hint) from None

    def _call_error(self, what: str, exc: BaseException, status: int | None, attempts: int,
                    error: type[DeployKitError], hint: str | None = None) -> DeployKitError:
        reason, code = watson_reason(exc)
        seen = f"HTTP {status}: {reason}" if status else reason
        if hint and status in (400, 409, 422):
            fix = hint
        elif status == 401:
            fix = ("the credentials were refused even after signing in again; check watsonml.apikey / api_key / "
                   "password and that the key is not revoked")
        elif status == 403:
            fix = f"the credentials lack permission in space {self._space_id}; ask for the Editor or Admin role there"
        elif status == 429:
            fix = f"Watson kept rate-limiting after {attempts} retries; wait and run it again"
        elif status in TRANSIENT or (status is None and _connection_problem(exc) is not None):
            fix = f"Watson ML at {self.settings.url} is unavailable{' after retries' if attempts else ''}; run it again later"
        elif status == 404:
            fix = "it no longer exists on Watson (deleted outside deploykit?); deploy again to recreate it"
        elif _tls_problem(exc):
            fix = "set watsonml.ca_bundle to the CA bundle (PEM) that signed the server's certificate"
        else:
            fix = "fix the cause above and run it again"
        message = f"Watson ML: {what} failed ({seen}); {fix}"
        if error is DeploymentError:
            return WatsonCallError(message, status=status, code=code)
        if issubclass(error, ScoringError):
            return error(message, status=status, body=reason)
        return error(message)

    def tagged(self, kind: str, tag: str) -> list[dict[str, Any]]:
        """The ``models``, ``functions`` or ``deployments`` of the space that carry ``tag`` (``GET ...?tag.value=``).

        The client has no call for this search, so it goes through the client's own HTTP session,
        headers and query parameters (the space, the API version)."""
        def search(c: Any) -> list[dict[str, Any]]:
            hrefs = c._href_definitions
            url = {"models": hrefs.get_published_models_href, "functions": hrefs.get_functions_href}.get(
                kind, hrefs.get_deployments_href)()
            found: list[dict[str, Any]] = []
            params: dict[str, Any] = {**c._params(), "tag.value": tag, "limit": 200}
            while True:
                response = c.httpx_client.get(url=url, params=params, headers=c._get_headers())
                if response.status_code != 200:
                    raise HttpFailure(response)
                doc = response.json()
                found += doc.get("resources") or []
                start = ((doc.get("next") or {}).get("href") or "").partition("start=")[2].split("&")[0]
                if not start:
                    return found
                params["start"] = start

        return self.call(f"finding the {kind} tagged {tag!r}", search)

    def named(self, kind: str, name: str | None) -> list[dict[str, Any]]:
        """The ``software_specifications`` or ``package_extensions`` of the space named ``name``, or
        all of them for None (``GET /v2/...?name=``; the client's own lookups raise instead of answering "none")."""
        def search(c: Any) -> list[dict[str, Any]]:
            hrefs = c._href_definitions
            url = hrefs.get_sw_specs_href() if kind == "software_specifications" else hrefs.get_pkg_extns_href()
            params = {**c._params(), **({"name": name} if name is not None else {})}
            response = c.httpx_client.get(url=url, params=params, headers=c._get_headers())
            if response.status_code != 200:
                raise HttpFailure(response)
            return [r for r in response.json().get("resources") or []
                    if name is None or (r.get("metadata") or {}).get("name") == name]

        return self.call(f"finding the {kind.replace('_', ' ')} named {name!r}" if name is not None
                         else f"listing the {kind.replace('_', ' ')}", search)

    def software_spec_id(self, name: str) -> str:
        """The asset id of software specification ``name`` (an id is passed through), cached per session."""
        if _UUID.match(name):
            return name
        if name not in self._spec_ids:
            found = self.call(f"looking up software specification {name!r}",
                              lambda c: c.software_specifications.get_id_by_name(name))
            if not found or found == "Not Found":
                raise DeploymentError(
                    f"software specification {name!r} does not exist on {self.settings.url}; set "
                    "watsonml.software_spec to one that does (list them with "
                    "client.software_specifications.list()), e.g. runtime-25.1-py3.12"
                )
            self._spec_ids[name] = str(found)
        return self._spec_ids[name]


class _ThisThreadTo(io.TextIOBase):
    """A stdout that sends this thread's writes (the client's prints) to ``sink`` and other threads' to ``rest``."""

    def __init__(self, sink: io.StringIO, rest: Any) -> None:
        super().__init__()
        self.sink, self.rest, self.thread = sink, rest, threading.get_ident()

    def write(self, text: str) -> int:
        return (self.sink if threading.get_ident() == self.thread else self.rest).write(text)

    def flush(self) -> None:
        self.rest.flush()

