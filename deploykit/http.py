"""The HTTP client targets share for scoring and health checks: pooled, retried, JSON in and out."""

from __future__ import annotations

import json
from typing import Any

from deploykit.errors import ScoringError

__all__ = ["base_url", "close_pools", "request_json"]

_pools: dict[Any, Any] = {}
#: Addresses a server listens on that a client cannot connect to, and the loopback address to use instead.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def base_url(scheme: str, host: str, port: int) -> str:
    """The URL a client on this machine uses for a server on ``host:port``.

    An IPv6 address is bracketed (``http://[::1]:8000``); a wildcard listen address
    (``0.0.0.0``, ``::``, empty) becomes the loopback address of its family.
    """
    host = _WILDCARDS.get(host.strip(), host.strip())
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{int(port)}"


def _pool(verify: bool | str) -> Any:
    import urllib3

    key = verify
    if key not in _pools:
        if verify is False:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            _pools[key] = urllib3.PoolManager(cert_reqs="CERT_NONE", maxsize=8)
        elif isinstance(verify, str):
            _pools[key] = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=verify, maxsize=8)
        else:
            _pools[key] = urllib3.PoolManager(maxsize=8)
    return _pools[key]


def close_pools() -> None:
    """Close idle keep-alive connections, so a server being stopped need not wait for them."""
    for pool in _pools.values():
        pool.clear()


def request_json(method: str, url: str, body: Any = None, *, token: str | None = None, timeout: float = 60.0,
                 retries: int = 3, verify: bool | str = True, headers: dict[str, str] | None = None,
                 data: bytes | None = None) -> tuple[int, Any]:
    """Send ``body`` as JSON (or raw ``data``) and return (status, parsed JSON or text).

    Connection failures and 429/502/503/504 are retried with back-off (scoring is idempotent);
    a connection that never succeeds is a ScoringError naming the URL.
    """
    import urllib3

    hdrs = {"Accept": "application/json"}
    if body is not None:
        import orjson

        data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    retry = urllib3.Retry(total=retries, connect=retries, read=1, backoff_factor=0.2,
                          status_forcelist=(429, 502, 503, 504), allowed_methods=None, raise_on_status=False)
    try:
        resp = _pool(verify).request(method, url, body=data, headers=hdrs, timeout=timeout, retries=retry)
    except urllib3.exceptions.MaxRetryError as exc:
        raise ScoringError(f"{url} did not answer ({exc.reason}); check that the deployment is running "
                           "('deploykit status NAME')") from None
    except urllib3.exceptions.HTTPError as exc:
        raise ScoringError(f"{url} failed: {exc}") from None
    text = resp.data.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return resp.status, parsed
