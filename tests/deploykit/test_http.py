"""deploykit.http.base_url: the URL a client on this machine uses, IPv6 bracketed, wildcards to loopback."""

from __future__ import annotations

import pytest

from deploykit.http import base_url


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", "http://127.0.0.1:8000"),
    ("localhost", "http://localhost:8000"),
    ("::1", "http://[::1]:8000"),
    ("fe80::1", "http://[fe80::1]:8000"),
    ("[::1]", "http://[::1]:8000"),
    ("0.0.0.0", "http://127.0.0.1:8000"),
    ("::", "http://[::1]:8000"),
    ("", "http://127.0.0.1:8000"),
])
def test_base_url(host: str, expected: str) -> None:
    assert base_url("http", host, 8000) == expected


def test_base_url_scheme_and_string_port() -> None:
    assert base_url("https", "::1", "8443") == "https://[::1]:8443"  # type: ignore[arg-type]
